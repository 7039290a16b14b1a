#!/usr/bin/env -S deno run --allow-net=127.0.0.1 --allow-read --allow-write --allow-run
/**
 * The README's first command: starts server.ts on a free port, uploads the
 * images in samples/ with client.ts, and shows what arrived and where.
 *
 * @module
 */

const root = new URL("../", import.meta.url).pathname;
const samples = `${root}samples`;

/** Copies a child's output lines to ours with a prefix, collecting them. */
async function relay(stream: ReadableStream<Uint8Array>, prefix: string, into: string[]) {
  let pending = "";
  for await (const text of stream.pipeThrough(new TextDecoderStream())) {
    const lines = (pending + text).split("\n");
    pending = lines.pop()!;
    for (const line of lines) {
      into.push(line);
      console.log(`${prefix} ${line}`);
    }
  }
}

const USAGE = `Usage: deno task demo

Starts server.ts on a free loopback port, saving into a new temporary
folder, uploads the images in samples/ with client.ts, lists what arrived
and whether each file is identical to its original, and removes the folder.
Exits 0 when all are.`;

/** Starts a child with piped output. */
function spawn(args: string[]): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}

/** Starts the server on a free port, saving into `out`; returns it, its port and its relays. */
async function startServer(out: string) {
  const server = spawn([
    "run",
    "--allow-net=127.0.0.1",
    `--allow-read=${out}`,
    `--allow-write=${out}`,
    `${root}server.ts`,
    "--host",
    "127.0.0.1",
    "--port",
    "0",
    "--out",
    out,
  ]);
  const lines: string[] = [];
  const relays = [relay(server.stdout, "[server]", lines), relay(server.stderr, "[server]", lines)];
  let port: string | undefined;
  for (let waited = 0; port === undefined && waited < 15_000; waited += 50) {
    port = lines.join("\n").match(/listening on [^ ]+:(\d+)/)?.[1];
    if (port === undefined) await new Promise((resolve) => setTimeout(resolve, 50));
  }
  if (port === undefined) {
    server.kill("SIGKILL");
    await server.status;
    throw new Error("the server did not start");
  }
  return { server, port, relays };
}

/** Lists what arrived and whether each file is identical to its original; returns how many are. */
async function compare(out: string): Promise<{ arrived: number; identical: number }> {
  const arrived: string[] = [];
  // Hidden names are the server's own: its lock file while it runs, its quarantine.
  for await (const { name } of Deno.readDir(out)) if (!name.startsWith(".")) arrived.push(name);
  arrived.sort();
  let identical = 0;
  console.log(`\nArrived in ${out}:`);
  for (const name of arrived) {
    const saved = await Deno.readFile(`${out}/${name}`);
    // The server names a file by its sniffed type, as the samples are named.
    const original = await Deno.readFile(`${samples}/${name}`).catch(() => new Uint8Array(0));
    const same = original.length === saved.length && original.every((b, i) => b === saved[i]);
    if (same) identical++;
    console.log(
      `  ${name.padEnd(38)} ${String(saved.length).padStart(6)} bytes${same ? "" : "  DIFFERS"}`,
    );
  }
  console.log(`identical to the originals: ${identical} of ${arrived.length}\n`);
  return { arrived: arrived.length, identical };
}

async function main(): Promise<void> {
  if (Deno.args.length > 0) {
    const help = Deno.args[0] === "--help" || Deno.args[0] === "-h";
    if (help) console.log(USAGE);
    else console.error(`demo: Unknown argument '${Deno.args[0]}': it takes none`);
    Deno.exit(help ? 0 : 2);
  }
  const out = await Deno.makeTempDir({ prefix: "socket-demo-" });
  let succeeded = false;
  try {
    succeeded = await uploadSamples(out);
  } catch (error) {
    console.error(`demo: ${(error as Error).message}`);
  } finally {
    // A demo leaves nothing behind: what arrived was shown above.
    await Deno.remove(out, { recursive: true });
  }
  console.log(`removed ${out}`);
  Deno.exit(succeeded ? 0 : 1);
}

/** Starts the server, uploads samples/ into `out` and compares; true when every file arrived whole. */
async function uploadSamples(out: string): Promise<boolean> {
  const { server, port, relays } = await startServer(out);
  try {
    const client = spawn([
      "run",
      "--allow-net=127.0.0.1",
      `--allow-read=${samples}`,
      `${root}client.ts`,
      "--port",
      port,
      "--ext",
      "jpg,png",
      "--verbose",
      samples,
    ]);
    await Promise.all([relay(client.stdout, "[client]", []), relay(client.stderr, "[client]", [])]);
    const clientStatus = await client.status;
    const { arrived, identical } = await compare(out);
    return clientStatus.success && identical === arrived && arrived > 0;
  } finally {
    server.kill("SIGTERM");
    await server.status;
    await Promise.all(relays);
  }
}

if (import.meta.main) await main();
