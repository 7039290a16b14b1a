/**
 * Byte I/O: sources, deadlines, whole writes and quiet closes.
 *
 * @module
 */
import { ProtocolError } from "./errors.ts";
import { formatDuration } from "../lib/format.ts";

/**
 * Something bytes can be read from, as `Deno.Conn` and `Deno.FsFile` are.
 *
 * @example A source that is always empty
 * ```ts
 * import assert from "node:assert/strict";
 * import { type ByteSource, FrameReader } from "../protocol.ts";
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
 * import { bytesSource } from "../protocol.ts";
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
 * import { type DeadlineOptions, withDeadline } from "../protocol.ts";
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
 * import { withDeadline } from "../protocol.ts";
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
 * import { concatBytes } from "../protocol.ts";
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
 * import { closeQuietly } from "../protocol.ts";
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
 * import { writeAll } from "../protocol.ts";
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
