/**
 * The frames and answers beyond the tutorial's: acknowledgements, queries and tokens.
 *
 * @module
 */
import { ProtocolError } from "./errors.ts";
import { checkName } from "./name.ts";
import { checkPath } from "./path.ts";
import { frameWith, isMarked, markerField } from "./frame.ts";
import { quoteBytes } from "../lib/format.ts";

const encoder = new TextEncoder();
const utf8 = new TextDecoder();

/**
 * Longest acknowledgement line accepted, newline included.
 *
 * @example Acknowledgement limit
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeAck, MAX_ACK_SIZE } from "../protocol.ts";
 *
 * assert.ok(encodeAck({ ok: false, message: "x".repeat(5000) }).length <= MAX_ACK_SIZE);
 * ```
 */
export const MAX_ACK_SIZE = 1024;

/**
 * A server's answer to one frame.
 *
 * @example Read an answer
 * ```ts
 * import assert from "node:assert/strict";
 * import { type Ack, parseAck } from "../protocol.ts";
 *
 * const ack: Ack = parseAck(new TextEncoder().encode("OK 3 0000abcd a.bin"));
 * assert.equal(ack.ok && ack.file, "a.bin");
 * ```
 */
export type Ack =
  | {
    /** The file is complete under its final name. */
    ok: true;
    /** The file name it was saved under, inside the output folder. */
    file: string;
    /** Bytes saved: the file's data, or with `--raw` the frame body. */
    bytes: number;
    /** CRC-32 (as zlib computes it) of those bytes. */
    crc32: number;
  }
  | {
    /** The frame was refused and nothing was saved. */
    ok: false;
    /** Why, in one line. */
    message: string;
  };

/**
 * Encodes an acknowledgement line: `OK <bytes> <crc32> <file>\n`, the
 * CRC-32 as 8 hex digits, or `ERR <message>\n`; at most
 * {@linkcode MAX_ACK_SIZE} bytes.
 *
 * @param ack The answer to send.
 * @returns The line's bytes.
 *
 * @example Encode both kinds
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeAck } from "../protocol.ts";
 *
 * const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
 * const saved = encodeAck({ ok: true, file: "cat.jpg", bytes: 42, crc32: 0xbeef });
 * assert.equal(text(saved), "OK 42 0000beef cat.jpg\n");
 * assert.equal(text(encodeAck({ ok: false, message: "File exists\nreally" })), "ERR File exists really\n");
 * ```
 */
export function encodeAck(ack: Ack): Uint8Array {
  const line = ack.ok
    ? `OK ${ack.bytes} ${(ack.crc32 >>> 0).toString(16).padStart(8, "0")} ${ack.file}`
    : `ERR ${ack.message}`;
  const bytes = encoder.encode(line.replace(/[\r\n]+/g, " "));
  // Cutting may split a UTF-8 character; parseAck decodes leniently.
  const cut = bytes.subarray(0, MAX_ACK_SIZE - 1);
  const out = new Uint8Array(cut.length + 1);
  out.set(cut);
  out[cut.length] = 0x0a;
  return out;
}

/**
 * Parses one acknowledgement line, without its newline.
 *
 * @param line The line's bytes.
 * @returns The answer.
 * @throws {SyntaxError} If the line is neither form.
 *
 * @example Parse both kinds
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseAck } from "../protocol.ts";
 *
 * const bytes = (text: string) => new TextEncoder().encode(text);
 * assert.deepEqual(parseAck(bytes("OK 42 0000beef cat.jpg")), {
 *   ok: true,
 *   bytes: 42,
 *   crc32: 0xbeef,
 *   file: "cat.jpg",
 * });
 * assert.deepEqual(parseAck(bytes("ERR Disk full")), { ok: false, message: "Disk full" });
 * assert.throws(() => parseAck(bytes("HELLO")), SyntaxError);
 * ```
 */
export function parseAck(line: Uint8Array): Ack {
  const text = utf8.decode(line);
  const ok = /^OK (0|[1-9][0-9]{0,15}) ([0-9a-f]{8}) (.+)$/.exec(text);
  if (ok) return { ok: true, bytes: Number(ok[1]), crc32: parseInt(ok[2], 16), file: ok[3] };
  if (text.startsWith("ERR ")) return { ok: false, message: text.slice(4) };
  throw new SyntaxError(
    `Cannot parse acknowledgement: expected OK or ERR, got ${quoteBytes(line)}`,
  );
}

/**
 * The opening words of the refusals a client acts on, as a server writes
 * them at the start of an `ERR` line: the wire's codes, kept in one place
 * for both sides.
 *
 * @example Write a refusal
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeAck, REFUSALS } from "../protocol.ts";
 *
 * const line = encodeAck({ ok: false, message: `${REFUSALS.busy}: 256 frames in progress` });
 * assert.equal(new TextDecoder().decode(line), "ERR Server busy: 256 frames in progress\n");
 * ```
 */
export const REFUSALS = {
  /** No turn came within the queue deadline, or the server ran out of files: try again. */
  busy: "Server busy",
  /** The server wants a token first, and closes the connection after saying so. */
  auth: "Authentication required",
} as const;

/**
 * Which of the {@linkcode REFUSALS} an `ERR` line is, or `other`.
 *
 * @example
 * ```ts
 * import type { Refusal } from "../protocol.ts";
 *
 * const retry: Refusal = "busy";
 * ```
 */
export type Refusal = keyof typeof REFUSALS | "other";

/**
 * Tells which refusal an `ERR` answer's message is.
 *
 * @param message The message of a refused {@linkcode Ack}.
 * @returns Its kind.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { refusalOf } from "../protocol.ts";
 *
 * assert.equal(refusalOf("Server busy: no turn within 30 s: 256 frames in progress"), "busy");
 * assert.equal(refusalOf("Invalid name: it is empty"), "other");
 * ```
 */
export function refusalOf(message: string): Refusal {
  for (const [kind, words] of Object.entries(REFUSALS)) {
    if (message.startsWith(`${words}:`)) return kind as Refusal;
  }
  return "other";
}

const QUERY_FIELD = markerField("?");
const TOKEN_FIELD = markerField("!");
// A name starting with ? is refused for files, so no file's field can be this one.
const HELLO_FIELD = markerField("?+");

/**
 * Options for {@linkcode encodeQuery} and {@linkcode parseQuery}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeQuery, parseQuery, type QueryOptions } from "../protocol.ts";
 *
 * const options: QueryOptions = { paths: true };
 * const data = encodeQuery("cat/0001.jpg", 42, options).subarray(48);
 * assert.equal(parseQuery(Uint8Array.fromBase64(new TextDecoder().decode(data)), options).name, "cat/0001.jpg");
 * ```
 */
export interface QueryOptions {
  /**
   * The name is a path relative to the output folder, as a connection that
   * agreed to {@linkcode PATHS} asks, held to the path rules rather than the name rules.
   * @default {false}
   */
  paths?: boolean;
}

/**
 * Encodes a query frame asking our server whether it already holds a file:
 * a frame whose name field is `?` and whose data is `<bytes> <name>`. The
 * server answers it in order with the other frames (see
 * {@linkcode encodeHave}); the original server would store it as a file.
 *
 * @param name The name the file would be sent under, or its path.
 * @param bytes The file's size.
 * @param options Whether `name` is a path, on a connection that agreed to paths.
 * @returns The frame.
 *
 * @example Encode a query
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeQuery, isQuery } from "../protocol.ts";
 *
 * const frame = encodeQuery("cat", 42);
 * assert.ok(isQuery(frame.subarray(16, 48)));
 * ```
 */
export function encodeQuery(name: string, bytes: number, options: QueryOptions = {}): Uint8Array {
  if (options.paths) checkPath(name);
  else checkName(name);
  return frameWith(QUERY_FIELD, encoder.encode(`${bytes} ${name}`));
}

/**
 * Tells whether a name field marks a query frame.
 *
 * @param nameField The 32 bytes after the header.
 * @returns True for `?` followed by NUL padding.
 *
 * @example Tell a query from a file
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeName, isQuery } from "../protocol.ts";
 *
 * assert.equal(isQuery(encodeName("cat")), false);
 * ```
 */
export function isQuery(nameField: Uint8Array): boolean {
  return isMarked(nameField, QUERY_FIELD);
}

/**
 * Reads a shared token from a file: its first line without surrounding
 * whitespace, read alike by server and client so that the two agree.
 *
 * @param path The token file.
 * @returns The token.
 *
 * @example Read a token file
 * ```ts
 * import assert from "node:assert/strict";
 * import { readTokenFile } from "../protocol.ts";
 *
 * const path = await Deno.makeTempFile();
 * await Deno.writeTextFile(path, "correct horse battery\r\nsecond line\n");
 * assert.equal(await readTokenFile(path), "correct horse battery");
 * await Deno.remove(path);
 * ```
 */
export async function readTokenFile(path: string): Promise<string> {
  return (await Deno.readTextFile(path)).split("\n")[0].trim();
}

/**
 * Encodes the frame that proves a client knows the server's shared token: a
 * frame whose name field is `!` and whose data is the token. A server with
 * `--token-file` wants it first on every connection and answers it like a
 * file (`OK 0 00000000 !`, or `ERR` and a closed connection).
 *
 * @param token The shared token.
 * @returns The frame.
 *
 * @example Encode a token frame
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeToken, isToken } from "../protocol.ts";
 *
 * assert.ok(isToken(encodeToken("correct horse battery").subarray(16, 48)));
 * ```
 */
export function encodeToken(token: string): Uint8Array {
  return frameWith(TOKEN_FIELD, encoder.encode(token));
}

/**
 * Tells whether a name field marks a token frame.
 *
 * @param nameField The 32 bytes after the header.
 * @returns True for `!` followed by NUL padding.
 *
 * @example Tell a token from a file
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeName, isToken } from "../protocol.ts";
 *
 * assert.equal(isToken(encodeName("cat")), false);
 * ```
 */
export function isToken(nameField: Uint8Array): boolean {
  return isMarked(nameField, TOKEN_FIELD);
}

/**
 * Parses the decoded data of a query frame.
 *
 * @param data The query's data: `<bytes> <name>`.
 * @param options Whether the name is a path.
 * @returns The name and size asked about.
 * @throws {ProtocolError} `name`, for anything else.
 *
 * @example Parse a query
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseQuery } from "../protocol.ts";
 *
 * assert.deepEqual(parseQuery(new TextEncoder().encode("42 cat")), { bytes: 42, name: "cat" });
 * ```
 */
export function parseQuery(
  data: Uint8Array,
  options: QueryOptions = {},
): { name: string; bytes: number } {
  const match = /^(0|[1-9][0-9]{0,15}) (.+)$/.exec(utf8.decode(data));
  if (!match) {
    throw new ProtocolError(
      "name",
      `Invalid query: expected <bytes> <name>, got ${quoteBytes(data)}`,
    );
  }
  if (options.paths) checkPath(match[2]);
  else checkName(match[2]);
  return { bytes: Number(match[1]), name: match[2] };
}

/**
 * What the server holds under a queried name, as {@linkcode encodeHave} reports it.
 *
 * @example Carry a held file through an answer
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeHave, type Held, parseHave } from "../protocol.ts";
 *
 * const held: Held = { file: "cat.jpg", bytes: 52_101, crc32: 0x1c291ca3 };
 * const line = encodeHave(held);
 * // The answer ends with a newline, which parseHave() is given without.
 * assert.deepEqual(parseHave(line.subarray(0, -1)), held);
 * ```
 */
export interface Held {
  /** The file's name in the output folder. */
  file: string;
  /** Its size. */
  bytes: number;
  /** Its CRC-32. */
  crc32: number;
}

/**
 * Encodes the answer to a query: `HAVE <bytes> <crc32> <file>\n` or `NONE\n`.
 *
 * @param held The file held under that name and size, or undefined.
 * @returns The answer line.
 *
 * @example Encode both answers
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeHave } from "../protocol.ts";
 *
 * const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
 * assert.equal(text(encodeHave({ file: "cat.jpg", bytes: 42, crc32: 255 })), "HAVE 42 000000ff cat.jpg\n");
 * assert.equal(text(encodeHave(undefined)), "NONE\n");
 * ```
 */
export function encodeHave(held: Held | undefined): Uint8Array {
  return encoder.encode(
    held
      ? `HAVE ${held.bytes} ${(held.crc32 >>> 0).toString(16).padStart(8, "0")} ${held.file}\n`
      : "NONE\n",
  );
}

/**
 * Parses the answer to a query, without its newline.
 *
 * @param line The line's bytes.
 * @returns What the server holds, or undefined for `NONE`.
 * @throws {ProtocolError} With code `refused` and the server's reason, if the
 * server answers no queries (`ERR <reason>`, as a `--raw` server does).
 * @throws {SyntaxError} If the line is none of these answers.
 *
 * @example Parse an answer
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseHave, ProtocolError } from "../protocol.ts";
 *
 * const bytes = (text: string) => new TextEncoder().encode(text);
 * assert.deepEqual(parseHave(bytes("HAVE 42 000000ff cat.jpg")), { bytes: 42, crc32: 255, file: "cat.jpg" });
 * assert.equal(parseHave(bytes("NONE")), undefined);
 * assert.throws(
 *   () => parseHave(bytes("ERR Cannot answer a query: no names kept")),
 *   (error) => error instanceof ProtocolError && error.code === "refused",
 * );
 * ```
 */
export function parseHave(line: Uint8Array): Held | undefined {
  const text = utf8.decode(line);
  if (text === "NONE") return undefined;
  if (text.startsWith("ERR ")) throw new ProtocolError("refused", text.slice(4));
  const have = /^HAVE (0|[1-9][0-9]{0,15}) ([0-9a-f]{8}) (.+)$/.exec(text);
  if (!have) {
    throw new SyntaxError(
      `Cannot parse the answer to a query: expected HAVE, NONE or ERR, got ${quoteBytes(line)}`,
    );
  }
  return { bytes: Number(have[1]), crc32: parseInt(have[2], 16), file: have[3] };
}

/**
 * The capability of raw-byte frames: file data as it is rather than as
 * base64, the body length counting bytes. A connection uses it once both of
 * our peers agree in a hello frame.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { RAW_BYTES } from "../protocol.ts";
 *
 * assert.equal(RAW_BYTES, "raw");
 * ```
 */
export const RAW_BYTES = "raw";

/**
 * Encodes a hello frame: our client's offer of what it can do beyond the
 * tutorial's format, sent once per connection before any file. Its name
 * field is `?+` and NUL padding, and its data the capabilities, separated by
 * spaces. Our server answers `OK 0 00000000 ?+<agreed>`; any other answer
 * agrees to nothing. The original server is never sent one.
 *
 * @param capabilities What the client offers, such as {@linkcode RAW_BYTES}.
 * @returns The frame.
 *
 * @example Offer raw-byte frames
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeHello, isHello, RAW_BYTES } from "../protocol.ts";
 *
 * const frame = encodeHello([RAW_BYTES]);
 * assert.ok(isHello(frame.subarray(16, 48)));
 * ```
 */
export function encodeHello(capabilities: readonly string[]): Uint8Array {
  return frameWith(HELLO_FIELD, encoder.encode(capabilities.join(" ")));
}

/**
 * Tells whether a name field marks a hello frame.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeName, isHello } from "../protocol.ts";
 *
 * assert.equal(isHello(encodeName("cat")), false);
 * ```
 */
export function isHello(nameField: Uint8Array): boolean {
  return isMarked(nameField, HELLO_FIELD);
}

/**
 * The capabilities a hello frame's decoded data offers; unknown ones are
 * kept, for the server to ignore.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseHello } from "../protocol.ts";
 *
 * assert.deepEqual(parseHello(new TextEncoder().encode("raw later")), ["raw", "later"]);
 * ```
 */
export function parseHello(data: Uint8Array): string[] {
  return utf8.decode(data).split(" ").filter(Boolean);
}

/**
 * The answer to a hello frame: what the server agrees to.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeHelloAnswer } from "../protocol.ts";
 *
 * assert.equal(new TextDecoder().decode(encodeHelloAnswer(["raw"])), "OK 0 00000000 ?+raw\n");
 * ```
 */
export function encodeHelloAnswer(agreed: readonly string[]): Uint8Array {
  return encodeAck({ ok: true, file: `?+${agreed.join(" ")}`, bytes: 0, crc32: 0 });
}

/**
 * What a server agreed to in its answer to a hello frame: nothing, unless
 * the answer is our server's.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { agreedIn, parseAck } from "../protocol.ts";
 *
 * const line = (text: string) => parseAck(new TextEncoder().encode(text));
 * assert.deepEqual(agreedIn(line("OK 0 00000000 ?+raw")), ["raw"]);
 * assert.deepEqual(agreedIn(line("ERR Invalid name: it starts with ?")), []);
 * ```
 */
export function agreedIn(ack: Ack): string[] {
  if (!ack.ok || !ack.file.startsWith("?+")) return [];
  return ack.file.slice(2).split(" ").filter(Boolean);
}
