/**
 * Command-line values: ports, hosts, sizes, counts and seconds, the Deno version and permissions.
 *
 * @module
 */
import { NAME_SIZE } from "../protocol/limits.ts";
import { parseAddress } from "./net.ts";

const SIZE_UNITS: Record<string, number> = { "": 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 };

/**
 * Parses a byte count written as a whole number with an optional binary
 * suffix `K`, `M` or `G` (optionally followed by `B` or `iB`).
 *
 * @param text The count, such as `65536`, `64K` or `1GiB`.
 * @returns The number of bytes.
 * @throws {SyntaxError} If the text is not such a count.
 *
 * @example Parse sizes
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseByteSize } from "../protocol.ts";
 *
 * assert.equal(parseByteSize("64K"), 65536);
 * assert.equal(parseByteSize("2GiB"), 2 * 1024 ** 3);
 * assert.throws(() => parseByteSize("1e3"), SyntaxError);
 * assert.throws(() => parseByteSize("999999999999999G"), /more than 2\^53/);
 * ```
 */
export function parseByteSize(text: string): number {
  const match = /^([0-9]{1,15})(?:([KMG])(?:i?B)?)?$/i.exec(text.trim());
  if (!match) {
    throw new SyntaxError(
      `Cannot parse size: expected a number with an optional K, M or G, got ${
        JSON.stringify(text.slice(0, 80))
      }`,
    );
  }
  const bytes = Number(match[1]) * SIZE_UNITS[(match[2] ?? "").toUpperCase()];
  if (!Number.isSafeInteger(bytes)) {
    throw new SyntaxError(`Cannot parse size: ${match[0]} is more than 2^53 bytes`);
  }
  return bytes;
}

/**
 * Parses a rate in bytes per second, as `--limit-rate` takes it: a size as
 * {@linkcode parseByteSize} reads it (`500K`, `10M`), `/s` allowed after it.
 *
 * @param text The rate.
 * @param flag The flag it came with, for the error.
 * @returns Bytes per second.
 * @throws {SyntaxError} If the text is no such rate.
 * @throws {RangeError} If it is zero.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseRate } from "../protocol.ts";
 *
 * assert.equal(parseRate("20M", "--limit-rate"), 20 * 1024 ** 2);
 * assert.equal(parseRate("500k/s", "--limit-rate"), 500 * 1024);
 * assert.throws(() => parseRate("0", "--limit-rate"), RangeError);
 * ```
 */
export function parseRate(text: string, flag: string): number {
  let rate: number;
  try {
    rate = parseByteSize(text.replace(/\/s$/i, ""));
  } catch (error) {
    throw new SyntaxError(`Invalid ${flag}: ${(error as Error).message}`, { cause: error });
  }
  if (rate === 0) throw new RangeError(`Invalid ${flag}: a rate of 0 sends nothing`);
  return rate;
}

/**
 * Parses a TCP or UDP port number.
 *
 * @param text The port, up to 65535.
 * @param min The lowest port accepted: 0 (any free port) to listen on, 1 to
 * send to.
 * @returns The port.
 * @throws {SyntaxError} If the text is not such a number.
 *
 * @example Parse ports
 * ```ts
 * import assert from "node:assert/strict";
 * import { parsePort } from "../protocol.ts";
 *
 * assert.equal(parsePort("9999"), 9999);
 * assert.throws(() => parsePort("65536"), SyntaxError);
 * assert.throws(() => parsePort("0", 1), SyntaxError);
 * ```
 */
export function parsePort(text: string, min = 0): number {
  const port = /^[0-9]{1,5}$/.test(text) ? Number(text) : NaN;
  if (!(port >= min && port <= 65_535)) {
    throw new SyntaxError(
      `Cannot parse port: expected ${min} to 65535, got ${JSON.stringify(text.slice(0, 80))}`,
    );
  }
  return port;
}

/**
 * Parses the host given to `--host`: an IP address (IPv6 with or without
 * brackets) or a host name, so that a typo is a usage error at start rather
 * than a failure on every connection.
 *
 * @param text A name such as `files.example.org`, or an address.
 * @returns The host, an IPv6 address without its brackets.
 * @throws {SyntaxError} If the text is neither, such as `host:port`.
 *
 * @example Parse hosts
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseHost } from "../protocol.ts";
 *
 * assert.equal(parseHost("[::1]"), "::1");
 * assert.equal(parseHost("localhost"), "localhost");
 * assert.throws(() => parseHost("127.0.0.1:9999"), SyntaxError);
 * ```
 */
export function parseHost(text: string): string {
  const bracketed = /^\[(.*)\]$/.exec(text)?.[1];
  const valid = bracketed !== undefined
    ? bracketed.includes(":") && parseAddress(bracketed) !== undefined
    : parseAddress(text) !== undefined || isHostName(text);
  if (valid) return bracketed ?? text;
  const quoted = JSON.stringify(text.slice(0, 80));
  throw new SyntaxError(
    /^[^:]+:\d+$/.test(text)
      ? `Cannot parse host: give the port with --port, got ${quoted}`
      : `Cannot parse host: expected a host name or an IP address, got ${quoted}`,
  );
}

/** Whether the text is a name of dot-separated labels as DNS allows them. */
function isHostName(text: string): boolean {
  return text.length <= 253 &&
    /^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*\.?$/i.test(
      text,
    );
}

/**
 * The oldest Deno that `server.ts` and `client.ts` run on: `Uint8Array`
 * base64 came with 2.5, and `Deno.FsFile.tryLock` with 2.7.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { isOlderThanMinDeno, MIN_DENO } from "../protocol.ts";
 *
 * assert.equal(isOlderThanMinDeno(`${MIN_DENO}.0`), false);
 * ```
 */
export const MIN_DENO = "2.7";

/**
 * Tells whether a Deno version is older than {@linkcode MIN_DENO}, so that a
 * script can say so in one line rather than fail inside its first upload.
 *
 * @param version A version such as `2.9.6` or `2.10.0-rc.1`.
 * @returns Whether it is older.
 *
 * @example Compare versions
 * ```ts
 * import assert from "node:assert/strict";
 * import { isOlderThanMinDeno } from "../protocol.ts";
 *
 * assert.equal(isOlderThanMinDeno("2.6.8"), true);
 * assert.equal(isOlderThanMinDeno("2.10.0"), false);
 * ```
 */
export function isOlderThanMinDeno(version: string): boolean {
  const [major, minor] = version.split(/[.+-]/).map(Number);
  const [minMajor, minMinor] = MIN_DENO.split(".").map(Number);
  return major < minMajor || major === minMajor && minor < minMinor;
}

/**
 * Parses a duration given in seconds, such as a timeout flag.
 *
 * @param text Seconds, a whole or decimal number.
 * @param flag The flag it came from, for the message.
 * @param min The shortest duration accepted, in seconds: a timeout of 0
 * would expire before anything could arrive.
 * @returns The duration in milliseconds.
 * @throws {SyntaxError} If the text is not such a number from `min` up.
 *
 * @example Parse seconds
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseSeconds } from "../protocol.ts";
 *
 * assert.equal(parseSeconds("2.5", "--timeout"), 2500);
 * assert.throws(() => parseSeconds("soon", "--timeout"), /Invalid --timeout/);
 * assert.throws(() => parseSeconds("0", "--timeout"), /from 0.001/);
 * ```
 */
export function parseSeconds(text: string, flag: string, min = 0.001): number {
  if (!/^[0-9]{1,9}(\.[0-9]{1,3})?$/.test(text) || Number(text) < min) {
    throw new SyntaxError(
      `Invalid ${flag}: expected seconds from ${min}, got ${JSON.stringify(text.slice(0, 80))}`,
    );
  }
  return Number(text) * 1000;
}

/**
 * Parses a whole number given on the command line.
 *
 * @param text The number.
 * @param flag The flag it came from, for the message.
 * @param min The smallest value accepted.
 * @returns The number.
 * @throws {SyntaxError} If the text is not a whole number from `min` up.
 *
 * @example Parse a count
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseCount } from "../protocol.ts";
 *
 * assert.equal(parseCount("8", "--concurrency"), 8);
 * assert.throws(() => parseCount("0", "--concurrency"), /from 1/);
 * ```
 */
export function parseCount(text: string, flag: string, min = 1): number {
  if (!/^[0-9]{1,9}$/.test(text) || Number(text) < min) {
    throw new SyntaxError(
      `Invalid ${flag}: expected a whole number from ${min}, got ${
        JSON.stringify(text.slice(0, 80))
      }`,
    );
  }
  return Number(text);
}

/**
 * Checks that the process may use each of the network targets, because
 * `node:dgram` reports a missing `--allow-net` as an uncaught error or as
 * `send UNKNOWN` rather than naming the permission.
 *
 * @param targets Each `host:port` to bind or send to, as
 * {@linkcode formatAddress} writes it, or a bare host name to look up.
 * @returns Once every permission is known to be granted.
 * @throws {Deno.errors.NotCapable} Naming the one flag that grants all those
 * missing.
 *
 * @example Check before binding
 * ```ts
 * import assert from "node:assert/strict";
 * import { checkNetPermission } from "../protocol.ts";
 *
 * const { state } = await Deno.permissions.query({ name: "net", host: "127.0.0.1:9" });
 * if (state === "granted") await checkNetPermission("127.0.0.1:9");
 * else await assert.rejects(checkNetPermission("127.0.0.1:9"), /--allow-net=127\.0\.0\.1:9/);
 * ```
 */
export async function checkNetPermission(...targets: string[]): Promise<void> {
  const missing = [];
  for (const host of targets) {
    const { state } = await Deno.permissions.query({ name: "net", host });
    if (state !== "granted") missing.push(host);
  }
  if (missing.length > 0) {
    throw new Deno.errors.NotCapable(
      `Requires net access to ${missing.join(" and ")}: add --allow-net=${missing.join(",")}`,
    );
  }
}

/**
 * The largest frame body a server accepts, as `--max-frame-size` writes it:
 * at least the 32-byte name field, or no frame could pass.
 *
 * @throws {RangeError} Below the name field; {SyntaxError} as {@linkcode parseByteSize}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseFrameSize } from "../protocol.ts";
 *
 * assert.equal(parseFrameSize("64M"), 64 * 1024 ** 2);
 * assert.throws(() => parseFrameSize("10"), /holds a 32-byte name, got 10 bytes/);
 * ```
 */
export function parseFrameSize(text: string): number {
  const size = parseByteSize(text);
  if (size < NAME_SIZE) {
    throw new RangeError(
      `Invalid --max-frame-size: every frame body holds a ${NAME_SIZE}-byte name, got ${size} bytes`,
    );
  }
  return size;
}

/**
 * Names the permission a folder lacks, as one line with the flags that
 * grant it. On a terminal Deno asks the user first, as it would for any
 * file call; without one there is no one to ask.
 *
 * @returns The line to print, or undefined when both are granted.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { missingFolderPermission } from "../protocol.ts";
 *
 * const folder = await Deno.makeTempDir();
 * assert.equal(await missingFolderPermission(folder), undefined);
 * await Deno.remove(folder);
 * ```
 */
export async function missingFolderPermission(out: string): Promise<string | undefined> {
  const ask = Deno.stdin.isTerminal() && Deno.stderr.isTerminal();
  for (const name of ["read", "write"] as const) {
    const descriptor = { name, path: out };
    const { state } = ask
      ? await Deno.permissions.request(descriptor)
      : await Deno.permissions.query(descriptor);
    if (state !== "granted") {
      return `Missing ${name} permission for ${out}: add --allow-read=${out} --allow-write=${out}`;
    }
  }
  return undefined;
}
