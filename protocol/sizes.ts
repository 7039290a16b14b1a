/**
 * The sizes of a frame's parts: the header, the name field and their limits.
 *
 * @module
 */

/**
 * Bytes in the length header.
 *
 * @example Header size
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeHeader, HEADER_SIZE } from "../protocol.ts";
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
 * import { encodeName, NAME_SIZE } from "../protocol.ts";
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
 * import { MAX_NAME_BYTES } from "../protocol.ts";
 *
 * assert.equal(MAX_NAME_BYTES + ".tiff".length, 255);
 * ```
 */
export const MAX_NAME_BYTES = 250;

/**
 * Default largest body length L a server accepts: 512 MiB, about 384 MiB of
 * image.
 *
 * @example Default frame limit
 * ```ts
 * import assert from "node:assert/strict";
 * import { DEFAULT_MAX_FRAME_SIZE, parseByteSize } from "../protocol.ts";
 *
 * assert.equal(DEFAULT_MAX_FRAME_SIZE, parseByteSize("512M"));
 * ```
 */
export const DEFAULT_MAX_FRAME_SIZE = 512 * 1024 * 1024;
