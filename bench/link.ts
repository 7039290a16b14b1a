/**
 * A shaped link for the benchmark: two network namespaces joined by a veth
 * pair, each end's sending shaped by `tc … tbf` to the same rate, with
 * addresses from the benchmarking block 198.18.0.0/15. On loopback the
 * benchmark measures CPU; here it measures what a user moving images
 * between two machines meets.
 *
 * @module
 */
import type { Side } from "./proc.ts";
import type { Ends } from "./systems.ts";

/** The sending side's address and the receiving side's, on a /30 of their own. */
const CLIENT_ADDRESS = "198.18.0.1";
const SERVER_ADDRESS = "198.18.0.2";
/** Names start with this and the benchmark's process id, so a killed run's leftovers are found. */
const PREFIX = "skb";
/** The kernel's timer tick on Debian's kernels: tbf must let a tick's worth of bytes through. */
const HZ = 250;

/**
 * Bits a second in a rate as `tc` writes it: 1gbit, 100mbit, 500kbit.
 *
 * @returns undefined when the text is not such a rate.
 */
export function parseRate(rate: string): number | undefined {
  const match = rate.match(/^([1-9]\d{0,5})(k|m|g)bit$/);
  if (!match) return undefined;
  return Number(match[1]) * { k: 1e3, m: 1e6, g: 1e9 }[match[2] as "k" | "m" | "g"];
}

async function run(command: string, args: string[]): Promise<void> {
  const { success, stderr } = await new Deno.Command(command, { args, stderr: "piped" }).output();
  if (!success) {
    const reason = new TextDecoder().decode(stderr).trim().split("\n")[0];
    throw new Error(`${command} ${args.join(" ")}: ${reason}`);
  }
}

async function namespaces(): Promise<string[]> {
  const { stdout } = await new Deno.Command("ip", { args: ["netns", "list"], stdout: "piped" })
    .output();
  return new TextDecoder().decode(stdout).split("\n").map((line) => line.split(" ")[0])
    .filter((name) => name !== "");
}

/** Kills what still runs in a namespace, then deletes it, and the veth end with it. */
async function removeNamespace(name: string): Promise<void> {
  const { stdout } = await new Deno.Command("ip", {
    args: ["netns", "pids", name],
    stdout: "piped",
    stderr: "null",
  }).output();
  for (const pid of new TextDecoder().decode(stdout).split("\n").filter(Boolean)) {
    try {
      Deno.kill(Number(pid), "SIGKILL");
    } catch {
      // Already gone.
    }
  }
  await run("ip", ["netns", "delete", name]);
}

/** Two namespaces joined by a shaped veth pair; {@linkcode ShapedLink.remove} undoes it all. */
export class ShapedLink implements Ends {
  readonly host = SERVER_ADDRESS;
  readonly rate: string;
  readonly bitsPerSecond: number;
  readonly server: Side;
  readonly client: Side;
  readonly #names: { server: string; client: string };

  private constructor(rate: string, bitsPerSecond: number) {
    this.rate = rate;
    this.bitsPerSecond = bitsPerSecond;
    const names = { server: `${PREFIX}-${Deno.pid}-s`, client: `${PREFIX}-${Deno.pid}-c` };
    this.#names = names;
    this.server = (command, args) => ["ip", ["netns", "exec", names.server, command, ...args]];
    this.client = (command, args) => ["ip", ["netns", "exec", names.client, command, ...args]];
  }

  /**
   * Makes the link, first removing any a killed benchmark left behind.
   *
   * @throws Error naming the command that failed, as without root.
   */
  static async make(rate: string, bitsPerSecond: number): Promise<ShapedLink> {
    await removeLeftovers();
    const link = new ShapedLink(rate, bitsPerSecond);
    try {
      await link.#build();
    } catch (error) {
      await link.remove();
      throw error;
    }
    return link;
  }

  async #build(): Promise<void> {
    const ends = [
      [this.#names.client, `${PREFIX}${Deno.pid}c`, CLIENT_ADDRESS],
      [this.#names.server, `${PREFIX}${Deno.pid}s`, SERVER_ADDRESS],
    ];
    for (const [namespace] of ends) await run("ip", ["netns", "add", namespace]);
    await run("ip", ["link", "add", ends[0][1], "type", "veth", "peer", "name", ends[1][1]]);
    // Two timer ticks' worth of bytes (tbf needs one at least), and a queue of 20 ms.
    const burst = Math.max(16_384, Math.ceil(this.bitsPerSecond / 8 / HZ) * 2);
    for (const [namespace, device, address] of ends) {
      await run("ip", ["link", "set", device, "netns", namespace]);
      await run("ip", ["-n", namespace, "address", "add", `${address}/30`, "dev", device]);
      await run("ip", ["-n", namespace, "link", "set", "lo", "up"]);
      await run("ip", ["-n", namespace, "link", "set", device, "up"]);
      const shape = ["rate", this.rate, "burst", String(burst), "latency", "20ms"];
      await run("tc", ["-n", namespace, "qdisc", "add", "dev", device, "root", "tbf", ...shape]);
    }
  }

  /** Ends whatever runs on the link and removes both namespaces, and so the veth pair. */
  async remove(): Promise<void> {
    const present = await namespaces();
    for (const name of Object.values(this.#names)) {
      if (present.includes(name)) await removeNamespace(name);
    }
    // Made but not yet moved into its namespace when the build failed.
    await run("ip", ["link", "delete", `${PREFIX}${Deno.pid}c`]).catch(() => {});
  }
}

function running(pid: string): boolean {
  try {
    Deno.statSync(`/proc/${pid}`);
    return true;
  } catch {
    return false;
  }
}

/** Removes the namespaces of benchmarks that no longer run, such as one killed with SIGKILL. */
async function removeLeftovers(): Promise<void> {
  for (const name of await namespaces()) {
    const pid = name.match(new RegExp(`^${PREFIX}-(\\d+)-[sc]$`))?.[1];
    // Ours too: a killed benchmark may have had our process id, and we have made none yet.
    if (pid !== undefined && (pid === String(Deno.pid) || !running(pid))) {
      await removeNamespace(name);
    }
  }
}
