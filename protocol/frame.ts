/**
 * The length header and frame encoding: the tutorial's wire format.
 *
 * @module
 */
import { DEFAULT_MAX_FRAME_SIZE, HEADER_SIZE, NAME_SIZE } from "./limits.ts";
import { ProtocolError } from "./errors.ts";
import { encodeName } from "./name.ts";
import { quoteBytes } from "../lib/format.ts";

const encoder = new TextEncoder();
const DIGIT_0 = 0x30;
const DIGIT_9 = 0x39;

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
 * import { encodeHeader } from "../protocol.ts";
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
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { firstNonDigit } from "./frame.ts";
 *
 * assert.equal(firstNonDigit(new TextEncoder().encode("0012x")), 4);
 * ```
 */
export function firstNonDigit(bytes: Uint8Array): number {
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
 * import { parseHeader } from "../protocol.ts";
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

/** TLS record type of what a TLS client sends first. */
const TLS_HANDSHAKE = 0x16;

/**
 * TLS record type of what a TLS server answers strangers.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { isTlsRecord, TLS_ALERT } from "./frame.ts";
 *
 * assert.ok(isTlsRecord(new Uint8Array([TLS_ALERT, 3, 3]), TLS_ALERT));
 * ```
 */
export const TLS_ALERT = 0x15;

/**
 * Whether the bytes begin a TLS record of that type (version 3.x), never a frame or an answer.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { isTlsRecord, TLS_ALERT } from "./frame.ts";
 *
 * assert.equal(isTlsRecord(new TextEncoder().encode("0000"), TLS_ALERT), false);
 * ```
 */
export function isTlsRecord(bytes: Uint8Array, type: number): boolean {
  return bytes.length >= 2 && bytes[0] === type && bytes[1] === 0x03;
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
 * import { base64Length } from "../protocol.ts";
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
 * import { encodeFrame } from "../protocol.ts";
 *
 * const frame = encodeFrame("a", new Uint8Array([0xff]));
 * assert.equal(frame.length, 16 + 32 + 4);
 * assert.equal(new TextDecoder().decode(frame.subarray(0, 16)), "0000000000000036");
 * ```
 */
export function encodeFrame(name: string, data: Uint8Array): Uint8Array {
  return frameWith(encodeName(name), data);
}

/**
 * Encodes a frame with this name field and data.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { frameWith } from "./frame.ts";
 *
 * assert.equal(frameWith(new Uint8Array(32), new Uint8Array(3)).length, 16 + 32 + 4);
 * ```
 */
export function frameWith(nameField: Uint8Array, data: Uint8Array): Uint8Array {
  const base64 = data.toBase64();
  const frame = new Uint8Array(HEADER_SIZE + NAME_SIZE + base64.length);
  frame.set(encodeHeader(NAME_SIZE + base64.length));
  frame.set(nameField, HEADER_SIZE);
  encoder.encodeInto(base64, frame.subarray(HEADER_SIZE + NAME_SIZE));
  return frame;
}

/**
 * A name field holding a marker, such as `?` for a query, and NUL padding:
 * no file's name field, since a name may not start with `?` or `!`.
 *
 * @param marker The marker, a few ASCII characters.
 * @returns The 32-byte field.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { isMarked, markerField } from "./frame.ts";
 *
 * const field = markerField("?/");
 * assert.deepEqual([...field.subarray(0, 3)], [0x3f, 0x2f, 0]);
 * assert.ok(isMarked(field, markerField("?/")));
 * ```
 */
export function markerField(marker: string): Uint8Array {
  const field = new Uint8Array(NAME_SIZE);
  field.set(encoder.encode(marker));
  return field;
}

/**
 * Tells whether a name field is a given marker field.
 *
 * @param nameField The name bytes read at the start of a body.
 * @param field A field from {@linkcode markerField}.
 * @returns True when they are the same 32 bytes.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { isMarked, markerField } from "./frame.ts";
 *
 * assert.equal(isMarked(new TextEncoder().encode("?"), markerField("?")), false);
 * ```
 */
export function isMarked(nameField: Uint8Array, field: Uint8Array): boolean {
  return nameField.length === NAME_SIZE && nameField.every((byte, i) => byte === field[i]);
}
