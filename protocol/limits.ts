/**
 * The sizes of a frame's parts and the protocol's defaults: the port, the
 * deadlines, the largest frame. Each default is written here once, and read
 * by the options, the flags and the usage texts alike.
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

/**
 * The port the tutorial's scripts use, TCP and UDP alike.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { DEFAULT_PORT } from "../protocol.ts";
 *
 * assert.equal(DEFAULT_PORT, 9999);
 * ```
 */
export const DEFAULT_PORT = 9999;

/**
 * Milliseconds a server allows for a frame's header and name to arrive.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { DEFAULT_HEADER_TIMEOUT } from "../protocol.ts";
 *
 * assert.equal(DEFAULT_HEADER_TIMEOUT / 1000, 30);
 * ```
 */
export const DEFAULT_HEADER_TIMEOUT = 30_000;

/**
 * Milliseconds a server allows without a byte inside a frame, and for an
 * answer to be taken.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { DEFAULT_IDLE_TIMEOUT } from "../protocol.ts";
 *
 * assert.equal(DEFAULT_IDLE_TIMEOUT / 1000, 60);
 * ```
 */
export const DEFAULT_IDLE_TIMEOUT = 60_000;

/**
 * Milliseconds a client allows to connect, for each write and for each
 * answer; the original used 50 s.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { DEFAULT_CLIENT_TIMEOUT } from "../protocol.ts";
 *
 * assert.equal(DEFAULT_CLIENT_TIMEOUT / 1000, 50);
 * ```
 */
export const DEFAULT_CLIENT_TIMEOUT = 50_000;

/**
 * The address a server listens on by default: every interface, as the
 * tutorial's servers bind.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { DEFAULT_LISTEN_HOST } from "../protocol.ts";
 *
 * assert.equal(DEFAULT_LISTEN_HOST, "0.0.0.0");
 * ```
 */
export const DEFAULT_LISTEN_HOST = "0.0.0.0";

/**
 * The address a client sends to by default: this machine.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { DEFAULT_PEER_HOST } from "../protocol.ts";
 *
 * assert.equal(DEFAULT_PEER_HOST, "127.0.0.1");
 * ```
 */
export const DEFAULT_PEER_HOST = "127.0.0.1";
