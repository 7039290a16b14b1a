/**
 * The UDP printer for output that never waits for a reader (a file,
 * `/dev/null`): lines are written on the thread that receives, with no
 * Worker beside it.
 *
 * @module
 */
import { fstatSync } from "node:fs";
import { isatty } from "node:tty";
import { writeAllSync } from "./files.ts";
import type { LinePrinter, PrinterEnd } from "./hand_over.ts";
import { LineBatch } from "./printer.ts";

/**
 * Whether writes to a file descriptor never wait for a reader: true for a
 * regular file and for a device that is not a terminal (`/dev/null`), false
 * for a pipe, a socket and a terminal, which Ctrl-S can stop. Needs no
 * permission for a descriptor already open.
 *
 * @param fd An open file descriptor; 1 is stdout.
 * @returns Whether writes to it never wait for a reader.
 *
 * @example `/dev/null` never waits
 * ```ts
 * import assert from "node:assert/strict";
 * import { openSync } from "node:fs";
 * import { writesNeverWait } from "../protocol.ts";
 *
 * assert.ok(writesNeverWait(openSync("/dev/null", "w")));
 * ```
 */
export function writesNeverWait(fd: number): boolean {
  try {
    const stat = fstatSync(fd);
    return stat.isFile() || (stat.isCharacterDevice() && !isatty(fd));
  } catch {
    return false;
  }
}

/**
 * Options for {@linkcode DirectPrinter}.
 *
 * @example Lines gathered in memory
 * ```ts
 * import type { DirectPrinterOptions } from "../protocol.ts";
 *
 * const chunks: Uint8Array[] = [];
 * const options: DirectPrinterOptions = { write: (bytes) => chunks.push(bytes.slice()) };
 * ```
 */
export interface DirectPrinterOptions {
  /**
   * Writes all of the bytes, valid only during the call, or throws.
   * @default {(bytes) => writeAllSync(Deno.stdout, bytes)}
   */
  write?: (bytes: Uint8Array) => void;
}

/** How long a line may wait for the lines after it, to share their write. */
const FLUSH_MS = 5;

/**
 * Prints datagrams one line each on the calling thread, a write for every
 * burst (`FLUSH_MS` after its first line). For output that never waits
 * for a reader: measured on 2 cores, it prints more of a flood than the
 * Worker's {@linkcode Printer}, whose thread takes a core from the receiver.
 * It never drops a datagram; after a failed write it prints no more.
 *
 * @example Two datagrams, one write
 * ```ts
 * import assert from "node:assert/strict";
 * import { DirectPrinter } from "../protocol.ts";
 *
 * const written: string[] = [];
 * const printer = new DirectPrinter({ write: (bytes) => written.push(new TextDecoder().decode(bytes)) });
 * printer.print(new TextEncoder().encode("hello\n"));
 * printer.print(new TextEncoder().encode("\x1b[2J"));
 * await printer.close();
 * assert.deepEqual(written, ["hello\n\\x1b[2J\n"]);
 * assert.deepEqual([printer.received, printer.printed, printer.dropped], [2, 2, 0]);
 * ```
 */
export class DirectPrinter implements LinePrinter {
  readonly #batch: LineBatch;
  readonly #ended: Promise<PrinterEnd>;
  #end: (end: PrinterEnd) => void = () => {};
  #timer: ReturnType<typeof setTimeout> | undefined;
  #failed = false;
  #received = 0;
  #printed = 0;

  /** @param options Where the lines go. */
  constructor(options: DirectPrinterOptions = {}) {
    const write = options.write ?? ((bytes) => writeAllSync(Deno.stdout, bytes));
    this.#ended = new Promise((resolve) => this.#end = resolve);
    this.#batch = new LineBatch((lines, count) => {
      if (this.#failed) return;
      try {
        write(lines);
        this.#printed += count;
      } catch (error) {
        this.#failed = true;
        this.#end({ error: { name: (error as Error).name, message: (error as Error).message } });
      }
    });
  }

  /**
   * Adds a datagram's line to the next write.
   *
   * @param payload The datagram's payload, copied before the call returns.
   */
  print(payload: Uint8Array): void {
    this.#received++;
    this.#batch.add(payload);
    this.#timer ??= setTimeout(() => this.#flush(), FLUSH_MS);
  }

  /** Datagrams given to {@linkcode DirectPrinter.print}. */
  get received(): number {
    return this.#received;
  }

  /** Datagrams written. */
  get printed(): number {
    return this.#printed;
  }

  /** Always 0: nothing waits, so nothing is dropped. */
  get dropped(): number {
    return 0;
  }

  /** Settles after {@linkcode DirectPrinter.close}, or on the first failed write. */
  get ended(): Promise<PrinterEnd> {
    return this.#ended;
  }

  /** Writes what is gathered. */
  close(): Promise<void> {
    this.#flush();
    this.#end({});
    return Promise.resolve();
  }

  #flush(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#batch.flush();
  }
}
