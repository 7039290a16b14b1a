/**
 * Log output that never throws.
 *
 * @module
 */

const encoder = new TextEncoder();

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
 * import { LogOutput } from "../protocol.ts";
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
