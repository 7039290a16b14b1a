/**
 * The bounded queue between the UDP printer's receiving thread and the
 * Worker that prints, and the Worker itself.
 *
 * @module
 */
import { writeAllSync } from "./files.ts";
import { escapeControls, LineBatch, withoutLineEnd } from "./printer.ts";

/**
 * A ring of datagrams in a `SharedArrayBuffer`, for one writer and one reader
 * on different threads. Each record is a 32-bit length and the payload, padded
 * to 4 bytes; a length of -1 sends the reader back to the start. The head is
 * moved only by the writer, the tail only by the reader, each after its copy.
 *
 * @example Put on one side, take on the other
 * ```ts
 * import assert from "node:assert/strict";
 * import { HandOver } from "../protocol.ts";
 *
 * const writer = new HandOver(64);
 * const reader = new HandOver(writer.buffer);
 * assert.ok(writer.put(new TextEncoder().encode("hello")));
 * const taken: string[] = [];
 * reader.take((payload) => taken.push(new TextDecoder().decode(payload)));
 * assert.deepEqual(taken, ["hello"]);
 * ```
 */
export class HandOver {
  // The first 32 bytes: Int32 slots 0, the writer's head; 1, the reader's
  // tail; 2, the reader asleep; 3, the writer done; 4, a word the writer bumps
  // to wake the reader; then at byte 24 the printed count, a BigInt64. Plain
  // numbers rather than static fields: the Worker gets this class as text,
  // and a class that names itself inside would not survive bundling.
  /** The buffer both sides share. */
  readonly buffer: SharedArrayBuffer;
  readonly #control: Int32Array;
  readonly #printed: BigInt64Array;
  readonly #words: Int32Array;
  readonly #bytes: Uint8Array;
  #tail = 0;

  /**
   * @param ring A size, for a new ring on its own buffer (bytes of records,
   * rounded up to 4), or the `buffer` of a ring made so, to share it.
   */
  constructor(ring: number | SharedArrayBuffer) {
    const buffer = typeof ring === "number"
      ? new SharedArrayBuffer(32 + Math.ceil(ring / 4) * 4)
      : ring;
    this.buffer = buffer;
    this.#control = new Int32Array(buffer, 0, 5);
    this.#printed = new BigInt64Array(buffer, 24, 1);
    this.#words = new Int32Array(buffer, 32);
    this.#bytes = new Uint8Array(buffer, 32);
  }

  /**
   * Copies a datagram in, if there is room (writer).
   *
   * @param payload The datagram's payload.
   * @returns False when the ring is too full to hold it: nothing was put.
   */
  put(payload: Uint8Array): boolean {
    const need = 4 + Math.ceil(payload.length / 4) * 4;
    const head = this.#control[0];
    // A tail read earlier is behind, so it only understates the room: look
    // at the shared one, which the reader's core is writing, only when short.
    let start = this.#start(head, this.#tail, need);
    if (start === -1) {
      this.#tail = Atomics.load(this.#control, 1);
      start = this.#start(head, this.#tail, need);
      if (start === -1) return false;
    }
    if (start !== head) this.#words[head >> 2] = -1;
    this.#words[start >> 2] = payload.length;
    this.#bytes.set(payload, start + 4);
    Atomics.store(this.#control, 0, (start + need) % this.#bytes.length);
    if (Atomics.load(this.#control, 2) === 1) this.#wake();
    return true;
  }

  /** Where a record of `need` bytes goes, or -1 when it does not fit. */
  #start(head: number, tail: number, need: number): number {
    // The head never catches up with the tail: equal means empty.
    const size = this.#bytes.length;
    if (head < tail) return head + need < tail ? head : -1;
    if (head + need < size || (head + need === size && tail > 0)) return head;
    return need < tail ? 0 : -1;
  }

  take(each: (payload: Uint8Array) => void): number {
    const size = this.#bytes.length;
    let tail = this.#control[1];
    let head = Atomics.load(this.#control, 0);
    let taken = 0;
    while (tail !== head) {
      const length = this.#words[tail >> 2];
      if (length === -1) {
        tail = 0;
      } else {
        each(this.#bytes.subarray(tail + 4, tail + 4 + length));
        tail = (tail + 4 + Math.ceil(length / 4) * 4) % size;
        taken++;
      }
      // Shared words are touched in steps, not per datagram: the writer's
      // core would otherwise wait for this one's at every datagram.
      if (taken % 1024 === 0 || tail === head) {
        Atomics.store(this.#control, 1, tail);
        if (tail === head) head = Atomics.load(this.#control, 0);
      }
    }
    return taken;
  }

  /**
   * Sleeps until the writer closes, or also until it puts something (reader).
   * A reader that keeps up with a flood sleeps the short way: waking it for
   * each datagram would cost the writer a system call each.
   *
   * @param ms The longest sleep.
   * @param untilPut Whether the next datagram put wakes the reader.
   */
  wait(ms: number, untilPut: boolean): void {
    const control = this.#control;
    const wake = Atomics.load(control, 4);
    // Asleep before looking: a writer that puts after the look sees it and wakes us.
    if (untilPut) Atomics.store(control, 2, 1);
    const empty = Atomics.load(control, 0) === control[1];
    if ((empty || !untilPut) && !this.closed) Atomics.wait(control, 4, wake, ms);
    Atomics.store(control, 2, 0);
  }

  /** Tells the reader that nothing more will come (writer). */
  close(): void {
    Atomics.store(this.#control, 3, 1);
    this.#wake();
  }

  #wake(): void {
    Atomics.add(this.#control, 4, 1);
    Atomics.notify(this.#control, 4);
  }

  /** Whether the writer is done. */
  get closed(): boolean {
    return Atomics.load(this.#control, 3) === 1;
  }

  /** Datagrams the reader has printed. */
  get printed(): number {
    return Number(Atomics.load(this.#printed, 0));
  }

  /**
   * Counts printed datagrams (reader).
   *
   * @param count How many more were printed.
   */
  addPrinted(count: number): void {
    Atomics.add(this.#printed, 0, BigInt(count));
  }
}

/**
 * How the printing Worker stopped: after printing everything, or on an error.
 *
 * @example A printer closed in good order ends without an error
 * ```ts
 * import assert from "node:assert/strict";
 * import { Printer, type PrinterEnd } from "../protocol.ts";
 *
 * const printer = new Printer();
 * await printer.close();
 * const end: PrinterEnd = await printer.ended;
 * assert.equal(end.error, undefined);
 * ```
 */
export interface PrinterEnd {
  /** The error that stopped it, such as `BrokenPipe` when stdout's reader left. */
  error?: { name: string; message: string };
}

/**
 * What the UDP server needs of a printer: {@linkcode Printer}, which writes
 * from a Worker, or `DirectPrinter`, which writes on the calling thread.
 *
 * @example Either printer, used the same way
 * ```ts
 * import assert from "node:assert/strict";
 * import { DirectPrinter, type LinePrinter, Printer } from "../protocol.ts";
 *
 * for (const printer of [new Printer(), new DirectPrinter({ write: () => {} })] as LinePrinter[]) {
 *   printer.print(new TextEncoder().encode("hello"));
 *   await printer.close();
 *   assert.equal(printer.printed, 1);
 * }
 * ```
 */
export interface LinePrinter {
  /** Prints a datagram's line, or counts it dropped; the payload is copied. */
  print(payload: Uint8Array): void;
  /** Datagrams given to `print`. */
  readonly received: number;
  /** Datagrams written. */
  readonly printed: number;
  /** Datagrams dropped for want of room to wait. */
  readonly dropped: number;
  /** Settles when printing stops: after `close`, or on an error. */
  readonly ended: Promise<PrinterEnd>;
  /** Prints what waits, then stops; waits `ms` at most for a stuck output. */
  close(ms?: number): Promise<void>;
}

/**
 * The Worker's whole program: prints what the ring holds, a burst per write,
 * until the writer closes it. It runs from text, so it uses only the code
 * {@linkcode Printer} puts beside it.
 */
function printHandOver(buffer: SharedArrayBuffer): void {
  const ring = new HandOver(buffer);
  const post = (end: PrinterEnd) =>
    (globalThis as unknown as { postMessage(end: PrinterEnd): void }).postMessage(end);
  const batch = new LineBatch((lines, count) => {
    writeAllSync(Deno.stdout, lines);
    ring.addPrinted(count);
  });
  try {
    for (;;) {
      // Read before taking: whatever was put before the close is taken below.
      const closed = ring.closed;
      const taken = ring.take((payload) => batch.add(payload));
      batch.flush();
      if (closed) break;
      // Busy: look again in 2 ms. Idle: sleep until the next datagram.
      ring.wait(taken > 0 ? 2 : 1000, taken === 0);
    }
    post({});
  } catch (error) {
    post({ error: { name: (error as Error).name, message: (error as Error).message } });
  }
}

/**
 * Bytes of datagrams that may wait for the printer: about 70,000 short lines,
 * or 64 of the largest datagrams.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { DEFAULT_QUEUE_BYTES } from "../protocol.ts";
 *
 * assert.equal(DEFAULT_QUEUE_BYTES, 4 * 1024 * 1024);
 * ```
 */
export const DEFAULT_QUEUE_BYTES = 4 * 1024 * 1024;

/**
 * Options for {@linkcode Printer}.
 *
 * @example A queue of 64 KiB: a burst of more is dropped, and counted
 * ```ts
 * import type { PrinterOptions } from "../protocol.ts";
 *
 * const options: PrinterOptions = { queueBytes: 64 * 1024 };
 * ```
 */
export interface PrinterOptions {
  /**
   * Bytes of datagrams (plus 4 each) that may wait to be printed; what comes
   * while they are all waiting is dropped and counted.
   * @default {DEFAULT_QUEUE_BYTES}
   */
  queueBytes?: number;
}

/**
 * Prints datagrams to stdout from a Worker, one line each, so that the
 * thread that receives them never waits for a write. Memory is bounded by
 * `queueBytes`.
 *
 * @example Print two lines and stop
 * ```ts
 * import assert from "node:assert/strict";
 * import { Printer } from "../protocol.ts";
 *
 * const printer = new Printer();
 * printer.print(new TextEncoder().encode("hello"));
 * printer.print(new TextEncoder().encode("world\n"));
 * await printer.close();
 * assert.deepEqual([printer.received, printer.printed, printer.dropped], [2, 2, 0]);
 * ```
 */
export class Printer implements LinePrinter {
  readonly #ring: HandOver;
  readonly #worker: Worker;
  readonly #url: string;
  readonly #ended: Promise<PrinterEnd>;
  #received = 0;
  #dropped = 0;

  /** @param options The queue's size. */
  constructor(options: PrinterOptions = {}) {
    this.#ring = new HandOver(options.queueBytes ?? DEFAULT_QUEUE_BYTES);
    // From a blob: URL rather than a file, which would need --allow-read.
    // Each part under its own name, which a bundler may have changed: a class
    // bundled as `var LineBatch = class {` prints as `class {`.
    const source = [
      withoutLineEnd,
      escapeControls,
      LineBatch,
      HandOver,
      writeAllSync,
      printHandOver,
    ]
      .map((part) => `const ${part.name} = ${part};`).join("\n");
    this.#url = URL.createObjectURL(
      new Blob([`${source}\nonmessage = (event) => ${printHandOver.name}(event.data);`], {
        type: "text/javascript",
      }),
    );
    this.#worker = new Worker(this.#url, { type: "module", name: "printer" });
    this.#ended = new Promise((resolve) => {
      this.#worker.onmessage = (event: MessageEvent<PrinterEnd>) => resolve(event.data);
      this.#worker.onerror = (event) => {
        event.preventDefault();
        resolve({ error: { name: "Error", message: event.message } });
      };
    });
    this.#worker.postMessage(this.#ring.buffer);
  }

  /**
   * Queues a datagram to be printed, or counts it dropped if the queue is full.
   *
   * @param payload The datagram's payload, copied before the call returns.
   */
  print(payload: Uint8Array): void {
    this.#received++;
    if (!this.#ring.put(payload)) this.#dropped++;
  }

  /** Datagrams given to {@linkcode Printer.print}. */
  get received(): number {
    return this.#received;
  }

  /** Datagrams written to stdout. */
  get printed(): number {
    return this.#ring.printed;
  }

  /** Datagrams dropped because the queue was full. */
  get dropped(): number {
    return this.#dropped;
  }

  /** Settles when the Worker stops: after {@linkcode Printer.close}, or on an error. */
  get ended(): Promise<PrinterEnd> {
    return this.#ended;
  }

  /**
   * Prints what is queued, then stops the Worker.
   *
   * @param ms How long printing may take; the Worker is stopped after that
   * even if stdout is stuck.
   */
  async close(ms = 2000): Promise<void> {
    this.#ring.close();
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      await Promise.race([this.#ended, new Promise((done) => timer = setTimeout(done, ms))]);
    } finally {
      clearTimeout(timer);
      this.#worker.terminate();
      URL.revokeObjectURL(this.#url);
    }
  }
}
