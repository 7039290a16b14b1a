/**
 * The UDP printers alone under the benchmark's flood: 200,000 datagrams of
 * 16–64 bytes from one Python sender, to `udp_server.ts` (as is, and with
 * `--rcvbuf 4M`), to the tutorial's server and to a Deno loop that receives
 * and prints nothing (the ceiling of the default receive buffer,
 * bench/udp_ceiling.ts), in alternating rounds, each flood starting at once
 * and one second after the printer listens. Prints, for each printer and
 * start, the medians of the share printed and of the sender's rate, and the
 * highest peak resident memory.
 *
 *   deno task bench:udp [--rounds N] [--count N]
 *
 * @module
 */
import { parseArgs } from "node:util";
import { runUdp, UDP_PRINTERS, type UdpPrinter } from "./bench.ts";
import { median, type UdpResult } from "./report.ts";

function table(results: UdpResult[], count: number): string[] {
  const rows = [
    "| UDP server | flood starts | datagrams | sender rate /s (median) | printed (median, min–max) | peak RSS |",
    "| --- | --- | ---: | ---: | ---: | ---: |",
  ];
  const keys = [...new Set(results.map(({ label, settle }) => `${label}\t${settle}`))];
  for (const key of keys) {
    const runs = results.filter(({ label, settle }) => `${label}\t${settle}` === key);
    const [label, settle] = key.split("\t");
    const shares = runs.map(({ received }) => received * 100);
    const peak = Math.max(...runs.map(({ peakKiB }) => peakKiB ?? 0)) / 1024;
    rows.push(
      `| ${label} | ${settle === "0" ? "at once" : `after ${settle} s`} | ${count} | ${
        Math.round(median(runs.map(({ rate }) => rate)))
      } | ${median(shares).toFixed(2)}% (${Math.min(...shares).toFixed(2)}–${
        Math.max(...shares).toFixed(2)
      }%) | ${peak.toFixed(0)} MB |`,
    );
  }
  return rows;
}

const CEILING: UdpPrinter = {
  label: "ceiling: Deno receiving only",
  command: [
    Deno.execPath(),
    "run",
    "--unstable-net",
    "--allow-net=127.0.0.1",
    new URL("udp_ceiling.ts", import.meta.url).pathname,
  ],
  signal: "SIGTERM",
  count: (output) => Number(output.match(/^received (\d+)$/m)?.[1] ?? 0),
};

const [OURS] = UDP_PRINTERS;

/** Ours with an 8 MiB receive buffer (4M asked, doubled by Linux): `--allow-ffi` goes after `run`. */
const OURS_RCVBUF: UdpPrinter = {
  ...OURS,
  label: "udp_server.ts --rcvbuf 4M",
  command: [...OURS.command.toSpliced(2, 0, "--allow-ffi"), "--rcvbuf=4M"],
};

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      rounds: { type: "string", default: "5" },
      count: { type: "string", default: "200000" },
    },
  });
  const rounds = Number(values.rounds);
  const count = Number(values.count);
  if (!(rounds >= 1) || !(count >= 1)) {
    console.error("Usage: deno task bench:udp [--rounds N] [--count N]");
    Deno.exit(2);
  }
  const work = await Deno.makeTempDir({ dir: "/dev/shm", prefix: "bench-udp-" });
  try {
    const results = await runUdp(work, count, [0, 1], rounds, [
      ...UDP_PRINTERS,
      OURS_RCVBUF,
      CEILING,
    ]);
    console.log(table(results, count).join("\n"));
  } finally {
    await Deno.remove(work, { recursive: true });
  }
}

if (import.meta.main) await main();
