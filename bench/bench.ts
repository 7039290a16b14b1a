/**
 * `deno task bench`: our uploader against the original scripts (their Python
 * 3 ports in tests/original/), against `tar c | nc`, an rsync daemon and the
 * raw loopback ceiling, on the same generated data in the same run: first
 * across a shaped link between two network namespaces (root), then on
 * loopback; plus the UDP printers under a flood. Medians of several
 * alternating rounds.
 *
 *   deno task bench [--quick] [--skip-huge] [--link RATE|off] [--rounds N] [--dir DIR]
 *
 * Writes the tables to bench/RESULTS.md and README.md (not with --quick, which CI runs so
 * that the benchmark cannot rot). It measures; it asserts nothing. It runs
 * with --allow-all: Deno grants /proc (peak memory, listening sockets) to
 * nothing less, and it spawns every tool it compares anyway.
 */
import { parseArgs } from "node:util";
import { describeError, parseCount } from "../protocol.ts";
import { parseRate, ShapedLink } from "./link.ts";
import { checkInterrupted, interrupt, interruptedBy, Proc, sleep, until } from "./proc.ts";
import {
  formatSeconds,
  goals,
  header,
  type LinkResults,
  type Results,
  type Sample,
  tables,
  type UdpResult,
  writePages,
} from "./report.ts";
import {
  type Bench,
  ceiling,
  type Dataset,
  LOOPBACK,
  makeDataset,
  original,
  ours,
  rsyncDaemon,
  subset,
  type System,
  tarNc,
} from "./systems.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const MiB = 1024 * 1024;

/**
 * V8's young generation kept small, as server.ts's shebang and the README
 * advise for a crowd of idle connections: it otherwise grows with the heap
 * they hold, and a run of frames leaves that much garbage uncollected.
 */
const SMALL_YOUNG_GENERATION = "--max-semi-space-size=2";

/** A UDP printer the flood is measured against, and how to read its count. */
export interface UdpPrinter {
  label: string;
  /** The command, which prints "listening on HOST:PORT" first. */
  command: string[];
  /** What stops it in good order. */
  signal: Deno.Signal;
  /** How many of the flood's datagrams its output shows. */
  count: (output: string) => number;
}

const floodLines = (output: string) =>
  output.split("\n").filter((line) => /^m-[A-Za-z]{14,62}$/.test(line)).length;

/** Our printer and the tutorial's: what `deno task bench` compares. */
export const UDP_PRINTERS: UdpPrinter[] = [
  {
    label: "udp_server.ts",
    command: [
      Deno.execPath(),
      ...["run", "--allow-net=127.0.0.1", `${ROOT}udp_server.ts`, "--host=127.0.0.1", "--port=0"],
    ],
    signal: "SIGTERM",
    count: floodLines,
  },
  {
    label: "original udp_server.py",
    command: ["python3", `${ROOT}tests/original/udp_server.py`, "0"],
    // The original flushes its block-buffered file only at exit.
    signal: "SIGINT",
    count: floodLines,
  },
];

/**
 * Floods a UDP printer from one Python sender and counts the lines it
 * printed. The flood starts `settle` seconds after the printer says it
 * listens: at once, it also measures how fast the printer gets going.
 */
async function udpFlood(printer: UdpPrinter, count: number, work: string, settle: number) {
  const log = await Deno.makeTempFile({ dir: work, prefix: "udp-" });
  const [command, ...args] = printer.command;
  const server = new Proc(command, args, log);
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
  // Printed once the output stops growing.
  let size = -1;
  await until("the UDP server to catch up", async () => {
    const now = (await Deno.stat(log)).size;
    const still = now === size;
    size = now;
    if (!still) await sleep(300);
    return still;
  });
  const peakKiB = server.peakKiB();
  await server.stop(printer.signal);
  return {
    label: printer.label,
    settle,
    rate: Number(Deno.readTextFileSync(senderLog).trim()),
    received: printer.count(server.output()) / count,
    peakKiB,
  };
}

const USAGE =
  `Usage: deno task bench [--quick] [--skip-huge] [--link RATE|off] [--rounds N] [--dir DIR]

Runs our uploader, the original scripts' Python 3 ports, tar c | nc, an rsync
daemon and the raw loopback ceiling on the same generated data, in alternating
rounds: first across a link shaped to RATE between two network namespaces
(root), then on loopback; then the UDP printers under a flood. Prints the
tables of medians and writes them, with the goals, to bench/RESULTS.md and
README.md.

Options:
  --quick          tiny sets, one round, seconds in all; writes no file (CI runs it)
  --skip-huge      leave out the 512 MiB file
  --link RATE      the shaped link's rate as tc writes it, such as 100mbit
                   (default 1gbit); off measures loopback only
  --skip-loopback  measure the shaped link only; writes no file
  --rounds N       rounds of every measurement (default 3, with --quick 1)
  --dir DIR        generate the data and save the files under DIR (default a
                   tmpfs of its own when root, else the system's temporary folder)
  -h, --help       show this help

The shaped link needs root (ip netns, tc); without it the benchmark says so and
measures loopback. On SIGINT or SIGTERM it ends the processes it started and
removes its data and its network namespaces.

Exit status: 0 after a run, whether or not the goals were met (it measures, it
asserts nothing), 1 when a tool it needs is missing, a run failed or it was
stopped, 2 on a usage error.`;

/** What the command line asks of the benchmark. */
interface BenchCommand {
  quick: boolean;
  skipHuge: boolean;
  skipLoopback: boolean;
  /** The shaped link's rate as tc writes it, or undefined for none. */
  link?: { rate: string; bitsPerSecond: number };
  rounds: number;
  dir?: string;
}

function parseLink(value: string): BenchCommand["link"] {
  if (value === "off") return undefined;
  const bitsPerSecond = parseRate(value);
  if (bitsPerSecond === undefined) {
    throw new TypeError(
      `Invalid --link: expected a rate such as 1gbit or 100mbit, or off, got "${value}"`,
    );
  }
  return { rate: value, bitsPerSecond };
}

/** Turns the command line into a command, or exits with the usage text or a usage error. */
function parseBenchArgs(args: string[]): BenchCommand {
  try {
    const { values } = parseArgs({
      args,
      options: {
        quick: { type: "boolean", default: false },
        "skip-huge": { type: "boolean", default: false },
        "skip-loopback": { type: "boolean", default: false },
        link: { type: "string", default: "1gbit" },
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
    const link = parseLink(values.link);
    if (values["skip-loopback"] && !link) throw new TypeError("--skip-loopback needs a --link");
    return {
      quick: values.quick,
      skipHuge: values["skip-huge"],
      skipLoopback: values["skip-loopback"],
      link,
      rounds,
      dir: values.dir,
    };
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
  rsync: ": apt-get install rsync",
  openssl: ": apt-get install openssl",
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
    (await new Deno.Command("mount", { args: ["-t", "tmpfs", "-o", "size=4g", "tmpfs", work] })
      .output()).success;
  return { work, tmpfs };
}

/**
 * Ends the processes on SIGINT or SIGTERM, so that the run in progress fails
 * and the cleanup runs: a long run must not leave its data, up to 1 GB in
 * a tmpfs, or its network namespaces behind.
 *
 * @returns A function that removes the listeners.
 */
function stopOnSignals(): () => void {
  const stopOn = (signal: Deno.Signal) => () => {
    if (interruptedBy()) Deno.exit(1);
    console.error(`bench: ${signal}: stopping and removing the data (again to stop at once)`);
    interrupt(signal);
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
  const huge = command.skipHuge || command.skipLoopback;
  return [
    await makeDataset("small", `${work}/small`, 2000, 64 * 1024),
    await makeDataset("large", `${work}/large`, 20, 8 * MiB),
    ...(huge ? [] : [await makeDataset("huge", `${work}/huge`, 1, 512 * MiB)]),
  ];
}

/** Every system on every set, round after round, the order rotated each round. */
async function runTcp(
  sets: Dataset[],
  systems: System[],
  options: { rounds: number; where: string },
): Promise<Map<string, Sample[]>> {
  const samples = new Map<string, Sample[]>();
  for (let round = 0; round < options.rounds; round++) {
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
          `bench: ${options.where}round ${round + 1}, ${set.name}, ${system.label}: ${
            formatSeconds(sample.seconds)
          } s, ${sample.intact}/${sample.files} intact`,
        );
      }
    }
  }
  return samples;
}

/** The printers under the same flood, in an order reversed every other round. */
export async function runUdp(
  work: string,
  count: number,
  settles: number[],
  rounds: number,
  printers: UdpPrinter[] = UDP_PRINTERS,
): Promise<UdpResult[]> {
  const udp: UdpResult[] = [];
  for (let round = 0; round < rounds; round++) {
    for (const settle of settles) {
      const order = round % 2 ? printers.toReversed() : printers;
      for (const printer of order) udp.push(await udpFlood(printer, count, work, settle));
    }
  }
  return udp;
}

/**
 * A certificate made with the README's command for the link's server
 * address: self-signed, CA:FALSE, which client.ts --ca takes as it is.
 */
async function makeCertificate(work: string, address: string) {
  const cert = `${work}/cert.pem`;
  const key = `${work}/key.pem`;
  const { success, stderr } = await new Deno.Command("openssl", {
    args: [
      ..."req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1".split(" "),
      ...["-subj", `/CN=${address}`, "-addext", `subjectAltName=IP:${address}`],
      ...["-addext", "basicConstraints=critical,CA:FALSE", "-keyout", key, "-out", cert],
    ],
    stderr: "piped",
  }).output();
  if (!success) throw new Error(`openssl failed: ${new TextDecoder().decode(stderr).trim()}`);
  return { cert, key };
}

/** Makes the shaped link, or says in one line why not and returns undefined. */
async function makeLink(link: NonNullable<BenchCommand["link"]>): Promise<ShapedLink | undefined> {
  if (Deno.uid() !== 0) {
    console.error("bench: the shaped link needs root (ip netns, tc): measuring loopback only");
    return undefined;
  }
  try {
    return await ShapedLink.make(link.rate, link.bitsPerSecond);
  } catch (error) {
    console.error(
      `bench: Cannot make the shaped link: ${describeError(error)}; measuring loopback only`,
    );
    return undefined;
  }
}

/** Our pair as a user runs it, forced to base64 and with TLS, against tar | nc and rsync. */
async function measureLink(
  data: { work: string; sets: Dataset[]; subsets: Map<string, Dataset> },
  command: BenchCommand,
): Promise<LinkResults | undefined> {
  const { work, sets, subsets } = data;
  const link = command.link && await makeLink(command.link);
  if (!link) return undefined;
  try {
    const bench: Bench = { work, ends: link };
    const tls = await makeCertificate(work, link.host);
    const systems: System[] = [
      ours(bench, {}),
      ours(bench, { sendAll: true }),
      ours(bench, { base64: true }),
      ours(bench, { tls }),
      tarNc(bench),
      rsyncDaemon(bench),
      original(bench, subsets),
    ];
    const linkSets = sets.filter((set) => set.name !== "huge");
    const where = `link ${link.rate}, `;
    const samples = await runTcp(linkSets, systems, { rounds: command.rounds, where });
    return { rate: link.rate, bitsPerSecond: link.bitsPerSecond, samples };
  } finally {
    await link.remove();
  }
}

/** Our pair with each option that costs or saves something, against the others, on loopback. */
function loopbackSystems(bench: Bench, subsets: Map<string, Dataset>, crowded: System[]) {
  return [
    ours(bench, { concurrency: 1 }),
    ours(bench, { concurrency: 4 }),
    ...crowded,
    ours(bench, { concurrency: 4, raw: true }),
    ours(bench, { concurrency: 1, allowAll: true }),
    ours(bench, { concurrency: 4, sendAll: true }),
    ours(bench, { concurrency: 4, base64: true }),
    ours(bench, { concurrency: 1, again: true }),
    original(bench, subsets),
    tarNc(bench),
    ceiling(bench),
  ];
}

/** Runs every measurement in `work` and prints the report; writes the pages on a full run. */
async function measure(work: string, where: string, command: BenchCommand): Promise<void> {
  console.error(`bench: generating data in ${work}`);
  const { quick, rounds } = command;
  const sets = await makeSets(work, command);
  const subsets = new Map<string, Dataset>();
  if (!quick) subsets.set("small", await subset(sets[0], `${work}/small-200`, 200));
  const link = await measureLink({ work, sets, subsets }, command);
  if (!link && command.skipLoopback) {
    throw new Error("Nothing to measure: no shaped link, and --skip-loopback leaves out loopback");
  }
  const bench: Bench = { work, ends: LOOPBACK };
  const idle = quick ? 1_000 : 10_000;
  const crowded = [undefined, SMALL_YOUNG_GENERATION].map((v8Flags) =>
    ours(bench, { concurrency: 4, idle, v8Flags })
  );
  const udpCount = quick ? 5_000 : 200_000;
  const udpSettles = [0, 1];
  const loopback = command.skipLoopback ? undefined : {
    samples: await runTcp(sets, loopbackSystems(bench, subsets, crowded), { rounds, where: "" }),
    udp: await runUdp(work, udpCount, udpSettles, rounds),
  };
  const results: Results = {
    link,
    samples: loopback?.samples ?? new Map(),
    udp: loopback?.udp ?? [],
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
  // The results page and the README quote the latest tables between markers.
  if (!quick && !command.skipLoopback) await writePages(report);
}

async function main(): Promise<void> {
  const command = parseBenchArgs(Deno.args);
  await checkTools();
  const { work, tmpfs } = await makeWork(command.dir);
  const removeListeners = stopOnSignals();
  try {
    await measure(work, tmpfs ? "a tmpfs" : work, command);
  } catch (error) {
    const interrupted = interruptedBy();
    console.error(
      interrupted ? `bench: stopped by ${interrupted}` : `bench: ${describeError(error)}`,
    );
    // Not Deno.exit(): the tmpfs, the data and the namespaces must still go.
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
