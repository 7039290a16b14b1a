/**
 * The benchmark's shaped link, as an operator meets it: two network
 * namespaces made, used and removed, also when the run is stopped or was
 * killed before. The tests that make the link need root (ip netns, tc from
 * iproute2); tools/setup.sh installs iproute2 and rsync.
 */
import assert from "node:assert/strict";
import { parseRate } from "../bench/link.ts";
import { denoScript } from "./helpers.ts";

const root = Deno.uid() === 0;

/** The namespace names a benchmark with this process id makes. */
async function namespacesOf(pid: number | string): Promise<string[]> {
  const { stdout } = await new Deno.Command("ip", { args: ["netns", "list"], stdout: "piped" })
    .output();
  return new TextDecoder().decode(stdout).split("\n").map((line) => line.split(" ")[0])
    .filter((name) => name.startsWith(`skb-${pid}-`));
}

/** A process id that no process has: above Linux's PID_MAX_LIMIT, 2^22. */
const DEAD_PID = 2 ** 22 + 1;

const rates: [string, number | undefined][] = [
  ["1gbit", 1e9],
  ["100mbit", 1e8],
  ["500kbit", 5e5],
  ["1 gbit", undefined],
  ["0mbit", undefined],
  ["fast", undefined],
];
for (const [rate, bits] of rates) {
  Deno.test(`parseRate("${rate}") reads ${bits ?? "no rate"}`, () => {
    assert.equal(parseRate(rate), bits);
  });
}

Deno.test("bench/bench.ts refuses a --link it cannot read, and --skip-loopback without a link, with exit 2", async () => {
  const cases: [string[], string][] = [
    [
      ["--link", "fast"],
      `Invalid --link: expected a rate such as 1gbit or 100mbit, or off, got "fast"`,
    ],
    [["--link", "off", "--skip-loopback"], "--skip-loopback needs a --link"],
  ];
  for (const [args, message] of cases) {
    await using bench = denoScript("bench/bench.ts", ["--allow-all"], args);
    assert.equal((await bench.wait()).code, 2);
    assert.equal(bench.stderr, `bench: ${message}\nTry 'deno task bench --help'.\n`);
  }
});

Deno.test({
  name:
    "bench --skip-loopback measures every system across a 100mbit link it then removes, and a killed run's leftovers (root: ip netns, tc)",
  async fn() {
    assert.ok(root, "this test makes network namespaces and so needs root");
    // What a benchmark killed with SIGKILL leaves: its namespace, under a process id gone.
    const leftover = `skb-${DEAD_PID}-s`;
    await new Deno.Command("ip", { args: ["netns", "add", leftover] }).output();
    await using bench = denoScript("bench/bench.ts", ["--allow-all"], [
      "--quick",
      "--skip-loopback",
      "--link",
      "100mbit",
    ]);
    assert.equal((await bench.wait(120_000)).code, 0, bench.stderr);
    const rows = bench.stdout.split("\n").filter((line) => /^\| (small|large) \|/.test(line));
    const systems = rows.map((row) => row.split(" | ")[1]);
    assert.deepEqual(
      [...new Set(systems)],
      [
        "ours",
        "ours --send-all",
        "ours --base64",
        "ours --tls",
        "tar c \\| nc",
        "rsync daemon",
        "original (Python port)",
      ],
    );
    for (const row of rows) {
      const cells = row.split(" | ");
      const [intact, files] = cells.at(-1)!.replace(" |", "").split("/");
      // The original loses data by design; every other system delivers every file.
      if (!cells[1].startsWith("original")) assert.equal(intact, files, row);
      // Shaped: no system outruns the link.
      const share = Number(cells[6].replace("%", ""));
      assert.ok(share > 0 && share < 100, `not within the link's rate: ${row}`);
    }
    assert.match(bench.stdout, /^\*\*Across a 100mbit\/s link\*\*/m);
    assert.match(bench.stdout, /^- 100mbit\/s link, small set: ours \/ tar c \| nc = /m);
    assert.deepEqual(await namespacesOf(bench.child.pid), []);
    assert.deepEqual(await namespacesOf(DEAD_PID), []);
  },
});

Deno.test({
  name:
    "bench stopped by SIGINT on the shaped link removes its namespaces and data and exits 1 (root: ip netns, tc)",
  async fn() {
    assert.ok(root, "this test makes network namespaces and so needs root");
    const dir = await Deno.makeTempDir();
    try {
      await using bench = denoScript("bench/bench.ts", ["--allow-all"], [
        "--quick",
        "--dir",
        dir,
      ]);
      await bench.waitFor(/bench: link 1gbit, round 1, small, ours: /, "stderr");
      assert.equal((await namespacesOf(bench.child.pid)).length, 2);
      bench.child.kill("SIGINT");
      assert.equal((await bench.wait()).code, 1);
      assert.match(bench.stderr, /\nbench: stopped by SIGINT\n$/);
      assert.deepEqual(await namespacesOf(bench.child.pid), []);
      assert.deepEqual([...Deno.readDirSync(dir)], []);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("bench without root says the link needs it in one line, and with --skip-loopback that nothing is left to measure", async () => {
  const denoDir = await Deno.makeTempDir();
  try {
    await Deno.chmod(denoDir, 0o777);
    // As the user nobody, when this runs as root; as the user running it otherwise.
    const asNobody = root ? ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] : [];
    const { code, stderr } = await new Deno.Command(asNobody[0] ?? Deno.execPath(), {
      args: [
        ...asNobody.slice(1),
        ...(root ? [Deno.execPath()] : []),
        "run",
        "--allow-all",
        new URL("../bench/bench.ts", import.meta.url).pathname,
        "--quick",
        "--skip-loopback",
      ],
      env: { DENO_DIR: denoDir, HOME: denoDir },
      stdout: "null",
      stderr: "piped",
    }).output();
    assert.equal(code, 1);
    assert.match(
      new TextDecoder().decode(stderr),
      /\nbench: the shaped link needs root \(ip netns, tc\): measuring loopback only\nbench: Nothing to measure: no shaped link, and --skip-loopback leaves out loopback\n$/,
    );
  } finally {
    await Deno.remove(denoDir, { recursive: true });
  }
});
