/**
 * The benchmark's processes: each started with its output in a file, timed
 * under GNU time, and all of them ended at once when a signal stops the run.
 *
 * @module
 */

const decoder = new TextDecoder();
/** Units of the CPU times in /proc/PID/stat: USER_HZ, 100 on every Linux this runs on. */
const CLOCK_TICKS = 100;

/** Every process the benchmark started that has not exited yet. */
const running = new Set<Proc>();
/** The signal that stopped the benchmark, once one has. */
let interrupted: Deno.Signal | undefined;

/** The signal that stopped the run, if one has. */
export function interruptedBy(): Deno.Signal | undefined {
  return interrupted;
}

/** Marks the run stopped by `signal` and kills every process it started, so that cleanup runs. */
export function interrupt(signal: Deno.Signal): void {
  interrupted = signal;
  for (const proc of running) void proc.stop("SIGKILL");
}

/** Stops the run in progress once a signal has come, so that the data can go. */
export function checkInterrupted(): void {
  if (interrupted) throw new Error(`Stopped by ${interrupted}`);
}

export async function sleep(ms: number): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `test` every 20 ms until it holds, failing after `ms`. */
export async function until(what: string, test: () => boolean | Promise<boolean>, ms = 60_000) {
  const deadline = Date.now() + ms;
  while (!await test()) {
    checkInterrupted();
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await sleep(20);
  }
}

/**
 * Where a process runs: as it is on loopback, or inside a network namespace
 * (`ip netns exec NS`, which execs the command, so its process id stays ours
 * to read in /proc).
 */
export type Side = (command: string, args: string[]) => [string, string[]];

/** A process run as it is, in the benchmark's own network. */
export const HERE: Side = (command, args) => [command, args];

/** A process whose stdout and stderr go to files, so a flood of output costs us nothing. */
export class Proc {
  readonly child: Deno.ChildProcess;
  readonly log: string;

  constructor(command: string, args: string[], log: string, side: Side = HERE) {
    checkInterrupted();
    this.log = log;
    const shellQuote = (s: string) => `'${s.replaceAll("'", "'\\''")}'`;
    const words = side(command, args).flat();
    this.child = new Deno.Command("sh", {
      args: ["-c", `exec ${words.map(shellQuote).join(" ")} > ${shellQuote(log)} 2>&1`],
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

  /**
   * Whether something listens on the TCP port in this process's network,
   * read from /proc without connecting to it.
   */
  listening(port: number): boolean {
    let table: string;
    try {
      table = Deno.readTextFileSync(`/proc/${this.child.pid}/net/tcp`);
    } catch {
      return false;
    }
    const local = `:${port.toString(16).toUpperCase().padStart(4, "0")} `;
    return table.split("\n").some((line) => line.includes(local) && / 0A /.test(line));
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
export function underTime(timeFile: string, command: string, args: string[]): string[] {
  return ["-f", "%M %U %S", "-o", timeFile, command, ...args];
}

/** Peak RSS, and the CPU seconds of a command and every child it waited for. */
export function readTime(timeFile: string): { kiB: number; cpu: number } {
  // A failed command's status comes on a line before.
  const [kiB, user, system] = Deno.readTextFileSync(timeFile).trim().split("\n").at(-1)!
    .split(" ").map(Number);
  return { kiB, cpu: user + system };
}

/** Runs a command to its end under GNU time and returns its status, seconds, peak RSS and CPU. */
export async function timed(command: string, args: string[], log: string, side: Side = HERE) {
  const timeFile = `${log}.time`;
  const started = performance.now();
  const proc = new Proc("/usr/bin/time", underTime(timeFile, command, args), log, side);
  const status = await proc.child.status;
  const seconds = (performance.now() - started) / 1000;
  return { status, seconds, ...readTime(timeFile) };
}
