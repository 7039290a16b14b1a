/**
 * The answers a server owes on one connection, written in order and in
 * batches.
 *
 * @module
 */
import { concatBytes, withDeadline, writeAll } from "./io.ts";

/** Answers waiting together: one write for a batch rather than one each. */
const ANSWER_BATCH = 16;
/** Longest an answer waits for others to join it, in milliseconds. */
const ANSWER_DELAY = 5;

/**
 * The answers owed on one connection, sent in order and in batches: at once
 * when {@linkcode ANSWER_BATCH} are waiting or on {@linkcode Answers.flush},
 * otherwise {@linkcode ANSWER_DELAY} ms after the first. A run of small
 * frames then costs a few writes, and wakes the client a few times, instead
 * of once each.
 *
 * @example Two answers leave in one write on flush
 * ```ts
 * import assert from "node:assert/strict";
 * import { Answers, encodeAck } from "../protocol.ts";
 *
 * const writes: Uint8Array[] = [];
 * const conn = { write: (b: Uint8Array) => (writes.push(b.slice()), Promise.resolve(b.length)) };
 * const answers = new Answers(conn as unknown as Deno.Conn, 1000);
 * await answers.add(encodeAck({ ok: false, message: "one" }));
 * await answers.add(encodeAck({ ok: false, message: "two" }));
 * await answers.flush();
 * assert.deepEqual(writes.map((b) => new TextDecoder().decode(b)), ["ERR one\nERR two\n"]);
 * ```
 */
export class Answers {
  readonly #conn: Deno.Conn;
  readonly #timeout: number;
  #pending: Uint8Array[] = [];
  #timer: ReturnType<typeof setTimeout> | undefined;
  /** The write under way, if any: one at a time, and its end sends what came meanwhile. */
  #writing: Promise<void> | undefined;

  constructor(conn: Deno.Conn, timeout: number) {
    this.#conn = conn;
    this.#timeout = timeout;
  }

  /** Queues an answer; waits only while a full batch cannot be written yet. */
  async add(line: Uint8Array): Promise<void> {
    this.#pending.push(line);
    if (this.#pending.length < ANSWER_BATCH) {
      this.#timer ??= setTimeout(() => this.#send(), ANSWER_DELAY);
      return;
    }
    // A client that does not take its answers holds up its own frames, not memory.
    while (this.#writing) await this.#writing;
    this.#send();
  }

  #send(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#writing || this.#pending.length === 0) return;
    const bytes = concatBytes(this.#pending);
    this.#pending = [];
    this.#writing = withDeadline(writeAll(this.#conn, bytes), this.#timeout, {
      waitingFor: "the client to read",
    })
      // The original client closes without reading: a failed write is expected.
      .catch(() => {})
      .finally(() => {
        this.#writing = undefined;
        this.#send();
      });
  }

  /** Sends what is waiting and waits until every answer is written. */
  async flush(): Promise<void> {
    this.#send();
    while (this.#writing) await this.#writing;
  }
}
