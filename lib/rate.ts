/**
 * A cap on the bytes a client sends per second, shared by all its connections.
 *
 * @module
 */

/**
 * Options for {@linkcode RateLimiter}: its clock, which a test replaces.
 *
 * @example
 * ```ts
 * import type { RateLimiterOptions } from "../protocol.ts";
 *
 * let now = 0;
 * const options: RateLimiterOptions = {
 *   now: () => now,
 *   sleep: (ms) => Promise.resolve(void (now += ms)),
 * };
 * ```
 */
export interface RateLimiterOptions {
  /**
   * The time in milliseconds.
   * @default {() => performance.now()}
   */
  now?: () => number;
  /**
   * Waits this many milliseconds.
   * @default {(ms) => new Promise((resolve) => setTimeout(resolve, ms))}
   */
  sleep?: (ms: number) => Promise<void>;
}

/** The smallest write worth waiting for: below this, timers cost more than they smooth. */
const MIN_PIECE = 4096;
/** Milliseconds of the rate in one write: short enough that any 2-second window is within 1%. */
const PIECE_MS = 20;

/**
 * Lets bytes go at a fixed rate: each write takes the next slot of the
 * schedule, so writes from several connections share the rate in turn. A
 * pause saves nothing up: the schedule never runs behind the clock, so the
 * bytes after it go no faster than the rate.
 *
 * @example Three writes of a second's worth each
 * ```ts
 * import assert from "node:assert/strict";
 * import { RateLimiter } from "../protocol.ts";
 *
 * let now = 0;
 * const limiter = new RateLimiter(1000, {
 *   now: () => now,
 *   sleep: (ms) => Promise.resolve(void (now += ms)),
 * });
 * const sentAt: number[] = [];
 * for (let i = 0; i < 3; i++) {
 *   await limiter.take(1000);
 *   sentAt.push(now);
 * }
 * assert.deepEqual(sentAt, [0, 1000, 2000]);
 * ```
 */
export class RateLimiter {
  /** Bytes per second. */
  readonly rate: number;
  readonly #now: () => number;
  readonly #sleep: (ms: number) => Promise<void>;
  /** When the bytes granted so far have had their time at the rate. */
  #due = -Infinity;

  /**
   * @param rate Bytes per second, more than zero.
   * @param options The clock.
   */
  constructor(rate: number, options: RateLimiterOptions = {}) {
    if (!(rate > 0) || !Number.isFinite(rate)) {
      throw new RangeError(`Cannot limit the rate: expected bytes per second above 0, got ${rate}`);
    }
    this.rate = rate;
    this.#now = options.now ?? (() => performance.now());
    this.#sleep = options.sleep ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms)));
  }

  /** The most bytes to write at once: 20 ms of the rate, and at least 4 KiB. */
  get piece(): number {
    return Math.max(MIN_PIECE, Math.floor(this.rate * PIECE_MS / 1000));
  }

  /**
   * Waits for the slot of `bytes` bytes: until the bytes granted before
   * them have had their time.
   */
  async take(bytes: number): Promise<void> {
    const now = this.#now();
    const start = Math.max(this.#due, now);
    this.#due = start + bytes * 1000 / this.rate;
    if (start > now) await this.#sleep(start - now);
  }
}
