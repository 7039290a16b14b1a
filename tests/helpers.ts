/** Shared helpers for the tests: subprocesses, test data and byte sources. */

import assert from "node:assert/strict";
import {
  type ByteSource,
  concatBytes,
  FrameReader,
  LineReader,
  MAX_ACK_SIZE,
  parseName,
  ProtocolError,
  type ProtocolErrorCode,
} from "../protocol.ts";
import { type ServerOptions, type ServerStats, startServer } from "../server.ts";

/** The project folder, with a trailing slash. */
export const ROOT = new URL("../", import.meta.url).pathname;

const encoder = new TextEncoder();

/** Encodes text as UTF-8. */
export function utf8(text: string): Uint8Array {
  return encoder.encode(text);
}

/** Joins byte arrays. */
export function concat(...parts: Uint8Array[]): Uint8Array {
  return concatBytes(parts);
}

/** A small deterministic PRNG (mulberry32), so a failing split can be replayed. */
export function random(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Random bytes of any length (getRandomValues takes 64 KiB at a time). */
export function randomBytes(size: number): Uint8Array {
  const bytes = new Uint8Array(size);
  for (let offset = 0; offset < size; offset += 65_536) {
    crypto.getRandomValues(bytes.subarray(offset, Math.min(size, offset + 65_536)));
  }
  return bytes;
}

/** Random bytes behind a JPEG signature, like a real photo to the sniffer. */
export function fakeJpeg(size: number): Uint8Array {
  const bytes = randomBytes(size);
  bytes.set([0xff, 0xd8, 0xff, 0xe0].slice(0, size));
  return bytes;
}

/** Writes `count` fake JPEGs named by 32 hex characters, as the original's data set. */
export async function makeImages(
  folder: string,
  sizes: number[],
): Promise<Map<string, Uint8Array>> {
  await Deno.mkdir(folder, { recursive: true });
  const files = new Map<string, Uint8Array>();
  for (const size of sizes) {
    const name = [...crypto.getRandomValues(new Uint8Array(16))]
      .map((b) => b.toString(16).padStart(2, "0")).join("");
    const bytes = fakeJpeg(size);
    await Deno.writeFile(`${folder}/${name}.jpg`, bytes);
    files.set(name, bytes);
  }
  return files;
}

/** Temporary folders, each removed with all it holds when the holder is disposed. */
export class TempDirs implements AsyncDisposable {
  readonly #paths: string[] = [];

  /** Makes one more folder and returns its path. */
  async make(): Promise<string> {
    const path = await Deno.makeTempDir();
    this.#paths.push(path);
    return path;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    for (const path of this.#paths) await Deno.remove(path, { recursive: true });
  }
}

/**
 * Runs `body` against an in-process server on a free loopback port, with
 * images of `sizes` made in a fresh input folder and a fresh output folder;
 * `stats` are the server's live counts.
 */
export async function withServerAndImages(
  sizes: number[],
  body: (
    port: number,
    input: string,
    out: string,
    images: Map<string, Uint8Array>,
    stats: ServerStats,
  ) => Promise<void>,
  options: Omit<ServerOptions, "host" | "port" | "out"> = {},
): Promise<void> {
  await using temporary = new TempDirs();
  const input = await temporary.make();
  const out = await temporary.make();
  const server = await startServer({ ...options, host: "127.0.0.1", port: 0, out });
  try {
    await body(server.addr.port, input, out, await makeImages(input, sizes), server.stats);
  } finally {
    await server.shutdown(1000);
  }
}

/**
 * A loopback port that was free a moment ago: nothing listens there, so
 * connections are refused, and a program that must be told its port (HAProxy)
 * can bind it.
 */
export function freePort(): number {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  return listener.addr.port;
}

/**
 * Lists a folder's file names, sorted, but a running server's lock file
 * (`.upload-ID.lock`), which says that it runs and goes when it stops.
 */
export async function listFolder(folder: string): Promise<string[]> {
  const names: string[] = [];
  for await (const entry of Deno.readDir(folder)) {
    if (!/^\.upload-[0-9a-f]{16}\.lock$/.test(entry.name)) names.push(entry.name);
  }
  return names.sort();
}

/** The frames a server kept whole in its quarantine folder, as they arrived, in name order. */
export async function quarantined(out: string): Promise<Uint8Array[]> {
  let names: string[];
  try {
    names = await listFolder(`${out}/.quarantine`);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return [];
    throw error;
  }
  return await Promise.all(names.map((name) => Deno.readFile(`${out}/.quarantine/${name}`)));
}

/** A child process whose output is collected as it arrives. */
export class Spawned implements AsyncDisposable {
  readonly child: Deno.ChildProcess;
  stdout = "";
  stderr = "";
  readonly #pumps: Promise<void>[];

  constructor(
    command: string,
    args: string[],
    options: { stdin?: boolean; cwd?: string; env?: Record<string, string> } = {},
  ) {
    this.child = new Deno.Command(command, {
      args,
      cwd: options.cwd,
      env: options.env,
      stdin: options.stdin ? "piped" : "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#pumps = [
      this.#pump(this.child.stdout, (text) => this.stdout += text),
      this.#pump(this.child.stderr, (text) => this.stderr += text),
    ];
  }

  readonly #readers: ReadableStreamDefaultReader<Uint8Array>[] = [];

  async #pump(stream: ReadableStream<Uint8Array>, append: (text: string) => void) {
    const textDecoder = new TextDecoder();
    const reader = stream.getReader();
    this.#readers.push(reader);
    try {
      for (let read = await reader.read(); !read.done; read = await reader.read()) {
        append(textDecoder.decode(read.value, { stream: true }));
      }
    } catch {
      // Cancelled on disposal.
    }
  }

  /** Waits until one stream matches `pattern`, failing after 15 s with what was printed. */
  async waitFor(
    pattern: RegExp,
    stream: "stdout" | "stderr" = "stdout",
  ): Promise<RegExpMatchArray> {
    const deadline = Date.now() + 15_000;
    for (;;) {
      const match = this[stream].match(pattern);
      if (match) return match;
      if (Date.now() > deadline) {
        throw new Error(
          `Timed out waiting for ${pattern}: stdout ${JSON.stringify(this.stdout)}, stderr ${
            JSON.stringify(this.stderr)
          }`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  /** Writes to the child's stdin. */
  async write(input: string | Uint8Array): Promise<void> {
    const writer = this.child.stdin.getWriter();
    await writer.write(typeof input === "string" ? utf8(input) : input);
    writer.releaseLock();
  }

  /** Waits for the child to exit, after closing its stdin if piped. */
  async wait(ms = 30_000): Promise<Deno.CommandStatus> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      const status = await Promise.race([
        this.child.status,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => {
            this.child.kill("SIGKILL");
            reject(
              new Error(
                `Process did not exit within ${ms} ms: stderr ${JSON.stringify(this.stderr)}`,
              ),
            );
          }, ms);
        }),
      ]);
      await Promise.all(this.#pumps);
      return status;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Sends `signal` and waits for the exit. */
  stop(signal: Deno.Signal = "SIGTERM"): Promise<Deno.CommandStatus> {
    try {
      this.child.kill(signal);
    } catch {
      // Already exited.
    }
    return this.wait();
  }

  async [Symbol.asyncDispose]() {
    try {
      this.child.kill("SIGKILL");
    } catch {
      // Already exited.
    }
    await this.child.status;
    // A grandchild may still hold the pipes open: stop reading them.
    await Promise.all(this.#readers.map((reader) => reader.cancel()));
    await Promise.all(this.#pumps);
  }
}

/** Runs a project script with Deno and the given permission flags. */
export function denoScript(script: string, flags: string[], args: string[], options = {}): Spawned {
  return new Spawned(Deno.execPath(), ["run", ...flags, `${ROOT}${script}`, ...args], options);
}

/** The command line that runs `server.ts` on a free loopback port, saving into `out`. */
export function serverCommand(out: string, args: string[] = []): string[] {
  return [
    Deno.execPath(),
    "run",
    "--allow-net=127.0.0.1",
    `--allow-read=${out}`,
    `--allow-write=${out}`,
    `${ROOT}server.ts`,
    "--host=127.0.0.1",
    "--port=0",
    `--out=${out}`,
    ...args,
  ];
}

/**
 * Starts `server.ts` on a free loopback port saving into `out`, under
 * `wrapper` (such as strace or prlimit) when given.
 */
export async function spawnServer(
  out: string,
  args: string[] = [],
  wrapper: string[] = [],
): Promise<{ server: Spawned; port: number }> {
  const [command, ...rest] = [...wrapper, ...serverCommand(out, args)];
  const server = new Spawned(command, rest);
  const match = await server.waitFor(/listening on 127\.0\.0\.1:(\d+)/);
  return { server, port: Number(match[1]) };
}

/** Runs `client.ts` on the folder `input`, allowed to read only it, after `args`. */
export function spawnClient(input: string, args: string[]): Spawned {
  return denoScript(
    "client.ts",
    ["--allow-net=127.0.0.1", `--allow-read=${input}`],
    [...args, input],
  );
}

/** Starts `udp_server.ts` on a free loopback port. */
export async function spawnUdpServer(
  args: string[] = [],
): Promise<{ server: Spawned; port: number }> {
  const server = denoScript(
    "udp_server.ts",
    ["--allow-net=127.0.0.1"],
    ["--host", "127.0.0.1", "--port", "0", ...args],
  );
  const match = await server.waitFor(/listening on 127\.0\.0\.1:(\d+)/);
  return { server, port: Number(match[1]) };
}

/** A source that returns `bytes` and then never answers again. */
export function stallingSource(bytes: Uint8Array): ByteSource {
  let given = false;
  return {
    read(buffer) {
      if (given) return new Promise(() => {});
      given = true;
      buffer.set(bytes);
      return Promise.resolve(bytes.length);
    },
  };
}

/** Reads every frame of a reader, each name with its data. */
export async function readAll(reader: FrameReader): Promise<{ name: string; data: Uint8Array }[]> {
  const frames = [];
  for (let head; (head = await reader.readHead()) !== null;) {
    const chunks: Uint8Array[] = [];
    for await (const chunk of reader.data()) chunks.push(chunk.slice());
    frames.push({ name: parseName(head.nameField), data: concat(...chunks) });
  }
  return frames;
}

/** Asserts that a promise rejects with a ProtocolError of that code (and message). */
export async function assertProtocolError(
  promise: Promise<unknown>,
  code: ProtocolErrorCode,
  message?: RegExp,
): Promise<void> {
  await assert.rejects(promise, (error) => {
    assert.ok(error instanceof ProtocolError, `expected a ProtocolError, got ${error}`);
    assert.equal(error.code, code, error.message);
    if (message) assert.match(error.message, message);
    return true;
  });
}

/** Waits until something accepts on the loopback port, failing with `child`'s stderr after 10 s. */
export async function waitForListener(port: number, child: Spawned): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
      return;
    } catch {
      assert.ok(Date.now() < deadline, `nothing listens on ${port}: ${child.stderr}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}

/** The names in a folder that are servers' own: lock files and temporary files, sorted. */
export async function serverFiles(out: string): Promise<string[]> {
  const names: string[] = [];
  for await (const { name } of Deno.readDir(out)) if (name.startsWith(".upload-")) names.push(name);
  return names.sort();
}

/**
 * Sends `bytes` on a new connection to the loopback port and returns the
 * server's first answer line, or null when it closes without one.
 */
export async function answerTo(port: number, bytes: Uint8Array): Promise<string | null> {
  using conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await conn.write(bytes);
  const line = await new LineReader(conn, MAX_ACK_SIZE).readLine(5000);
  return line && new TextDecoder().decode(line);
}
