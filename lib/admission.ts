/**
 * Admission: the turns frames take to be received, so that a crowd of
 * senders waits in order rather than being refused.
 *
 * @module
 */
import { REFUSALS } from "../protocol/control.ts";
import { counted, formatDuration } from "./format.ts";

/** A frame waiting for its turn in {@linkcode FrameSlots}. */
interface Waiter {
  /** Arrival order: the oldest waiter with room goes first. */
  order: number;
  resolve: () => void;
  reject: (error: Error) => void;
  timer: ReturnType<typeof setTimeout>;
}

/**
 * Caps and deadline of {@linkcode FrameSlots}, all required: the server passes its own defaults.
 *
 * @example
 * ```ts
 * import type { FrameSlotsOptions } from "../protocol.ts";
 *
 * const options: FrameSlotsOptions = { max: 256, perAddress: 32, timeout: 30_000 };
 * ```
 */
export interface FrameSlotsOptions {
  /** Frames received at once. */
  max: number;
  /** Frames received at once from one address. */
  perAddress: number;
  /** Milliseconds a frame may wait for its turn. */
  timeout: number;
}

/**
 * The right to receive a frame's body: at most `max` frames at once, and at
 * most `perAddress` from one address, each holding up to 1.75 MiB of buffers.
 * A frame over a cap waits, its body unread, first come first served, as a
 * request waits in HAProxy's queue for a server under its `maxconn`; past the
 * deadline (HAProxy's `timeout queue`) it is refused as busy. Waiting, a
 * connection holds no body buffer, and its client is held back by TCP.
 *
 * @example A second frame waits for the first one's turn
 * ```ts
 * import assert from "node:assert/strict";
 * import { FrameSlots } from "../protocol.ts";
 *
 * const slots = new FrameSlots({ max: 1, perAddress: 1, timeout: 1000 });
 * assert.equal(slots.take("10.0.0.1"), undefined);
 * const waiting = slots.take("10.0.0.2");
 * assert.ok(waiting instanceof Promise);
 * slots.give("10.0.0.1");
 * await waiting;
 * slots.give("10.0.0.2");
 * ```
 */
export class FrameSlots {
  readonly #max: number;
  readonly #perAddress: number;
  readonly #timeout: number;
  #active = 0;
  readonly #byAddress = new Map<string, number>();
  /** Frames waiting, by address, each list oldest first. */
  readonly #waiting = new Map<string, Waiter[]>();
  #arrivals = 0;

  constructor(options: FrameSlotsOptions) {
    this.#max = options.max;
    this.#perAddress = options.perAddress;
    this.#timeout = options.timeout;
  }

  /**
   * Takes a turn for a frame from `address`.
   *
   * @returns Nothing when there is room at once, so that a free turn costs no
   * wait; otherwise a promise that settles with the turn, or rejects with
   * `Deno.errors.Busy` after the deadline.
   */
  take(address: string): Promise<void> | undefined {
    if (this.#hasRoom(address)) {
      this.#grant(address);
      return undefined;
    }
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    const waiter: Waiter = {
      order: this.#arrivals++,
      resolve,
      reject,
      timer: setTimeout(() => {
        this.#remove(address, waiter);
        reject(new Deno.errors.Busy(this.#busyMessage(address)));
      }, this.#timeout),
    };
    const list = this.#waiting.get(address);
    if (list) list.push(waiter);
    else this.#waiting.set(address, [waiter]);
    return promise;
  }

  /** Gives back the turn of a frame from `address`, to the oldest frame that may have it. */
  give(address: string): void {
    this.#active--;
    const left = this.#byAddress.get(address)! - 1;
    if (left === 0) this.#byAddress.delete(address);
    else this.#byAddress.set(address, left);
    while (this.#active < this.#max) {
      let next: string | undefined;
      for (const [waiting, list] of this.#waiting) {
        if (!this.#hasRoom(waiting)) continue;
        if (next === undefined || list[0].order < this.#waiting.get(next)![0].order) next = waiting;
      }
      if (next === undefined) return;
      const waiter = this.#waiting.get(next)![0];
      this.#remove(next, waiter);
      this.#grant(next);
      waiter.resolve();
    }
  }

  /** Turns every waiting frame away: the server is stopping, and their drain time is over. */
  close(): void {
    for (const [address, list] of this.#waiting) {
      for (const waiter of [...list]) {
        this.#remove(address, waiter);
        waiter.reject(new Deno.errors.Interrupted("Server stopping"));
      }
    }
  }

  #hasRoom(address: string): boolean {
    return this.#active < this.#max && (this.#byAddress.get(address) ?? 0) < this.#perAddress;
  }

  #grant(address: string): void {
    this.#active++;
    this.#byAddress.set(address, (this.#byAddress.get(address) ?? 0) + 1);
  }

  #remove(address: string, waiter: Waiter): void {
    clearTimeout(waiter.timer);
    const list = this.#waiting.get(address)!;
    list.splice(list.indexOf(waiter), 1);
    if (list.length === 0) this.#waiting.delete(address);
  }

  #busyMessage(address: string): string {
    const full = this.#active >= this.#max
      ? counted(this.#max, "frame")
      : `${counted(this.#perAddress, "frame")} from ${address}`;
    return `${REFUSALS.busy}: no turn within ${formatDuration(this.#timeout)}: ${full} in progress`;
  }
}
