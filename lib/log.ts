/**
 * Log output that never throws, and a role script's outputs and exits.
 *
 * @module
 */
import { describeError, exitCodeFor } from "../protocol/errors.ts";
import { isOlderThanMinDeno, MIN_DENO } from "./cli.ts";

const encoder = new TextEncoder();

/**
 * Options for {@linkcode LogOutput}.
 *
 * @example
 * ```ts
 * import type { LogOutputOptions } from "../protocol.ts";
 *
 * const toStderr: LogOutputOptions = { write: (bytes) => Deno.stderr.writeSync(bytes) };
 * ```
 */
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

/**
 * A role script's two outputs and its ways out, written once for the four:
 * stderr that nothing can fail, stdout whose first failure is said on
 * stderr (the work goes on, and the exit status says the log failed), and
 * the exits for `--help`, a usage error and an error that ends the run.
 *
 * @example Say a usage error the way every script does
 * ```ts
 * import assert from "node:assert/strict";
 * import { LogOutput, ScriptOutput } from "../protocol.ts";
 *
 * const lines: string[] = [];
 * const stderr = new LogOutput(() => {}, {
 *   write: (bytes) => (lines.push(new TextDecoder().decode(bytes)), bytes.length),
 * });
 * const script = new ScriptOutput("server.ts", { stderr });
 * assert.equal(script.usageText(new RangeError("Invalid --port: 99999")), "server.ts: Invalid --port: 99999\nTry 'server.ts --help'.");
 * ```
 */
export class ScriptOutput {
  /** The script's name as its messages start, such as `server.ts`. */
  readonly name: string;
  /** Where reports go; a failure is said once on stderr. */
  readonly stdout: LogOutput;
  /** Where errors go. */
  readonly stderr: LogOutput;

  /**
   * Creates the outputs.
   *
   * @param name The script's name as its messages start; by default the file
   * name of the main module, so that a bundle says `client.js`.
   * @param options Other outputs in place of the process's, for tests.
   */
  constructor(
    name: string = Deno.mainModule.slice(Deno.mainModule.lastIndexOf("/") + 1),
    options: { stdout?: LogOutput; stderr?: LogOutput } = {},
  ) {
    this.name = name;
    // Nothing is left to report a failed stderr to; the work goes on without it.
    this.stderr = options.stderr ??
      new LogOutput(() => {}, { write: (bytes) => Deno.stderr.writeSync(bytes) });
    this.stdout = options.stdout ??
      new LogOutput((error) => this.error(`Cannot write to stdout: ${error.message}`));
  }

  /** Writes one error line to stderr, after the script's name. */
  error(message: string): void {
    this.stderr.line(`${this.name}: ${message}`);
  }

  /** The two lines a usage error prints. */
  usageText(error: unknown): string {
    return `${this.name}: ${describeError(error)}\nTry '${this.name} --help'.`;
  }

  /** Prints the usage text and exits: 0, or 1 when stdout could not take it. */
  help(usage: string): never {
    this.stdout.line(usage);
    Deno.exit(this.stdout.failed ? 1 : 0);
  }

  /** Says what is wrong with the command line, and where help is, then exits 2. */
  usage(error: unknown): never {
    this.stderr.line(this.usageText(error));
    Deno.exit(2);
  }

  /**
   * Runs a script's flag parser: exits 2 with the usage error when it
   * throws, and 0 with the usage text when it returns `"help"`.
   */
  command<T>(parse: () => T | "help", usage: string): T {
    let command: T | "help";
    try {
      command = parse();
    } catch (error) {
      this.usage(error);
    }
    if (command === "help") this.help(usage);
    return command;
  }

  /** Exits 1 when this Deno is older than {@linkcode MIN_DENO}. */
  requireMinDeno(): void {
    if (!isOlderThanMinDeno(Deno.version.deno)) return;
    this.error(`Needs Deno ${MIN_DENO} or later: this is Deno ${Deno.version.deno}`);
    Deno.exit(1);
  }

  /** Says why the run cannot go on, and exits as {@linkcode exitCodeFor} says. */
  fail(error: unknown): never {
    this.error(describeError(error));
    Deno.exit(exitCodeFor(error));
  }

  /** Exits 0 when the run succeeded and stdout took all its lines, else 1. */
  exit(succeeded: boolean): never {
    Deno.exit(succeeded && !this.stdout.failed ? 0 : 1);
  }
}
