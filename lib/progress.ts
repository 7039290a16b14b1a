/**
 * What a client tells its user while it runs: the progress line, each
 * failed file, the failures counted by reason, and the summary.
 *
 * @module
 */
import type { FileResult } from "./uploader.ts";
import { counted, formatBytes, formatDuration } from "./format.ts";
import type { ScriptOutput } from "./log.ts";

/**
 * Counts failed files by their reason, most common first, so that thousands
 * of files failed for one reason read as one line after the list.
 *
 * @param failed The failed files, each with its message.
 * @param limit The most reasons listed one by one; any more are counted together.
 * @returns Lines of a count and a reason, or none when no two files failed
 * for the same reason (the list of files already says it all).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { failuresByReason } from "../protocol.ts";
 *
 * const failed = ["a", "b"].map((path) => ({ path, ok: false, bytes: 0, message: "Disk full" }));
 * assert.deepEqual(failuresByReason(failed), ["  2 Disk full"]);
 * ```
 */
export function failuresByReason(failed: readonly FileResult[], limit = 5): string[] {
  const counts = new Map<string, number>();
  for (const { message = "no reason given" } of failed) {
    counts.set(message, (counts.get(message) ?? 0) + 1);
  }
  // Stable: reasons of equal count keep the order they first came in.
  const reasons = [...counts].sort((a, b) => b[1] - a[1]);
  if (reasons.length === 0 || reasons[0][1] < 2) return [];
  const shown = reasons.length > limit + 1 ? reasons.slice(0, limit) : reasons;
  const others = reasons.slice(shown.length);
  const width = String(reasons[0][1]).length;
  const line = (count: number, text: string) => `  ${String(count).padStart(width)} ${text}`;
  return [
    ...shown.map(([reason, count]) => line(count, reason)),
    ...(others.length === 0 ? [] : [
      line(others.reduce((sum, [, count]) => sum + count, 0), `for ${others.length} other reasons`),
    ]),
  ];
}

/**
 * What {@linkcode Progress} reports on.
 *
 * @example
 * ```ts
 * import type { ProgressOptions } from "../protocol.ts";
 *
 * const options: ProgressOptions = { total: 2000, skipped: [], legacy: false, verbose: false, cap: 20e6 };
 * ```
 */
export interface ProgressOptions {
  /** Files selected, those that cannot be sent included. */
  total: number;
  /** Selected files that cannot be sent, already failed. */
  skipped: readonly FileResult[];
  /** Whether files count as sent (the original server) rather than confirmed. */
  legacy: boolean;
  /** Whether to say every file sent, not only those that failed. */
  verbose: boolean;
  /**
   * The cap on bytes per second (`--limit-rate`), shown with the rate.
   * @default {undefined}
   */
  cap?: number;
}

/**
 * The tally of a run and its report: a progress line redrawn on a terminal,
 * a line per failed file, the reasons counted, and the summary.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Progress, ScriptOutput } from "../protocol.ts";
 *
 * const progress = new Progress(new ScriptOutput(), { total: 1, skipped: [], legacy: false, verbose: false });
 * progress.onResult({ path: "cat.jpg", ok: true, bytes: 3 });
 * assert.equal(progress.complete, true);
 * progress.finish();
 * ```
 */
export class Progress {
  readonly #script: ScriptOutput;
  readonly #total: number;
  readonly #legacy: boolean;
  readonly #verbose: boolean;
  readonly #cap: number | undefined;
  readonly #started = performance.now();
  readonly #ticker: ReturnType<typeof setInterval> | undefined;
  #confirmed = 0;
  #bytes = 0;
  #already = 0;
  /** The files failed so far; the selected files that cannot be sent count among them. */
  readonly #failures: FileResult[];

  /**
   * Starts the tally, and the progress line when stdout is a terminal.
   *
   * @param script Where lines go.
   * @param options What is reported on.
   */
  constructor(script: ScriptOutput, options: ProgressOptions) {
    this.#script = script;
    this.#failures = [...options.skipped];
    this.#total = options.total;
    this.#legacy = options.legacy;
    this.#verbose = options.verbose;
    this.#cap = options.cap;
    const tty = Deno.stdout.isTerminal();
    this.#ticker = tty ? setInterval(() => this.#draw(), 250) : undefined;
  }

  /** Whether every selected file was confirmed. */
  get complete(): boolean {
    return this.#confirmed === this.#total;
  }

  /** Counts one file's fate, and says it when it failed or with `--verbose`. */
  onResult(result: FileResult): void {
    if (!result.ok) {
      this.#failures.push(result);
      this.#clear();
      this.#script.stderr.line(`failed ${result.path}: ${result.message}`);
      return;
    }
    this.#confirmed++;
    this.#bytes += result.bytes;
    if (result.alreadyThere) this.#already++;
    if (this.#verbose) {
      this.#clear();
      const saved = result.savedAs ? ` as ${result.savedAs}` : "";
      const verb = result.alreadyThere ? "already there:" : "sent";
      this.#script.stdout.line(`${verb} ${result.path}${saved}`);
    }
  }

  /** Stops the progress line and prints the reasons and the summary, with `suffix` after it. */
  finish(suffix = ""): void {
    clearInterval(this.#ticker);
    this.#clear();
    const lines = failuresByReason(this.#failures);
    if (lines.length > 0) this.#script.stderr.line(["failed, by reason:", ...lines].join("\n"));
    this.#script.stdout.line(this.#summary() + suffix);
  }

  /** Files neither confirmed nor failed yet. */
  get unsettled(): number {
    return this.#total - this.#confirmed - this.#failures.length;
  }

  #draw(): void {
    const done = this.#confirmed + this.#failures.length;
    const seconds = (performance.now() - this.#started) / 1000;
    const rate = this.#bytes / seconds;
    const eta = done > 0 ? (seconds / done) * (this.#total - done) * 1000 : NaN;
    const cap = this.#cap === undefined ? "" : ` (cap ${formatBytes(this.#cap)}/s)`;
    const line = `${done}/${this.#total} files  ${formatBytes(this.#bytes)}  ${
      formatBytes(rate)
    }/s${cap}  ETA ${Number.isFinite(eta) ? formatDuration(eta) : "?"}`;
    this.#script.stdout.text(`\r\x1b[K${line}`);
  }

  #clear(): void {
    if (this.#ticker !== undefined) this.#script.stdout.text("\r\x1b[K");
  }

  #summary(): string {
    const elapsed = performance.now() - this.#started;
    const bytes = formatBytes(this.#bytes);
    const already = this.#already > 0 ? ` (${this.#already} already there, not sent)` : "";
    const failed = this.#failures.length > 0
      ? `; ${this.#failures.length} failed (listed above)`
      : "";
    return `${this.#legacy ? "sent" : "confirmed"} ${this.#confirmed} of ${
      counted(this.#total, "file")
    } (${bytes}) in ${formatDuration(elapsed)}, ${
      formatBytes(this.#bytes / (elapsed / 1000))
    }/s${already}${failed}`;
  }
}
