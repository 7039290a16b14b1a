/**
 * File helpers shared by the roles: checksums, whole writes, paths.
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

/**
 * Writes all of `bytes` to a file or to stdout, as one `writeSync` may write
 * less. It uses nothing from outside itself: the UDP printer's Worker gets
 * it as text.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { writeAllSync } from "./files.ts";
 *
 * const path = Deno.makeTempFileSync();
 * {
 *   using file = Deno.openSync(path, { write: true });
 *   writeAllSync(file, new Uint8Array([1, 2, 3]));
 * }
 * assert.deepEqual(Deno.readFileSync(path), new Uint8Array([1, 2, 3]));
 * Deno.removeSync(path);
 * ```
 */
export function writeAllSync(
  file: { writeSync(bytes: Uint8Array): number },
  bytes: Uint8Array,
): void {
  for (let offset = 0; offset < bytes.length;) offset += file.writeSync(bytes.subarray(offset));
}

/**
 * Removes a file that may not exist.
 *
 * @example
 * ```ts
 * import { removeQuietly } from "./files.ts";
 *
 * removeQuietly("/no/such/file");
 * ```
 */
export function removeQuietly(path: string): void {
  try {
    Deno.removeSync(path);
  } catch {
    // Never created, or already gone.
  }
}

/**
 * Joins a folder and a name inside it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { joinPath } from "./files.ts";
 *
 * assert.equal(joinPath("/srv/", "a.jpg"), "/srv/a.jpg");
 * assert.equal(joinPath("/srv", "a.jpg"), "/srv/a.jpg");
 * ```
 */
export function joinPath(folder: string, name: string): string {
  return folder.endsWith("/") ? folder + name : `${folder}/${name}`;
}

/**
 * Counts how many more descriptors this process may open, up to `want`, by
 * opening a folder that many times (about 1 µs each here): Deno has no call
 * for the limit, and `/proc/self/limits` needs `--allow-all`.
 *
 * @param folder A folder the process may read.
 * @param want How many to try at most.
 * @returns How many it could open, all closed again.
 *
 * @example Room for a few
 * ```ts
 * import assert from "node:assert/strict";
 * import { descriptorRoom } from "./files.ts";
 *
 * assert.equal(descriptorRoom(".", 3), 3);
 * ```
 */
export function descriptorRoom(folder: string, want: number): number {
  const opened: Deno.FsFile[] = [];
  try {
    while (opened.length < want) opened.push(Deno.openSync(folder));
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (code !== "EMFILE" && code !== "ENFILE") throw error;
  } finally {
    for (const file of opened) file.close();
  }
  return opened.length;
}
