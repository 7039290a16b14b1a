/**
 * `deno task bench`: our uploader against the original scripts (their Python
 * 3 ports in tests/original/), against `tar c | nc` and against the raw
 * loopback ceiling, on the same generated data in the same run, plus the UDP
 * printers under a flood. Medians of several alternating rounds.
 *
 *   deno task bench [--quick] [--skip-huge] [--rounds N] [--dir DIR]
 *
 * Writes the table to bench/RESULTS.md and README.md (not with --quick, which CI runs so
 * that the benchmark cannot rot). It measures; it asserts nothing. It runs
 * with --allow-all: Deno grants /proc (peak memory, listening sockets) to
 * nothing less, and it spawns every tool it compares anyway.
 */
import { parseArgs } from "node:util";
import { describeError, parseCount } from "../protocol.ts";
import {
  formatSeconds,
  goals,
  header,
  type Results,
  type Sample,
  tables,
  type UdpResult,
  writePages,
} from "./report.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const MiB = 1024 * 1024;
/** Units of the CPU times in /proc/PID/stat: USER_HZ, 100 on every Linux this runs on. */
const CLOCK_TICKS = 100;

interface Dataset {
  name: string;
  dir: string;
  files: number;
  /** Bytes of image data. */
  bytes: number;
  /** Sizes by name (without extension), to check what arrived. */
  sizes: Map<string, number>;
}

interface System {
  label: string;
  /** Runs once; undefined when the system does not apply to the set. */
  run(set: Dataset): Promise<Sample | undefined>;
}

const decoder = new TextDecoder();
/**
 * V8's young generation kept small, as server.ts's shebang and the README
 * advise for a crowd of idle connections: it otherwise grows with the heap
 * they hold, and a run of frames leaves that much garbage uncollected.
 */
const SMALL_YOUNG_GENERATION = "--max-semi-space-size=2";

/** Every process the benchmark started that has not exited yet. */
const running = new Set<Proc>();
/** The signal that stopped the benchmark, once one has. */
let interrupted: Deno.Signal | undefined;

/** Stops the run in progress once a signal has come, so that the data can go. */
function checkInterrupted(): void {
  if (interrupted) throw new Error(`Stopped by ${interrupted}`);
}

async function sleep(ms: number): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `test` every 20 ms until it holds, failing after `ms`. */
async function until(what: string, test: () => boolean | Promise<boolean>, ms = 60_000) {
  const deadline = Date.now() + ms;
  while (!await test()) {
    checkInterrupted();
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await sleep(20);
  }
}

function hex(bytes: number): string {
  return [...crypto.getRandomValues(new Uint8Array(bytes))]
    .map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** Random bytes behind a JPEG signature, named by 32 hex characters like the original's data. */
async function makeDataset(name: string, dir: string, count: number, size: number) {
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
async function subset(set: Dataset, dir: string, count: number): Promise<Dataset> {
  await Deno.mkdir(dir, { recursive: true });
  const sizes = new Map([...set.sizes].slice(0, count));
  for (const stem of sizes.keys()) await Deno.link(`${set.dir}/${stem}.jpg`, `${dir}/${stem}.jpg`);
  const bytes = [...sizes.values()].reduce((a, b) => a + b, 0);
  return { name: `${set.name} (${count})`, dir, files: count, bytes, sizes };
}

/** A process whose stdout and stderr go to files, so a flood of output costs us nothing. */
class Proc {
  readonly child: Deno.ChildProcess;
  readonly log: string;

  constructor(command: string, args: string[], log: string) {
    checkInterrupted();
    this.log = log;
    const shellQuote = (s: string) => `'${s.replaceAll("'", "'\\''")}'`;
    this.child = new Deno.Command("sh", {
      args: [
        "-c",
        `exec ${[command, ...args].map(shellQuote).join(" ")} > ${shellQuote(log)} 2>&1`,
      ],
      stdin: "null",
    }).spawn();
    running.add(this);
    this.child.status.finally(() => running.delete(this));
  }

  /** Waits until the output matches `pattern`; fails at once if the process exits first. */
  async started(pattern: RegExp): Promise<RegExpMatchArray> {
    let exited = false;
    this.child.status.then(() => exited = true);
    let match: RegExpMatchArray | null = null;
    await until(`${pattern} from ${this.log}`, () => {
      if (exited) throw new Error(`Exited before ${pattern}: ${this.output()}`);
      match = this.output().match(pattern);
      return match !== null;
    });
    return match!;
  }

  output(): string {
    try {
      return decoder.decode(Deno.readFileSync(this.log));
    } catch {
      return "";
    }
  }

  /** User and system seconds spent so far, from /proc. */
  cpuSeconds(): number {
    const stat = Deno.readTextFileSync(`/proc/${this.child.pid}/stat`);
    // The name field may hold spaces; utime and stime are the 12th and 13th after it.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
  }

  /** Peak resident memory so far, from /proc. */
  peakKiB(): number | undefined {
    try {
      const status = Deno.readTextFileSync(`/proc/${this.child.pid}/status`);
      return Number(status.match(/VmHWM:\s+(\d+) kB/)?.[1]);
    } catch {
      return undefined;
    }
  }

  async stop(signal: Deno.Signal): Promise<Deno.CommandStatus> {
    try {
      this.child.kill(signal);
    } catch {
      // Already exited.
    }
    return await this.child.status;
  }
}

/** Arguments that run a command under GNU time, which writes what {@linkcode readTime} reads. */
function underTime(timeFile: string, command: string, args: string[]): string[] {
  return ["-f", "%M %U %S", "-o", timeFile, command, ...args];
}

/** Peak RSS, and the CPU seconds of a command and every child it waited for. */
function readTime(timeFile: string): { kiB: number; cpu: number } {
  // A failed command's status comes on a line before.
  const [kiB, user, system] = Deno.readTextFileSync(timeFile).trim().split("\n").at(-1)!
    .split(" ").map(Number);
  return { kiB, cpu: user + system };
}

/** Runs a command to its end under GNU time and returns its status, seconds, peak RSS and CPU. */
async function timed(command: string, args: string[], log: string) {
  const timeFile = `${log}.time`;
  const started = performance.now();
  const status = await new Proc("/usr/bin/time", underTime(timeFile, command, args), log).child
    .status;
  const seconds = (performance.now() - started) / 1000;
  return { status, seconds, ...readTime(timeFile) };
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

function base64Size(bytes: number): number {
  return Math.ceil(bytes / 3) * 4;
}

/** How to run our pair: `allowAll` measures what Deno's per-path permission checks cost. */
interface OursOptions {
  concurrency: number;
  raw?: boolean;
  allowAll?: boolean;
  /** Upload the set once untimed, then time the same upload again finding it all there. */
  again?: boolean;
  /** Send every file without asking the server first what it holds. */
  sendAll?: boolean;
  /** Send file data as base64, not as the raw bytes our server agrees to. */
  base64?: boolean;
  /** Idle connections held open on the server, from 300 addresses, during the upload. */
  idle?: number;
  /** V8 flags for the server, as `--v8-flags` takes them. */
  v8Flags?: string;
}

/** Holds `idle` connections open on the server from 300 loopback addresses. */
async function startCrowd(port: string, idle: number, log: string): Promise<Proc> {
  const args = ["-u", `${ROOT}tests/crowd.py`, port, String(idle), "300", "0", "600"];
  const crowd = new Proc("python3", args, log);
  await crowd.started(/^ready$/m);
  return crowd;
}

function ours(
  work: string,
  options: OursOptions,
): System {
  const { concurrency, raw = false, allowAll = false, again = false, idle = 0, v8Flags } = options;
  const clientFlags = [
    ...(options.sendAll ? ["--send-all"] : []),
    ...(options.base64 ? ["--base64"] : []),
  ];
  return {
    label: `ours -c ${concurrency}${clientFlags.map((flag) => ` ${flag}`).join("")}${
      raw ? " --raw" : ""
    }${again ? ", run again, all there" : ""}${allowAll ? " (--allow-all)" : ""}${
      idle > 0 ? `, ${idle.toLocaleString("en")} idle connections` : ""
    }${v8Flags ? ` (--v8-flags=${v8Flags})` : ""}`,
    async run(set) {
      // Reading back a 1 GiB file on both sides says nothing the small set does not.
      if (again && set.name === "huge") return undefined;
      // What idle connections cost shows in many small files.
      if (idle > 0 && set.name !== "small") return undefined;
      const out = await Deno.makeTempDir({ dir: work, prefix: "out-" });
      const server = new Proc(Deno.execPath(), [
        "run",
        ...(v8Flags ? [`--v8-flags=${v8Flags}`] : []),
        ...(allowAll
          ? ["--allow-all"]
          : ["--allow-net=127.0.0.1", `--allow-read=${out}`, `--allow-write=${out}`]),
        `${ROOT}server.ts`,
        "--host=127.0.0.1",
        "--port=0",
        `--out=${out}`,
        "--quiet",
        "--max-frame-size=2G",
        ...(raw ? ["--raw"] : []),
      ], `${out}.server.log`);
      let crowd: Proc | undefined;
      try {
        const port = (await server.started(/listening on [^:]+:(\d+)/))[1];
        if (idle > 0) crowd = await startCrowd(port, idle, `${out}.crowd.log`);
        const upload = (flags: string[]) =>
          timed(Deno.execPath(), [
            "run",
            ...(allowAll ? ["--allow-all"] : ["--allow-net=127.0.0.1", `--allow-read=${set.dir}`]),
            `${ROOT}client.ts`,
            `--port=${port}`,
            `--concurrency=${concurrency}`,
            ...flags,
            set.dir,
          ], `${out}.client.log`);
        if (again && !(await upload([])).status.success) {
          throw new Error(`client failed: ${Deno.readTextFileSync(`${out}.client.log`)}`);
        }
        // The server's start-up, and the untimed upload before the timed one, are not the run's.
        const serverCpuBefore = server.cpuSeconds();
        const client = await upload(clientFlags);
        const report = Deno.readTextFileSync(`${out}.client.log`);
        if (!client.status.success) throw new Error(`client failed: ${report}`);
        // From its first connection to the last confirmation, as the client measures it.
        const elapsed = report.match(/ in ([0-9.]+) (ms|s),/);
        if (!elapsed) throw new Error(`no time in the client's summary: ${report}`);
        const serverKiB = server.peakKiB();
        const serverCpu = server.cpuSeconds() - serverCpuBefore;
        const intact = await countIntact(out, (name) => {
          if (raw) return /^\d+$/.test(name) ? 32 + base64Size(set.bytes / set.files) : undefined;
          return set.sizes.get(name.replace(/\.jpg$/, ""));
        });
        return {
          seconds: Number(elapsed[1]) / (elapsed[2] === "ms" ? 1000 : 1),
          files: set.files,
          bytes: set.bytes,
          intact,
          clientKiB: client.kiB,
          serverKiB,
          clientCpu: client.cpu,
          serverCpu,
        };
      } finally {
        await crowd?.stop("SIGTERM");
        await server.stop("SIGTERM");
        await Deno.remove(out, { recursive: true });
      }
    },
  };
}

function original(work: string, subsets: Map<string, Dataset>): System {
  return {
    label: "original (Python port)",
    async run(fullSet) {
      if (fullSet.name === "huge") return undefined; // It holds the file and its base64 in memory.
      const set = subsets.get(fullSet.name) ?? fullSet;
      const out = await Deno.makeTempDir({ dir: work, prefix: "orig-" });
      const server = new Proc(
        "python3",
        [`${ROOT}tests/original/tcp_server.py`, "0", out],
        `${out}.server.log`,
      );
      try {
        const port = (await server.started(/listening on [^:]+:(\d+)/))[1];
        const serverCpuBefore = server.cpuSeconds();
        const started = performance.now();
        const client = await timed("python3", [
          `${ROOT}tests/original/tcp_client.py`,
          "127.0.0.1",
          port,
          set.dir,
        ], `${out}.client.log`);
        if (!client.status.success) {
          throw new Error(`original client failed: ${Deno.readTextFileSync(`${out}.client.log`)}`);
        }
        await until(
          "the original server to save every file",
          () => server.output().includes(`num finish: ${set.files} `),
          600_000,
        );
        const seconds = (performance.now() - started) / 1000;
        const serverKiB = server.peakKiB();
        const serverCpu = server.cpuSeconds() - serverCpuBefore;
        // The original stores each body (name + base64) as a numbered file.
        const body = 32 + base64Size(set.bytes / set.files);
        const intact = await countIntact(out, () => body);
        return {
          seconds,
          files: set.files,
          bytes: set.bytes,
          intact,
          clientKiB: client.kiB,
          serverKiB,
          clientCpu: client.cpu,
          serverCpu,
        };
      } finally {
        await server.stop("SIGKILL");
        await Deno.remove(out, { recursive: true });
      }
    },
  };
}

/** Waits until something listens on the TCP port, without connecting to it. */
function listening(port: number): boolean {
  const table = Deno.readTextFileSync("/proc/net/tcp");
  const local = `:${port.toString(16).toUpperCase().padStart(4, "0")} `;
  return table.split("\n").some((line) => line.includes(local) && / 0A /.test(line));
}

function tarNc(work: string): System {
  return {
    label: "tar c | nc",
    async run(set) {
      const out = await Deno.makeTempDir({ dir: work, prefix: "tar-" });
      const port = freePort();
      const receiverTime = `${out}.receiver.time`;
      const receiver = new Proc(
        "/usr/bin/time",
        underTime(receiverTime, "sh", ["-c", `nc -l 127.0.0.1 ${port} | tar x -C '${out}'`]),
        `${out}.receiver.log`,
      );
      try {
        await until("nc to listen", () => listening(port));
        const started = performance.now();
        const senderLog = `${out}.sender.log`;
        const [sender, received] = await Promise.all([
          timed("sh", ["-c", `tar c -C '${set.dir}' . | nc -N 127.0.0.1 ${port}`], senderLog),
          receiver.child.status,
        ]);
        const seconds = (performance.now() - started) / 1000;
        if (!sender.status.success || !received.success) {
          throw new Error(
            `tar | nc failed: ${Deno.readTextFileSync(senderLog)} ${receiver.output()}`,
          );
        }
        const intact = await countIntact(out, (name) => set.sizes.get(name.replace(/\.jpg$/, "")));
        return {
          seconds,
          files: set.files,
          bytes: set.bytes,
          intact,
          clientCpu: sender.cpu,
          serverCpu: readTime(receiverTime).cpu,
        };
      } finally {
        await receiver.stop("SIGKILL");
        await Deno.remove(out, { recursive: true });
      }
    },
  };
}

function ceiling(work: string): System {
  return {
    label: "loopback ceiling (1 connection)",
    async run(set) {
      const log = `${work}/ceiling.log`;
      const status = await new Proc(Deno.execPath(), [
        "run",
        "--allow-net=127.0.0.1",
        `${ROOT}bench/ceiling.ts`,
        String(set.bytes),
      ], log).child.status;
      if (!status.success) throw new Error(`ceiling failed: ${Deno.readTextFileSync(log)}`);
      const seconds = Number(Deno.readTextFileSync(log).trim());
      return { seconds, files: set.files, bytes: set.bytes, intact: set.files };
    },
  };
}

/**
 * Floods a UDP printer from one Python sender and counts the lines it
 * printed. The flood starts `settle` seconds after the printer says it
 * listens: at once, it also measures how fast the printer gets going.
 */
async function udpFlood(
  label: string,
  count: number,
  work: string,
  ours: boolean,
  settle: number,
) {
  const log = await Deno.makeTempFile({ dir: work, prefix: `udp-${ours ? "ours" : "original"}-` });
  const server = ours
    ? new Proc(Deno.execPath(), [
      "run",
      "--allow-net=127.0.0.1",
      `${ROOT}udp_server.ts`,
      "--host=127.0.0.1",
      "--port=0",
    ], log)
    : new Proc("python3", [`${ROOT}tests/original/udp_server.py`, "0"], log);
  const port = (await server.started(/listening on [^:]+:(\d+)/))[1];
  await sleep(settle * 1000);
  const sender = `
import random, socket, string, sys, time
count, port = int(sys.argv[1]), int(sys.argv[2])
random.seed(1)
payloads = [('m-' + ''.join(random.choices(string.ascii_letters, k=random.randint(14, 62)))).encode() for _ in range(1000)]
sk = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
started = time.perf_counter()
for i in range(count):
    sk.sendto(payloads[i % 1000], ('127.0.0.1', port))
print(count / (time.perf_counter() - started))
`;
  const senderLog = `${log}.sender`;
  const sent = await new Proc("python3", ["-c", sender, String(count), port], senderLog).child
    .status;
  if (!sent.success) throw new Error(`UDP sender failed: ${Deno.readTextFileSync(senderLog)}`);
  // Printed once the output stops growing; the original flushes only at exit.
  let size = -1;
  await until("the UDP server to catch up", async () => {
    const now = (await Deno.stat(log)).size;
    const still = now === size;
    size = now;
    if (!still) await sleep(300);
    return still;
  });
  await server.stop(ours ? "SIGTERM" : "SIGINT");
  const lines =
    server.output().split("\n").filter((line) => /^m-[A-Za-z]{14,62}$/.test(line)).length;
  return {
    label,
    settle,
    rate: Number(Deno.readTextFileSync(senderLog).trim()),
    received: lines / count,
  };
}

const USAGE = `Usage: deno task bench [--quick] [--skip-huge] [--rounds N] [--dir DIR]

Runs our uploader, the original scripts' Python 3 ports, tar c | nc and the raw
loopback ceiling on the same generated data, in alternating rounds, and the UDP
printers under a flood; prints one table of medians and writes it, with the
goals, to bench/RESULTS.md and README.md.

Options:
  --quick       tiny sets, one round, seconds in all; writes no file (CI runs it)
  --skip-huge   leave out the 1 GiB file
  --rounds N    rounds of every measurement (default 3, with --quick 1)
  --dir DIR     generate the data and save the files under DIR (default a tmpfs
                of its own when root, else the system's temporary folder)
  -h, --help    show this help

On SIGINT or SIGTERM it ends the processes it started and removes its data.

Exit status: 0 after a run, whether or not the goals were met (it measures, it
asserts nothing), 1 when a tool it needs is missing, a run failed or it was
stopped, 2 on a usage error.`;

/** What the command line asks of the benchmark. */
interface BenchCommand {
  quick: boolean;
  skipHuge: boolean;
  rounds: number;
  dir?: string;
}

/** Turns the command line into a command, or exits with the usage text or a usage error. */
function parseBenchArgs(args: string[]): BenchCommand {
  try {
    const { values } = parseArgs({
      args,
      options: {
        quick: { type: "boolean", default: false },
        "skip-huge": { type: "boolean", default: false },
        rounds: { type: "string" },
        dir: { type: "string" },
        help: { type: "boolean", short: "h", default: false },
      },
    });
    if (values.help) {
      console.log(USAGE);
      Deno.exit(0);
    }
    const rounds = values.rounds === undefined
      ? (values.quick ? 1 : 3)
      : parseCount(values.rounds, "--rounds");
    return { quick: values.quick, skipHuge: values["skip-huge"], rounds, dir: values.dir };
  } catch (error) {
    console.error(`bench: ${describeError(error)}\nTry 'deno task bench --help'.`);
    Deno.exit(2);
  }
}

/** The Debian package of each tool the benchmark runs, for the line that says it is missing. */
const TOOLS: Record<string, string> = {
  nc: ": apt-get install netcat-openbsd",
  tar: "",
  python3: "",
  "/usr/bin/time": ": apt-get install time",
};

/** Exits 1 naming the first tool that is missing. */
async function checkTools(): Promise<void> {
  for (const [tool, install] of Object.entries(TOOLS)) {
    const found = await new Deno.Command("sh", {
      args: ["-c", `command -v ${tool}`],
      stdout: "null",
    }).output();
    if (!found.success) {
      console.error(`bench: ${tool} is missing${install}`);
      Deno.exit(1);
    }
  }
}

/**
 * Makes the folder the data goes in: a tmpfs of its own when root, since
 * file creation on this machine's disk costs 0.25-0.45 ms and swings with
 * the writeback of the previous run, which would drown the network tools
 * being compared. (/dev/shm would do, but Deno grants paths under /dev to
 * --allow-all only.) --dir measures on a disk.
 */
async function makeWork(dir: string | undefined): Promise<{ work: string; tmpfs: boolean }> {
  let work: string;
  try {
    work = await Deno.makeTempDir({ dir, prefix: "socket-bench-" });
  } catch (error) {
    const reason = error instanceof Deno.errors.NotFound ? "no such folder" : describeError(error);
    console.error(`bench: Cannot make a folder in ${dir ?? "the temporary folder"}: ${reason}`);
    Deno.exit(1);
  }
  const tmpfs = dir === undefined && Deno.uid() === 0 &&
    (await new Deno.Command("mount", { args: ["-t", "tmpfs", "-o", "size=6g", "tmpfs", work] })
      .output()).success;
  return { work, tmpfs };
}

/**
 * Ends the processes on SIGINT or SIGTERM, so that the run in progress fails
 * and the cleanup runs: a long run must not leave its data, up to 1.3 GB in
 * a tmpfs, behind.
 *
 * @returns A function that removes the listeners.
 */
function stopOnSignals(): () => void {
  const stopOn = (signal: Deno.Signal) => () => {
    if (interrupted) Deno.exit(1);
    interrupted = signal;
    console.error(`bench: ${signal}: stopping and removing the data (again to stop at once)`);
    for (const proc of running) void proc.stop("SIGKILL");
  };
  const listeners = (["SIGINT", "SIGTERM"] as const).map((signal) =>
    [signal, stopOn(signal)] as const
  );
  for (const [signal, listener] of listeners) Deno.addSignalListener(signal, listener);
  return () => {
    for (const [signal, listener] of listeners) Deno.removeSignalListener(signal, listener);
  };
}

/** The generated sets, tiny with `--quick`. */
async function makeSets(work: string, command: BenchCommand): Promise<Dataset[]> {
  if (command.quick) {
    return [
      await makeDataset("small", `${work}/small`, 50, 64 * 1024),
      await makeDataset("large", `${work}/large`, 2, 8 * MiB),
    ];
  }
  return [
    await makeDataset("small", `${work}/small`, 2000, 64 * 1024),
    await makeDataset("large", `${work}/large`, 20, 8 * MiB),
    ...(command.skipHuge ? [] : [await makeDataset("huge", `${work}/huge`, 1, 1024 * MiB)]),
  ];
}

/** Every system on every set, round after round, the order rotated each round. */
async function runTcp(
  sets: Dataset[],
  systems: System[],
  rounds: number,
): Promise<Map<string, Sample[]>> {
  const samples = new Map<string, Sample[]>();
  for (let round = 0; round < rounds; round++) {
    for (const set of sets) {
      // Rotate the order each round so no system always runs first.
      for (let i = 0; i < systems.length; i++) {
        checkInterrupted();
        const system = systems[(i + round) % systems.length];
        // Each run starts with the previous run's writes on disk.
        await new Deno.Command("sync").output();
        const sample = await system.run(set);
        if (sample === undefined) continue;
        const key = `${set.name}\t${system.label}`;
        samples.set(key, [...(samples.get(key) ?? []), sample]);
        console.error(
          `bench: round ${round + 1}, ${set.name}, ${system.label}: ${
            formatSeconds(sample.seconds)
          } s, ${sample.intact}/${sample.files} intact`,
        );
      }
    }
  }
  return samples;
}

/** Both printers under the same flood, alternating which meets it first. */
async function runUdp(
  work: string,
  count: number,
  settles: number[],
  rounds: number,
): Promise<UdpResult[]> {
  const udp: UdpResult[] = [];
  for (let round = 0; round < rounds; round++) {
    for (const settle of settles) {
      const pair = [
        () => udpFlood("udp_server.ts", count, work, true, settle),
        () => udpFlood("original udp_server.py", count, work, false, settle),
      ];
      for (const flood of round % 2 ? pair.reverse() : pair) udp.push(await flood());
    }
  }
  return udp;
}

/** Runs every measurement in `work` and prints the report; writes the pages on a full run. */
async function measure(work: string, where: string, command: BenchCommand): Promise<void> {
  console.error(`bench: generating data in ${work}`);
  const { quick, rounds } = command;
  const sets = await makeSets(work, command);
  const subsets = new Map<string, Dataset>();
  if (!quick) subsets.set("small", await subset(sets[0], `${work}/small-200`, 200));
  const idle = quick ? 1_000 : 10_000;
  const crowded = [undefined, SMALL_YOUNG_GENERATION].map((v8Flags) =>
    ours(work, { concurrency: 4, idle, v8Flags })
  );
  const systems: System[] = [
    ours(work, { concurrency: 1 }),
    ours(work, { concurrency: 4 }),
    ...crowded,
    ours(work, { concurrency: 4, raw: true }),
    ours(work, { concurrency: 1, allowAll: true }),
    ours(work, { concurrency: 4, sendAll: true }),
    ours(work, { concurrency: 4, base64: true }),
    ours(work, { concurrency: 1, again: true }),
    original(work, subsets),
    tarNc(work),
    ceiling(work),
  ];
  const samples = await runTcp(sets, systems, rounds);
  const udpCount = quick ? 5_000 : 200_000;
  const udpSettles = [0, 1];
  const results: Results = {
    samples,
    udp: await runUdp(work, udpCount, udpSettles, rounds),
    udpCount,
    udpSettles,
    idle,
    idleLabels: crowded.map(({ label }, i) => ({
      label,
      flags: i === 0 ? undefined : SMALL_YOUNG_GENERATION,
    })),
  };
  // Tiny sets measure start-up and a cold JIT: a 5,000-datagram burst is
  // over in 30 ms, before our printer's loop is compiled. Only full runs judge.
  const judged = quick
    ? ["Goals are judged on full runs only; with --quick, for reference:", "", ...goals(results)]
    : ["Goals:", "", ...goals(results)];
  const report = [header(rounds, quick, where), "", ...tables(results), "", ...judged].join("\n");
  console.log(report);
  // The results page and the README quote the latest table between markers.
  if (!quick) await writePages(report);
}

async function main(): Promise<void> {
  const command = parseBenchArgs(Deno.args);
  await checkTools();
  const { work, tmpfs } = await makeWork(command.dir);
  const removeListeners = stopOnSignals();
  try {
    await measure(work, tmpfs ? "a tmpfs" : work, command);
  } catch (error) {
    console.error(
      interrupted ? `bench: stopped by ${interrupted}` : `bench: ${describeError(error)}`,
    );
    // Not Deno.exit(): the tmpfs and the data must still go.
    Deno.exitCode = 1;
  } finally {
    // Lazily: a process killed a moment ago may still hold a file there.
    if (tmpfs) await new Deno.Command("umount", { args: ["-l", work] }).output();
    await Deno.remove(work, { recursive: true }).catch((error) =>
      console.error(`bench: could not remove ${work}: ${error.message}`)
    );
    removeListeners();
  }
}

if (import.meta.main) await main();
