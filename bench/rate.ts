/**
 * How closely `client.ts --limit-rate` holds its cap: 100 MiB of files sent
 * at 20M (20 MiB/s) on loopback, through a proxy that counts the bytes the
 * client puts on the wire every 10 ms. Reports, for each round, the elapsed
 * time against the 5 s the cap allows, and the lowest and highest rate over
 * any 2-second window after the first second.
 *
 *   deno task bench:rate [--rounds N]
 *
 * @module
 */
import { parseArgs } from "node:util";

const ROOT = new URL("../", import.meta.url).pathname;
const MiB = 1024 ** 2;
const CAP = "20M";
const CAP_BYTES = 20 * MiB;
const FILES = 20;
const FILE_SIZE = 5 * MiB;
const STEP_MS = 10;

/** Bytes the client wrote, counted into 10 ms steps from the first byte. */
class Tally {
  readonly steps: number[] = [];
  #start = 0;

  add(bytes: number): void {
    const now = performance.now();
    if (this.#start === 0) this.#start = now;
    const step = Math.floor((now - this.#start) / STEP_MS);
    while (this.steps.length <= step) this.steps.push(0);
    this.steps[step] += bytes;
  }

  /** Bytes per second over each 2 s window starting after the first second, lowest and highest. */
  windows(): { low: number; high: number } {
    const width = 2000 / STEP_MS;
    let low = Infinity;
    let high = 0;
    for (let start = 1000 / STEP_MS; start + width <= this.steps.length - 1; start++) {
      const rate = this.steps.slice(start, start + width).reduce((a, b) => a + b, 0) / 2;
      low = Math.min(low, rate);
      high = Math.max(high, rate);
    }
    return { low, high };
  }
}

/** Forwards every connection to `port`, counting what the client sends. */
function countingProxy(port: number, tally: Tally): Deno.Listener {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  (async () => {
    for await (const client of listener) {
      const server = await Deno.connect({ hostname: "127.0.0.1", port });
      const up = (async () => {
        const buffer = new Uint8Array(256 * 1024);
        for (let n; (n = await client.read(buffer)) !== null;) {
          tally.add(n);
          for (let at = 0; at < n;) at += await server.write(buffer.subarray(at, n));
        }
        await server.closeWrite().catch(() => {});
      })();
      const down = server.readable.pipeTo(client.writable).catch(() => {});
      Promise.all([up, down]).catch(() => {}).finally(() => {
        try {
          server.close();
        } catch { /* closed by the pipe */ }
      });
    }
  })().catch(() => {});
  return listener;
}

async function round(input: string, work: string, index: number) {
  const out = `${work}/out-${index}`;
  const server = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${ROOT}server.ts`, "--host=127.0.0.1", "--port=0", `--out=${out}`, "-q"],
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const reader = server.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  let match: RegExpMatchArray | null = null;
  while (!(match = /listening on 127\.0\.0\.1:(\d+)/.exec(text))) {
    const { value, done } = await reader.read();
    if (done) throw new Error("server.ts ended before listening");
    text += value;
  }
  const tally = new Tally();
  const proxy = countingProxy(Number(match[1]), tally);
  const started = performance.now();
  const client = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      `${ROOT}client.ts`,
      "--port",
      String((proxy.addr as Deno.NetAddr).port),
      "--limit-rate",
      CAP,
      input,
    ],
    stdout: "null",
    stderr: "inherit",
  }).output();
  const seconds = (performance.now() - started) / 1000;
  proxy.close();
  server.kill("SIGTERM");
  await server.status;
  reader.releaseLock();
  if (!client.success) throw new Error("client.ts failed");
  return { seconds, ...tally.windows() };
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { rounds: { type: "string", default: "3" } } });
  const work = await Deno.makeTempDir({ prefix: "bench-rate-" });
  try {
    const input = `${work}/in`;
    await Deno.mkdir(input);
    const data = new Uint8Array(FILE_SIZE);
    for (let i = 0; i < FILES; i++) {
      for (let at = 0; at < FILE_SIZE; at += 65_536) {
        crypto.getRandomValues(data.subarray(at, at + 65_536));
      }
      await Deno.writeFile(`${input}/${String(i).padStart(2, "0")}.jpg`, data);
    }
    const expected = (FILES * FILE_SIZE) / CAP_BYTES;
    const results = [];
    for (let i = 0; i < Number(values.rounds); i++) {
      const result = await round(input, work, i);
      results.push(result);
      console.log(
        `round ${i + 1}: ${result.seconds.toFixed(2)} s (${
          ((result.seconds / expected - 1) * 100).toFixed(1)
        }% from ${expected} s); 2-s windows after the first second: ${
          (result.low / CAP_BYTES * 100).toFixed(1)
        }% to ${(result.high / CAP_BYTES * 100).toFixed(1)}% of the cap`,
      );
    }
    const median = results.map((r) => r.seconds).sort((a, b) => a - b)[
      Math.floor(results.length / 2)
    ];
    console.log(
      `median: ${median.toFixed(2)} s for ${FILES * FILE_SIZE / MiB} MiB at --limit-rate ${CAP}`,
    );
  } finally {
    await Deno.remove(work, { recursive: true });
  }
}

if (import.meta.main) await main();
