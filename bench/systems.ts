/**
 * What the benchmark compares: our pair with its options, the original's
 * Python port, `tar c | nc`, an rsync daemon and the loopback ceiling, each
 * a {@linkcode System} that runs once on a generated set, on loopback or
 * across a shaped link.
 *
 * @module
 */
import type { Sample } from "./report.ts";
import {
  checkInterrupted,
  HERE,
  Proc,
  readTime,
  type Side,
  timed,
  underTime,
  until,
} from "./proc.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const MiB = 1024 * 1024;

/** A generated set of images. */
export interface Dataset {
  name: string;
  dir: string;
  files: number;
  /** Bytes of image data. */
  bytes: number;
  /** Sizes by name (without extension), to check what arrived. */
  sizes: Map<string, number>;
}

/** One thing measured: a way of moving a set from one side to the other. */
export interface System {
  label: string;
  /** Runs once; undefined when the system does not apply to the set. */
  run(set: Dataset): Promise<Sample | undefined>;
}

/** Where the two sides of a run live: loopback, or the two ends of a shaped link. */
export interface Ends {
  /** The address the receiving side listens on and the sending side connects to. */
  host: string;
  /** Runs a process on the receiving side. */
  server: Side;
  /** Runs a process on the sending side. */
  client: Side;
}

/** Both sides on this machine's loopback. */
export const LOOPBACK: Ends = { host: "127.0.0.1", server: HERE, client: HERE };

/** The folder a run's data and output go in, and where its two sides run. */
export interface Bench {
  work: string;
  ends: Ends;
}

function hex(bytes: number): string {
  return [...crypto.getRandomValues(new Uint8Array(bytes))]
    .map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** Random bytes behind a JPEG signature, named by 32 hex characters like the original's data. */
export async function makeDataset(name: string, dir: string, count: number, size: number) {
  await Deno.mkdir(dir, { recursive: true });
  const block = new Uint8Array(Math.min(size, 4 * MiB));
  const sizes = new Map<string, number>();
  for (let i = 0; i < count; i++) {
    checkInterrupted();
    const stem = hex(16);
    using file = await Deno.open(`${dir}/${stem}.jpg`, { write: true, createNew: true });
    for (let written = 0; written < size;) {
      const n = Math.min(block.length, size - written);
      for (let offset = 0; offset < n; offset += 65_536) {
        crypto.getRandomValues(block.subarray(offset, Math.min(n, offset + 65_536)));
      }
      if (written === 0) block.set([0xff, 0xd8, 0xff, 0xe0]);
      for (let o = 0; o < n;) o += await file.write(block.subarray(o, n));
      written += n;
    }
    sizes.set(stem, size);
  }
  return { name, dir, files: count, bytes: count * size, sizes };
}

/** A subset of a set, as hard links, for the slow original. */
export async function subset(set: Dataset, dir: string, count: number): Promise<Dataset> {
  await Deno.mkdir(dir, { recursive: true });
  const sizes = new Map([...set.sizes].slice(0, count));
  for (const stem of sizes.keys()) await Deno.link(`${set.dir}/${stem}.jpg`, `${dir}/${stem}.jpg`);
  const bytes = [...sizes.values()].reduce((a, b) => a + b, 0);
  return { name: `${set.name} (${count})`, dir, files: count, bytes, sizes };
}

function freePort(): number {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  return listener.addr.port;
}

/** Counts the files that arrived with the expected size. */
async function countIntact(out: string, expected: (name: string) => number | undefined) {
  let intact = 0;
  for await (const entry of Deno.readDir(out)) {
    const size = expected(entry.name);
    if (size !== undefined && (await Deno.stat(`${out}/${entry.name}`)).size === size) intact++;
  }
  return intact;
}

/** The files of a set that arrived under their own names with their own sizes. */
function countSet(out: string, set: Dataset): Promise<number> {
  return countIntact(out, (name) => set.sizes.get(name.replace(/\.jpg$/, "")));
}

/** The last line a failed command wrote, which says why: a summary, a traceback's last line. */
function why(text: string): string {
  return text.trim().split("\n").at(-1) ?? "";
}

function base64Size(bytes: number): number {
  return Math.ceil(bytes / 3) * 4;
}

/**
 * A run's figures once the upload is done: the client's from GNU time, the
 * server's from /proc, counted from just before the upload. Nothing counted
 * as intact yet.
 */
function sampleOf(set: Dataset, run: {
  seconds: number;
  client: { kiB: number; cpu: number };
  server: Proc;
  serverCpuBefore: number;
}): Sample {
  return {
    seconds: run.seconds,
    files: set.files,
    bytes: set.bytes,
    intact: 0,
    clientKiB: run.client.kiB,
    serverKiB: run.server.peakKiB(),
    clientCpu: run.client.cpu,
    serverCpu: run.server.cpuSeconds() - run.serverCpuBefore,
  };
}

/** How to run our pair: `allowAll` measures what Deno's per-path permission checks cost. */
export interface OursOptions {
  /** Connections of the client; its own default when not given. */
  concurrency?: number;
  raw?: boolean;
  allowAll?: boolean;
  /** Upload the set once untimed, then time the same upload again finding it all there. */
  again?: boolean;
  /** Send every file without asking the server first what it holds. */
  sendAll?: boolean;
  /** Send file data as base64, not as the raw bytes our server agrees to. */
  base64?: boolean;
  /** Serve TLS with this certificate and key, which the client pins with --ca. */
  tls?: { cert: string; key: string };
  /** Idle connections held open on the server, from 300 addresses, during the upload. */
  idle?: number;
  /** V8 flags for the server, as `--v8-flags` takes them. */
  v8Flags?: string;
}

function oursLabel(options: OursOptions): string {
  const { concurrency, raw, allowAll, again, idle = 0, v8Flags } = options;
  const flags = [
    concurrency === undefined ? "" : ` -c ${concurrency}`,
    options.sendAll ? " --send-all" : "",
    options.base64 ? " --base64" : "",
    options.tls ? " --tls" : "",
    raw ? " --raw" : "",
  ].join("");
  return `ours${flags}${again ? ", run again, all there" : ""}${allowAll ? " (--allow-all)" : ""}${
    idle > 0 ? `, ${idle.toLocaleString("en")} idle connections` : ""
  }${v8Flags ? ` (--v8-flags=${v8Flags})` : ""}`;
}

/** Holds `idle` connections open on the server from 300 loopback addresses. */
async function startCrowd(port: string, idle: number, log: string): Promise<Proc> {
  const args = ["-u", `${ROOT}tests/crowd.py`, port, String(idle), "300", "0", "600"];
  const crowd = new Proc("python3", args, log);
  await crowd.started(/^ready$/m);
  return crowd;
}

/** Starts server.ts with the least privilege it needs, saving into `out`. */
function startOurServer(bench: Bench, out: string, options: OursOptions): Proc {
  const { host, server } = bench.ends;
  const { tls } = options;
  const readable = [out, ...(tls ? [tls.cert, tls.key] : [])].join(",");
  return new Proc(
    Deno.execPath(),
    [
      "run",
      ...(options.v8Flags ? [`--v8-flags=${options.v8Flags}`] : []),
      ...(options.allowAll
        ? ["--allow-all"]
        : [`--allow-net=${host}`, `--allow-read=${readable}`, `--allow-write=${out}`]),
      `${ROOT}server.ts`,
      `--host=${host}`,
      "--port=0",
      `--out=${out}`,
      "--quiet",
      "--max-frame-size=2G",
      ...(options.raw ? ["--raw"] : []),
      ...(tls ? [`--tls-cert=${tls.cert}`, `--tls-key=${tls.key}`] : []),
    ],
    `${out}.server.log`,
    server,
  );
}

/** The arguments that run client.ts as the README does, but for the port and flags. */
function ourClientArgs(bench: Bench, set: Dataset, options: OursOptions): string[] {
  const { host } = bench.ends;
  const { tls } = options;
  const readable = [set.dir, ...(tls ? [tls.cert] : [])].join(",");
  return [
    "run",
    ...(options.allowAll ? ["--allow-all"] : [`--allow-net=${host}`, `--allow-read=${readable}`]),
    `${ROOT}client.ts`,
    `--host=${host}`,
    ...(options.concurrency === undefined ? [] : [`--concurrency=${options.concurrency}`]),
    ...(tls ? [`--ca=${tls.cert}`] : []),
  ];
}

/** Our client and server, with these options. */
export function ours(bench: Bench, options: OursOptions): System {
  const { raw = false, again = false, idle = 0 } = options;
  const clientFlags = [
    ...(options.sendAll ? ["--send-all"] : []),
    ...(options.base64 ? ["--base64"] : []),
  ];
  return {
    label: oursLabel(options),
    async run(set) {
      // Reading back a huge file on both sides says nothing the small set does not.
      if (again && set.name === "huge") return undefined;
      // What idle connections cost shows in many small files.
      if (idle > 0 && set.name !== "small") return undefined;
      const out = await Deno.makeTempDir({ dir: bench.work, prefix: "out-" });
      const server = startOurServer(bench, out, options);
      let crowd: Proc | undefined;
      try {
        const port = (await server.started(/listening on [^\n]*:(\d+)/))[1];
        if (idle > 0) crowd = await startCrowd(port, idle, `${out}.crowd.log`);
        const upload = async (flags: string[]) => {
          const args = [...ourClientArgs(bench, set, options), `--port=${port}`, ...flags, set.dir];
          const client = await timed(Deno.execPath(), args, `${out}.client.log`, bench.ends.client);
          const report = Deno.readTextFileSync(`${out}.client.log`);
          if (!client.status.success) throw new Error(`client failed: ${why(report)}`);
          return { ...client, report };
        };
        if (again) await upload([]);
        // The server's start-up, and the untimed upload before the timed one, are not the run's.
        const serverCpuBefore = server.cpuSeconds();
        const client = await upload(clientFlags);
        // From its first connection to the last confirmation, as the client measures it.
        const elapsed = client.report.match(/ in ([0-9.]+) (ms|s),/);
        if (!elapsed) throw new Error(`no time in the client's summary: ${client.report}`);
        const seconds = Number(elapsed[1]) / (elapsed[2] === "ms" ? 1000 : 1);
        const sample = sampleOf(set, { seconds, client, server, serverCpuBefore });
        sample.intact = raw
          ? await countIntact(
            out,
            (name) => /^\d+$/.test(name) ? 32 + base64Size(set.bytes / set.files) : undefined,
          )
          : await countSet(out, set);
        return sample;
      } finally {
        await crowd?.stop("SIGTERM");
        await server.stop("SIGTERM");
        await Deno.remove(out, { recursive: true });
      }
    },
  };
}

/** The tutorial's scripts as they are (their Python 3 ports), on a subset of the small set. */
export function original(bench: Bench, subsets: Map<string, Dataset>): System {
  const { host, server: serverSide, client: clientSide } = bench.ends;
  return {
    label: "original (Python port)",
    async run(fullSet) {
      if (fullSet.name === "huge") return undefined; // It holds the file and its base64 in memory.
      const set = subsets.get(fullSet.name) ?? fullSet;
      const out = await Deno.makeTempDir({ dir: bench.work, prefix: "orig-" });
      const script = `${ROOT}tests/original/tcp_server.py`;
      const server = new Proc("python3", [script, "0", out, host], `${out}.server.log`, serverSide);
      try {
        const port = (await server.started(/listening on [^\n]*:(\d+)/))[1];
        const serverCpuBefore = server.cpuSeconds();
        const started = performance.now();
        const client = await timed(
          "python3",
          [
            `${ROOT}tests/original/tcp_client.py`,
            host,
            port,
            set.dir,
          ],
          `${out}.client.log`,
          clientSide,
        );
        const log = Deno.readTextFileSync(`${out}.client.log`);
        // The original server takes each recv for 4,096 bytes whatever came: on a slow link it
        // may stop reading a body early and close, and the reset ends its client there. That
        // loss is the original's result, counted as files not intact, not a failed benchmark.
        const reset = /ConnectionResetError|BrokenPipeError/.test(log);
        if (!client.status.success && !reset) {
          throw new Error(`original client failed: ${why(log)}`);
        }
        if (reset) console.error(`bench: the original server cut its client short: ${why(log)}`);
        else {
          await until(
            "the original server to save every file",
            () => server.output().includes(`num finish: ${set.files} `),
            600_000,
          );
        }
        const seconds = (performance.now() - started) / 1000;
        // After a reset no more files come; the one cut short is saved as its connection closes.
        if (reset) await new Promise((resolve) => setTimeout(resolve, 500));
        const sample = sampleOf(set, { seconds, client, server, serverCpuBefore });
        // The original stores each body (name + base64) as a numbered file.
        const body = 32 + base64Size(set.bytes / set.files);
        sample.intact = await countIntact(out, () => body);
        return sample;
      } finally {
        await server.stop("SIGKILL");
        await Deno.remove(out, { recursive: true });
      }
    },
  };
}

/** A sender and a receiver that together move a set. */
interface Pipeline {
  label: string;
  receiver: [string, string[]];
  sender: [string, string[]];
  /** Whose exit means the set has arrived: tar x's, or rsync's sender once its receiver answered. */
  doneAt: "sender" | "receiver";
}

/**
 * Runs a receiver that listens on `port`, then the sender, and times them
 * from the sender's start until the set has arrived.
 */
async function pipeline(bench: Bench, out: string, port: number, commands: Pipeline) {
  const receiverTime = `${out}.receiver.time`;
  const receiver = new Proc(
    "/usr/bin/time",
    underTime(receiverTime, ...commands.receiver),
    `${out}.receiver.log`,
    bench.ends.server,
  );
  try {
    await until(`${commands.label} to listen`, () => receiver.listening(port));
    const started = performance.now();
    const senderLog = `${out}.sender.log`;
    const sender = await timed(...commands.sender, senderLog, bench.ends.client);
    const sent = (performance.now() - started) / 1000;
    const received = await receiver.child.status;
    const seconds = commands.doneAt === "sender" ? sent : (performance.now() - started) / 1000;
    if (!sender.status.success || !received.success) {
      throw new Error(
        `${commands.label} failed: ${
          why(`${Deno.readTextFileSync(senderLog)}\n${receiver.output()}`)
        }`,
      );
    }
    return { seconds, clientCpu: sender.cpu, serverCpu: readTime(receiverTime).cpu };
  } finally {
    await receiver.stop("SIGKILL");
  }
}

/** What a pipeline's two commands need: where the set goes, the port, the set. */
interface PipelineRun {
  out: string;
  port: number;
  set: Dataset;
}

/** A system whose receiver and sender are shell commands, delivering into a fresh folder. */
function pipelineSystem(
  bench: Bench,
  label: string,
  commands: (run: PipelineRun) => Promise<Omit<Pipeline, "label">>,
): System {
  return {
    label,
    async run(set) {
      const out = await Deno.makeTempDir({ dir: bench.work, prefix: "pipe-" });
      const port = freePort();
      try {
        const times = await pipeline(bench, out, port, {
          label,
          ...await commands({ out, port, set }),
        });
        const intact = await countSet(out, set);
        return { ...times, files: set.files, bytes: set.bytes, intact };
      } finally {
        await Deno.remove(out, { recursive: true });
      }
    },
  };
}

/** `tar c | nc` into `nc -l | tar x`: the hand-made way to move a folder. */
export function tarNc(bench: Bench): System {
  const { host } = bench.ends;
  return pipelineSystem(bench, "tar c | nc", ({ out, port, set }) =>
    Promise.resolve({
      receiver: ["sh", ["-c", `nc -l ${host} ${port} | tar x -C '${out}'`]],
      sender: ["sh", ["-c", `tar c -C '${set.dir}' . | nc -N ${host} ${port}`]],
      doneAt: "receiver",
    }));
}

/**
 * An rsync daemon for one connection, taking `rsync -a --whole-file` to
 * `rsync://`: rsync's own fastest way between two machines without ssh.
 */
export function rsyncDaemon(bench: Bench): System {
  const { host } = bench.ends;
  return pipelineSystem(bench, "rsync daemon", async ({ out, port, set }) => {
    const config = `${out}.conf`;
    // As root the daemon would otherwise write as nobody; no chroot, nothing to escape.
    await Deno.writeTextFile(
      config,
      `use chroot = false\nuid = 0\ngid = 0\n[up]\npath = ${out}\nread only = false\n`,
    );
    return {
      // Stopped once the sender is done, so that the CPU of the children it waited for is counted.
      receiver: ["sh", [
        "-c",
        `rsync --daemon --no-detach --config='${config}' --address=${host} --port=${port} & pid=$!; ` +
        `while [ ! -e '${out}.done' ]; do sleep 0.05; done; kill $pid; wait $pid; exit 0`,
      ]],
      sender: ["sh", [
        "-c",
        `rsync -a --whole-file '${set.dir}/' rsync://${host}:${port}/up/ && touch '${out}.done'`,
      ]],
      doneAt: "sender",
    };
  });
}

/** One connection with nothing else done: what loopback carries at most. */
export function ceiling(bench: Bench): System {
  return {
    label: "loopback ceiling (1 connection)",
    async run(set) {
      const log = `${bench.work}/ceiling.log`;
      const status = await new Proc(Deno.execPath(), [
        "run",
        "--allow-net=127.0.0.1",
        `${ROOT}bench/ceiling.ts`,
        String(set.bytes),
      ], log).child.status;
      if (!status.success) throw new Error(`ceiling failed: ${why(Deno.readTextFileSync(log))}`);
      const seconds = Number(Deno.readTextFileSync(log).trim());
      return { seconds, files: set.files, bytes: set.bytes, intact: set.files };
    },
  };
}
