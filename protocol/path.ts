/**
 * Relative paths and modification times between our own peers: the path
 * rules the receiver holds every path to, and the file frame that carries a
 * path and an mtime, once both peers agree to {@linkcode PATHS} in a hello.
 *
 * @module
 */
import { HEADER_SIZE, NAME_SIZE } from "./limits.ts";
import { ProtocolError } from "./errors.ts";
import { encodeHeader, isMarked, markerField } from "./frame.ts";
import { quoteBytes, quoteName } from "../lib/format.ts";

const encoder = new TextEncoder();
const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * Longest path a file frame may carry, in bytes of UTF-8.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { checkPath, MAX_PATH_BYTES } from "../protocol.ts";
 *
 * assert.throws(() => checkPath("a/".repeat(MAX_PATH_BYTES / 2) + "b"), /more than 1024/);
 * ```
 */
export const MAX_PATH_BYTES = 1024;

/**
 * Longest part of a path (a folder or file name), in bytes: what Linux and
 * most file systems take.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { checkPath, MAX_PART_BYTES } from "../protocol.ts";
 *
 * assert.throws(() => checkPath("x".repeat(MAX_PART_BYTES + 1)), /more than 255/);
 * ```
 */
export const MAX_PART_BYTES = 255;

/**
 * The capability of path frames: each file sent under its path relative to
 * the folder named, with its modification time. A connection uses it once
 * both of our peers agree in a hello.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeHello, PATHS, RAW_BYTES } from "../protocol.ts";
 *
 * assert.ok(encodeHello([RAW_BYTES, PATHS]).length > 48);
 * ```
 */
export const PATHS = "paths";

/** Why a path cannot be saved inside an output folder, or undefined when it can. */
function pathProblem(path: string, bytes: Uint8Array): string | undefined {
  if (path === "") return "it is empty";
  if (bytes.length > MAX_PATH_BYTES) {
    return `it is ${bytes.length} bytes, more than ${MAX_PATH_BYTES}`;
  }
  if (path.startsWith("/")) return "it is absolute";
  // deno-lint-ignore no-control-regex
  if (/[\x00-\x1f\x7f-\x9f]/.test(path)) return "it contains a control character";
  if (path.includes("\\")) return "it contains a backslash";
  if (!path.isWellFormed() || path.includes("\ufffd")) return "it is not valid UTF-8";
  for (const part of path.split("/")) {
    if (part === "") return "it has an empty part";
    if (part === "." || part === "..") return `it has a ${part} part`;
    // The server's own names (.upload-*, .quarantine) and hidden ones, which the client leaves out.
    if (part.startsWith(".")) return "a part starts with a dot";
    const size = encoder.encode(part).length;
    if (size > MAX_PART_BYTES) return `a part is ${size} bytes, more than ${MAX_PART_BYTES}`;
  }
  return undefined;
}

/**
 * Checks that a path is safe to save inside an output folder: relative,
 * `/`-separated, each part a plain name of up to 255 bytes (no empty, `.`,
 * `..` or hidden part), the whole up to 1,024 bytes of valid UTF-8, with no
 * backslash, NUL or control character.
 *
 * @param path The path, as sent.
 * @returns Its UTF-8 bytes.
 * @throws {ProtocolError} `name`, saying which rule the path breaks.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { checkPath } from "../protocol.ts";
 *
 * assert.deepEqual(checkPath("cat/0001.jpg"), new TextEncoder().encode("cat/0001.jpg"));
 * assert.throws(() => checkPath("../etc/passwd"), /Invalid path: it has a \.\. part/);
 * ```
 */
export function checkPath(path: string): Uint8Array {
  const bytes = encoder.encode(path);
  const problem = pathProblem(path, bytes);
  if (problem !== undefined) {
    throw new ProtocolError("name", `Invalid path: ${problem}: ${quoteName(bytes)}`);
  }
  return bytes;
}

/** The name field of a path frame: `?/` and NUL padding, which no file's name can be. */
const PATH_FIELD = markerField("?/");

/**
 * Tells whether a name field marks a path frame.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeName, isPathFrame } from "../protocol.ts";
 *
 * assert.equal(isPathFrame(encodeName("cat")), false);
 * ```
 */
export function isPathFrame(nameField: Uint8Array): boolean {
  return isMarked(nameField, PATH_FIELD);
}

/**
 * Longest line of path and mtime at the start of a path frame's data,
 * newline included.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { MAX_PATH_BYTES, MAX_PATH_LINE } from "../protocol.ts";
 *
 * assert.ok(MAX_PATH_LINE > MAX_PATH_BYTES);
 * ```
 */
export const MAX_PATH_LINE = MAX_PATH_BYTES + 24;

/**
 * What a path frame says of its file.
 *
 * @example
 * ```ts
 * import type { FileMeta } from "../protocol.ts";
 *
 * const meta: FileMeta = { path: "cat/0001.jpg", mtime: 1_714_566_896_000 };
 * ```
 */
export interface FileMeta {
  /** Where to save it, relative to the output folder. */
  path: string;
  /** Its modification time, in milliseconds since 1970. */
  mtime: number;
}

/**
 * Encodes the start of a path frame: the header, the `?/` name field and the
 * line `<mtime> <path>\n`. The file's data follows, `dataLength` bytes of it
 * (raw bytes or base64, as the connection agreed).
 *
 * @param meta The file's path and mtime.
 * @param dataLength Bytes of data that will follow.
 * @returns The frame's first bytes.
 * @throws {ProtocolError} `name`, when the path breaks a rule of {@linkcode checkPath}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodePathHead } from "../protocol.ts";
 *
 * const head = encodePathHead({ path: "cat/0001.jpg", mtime: 1000 }, 3);
 * assert.equal(new TextDecoder().decode(head.subarray(0, 16)), "0000000000000053");
 * assert.equal(new TextDecoder().decode(head.subarray(48)), "1000 cat/0001.jpg\n");
 * ```
 */
export function encodePathHead(meta: FileMeta, dataLength: number): Uint8Array {
  checkPath(meta.path);
  const line = encoder.encode(`${Math.trunc(meta.mtime)} ${meta.path}\n`);
  const head = new Uint8Array(HEADER_SIZE + NAME_SIZE + line.length);
  head.set(encodeHeader(NAME_SIZE + line.length + dataLength));
  head.set(PATH_FIELD, HEADER_SIZE);
  head.set(line, HEADER_SIZE + NAME_SIZE);
  return head;
}

/**
 * Parses the line at the start of a path frame's data, without its newline.
 *
 * @param line The line's bytes.
 * @returns The path and mtime.
 * @throws {ProtocolError} `name`, for a line of another form or a path that
 * breaks a rule of {@linkcode checkPath}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parsePathLine } from "../protocol.ts";
 *
 * const line = new TextEncoder().encode("1714566896000 cat/0001.jpg");
 * assert.deepEqual(parsePathLine(line), { mtime: 1714566896000, path: "cat/0001.jpg" });
 * ```
 */
export function parsePathLine(line: Uint8Array): FileMeta {
  const space = line.indexOf(0x20);
  const digits = new TextDecoder().decode(line.subarray(0, Math.max(space, 0)));
  if (space < 1 || !/^-?[0-9]{1,15}$/.test(digits)) {
    throw new ProtocolError(
      "name",
      `Invalid path line: expected <mtime> <path>, got ${quoteBytes(line)}`,
    );
  }
  let path: string;
  try {
    path = strictUtf8.decode(line.subarray(space + 1));
  } catch {
    throw new ProtocolError(
      "name",
      `Invalid path: it is not valid UTF-8: ${quoteName(line.subarray(space + 1))}`,
    );
  }
  checkPath(path);
  return { path, mtime: Number(digits) };
}
