#!/usr/bin/env -S deno run --unstable-net --allow-net
/**
 * UDP datagram printer: prints every datagram it receives as one line of
 * text, like the original, but whole (up to 65,507 bytes, not 1,024) and
 * unable to drive the terminal.
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
  describeError,
  exitCodeFor,
  formatAddress,
  inAnyCidr,
  MAX_DATAGRAM_SIZE,
  parseCidr,
  parseHost,
  parsePort,
  ScriptOutput,
} from "./protocol.ts";

const decoder = new TextDecoder();
// C0 and C1 controls, DEL, line and paragraph separators, and bidirectional
// overrides: everything that could move the cursor or reorder the line.
// deno-lint-ignore no-control-regex
const UNSAFE = /[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;
const NAMED: Record<string, string> = { "\n": "\\n", "\r": "\\r", "\t": "\\t" };

/**
 * Turns a datagram into one printable line: UTF-8 decoded with invalid bytes
 * replaced by U+FFFD, control characters escaped as `\n`, `\x1b`, `\u202e`.
 *
 * @param bytes The datagram's payload.
 * @returns The line, without a newline.
 */
export function formatDatagram(bytes: Uint8Array): string {
  return decoder.decode(bytes).replace(UNSAFE, (c) => {
    const code = c.charCodeAt(0);
    return NAMED[c] ??
      (code <= 0xff ? `\\x${code.toString(16).padStart(2, "0")}` : `\\u${code.toString(16)}`);
  });
}

const encoder = new TextEncoder();

function isPrintableAscii(bytes: Uint8Array): boolean {
  for (let i = 0; i < bytes.length; i++) {
    if (bytes[i] < 0x20 || bytes[i] > 0x7e) return false;
  }
  return true;
}

/**
 * Collects printed lines in one buffer, so that a flood costs one write per
 * burst rather than one per datagram. Printable ASCII, the common case, is
 * copied as is; anything else goes through {@linkcode formatDatagram}.
 */
export class LineBatch {
  // A datagram prints as at most 4 bytes a byte (`\x1b`), plus the newline.
  readonly #buffer = new Uint8Array(4 * 65_536 + 65_536);
  readonly #write: (lines: Uint8Array) => void;
  #length = 0;

  /** @param write Takes the lines gathered so far, valid only during the call. */
  constructor(write: (lines: Uint8Array) => void) {
    this.#write = write;
  }

  /** Bytes waiting to be written. */
  get length(): number {
    return this.#length;
  }

  /**
   * Adds one datagram as one line.
   *
   * @param payload The datagram's payload.
   */
  add(payload: Uint8Array): void {
    if (this.#length + 4 * payload.length + 1 > this.#buffer.length) this.flush();
    if (isPrintableAscii(payload)) {
      this.#buffer.set(payload, this.#length);
      this.#length += payload.length;
    } else {
      this.#length += encoder.encodeInto(
        formatDatagram(payload),
        this.#buffer.subarray(this.#length),
      ).written;
    }
    this.#buffer[this.#length++] = 0x0a;
  }

  /** Writes what was gathered. */
  flush(): void {
    if (this.#length === 0) return;
    const lines = this.#buffer.subarray(0, this.#length);
    this.#length = 0;
    this.#write(lines);
  }
}

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
}

/** A running UDP server. */
export interface UdpServer {
  /** The address actually bound, with the real port. */
  readonly address: { address: string; port: number };
  /** Datagrams printed so far. */
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

/**
 * Binds a UDP socket and calls `onDatagram` with every payload. It never
 * replies to anyone.
 *
 * @param onDatagram Called with each datagram's payload, valid only during
 * the call.
 * @param options Address and port.
 * @returns The running server.
 * @throws {Deno.errors.NotCapable} Without net permission for the address.
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
  const count = (payload: Uint8Array, from: string) => {
    if (options.allow && !inAnyCidr(options.allow, from)) {
      dropped++;
      return;
    }
    received++;
    onDatagram(payload);
  };
  if (listenDatagram !== undefined) {
    const listener = listenDatagram({ transport: "udp", hostname: host, port });
    const buffer = new Uint8Array(RECEIVE_BUFFER_SIZE);
    let closed = false;
    const receiving = (async () => {
      while (!closed) {
        try {
          const [payload, from] = await listener.receive(buffer);
          count(payload, (from as Deno.NetAddr).hostname);
        } catch (error) {
          // Closing interrupts the pending receive; other errors concern one datagram.
          if (closed || error instanceof Deno.errors.BadResource) return;
        }
      }
    })();
    const { hostname, port: boundPort } = listener.addr as Deno.NetAddr;
    return {
      address: { address: hostname, port: boundPort },
      get received() {
        return received;
      },
      get dropped() {
        return dropped;
      },
      async close() {
        closed = true;
        listener.close();
        await receiving;
      },
    };
  }
  const socket = dgram.createSocket(host.includes(":") ? "udp6" : "udp4");
  socket.on(
    "message",
    (payload: Uint8Array, from: { address: string }) => count(payload, from.address),
  );
  return await new Promise((resolve, reject) => {
    socket.once("error", reject);
    socket.bind(port, host, () => {
      socket.off("error", reject);
      resolve({
        address: socket.address(),
        get received() {
          return received;
        },
        get dropped() {
          return dropped;
        },
        close: () => new Promise<void>((done) => socket.close(() => done())),
      });
    });
  });
}

const USAGE = `Usage: deno run --unstable-net --allow-net udp_server.ts [options]

Prints every UDP datagram received as one line: UTF-8 text as is, invalid
bytes as U+FFFD, control characters escaped (\\n, \\x1b, ...).

--unstable-net (set by deno.json inside the project) lets it receive through
Deno.listenDatagram, about four times as fast as through node:dgram, which it
falls back on without the flag.

Options:
  --host HOST   address to listen on (default ${DEFAULT_LISTEN_HOST})
  --port PORT   port to listen on, 0 for any free port (default ${DEFAULT_PORT})
  --allow CIDR  print only datagrams from this block, such as 10.0.0.0/8;
                repeatable (default: from anywhere)
  -h, --help    show this help

Exit status: 0 after SIGINT/SIGTERM, 1 on a runtime error, 2 on a usage error.
Datagrams up to ${MAX_DATAGRAM_SIZE} bytes are printed whole.`;

async function main(): Promise<void> {
  const script: ScriptOutput = new ScriptOutput();
  const stderr = script.stderr;
  /** Writes to stdout, which is what this server is for: it stops when it cannot. */
  const print = (text: Uint8Array | string) => {
    const bytes = typeof text === "string" ? encoder.encode(`${text}\n`) : text;
    try {
      for (let offset = 0; offset < bytes.length;) {
        offset += Deno.stdout.writeSync(bytes.subarray(offset));
      }
    } catch (error) {
      // The reader went away (`| head`): nothing left to print to.
      if (error instanceof Deno.errors.BrokenPipe) Deno.exit(0);
      script.error(`Cannot print to stdout: ${describeError(error)}`);
      Deno.exit(1);
    }
  };
  let host: string;
  let port: number;
  let allow: Cidr[] | undefined;
  try {
    const { values } = parseArgs({
      args: Deno.args,
      options: {
        host: { type: "string", default: DEFAULT_LISTEN_HOST },
        port: { type: "string", default: String(DEFAULT_PORT) },
        allow: { type: "string", multiple: true },
        help: { type: "boolean", short: "h", default: false },
      },
    });
    if (values.help) {
      print(USAGE);
      Deno.exit(0);
    }
    host = parseHost(values.host);
    port = parsePort(values.port);
    allow = values.allow?.map(parseCidr);
  } catch (error) {
    script.usage(error);
  }

  const batch = new LineBatch(print);
  let flushTimer: ReturnType<typeof setTimeout> | undefined;
  const flush = () => {
    clearTimeout(flushTimer);
    flushTimer = undefined;
    batch.flush();
  };
  let server: UdpServer;
  try {
    server = await startUdpServer((payload) => {
      batch.add(payload);
      if (batch.length >= 65_536) flush();
      else flushTimer ??= setTimeout(flush, 5);
    }, { host, port, allow });
  } catch (error) {
    script.error(
      `Cannot listen on ${formatAddress(host, port)}: ${(error as Error).message}`,
    );
    Deno.exit(exitCodeFor(error));
  }
  const { address, port: boundPort } = server.address;
  print(`listening on ${formatAddress(address, boundPort)}`);
  if (listenDatagram === undefined) {
    script.error(
      "Receiving through node:dgram, about a quarter as fast as with --unstable-net: add the flag if floods may come",
    );
  }

  const shutdown = async (signal: Deno.Signal) => {
    await server.close();
    flush();
    const dropped = server.dropped > 0 ? ` (${server.dropped} dropped by --allow)` : "";
    stderr.line(`${signal}: stopped after ${counted(server.received, "datagram")}${dropped}`);
    Deno.exit(0);
  };
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    Deno.addSignalListener(signal, () => void shutdown(signal));
  }
}

if (import.meta.main) await main();
