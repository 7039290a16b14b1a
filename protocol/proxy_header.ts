/**
 * The PROXY protocol header that HAProxy (`send-proxy`, `send-proxy-v2`) and
 * other load balancers put before a connection's first byte, so that the
 * server behind them learns the client's address: version 1 (a text line)
 * and version 2 (binary), as HAProxy's public specification defines them.
 *
 * @module
 */
import { quoteBytes } from "../lib/format.ts";
import { ProtocolError } from "./errors.ts";
import { type ByteSource, concatBytes, withDeadline } from "./io.ts";

/** The longest version 1 line, CRLF included, as the specification caps it. */
const V1_MAX = 107;
/** What every version 1 line begins with. */
const V1_PREFIX = new TextEncoder().encode("PROXY ");
/** The twelve bytes every version 2 header begins with. */
const V2_SIGNATURE = new Uint8Array([
  0x0d,
  0x0a,
  0x0d,
  0x0a,
  0x00,
  0x0d,
  0x0a,
  0x51,
  0x55,
  0x49,
  0x54,
  0x0a,
]);
/** Signature, version and command, family, and the length of what follows. */
const V2_FIXED = 16;
/**
 * Most bytes of addresses and TLVs taken after a version 2 header's fixed
 * part: HAProxy's own, with its TLVs, fit in a few hundred.
 */
const V2_MAX_REST = 2048;

/**
 * What a PROXY header said: the client's address, or none when the balancer
 * speaks for itself (a health check: `LOCAL`, `UNKNOWN`); and the bytes read
 * past the header, which belong to the connection's stream.
 *
 * @example
 * ```ts
 * import type { ProxyHeader } from "../protocol.ts";
 *
 * const header: ProxyHeader = {
 *   source: { transport: "tcp", hostname: "192.0.2.7", port: 51234 },
 *   rest: new Uint8Array(),
 * };
 * ```
 */
export interface ProxyHeader {
  source: Deno.NetAddr | undefined;
  rest: Uint8Array;
}

/**
 * Reads the PROXY header, v1 or v2, at the start of a connection, within
 * `ms` and at most 2 KiB, and keeps what was read past it.
 *
 * @returns The header, or null when the connection ended before its first
 * byte, as a balancer's health check that only connects does.
 * @throws {ProtocolError} `header` when the connection does not start with
 * a valid header, `truncated` when it ends inside one, `timeout` when the
 * header takes longer than `ms`.
 *
 * @example Version 1, with the first frame's bytes behind it
 * ```ts
 * import assert from "node:assert/strict";
 * import { bytesSource, readProxyHeader } from "../protocol.ts";
 *
 * const line = "PROXY TCP4 192.0.2.7 198.51.100.1 51234 9999\r\n0000";
 * const header = await readProxyHeader(bytesSource(new TextEncoder().encode(line)), 1000);
 * assert.equal(header?.source?.hostname, "192.0.2.7");
 * assert.equal(header?.source?.port, 51234);
 * assert.equal(new TextDecoder().decode(header?.rest), "0000");
 * ```
 */
export async function readProxyHeader(
  source: ByteSource,
  ms: number,
): Promise<ProxyHeader | null> {
  return await withDeadline(readHeader(source), ms, { waitingFor: "a PROXY header" });
}

async function readHeader(source: ByteSource): Promise<ProxyHeader | null> {
  const bytes = new Accumulated(source);
  const first = new Uint8Array(V1_MAX);
  const n = await source.read(first);
  if (n === null) return null;
  bytes.data = first.subarray(0, n);
  if (bytes.data[0] === V2_SIGNATURE[0]) {
    await bytes.atLeast(V2_FIXED);
    const rest = new DataView(bytes.data.buffer, bytes.data.byteOffset).getUint16(14);
    if (rest > V2_MAX_REST) throw invalid(`version 2 header of ${V2_FIXED + rest} bytes`);
    await bytes.atLeast(V2_FIXED + rest);
    return { source: parseV2(bytes.data), rest: bytes.data.subarray(V2_FIXED + rest) };
  }
  for (;;) {
    // Not a header from its first bytes on: a plain client's frame gets its refusal at once.
    const start = bytes.data.subarray(0, V1_PREFIX.length);
    if (!start.every((byte, i) => byte === V1_PREFIX[i])) throw invalid(quoteBytes(bytes.data));
    const end = bytes.data.indexOf(0x0a);
    if (end >= 0 && end < V1_MAX) {
      return {
        source: parseV1(bytes.data.subarray(0, end + 1)),
        rest: bytes.data.subarray(end + 1),
      };
    }
    if (bytes.data.length >= V1_MAX) throw invalid(quoteBytes(bytes.data.subarray(0, V1_MAX)));
    await bytes.atLeast(bytes.data.length + 1);
  }
}

/** The bytes read so far from a source, read further on demand. */
class Accumulated {
  readonly #source: ByteSource;
  data: Uint8Array = new Uint8Array();

  constructor(source: ByteSource) {
    this.#source = source;
  }

  /** Reads until at least `count` bytes are there. */
  async atLeast(count: number): Promise<void> {
    const buffer = new Uint8Array(V1_MAX + V2_FIXED + V2_MAX_REST);
    while (this.data.length < count) {
      const n = await this.#source.read(buffer);
      if (n === null) {
        throw new ProtocolError(
          "truncated",
          `Connection ended inside a PROXY header: ${this.data.length} bytes`,
        );
      }
      this.data = concatBytes([this.data, buffer.subarray(0, n)]);
    }
  }
}

function invalid(detail: string): ProtocolError {
  return new ProtocolError("header", `Invalid PROXY header: ${detail}`);
}

/** `PROXY TCP4|TCP6 src dst sport dport\r\n`, or `PROXY UNKNOWN …\r\n`. */
function parseV1(line: Uint8Array): Deno.NetAddr | undefined {
  const text = new TextDecoder().decode(line);
  const fields = text.endsWith("\r\n") ? text.slice(0, -2).split(" ") : [];
  if (fields[0] !== "PROXY") throw invalid(quoteBytes(line));
  if (fields[1] === "UNKNOWN") return undefined;
  const [, family, hostname, , sport, dport] = fields;
  const ip = family === "TCP4" ? IPV4 : family === "TCP6" ? IPV6 : undefined;
  if (fields.length !== 6 || !ip?.test(hostname) || !ip.test(fields[3])) {
    throw invalid(quoteBytes(line));
  }
  parsePort(dport, line);
  return { transport: "tcp", hostname, port: parsePort(sport, line) };
}

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
const IPV6 = /^[0-9a-fA-F:.]{2,45}$/;

/** A port as version 1 writes it: 0 to 65535, without leading zeros. */
function parsePort(text: string, line: Uint8Array): number {
  const port = /^(0|[1-9]\d{0,4})$/.test(text) ? Number(text) : NaN;
  if (!(port <= 65535)) throw invalid(quoteBytes(line));
  return port;
}

/** The binary header: version 2, command LOCAL or PROXY, TCP over IPv4 or IPv6. */
function parseV2(header: Uint8Array): Deno.NetAddr | undefined {
  if (!V2_SIGNATURE.every((byte, i) => header[i] === byte)) {
    throw invalid(quoteBytes(header.subarray(0, V2_FIXED)));
  }
  const version = header[12] >> 4;
  const command = header[12] & 0x0f;
  if (version !== 2 || command > 1) {
    throw invalid(`version ${version}, command ${command}`);
  }
  // LOCAL: the balancer's own connection, such as a health check.
  if (command === 0) return undefined;
  const view = new DataView(header.buffer, header.byteOffset);
  const length = view.getUint16(14);
  const family = header[13];
  if (family === 0x11 && length >= 12) {
    return {
      transport: "tcp",
      hostname: header.subarray(16, 20).join("."),
      port: view.getUint16(24),
    };
  }
  if (family === 0x21 && length >= 36) {
    const groups = Array.from({ length: 8 }, (_, i) => view.getUint16(16 + 2 * i).toString(16));
    return { transport: "tcp", hostname: groups.join(":"), port: view.getUint16(48) };
  }
  // UNSPEC or a transport we do not serve: the connection's own address stands.
  if (family === 0x00) return undefined;
  throw invalid(`family and transport 0x${family.toString(16).padStart(2, "0")}`);
}

/**
 * A connection whose remote address is the one a PROXY header gave, and
 * whose stream starts with the bytes read past the header: the server then
 * sees the client, not the balancer, in `--allow`, its per-address caps and
 * its log.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ProxiedConn } from "../protocol.ts";
 *
 * using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * using client = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
 * const source = { transport: "tcp" as const, hostname: "192.0.2.7", port: 51234 };
 * using conn = new ProxiedConn(await listener.accept(), {
 *   source,
 *   rest: new TextEncoder().encode("ab"),
 * });
 * assert.equal(conn.remoteAddr.hostname, "192.0.2.7");
 * const buffer = new Uint8Array(8);
 * assert.equal(await conn.read(buffer), 2);
 * await client.write(new Uint8Array([1]));
 * assert.equal(await conn.read(buffer), 1);
 * ```
 */
export class ProxiedConn implements Disposable {
  readonly #conn: Deno.Conn;
  #rest: Uint8Array;
  readonly remoteAddr: Deno.NetAddr;
  readonly localAddr: Deno.NetAddr;

  constructor(conn: Deno.Conn, header: ProxyHeader) {
    this.#conn = conn;
    this.#rest = header.rest;
    this.remoteAddr = header.source ?? conn.remoteAddr as Deno.NetAddr;
    this.localAddr = conn.localAddr as Deno.NetAddr;
  }

  /** Reads the bytes that came with the header first, then the connection's. */
  read(buffer: Uint8Array): Promise<number | null> {
    if (this.#rest.length === 0) return this.#conn.read(buffer);
    const n = Math.min(buffer.length, this.#rest.length);
    buffer.set(this.#rest.subarray(0, n));
    this.#rest = this.#rest.subarray(n);
    return Promise.resolve(n);
  }

  write(bytes: Uint8Array): Promise<number> {
    return this.#conn.write(bytes);
  }

  closeWrite(): Promise<void> {
    return this.#conn.closeWrite();
  }

  /** Answers leave at once, as on any plain connection of the server's. */
  setNoDelay(noDelay = true): void {
    (this.#conn as Deno.TcpConn).setNoDelay(noDelay);
  }

  close(): void {
    this.#conn.close();
  }

  [Symbol.dispose](): void {
    try {
      this.close();
    } catch {
      // Closed already.
    }
  }
}
