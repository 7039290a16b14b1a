/** The `--limit-rate` schedule, on a fake clock: no test here waits for real time. */
import assert from "node:assert/strict";
import { parseRate, RateLimiter } from "../protocol.ts";

/**
 * A limiter on a fake clock: `run()` drives some work, moving the clock to
 * each sleeper's time in turn, as timers would fire.
 */
function fakeLimiter(rate: number) {
  const clock = { now: 0 };
  const timers: { at: number; wake: () => void }[] = [];
  const limiter = new RateLimiter(rate, {
    now: () => clock.now,
    sleep: (ms) => new Promise((wake) => timers.push({ at: clock.now + ms, wake })),
  });
  const run = async (work: Promise<unknown>) => {
    let done = false;
    work.then(() => done = true);
    while (!done) {
      // Lets every waiting continuation run before the next timer fires.
      await new Promise((resolve) => setTimeout(resolve, 0));
      timers.sort((a, b) => a.at - b.at);
      const next = timers.shift();
      if (next === undefined) continue;
      clock.now = next.at;
      next.wake();
    }
    await work;
  };
  return { clock, limiter, run };
}

Deno.test("RateLimiter lets each write go when the bytes before it have had their time", async () => {
  const { clock, limiter, run } = fakeLimiter(10_000);
  const sentAt: number[] = [];
  await run((async () => {
    for (const bytes of [1000, 1000, 5000, 1000]) {
      await limiter.take(bytes);
      sentAt.push(clock.now);
    }
  })());
  assert.deepEqual(sentAt, [0, 100, 200, 700]);
});

Deno.test("RateLimiter saves nothing up over a pause: the bytes after it go no faster", async () => {
  const { clock, limiter, run } = fakeLimiter(10_000);
  await limiter.take(1000);
  clock.now += 5000;
  const sentAt: number[] = [];
  await run((async () => {
    for (let i = 0; i < 3; i++) {
      await limiter.take(1000);
      sentAt.push(clock.now);
    }
  })());
  assert.deepEqual(sentAt, [5000, 5100, 5200]);
});

Deno.test("RateLimiter shares one rate among connections that write at once, in turn", async () => {
  const { clock, limiter, run } = fakeLimiter(1_000_000);
  const sentAt: [string, number][] = [];
  const connection = async (name: string) => {
    for (let i = 0; i < 3; i++) {
      await limiter.take(100_000);
      sentAt.push([name, clock.now]);
    }
  };
  await run(Promise.all([connection("a"), connection("b")]));
  // Six writes of 100 ms each: the last starts at 500 ms, whichever connection it is.
  assert.deepEqual(sentAt.map(([, at]) => at).sort((x, y) => x - y), [0, 100, 200, 300, 400, 500]);
  assert.deepEqual(new Set(sentAt.map(([name]) => name)), new Set(["a", "b"]));
});

Deno.test("RateLimiter holds any 2-second window after the first second within 1% of the rate", async () => {
  // 20M as --limit-rate reads it, in writes of the size the client makes.
  const rate = parseRate("20M", "--limit-rate");
  const { clock, limiter, run } = fakeLimiter(rate);
  const writes: [number, number][] = [];
  await run((async () => {
    for (let sent = 0; sent < 100 * 1024 ** 2;) {
      const bytes = Math.min(limiter.piece, 100 * 1024 ** 2 - sent);
      await limiter.take(bytes);
      writes.push([clock.now, bytes]);
      sent += bytes;
    }
  })());
  for (let start = 1000; start + 2000 <= clock.now; start += 50) {
    const inWindow = writes.filter(([at]) => at >= start && at < start + 2000)
      .reduce((sum, [, bytes]) => sum + bytes, 0);
    const ratio = inWindow / (rate * 2);
    assert.ok(Math.abs(ratio - 1) < 0.01, `window at ${start} ms: ${ratio}`);
  }
});

Deno.test("RateLimiter writes pieces of 20 ms of its rate, and no smaller than 4 KiB", () => {
  assert.equal(new RateLimiter(20 * 1024 ** 2).piece, 419_430);
  assert.equal(new RateLimiter(1000).piece, 4096);
  assert.throws(() => new RateLimiter(0), RangeError);
});
