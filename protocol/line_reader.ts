/**
 * Reading answer lines with a byte limit and a deadline.
 *
 * @module
 */
import { type ByteSource, type DeadlineOptions, withDeadline } from "./io.ts";
import { ProtocolError } from "./errors.ts";
import { isTlsRecord, TLS_ALERT } from "./frame.ts";
import { quoteBytes } from "../lib/format.ts";

/**
 * Reads newline-terminated lines of bounded length from a stream.
 *
 * @example Read lines split across reads
 * ```ts
 * import assert from "node:assert/strict";
 * import { bytesSource, LineReader } from "../protocol.ts";
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
