/**
 * File helpers shared by the roles: checksums of files on disk.
 *
 * @module
 */
import { crc32 } from "node:zlib";

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
 * import { crc32OfFile } from "../protocol.ts";
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
