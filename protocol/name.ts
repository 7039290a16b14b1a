/**
 * The name field: encoding, checking, and finding where an unpadded name ends.
 *
 * @module
 */
import { MAX_NAME_BYTES, NAME_SIZE } from "./limits.ts";
import { ProtocolError } from "./errors.ts";
import { quoteBytes, quoteName } from "../lib/format.ts";
import { sniffExtension } from "../lib/images.ts";

const encoder = new TextEncoder();
const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * Checks that a name is safe as a single file name inside an output folder
 * and fits the name field.
 *
 * @param name The name, without extension.
 * @param maxBytes The longest name allowed, in bytes.
 * @returns The name's UTF-8 bytes.
 * @throws {ProtocolError} `name`, saying which rule the name breaks.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { checkName } from "./name.ts";
 *
 * assert.deepEqual(checkName("cat"), new TextEncoder().encode("cat"));
 * assert.throws(() => checkName("a/b"), /Invalid name/);
 * ```
 */
export function checkName(name: string, maxBytes = NAME_SIZE): Uint8Array {
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
      `Invalid name: ${problem}: ${quoteName(bytes)}`,
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
 * import { encodeName } from "../protocol.ts";
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
 * import { encodeName, parseName } from "../protocol.ts";
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
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { MAX_NAME_BYTES } from "./limits.ts";
 * import { NAME_LOOKAHEAD } from "./name.ts";
 *
 * assert.ok(NAME_LOOKAHEAD > MAX_NAME_BYTES);
 * ```
 */
export const NAME_LOOKAHEAD = MAX_NAME_BYTES + SIGNATURE_CHARS;

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
 * import { encodeFrame, type NameSplit, splitName } from "../protocol.ts";
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
 * import { splitName } from "../protocol.ts";
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
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { lookahead } from "./name.ts";
 *
 * // A padded name field: its 32 bytes and the data's first characters.
 * const field = new Uint8Array(32);
 * assert.equal(lookahead(field, 100), 48);
 * ```
 */
export function lookahead(prefix: Uint8Array, bodyLength: number): number {
  if (bodyLength >= NAME_SIZE && prefix.subarray(0, NAME_SIZE).includes(0)) {
    return Math.min(bodyLength, NAME_SIZE + SIGNATURE_CHARS);
  }
  let extra = 0;
  for (let i = 0; i < Math.min(prefix.length, MAX_NAME_BYTES); i++) {
    if (isContinuation(prefix[i])) extra++;
  }
  return Math.min(bodyLength + extra, NAME_LOOKAHEAD);
}
