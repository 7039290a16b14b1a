#!/usr/bin/env -S deno run --unstable-net --allow-net
/**
 * UDP datagram printer: prints every datagram it receives as one line of
 * text, like the original, but whole (up to 65,507 bytes, not 1,024) and
 * unable to drive the terminal. It receives on the main thread and prints
 * from a Worker, so that a flood is not lost while a pipe or terminal is
 * slow; to a file, which never keeps a write waiting, it prints directly.
 *
 * @module
 */
import dgram from "node:dgram";
import { parseArgs } from "node:util";
import {
  checkNetPermission,
  type Cidr,
  counted,
  DEFAULT_LISTEN_HOST,
  DEFAULT_PORT,
  DEFAULT_QUEUE_BYTES,
  DirectPrinter,
  exitCodeFor,
  formatAddress,
  formatBytes,
  inAnyCidr,
  KernelSocket,
  type LinePrinter,
  MAX_DATAGRAM_SIZE,
  parseByteSize,
  parseCidr,
  parseHost,
  parsePort,
  Printer,
  ScriptOutput,
  writeAllSync,
  writesNeverWait,
} from "./protocol.ts";

const encoder = new TextEncoder();

/** Options for {@linkcode startUdpServer}. */
export interface UdpServerOptions {
  /**
   * Address to listen on.
   * @default {DEFAULT_LISTEN_HOST}
   */
  host?: string;
  /**
   * Port to listen on; 0 for any free port.
   * @default {DEFAULT_PORT}
   */
  port?: number;
  /**
   * Address blocks whose datagrams are printed; others are dropped unread.
   * Undefined allows everyone.
   * @default {undefined}
   */
  allow?: Cidr[];
  /**
   * Bytes asked of the kernel for the socket's receive buffer, where
   * datagrams wait while the receiving thread is busy (Linux, `--allow-ffi`;
   * see {@linkcode KernelSocket}). Undefined keeps the kernel's default.
   * @default {undefined}
   */
  receiveBuffer?: number;
}

/** A running UDP server. */
export interface UdpServer {
  /** The address actually bound, with the real port. */
  readonly address: { address: string; port: number };
  /** The kernel's receive buffer in bytes, when `receiveBuffer` was asked for. */
  readonly receiveBuffer: number | undefined;
  /**
   * Datagrams the kernel dropped so far because its receive buffer was
   * full; undefined when it cannot be known (no `--allow-ffi`, not Linux).
   */
  readonly kernelDrops: number | undefined;
  /** Datagrams received so far from allowed addresses, each passed to `onDatagram`. */
  readonly received: number;
  /** Datagrams dropped so far for coming from outside the allowed blocks. */
  readonly dropped: number;
  /** Stops listening. */
  close(): Promise<void>;
}

/**
 * `Deno.listenDatagram`, present only with `--unstable-net` (or `"unstable":
 * ["net"]` in deno.json). It receives into one reused buffer, where Deno's
 * `node:dgram` allocates 64 KiB for every datagram: about 150,000 datagrams
 * a second here against 40,000.
 */
const listenDatagram = (Deno as { listenDatagram?: typeof Deno.listenDatagram }).listenDatagram;

/** Room for the largest UDP payload (65,507 bytes over IPv4), so nothing is cut. */
const RECEIVE_BUFFER_SIZE = 65_536;

/** A bound socket that passes each datagram on, until closed. */
interface BoundSocket {
  readonly address: { address: string; port: number };
  close(): Promise<void>;
}

type OnDatagram = (payload: Uint8Array, from: { hostname?: string; address?: string }) => void;

function receiveWithDeno(
  listen: typeof Deno.listenDatagram,
  host: string,
  port: number,
  onDatagram: OnDatagram,
): BoundSocket {
  const listener = listen({ transport: "udp", hostname: host, port });
  const buffer = new Uint8Array(RECEIVE_BUFFER_SIZE);
  let closed = false;
  const receiving = (async () => {
    while (!closed) {
      // Indexed rather than destructured, which iterates: a flood is counted in nanoseconds.
      let datagram: [Uint8Array, Deno.Addr];
      try {
        datagram = await listener.receive(buffer);
      } catch (error) {
        // Closing interrupts the pending receive; other errors concern one datagram.
        if (closed || error instanceof Deno.errors.BadResource) return;
        continue;
      }
      onDatagram(datagram[0], datagram[1] as Deno.NetAddr);
    }
  })();
  const { hostname, port: boundPort } = listener.addr as Deno.NetAddr;
  return {
    address: { address: hostname, port: boundPort },
    async close() {
      closed = true;
      listener.close();
      await receiving;
    },
  };
}

function receiveWithNode(host: string, port: number, onDatagram: OnDatagram): Promise<BoundSocket> {
  const socket = dgram.createSocket(host.includes(":") ? "udp6" : "udp4");
  socket.on("message", onDatagram);
  return new Promise((resolve, reject) => {
    socket.once("error", reject);
    socket.bind(port, host, () => {
      socket.off("error", reject);
      resolve({
        address: socket.address(),
        close: () => new Promise<void>((done) => socket.close(() => done())),
      });
    });
  });
}

/**
 * Binds a UDP socket and calls `onDatagram` with every payload. It never
 * replies to anyone.
 *
 * @param onDatagram Called with each datagram's payload, valid only during
 * the call.
 * @param options Address, port, allowed blocks and receive buffer.
 * @returns The running server.
 * @throws {Deno.errors.NotCapable} Without net permission for the address,
 * or without `--allow-ffi` for a receive buffer; what
 * {@linkcode KernelSocket.find} throws.
 */
export async function startUdpServer(
  onDatagram: (payload: Uint8Array) => void,
  options: UdpServerOptions = {},
): Promise<UdpServer> {
  const host = options.host ?? DEFAULT_LISTEN_HOST;
  const port = options.port ?? DEFAULT_PORT;
  await checkNetPermission(formatAddress(host, port));
  let received = 0;
  let dropped = 0;
  const { allow } = options;
  // The sender's address is read only for --allow: every step counts in a flood.
  const count: OnDatagram = (payload, from) => {
    if (allow !== undefined && !inAnyCidr(allow, from.hostname ?? from.address ?? "")) {
      dropped++;
      return;
    }
    received++;
    onDatagram(payload);
  };
  const socket = listenDatagram !== undefined
    ? receiveWithDeno(listenDatagram, host, port, count)
    : await receiveWithNode(host, port, count);
  let kernel: KernelSocket | undefined;
  let dropsAtClose: number | undefined;
  try {
    kernel = await reachKernel(socket.address.port, options.receiveBuffer);
  } catch (error) {
    await socket.close();
    throw error;
  }
  return {
    address: socket.address,
    get receiveBuffer() {
      return options.receiveBuffer === undefined ? undefined : kernel?.receiveBuffer;
    },
    get kernelDrops() {
      return kernel?.drops ?? dropsAtClose;
    },
    get received() {
      return received;
    },
    get dropped() {
      return dropped;
    },
    async close() {
      // Read before the socket goes: the summary comes after.
      dropsAtClose = kernel?.drops;
      await socket.close();
      kernel?.[Symbol.dispose]();
      kernel = undefined;
    },
  };
}

/**
 * The socket through libc: required for a receive buffer, and otherwise
 * only to count the kernel's drops, which go uncounted without
 * `--allow-ffi` or off Linux.
 */
async function reachKernel(port: number, receiveBuffer?: number) {
  if (receiveBuffer === undefined) return await KernelSocket.find(port).catch(() => undefined);
  const kernel = await KernelSocket.find(port);
  kernel.setReceiveBuffer(receiveBuffer);
  return kernel;
}

/** Enough for V8 to compile the receiving loop: 1,000 were measured too few. */
const WARM_UP_DATAGRAMS = 5_000;

/** Sent before waiting for them: well within the kernel's buffer of about 280. */
const WARM_UP_BURST = 100;

/**
 * Runs datagrams through the receiving and printing code on a private
 * loopback socket, printing them nowhere, so that V8 has compiled that code
 * before a flood comes. Measured: a flood at once kept 95.9% against 93.6%
 * (medians of 6 alternating rounds), for about 70 ms at start. Skipped
 * without `--unstable-net` or net permission for 127.0.0.1, which it never
 * asks for.
 *
 * @param datagrams How many to run through.
 * @returns How many went through: 0 when skipped.
 */
export async function warmUp(datagrams: number = WARM_UP_DATAGRAMS): Promise<number> {
  if (listenDatagram === undefined) return 0;
  const sink = new DirectPrinter({ write: () => {} });
  let burst = Promise.withResolvers<void>();
  let end = 0;
  let server: UdpServer;
  try {
    // It checks the permission before binding: a terminal is never asked for it.
    server = await startUdpServer((payload) => {
      sink.print(payload);
      if (sink.received >= end) burst.resolve();
    }, { host: "127.0.0.1", port: 0 });
  } catch (error) {
    if (error instanceof Deno.errors.NotCapable) return 0;
    throw error;
  }
  const socket = listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  const to = { transport: "udp" as const, hostname: "127.0.0.1", port: server.address.port };
  const payload = encoder.encode("A line of printable text, as most datagrams are");
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    for (let sent = 0; sent < datagrams; burst = Promise.withResolvers()) {
      end = Math.min(sent + WARM_UP_BURST, datagrams);
      for (; sent < end; sent++) await socket.send(payload, to);
      // Each burst is received before the next is sent, so the kernel's
      // buffer never overflows; a datagram lost costs 100 ms, not a hang.
      await Promise.race([burst.promise, new Promise((done) => timer = setTimeout(done, 100))]);
      clearTimeout(timer);
    }
  } finally {
    clearTimeout(timer);
    socket.close();
    await server.close();
    await sink.close();
  }
  return sink.received;
}

const QUEUE = formatBytes(DEFAULT_QUEUE_BYTES);

const USAGE = `Usage: deno run --unstable-net --allow-net udp_server.ts [options]

Prints every UDP datagram received as one line: UTF-8 text as is, one
trailing line end (\\n or \\r\\n) as the line's end, invalid bytes as U+FFFD,
other control characters escaped (\\n, \\x1b, ...).

To a pipe or terminal, lines are written by a second thread, so receiving
never waits for stdout. When stdout falls behind, up to ${QUEUE} of datagrams
wait; what comes beyond that is dropped, and counted on stderr once a second
and in the summary. To a file, which never keeps a write waiting, lines are
written by the thread that receives: on a small machine that prints more.
Before listening, it runs ${WARM_UP_DATAGRAMS} datagrams through a private socket on
127.0.0.1 (when allowed to), so that a flood is met by compiled code.

Datagrams that come while the kernel's receive buffer is full are lost
before this server sees them. With --allow-ffi (on Linux) it counts those
too, and says so in the same ways; --rcvbuf makes that buffer bigger.

--unstable-net (set by deno.json inside the project) lets it receive through
Deno.listenDatagram, about four times as fast as through node:dgram, which it
falls back on without the flag.

Options:
  --host HOST   address to listen on (default ${DEFAULT_LISTEN_HOST})
  --port PORT   port to listen on, 0 for any free port (default ${DEFAULT_PORT})
  --allow CIDR  print only datagrams from this block, such as 10.0.0.0/8;
                repeatable (default: from anywhere)
  --rcvbuf SIZE ask the kernel for a receive buffer of SIZE, such as 4M, where
                datagrams wait while this process is busy; its default,
                often 208 KiB, overflows in 1.4 ms of a loopback flood.
                Linux only, and needs --allow-ffi (default: the kernel's)
  -h, --help    show this help

Exit status: 0 after SIGINT/SIGTERM, 1 on a runtime error, 2 on a usage error.
Datagrams up to ${MAX_DATAGRAM_SIZE} bytes are printed whole.`;

/** Writes to stdout, which is what this server is for: it stops when it cannot. */
function print(script: ScriptOutput, text: string): void {
  try {
    writeAllSync(Deno.stdout, encoder.encode(`${text}\n`));
  } catch (error) {
    stopPrinting(script, error as Error);
  }
}

function stopPrinting(script: ScriptOutput, error: { name: string; message: string }): never {
  // The reader went away (`| head`): nothing left to print to.
  if (error.name === "BrokenPipe") Deno.exit(0);
  script.error(`Cannot print to stdout: ${error.message}`);
  Deno.exit(1);
}

/** A count of dropped datagrams, and why they were dropped. */
interface Drops {
  count: () => number;
  why: string;
}

/** Says once a second how many datagrams were dropped in that second, and why. */
function reportDrops(script: ScriptOutput, drops: Drops[]): ReturnType<typeof setInterval> {
  const reported = drops.map(() => 0);
  return setInterval(() => {
    drops.forEach(({ count, why }, i) => {
      const dropped = count() - reported[i];
      if (dropped === 0) return;
      reported[i] += dropped;
      script.stderr.line(`Dropped ${counted(dropped, "datagram")} in the last second: ${why}`);
    });
  }, 1000);
}

/** The summary on a signal: received, printed, and what was dropped and why. */
function summary(signal: Deno.Signal, server: UdpServer | undefined, printer: LinePrinter): string {
  const received = counted(server?.received ?? 0, "datagram");
  const late = printer.dropped > 0 ? `, dropped ${printer.dropped} for want of time` : "";
  const kernel = server?.kernelDrops ? `, ${server.kernelDrops} dropped by the kernel` : "";
  const outside = server?.dropped ? ` (${server.dropped} dropped by --allow)` : "";
  return `${signal}: received ${received}, printed ${printer.printed}${late}${kernel}${outside}`;
}

/** Linux doubles what is asked; less than that means `net.core.rmem_max` cut it. */
function warnIfCapped(script: ScriptOutput, asked?: number, size?: number): void {
  if (asked === undefined || size === undefined || size >= 2 * asked) return;
  script.stderr.line(
    `The receive buffer is ${size} bytes: net.core.rmem_max capped --rcvbuf at ${
      size / 2
    } (raise it, or run as root)`,
  );
}

function parseFlags(script: ScriptOutput): UdpServerOptions & { host: string; port: number } {
  try {
    const { values } = parseArgs({
      args: Deno.args,
      options: {
        host: { type: "string", default: DEFAULT_LISTEN_HOST },
        port: { type: "string", default: String(DEFAULT_PORT) },
        allow: { type: "string", multiple: true },
        rcvbuf: { type: "string" },
        help: { type: "boolean", short: "h", default: false },
      },
    });
    if (values.help) {
      print(script, USAGE);
      Deno.exit(0);
    }
    return {
      host: parseHost(values.host),
      port: parsePort(values.port),
      allow: values.allow?.map(parseCidr),
      receiveBuffer: values.rcvbuf === undefined ? undefined : parseByteSize(values.rcvbuf),
    };
  } catch (error) {
    script.usage(error);
  }
}

async function main(): Promise<void> {
  const script: ScriptOutput = new ScriptOutput();
  const options = parseFlags(script);
  let server: UdpServer | undefined;
  // Listening for signals before saying "listening": whoever reads that may stop us at once.
  const shutdown = async (signal: Deno.Signal) => {
    clearInterval(drops);
    await server?.close();
    await printer.close();
    script.stderr.line(summary(signal, server, printer));
    Deno.exit(0);
  };
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    Deno.addSignalListener(signal, () => void shutdown(signal));
  }
  // Made after the listeners, synchronously: no signal is handled before they exist.
  // A file never keeps a write waiting: no second thread needed, nor its cost.
  const printer: LinePrinter = writesNeverWait(1) ? new DirectPrinter() : new Printer();
  void printer.ended.then(({ error }) => error && stopPrinting(script, error));
  const drops = reportDrops(script, [
    { count: () => printer.dropped, why: "printing could not keep up" },
    {
      count: () => server?.kernelDrops ?? 0,
      why: "the kernel's receive buffer was full (--rcvbuf makes it bigger)",
    },
  ]);
  // Only to meet a flood with compiled code: a failure there must not stop the server.
  await warmUp().catch(() => 0);
  try {
    server = await startUdpServer((payload) => printer.print(payload), options);
  } catch (error) {
    const where = formatAddress(options.host, options.port);
    script.error(`Cannot listen on ${where}: ${(error as Error).message}`);
    Deno.exit(exitCodeFor(error));
  }
  const { address, port } = server.address;
  print(script, `listening on ${formatAddress(address, port)}`);
  warnIfCapped(script, options.receiveBuffer, server.receiveBuffer);
  if (listenDatagram === undefined) {
    script.error(
      "Receiving through node:dgram, about a quarter as fast as with --unstable-net: add the flag if floods may come",
    );
  }
}

if (import.meta.main) await main();
