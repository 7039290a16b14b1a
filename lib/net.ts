/**
 * Addresses: CIDR blocks and the datagram size limit.
 *
 * @module
 */

/**
 * Largest payload of one UDP datagram over IPv4.
 *
 * @example Datagram limit
 * ```ts
 * import assert from "node:assert/strict";
 * import { MAX_DATAGRAM_SIZE } from "../protocol.ts";
 *
 * assert.equal(MAX_DATAGRAM_SIZE, 65_535 - 20 - 8);
 * ```
 */
export const MAX_DATAGRAM_SIZE = 65_507;

/**
 * A parsed CIDR block, as returned by {@linkcode parseCidr}.
 *
 * @example Read the parts of a block
 * ```ts
 * import assert from "node:assert/strict";
 * import { type Cidr, parseCidr } from "../protocol.ts";
 *
 * const block: Cidr = parseCidr("10.1.2.3/8");
 * assert.deepEqual(block, { family: 4, network: 0x0a00_0000n, prefix: 8 });
 * ```
 */
export interface Cidr {
  /** 4 or 6. */
  family: 4 | 6;
  /** The network address as a number, host bits cleared. */
  network: bigint;
  /** Prefix length in bits. */
  prefix: number;
}

/**
 * Parses an IPv4 or IPv6 address to a number, or returns undefined.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseAddress } from "./net.ts";
 *
 * assert.deepEqual(parseAddress("10.0.0.1"), { family: 4, value: 0x0a00_0001n });
 * assert.equal(parseAddress("host"), undefined);
 * ```
 */
export function parseAddress(text: string): { family: 4 | 6; value: bigint } | undefined {
  const v4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(text);
  if (v4) {
    const parts = v4.slice(1).map(Number);
    if (parts.some((part) => part > 255)) return undefined;
    return { family: 4, value: parts.reduce((sum, part) => sum * 256n + BigInt(part), 0n) };
  }
  // IPv4-mapped IPv6 (::ffff:1.2.3.4), as a dual-stack listener reports IPv4 peers.
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(text);
  if (mapped) return parseAddress(mapped[1]);
  if (!/^[0-9a-f:]+$/i.test(text) || text.split("::").length > 2) return undefined;
  const [head, tail] = text.includes("::") ? text.split("::") : [text, undefined];
  const headGroups = head === "" ? [] : head.split(":");
  const tailGroups = tail === undefined || tail === "" ? [] : tail.split(":");
  const missing = 8 - headGroups.length - tailGroups.length;
  if (tail === undefined ? missing !== 0 : missing < 1) return undefined;
  const groups = [
    ...headGroups,
    ...Array(tail === undefined ? 0 : missing).fill("0"),
    ...tailGroups,
  ];
  if (groups.some((group) => !/^[0-9a-f]{1,4}$/i.test(group))) return undefined;
  return {
    family: 6,
    value: groups.reduce((sum, group) => sum * 65536n + BigInt(parseInt(group, 16)), 0n),
  };
}

/**
 * Parses a CIDR block such as `10.0.0.0/8`, `192.168.1.7` (one host) or
 * `fd00::/8`.
 *
 * @param text The block; without a prefix length, a single address.
 * @returns The block.
 * @throws {SyntaxError} If the text is not an address with an optional prefix.
 *
 * @example Parse blocks
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseCidr } from "../protocol.ts";
 *
 * assert.equal(parseCidr("10.1.2.3/8").network, 10n << 24n);
 * assert.equal(parseCidr("::1").prefix, 128);
 * assert.throws(() => parseCidr("10.0.0.0/33"), SyntaxError);
 * ```
 */
export function parseCidr(text: string): Cidr {
  const [addressText, prefixText, ...rest] = text.split("/");
  const address = parseAddress(addressText);
  const bits = address?.family === 6 ? 128 : 32;
  const prefix = prefixText === undefined
    ? bits
    : /^\d{1,3}$/.test(prefixText)
    ? Number(prefixText)
    : NaN;
  if (address === undefined || rest.length > 0 || !(prefix <= bits)) {
    throw new SyntaxError(
      `Cannot parse address block: expected such as 10.0.0.0/8 or fd00::/8, got ${
        JSON.stringify(text.slice(0, 80))
      }`,
    );
  }
  const hostBits = BigInt(bits - prefix);
  return { family: address.family, network: (address.value >> hostBits) << hostBits, prefix };
}

/**
 * Tells whether an address lies in any of the blocks.
 *
 * @param blocks Blocks from {@linkcode parseCidr}.
 * @param address The peer's address, as `Deno.NetAddr.hostname` gives it.
 * @returns True when some block holds it; false for anything unparsable.
 *
 * @example Check peers
 * ```ts
 * import assert from "node:assert/strict";
 * import { inAnyCidr, parseCidr } from "../protocol.ts";
 *
 * const blocks = [parseCidr("127.0.0.0/8"), parseCidr("fd00::/8")];
 * assert.equal(inAnyCidr(blocks, "127.0.0.2"), true);
 * assert.equal(inAnyCidr(blocks, "::ffff:127.0.0.1"), true);
 * assert.equal(inAnyCidr(blocks, "192.168.0.1"), false);
 * ```
 */
export function inAnyCidr(blocks: readonly Cidr[], address: string): boolean {
  const parsed = parseAddress(address);
  if (parsed === undefined) return false;
  return blocks.some((block) => {
    if (block.family !== parsed.family) return false;
    const hostBits = BigInt((block.family === 6 ? 128 : 32) - block.prefix);
    return (parsed.value >> hostBits) << hostBits === block.network;
  });
}
