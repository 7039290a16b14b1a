/**
 * The wire format shared by the TCP image uploader (`client.ts`) and receiver
 * (`server.ts`), compatible byte for byte with the original Python scripts.
 *
 * A frame is a 16-digit zero-padded decimal header holding the body length L,
 * then the body: a 32-byte name field and the padded standard base64 of the
 * file. Our server answers each frame with one acknowledgement line; the
 * original client never reads it. `PROTOCOL.md` has the full rules.
 *
 * @example Encode a frame and read it back
 * ```ts
 * import assert from "node:assert/strict";
 * import { bytesSource, encodeFrame, FrameReader, parseName } from "./protocol.ts";
 *
 * const frame = encodeFrame("cat", new Uint8Array([1, 2, 3]));
 * const reader = new FrameReader(bytesSource(frame));
 * const head = await reader.readHead();
 * assert.equal(parseName(head!.nameField), "cat");
 * const data = [];
 * for await (const chunk of reader.data()) data.push(...chunk);
 * assert.deepEqual(data, [1, 2, 3]);
 * ```
 *
 * @module
 */
import { crc32 } from "node:zlib";

/**
 * Bytes in the length header.
 *
 * @example Header size
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeHeader, HEADER_SIZE } from "./protocol.ts";
 *
 * assert.equal(encodeHeader(32).length, HEADER_SIZE);
 * ```
 */
export const HEADER_SIZE = 16;

/**
 * Bytes in the name field at the start of every body.
 *
 * @example Name field size
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeName, NAME_SIZE } from "./protocol.ts";
 *
 * assert.equal(encodeName("a").length, NAME_SIZE);
 * ```
 */
export const NAME_SIZE = 32;

/**
 * Longest name a server reads from a body without padding, as the tutorial's
 * client sends whatever its file was called: 255 bytes, a file system's limit
 * for a file name, less the longest `.ext` the server appends.
 *
 * @example Room for the extension
 * ```ts
 * import assert from "node:assert/strict";
 * import { MAX_NAME_BYTES } from "./protocol.ts";
 *
 * assert.equal(MAX_NAME_BYTES + ".tiff".length, 255);
 * ```
 */
export const MAX_NAME_BYTES = 250;

/**
 * Largest payload of one UDP datagram over IPv4.
 *
 * @example Datagram limit
 * ```ts
 * import assert from "node:assert/strict";
 * import { MAX_DATAGRAM_SIZE } from "./protocol.ts";
 *
 * assert.equal(MAX_DATAGRAM_SIZE, 65_535 - 20 - 8);
 * ```
 */
export const MAX_DATAGRAM_SIZE = 65_507;

/**
 * Default largest body length L a server accepts: 512 MiB, about 384 MiB of
 * image.
 *
 * @example Default frame limit
 * ```ts
 * import assert from "node:assert/strict";
 * import { DEFAULT_MAX_FRAME_SIZE, parseByteSize } from "./protocol.ts";
 *
 * assert.equal(DEFAULT_MAX_FRAME_SIZE, parseByteSize("512M"));
 * ```
 */
export const DEFAULT_MAX_FRAME_SIZE = 512 * 1024 * 1024;

/**
 * Longest acknowledgement line accepted, newline included.
 *
 * @example Acknowledgement limit
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeAck, MAX_ACK_SIZE } from "./protocol.ts";
 *
 * assert.ok(encodeAck({ ok: false, message: "x".repeat(5000) }).length <= MAX_ACK_SIZE);
 * ```
 */
export const MAX_ACK_SIZE = 1024;

/**
 * What went wrong in a frame, or why a server refused a query; see
 * {@linkcode ProtocolError}.
 *
 * @example Branch on the code
 * ```ts
 * import assert from "node:assert/strict";
 * import { ProtocolError, type ProtocolErrorCode } from "./protocol.ts";
 *
 * const code: ProtocolErrorCode = new ProtocolError("name", "Invalid name: it is empty").code;
 * assert.equal(code, "name");
 * ```
 */
export type ProtocolErrorCode =
  | "header"
  | "size"
  | "name"
  | "base64"
  | "truncated"
  | "timeout"
  | "idle"
  | "auth"
  | "tls"
  | "refused";

/**
 * A frame or acknowledgement broke the protocol. After a `name` or `base64`
 * error the rest of the body can be skipped and the connection goes on
 * ({@linkcode ProtocolError.recoverable}); after any other the connection is
 * out of step and must be closed.
 *
 * @example Tell a recoverable error from a fatal one
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseHeader, ProtocolError } from "./protocol.ts";
 *
 * try {
 *   parseHeader(new TextEncoder().encode("+000000000000100"));
 *   assert.fail("accepted a plus sign");
 * } catch (error) {
 *   assert.ok(error instanceof ProtocolError);
 *   assert.equal(error.code, "header");
 *   assert.equal(error.recoverable, false);
 * }
 * ```
 */
export class ProtocolError extends Error {
  /** Which rule was broken. */
  readonly code: ProtocolErrorCode;

  /**
   * Creates the error.
   *
   * @param code Which rule was broken.
   * @param message Sentence-case text with the detail after a colon.
   */
  constructor(code: ProtocolErrorCode, message: string) {
    super(message);
    this.name = "ProtocolError";
    this.code = code;
  }

  /** Whether skipping the rest of the body puts the stream back in step. */
  get recoverable(): boolean {
    return this.code === "name" || this.code === "base64";
  }
}

const encoder = new TextEncoder();
const utf8 = new TextDecoder();
// Three times faster than latin1 here; a byte above 0x7f becomes U+FFFD,
// which base64 rejects just the same.
const base64Text = new TextDecoder("utf-8", { ignoreBOM: true });
const strictUtf8 = new TextDecoder("utf-8", { fatal: true });
const DIGIT_0 = 0x30;
const DIGIT_9 = 0x39;

/**
 * Quotes at most 80 bytes of untrusted input for an error message, escaping
 * everything that is not printable ASCII.
 *
 * @param bytes The offending input.
 * @returns A double-quoted string, with `…` after it when cut.
 *
 * @example Quote a request line
 * ```ts
 * import assert from "node:assert/strict";
 * import { quoteBytes } from "./protocol.ts";
 *
 * assert.equal(quoteBytes(new TextEncoder().encode("GET /\r\n")), '"GET /\\r\\n"');
 * ```
 */
export function quoteBytes(bytes: Uint8Array): string {
  const shown = bytes.subarray(0, 80);
  // One character per byte: the decoder named "latin1" is windows-1252,
  // which would show byte 0x97 as U+2014.
  const text = JSON.stringify(String.fromCharCode(...shown)).replace(
    /[^\x20-\x7e]/g,
    (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`,
  );
  return bytes.length > shown.length ? `${text}…` : text;
}

/**
 * Encodes a body length as the 16-digit zero-padded header.
 *
 * @param bodyLength Bytes in the body: 32 for the name plus the base64 length.
 * @returns The 16 header bytes.
 * @throws {RangeError} If the length is not a whole number from 32 to 10^16 - 1.
 *
 * @example Encode a header
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeHeader } from "./protocol.ts";
 *
 * assert.equal(new TextDecoder().decode(encodeHeader(1234)), "0000000000001234");
 * ```
 */
export function encodeHeader(bodyLength: number): Uint8Array {
  if (
    !Number.isSafeInteger(bodyLength) || bodyLength < NAME_SIZE ||
    bodyLength >= 10 ** HEADER_SIZE
  ) {
    throw new RangeError(`Cannot encode header: invalid body length ${bodyLength}`);
  }
  return encoder.encode(String(bodyLength).padStart(HEADER_SIZE, "0"));
}

/**
 * Returns the index of the first byte in `bytes` that is not an ASCII digit,
 * or -1.
 */
function firstNonDigit(bytes: Uint8Array): number {
  return bytes.findIndex((byte) => byte < DIGIT_0 || byte > DIGIT_9);
}

/**
 * Parses a 16-byte header strictly: exactly sixteen ASCII digits, nothing
 * else, checked against the limit before the caller allocates anything.
 *
 * @param header The 16 header bytes.
 * @param maxFrameSize The largest body length accepted.
 * @returns The body length L.
 * @throws {ProtocolError} `header` for anything but 16 digits or L = 0,
 * `size` for L above the limit. A body shorter than the 32-byte name field
 * is allowed: the tutorial's client sends short names unpadded.
 *
 * @example Parse a header
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseHeader } from "./protocol.ts";
 *
 * const header = new TextEncoder().encode("0000000000000100");
 * assert.equal(parseHeader(header), 100);
 * assert.throws(() => parseHeader(header, 99), /exceeds the limit/);
 * ```
 */
export function parseHeader(
  header: Uint8Array,
  maxFrameSize: number = DEFAULT_MAX_FRAME_SIZE,
): number {
  if (isTlsRecord(header, TLS_HANDSHAKE)) {
    throw new ProtocolError(
      "tls",
      "Cannot parse header: a TLS handshake, and this server does not speak TLS",
    );
  }
  if (header.length !== HEADER_SIZE || firstNonDigit(header) !== -1) {
    throw new ProtocolError(
      "header",
      `Cannot parse header: expected 16 digits, got ${quoteBytes(header)}`,
    );
  }
  // Number() is safe here: the bytes are known to be digits only.
  const bodyLength = Number(String.fromCharCode(...header));
  if (bodyLength === 0) {
    throw new ProtocolError(
      "header",
      "Cannot parse header: body length 0 leaves no room for a name",
    );
  }
  if (bodyLength > maxFrameSize) {
    throw new ProtocolError(
      "size",
      `Frame too large: body length ${bodyLength} exceeds the limit of ${maxFrameSize}`,
    );
  }
  return bodyLength;
}

/** TLS record types: what a TLS client sends first, and what a TLS server answers strangers. */
const TLS_HANDSHAKE = 0x16;
const TLS_ALERT = 0x15;

/** Whether the bytes begin a TLS record of that type (version 3.x), never a frame or an answer. */
function isTlsRecord(bytes: Uint8Array, type: number): boolean {
  return bytes.length >= 2 && bytes[0] === type && bytes[1] === 0x03;
}

/**
 * Checks that a name is safe as a single file name inside an output folder
 * and fits the name field.
 *
 * @param name The name, without extension.
 * @param maxBytes The longest name allowed, in bytes.
 * @returns The name's UTF-8 bytes.
 * @throws {ProtocolError} `name`, saying which rule the name breaks.
 */
function checkName(name: string, maxBytes = NAME_SIZE): Uint8Array {
  const bytes = encoder.encode(name);
  const problem = name === ""
    ? "it is empty"
    : bytes.length > maxBytes
    ? `it is ${bytes.length} bytes, more than ${maxBytes}`
    // deno-lint-ignore no-control-regex
    : /[\x00-\x1f\x7f-\x9f]/.test(name)
    ? "it contains a control character"
    : /[/\\]/.test(name)
    ? "it contains a slash or backslash"
    : name.startsWith(".")
    ? "it starts with a dot"
    : name.startsWith("?")
    ? "it starts with ?, which marks a query"
    : name.startsWith("!")
    ? "it starts with !, which marks a token"
    : name.endsWith(" ")
    ? "it ends with a space"
    : !name.isWellFormed() || name.includes("\ufffd")
    ? "it is not valid UTF-8"
    : undefined;
  if (problem !== undefined) {
    throw new ProtocolError(
      "name",
      `Invalid name: ${problem}: ${quoteBytes(bytes)}`,
    );
  }
  return bytes;
}

/**
 * Encodes a name into the 32-byte name field, padded on the right with NUL
 * bytes. A name that does not fit is refused, never cut.
 *
 * @param name A file name without extension: at most 32 bytes of UTF-8, no
 * slash, backslash, control character, leading `.`, `?` or `!`, no trailing space.
 * @returns The 32-byte name field.
 * @throws {ProtocolError} `name`, when the name breaks a rule.
 *
 * @example Pad a short name
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeName } from "./protocol.ts";
 *
 * const field = encodeName("猫");
 * assert.deepEqual([...field.subarray(0, 4)], [0xe7, 0x8c, 0xab, 0]);
 * assert.throws(() => encodeName("x".repeat(33)), /more than 32/);
 * ```
 */
export function encodeName(name: string): Uint8Array {
  const field = new Uint8Array(NAME_SIZE);
  field.set(checkName(name));
  return field;
}

/**
 * Decodes and checks a name as {@linkcode FrameReader.readHead} found it. A
 * 32-byte field is the UTF-8 name, then NUL padding to the end; a name of
 * exactly 32 bytes, as the original client's 32 hex characters, has none.
 * A field of any other length is a name the tutorial's client sent unpadded
 * (see {@linkcode splitName}), up to {@linkcode MAX_NAME_BYTES}; an empty one
 * means no name could be told from the data.
 *
 * @param field The name bytes at the start of the body.
 * @returns The name, safe to use as a file name inside the output folder.
 * @throws {ProtocolError} `name`, when the field is not a safe name.
 *
 * @example Decode a padded field and an unpadded name
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeName, parseName } from "./protocol.ts";
 *
 * assert.equal(parseName(encodeName("0123abcd")), "0123abcd");
 * assert.equal(parseName(new TextEncoder().encode("IMG_20240501_123456_HDR_portrait")), "IMG_20240501_123456_HDR_portrait");
 * assert.throws(() => parseName(new TextEncoder().encode("../".repeat(10) + "ab")), /slash/);
 * ```
 */
export function parseName(field: Uint8Array): string {
  if (field.length === 0) {
    throw new ProtocolError(
      "name",
      "Invalid name: none found: no split of the body gives a name and then an image",
    );
  }
  if (field.length > MAX_NAME_BYTES) {
    throw new RangeError(`Cannot parse name: ${field.length} bytes, more than ${MAX_NAME_BYTES}`);
  }
  const nul = field.indexOf(0);
  const padded = field.length === NAME_SIZE && nul !== -1 &&
    field.subarray(nul).every((byte) => byte === 0);
  if (nul !== -1 && !padded) {
    throw new ProtocolError(
      "name",
      `Invalid name: it contains a NUL byte: ${quoteBytes(field)}`,
    );
  }
  const nameBytes = padded ? field.subarray(0, nul) : field;
  let name: string;
  try {
    name = strictUtf8.decode(nameBytes);
  } catch {
    throw new ProtocolError(
      "name",
      `Invalid name: it is not valid UTF-8: ${quoteBytes(nameBytes)}`,
    );
  }
  checkName(name, MAX_NAME_BYTES);
  return name;
}

/** First base64 characters of the signatures {@linkcode sniffExtension} knows: `/9j/`, `iVBO`, … */
const SIGNATURE_STARTS = new Set([..."/iRUQSTA"].map((c) => c.charCodeAt(0)));

/** Base64 characters of data that {@linkcode splitName} decodes to look for a signature. */
const SIGNATURE_CHARS = 16;

/**
 * Body bytes {@linkcode FrameReader.readHead} reads at most before it splits
 * name from data: the longest name and the data's first characters.
 */
const NAME_LOOKAHEAD = MAX_NAME_BYTES + SIGNATURE_CHARS;

/**
 * How much an image signature at the start of the data says: BMP's two bytes
 * `BM` are often found by chance, the others' four or more are not.
 */
function signatureWeight(data: Uint8Array): number {
  // Every signature's base64 starts with one of these ("A" is a HEIF box's
  // size): most splits are ruled out before a string is made.
  if (!SIGNATURE_STARTS.has(data[0])) return 0;
  let head: Uint8Array;
  try {
    head = Uint8Array.fromBase64(String.fromCharCode(...data), { lastChunkHandling: "strict" });
  } catch {
    return 0;
  }
  const extension = sniffExtension(head);
  return extension === "bin" ? 0 : extension === "bmp" ? 1 : 2;
}

/** Whether the bytes are a name the server would save under. */
function isValidName(bytes: Uint8Array): boolean {
  try {
    parseName(bytes);
    return true;
  } catch {
    return false;
  }
}

/**
 * Where a body's name ends and how long its data is, as
 * {@linkcode splitName} tells them.
 *
 * @example A padded field
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeFrame, type NameSplit, splitName } from "./protocol.ts";
 *
 * const body = encodeFrame("a", new Uint8Array(3)).subarray(16);
 * const split: NameSplit = splitName(body, body.length);
 * assert.deepEqual(split, { nameLength: 32, dataLength: 4 });
 * ```
 */
export interface NameSplit {
  /** Bytes of name at the start of the body. */
  nameLength: number;
  /** Bytes of base64 after it. */
  dataLength: number;
}

/**
 * Tells where the name ends in a body, as a person reading it would. Our
 * client pads every name to 32 bytes with NUL; the tutorial's client sends
 * `rstrip('.jpg')` of whatever its file was called, 1 byte or 200, unpadded,
 * and counts it in L with Python 3's `len()`, in characters: a Chinese name's
 * body runs past L by the bytes its characters have beyond their first.
 *
 * 1. A NUL in the first 32 bytes: a padded 32-byte field, as always.
 * 2. Otherwise each split at a character boundary whose data length (L less
 *    the name's characters; less its bytes for a full 32-byte field, as our
 *    client counts) is a multiple of 4, as base64's is, and whose data's first
 *    16 characters decode to a known image signature: a valid name before an
 *    invalid one (which the server then refuses for what it is), a strong
 *    signature before BMP's two bytes, then the shortest name. A JPEG's data
 *    starts `/9j/`, so no longer valid name can swallow it (a name has no
 *    slash).
 * 3. None: the first 32 bytes, as the original server's data set had it, or,
 *    in a body shorter than that, no name at all (length 0).
 *
 * @param prefix The body's first bytes, as many as have arrived: a split whose
 * signature has not arrived yet is not seen.
 * @param bodyLength L, the body length from the header.
 * @returns The name's length and the data's, in bytes.
 *
 * @example Split the tutorial client's frame for IMG_0001.jpg
 * ```ts
 * import assert from "node:assert/strict";
 * import { splitName } from "./protocol.ts";
 *
 * const body = new TextEncoder().encode("IMG_0001" + "/9j/4AAQSkZJRgABAQAAAQAB");
 * assert.deepEqual(splitName(body, body.length), { nameLength: 8, dataLength: 24 });
 * ```
 */
export function splitName(prefix: Uint8Array, bodyLength: number): NameSplit {
  const fixed = { nameLength: NAME_SIZE, dataLength: bodyLength - NAME_SIZE };
  if (bodyLength >= NAME_SIZE && prefix.subarray(0, NAME_SIZE).includes(0)) return fixed;
  // Each split ranks by name validity, then signature weight: 2 + 2 beats all.
  let best: NameSplit | undefined;
  let bestRank = 0;
  let characters = 0;
  const longest = Math.min(MAX_NAME_BYTES, prefix.length);
  for (let n = 1; n <= longest && bestRank < 4; n++) {
    // A name never holds a NUL: no longer split can be one.
    if (prefix[n - 1] === 0) break;
    if (!isContinuation(prefix[n - 1])) characters++;
    if (isContinuation(prefix[n])) continue;
    const dataLength = bodyLength - (n === NAME_SIZE ? n : characters);
    const seen = Math.min(dataLength, SIGNATURE_CHARS);
    if (dataLength < 0 || dataLength % 4 !== 0 || n + seen > prefix.length) continue;
    const weight = signatureWeight(prefix.subarray(n, n + seen));
    if (weight === 0) continue;
    const rank = (isValidName(prefix.subarray(0, n)) ? 2 : 0) + weight;
    if (rank > bestRank) [best, bestRank] = [{ nameLength: n, dataLength }, rank];
  }
  return best ?? (bodyLength >= NAME_SIZE ? fixed : { nameLength: 0, dataLength: bodyLength });
}

/** Whether a byte continues a UTF-8 character rather than starting one. */
function isContinuation(byte: number | undefined): boolean {
  return byte !== undefined && (byte & 0xc0) === 0x80;
}

/**
 * Body bytes worth having before {@linkcode splitName}: a name and its data's
 * first characters, and for an unpadded name with characters of several bytes,
 * as many more as those add beyond L.
 *
 * @param prefix The body's first bytes so far.
 * @param bodyLength L.
 */
function lookahead(prefix: Uint8Array, bodyLength: number): number {
  if (bodyLength >= NAME_SIZE && prefix.subarray(0, NAME_SIZE).includes(0)) {
    return Math.min(bodyLength, NAME_SIZE + SIGNATURE_CHARS);
  }
  let extra = 0;
  for (let i = 0; i < Math.min(prefix.length, MAX_NAME_BYTES); i++) {
    if (isContinuation(prefix[i])) extra++;
  }
  return Math.min(bodyLength + extra, NAME_LOOKAHEAD);
}

/**
 * Returns the length of the padded base64 encoding of `byteLength` bytes.
 *
 * @param byteLength Bytes before encoding.
 * @returns Characters after encoding: 4 for every 3 bytes or part of 3.
 *
 * @example Base64 length
 * ```ts
 * import assert from "node:assert/strict";
 * import { base64Length } from "./protocol.ts";
 *
 * assert.deepEqual([0, 1, 3, 4].map(base64Length), [0, 4, 4, 8]);
 * ```
 */
export function base64Length(byteLength: number): number {
  return Math.ceil(byteLength / 3) * 4;
}

/**
 * Encodes a whole frame in memory: header, name field and base64 data.
 * `client.ts` streams large files instead; this suits small ones and tests.
 *
 * @param name The name, as for {@linkcode encodeName}.
 * @param data The file's bytes.
 * @returns The frame, ready to write.
 *
 * @example Encode a frame
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeFrame } from "./protocol.ts";
 *
 * const frame = encodeFrame("a", new Uint8Array([0xff]));
 * assert.equal(frame.length, 16 + 32 + 4);
 * assert.equal(new TextDecoder().decode(frame.subarray(0, 16)), "0000000000000036");
 * ```
 */
export function encodeFrame(name: string, data: Uint8Array): Uint8Array {
  return frameWith(encodeName(name), data);
}

/** Encodes a frame with this name field and data. */
function frameWith(nameField: Uint8Array, data: Uint8Array): Uint8Array {
  const base64 = data.toBase64();
  const frame = new Uint8Array(HEADER_SIZE + NAME_SIZE + base64.length);
  frame.set(encodeHeader(NAME_SIZE + base64.length));
  frame.set(nameField, HEADER_SIZE);
  encoder.encodeInto(base64, frame.subarray(HEADER_SIZE + NAME_SIZE));
  return frame;
}

/**
 * Something bytes can be read from, as `Deno.Conn` and `Deno.FsFile` are.
 *
 * @example A source that is always empty
 * ```ts
 * import assert from "node:assert/strict";
 * import { type ByteSource, FrameReader } from "./protocol.ts";
 *
 * const empty: ByteSource = { read: () => Promise.resolve(null) };
 * assert.equal(await new FrameReader(empty).readHead(), null);
 * ```
 */
export interface ByteSource {
  /**
   * Reads into `buffer`.
   *
   * @param buffer Where to put the bytes.
   * @returns The number of bytes read, or `null` at end of input.
   */
  read(buffer: Uint8Array): Promise<number | null>;
}

/**
 * Wraps bytes in memory as a {@linkcode ByteSource} that returns them in
 * chunks of the given sizes, for tests and for frames kept in memory.
 *
 * @param bytes The bytes to return.
 * @param chunkSizes Sizes of successive reads, cycled; a read never returns
 * more than the buffer holds.
 * @returns A source that ends after the last byte.
 *
 * @example Read one byte at a time
 * ```ts
 * import assert from "node:assert/strict";
 * import { bytesSource } from "./protocol.ts";
 *
 * const source = bytesSource(new Uint8Array([7, 8]), [1]);
 * const buffer = new Uint8Array(10);
 * assert.equal(await source.read(buffer), 1);
 * assert.equal(await source.read(buffer), 1);
 * assert.equal(await source.read(buffer), null);
 * ```
 */
export function bytesSource(
  bytes: Uint8Array,
  chunkSizes: readonly number[] = [Infinity],
): ByteSource {
  let offset = 0;
  let turn = 0;
  return {
    read(buffer) {
      if (offset >= bytes.length) return Promise.resolve(null);
      const want = Math.max(1, chunkSizes[turn++ % chunkSizes.length]);
      const n = Math.min(want, buffer.length, bytes.length - offset);
      buffer.set(bytes.subarray(offset, offset + n));
      offset += n;
      return Promise.resolve(n);
    },
  };
}

/**
 * Options for {@linkcode withDeadline}.
 *
 * @example Name the wait
 * ```ts
 * import assert from "node:assert/strict";
 * import { type DeadlineOptions, withDeadline } from "./protocol.ts";
 *
 * const options: DeadlineOptions = { waitingFor: "the answer" };
 * await assert.rejects(withDeadline(new Promise(() => {}), 1, options), /the answer/);
 * ```
 */
export interface DeadlineOptions {
  /**
   * What is awaited, for the error message.
   * @default {"a reply"}
   */
  waitingFor?: string;
}

/**
 * Settles like `promise`, or rejects with a `timeout` {@linkcode ProtocolError}
 * once `ms` milliseconds have passed. The timer is always cleared.
 *
 * @param promise The wait to bound.
 * @param ms The deadline in milliseconds; `Infinity` for none.
 * @param options What is awaited, for the message.
 * @returns The value of `promise`.
 *
 * @example Bound a wait
 * ```ts
 * import assert from "node:assert/strict";
 * import { withDeadline } from "./protocol.ts";
 *
 * await assert.rejects(
 *   withDeadline(new Promise(() => {}), 10, { waitingFor: "data" }),
 *   /Timed out waiting for data/,
 * );
 * assert.equal(await withDeadline(Promise.resolve(1), 10), 1);
 * ```
 */
export async function withDeadline<T>(
  promise: Promise<T>,
  ms: number,
  options: DeadlineOptions = {},
): Promise<T> {
  if (ms === Infinity) return await promise;
  const waitingFor = options.waitingFor ?? "a reply";
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () =>
            reject(
              new ProtocolError(
                "timeout",
                `Timed out waiting for ${waitingFor}: nothing for ${formatDuration(ms)}`,
              ),
            ),
          Math.max(0, ms),
        );
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Joins byte arrays into one, so that several frames or answers leave in a
 * single write.
 *
 * @param parts The arrays, in order.
 * @returns A new array holding all of them.
 *
 * @example Join two answers
 * ```ts
 * import assert from "node:assert/strict";
 * import { concatBytes } from "./protocol.ts";
 *
 * assert.deepEqual(
 *   concatBytes([new Uint8Array([1, 2]), new Uint8Array([3])]),
 *   new Uint8Array([1, 2, 3]),
 * );
 * ```
 */
export function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  const joined = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    joined.set(part, offset);
    offset += part.length;
  }
  return joined;
}

/**
 * Closes a connection that may already be closed.
 *
 * @param conn The connection.
 * @returns Nothing; a second close is ignored.
 *
 * @example Close twice
 * ```ts
 * import { closeQuietly } from "./protocol.ts";
 *
 * const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const conn = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
 * closeQuietly(conn);
 * closeQuietly(conn);
 * listener.close();
 * ```
 */
export function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // Already closed.
  }
}

/**
 * Writes all of `bytes`, looping over short writes.
 *
 * @param writer Anything with `write`, such as `Deno.Conn` or `Deno.FsFile`.
 * @param bytes The bytes to write.
 * @returns Once every byte is written.
 *
 * @example Write everything
 * ```ts
 * import assert from "node:assert/strict";
 * import { writeAll } from "./protocol.ts";
 *
 * const seen: number[] = [];
 * // A writer that takes one byte per call.
 * const writer = {
 *   write: (p: Uint8Array) => {
 *     seen.push(p[0]);
 *     return Promise.resolve(1);
 *   },
 * };
 * await writeAll(writer, new Uint8Array([1, 2, 3]));
 * assert.deepEqual(seen, [1, 2, 3]);
 * ```
 */
export async function writeAll(
  writer: { write(p: Uint8Array): Promise<number> },
  bytes: Uint8Array,
): Promise<void> {
  for (let offset = 0; offset < bytes.length;) {
    offset += await writer.write(bytes.subarray(offset));
  }
}

/**
 * Options for {@linkcode FrameReader}.
 *
 * @example A reader with a small frame limit
 * ```ts
 * import assert from "node:assert/strict";
 * import { bytesSource, encodeFrame, FrameReader, type FrameReaderOptions } from "./protocol.ts";
 *
 * const options: FrameReaderOptions = { maxFrameSize: 40, headerTimeout: 1000 };
 * const reader = new FrameReader(bytesSource(encodeFrame("a", new Uint8Array(9))), options);
 * await assert.rejects(reader.readHead(), /exceeds the limit of 40/);
 * ```
 */
export interface FrameReaderOptions {
  /**
   * Largest body length L accepted.
   * @default {DEFAULT_MAX_FRAME_SIZE}
   */
  maxFrameSize?: number;
  /**
   * Milliseconds allowed for the header and name field of a frame to arrive,
   * counted from when {@linkcode FrameReader.readHead} is called.
   * @default {30_000}
   */
  headerTimeout?: number;
  /**
   * Milliseconds allowed without a single byte while reading a body.
   * @default {60_000}
   */
  idleTimeout?: number;
  /**
   * Wait for a frame's first byte without a deadline, and so without a timer,
   * which costs an idle connection more memory than the rest of its reader:
   * the caller bounds that wait by closing the source, as a server sweeping
   * its idle connections does. The header deadline then runs from the first
   * byte.
   * @default {false}
   */
  untimedIdle?: boolean;
  /**
   * Largest size of the read buffer in bytes, a multiple of 4 from 512 up.
   * Waiting for a frame, the buffer is 512 bytes, room for any head. For a
   * body it starts at 64 KiB, or this if smaller, and doubles whenever a read
   * fills it, so only a connection sent more than it takes holds a large one.
   * @default {1_048_576}
   */
  maxBufferSize?: number;
}

/**
 * The start of a frame, as returned by {@linkcode FrameReader.readHead}.
 *
 * @example Lengths in a head
 * ```ts
 * import assert from "node:assert/strict";
 * import { bytesSource, encodeFrame, type FrameHead, FrameReader } from "./protocol.ts";
 *
 * const head: FrameHead | null = await new FrameReader(bytesSource(encodeFrame("a", new Uint8Array(3)))).readHead();
 * assert.deepEqual([head?.bodyLength, head?.dataLength], [36, 4]);
 * ```
 */
export interface FrameHead {
  /** L, the body length from the header. */
  bodyLength: number;
  /**
   * The name as it came, split from the data by {@linkcode splitName}: a
   * 32-byte padded field from our client, or the tutorial client's name of
   * any length; check it with {@linkcode parseName}.
   */
  nameField: Uint8Array;
  /** Bytes of base64 after the name: L - the name's length. */
  dataLength: number;
}

/** Read buffer while waiting for a frame: room for any head, and little for an idle connection. */
const HEAD_BUFFER_SIZE = 512;
/** Read buffer a body starts with, before reads that fill it double it. */
const BODY_BUFFER_SIZE = 65_536;

/**
 * Reads frames from a stream, whatever its chunking, holding at most one
 * read buffer in memory: a body is handed out in decoded chunks, never whole.
 *
 * Call {@linkcode FrameReader.readHead}, then consume the body with
 * {@linkcode FrameReader.data}, {@linkcode FrameReader.raw} or
 * {@linkcode FrameReader.skipBody}, then read the next head. After a
 * `timeout` error a read may still be pending: close the source.
 *
 * @example Read two frames that arrive one byte at a time
 * ```ts
 * import assert from "node:assert/strict";
 * import { bytesSource, encodeFrame, FrameReader, parseName } from "./protocol.ts";
 *
 * const stream = new Uint8Array([...encodeFrame("a", new Uint8Array(5)), ...encodeFrame("b", new Uint8Array(0))]);
 * const reader = new FrameReader(bytesSource(stream, [1]));
 * const names = [];
 * for (let head; (head = await reader.readHead()) !== null;) {
 *   names.push(parseName(head.nameField));
 *   await reader.skipBody();
 * }
 * assert.deepEqual(names, ["a", "b"]);
 * ```
 */
export class FrameReader {
  readonly #source: ByteSource;
  readonly #maxFrameSize: number;
  readonly #headerTimeout: number;
  readonly #idleTimeout: number;
  readonly #maxBufferSize: number;
  readonly #untimedIdle: boolean;
  /** Where a wait for a frame reads, so that the body's buffers can be given up meanwhile. */
  readonly #idleBuffer = new Uint8Array(HEAD_BUFFER_SIZE);
  #buffer = this.#idleBuffer;
  /** Whether a read into the idle buffer is pending. */
  #waiting = false;
  /** Where data() decodes to, made for the first body and dropped with a body's buffer. */
  #decoded: Uint8Array | undefined;
  #start = 0;
  #end = 0;
  #remaining = 0;
  #bytesRead = 0;

  /**
   * Creates a reader.
   *
   * @param source Where the frames come from.
   * @param options Limits and deadlines.
   */
  constructor(source: ByteSource, options: FrameReaderOptions = {}) {
    const maxBufferSize = options.maxBufferSize ?? 1_048_576;
    if (
      !Number.isSafeInteger(maxBufferSize) || maxBufferSize < HEAD_BUFFER_SIZE ||
      maxBufferSize % 4 !== 0
    ) {
      throw new RangeError(
        `Cannot create frame reader: buffer size must be a multiple of 4 from ${HEAD_BUFFER_SIZE} up, got ${maxBufferSize}`,
      );
    }
    this.#source = source;
    this.#maxFrameSize = options.maxFrameSize ?? DEFAULT_MAX_FRAME_SIZE;
    this.#headerTimeout = options.headerTimeout ?? 30_000;
    this.#idleTimeout = options.idleTimeout ?? 60_000;
    this.#maxBufferSize = maxBufferSize;
    this.#untimedIdle = options.untimedIdle ?? false;
  }

  /** Bytes read from the source so far. */
  get bytesRead(): number {
    return this.#bytesRead;
  }

  /** Bytes of the current body not yet consumed. */
  get remaining(): number {
    return this.#remaining;
  }

  /** Bytes the read buffer holds room for: small while waiting for a frame. */
  get bufferSize(): number {
    return this.#buffer.length;
  }

  /**
   * Reads once more into the buffer, compacting it first when full, and
   * growing it after a read that filled it when a body is coming.
   *
   * @returns False at end of input.
   */
  async #fill(ms: number, waitingFor: string, body: boolean): Promise<boolean> {
    // Keep reads large: move the few unconsumed bytes to the front once the
    // free tail is short.
    if (this.#start > 0 && this.#buffer.length - this.#end < this.#buffer.length / 4) {
      this.#buffer.copyWithin(0, this.#start, this.#end);
      this.#end -= this.#start;
      this.#start = 0;
    }
    const room = this.#buffer.length - this.#end;
    const n = await withDeadline(this.#source.read(this.#buffer.subarray(this.#end)), ms, {
      waitingFor,
    });
    if (n === null) return false;
    this.#end += n;
    this.#bytesRead += n;
    // A read that took all the room likely left more waiting, which fewer,
    // larger reads take at less cost.
    if (body && n === room && this.#buffer.length < this.#maxBufferSize) {
      this.#resize(this.#buffer.length * 2);
    }
    return true;
  }

  /** Moves the unconsumed bytes into a buffer of this size, within the limit. */
  #resize(size: number): void {
    const buffer = new Uint8Array(Math.min(size, this.#maxBufferSize));
    buffer.set(this.#buffer.subarray(this.#start, this.#end));
    this.#end -= this.#start;
    this.#start = 0;
    this.#buffer = buffer;
  }

  /**
   * Bytes read from the source and not yet consumed: when at least a head's
   * worth, the next frame has started arriving.
   */
  get buffered(): number {
    return this.#end - this.#start;
  }

  /**
   * Reads the header of the next frame and its name, which it tells from the
   * data with {@linkcode splitName}: it waits for the body's first 266 bytes
   * (the longest name and 16 characters of data), or all of a shorter body,
   * or 48 bytes of a padded one. While it waits
   * with nothing buffered, the reader holds a buffer of 512 bytes only, so an
   * idle connection costs little memory.
   *
   * @returns The frame's head, or `null` when the input ends cleanly between
   * frames.
   * @throws {ProtocolError} `header` or `size` for a bad header as soon as a
   * bad byte arrives; `truncated` when the input ends inside the head;
   * `idle` when no byte arrives before the header deadline, `timeout` when
   * some but not all do.
   */
  async readHead(): Promise<FrameHead | null> {
    if (this.#remaining !== 0) {
      throw new TypeError(
        `Cannot read head: ${this.#remaining} bytes of the previous body are unread`,
      );
    }
    if (this.buffered === 0) {
      this.#start = this.#end = 0;
      if (this.#untimedIdle && !await this.#awaitFrame()) return null;
    }
    const deadline = performance.now() + this.#headerTimeout;
    if (!await this.#fillHead(HEADER_SIZE, deadline)) return null;
    const bodyLength = parseHeader(
      this.#buffer.subarray(this.#start, this.#start + HEADER_SIZE),
      this.#maxFrameSize,
    );
    const body = () => this.#buffer.subarray(this.#start + HEADER_SIZE, this.#end);
    await this.#fillHead(HEADER_SIZE + Math.min(bodyLength, NAME_LOOKAHEAD), deadline);
    // A name counted in characters may need more; its sender may end first.
    await this.#fillHead(HEADER_SIZE + lookahead(body(), bodyLength), deadline, true);
    const { nameLength, dataLength } = splitName(body(), bodyLength);
    const nameStart = this.#start + HEADER_SIZE;
    const nameField = this.#buffer.slice(nameStart, nameStart + nameLength);
    this.#start = nameStart + nameLength;
    this.#remaining = dataLength;
    return { bodyLength, nameField, dataLength };
  }

  /**
   * Waits for a frame's first bytes with no deadline, in the idle buffer, so
   * that {@linkcode FrameReader.release} may give up the body's meanwhile; a
   * body buffer kept gets them, so a client streaming frames reads on in
   * large pieces.
   *
   * @returns False at the end of input.
   */
  async #awaitFrame(): Promise<boolean> {
    this.#waiting = true;
    let n: number | null;
    try {
      // Straight to the source: no timer, view or promise more than the read's own.
      n = await this.#source.read(this.#idleBuffer);
    } finally {
      this.#waiting = false;
    }
    if (n === null) return false;
    if (this.#buffer !== this.#idleBuffer) this.#buffer.set(this.#idleBuffer.subarray(0, n));
    this.#end = n;
    this.#bytesRead += n;
    return true;
  }

  /**
   * Gives up the buffers a body grew while the reader waits for a frame with
   * `untimedIdle`, leaving 512 bytes: a connection that falls idle after a
   * frame then costs as little as one that never sent any. Anywhere else it
   * does nothing.
   */
  release(): void {
    if (!this.#waiting || this.#buffer === this.#idleBuffer) return;
    this.#buffer = this.#idleBuffer;
    this.#decoded = undefined;
  }

  /**
   * Reads until `size` bytes of the head are buffered, checking the header's
   * digits as they come.
   *
   * @param endOk Whether the input may end first, as after a whole frame.
   * @returns False when the input ended first: cleanly before the head began,
   * or, with `endOk`, anywhere.
   */
  async #fillHead(size: number, deadline: number, endOk = false): Promise<boolean> {
    // The buffer, at least 512 bytes, holds any head once compacted.
    if (this.#start + size > this.#buffer.length) {
      this.#buffer.copyWithin(0, this.#start, this.#end);
      this.#end -= this.#start;
      this.#start = 0;
    }
    while (this.buffered < size) {
      const seen = this.#buffer.subarray(
        this.#start,
        this.#start + Math.min(this.buffered, HEADER_SIZE),
      );
      if (firstNonDigit(seen) !== -1) parseHeader(seen);
      let more: boolean;
      try {
        more = await this.#fill(deadline - performance.now(), "a frame header", false);
      } catch (error) {
        if (error instanceof ProtocolError && this.buffered === 0) {
          throw new ProtocolError("idle", "Connection idle: no frame started");
        }
        throw error;
      }
      if (!more) {
        if (this.buffered === 0 || endOk) return false;
        throw new ProtocolError(
          "truncated",
          `Input ended inside a frame header: got ${this.buffered} of ${size} bytes`,
        );
      }
    }
    return true;
  }

  /** Makes at least one body byte available, or throws `truncated`. */
  async #fillBody(): Promise<void> {
    // A body is coming: read it in large pieces, as a head's buffer would not.
    if (this.#buffer.length < BODY_BUFFER_SIZE) this.#resize(BODY_BUFFER_SIZE);
    if (!await this.#fill(this.#idleTimeout, "frame data", true)) {
      throw new ProtocolError(
        "truncated",
        `Input ended inside a frame body: ${this.#remaining} bytes missing`,
      );
    }
  }

  /**
   * Yields the rest of the current body as it arrives, undecoded. Each chunk
   * is a view into the read buffer, valid until the next one is requested.
   *
   * @returns The body's bytes in order.
   * @throws {ProtocolError} `truncated` or `timeout`.
   */
  async *raw(): AsyncGenerator<Uint8Array> {
    while (this.#remaining > 0) {
      if (this.buffered === 0) await this.#fillBody();
      const n = Math.min(this.buffered, this.#remaining);
      const chunk = this.#buffer.subarray(this.#start, this.#start + n);
      this.#start += n;
      this.#remaining -= n;
      yield chunk;
    }
  }

  /**
   * Yields the decoded file data of the current body. The base64 must be
   * standard, padded and canonical, with no whitespace. Each chunk is a view
   * into a reused buffer, valid until the next one is requested.
   *
   * @returns The file's bytes in order.
   * @throws {ProtocolError} `base64` for bad data (recoverable: call
   * {@linkcode FrameReader.skipBody}), `truncated` or `timeout`.
   */
  async *data(): AsyncGenerator<Uint8Array> {
    if (this.#remaining % 4 !== 0) {
      throw new ProtocolError(
        "base64",
        `Cannot decode data: length ${this.#remaining} is not a multiple of 4`,
      );
    }
    let decodedSoFar = 0;
    while (this.#remaining > 0) {
      if (this.buffered < 4) await this.#fillBody();
      const available = Math.min(this.buffered, this.#remaining);
      const n = available - available % 4;
      if (n === 0) continue;
      const last = n === this.#remaining;
      const chunk = this.#buffer.subarray(this.#start, this.#start + n);
      if (this.#decoded === undefined || this.#decoded.length < n / 4 * 3) {
        this.#decoded = new Uint8Array(this.#buffer.length / 4 * 3);
      }
      const written = decodeBase64Chunk(chunk, this.#decoded, last, decodedSoFar);
      this.#start += n;
      this.#remaining -= n;
      decodedSoFar += written;
      yield this.#decoded.subarray(0, written);
    }
  }

  /**
   * Reads and discards the rest of the current body, so the next frame can
   * be read after a recoverable error.
   *
   * @returns Once the body is consumed.
   * @throws {ProtocolError} `truncated` or `timeout`.
   */
  async skipBody(): Promise<void> {
    for await (const _ of this.raw()) { /* discarded */ }
  }
}

const EQUALS = 0x3d;

/**
 * Decodes one chunk of a body's base64 into `out`, refusing whitespace and
 * padding before the last chunk, which `setFromBase64` would accept.
 *
 * @returns The number of bytes decoded.
 */
function decodeBase64Chunk(
  chunk: Uint8Array,
  out: Uint8Array,
  last: boolean,
  offset: number,
): number {
  const padding = last ? (chunk.at(-1) === EQUALS ? 1 : 0) + (chunk.at(-2) === EQUALS ? 1 : 0) : 0;
  const expected = chunk.length / 4 * 3 - padding;
  let written: number;
  try {
    ({ written } = out.setFromBase64(base64Text.decode(chunk), {
      lastChunkHandling: "strict",
    }));
  } catch (error) {
    throw new ProtocolError(
      "base64",
      `Cannot decode data near byte ${offset}: ${(error as Error).message}`,
    );
  }
  // Skipped whitespace or early padding leaves fewer bytes than the length implies.
  if (written !== expected) {
    throw new ProtocolError(
      "base64",
      `Cannot decode data near byte ${offset}: whitespace or padding inside the data`,
    );
  }
  return written;
}

/**
 * A server's answer to one frame.
 *
 * @example Read an answer
 * ```ts
 * import assert from "node:assert/strict";
 * import { type Ack, parseAck } from "./protocol.ts";
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
 * import { encodeAck } from "./protocol.ts";
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
 * import { parseAck } from "./protocol.ts";
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

/** A name field holding one marker character and NUL padding. */
function markerField(marker: string): Uint8Array {
  const field = new Uint8Array(NAME_SIZE);
  field[0] = marker.charCodeAt(0);
  return field;
}

const QUERY_FIELD = markerField("?");
const TOKEN_FIELD = markerField("!");

function isMarked(nameField: Uint8Array, field: Uint8Array): boolean {
  return nameField.length === NAME_SIZE && nameField.every((byte, i) => byte === field[i]);
}

/**
 * Encodes a query frame asking our server whether it already holds a file:
 * a frame whose name field is `?` and whose data is `<bytes> <name>`. The
 * server answers it in order with the other frames (see
 * {@linkcode encodeHave}); the original server would store it as a file.
 *
 * @param name The name the file would be sent under.
 * @param bytes The file's size.
 * @returns The frame.
 *
 * @example Encode a query
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeQuery, isQuery } from "./protocol.ts";
 *
 * const frame = encodeQuery("cat", 42);
 * assert.ok(isQuery(frame.subarray(16, 48)));
 * ```
 */
export function encodeQuery(name: string, bytes: number): Uint8Array {
  checkName(name);
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
 * import { encodeName, isQuery } from "./protocol.ts";
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
 * import { readTokenFile } from "./protocol.ts";
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
 * import { encodeToken, isToken } from "./protocol.ts";
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
 * import { encodeName, isToken } from "./protocol.ts";
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
 * @returns The name and size asked about.
 * @throws {ProtocolError} `name`, for anything else.
 *
 * @example Parse a query
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseQuery } from "./protocol.ts";
 *
 * assert.deepEqual(parseQuery(new TextEncoder().encode("42 cat")), { bytes: 42, name: "cat" });
 * ```
 */
export function parseQuery(data: Uint8Array): { name: string; bytes: number } {
  const match = /^(0|[1-9][0-9]{0,15}) (.+)$/.exec(utf8.decode(data));
  if (!match) {
    throw new ProtocolError(
      "name",
      `Invalid query: expected <bytes> <name>, got ${quoteBytes(data)}`,
    );
  }
  checkName(match[2]);
  return { bytes: Number(match[1]), name: match[2] };
}

/**
 * What the server holds under a queried name, as {@linkcode encodeHave} reports it.
 *
 * @example Carry a held file through an answer
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeHave, type Held, parseHave } from "./protocol.ts";
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
 * import { encodeHave } from "./protocol.ts";
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
 * import { parseHave, ProtocolError } from "./protocol.ts";
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
 * Reads newline-terminated lines of bounded length from a stream.
 *
 * @example Read lines split across reads
 * ```ts
 * import assert from "node:assert/strict";
 * import { bytesSource, LineReader } from "./protocol.ts";
 *
 * const lines = new LineReader(bytesSource(new TextEncoder().encode("OK 1 a\nERR b\n"), [3]), 100);
 * const text = (bytes: Uint8Array | null) => bytes && new TextDecoder().decode(bytes);
 * assert.equal(text(await lines.readLine()), "OK 1 a");
 * assert.equal(text(await lines.readLine()), "ERR b");
 * assert.equal(await lines.readLine(), null);
 * ```
 */
export class LineReader {
  readonly #source: ByteSource;
  readonly #buffer: Uint8Array;
  #start = 0;
  #end = 0;

  /**
   * Creates a reader.
   *
   * @param source Where the lines come from.
   * @param maxLineSize The longest line accepted, newline included.
   */
  constructor(source: ByteSource, maxLineSize: number) {
    this.#source = source;
    this.#buffer = new Uint8Array(maxLineSize);
  }

  /**
   * Reads the next line.
   *
   * @param ms How long to wait for it.
   * @param options What the timeout message says was awaited.
   * @returns A copy of the line without its newline, or `null` at a clean end.
   * @throws {RangeError} For a line longer than the limit.
   * @throws {ProtocolError} `truncated` when the input ends inside a line,
   * `timeout` when the deadline passes.
   */
  async readLine(
    ms: number = Infinity,
    options: DeadlineOptions = { waitingFor: "a line" },
  ): Promise<Uint8Array | null> {
    const deadline = performance.now() + ms;
    let scanned = this.#start;
    for (;;) {
      const newline = this.#buffer.subarray(scanned, this.#end).indexOf(0x0a);
      if (newline !== -1) {
        const lineEnd = scanned + newline;
        const line = this.#buffer.slice(this.#start, lineEnd);
        this.#start = lineEnd + 1;
        return line;
      }
      scanned = this.#end;
      if (this.#start > 0) {
        this.#buffer.copyWithin(0, this.#start, this.#end);
        this.#end -= this.#start;
        scanned -= this.#start;
        this.#start = 0;
      }
      if (this.#end === this.#buffer.length) {
        throw new RangeError(
          `Line too long: more than ${this.#buffer.length} bytes: ${quoteBytes(this.#buffer)}`,
        );
      }
      const n = await withDeadline(
        this.#source.read(this.#buffer.subarray(this.#end)),
        deadline - performance.now(),
        options,
      );
      if (n === null) {
        if (this.#end === 0) return null;
        if (isTlsRecord(this.#buffer.subarray(0, this.#end), TLS_ALERT)) {
          throw new ProtocolError(
            "tls",
            "Input ended inside a line: a TLS record, so the peer speaks TLS",
          );
        }
        throw new ProtocolError(
          "truncated",
          `Input ended inside a line: ${quoteBytes(this.#buffer.subarray(0, this.#end))}`,
        );
      }
      this.#end += n;
    }
  }
}

/**
 * Every extension {@linkcode sniffExtension} gives, so every one a decoded
 * file can be saved with.
 *
 * @example The list
 * ```ts
 * import assert from "node:assert/strict";
 * import { EXTENSIONS, sniffExtension } from "./protocol.ts";
 *
 * assert.ok(EXTENSIONS.includes(sniffExtension(new Uint8Array([0xff, 0xd8, 0xff]))));
 * ```
 */
export const EXTENSIONS: readonly string[] = [
  "jpg",
  "png",
  "gif",
  "webp",
  "bmp",
  "tiff",
  "heic",
  "heif",
  "avif",
  "bin",
];

/** Scratch space for {@linkcode crc32OfFile}, which reads synchronously and so never shares it. */
const crcChunk = new Uint8Array(262_144);

/**
 * Computes the CRC-32 of a file, the checksum in `OK` and `HAVE` answers,
 * reading it in bounded chunks so that memory does not grow with the file.
 * It reads synchronously into one reused buffer: a `--resume` asks about
 * thousands of small files, and an asynchronous read and a fresh buffer
 * each cost several times more than the read itself.
 *
 * @param path The file.
 * @returns The CRC-32 (IEEE, as zlib computes it).
 *
 * @example Checksum a file
 * ```ts
 * import assert from "node:assert/strict";
 * import { crc32 } from "node:zlib";
 * import { crc32OfFile } from "./protocol.ts";
 *
 * const path = await Deno.makeTempFile();
 * await Deno.writeTextFile(path, "hello");
 * assert.equal(crc32OfFile(path), crc32("hello"));
 * await Deno.remove(path);
 * ```
 */
export function crc32OfFile(path: string): number {
  using file = Deno.openSync(path);
  let crc = 0;
  for (let n; (n = file.readSync(crcChunk)) !== null;) crc = crc32(crcChunk.subarray(0, n), crc);
  return crc;
}

/**
 * Detects an image type from its first bytes.
 *
 * @param head At least the first 12 bytes of the file, or all of a shorter one.
 * @returns `jpg`, `png`, `gif`, `webp`, `bmp`, `tiff`, `heic` (an iPhone's photos),
 * `heif`, `avif`, or `bin` for anything else.
 *
 * @example Sniff a PNG
 * ```ts
 * import assert from "node:assert/strict";
 * import { sniffExtension } from "./protocol.ts";
 *
 * assert.equal(sniffExtension(new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])), "png");
 * assert.equal(sniffExtension(new Uint8Array([1, 2, 3])), "bin");
 * ```
 */
export function sniffExtension(head: Uint8Array): string {
  const startsWith = (bytes: number[], at = 0) =>
    head.length >= at + bytes.length && bytes.every((b, i) => head[at + i] === b);
  const ascii = (text: string) => [...text].map((c) => c.charCodeAt(0));
  if (startsWith([0xff, 0xd8, 0xff])) return "jpg";
  if (startsWith([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])) return "png";
  if (startsWith(ascii("GIF87a")) || startsWith(ascii("GIF89a"))) return "gif";
  if (startsWith(ascii("RIFF")) && startsWith(ascii("WEBP"), 8)) return "webp";
  if (startsWith(ascii("BM"))) return "bmp";
  if (startsWith([0x49, 0x49, 0x2a, 0x00]) || startsWith([0x4d, 0x4d, 0x00, 0x2a])) {
    return "tiff";
  }
  // HEIF and AVIF are ISO media files: a "ftyp" box whose major brand says which.
  if (startsWith(ascii("ftyp"), 4)) {
    const brand = String.fromCharCode(...head.subarray(8, 12));
    if (["heic", "heix", "heim", "heis", "hevc", "hevx"].includes(brand)) return "heic";
    if (["mif1", "msf1"].includes(brand)) return "heif";
    if (["avif", "avis"].includes(brand)) return "avif";
  }
  return "bin";
}

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
 * import { parseByteSize } from "./protocol.ts";
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
 * import { parsePort } from "./protocol.ts";
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
 * import { parseHost } from "./protocol.ts";
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
 * Formats a byte count for people, in binary units.
 *
 * @param bytes The count.
 * @returns Such as `512 B`, `64.0 KiB` or `1.50 GiB`.
 *
 * @example Format sizes
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatBytes } from "./protocol.ts";
 *
 * assert.equal(formatBytes(512), "512 B");
 * assert.equal(formatBytes(1536 * 1024 * 1024), "1.50 GiB");
 * ```
 */
export function formatBytes(bytes: number): string {
  // A rate is fractional; a count of bytes shows whole.
  if (bytes < 1023.5) return `${Math.round(bytes)} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(unit === 0 ? 1 : 2)} ${units[unit]}`;
}

/**
 * The oldest Deno that `server.ts` and `client.ts` run on: `Uint8Array`
 * base64 came with 2.5, and `Deno.FsFile.tryLock` with 2.7.
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
 * import { isOlderThanMinDeno } from "./protocol.ts";
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
 * Writes a count with its noun, which takes an "s" unless the count is one.
 *
 * @param count How many.
 * @param noun The noun in the singular.
 * @returns Such as `1 file` or `0 files`.
 *
 * @example Count files
 * ```ts
 * import assert from "node:assert/strict";
 * import { counted } from "./protocol.ts";
 *
 * assert.equal(counted(1, "file"), "1 file");
 * assert.equal(counted(2000, "file"), "2000 files");
 * assert.equal(counted(0, "error"), "0 errors");
 * ```
 */
export function counted(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? "" : "s"}`;
}

/**
 * Formats a duration for people.
 *
 * @param ms The duration in milliseconds.
 * @returns Such as `850 ms`, `2.53 s`, `12.5 s` or `3 min 20 s`.
 *
 * @example Format durations
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatDuration } from "./protocol.ts";
 *
 * assert.equal(formatDuration(850), "850 ms");
 * assert.equal(formatDuration(2534), "2.53 s");
 * assert.equal(formatDuration(200_000), "3 min 20 s");
 * ```
 */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;
  const seconds = Math.round(ms / 1000);
  return `${Math.floor(seconds / 60)} min ${seconds % 60} s`;
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
 * import { parseSeconds } from "./protocol.ts";
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
 * import { parseCount } from "./protocol.ts";
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
 * Returns the first sentence of an error's message, for a one-line report.
 * `parseArgs` calls an option followed by another one "ambiguous"; that is
 * nearly always a forgotten value, so it is named as such.
 *
 * @param error Anything thrown.
 * @returns The message up to its first full stop or line break.
 *
 * @example Shorten a parser's message
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseArgs } from "node:util";
 * import { describeError } from "./protocol.ts";
 *
 * const error = new TypeError("Unknown option '--x'. To specify a positional argument, use --");
 * assert.equal(describeError(error), "Unknown option '--x'");
 * assert.throws(
 *   () => parseArgs({ args: ["--host", "--port"], options: { host: { type: "string" } } }),
 *   (error) =>
 *     describeError(error) ===
 *       "Option '--host' is missing its value: write --host=VALUE if the value starts with a dash",
 * );
 * assert.throws(
 *   () => parseArgs({ args: ["-c", "-v"], options: { c: { type: "string" } } }),
 *   (error) => describeError(error) === "Option '-c' is missing its value",
 * );
 * ```
 */
export function describeError(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  const ambiguous = /^Option '(-[\w-]+)' argument is ambiguous\./.exec(message);
  if (ambiguous) {
    const option = ambiguous[1];
    const hint = option.startsWith("--")
      ? `: write ${option}=VALUE if the value starts with a dash`
      : "";
    return `Option '${option}' is missing its value${hint}`;
  }
  return message.split(/\. |\n/)[0];
}

/**
 * Writes a host and port as one address, with an IPv6 host in brackets so
 * that the port stays apart from it.
 *
 * @param host A hostname, IPv4 or IPv6 address.
 * @param port The port.
 * @returns `host:port`, or `[host]:port` for IPv6.
 *
 * @example Format both families
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatAddress } from "./protocol.ts";
 *
 * assert.equal(formatAddress("127.0.0.1", 9999), "127.0.0.1:9999");
 * assert.equal(formatAddress("::1", 9999), "[::1]:9999");
 * ```
 */
export function formatAddress(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

/** Options for {@linkcode LogOutput}. */
export interface LogOutputOptions {
  /**
   * Writes some of the bytes and returns how many; throws when it cannot.
   * @default {Deno.stdout.writeSync}
   */
  write?: (bytes: Uint8Array) => number;
}

/**
 * Writes a script's report to stdout (or, given `write`, elsewhere, such as
 * stderr), never throwing: a log that cannot be written must not fail the
 * files it reports on. The first failure (a full disk) goes to `onError` and
 * later text is dropped; a reader that went away (`| head`) is no failure,
 * and the rest is dropped quietly.
 *
 * @example Keep going after a write fails
 * ```ts
 * import assert from "node:assert/strict";
 * import { LogOutput } from "./protocol.ts";
 *
 * const errors: string[] = [];
 * let attempts = 0;
 * const log = new LogOutput((error) => errors.push(error.message), {
 *   write() {
 *     attempts++;
 *     throw new Error("No space left on device (os error 28)");
 *   },
 * });
 * log.line("saved a.jpg");
 * log.line("saved b.jpg");
 * assert.deepEqual(errors, ["No space left on device (os error 28)"]);
 * assert.equal(attempts, 1);
 * assert.equal(log.failed, true);
 * ```
 */
export class LogOutput {
  readonly #onError: (error: Error) => void;
  readonly #write: (bytes: Uint8Array) => number;
  #ended = false;
  #failed = false;

  /**
   * Creates the output.
   *
   * @param onError Called once, with the first write error other than a closed pipe.
   * @param options Where the bytes go.
   */
  constructor(onError: (error: Error) => void, options: LogOutputOptions = {}) {
    this.#onError = onError;
    this.#write = options.write ?? ((bytes) => Deno.stdout.writeSync(bytes));
  }

  /** Whether a write failed other than on a closed pipe. */
  get failed(): boolean {
    return this.#failed;
  }

  /**
   * Writes text as it is, such as a progress line that redraws itself.
   *
   * @param text The text.
   */
  text(text: string): void {
    if (this.#ended) return;
    const bytes = encoder.encode(text);
    try {
      for (let offset = 0; offset < bytes.length;) offset += this.#write(bytes.subarray(offset));
    } catch (error) {
      this.#ended = true;
      if (error instanceof Deno.errors.BrokenPipe) return;
      this.#failed = true;
      this.#onError(error instanceof Error ? error : new Error(String(error)));
    }
  }

  /**
   * Writes text and a newline.
   *
   * @param text The line, without its newline.
   */
  line(text: string): void {
    this.text(`${text}\n`);
  }
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
 * import { checkNetPermission } from "./protocol.ts";
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
 * A parsed CIDR block, as returned by {@linkcode parseCidr}.
 *
 * @example Read the parts of a block
 * ```ts
 * import assert from "node:assert/strict";
 * import { type Cidr, parseCidr } from "./protocol.ts";
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

/** Parses an IPv4 or IPv6 address to a number, or returns undefined. */
function parseAddress(text: string): { family: 4 | 6; value: bigint } | undefined {
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
 * import { parseCidr } from "./protocol.ts";
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
 * import { inAnyCidr, parseCidr } from "./protocol.ts";
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
