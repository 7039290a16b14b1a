#!/usr/bin/env -S deno run --v8-flags=--max-semi-space-size=2 --allow-net --allow-read=uploads --allow-write=uploads
/**
 * TCP image receiver: accepts frames from `client.ts` or the original Python
 * client and saves each file complete under its final name, or not at all.
 *
 * @module
 */
import { parseArgs } from "node:util";
import {
  type Cidr,
  closeQuietly,
  counted,
  DEFAULT_HEADER_TIMEOUT,
  DEFAULT_IDLE_TIMEOUT,
  DEFAULT_LISTEN_HOST,
  DEFAULT_MAX_FRAME_SIZE,
  DEFAULT_PORT,
  describeError,
  descriptorRoom,
  eventLine,
  Folder,
  formatAddress,
  formatBytes,
  formatDuration,
  type FrameReaderOptions,
  FrameSlots,
  inAnyCidr,
  missingFolderPermission,
  parseByteSize,
  parseCidr,
  parseCount,
  parseFrameSize,
  parseHost,
  parsePort,
  parseSeconds,
  ProxiedConn,
  type ProxyHeader,
  QUARANTINE,
  Quarantine,
  readProxyHeader,
  readTokenFile,
  rephrase,
  ScriptOutput,
  type ServerEvent,
  type ServerStats,
  Session,
  type SessionHost,
  withDeadline,
} from "./protocol.ts";

export type { ServerEvent, ServerStats };

const MIB = 1024 ** 2;
/** A default in milliseconds as a flag writes it, in seconds. */
const seconds = (ms: number) => String(ms / 1000);

/**
 * The server's defaults, each written once: the options, the flags and the
 * usage text all read them.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { SERVER_DEFAULTS } from "./server.ts";
 *
 * assert.equal(SERVER_DEFAULTS.port, 9999);
 * ```
 */
export const SERVER_DEFAULTS = {
  host: DEFAULT_LISTEN_HOST,
  port: DEFAULT_PORT,
  out: "uploads",
  maxFrameSize: DEFAULT_MAX_FRAME_SIZE,
  maxConnections: 10_000,
  maxFrames: 256,
  maxFramesPerAddress: 32,
  queueTimeout: 30_000,
  quarantineSize: 256 * MIB,
  headerTimeout: DEFAULT_HEADER_TIMEOUT,
  idleTimeout: DEFAULT_IDLE_TIMEOUT,
  drainTimeout: 10_000,
} as const;

/** Options for {@linkcode startServer}. */
export interface ServerOptions {
  /**
   * Address to listen on.
   * @default {SERVER_DEFAULTS.host}
   */
  host?: string;
  /**
   * Port to listen on; 0 for any free port.
   * @default {SERVER_DEFAULTS.port}
   */
  port?: number;
  /**
   * Folder the files are saved in; created when missing.
   * @default {SERVER_DEFAULTS.out}
   */
  out?: string;
  /**
   * Store each frame body byte for byte as `00000`, `00001`, … like the
   * original server, instead of decoding it to `<name>.<ext>`.
   * @default {false}
   */
  raw?: boolean;
  /**
   * Agree to raw-byte frames when our client offers them: file data as it
   * is, a quarter fewer bytes than base64. Never in `raw` mode.
   * @default {true}
   */
  rawFrames?: boolean;
  /**
   * Largest body length L accepted.
   * @default {SERVER_DEFAULTS.maxFrameSize}
   */
  maxFrameSize?: number;
  /**
   * Sync each file's data, and the folder after linking it, before the
   * acknowledgement, so that an acknowledged file survives a power cut.
   * @default {false}
   */
  fsync?: boolean;
  /**
   * Connections open at once, idle ones included; each idle one holds about
   * 9 KB. Past it, the connection that has gone longest without completing a
   * header is closed for a newcomer; with none idle, newcomers wait in the
   * kernel's backlog.
   * @default {SERVER_DEFAULTS.maxConnections}
   */
  maxConnections?: number;
  /**
   * Frames received at once, each holding up to 1.75 MiB of buffers. Others
   * wait their turn, unread, for up to `queueTimeout`.
   * @default {SERVER_DEFAULTS.maxFrames}
   */
  maxFrames?: number;
  /**
   * Frames received at once from one address, so that one peer cannot take
   * every turn; others from it wait theirs.
   * @default {SERVER_DEFAULTS.maxFramesPerAddress}
   */
  maxFramesPerAddress?: number;
  /**
   * Milliseconds a frame may wait for its turn before it is refused as busy.
   * @default {SERVER_DEFAULTS.queueTimeout}
   */
  queueTimeout?: number;
  /**
   * Bytes of frames kept whole in `.quarantine` inside the output folder
   * when they cannot be saved under a name; past it they are refused.
   * @default {SERVER_DEFAULTS.quarantineSize}
   */
  quarantineSize?: number;
  /**
   * A shared token every connection must present first (a `!` frame, see
   * `encodeToken`); without it nothing is read beyond that frame. The
   * original client cannot send one.
   * @default {undefined}
   */
  token?: string;
  /**
   * Serve TLS with this PEM certificate chain and key instead of plain TCP.
   * @default {undefined}
   */
  tls?: { cert: string; key: string };
  /**
   * Address blocks allowed to connect; others are closed before anything is
   * read or written. Undefined allows everyone.
   * @default {undefined}
   */
  allow?: Cidr[];
  /**
   * Every connection starts with a PROXY protocol header, v1 or v2, as a
   * load balancer sends it (HAProxy's `send-proxy-v2`): the client address
   * it names is the one `allow`, the per-address caps and the events see.
   * A connection without a valid header within `headerTimeout` is refused.
   * Not with `tls`: Deno's TLS listener reads no byte before its handshake.
   * @default {false}
   */
  proxyProtocol?: boolean;
  /**
   * Milliseconds allowed for a frame's header and name to arrive.
   * @default {SERVER_DEFAULTS.headerTimeout}
   */
  headerTimeout?: number;
  /**
   * Milliseconds allowed without a byte while a body arrives, and for an
   * acknowledgement to be taken.
   * @default {SERVER_DEFAULTS.idleTimeout}
   */
  idleTimeout?: number;
  /**
   * Called for everything worth a log line. What it throws is ignored: a log
   * that cannot be written must not fail the frame it reports on.
   * @default {() => {}}
   */
  onEvent?: (event: ServerEvent) => void;
}

/** A running server. */
export interface UploadServer extends AsyncDisposable {
  /** The address actually bound, with the real port. */
  readonly addr: Deno.NetAddr;
  /** Counts so far. */
  readonly stats: Readonly<ServerStats>;
  /**
   * Stops accepting, lets frames in progress finish within `drainMs`, then
   * closes every connection.
   *
   * @param drainMs How long frames in progress may take.
   * @returns The final counts.
   */
  shutdown(drainMs?: number): Promise<ServerStats>;
}

/** How long a connection waits for a frame before its reader gives up a body's buffers. */
const RELEASE_AFTER_MS = 1_000;

/** Listens where the options say, naming the address when that fails. */
function listen(options: ServerOptions): Deno.Listener {
  const address = {
    hostname: options.host ?? SERVER_DEFAULTS.host,
    port: options.port ?? SERVER_DEFAULTS.port,
  };
  try {
    return options.tls ? Deno.listenTls({ ...address, ...options.tls }) : Deno.listen(address);
  } catch (error) {
    // Deno's "Address already in use" does not say which address was asked for.
    const reason = (error as Error).message;
    throw rephrase(
      error,
      `Cannot listen on ${formatAddress(address.hostname, address.port)}: ${reason}`,
    );
  }
}

/** The options' event callback, made safe: a log that fails must not fail the frame. */
function emitter(onEvent: ((event: ServerEvent) => void) | undefined) {
  return (event: ServerEvent) => {
    try {
      onEvent?.(event);
    } catch {
      // The caller's log failed; the frame did not.
    }
  };
}

/** What {@linkcode Server.start} opens before the server runs. */
interface ServerParts {
  emit: (event: ServerEvent) => void;
  listener: Deno.Listener;
  folder: Folder;
  quarantine: Quarantine | undefined;
}

/**
 * The receiver's state in one place: the listener, the folder, the turns,
 * every open connection and the idle ones, oldest first. It accepts and
 * admits connections, runs a {@linkcode Session} for each, sheds idle ones
 * for newcomers, and stops as Go's `http.Server.Shutdown` does.
 */
class Server implements UploadServer, SessionHost {
  readonly folder: Folder;
  readonly quarantine: Quarantine | undefined;
  readonly slots: FrameSlots;
  readonly stats: ServerStats = {
    files: 0,
    duplicates: 0,
    bytes: 0,
    errors: 0,
    received: 0,
    kept: 0,
    shed: 0,
  };
  readonly raw: boolean;
  readonly fsync: boolean;
  readonly rawFrames: boolean;
  readonly token: string | undefined;
  readonly idleTimeout: number;
  readonly emit: (event: ServerEvent) => void;
  readonly #listener: Deno.Listener;
  readonly #allow: Cidr[] | undefined;
  readonly #proxyProtocol: boolean;
  /** Connections whose PROXY header is still awaited, closed if the server stops first. */
  readonly #unproxied = new Set<Deno.Conn>();
  readonly #maxConnections: number;
  readonly #headerTimeout: number;
  readonly #readerOptions: FrameReaderOptions;
  /** Each open connection's session. */
  readonly #sessions = new Map<Deno.Conn, Session>();
  /**
   * Sessions waiting for a frame to start, in the order they began to:
   * those idle longest come first, and are the first closed for a newcomer.
   */
  readonly #idle = new Map<Deno.Conn, Session>();
  readonly #handlers = new Set<Promise<void>>();
  /**
   * Settles when a connection closes or falls idle, either of which can make
   * room; made only while accepting waits for it, as a frame would otherwise
   * pay for a promise no one awaits.
   */
  #changed: PromiseWithResolvers<void> | undefined;
  #stopping = false;
  readonly #sweeping: ReturnType<typeof setInterval>;
  readonly #accepting: Promise<void>;
  #stopped: Promise<ServerStats> | undefined;

  private constructor(parts: ServerParts, options: ServerOptions) {
    this.#listener = parts.listener;
    this.folder = parts.folder;
    this.quarantine = parts.quarantine;
    this.raw = options.raw ?? false;
    this.fsync = options.fsync ?? false;
    this.rawFrames = options.rawFrames ?? true;
    this.token = options.token;
    this.emit = parts.emit;
    this.#allow = options.allow;
    this.#proxyProtocol = options.proxyProtocol ?? false;
    this.#maxConnections = options.maxConnections ?? SERVER_DEFAULTS.maxConnections;
    this.idleTimeout = options.idleTimeout ?? SERVER_DEFAULTS.idleTimeout;
    this.#headerTimeout = options.headerTimeout ?? SERVER_DEFAULTS.headerTimeout;
    this.slots = new FrameSlots({
      max: options.maxFrames ?? SERVER_DEFAULTS.maxFrames,
      perAddress: options.maxFramesPerAddress ?? SERVER_DEFAULTS.maxFramesPerAddress,
      timeout: options.queueTimeout ?? SERVER_DEFAULTS.queueTimeout,
    });
    this.#readerOptions = {
      maxFrameSize: options.maxFrameSize ?? SERVER_DEFAULTS.maxFrameSize,
      headerTimeout: this.#headerTimeout,
      idleTimeout: this.idleTimeout,
      // The sweep bounds an idle connection's wait: a timer each would cost more.
      untimedIdle: true,
    };
    this.#sweeping = setInterval(
      () => this.#sweep(),
      Math.min(RELEASE_AFTER_MS, this.#headerTimeout / 4),
    );
    this.#accepting = this.#accept();
  }

  /** Opens the folder and its quarantine, listens, and starts accepting. */
  static async start(options: ServerOptions): Promise<Server> {
    const emit = emitter(options.onEvent);
    const raw = options.raw ?? false;
    const folder = await Folder.open(options.out ?? SERVER_DEFAULTS.out, {
      raw,
      fsync: options.fsync,
    });
    try {
      if (folder.removed > 0) emit({ type: "cleaned", files: folder.removed });
      if (!folder.hardLinks) emit({ type: "no-hard-links" });
      // A raw server keeps every body it is sent: none needs a quarantine.
      const quota = options.quarantineSize ?? SERVER_DEFAULTS.quarantineSize;
      const quarantine = raw ? undefined : await Quarantine.open(folder, quota);
      return new Server({ emit, listener: listen(options), folder, quarantine }, options);
    } catch (error) {
      folder.close();
      throw error;
    }
  }

  get addr(): Deno.NetAddr {
    return this.#listener.addr as Deno.NetAddr;
  }

  get stopping(): boolean {
    return this.#stopping;
  }

  idle(session: Session): void {
    this.#idle.set(session.conn, session);
    this.#wake();
  }

  active(session: Session): void {
    this.#idle.delete(session.conn);
  }

  shutdown(drainMs: number = SERVER_DEFAULTS.drainTimeout): Promise<ServerStats> {
    return this.#stopped ??= this.#stop(drainMs);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.shutdown();
  }

  #wake(): void {
    this.#changed?.resolve();
    this.#changed = undefined;
  }

  #nextChange(): Promise<void> {
    return (this.#changed ??= Promise.withResolvers()).promise;
  }

  /**
   * Closes the idle connections past the header deadline, so that waiting
   * for a frame needs no timer of its own, and takes the body buffers of
   * those idle for a second, oldest first.
   */
  #sweep(): void {
    const now = performance.now();
    for (const [conn, session] of this.#idle) {
      const waited = now - session.idleSince;
      if (waited < RELEASE_AFTER_MS) break;
      if (waited < this.#headerTimeout) {
        session.reader.release();
        continue;
      }
      this.#idle.delete(conn);
      closeQuietly(conn);
    }
  }

  /**
   * Closes the connection that has gone longest without completing a
   * header, to make room: never one inside a frame or owed an answer.
   *
   * @returns False when no connection is idle.
   */
  #shed(): boolean {
    for (const [conn, session] of this.#idle) {
      this.#idle.delete(conn);
      this.#sessions.delete(conn);
      this.stats.shed++;
      const idleMs = performance.now() - session.idleSince;
      this.emit({ type: "shed", peer: session.peer, idleMs });
      closeQuietly(conn);
      return true;
    }
    return false;
  }

  async #accept(): Promise<void> {
    while (!this.#stopping) {
      let conn: Deno.Conn;
      try {
        conn = await this.#listener.accept();
      } catch (error) {
        if (this.#stopping || error instanceof Deno.errors.BadResource) break;
        // Out of descriptors: an idle connection gives its up, or one closing will.
        if (this.#shed()) continue;
        this.emit({ type: "accept-error", message: (error as Error).message });
        // A connection closing frees one; otherwise try again in 100 ms.
        await withDeadline(this.#nextChange(), 100).catch(() => {});
        continue;
      }
      if (this.#proxyProtocol) void this.#unwrap(conn);
      else await this.#admit(conn);
    }
  }

  /**
   * Reads a connection's PROXY header without holding up accept(), then
   * admits it as the client the header names.
   */
  async #unwrap(conn: Deno.Conn): Promise<void> {
    this.#unproxied.add(conn);
    let header: ProxyHeader | null;
    try {
      header = await readProxyHeader(conn, this.#headerTimeout);
    } catch (error) {
      if (!this.#stopping) {
        const { hostname, port } = conn.remoteAddr as Deno.NetAddr;
        const peer = formatAddress(hostname, port);
        this.emit({ type: "refused", peer, message: describeError(error) });
      }
      closeQuietly(conn);
      return;
    } finally {
      this.#unproxied.delete(conn);
    }
    // A health check: one that only connects, or the balancer's own (LOCAL) from outside --allow.
    const { hostname } = conn.remoteAddr as Deno.NetAddr;
    const own = header?.source === undefined && this.#allow && !inAnyCidr(this.#allow, hostname);
    if (header === null || own) closeQuietly(conn);
    else await this.#admit(new ProxiedConn(conn, header) as unknown as Deno.Conn);
  }

  /**
   * Serves a new connection once there is room for it: at the cap, the
   * connection idle longest is closed for it; with none idle, it waits, and
   * so does accepting, so that the next ones wait in the kernel's backlog.
   */
  async #admit(conn: Deno.Conn): Promise<void> {
    const { hostname, port } = conn.remoteAddr as Deno.NetAddr;
    if (this.#allow && !inAnyCidr(this.#allow, hostname)) {
      const peer = formatAddress(hostname, port);
      this.emit({ type: "refused", peer, message: "Not in an --allow block: dropped" });
      closeQuietly(conn);
      return;
    }
    while (this.#sessions.size >= this.#maxConnections && !this.#stopping && !this.#shed()) {
      await this.#nextChange();
    }
    if (this.#stopping) closeQuietly(conn);
    else this.#track(conn);
  }

  #track(conn: Deno.Conn): void {
    const session = new Session(conn, this, this.#readerOptions);
    this.#sessions.set(conn, session);
    // Answers leave at once; a TLS connection has no such switch.
    if ("setNoDelay" in conn) (conn as Deno.TcpConn).setNoDelay(true);
    const handler = session.run().finally(() => {
      this.#sessions.delete(conn);
      this.#idle.delete(conn);
      this.#wake();
      this.#handlers.delete(handler);
    });
    this.#handlers.add(handler);
  }

  async #stop(drainMs: number): Promise<ServerStats> {
    this.#stopping = true;
    clearInterval(this.#sweeping);
    this.#listener.close();
    this.#wake();
    await this.#accepting;
    for (const conn of this.#unproxied) closeQuietly(conn);
    for (const [conn, session] of this.#sessions) if (!session.busy) closeQuietly(conn);
    await withDeadline(Promise.all(this.#handlers), drainMs).catch(() => {});
    this.slots.close();
    for (const conn of this.#sessions.keys()) closeQuietly(conn);
    await Promise.all(this.#handlers);
    this.folder.close();
    return { ...this.stats };
  }
}

/**
 * Starts listening and serving. Frames are saved to a temporary file in the
 * output folder and hard-linked to their final name only when complete, so a
 * final name never shows a partial file and never replaces another file.
 *
 * @param options Address, folder, limits and the event callback.
 * @returns The running server.
 */
export function startServer(options: ServerOptions = {}): Promise<UploadServer> {
  return Server.start(options);
}

/** The defaults as the flags write them, for the flag parser and the usage text. */
const FLAG = {
  port: String(SERVER_DEFAULTS.port),
  maxFrameSize: `${SERVER_DEFAULTS.maxFrameSize / MIB}M`,
  maxConnections: String(SERVER_DEFAULTS.maxConnections),
  maxFrames: String(SERVER_DEFAULTS.maxFrames),
  perAddress: String(SERVER_DEFAULTS.maxFramesPerAddress),
  queueTimeout: seconds(SERVER_DEFAULTS.queueTimeout),
  quarantineSize: `${SERVER_DEFAULTS.quarantineSize / MIB}M`,
  headerTimeout: seconds(SERVER_DEFAULTS.headerTimeout),
  idleTimeout: seconds(SERVER_DEFAULTS.idleTimeout),
  drainTimeout: seconds(SERVER_DEFAULTS.drainTimeout),
};

const USAGE = `Usage: deno run --allow-net --allow-read=DIR --allow-write=DIR server.ts [options]

Receives images uploaded by client.ts (or the original Python client) and
saves each one as DIR/<name>.<ext>, complete or not at all.

Options:
  --host HOST              address to listen on (default ${SERVER_DEFAULTS.host})
  --port PORT              port to listen on, 0 for any free port (default ${FLAG.port})
  --out DIR                folder to save files in (default ${SERVER_DEFAULTS.out})
  --raw                    store each frame body as DIR/00000, 00001, ... like
                           the original server, instead of decoding it; keeps
                           no names, so it answers no client --resume queries
  --fsync                  sync each file and the folder before acknowledging
                           it, so an acknowledged file survives a power cut
  --base64                 take file data only as base64, as the original; by
                           default client.ts may send it as raw bytes
  --max-frame-size SIZE    largest frame body accepted, e.g. 64M (default ${FLAG.maxFrameSize})
  --max-connections N      connections open at once, idle ones included
                           (default ${FLAG.maxConnections}); past it the one idle longest is
                           closed for a newcomer
  --max-frames N           frames received at once (default ${FLAG.maxFrames}); each holds up
                           to 1.75 MiB of buffers; others wait their turn unread
  --max-per-address N      frames received at once from one address (default ${FLAG.perAddress})
  --queue-timeout SEC      time a frame may wait for its turn before it is
                           answered busy (default ${FLAG.queueTimeout})
  --quarantine-size SIZE   frames that arrive whole but cannot be saved under a
                           name are kept as they came in DIR/.quarantine, up to
                           this many bytes (default ${FLAG.quarantineSize})
  --allow CIDR             accept connections only from this block, such as
                           10.0.0.0/8; repeatable (default: from anywhere)
  --token-file FILE        require every connection to present the token on
                           this file's first line (16+ characters; grant
                           --allow-read on it); the original client cannot
  --tls-cert FILE          serve TLS with this PEM certificate chain (needs
                           --tls-key, and --allow-read for both files)
  --tls-key FILE           the certificate's PEM private key
  --proxy-protocol         every connection starts with a PROXY header (v1 or
                           v2), as HAProxy's send-proxy-v2 sends it; its client
                           address is the one --allow, the caps and the log
                           see; let only the balancer reach the port
  --header-timeout SEC     time allowed for a frame header to arrive (default ${FLAG.headerTimeout})
  --idle-timeout SEC       time allowed without data inside a frame (default ${FLAG.idleTimeout})
  --drain-timeout SEC      on SIGINT/SIGTERM, time frames in progress may
                           take to finish (default ${FLAG.drainTimeout})
  -q, --quiet              no line per saved file
  -h, --help               show this help

Exit status: 0 after a clean stop, 1 on a runtime error or when stdout could
not be written (it serves on without it), 2 on a usage error.`;

/** Reads a shared token: the file's first line, at least 16 characters. */
async function readToken(path: string): Promise<string> {
  const token = await readTokenFile(path);
  if (token.length < 16) {
    throw new RangeError(
      `Token too short: ${path} holds ${token.length} characters, want 16 or more`,
    );
  }
  return token;
}

/** The TLS files named on the command line: both or neither, and not behind a PROXY header. */
function tlsFiles(
  cert: string | undefined,
  key: string | undefined,
  proxyProtocol: boolean,
): { cert: string; key: string } | undefined {
  if (cert === undefined && key === undefined) return undefined;
  if (cert === undefined || key === undefined) {
    throw new TypeError("Missing TLS file: --tls-cert and --tls-key go together");
  }
  if (proxyProtocol) {
    throw new TypeError(
      "Cannot serve TLS with --proxy-protocol: let the balancer end TLS, or drop --proxy-protocol",
    );
  }
  return { cert, key };
}

/**
 * Lowers `--max-connections` to what the descriptor limit allows, keeping
 * room for the files frames are saved to, and says so: a server that ran out
 * would fail its frames rather than shed idle connections.
 */
function fitDescriptorLimit(command: ServerCommand, script: ScriptOutput): void {
  const [out, connections, frames] = [command.out, command.maxConnections, command.maxFrames];
  const want = connections + frames + 16;
  try {
    Deno.mkdirSync(out, { recursive: true });
  } catch {
    return; // startServer() says why.
  }
  const room = descriptorRoom(out, want);
  if (room >= want) return;
  const fit = Math.max(1, room - Math.min(frames + 16, Math.floor(room / 2)));
  script.error(
    `The descriptor limit allows ${room} more open files, too few for --max-connections ${connections}: holding at most ${fit} connections (raise it with ulimit -n)`,
  );
  command.maxConnections = fit;
}

/** What the command line asks of the server, beyond {@linkcode ServerOptions}. */
interface ServerCommand extends ServerOptions {
  out: string;
  maxConnections: number;
  maxFrames: number;
  quiet: boolean;
  drainTimeout: number;
  tlsFiles?: { cert: string; key: string };
  tokenFile?: string;
}

/**
 * Turns the command line into the server's options.
 *
 * @returns The options, or `"help"` when the usage text was asked for.
 * @throws {TypeError | RangeError} Naming the flag at fault.
 */
function parseServerArgs(args: string[]): ServerCommand | "help" {
  const { values } = parseArgs({
    args,
    options: {
      host: { type: "string", default: SERVER_DEFAULTS.host },
      port: { type: "string", default: FLAG.port },
      out: { type: "string", default: SERVER_DEFAULTS.out },
      raw: { type: "boolean", default: false },
      fsync: { type: "boolean", default: false },
      base64: { type: "boolean", default: false },
      "max-frame-size": { type: "string", default: FLAG.maxFrameSize },
      "max-connections": { type: "string", default: FLAG.maxConnections },
      "max-frames": { type: "string", default: FLAG.maxFrames },
      "max-per-address": { type: "string", default: FLAG.perAddress },
      "queue-timeout": { type: "string", default: FLAG.queueTimeout },
      "quarantine-size": { type: "string", default: FLAG.quarantineSize },
      allow: { type: "string", multiple: true },
      "token-file": { type: "string" },
      "tls-cert": { type: "string" },
      "tls-key": { type: "string" },
      "proxy-protocol": { type: "boolean", default: false },
      "header-timeout": { type: "string", default: FLAG.headerTimeout },
      "idle-timeout": { type: "string", default: FLAG.idleTimeout },
      "drain-timeout": { type: "string", default: FLAG.drainTimeout },
      quiet: { type: "boolean", short: "q", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) return "help";
  return {
    host: parseHost(values.host),
    port: parsePort(values.port),
    out: values.out,
    raw: values.raw,
    fsync: values.fsync,
    rawFrames: !values.base64,
    maxFrameSize: parseFrameSize(values["max-frame-size"]),
    maxConnections: parseCount(values["max-connections"], "--max-connections"),
    maxFrames: parseCount(values["max-frames"], "--max-frames"),
    maxFramesPerAddress: parseCount(values["max-per-address"], "--max-per-address"),
    queueTimeout: parseSeconds(values["queue-timeout"], "--queue-timeout"),
    quarantineSize: parseByteSize(values["quarantine-size"]),
    allow: values.allow?.map(parseCidr),
    tlsFiles: tlsFiles(values["tls-cert"], values["tls-key"], values["proxy-protocol"]),
    proxyProtocol: values["proxy-protocol"],
    tokenFile: values["token-file"],
    headerTimeout: parseSeconds(values["header-timeout"], "--header-timeout"),
    idleTimeout: parseSeconds(values["idle-timeout"], "--idle-timeout"),
    drainTimeout: parseSeconds(values["drain-timeout"], "--drain-timeout", 0),
    quiet: values.quiet,
  };
}

/** Starts the server the command asks for: reads its TLS files and token first. */
async function startFromCommand(command: ServerCommand, script: ScriptOutput) {
  const tls = command.tlsFiles && {
    cert: await Deno.readTextFile(command.tlsFiles.cert),
    key: await Deno.readTextFile(command.tlsFiles.key),
  };
  const token = command.tokenFile && await readToken(command.tokenFile);
  return await startServer({
    ...command,
    tls,
    token,
    onEvent(event) {
      const line = eventLine(event, command.quiet);
      if (line) script[line.stream].line(line.text);
    },
  });
}

/** Stops on SIGINT or SIGTERM, letting frames in progress finish; a second signal stops at once. */
function stopOnSignals(server: UploadServer, command: ServerCommand, script: ScriptOutput) {
  const started = performance.now();
  let signalled = false;
  const shutdown = async (signal: Deno.Signal) => {
    if (signalled) {
      script.stderr.line(`${signal} again: stopping without waiting for frames in progress`);
      Deno.exit(1);
    }
    signalled = true;
    script.stderr.line(`${signal}: finishing frames in progress (again to stop at once)`);
    const stats = await server.shutdown(command.drainTimeout);
    const took = formatDuration(performance.now() - started);
    script.stdout.line(
      `stopped: ${counted(stats.files, "file")} (${
        formatBytes(stats.bytes)
      }), ${stats.duplicates} already had, ${
        counted(stats.errors, "error")
      } (${stats.kept} kept in ${QUARANTINE}), in ${took}`,
    );
    script.exit(true);
  };
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    Deno.addSignalListener(signal, () => void shutdown(signal));
  }
}

async function main(): Promise<void> {
  const script: ScriptOutput = new ScriptOutput();
  const command = script.command(() => parseServerArgs(Deno.args), USAGE);
  const missing = await missingFolderPermission(command.out);
  if (missing) {
    script.error(missing);
    Deno.exit(2);
  }
  script.requireMinDeno();
  fitDescriptorLimit(command, script);
  let server: UploadServer;
  try {
    server = await startFromCommand(command, script);
  } catch (error) {
    // A missing permission or an unusable token or TLS file is the command line's fault.
    script.fail(error);
  }
  const { hostname, port } = server.addr;
  script.stdout.line(
    `listening on ${formatAddress(hostname, port)}, saving to ${command.out}${
      command.raw ? " (raw)" : ""
    }`,
  );
  stopOnSignals(server, command, script);
}

if (import.meta.main) await main();
