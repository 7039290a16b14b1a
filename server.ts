#!/usr/bin/env -S deno run --v8-flags=--max-semi-space-size=2 --allow-net --allow-read=uploads --allow-write=uploads
/**
 * TCP image receiver: accepts frames from `client.ts` or the original Python
 * client and saves each file complete under its final name, or not at all.
 *
 * @module
 */
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { crc32 } from "node:zlib";
import { timingSafeEqual } from "node:crypto";
import {
  type Cidr,
  closeQuietly,
  concatBytes,
  counted,
  crc32OfFile,
  DEFAULT_MAX_FRAME_SIZE,
  describeError,
  encodeAck,
  encodeHave,
  EXTENSIONS,
  formatAddress,
  formatBytes,
  formatDuration,
  type FrameHead,
  FrameReader,
  HEADER_SIZE,
  type Held,
  inAnyCidr,
  isOlderThanMinDeno,
  isQuery,
  isToken,
  LogOutput,
  MIN_DENO,
  NAME_SIZE,
  parseByteSize,
  parseCidr,
  parseCount,
  parseHost,
  parseName,
  parsePort,
  parseQuery,
  parseSeconds,
  ProtocolError,
  readTokenFile,
  sniffExtension,
  withDeadline,
  writeAll,
} from "./protocol.ts";

/** Options for {@linkcode startServer}. */
export interface ServerOptions {
  /**
   * Address to listen on.
   * @default {"0.0.0.0"}
   */
  host?: string;
  /**
   * Port to listen on; 0 for any free port.
   * @default {9999}
   */
  port?: number;
  /**
   * Folder the files are saved in; created when missing.
   * @default {"uploads"}
   */
  out?: string;
  /**
   * Store each frame body byte for byte as `00000`, `00001`, … like the
   * original server, instead of decoding it to `<name>.<ext>`.
   * @default {false}
   */
  raw?: boolean;
  /**
   * Largest body length L accepted.
   * @default {DEFAULT_MAX_FRAME_SIZE}
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
   * @default {10_000}
   */
  maxConnections?: number;
  /**
   * Frames received at once, each holding up to 1.75 MiB of buffers. Others
   * wait their turn, unread, for up to `queueTimeout`.
   * @default {256}
   */
  maxFrames?: number;
  /**
   * Frames received at once from one address, so that one peer cannot take
   * every turn; others from it wait theirs.
   * @default {32}
   */
  maxFramesPerAddress?: number;
  /**
   * Milliseconds a frame may wait for its turn before it is refused as busy.
   * @default {30_000}
   */
  queueTimeout?: number;
  /**
   * Bytes of frames kept whole in `.quarantine` inside the output folder
   * when they cannot be saved under a name; past it they are refused.
   * @default {268_435_456}
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
   * Milliseconds allowed for a frame's header and name to arrive.
   * @default {30_000}
   */
  headerTimeout?: number;
  /**
   * Milliseconds allowed without a byte while a body arrives, and for an
   * acknowledgement to be taken.
   * @default {60_000}
   */
  idleTimeout?: number;
  /**
   * Called for everything worth a log line. What it throws is ignored: a log
   * that cannot be written must not fail the frame it reports on.
   * @default {() => {}}
   */
  onEvent?: (event: ServerEvent) => void;
}

/** Something that happened on the server, for the log. */
export type ServerEvent =
  | {
    type: "saved";
    peer: string;
    file: string;
    bytes: number;
    ms: number;
    /** The same content was already saved under this name: nothing written. */
    duplicate: boolean;
  }
  | { type: "rejected"; peer: string; message: string }
  | {
    /** A whole frame that could not be saved under a name, kept as it arrived. */
    type: "kept";
    peer: string;
    /** Where, inside the output folder. */
    file: string;
    /** Why it could not be saved. */
    message: string;
  }
  | { type: "refused"; peer: string; message: string }
  | {
    /** An idle connection closed to make room for a newcomer. */
    type: "shed";
    peer: string;
    /** How long it had waited without completing a header. */
    idleMs: number;
  }
  | { type: "accept-error"; message: string }
  | {
    type: "cleaned";
    /** Temporary files left by an earlier run that stopped mid-frame, removed. */
    files: number;
  }
  | {
    /**
     * The folder's file system makes no hard links (FAT and exFAT, as on most
     * USB drives): each file is renamed into place once its name is found free.
     */
    type: "no-hard-links";
  };

/** Counts kept while the server runs. */
export interface ServerStats {
  /** Files saved, duplicates included. */
  files: number;
  /** Of those, identical re-uploads that wrote nothing. */
  duplicates: number;
  /** Bytes of file data received in saved files. */
  bytes: number;
  /** Frames and connections that failed. */
  errors: number;
  /** Bytes read from clients. */
  received: number;
  /** Of the frames that failed, those kept in the quarantine. */
  kept: number;
  /** Idle connections closed to make room for newcomers. */
  shed: number;
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

/** Connections a server keeps open at most by default, idle ones included. */
const DEFAULT_MAX_CONNECTIONS = 10_000;
/** Frames a server receives at once by default. */
const DEFAULT_MAX_FRAMES = 256;
/** Bytes of unsaveable frames a server keeps by default, as the flag writes it. */
const DEFAULT_QUARANTINE_SIZE = "256M";

const TEMP_PREFIX = ".upload-";
const TEMP_SUFFIX = ".part";

function peerOf(conn: Deno.Conn): string {
  const addr = conn.remoteAddr as Deno.NetAddr;
  return formatAddress(addr.hostname, addr.port);
}

function joinPath(folder: string, name: string): string {
  return folder.endsWith("/") ? folder + name : `${folder}/${name}`;
}

/** A fresh temporary file name in the folder, of the kind a restart removes. */
function temporaryPath(folder: string): string {
  return joinPath(folder, `${TEMP_PREFIX}${crypto.randomUUID()}${TEMP_SUFFIX}`);
}

function rawName(index: number): string {
  return String(index).padStart(5, "0");
}

/** A `--raw` server's answer to a query: it cannot tell which files it holds. */
const RAW_QUERY_REFUSAL = "Cannot answer a query: a --raw server keeps no names";

/** Names a server keeps in memory at most; past that it looks each query up on disk. */
const MAX_INDEXED_NAMES = 100_000;

/**
 * Adds a name to those kept, or gives up the list once it passes
 * {@linkcode MAX_INDEXED_NAMES}: a list missing names would answer `NONE` for them.
 */
function keepName(names: Set<string> | undefined, name: string): Set<string> | undefined {
  names?.add(name);
  return names !== undefined && names.size > MAX_INDEXED_NAMES ? undefined : names;
}

/** What a server finds in its folder at start. */
interface FolderScan {
  /** Temporary files an earlier run left, now removed. */
  removed: number;
  /**
   * The names held under a saved file's extension; `undefined` in raw mode,
   * or when there were more than {@linkcode MAX_INDEXED_NAMES}.
   */
  names?: Set<string>;
  /** In raw mode, the first free number after the numbered files there. */
  nextRawIndex: number;
}

/**
 * Lists the folder once: removes the temporary files an earlier run left when
 * it was killed in the middle of a frame (one server per folder: another's
 * would be removed too), and notes what a raw or a decoding server needs.
 *
 * @param out The server's folder.
 * @param raw Whether the server stores numbered bodies rather than named files.
 * @returns What it found.
 */
async function scanFolder(out: string, raw: boolean): Promise<FolderScan> {
  const scan: FolderScan = { removed: 0, names: raw ? undefined : new Set(), nextRawIndex: 0 };
  for await (const { isFile, name } of Deno.readDir(out)) {
    if (isFile && name.startsWith(TEMP_PREFIX) && name.endsWith(TEMP_SUFFIX)) {
      await Deno.remove(joinPath(out, name));
      scan.removed++;
    } else if (raw) {
      if (/^[0-9]{5,15}$/.test(name)) {
        scan.nextRawIndex = Math.max(scan.nextRawIndex, Number(name) + 1);
      }
    } else if (scan.names !== undefined) {
      const dot = name.lastIndexOf(".");
      if (dot < 1 || !EXTENSIONS.includes(name.slice(dot + 1))) continue;
      scan.names = keepName(scan.names, name.slice(0, dot));
    }
  }
  return scan;
}

/**
 * Creates a temporary file, open for writing or, given its data, written
 * whole and closed in one call. Running out of descriptors passes as
 * connections close, so the answer says busy, which a client takes as worth
 * another try.
 */
function createTemporaryFile(path: string): Deno.FsFile;
function createTemporaryFile(path: string, data: Uint8Array): void;
function createTemporaryFile(path: string, data?: Uint8Array): Deno.FsFile | void {
  try {
    if (data === undefined) return Deno.openSync(path, { write: true, createNew: true });
    Deno.writeFileSync(path, data, { createNew: true });
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (code !== "EMFILE" && code !== "ENFILE") throw error;
    throw new Deno.errors.Busy(`Server busy: ${osReason(error) ?? "too many open files"}`, {
      cause: error,
    });
  }
}

/**
 * The errors of a hard link on a file system that makes none: FAT or exFAT
 * (EPERM), some network shares (EOPNOTSUPP), some FUSE mounts (ENOSYS).
 */
const NO_HARD_LINKS = ["EPERM", "ENOTSUP", "EOPNOTSUPP", "ENOSYS"];

/**
 * Tells whether the folder's file system makes hard links, by making one
 * between two temporary files (which a restart would remove if left).
 */
function makesHardLinks(out: string): boolean {
  const [probe, link] = [temporaryPath(out), temporaryPath(out)];
  try {
    Deno.writeFileSync(probe, new Uint8Array(), { createNew: true });
  } catch (error) {
    // A folder that takes no file (read-only, full) says so for each frame instead.
    if (error instanceof Deno.errors.NotCapable) throw error;
    return true;
  }
  try {
    Deno.linkSync(probe, link);
    Deno.removeSync(link);
    return true;
  } catch (error) {
    if (NO_HARD_LINKS.includes((error as { code?: string }).code ?? "")) return false;
    throw error;
  } finally {
    Deno.removeSync(probe);
  }
}

/**
 * Renames a file to a name that must be free, where no hard link can keep
 * the rename from replacing a file. Only another program could take the name
 * between the look and the rename: one server per folder, and this server's
 * own commits never interleave, as neither call waits.
 */
function renameToFreeName(from: string, to: string): void {
  try {
    Deno.lstatSync(to);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
    Deno.renameSync(from, to);
    return;
  }
  throw new Deno.errors.AlreadyExists(`File exists: ${to}`);
}

/** Makes a folder's entries durable, as a new link is only once its folder is synced. */
async function syncFolder(folder: string): Promise<void> {
  using handle = await Deno.open(folder);
  await handle.sync();
}

/** Chunks of the two files {@linkcode sameContent} compares, read synchronously and so never shared. */
const chunkA = new Uint8Array(262_144);
const chunkB = new Uint8Array(262_144);
const wordsA = new Uint32Array(chunkA.buffer);
const wordsB = new Uint32Array(chunkB.buffer);

/**
 * Compares two files byte for byte, reading both in bounded chunks. Reads are
 * synchronous, into buffers kept for the purpose: re-sending a set the server
 * holds compares every file, and a fresh buffer and an asynchronous read each
 * cost more than the comparison.
 */
function sameContent(pathA: string, pathB: string): boolean {
  using fileA = Deno.openSync(pathA);
  using fileB = Deno.openSync(pathB);
  if (fileA.statSync().size !== fileB.statSync().size) return false;
  for (;;) {
    const n = fileA.readSync(chunkA);
    if (n === null) return true;
    for (let filled = 0; filled < n;) {
      const m = fileB.readSync(chunkB.subarray(filled, n));
      if (m === null) return false;
      filled += m;
    }
    const words = n >>> 2;
    for (let i = 0; i < words; i++) if (wordsA[i] !== wordsB[i]) return false;
    for (let i = words << 2; i < n; i++) if (chunkA[i] !== chunkB[i]) return false;
  }
}

/** A frame waiting for its turn in {@linkcode FrameSlots}. */
interface Waiter {
  /** Arrival order: the oldest waiter with room goes first. */
  order: number;
  resolve: () => void;
  reject: (error: Error) => void;
  timer: ReturnType<typeof setTimeout>;
}

/** Caps and deadline of {@linkcode FrameSlots}; the server passes its own defaults. */
interface FrameSlotsOptions {
  /** Frames received at once. */
  max: number;
  /** Frames received at once from one address. */
  perAddress: number;
  /** Milliseconds a frame may wait for its turn. */
  timeout: number;
}

/**
 * The right to receive a frame's body: at most `max` frames at once, and at
 * most `perAddress` from one address, each holding up to 1.75 MiB of buffers.
 * A frame over a cap waits, its body unread, first come first served, as a
 * request waits in HAProxy's queue for a server under its `maxconn`; past the
 * deadline (HAProxy's `timeout queue`) it is refused as busy. Waiting, a
 * connection holds no body buffer, and its client is held back by TCP.
 */
class FrameSlots {
  readonly #max: number;
  readonly #perAddress: number;
  readonly #timeout: number;
  #active = 0;
  readonly #byAddress = new Map<string, number>();
  /** Frames waiting, by address, each list oldest first. */
  readonly #waiting = new Map<string, Waiter[]>();
  #arrivals = 0;

  constructor(options: FrameSlotsOptions) {
    this.#max = options.max;
    this.#perAddress = options.perAddress;
    this.#timeout = options.timeout;
  }

  /**
   * Takes a turn for a frame from `address`.
   *
   * @returns Nothing when there is room at once, so that a free turn costs no
   * wait; otherwise a promise that settles with the turn, or rejects with
   * `Deno.errors.Busy` after the deadline.
   */
  take(address: string): Promise<void> | undefined {
    if (this.#hasRoom(address)) {
      this.#grant(address);
      return undefined;
    }
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    const waiter: Waiter = {
      order: this.#arrivals++,
      resolve,
      reject,
      timer: setTimeout(() => {
        this.#remove(address, waiter);
        reject(new Deno.errors.Busy(this.#busyMessage(address)));
      }, this.#timeout),
    };
    const list = this.#waiting.get(address);
    if (list) list.push(waiter);
    else this.#waiting.set(address, [waiter]);
    return promise;
  }

  /** Gives back the turn of a frame from `address`, to the oldest frame that may have it. */
  give(address: string): void {
    this.#active--;
    const left = this.#byAddress.get(address)! - 1;
    if (left === 0) this.#byAddress.delete(address);
    else this.#byAddress.set(address, left);
    while (this.#active < this.#max) {
      let next: string | undefined;
      for (const [waiting, list] of this.#waiting) {
        if (!this.#hasRoom(waiting)) continue;
        if (next === undefined || list[0].order < this.#waiting.get(next)![0].order) next = waiting;
      }
      if (next === undefined) return;
      const waiter = this.#waiting.get(next)![0];
      this.#remove(next, waiter);
      this.#grant(next);
      waiter.resolve();
    }
  }

  /** Turns every waiting frame away: the server is stopping, and their drain time is over. */
  close(): void {
    for (const [address, list] of this.#waiting) {
      for (const waiter of [...list]) {
        this.#remove(address, waiter);
        waiter.reject(new Deno.errors.Interrupted("Server stopping"));
      }
    }
  }

  #hasRoom(address: string): boolean {
    return this.#active < this.#max && (this.#byAddress.get(address) ?? 0) < this.#perAddress;
  }

  #grant(address: string): void {
    this.#active++;
    this.#byAddress.set(address, (this.#byAddress.get(address) ?? 0) + 1);
  }

  #remove(address: string, waiter: Waiter): void {
    clearTimeout(waiter.timer);
    const list = this.#waiting.get(address)!;
    list.splice(list.indexOf(waiter), 1);
    if (list.length === 0) this.#waiting.delete(address);
  }

  #busyMessage(address: string): string {
    const full = this.#active >= this.#max
      ? counted(this.#max, "frame")
      : `${counted(this.#perAddress, "frame")} from ${address}`;
    return `Server busy: no turn within ${formatDuration(this.#timeout)}: ${full} in progress`;
  }
}

const encoder = new TextEncoder();

/** The hidden folder inside the output folder that keeps frames no name could be given. */
const QUARANTINE = ".quarantine";

/**
 * Frames that arrived whole but cannot be saved under a name (no name found,
 * a bad name, data that is not base64, a different file of that name), kept
 * byte for byte as they arrived: the original client cannot hear a refusal,
 * so a refusal alone would lose its file. Bounded by a byte quota.
 */
class Quarantine {
  readonly #out: string;
  readonly #quota: number;
  #used: number;

  private constructor(out: string, quota: number, used: number) {
    this.#out = out;
    this.#quota = quota;
    this.#used = used;
  }

  /** Opens the quarantine of a folder, counting what it already holds against the quota. */
  static async open(out: string, quota: number): Promise<Quarantine> {
    let used = 0;
    try {
      for await (const entry of Deno.readDir(joinPath(out, QUARANTINE))) {
        if (entry.isFile) {
          used += (await Deno.lstat(joinPath(out, `${QUARANTINE}/${entry.name}`))).size;
        }
      }
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
    return new Quarantine(out, quota, used);
  }

  /**
   * Keeps a frame as it arrived: its header, its name, the base64 of what
   * was decoded before the frame was refused (in `decodedPath`, if any), and
   * the rest of the body, read from `reader` as it comes.
   *
   * @returns The kept file's path inside the output folder, or `undefined`
   * when the quota has no room for the frame.
   */
  async keep(
    reader: FrameReader,
    head: FrameHead,
    decodedPath: string,
  ): Promise<string | undefined> {
    // What came on the wire, which a name counted in characters makes longer than L.
    const size = HEADER_SIZE + head.nameField.length + head.dataLength;
    if (this.#used + size > this.#quota) return undefined;
    this.#used += size;
    const tempPath = temporaryPath(this.#out);
    try {
      {
        using file = createTemporaryFile(tempPath);
        writeAllSync(file, encoder.encode(String(head.bodyLength).padStart(HEADER_SIZE, "0")));
        writeAllSync(file, head.nameField);
        reencode(decodedPath, file);
        for await (const chunk of reader.raw()) writeAllSync(file, chunk);
      }
      const stamp = new Date().toISOString().replaceAll(":", "-");
      const kept = `${QUARANTINE}/${stamp}-${crypto.randomUUID().slice(0, 8)}.frame`;
      await Deno.mkdir(joinPath(this.#out, QUARANTINE), { recursive: true });
      Deno.renameSync(tempPath, joinPath(this.#out, kept));
      return kept;
    } catch (error) {
      this.#used -= size;
      throw error;
    } finally {
      removeQuietly(tempPath);
    }
  }
}

/** Bytes re-encoded at a time: a multiple of 3, so that no chunk but the last is padded. */
const REENCODE_CHUNK = 3 * 65_536;

/**
 * Writes the base64 of a file into another: the data of a frame as it
 * arrived, since the server decodes only canonical base64, whose encoding
 * gives back the same characters. A missing file writes nothing.
 */
function reencode(path: string, into: Deno.FsFile): void {
  let file: Deno.FsFile;
  try {
    file = Deno.openSync(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return;
    throw error;
  }
  using _ = file;
  const chunk = new Uint8Array(REENCODE_CHUNK);
  for (;;) {
    let filled = 0;
    for (let n; filled < chunk.length && (n = file.readSync(chunk.subarray(filled))) !== null;) {
      filled += n;
    }
    if (filled === 0) return;
    writeAllSync(into, encoder.encode(chunk.subarray(0, filled).toBase64()));
    if (filled < chunk.length) return;
  }
}

/** Removes a file that may not exist. */
function removeQuietly(path: string): void {
  try {
    Deno.removeSync(path);
  } catch {
    // Never created, or already gone.
  }
}

/** Listens where the options say, naming the address when that fails. */
function listen(options: ServerOptions): Deno.Listener {
  const address = { hostname: options.host ?? "0.0.0.0", port: options.port ?? 9999 };
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

/**
 * Starts listening and serving. Frames are saved to a temporary file in the
 * output folder and hard-linked to their final name only when complete, so a
 * final name never shows a partial file and never replaces another file.
 *
 * @param options Address, folder, limits and the event callback.
 * @returns The running server.
 */
export async function startServer(options: ServerOptions = {}): Promise<UploadServer> {
  const raw = options.raw ?? false;
  const fsync = options.fsync ?? false;
  const maxConnections = options.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
  const slots = new FrameSlots({
    max: options.maxFrames ?? DEFAULT_MAX_FRAMES,
    perAddress: options.maxFramesPerAddress ?? 32,
    timeout: options.queueTimeout ?? 30_000,
  });
  const idleTimeout = options.idleTimeout ?? 60_000;
  const headerTimeout = options.headerTimeout ?? 30_000;
  const readerOptions = {
    maxFrameSize: options.maxFrameSize ?? DEFAULT_MAX_FRAME_SIZE,
    headerTimeout,
    idleTimeout,
    // The sweep below bounds an idle connection's wait: a timer each would cost more.
    untimedIdle: true,
  };
  const onEvent = options.onEvent ?? (() => {});
  const emit = (event: ServerEvent) => {
    try {
      onEvent(event);
    } catch {
      // The caller's log failed; the frame did not.
    }
  };
  // An absolute path spares Deno's permission check a getcwd on every file call.
  const out = resolve(options.out ?? "uploads");
  await Deno.mkdir(out, { recursive: true }).catch((error) => {
    // mkdir says "File exists" when a file is in the way, which reads as if all were well.
    if (error instanceof Deno.errors.AlreadyExists) {
      throw new Deno.errors.NotADirectory(`Not a folder: ${out}`, { cause: error });
    }
    throw error;
  });
  // A second server on the folder would take the first one's temporary files
  // for stale ones, and number raw files alike: the lock keeps it out.
  const folderLock = Deno.openSync(out);
  if (!folderLock.tryLockSync(true)) {
    folderLock.close();
    throw new Deno.errors.Busy(`Folder in use: another server is saving to ${out}`);
  }
  let listener: Deno.Listener;
  let rawIndex: number;
  /**
   * The names in the folder at start and those saved since, so that a query
   * for a missing file costs no look-up on disk; `undefined` once there are
   * too many to keep, and in raw mode. A file another program puts there
   * meanwhile is missed, and so sent again: the upload then finds it, and
   * answers that it already had it.
   */
  let savedNames: Set<string> | undefined;
  let hardLinks: boolean;
  let quarantine: Quarantine | undefined;
  try {
    const scanned = await scanFolder(out, raw);
    if (scanned.removed > 0) emit({ type: "cleaned", files: scanned.removed });
    hardLinks = makesHardLinks(out);
    if (!hardLinks) emit({ type: "no-hard-links" });
    savedNames = scanned.names;
    rawIndex = scanned.nextRawIndex;
    // A raw server keeps every body it is sent: none needs a quarantine.
    if (!raw) {
      const quota = options.quarantineSize ?? parseByteSize(DEFAULT_QUARANTINE_SIZE);
      quarantine = await Quarantine.open(out, quota);
    }
    listener = listen(options);
  } catch (error) {
    folderLock.close();
    throw error;
  }
  const stats: ServerStats = {
    files: 0,
    duplicates: 0,
    bytes: 0,
    errors: 0,
    received: 0,
    kept: 0,
    shed: 0,
  };
  /** Each open connection, and what it is doing. */
  const connections = new Map<Deno.Conn, ConnectionState>();
  /**
   * Connections waiting for a frame to start, in the order they began to:
   * those idle longest come first, and are the first closed for a newcomer.
   */
  const idle = new Map<Deno.Conn, ConnectionState>();
  const handlers = new Set<Promise<void>>();
  /**
   * Settles when a connection closes or falls idle, either of which can make
   * room; made only while accepting waits for it, as a frame would otherwise
   * pay for a promise no one awaits.
   */
  let changed: PromiseWithResolvers<void> | undefined;
  const wake = () => {
    changed?.resolve();
    changed = undefined;
  };
  const nextChange = () => (changed ??= Promise.withResolvers()).promise;
  let stopping = false;

  /**
   * Closes the idle connections past the header deadline, so that waiting
   * for a frame needs no timer of its own, and takes the body buffers of
   * those idle for a second, oldest first.
   */
  const sweeping = setInterval(() => {
    const now = performance.now();
    for (const [conn, state] of idle) {
      const waited = now - state.idleSince;
      if (waited < RELEASE_AFTER_MS) break;
      if (waited < headerTimeout) {
        state.reader.release();
        continue;
      }
      idle.delete(conn);
      closeQuietly(conn);
    }
  }, Math.min(RELEASE_AFTER_MS, headerTimeout / 4));

  /**
   * Closes the connection that has gone longest without completing a
   * header, to make room: never one inside a frame or owed an answer.
   *
   * @returns False when no connection is idle.
   */
  function shed(): boolean {
    for (const [conn, { idleSince }] of idle) {
      idle.delete(conn);
      connections.delete(conn);
      stats.shed++;
      emit({ type: "shed", peer: peerOf(conn), idleMs: performance.now() - idleSince });
      closeQuietly(conn);
      return true;
    }
    return false;
  }

  /**
   * Links the finished temporary file to its final name without replacing
   * anything (renames it, where there are no hard links); in raw mode to the
   * next free number.
   */
  async function commit(
    tempPath: string,
    finalName: string | undefined,
  ): Promise<{ file: string; duplicate: boolean }> {
    for (;;) {
      const file = finalName ?? rawName(rawIndex++);
      const path = joinPath(out, file);
      try {
        if (hardLinks) Deno.linkSync(tempPath, path);
        else renameToFreeName(tempPath, path);
        if (fsync) await syncFolder(out);
        return { file, duplicate: false };
      } catch (error) {
        if (!(error instanceof Deno.errors.AlreadyExists)) throw error;
        if (finalName === undefined) continue;
        // Compare only with a regular file: never read through a planted link.
        if (Deno.lstatSync(path).isFile && sameContent(tempPath, path)) {
          return { file, duplicate: true };
        }
        throw new Deno.errors.AlreadyExists(
          `Cannot save ${file}: a different file of that name exists`,
        );
      }
    }
  }

  /** Reads the data of a query or token frame, which is small or refused. */
  async function smallData(reader: FrameReader, head: FrameHead): Promise<Uint8Array> {
    if (head.dataLength > 1368) {
      throw new ProtocolError("size", `Control frame too large: ${head.dataLength} bytes of data`);
    }
    const chunks: Uint8Array[] = [];
    for await (const chunk of reader.data()) chunks.push(chunk.slice());
    return concatBytes(chunks);
  }

  /** Tells whether a token frame carries the server's token (any, when it has none). */
  async function tokenMatches(reader: FrameReader, head: FrameHead): Promise<boolean> {
    const given = await smallData(reader, head);
    if (options.token === undefined) return true;
    const expected = new TextEncoder().encode(options.token);
    return given.length === expected.length && timingSafeEqual(given, expected);
  }

  /** Answers a query: the file saved under that name with that size, if any. */
  async function lookUp(reader: FrameReader, head: FrameHead): Promise<Uint8Array> {
    const query = parseQuery(await smallData(reader, head));
    // NONE would have the client send everything again, stored twice under new numbers.
    if (raw) return encodeAck({ ok: false, message: RAW_QUERY_REFUSAL });
    return encodeHave(heldAs(query));
  }

  /** The file saved under a queried name with the queried size, if any. */
  function heldAs(query: { name: string; bytes: number }): Held | undefined {
    // A name never saved here is missing under every extension: ~5 µs of probes each.
    if (savedNames !== undefined && !savedNames.has(query.name)) return undefined;
    for (const extension of EXTENSIONS) {
      const file = `${query.name}.${extension}`;
      const path = joinPath(out, file);
      // Most names are missing under most extensions: existsSync() costs a
      // third of an lstat that throws.
      if (!existsSync(path)) continue;
      let info: Deno.FileInfo;
      try {
        info = Deno.lstatSync(path);
      } catch {
        continue;
      }
      if (info.isFile && info.size === query.bytes) {
        return { file, bytes: info.size, crc32: crc32OfFile(path) };
      }
    }
    return undefined;
  }

  /**
   * Receives one body into the temporary file and commits it. The caller
   * removes the temporary file, which holds what was decoded if this throws.
   */
  async function receive(reader: FrameReader, head: FrameHead, tempPath: string) {
    const name = raw ? "" : parseName(head.nameField);
    try {
      let bytes = 0;
      let crc = 0;
      const sniffed = new Uint8Array(12);
      if (raw) {
        using file = createTemporaryFile(tempPath);
        writeAllSync(file, head.nameField);
        crc = crc32(head.nameField);
        bytes = head.bodyLength;
        for await (const chunk of reader.raw()) {
          crc = crc32(chunk, crc);
          writeAllSync(file, chunk);
        }
        if (fsync) await file.sync();
      } else {
        let file: Deno.FsFile | undefined;
        try {
          for await (const chunk of reader.data()) {
            if (bytes < sniffed.length) {
              sniffed.set(chunk.subarray(0, sniffed.length - bytes), bytes);
            }
            bytes += chunk.length;
            crc = crc32(chunk, crc);
            // A file that arrived whole costs one call, not an open, a write and a close.
            if (file === undefined && reader.remaining === 0 && !fsync) {
              createTemporaryFile(tempPath, chunk);
            } else {
              file ??= createTemporaryFile(tempPath);
              writeAllSync(file, chunk);
            }
          }
          // An empty body yields no chunk, yet its file must exist all the same.
          if (bytes === 0) file = createTemporaryFile(tempPath);
          // With --fsync every file went through a handle, which the sync needs.
          if (fsync) await file!.sync();
        } finally {
          file?.close();
        }
      }
      const finalName = raw
        ? undefined
        : `${name}.${sniffExtension(sniffed.subarray(0, Math.min(bytes, sniffed.length)))}`;
      const committed = await commit(tempPath, finalName);
      savedNames = keepName(savedNames, name);
      return { ...committed, bytes, crc32: crc };
    } catch (error) {
      const reason = osReason(error);
      if (reason === undefined || isDisconnect(error) || error instanceof Deno.errors.Busy) {
        throw error;
      }
      throw rephrase(error, `Cannot save ${raw ? "the frame" : name}: ${reason}`);
    }
  }

  /**
   * Receives a file frame and answers it. A frame refused for its name or
   * data, or for a different file of its name, is kept in the quarantine
   * when it arrives whole: its client may not hear the refusal.
   */
  async function fileFrame(reader: FrameReader, head: FrameHead, peer: string) {
    const started = performance.now();
    const tempPath = temporaryPath(out);
    try {
      const saved = await receive(reader, head, tempPath);
      stats.files++;
      stats.bytes += saved.bytes;
      if (saved.duplicate) stats.duplicates++;
      emit({ type: "saved", peer, ...saved, ms: performance.now() - started });
      return encodeAck({ ok: true, file: saved.file, bytes: saved.bytes, crc32: saved.crc32 });
    } catch (error) {
      // A lost connection or a stream out of step ends the connection, not just the frame.
      if (isDisconnect(error) || error instanceof ProtocolError && !error.recoverable) {
        throw error;
      }
      // A bad name or data, or a file that cannot be saved: this frame only.
      const reason = error instanceof Error ? error.message : String(error);
      stats.errors++;
      const keepable = error instanceof ProtocolError || error instanceof Deno.errors.AlreadyExists;
      const kept = keepable ? await keep(reader, head, tempPath) : undefined;
      if (typeof kept !== "string") {
        const message = kept === undefined ? reason : `${reason} (not kept: ${kept.reason})`;
        emit({ type: "rejected", peer, message });
        await reader.skipBody();
        return encodeAck({ ok: false, message: reason });
      }
      stats.kept++;
      emit({ type: "kept", peer, file: kept, message: reason });
      return encodeAck({ ok: false, message: `${reason}: kept as ${kept}` });
    } finally {
      removeQuietly(tempPath);
    }
  }

  /**
   * Keeps a refused frame in the quarantine, if there is one with room.
   *
   * @returns Where it was kept; `undefined` where it was not tried; why it
   * failed where it could not be written (a full disk), the frame then being
   * refused as before. A frame cut short still ends the connection.
   */
  async function keep(
    reader: FrameReader,
    head: FrameHead,
    tempPath: string,
  ): Promise<string | { reason: string } | undefined> {
    try {
      return await quarantine?.keep(reader, head, tempPath);
    } catch (error) {
      const reason = osReason(error);
      if (reason === undefined || isDisconnect(error)) throw error;
      return { reason };
    }
  }

  async function serve(conn: Deno.Conn, state: ConnectionState): Promise<void> {
    const peer = peerOf(conn);
    const address = (conn.remoteAddr as Deno.NetAddr).hostname;
    const reader = state.reader;
    const answers = new Answers(conn, idleTimeout);
    // Counted before each answer, so the figure is current once a client has it.
    let counted = 0;
    const account = () => {
      stats.received += reader.bytesRead - counted;
      counted = reader.bytesRead;
    };
    let authenticated = options.token === undefined;
    try {
      while (!stopping) {
        state.busy = false;
        // A client that waits for each answer before its next frame gets it at once.
        if (reader.buffered < HEADER_SIZE + NAME_SIZE) await answers.flush();
        // Only a connection with nothing on its way is idle, and so may be shed.
        if (reader.buffered === 0) {
          state.idleSince = performance.now();
          idle.set(conn, state);
          wake();
        }
        let head: FrameHead | null;
        try {
          head = await reader.readHead();
        } finally {
          idle.delete(conn);
        }
        if (head === null) break;
        // Begun, if not yet received: a stop lets it finish, as the client sent it.
        state.busy = true;
        const turn = slots.take(address);
        if (turn) await turn;
        try {
          if (isToken(head.nameField)) {
            const matches = await tokenMatches(reader, head);
            account();
            if (!matches) throw new ProtocolError("auth", "Authentication failed: wrong token");
            authenticated = true;
            await answers.add(encodeAck({ ok: true, file: "!", bytes: 0, crc32: 0 }));
            continue;
          }
          if (!authenticated) {
            throw new ProtocolError("auth", "Authentication required: send the token first");
          }
          const answer = isQuery(head.nameField)
            ? await lookUp(reader, head)
            : await fileFrame(reader, head, peer);
          account();
          await answers.add(answer);
        } finally {
          slots.give(address);
        }
      }
    } catch (error) {
      const quiet = error instanceof ProtocolError
        ? error.code === "idle"
        : !state.busy && (stopping || isDisconnect(error));
      if (!quiet) {
        stats.errors++;
        const reason = error instanceof Error ? error.message : String(error);
        const message = isDisconnect(error)
          ? `Connection lost inside a frame: ${reason}`
          : reason.includes("InvalidContentType")
          ? `Not a TLS client: ${reason}`
          : reason;
        const busy = error instanceof Deno.errors.Busy;
        emit({ type: busy ? "refused" : "rejected", peer, message });
        if (error instanceof ProtocolError || busy) {
          await answers.add(encodeAck({ ok: false, message }));
          await answers.flush();
          await drainBriefly(conn);
        }
      }
    } finally {
      await answers.flush();
      account();
      connections.delete(conn);
      idle.delete(conn);
      closeQuietly(conn);
      wake();
    }
  }

  function track(conn: Deno.Conn): void {
    const state = { busy: false, idleSince: 0, reader: new FrameReader(conn, readerOptions) };
    connections.set(conn, state);
    // Answers leave at once; a TLS connection has no such switch.
    if ("setNoDelay" in conn) (conn as Deno.TcpConn).setNoDelay(true);
    const handler = serve(conn, state).finally(() => handlers.delete(handler));
    handlers.add(handler);
  }

  /**
   * Serves a new connection once there is room for it: at the cap, the
   * connection idle longest is closed for it; with none idle, it waits, and
   * so does accepting, so that the next ones wait in the kernel's backlog.
   */
  async function admit(conn: Deno.Conn): Promise<void> {
    const address = (conn.remoteAddr as Deno.NetAddr).hostname;
    if (options.allow && !inAnyCidr(options.allow, address)) {
      emit({ type: "refused", peer: peerOf(conn), message: "Not in an --allow block: dropped" });
      closeQuietly(conn);
      return;
    }
    while (connections.size >= maxConnections && !stopping && !shed()) await nextChange();
    if (stopping) closeQuietly(conn);
    else track(conn);
  }

  const accepting = (async () => {
    while (!stopping) {
      let conn: Deno.Conn;
      try {
        conn = await listener.accept();
      } catch (error) {
        if (stopping || error instanceof Deno.errors.BadResource) break;
        // Out of descriptors: an idle connection gives its up, or one closing will.
        if (shed()) continue;
        emit({ type: "accept-error", message: (error as Error).message });
        // A connection closing frees one; otherwise try again in 100 ms.
        await withDeadline(nextChange(), 100).catch(() => {});
        continue;
      }
      await admit(conn);
    }
  })();

  let stopped: Promise<ServerStats> | undefined;
  async function stop(drainMs: number): Promise<ServerStats> {
    stopping = true;
    clearInterval(sweeping);
    listener.close();
    wake();
    await accepting;
    for (const [conn, state] of connections) if (!state.busy) closeQuietly(conn);
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      await Promise.race([
        Promise.all(handlers),
        new Promise((resolve) => timer = setTimeout(resolve, drainMs)),
      ]);
    } finally {
      clearTimeout(timer);
    }
    slots.close();
    for (const conn of connections.keys()) closeQuietly(conn);
    await Promise.all(handlers);
    folderLock.close();
    return { ...stats };
  }

  const shutdown = (drainMs = 10_000) => stopped ??= stop(drainMs);
  return {
    addr: listener.addr as Deno.NetAddr,
    stats,
    shutdown,
    async [Symbol.asyncDispose]() {
      await shutdown();
    },
  };
}

/** What the server knows of one open connection. */
interface ConnectionState {
  /** Whether a frame has begun on it: a stop lets that finish. */
  busy: boolean;
  /** When it began to wait for its next frame, if it waits. */
  idleSince: number;
  reader: FrameReader;
}

/** How long a connection waits for a frame before its reader gives up a body's buffers. */
const RELEASE_AFTER_MS = 1_000;

/** Longest a connection is read and ignored after the answer that ends it. */
const LINGER_MS = 2_000;

/**
 * Ends the writing side and reads what the client still sends, for a while:
 * closing on unread input would reset the connection, and the client, still
 * writing the body of a frame too large, would meet a broken pipe and never
 * read the answer that says why.
 */
async function drainBriefly(conn: Deno.Conn): Promise<void> {
  const sink = new Uint8Array(65_536);
  const deadline = performance.now() + LINGER_MS;
  try {
    await conn.closeWrite();
    const waiting = { waitingFor: "the client to stop sending" };
    while (await withDeadline(conn.read(sink), deadline - performance.now(), waiting) !== null) {
      // Discarded: the connection is already out of step.
    }
  } catch {
    // The deadline, or the client gone: either way the connection closes now.
  }
}

/** Answers waiting together: one write for a batch rather than one each. */
const ANSWER_BATCH = 16;
/** Longest an answer waits for others to join it, in milliseconds. */
const ANSWER_DELAY = 5;

/**
 * The answers owed on one connection, sent in order and in batches: at once
 * when {@linkcode ANSWER_BATCH} are waiting or on {@linkcode Answers.flush},
 * otherwise {@linkcode ANSWER_DELAY} ms after the first. A run of small
 * frames then costs a few writes, and wakes the client a few times, instead
 * of once each.
 */
class Answers {
  readonly #conn: Deno.Conn;
  readonly #timeout: number;
  #pending: Uint8Array[] = [];
  #timer: ReturnType<typeof setTimeout> | undefined;
  /** The write under way, if any: one at a time, and its end sends what came meanwhile. */
  #writing: Promise<void> | undefined;

  constructor(conn: Deno.Conn, timeout: number) {
    this.#conn = conn;
    this.#timeout = timeout;
  }

  /** Queues an answer; waits only while a full batch cannot be written yet. */
  async add(line: Uint8Array): Promise<void> {
    this.#pending.push(line);
    if (this.#pending.length < ANSWER_BATCH) {
      this.#timer ??= setTimeout(() => this.#send(), ANSWER_DELAY);
      return;
    }
    // A client that does not take its answers holds up its own frames, not memory.
    while (this.#writing) await this.#writing;
    this.#send();
  }

  #send(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#writing || this.#pending.length === 0) return;
    const bytes = concatBytes(this.#pending);
    this.#pending = [];
    this.#writing = withDeadline(writeAll(this.#conn, bytes), this.#timeout, {
      waitingFor: "the client to read",
    })
      // The original client closes without reading: a failed write is expected.
      .catch(() => {})
      .finally(() => {
        this.#writing = undefined;
        this.#send();
      });
  }

  /** Sends what is waiting and waits until every answer is written. */
  async flush(): Promise<void> {
    this.#send();
    while (this.#writing) await this.#writing;
  }
}

/**
 * The system's reason for a failed call, without the paths Deno appends to
 * it: the server's folders are no business of its clients.
 */
function osReason(error: unknown): string | undefined {
  return /^.*?\(os error \d+\)/.exec((error as Error).message)?.[0];
}

/** The same kind of error with a message that says more, or less, than Deno's. */
function rephrase(error: unknown, message: string): Error {
  const Class = error instanceof Error ? error.constructor as ErrorConstructor : Error;
  return new Class(message, { cause: error });
}

function isDisconnect(error: unknown): boolean {
  return error instanceof Deno.errors.ConnectionReset ||
    error instanceof Deno.errors.BrokenPipe ||
    error instanceof Deno.errors.BadResource ||
    error instanceof Deno.errors.Interrupted ||
    // A TLS peer gone without close_notify, as a process that exits straight after close().
    error instanceof Deno.errors.UnexpectedEof;
}

function writeAllSync(file: Deno.FsFile, bytes: Uint8Array): void {
  for (let offset = 0; offset < bytes.length;) offset += file.writeSync(bytes.subarray(offset));
}

const USAGE = `Usage: deno run --allow-net --allow-read=DIR --allow-write=DIR server.ts [options]

Receives images uploaded by client.ts (or the original Python client) and
saves each one as DIR/<name>.<ext>, complete or not at all.

Options:
  --host HOST              address to listen on (default 0.0.0.0)
  --port PORT              port to listen on, 0 for any free port (default 9999)
  --out DIR                folder to save files in (default uploads)
  --raw                    store each frame body as DIR/00000, 00001, ... like
                           the original server, instead of decoding it; keeps
                           no names, so it answers no client --resume queries
  --fsync                  sync each file and the folder before acknowledging
                           it, so an acknowledged file survives a power cut
  --max-frame-size SIZE    largest frame body accepted, e.g. 64M (default 512M)
  --max-connections N      connections open at once, idle ones included
                           (default ${DEFAULT_MAX_CONNECTIONS}); past it the one idle longest is
                           closed for a newcomer
  --max-frames N           frames received at once (default ${DEFAULT_MAX_FRAMES}); each holds up
                           to 1.75 MiB of buffers; others wait their turn unread
  --max-per-address N      frames received at once from one address (default 32)
  --queue-timeout SEC      time a frame may wait for its turn before it is
                           answered busy (default 30)
  --quarantine-size SIZE   frames that arrive whole but cannot be saved under a
                           name are kept as they came in DIR/.quarantine, up to
                           this many bytes (default ${DEFAULT_QUARANTINE_SIZE})
  --allow CIDR             accept connections only from this block, such as
                           10.0.0.0/8; repeatable (default: from anywhere)
  --token-file FILE        require every connection to present the token on
                           this file's first line (16+ characters; grant
                           --allow-read on it); the original client cannot
  --tls-cert FILE          serve TLS with this PEM certificate chain (needs
                           --tls-key, and --allow-read for both files)
  --tls-key FILE           the certificate's PEM private key
  --header-timeout SEC     time allowed for a frame header to arrive (default 30)
  --idle-timeout SEC       time allowed without data inside a frame (default 60)
  --drain-timeout SEC      on SIGINT/SIGTERM, time frames in progress may
                           take to finish (default 10)
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

/** The largest frame body to accept: at least the name field, or no frame could pass. */
function parseFrameSize(text: string): number {
  const size = parseByteSize(text);
  if (size < NAME_SIZE) {
    throw new RangeError(
      `Invalid --max-frame-size: every frame body holds a ${NAME_SIZE}-byte name, got ${size} bytes`,
    );
  }
  return size;
}

/** The TLS files named on the command line: both or neither. */
function tlsFiles(cert?: string, key?: string): { cert: string; key: string } | undefined {
  if (cert === undefined && key === undefined) return undefined;
  if (cert === undefined || key === undefined) {
    throw new TypeError("Missing TLS file: --tls-cert and --tls-key go together");
  }
  return { cert, key };
}

/**
 * Counts how many more descriptors this process may open, up to `want`, by
 * opening a folder that many times (about 1 µs each here): Deno has no call
 * for the limit, and `/proc/self/limits` needs `--allow-all`.
 *
 * @param folder A folder the process may read.
 * @param want How many to try at most.
 * @returns How many it could open, all closed again.
 *
 * @example Room for a few
 * ```ts
 * import assert from "node:assert/strict";
 * import { descriptorRoom } from "./server.ts";
 *
 * assert.equal(descriptorRoom(".", 3), 3);
 * ```
 */
export function descriptorRoom(folder: string, want: number): number {
  const opened: Deno.FsFile[] = [];
  try {
    while (opened.length < want) opened.push(Deno.openSync(folder));
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (code !== "EMFILE" && code !== "ENFILE") throw error;
  } finally {
    for (const file of opened) file.close();
  }
  return opened.length;
}

/**
 * Lowers `--max-connections` to what the descriptor limit allows, keeping
 * room for the files frames are saved to, and says so: a server that ran out
 * would fail its frames rather than shed idle connections.
 */
function fitDescriptorLimit(options: ServerOptions, stderr: LogOutput): void {
  // main() sets every one of these from its flags.
  const [out, connections, frames] = [options.out!, options.maxConnections!, options.maxFrames!];
  const want = connections + frames + 16;
  try {
    Deno.mkdirSync(out, { recursive: true });
  } catch {
    return; // startServer() says why.
  }
  const room = descriptorRoom(out, want);
  if (room >= want) return;
  const fit = Math.max(1, room - Math.min(frames + 16, Math.floor(room / 2)));
  stderr.line(
    `server.ts: The descriptor limit allows ${room} more open files, too few for --max-connections ${connections}: holding at most ${fit} connections (raise it with ulimit -n)`,
  );
  options.maxConnections = fit;
}

async function main(): Promise<void> {
  // Nothing is left to report a failed stderr to; the work goes on without it.
  const stderr = new LogOutput(() => {}, { write: (bytes) => Deno.stderr.writeSync(bytes) });
  // Serving goes on without the log; the exit status says the log failed.
  const stdout = new LogOutput((error) =>
    stderr.line(`server.ts: Cannot write to stdout: ${error.message}`)
  );
  let options: ServerOptions & {
    quiet: boolean;
    drainTimeout: number;
    tlsFiles?: { cert: string; key: string };
    tokenFile?: string;
  };
  try {
    const { values } = parseArgs({
      args: Deno.args,
      options: {
        host: { type: "string", default: "0.0.0.0" },
        port: { type: "string", default: "9999" },
        out: { type: "string", default: "uploads" },
        raw: { type: "boolean", default: false },
        fsync: { type: "boolean", default: false },
        "max-frame-size": { type: "string", default: String(DEFAULT_MAX_FRAME_SIZE) },
        "max-connections": { type: "string", default: String(DEFAULT_MAX_CONNECTIONS) },
        "max-frames": { type: "string", default: String(DEFAULT_MAX_FRAMES) },
        "max-per-address": { type: "string", default: "32" },
        "queue-timeout": { type: "string", default: "30" },
        "quarantine-size": { type: "string", default: DEFAULT_QUARANTINE_SIZE },
        allow: { type: "string", multiple: true },
        "token-file": { type: "string" },
        "tls-cert": { type: "string" },
        "tls-key": { type: "string" },
        "header-timeout": { type: "string", default: "30" },
        "idle-timeout": { type: "string", default: "60" },
        "drain-timeout": { type: "string", default: "10" },
        quiet: { type: "boolean", short: "q", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
    });
    if (values.help) {
      stdout.line(USAGE);
      Deno.exit(stdout.failed ? 1 : 0);
    }
    options = {
      host: parseHost(values.host),
      port: parsePort(values.port),
      out: values.out,
      raw: values.raw,
      fsync: values.fsync,
      maxFrameSize: parseFrameSize(values["max-frame-size"]),
      maxConnections: parseCount(values["max-connections"], "--max-connections"),
      maxFrames: parseCount(values["max-frames"], "--max-frames"),
      maxFramesPerAddress: parseCount(values["max-per-address"], "--max-per-address"),
      queueTimeout: parseSeconds(values["queue-timeout"], "--queue-timeout"),
      quarantineSize: parseByteSize(values["quarantine-size"]),
      allow: values.allow?.map(parseCidr),
      tlsFiles: tlsFiles(values["tls-cert"], values["tls-key"]),
      tokenFile: values["token-file"],
      headerTimeout: parseSeconds(values["header-timeout"], "--header-timeout"),
      idleTimeout: parseSeconds(values["idle-timeout"], "--idle-timeout"),
      drainTimeout: parseSeconds(values["drain-timeout"], "--drain-timeout", 0),
      quiet: values.quiet,
    };
  } catch (error) {
    stderr.line(`server.ts: ${describeError(error)}\nTry 'server.ts --help'.`);
    Deno.exit(2);
  }

  const out = options.out!;
  for (const name of ["read", "write"] as const) {
    const { state } = await Deno.permissions.query({ name, path: out });
    if (state !== "granted") {
      stderr.line(
        `server.ts: Missing ${name} permission for ${out}: add --allow-read=${out} --allow-write=${out}`,
      );
      Deno.exit(2);
    }
  }

  if (isOlderThanMinDeno(Deno.version.deno)) {
    stderr.line(`server.ts: Needs Deno ${MIN_DENO} or later: this is Deno ${Deno.version.deno}`);
    Deno.exit(1);
  }
  fitDescriptorLimit(options, stderr);
  const started = performance.now();
  let server: UploadServer;
  try {
    const tls = options.tlsFiles && {
      cert: await Deno.readTextFile(options.tlsFiles.cert),
      key: await Deno.readTextFile(options.tlsFiles.key),
    };
    const token = options.tokenFile && await readToken(options.tokenFile);
    server = await startServer({
      ...options,
      tls,
      token,
      onEvent(event) {
        switch (event.type) {
          case "saved":
            if (!options.quiet) {
              stdout.line(
                `${event.duplicate ? "already have" : "saved"} ${event.file} (${
                  formatBytes(event.bytes)
                } in ${formatDuration(event.ms)}) from ${event.peer}`,
              );
            }
            break;
          case "rejected":
          case "refused":
            stderr.line(`${event.type} ${event.peer}: ${event.message}`);
            break;
          case "kept":
            stderr.line(`kept ${event.peer}'s frame as ${event.file}: ${event.message}`);
            break;
          case "shed":
            stderr.line(
              `shed ${event.peer}: idle ${
                formatDuration(event.idleMs)
              } without a frame, closed for a newcomer`,
            );
            break;
          case "cleaned":
            stdout.line(
              `removed ${counted(event.files, "temporary file")} left by an earlier run`,
            );
            break;
          case "no-hard-links":
            stdout.line(
              "no hard links on this file system (FAT or exFAT?): each file is renamed into place once its name is found free",
            );
            break;
          case "accept-error":
            stderr.line(`accept failed: ${event.message}`);
            break;
        }
      },
    });
  } catch (error) {
    stderr.line(`server.ts: ${describeError(error)}`);
    // A missing permission or an unusable token file is the command line's fault.
    Deno.exit(error instanceof Deno.errors.NotCapable || error instanceof RangeError ? 2 : 1);
  }
  const { hostname, port } = server.addr;
  stdout.line(
    `listening on ${formatAddress(hostname, port)}, saving to ${out}${options.raw ? " (raw)" : ""}`,
  );

  let signalled = false;
  const shutdown = async (signal: Deno.Signal) => {
    if (signalled) {
      stderr.line(`${signal} again: stopping without waiting for frames in progress`);
      Deno.exit(1);
    }
    signalled = true;
    stderr.line(`${signal}: finishing frames in progress (again to stop at once)`);
    const stats = await server.shutdown(options.drainTimeout);
    stdout.line(
      `stopped: ${counted(stats.files, "file")} (${
        formatBytes(stats.bytes)
      }), ${stats.duplicates} already had, ${
        counted(stats.errors, "error")
      } (${stats.kept} kept in ${QUARANTINE}), in ${formatDuration(performance.now() - started)}`,
    );
    Deno.exit(stdout.failed ? 1 : 0);
  };
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    Deno.addSignalListener(signal, () => void shutdown(signal));
  }
}

if (import.meta.main) await main();
