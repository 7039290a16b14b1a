/**
 * The benchmark's report: the tables of its samples, the goals judged on
 * them, and the pages it writes them into.
 *
 * @module
 */
import { counted } from "../protocol.ts";

const ROOT = new URL("../", import.meta.url).pathname;

/** One timed run of one system on one set. */
export interface Sample {
  seconds: number;
  files: number;
  bytes: number;
  /** Files that arrived whole. */
  intact: number;
  clientKiB?: number;
  serverKiB?: number;
  /** User and system seconds of the sending side: our client, or `tar c | nc`. */
  clientCpu?: number;
  /** User and system seconds of the receiving side, from just before the upload. */
  serverCpu?: number;
}

/** One flood of a UDP printer. */
export interface UdpResult {
  label: string;
  /** Seconds after the printer listened that the flood began. */
  settle: number;
  /** Datagrams the sender sent a second. */
  rate: number;
  /** Share of the datagrams printed. */
  received: number;
  /** The printer's peak resident memory, in KiB, from /proc. */
  peakKiB?: number;
}

/** The runs across the shaped link. */
export interface LinkResults {
  /** The rate as tc took it, such as 1gbit. */
  rate: string;
  bitsPerSecond: number;
  /** Samples by `set\tsystem label`, in the order they first ran. */
  samples: Map<string, Sample[]>;
}

/** The samples of a run, by set and system, and what the goals need to find them. */
export interface Results {
  /** The shaped link's, when it was measured. */
  link?: LinkResults;
  /** Loopback's samples by `set\tsystem label`, in the order they first ran. */
  samples: Map<string, Sample[]>;
  udp: UdpResult[];
  udpCount: number;
  udpSettles: number[];
  /** The labels of the rows with idle connections, plain and with small-young-generation flags. */
  idleLabels: { label: string; flags?: string }[];
  idle: number;
}

/**
 * The middle value, or the mean of the two middle ones.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { median } from "./report.ts";
 *
 * assert.equal(median([3, 1, 2]), 2);
 * assert.equal(median([4, 1, 2, 3]), 2.5);
 * ```
 */
export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/**
 * Seconds with three decimals, or one from ten seconds up.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatSeconds } from "./report.ts";
 *
 * assert.equal(formatSeconds(1.23456), "1.235");
 * assert.equal(formatSeconds(12.34), "12.3");
 * ```
 */
export function formatSeconds(seconds: number): string {
  return seconds >= 10 ? seconds.toFixed(1) : seconds.toFixed(3);
}

function formatKiB(kiB: number[]): string {
  const known = kiB.filter((k) => Number.isFinite(k));
  return known.length === 0 ? "–" : `${(Math.max(...known) / 1024).toFixed(0)} MB`;
}

const udpStart = (settle: number) => settle === 0 ? "at once" : `after ${settle} s`;
const verdict = (ok: boolean) => ok ? "met" : "NOT met";

function medianOf(results: Results, set: string, label: string): number {
  const runs = results.samples.get(`${set}\t${label}`);
  return runs ? median(runs.map((r) => r.seconds)) : NaN;
}

/** One row of a TCP table: a system on a set, over its rounds; with a link, its share of it. */
function tcpRow(key: string, runs: Sample[], bitsPerSecond?: number): string {
  const [set, label] = key.split("\t");
  const seconds = runs.map((r) => r.seconds);
  const mid = median(seconds);
  const { files, bytes } = runs[0];
  const perSecond = files / mid;
  const cpu = (of: (sample: Sample) => number | undefined) => {
    const known = runs.flatMap((run) => of(run) ?? []);
    return known.length === 0 ? "–" : median(known).toFixed(2);
  };
  const range = `${formatSeconds(Math.min(...seconds))}–${formatSeconds(Math.max(...seconds))}`;
  const share = bitsPerSecond ? ` ${(bytes * 8 / mid / bitsPerSecond * 100).toFixed(1)}% |` : "";
  return `| ${set} | ${label.replaceAll("|", "\\|")} | ${files} | ${
    formatSeconds(mid)
  } (${range}) | ${perSecond.toFixed(perSecond < 10 ? 2 : 0)} | ${
    (bytes / 1e6 / mid).toFixed(0)
  } |${share} ${cpu((r) => r.clientCpu)} | ${cpu((r) => r.serverCpu)} | ${
    formatKiB(runs.map((r) => r.clientKiB ?? NaN))
  } | ${formatKiB(runs.map((r) => r.serverKiB ?? NaN))} | ${
    Math.min(...runs.map((r) => r.intact))
  }/${files} |`;
}

const TCP_COLUMNS = [
  "| set | system | files | time s (median, min–max) | files/s | MB/s | client CPU s | server CPU s | client RSS | server RSS | intact |",
  "| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
];

/** The shaped link's table, with a column for the share of its rate. */
function linkTable(link: LinkResults): string[] {
  const [names, aligns] = TCP_COLUMNS;
  return [
    `**Across a ${link.rate}/s link** (the figure users meet): ${LINK_SETUP}`,
    "",
    names.replace("| MB/s |", "| MB/s | share of line |"),
    `${aligns} ---: |`,
    ...[...link.samples].map(([key, runs]) => tcpRow(key, runs, link.bitsPerSecond)),
  ];
}

/** Where the link runs and how each side's time is taken. */
const LINK_SETUP =
  `two network namespaces joined by a veth pair (MTU 1500), each end's sending shaped by \`tc qdisc … tbf\` (burst two timer ticks' worth, latency 20 ms), 198.18.0.1 to 198.18.0.2; made and removed by the benchmark. "share of line" is image bytes against the rate: Ethernet, IP and TCP headers take 4.4% of each full frame, so about 95.6% is the most any tool can show. Our rows run as the README does, with the client's defaults: "ours" asks the server first which files it holds, then sends raw bytes, which our server agrees to; "--send-all" does not ask; "--base64" sends the original's encoding; "--tls" serves a certificate made with the README's openssl command. rsync is Debian's, \`rsync -a --whole-file\` to a daemon on the other side, timed to its exit; tar | nc to tar x's exit; the original on the small set's first 200 files.`;

/** The tables: the shaped link's, then loopback's TCP systems on each set, then the UDP printers. */
export function tables(results: Results): string[] {
  const lines = results.link ? [...linkTable(results.link), ""] : [];
  if (results.samples.size === 0) return lines;
  lines.push(`**On loopback** (CPU more than network): ${LOOPBACK_SETUP}`, "", ...TCP_COLUMNS);
  for (const [key, runs] of results.samples) lines.push(tcpRow(key, runs));
  lines.push(
    "",
    "| UDP server | flood starts | datagrams sent | sender rate /s (median) | received and printed (median, min–max) |",
    "| --- | --- | ---: | ---: | --- |",
  );
  for (const settle of results.udpSettles) {
    for (const label of ["udp_server.ts", "original udp_server.py"]) {
      const runs = results.udp.filter((u) => u.label === label && u.settle === settle);
      const received = runs.map((u) => u.received * 100);
      const rate = median(runs.map((u) => u.rate)).toFixed(0);
      lines.push(
        `| ${label} | ${udpStart(settle)} | ${results.udpCount} | ${rate} | ${
          median(received).toFixed(2)
        }% (${Math.min(...received).toFixed(2)}–${Math.max(...received).toFixed(2)}%) |`,
      );
    }
  }
  return lines;
}

/** The median of `label` over the median of `base` on a set, and the ratio round by round. */
function ratioOf(samples: Map<string, Sample[]>, set: string, label: string, base: string) {
  const runs = samples.get(`${set}\t${label}`) ?? [];
  const bases = samples.get(`${set}\t${base}`) ?? [];
  const seconds = (of: Sample[]) => median(of.map((run) => run.seconds));
  // Both ran once per round, so each round's ratio shows how far the noise reaches.
  const perRound = runs.map((run, i) => run.seconds / bases[i]?.seconds).filter(Number.isFinite);
  return { ratio: seconds(runs) / seconds(bases), perRound };
}

/** A goal line for `label` against `base`, or none when either did not run. */
function ratioGoal(
  samples: Map<string, Sample[]>,
  set: string,
  [label, base]: [string, string],
  goal: number,
): string[] {
  const { ratio, perRound } = ratioOf(samples, set, label, base);
  if (perRound.length === 0) return [];
  return [
    `${set} set: ${label} / ${base} = ${ratio.toFixed(2)} (goal ≤ ${goal.toFixed(2)}: ${
      verdict(ratio <= goal)
    }); round by round ${Math.min(...perRound).toFixed(2)}–${
      Math.max(...perRound).toFixed(2)
    }, median ${median(perRound).toFixed(2)}`,
  ];
}

/** The shaped link's goals: against tar | nc, TLS against plain, and the share of the line. */
function linkGoals(link: LinkResults | undefined): string[] {
  if (!link) return [];
  const on = `- ${link.rate}/s link, `;
  return ["small", "large"].flatMap((set) => {
    const share = (link.samples.get(`${set}\tours`) ?? []).map((run) =>
      run.bytes * 8 / run.seconds / link.bitsPerSecond
    );
    return [
      ...ratioGoal(link.samples, set, ["ours", "tar c | nc"], 1.05).map((line) => on + line),
      ...ratioGoal(link.samples, set, ["ours --tls", "ours"], 1.05).map((line) => on + line),
      ...ratioGoal(link.samples, set, ["ours", "ours --send-all"], 1.05).map((line) => on + line),
      ...(share.length === 0 ? [] : [
        `${on}${set} set: ours at ${
          (median(share) * 100).toFixed(1)
        }% of the line rate (moonshot ≥ 95%: ${verdict(median(share) >= 0.95)})`,
      ]),
    ];
  });
}

/** Loopback's goals against tar | nc: our best concurrency. */
function speedGoals(results: Results): string[] {
  const best = (set: string) =>
    ["ours -c 1", "ours -c 4"].reduce((a, b) =>
      medianOf(results, set, a) <= medianOf(results, set, b) ? a : b
    );
  return ["small", "large"].flatMap((set) =>
    ratioGoal(results.samples, set, [best(set), "tar c | nc"], 1.0).map((line) =>
      `- loopback, ${line}`
    )
  );
}

/** The goals on memory: idle connections, and the huge file's peak RSS. */
function memoryGoals(results: Results): string[] {
  const goals: string[] = [];
  for (const { label, flags } of results.idleLabels) {
    const crowded = results.samples.get(`small\t${label}`);
    if (crowded === undefined) continue;
    const rss = median(crowded.map((run) => run.serverKiB ?? NaN)) / 1024;
    const slowdown = median(crowded.map((run) => run.seconds)) /
      medianOf(results, "small", "ours -c 4");
    goals.push(
      `- ${results.idle.toLocaleString("en")} idle connections during the small set${
        flags ? `, server with --v8-flags=${flags}` : ""
      }: server RSS ${rss.toFixed(0)} MB (goal ≤ 150 MB: ${verdict(rss <= 150)}), upload ${
        slowdown.toFixed(2)
      }× the same without them (goal ≤ 1.2: ${verdict(slowdown <= 1.2)})`,
    );
  }
  const huge = [...results.samples].filter(([key]) => key.startsWith("huge\tours"));
  if (huge.length > 0) {
    const peak = Math.max(...huge.flatMap(([, runs]) =>
      runs.flatMap((r) => [r.clientKiB ?? 0, r.serverKiB ?? 0])
    )) / 1024;
    goals.push(
      `- huge file (512 MiB): peak RSS of our client and server ${
        peak.toFixed(0)
      } MB (goal ≤ 120 MB: ${verdict(peak <= 120)})`,
    );
  }
  return goals;
}

/** The UDP goal, judged both ways: a printer that only keeps up once warm is not met. */
function udpGoals(results: Results): string[] {
  if (results.udp.length === 0) return [];
  return results.udpSettles.map((settle) => {
    const share = (ours: boolean) =>
      median(
        results.udp.filter((u) => (u.label === "udp_server.ts") === ours && u.settle === settle)
          .map((u) => u.received),
      );
    return `- UDP, flood starting ${udpStart(settle)}: received ${
      (share(true) * 100).toFixed(2)
    }% against the original's ${(share(false) * 100).toFixed(2)}% (goal ≥: ${
      verdict(share(true) >= share(false))
    })`;
  });
}

/** The first upload's cost of asking the server first what it holds, which is the default. */
function queryGoals(results: Results): string[] {
  return ["small", "large"].flatMap((set) => {
    const asking = results.samples.get(`${set}\tours -c 4`) ?? [];
    const sendAll = results.samples.get(`${set}\tours -c 4 --send-all`) ?? [];
    const perRound = asking.map((run, i) => run.seconds / sendAll[i]?.seconds)
      .filter(Number.isFinite);
    if (perRound.length === 0) return [];
    const ratio = medianOf(results, set, "ours -c 4") /
      medianOf(results, set, "ours -c 4 --send-all");
    return [
      `- ${set} set, first upload: ours -c 4 (asks first) / --send-all = ${
        ratio.toFixed(2)
      } (goal ≤ 1.05: ${verdict(ratio <= 1.05)}); round by round median ${
        median(perRound).toFixed(2)
      }`,
    ];
  });
}

/** Every goal line. */
export function goals(results: Results): string[] {
  return [
    ...linkGoals(results.link),
    ...speedGoals(results),
    ...queryGoals(results),
    ...memoryGoals(results),
    ...udpGoals(results),
  ];
}

/** How the loopback runs are made and what their columns hold. */
const LOOPBACK_SETUP =
  `Our time is the client's own, from its first connection to the last confirmation; the others' from start to the last file in place. The small set's original runs on its first 200 files. Our rows grant the least privilege, as the README does, except "(--allow-all)", which shows what Deno's check of every path costs; the goals use the others. "run again, all there" times the same upload again once the server holds every file: it sends no image, only a query for each and a checksum on both sides. Our client asks the server first which files it holds, as by default; "--send-all" does not, which shows what asking costs a first upload. "idle connections" holds that many open on the server, from 300 loopback addresses (tests/crowd.py), while the upload runs; its server RSS is the peak with them; the row "(--v8-flags=…)" runs the server with V8's young generation capped at 2 MB, as the README's command does; the other rows run without it. CPU is user and system time, medians: our whole client, its ~0.06 s of Deno start-up included, and our server from just before the upload; for tar | nc, "client" is \`tar c | nc\` and "server" \`nc -l | tar x\`. On 2 cores a run takes at least half of the two added up.`;

/** The line that says when and on what the run was made. */
export function header(rounds: number, quick: boolean, where: string): string {
  const memory = Deno.readTextFileSync("/proc/meminfo").match(/MemTotal:\s+(\d+)/)?.[1];
  return `Run on ${
    new Date().toISOString().slice(0, 16).replace("T", " ")
  } UTC, Deno ${Deno.version.deno}, ${navigator.hardwareConcurrency} cores, ${
    (Number(memory) / 1024 / 1024).toFixed(0)
  } GiB, ${counted(rounds, "round")}${quick ? " (--quick: tiny sets)" : ""}, data in ${where}.`;
}

/** Writes the report between the markers of the results page and the README. */
export async function writePages(report: string): Promise<void> {
  const start = "<!-- bench:start -->";
  const end = "<!-- bench:end -->";
  for (const page of [`${ROOT}bench/RESULTS.md`, `${ROOT}README.md`]) {
    const previous = await Deno.readTextFile(page);
    const updated = previous.slice(0, previous.indexOf(start) + start.length) +
      `\n${report}\n` + previous.slice(previous.indexOf(end));
    await Deno.writeTextFile(page, updated);
    await new Deno.Command(Deno.execPath(), { args: ["fmt", "--quiet", page] }).output();
    console.error(`bench: wrote ${page}`);
  }
}
