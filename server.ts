#!/usr/bin/env -S deno run --allow-net --allow-read=uploads --allow-write=uploads
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
   * Connections served at once; more are refused.
   * @default {256}
   */
  maxConnections?: number;
  /**
   * Connections served at once from one address; more are refused, so one
   * peer cannot take every place.
   * @default {32}
   */
  maxConnectionsPerAddress?: number;
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
  | { type: "refused"; peer: string; message: string }
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
  const maxConnections = options.maxConnections ?? 256;
  const maxPerAddress = options.maxConnectionsPerAddress ?? 32;
  /** Open connections by peer address. */
  const perAddress = new Map<string, number>();
  const idleTimeout = options.idleTimeout ?? 60_000;
  const readerOptions = {
    maxFrameSize: options.maxFrameSize ?? DEFAULT_MAX_FRAME_SIZE,
    headerTimeout: options.headerTimeout ?? 30_000,
    idleTimeout,
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
  try {
    const scanned = await scanFolder(out, raw);
    if (scanned.removed > 0) emit({ type: "cleaned", files: scanned.removed });
    hardLinks = makesHardLinks(out);
    if (!hardLinks) emit({ type: "no-hard-links" });
    savedNames = scanned.names;
    rawIndex = scanned.nextRawIndex;
    listener = listen(options);
  } catch (error) {
    folderLock.close();
    throw error;
  }
  const stats: ServerStats = { files: 0, duplicates: 0, bytes: 0, errors: 0, received: 0 };
  /** Each open connection, and whether a frame is in progress on it. */
  const connections = new Map<Deno.Conn, { busy: boolean }>();
  const handlers = new Set<Promise<void>>();
  /** Connections refused as busy, each lingering until its client stops sending. */
  const turnedAway = new Map<Deno.Conn, Promise<void>>();
  let stopping = false;

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

  /** Receives one body into a temporary file and commits it. */
  async function receive(reader: FrameReader, head: FrameHead) {
    const name = raw ? "" : parseName(head.nameField);
    const tempPath = temporaryPath(out);
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
    } finally {
      try {
        Deno.removeSync(tempPath);
      } catch {
        // Never created, or already gone.
      }
    }
  }

  async function serve(conn: Deno.Conn, state: { busy: boolean }): Promise<void> {
    const peer = peerOf(conn);
    const reader = new FrameReader(conn, readerOptions);
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
        const head = await reader.readHead();
        if (head === null) break;
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
        if (isQuery(head.nameField)) {
          const answer = await lookUp(reader, head);
          account();
          await answers.add(answer);
          continue;
        }
        state.busy = true;
        const started = performance.now();
        try {
          const saved = await receive(reader, head);
          stats.files++;
          stats.bytes += saved.bytes;
          if (saved.duplicate) stats.duplicates++;
          emit({ type: "saved", peer, ...saved, ms: performance.now() - started });
          account();
          await answers.add(
            encodeAck({ ok: true, file: saved.file, bytes: saved.bytes, crc32: saved.crc32 }),
          );
        } catch (error) {
          // A lost connection or a stream out of step ends the connection, not just the frame.
          if (isDisconnect(error) || error instanceof ProtocolError && !error.recoverable) {
            throw error;
          }
          // A bad name or data, or a file that cannot be saved: this frame only.
          const message = error instanceof Error ? error.message : String(error);
          stats.errors++;
          emit({ type: "rejected", peer, message });
          await reader.skipBody();
          account();
          await answers.add(encodeAck({ ok: false, message }));
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
        emit({ type: "rejected", peer, message });
        if (error instanceof ProtocolError) {
          await answers.add(encodeAck({ ok: false, message }));
          await answers.flush();
          await drainBriefly(conn);
        }
      }
    } finally {
      await answers.flush();
      account();
      connections.delete(conn);
      closeQuietly(conn);
    }
  }

  function track(conn: Deno.Conn): void {
    const address = (conn.remoteAddr as Deno.NetAddr).hostname;
    if (options.allow && !inAnyCidr(options.allow, address)) {
      emit({ type: "refused", peer: peerOf(conn), message: "Not in an --allow block: dropped" });
      closeQuietly(conn);
      return;
    }
    const fromAddress = perAddress.get(address) ?? 0;
    const alreadyOpen = (count: number) => `${counted(count, "connection")} already open`;
    const busy = connections.size >= maxConnections
      ? `Server busy: ${alreadyOpen(maxConnections)}`
      : fromAddress >= maxPerAddress
      ? `Server busy: ${alreadyOpen(maxPerAddress)} from ${address}`
      : undefined;
    if (busy !== undefined) {
      emit({ type: "refused", peer: peerOf(conn), message: busy });
      // Closing on the frames a client sent at once would reset the
      // connection and lose the answer; a few may wait for them to stop.
      const linger = turnedAway.size < MAX_TURNED_AWAY;
      const refusing = conn.write(encodeAck({ ok: false, message: busy }))
        .then(() => linger ? drainBriefly(conn) : undefined)
        .catch(() => {})
        .finally(() => {
          turnedAway.delete(conn);
          closeQuietly(conn);
        });
      if (linger) turnedAway.set(conn, refusing);
      return;
    }
    perAddress.set(address, fromAddress + 1);
    const state = { busy: false };
    connections.set(conn, state);
    // Answers leave at once; a TLS connection has no such switch.
    if ("setNoDelay" in conn) (conn as Deno.TcpConn).setNoDelay(true);
    const handler = serve(conn, state).finally(() => {
      handlers.delete(handler);
      const left = perAddress.get(address)! - 1;
      if (left === 0) perAddress.delete(address);
      else perAddress.set(address, left);
    });
    handlers.add(handler);
  }

  const accepting = (async () => {
    while (!stopping) {
      try {
        track(await listener.accept());
      } catch (error) {
        if (stopping || error instanceof Deno.errors.BadResource) break;
        // Out of descriptors and the like: keep accepting once it passes.
        emit({ type: "accept-error", message: (error as Error).message });
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
  })();

  let stopped: Promise<ServerStats> | undefined;
  async function stop(drainMs: number): Promise<ServerStats> {
    stopping = true;
    listener.close();
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
    for (const conn of connections.keys()) closeQuietly(conn);
    const refusals = [...turnedAway.values()];
    for (const conn of turnedAway.keys()) closeQuietly(conn);
    await Promise.all([...handlers, ...refusals]);
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

/** Longest a connection is read and ignored after the answer that ends it. */
const LINGER_MS = 2_000;
/** Connections refused as busy that may linger at once; more are closed at once. */
const MAX_TURNED_AWAY = 64;

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
  --max-connections N      connections served at once (default 256); each holds
                           up to 1.75 MiB of buffers while its client sends fast
  --max-per-address N      connections served at once from one address (default 32)
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
        "max-connections": { type: "string", default: "256" },
        "max-per-address": { type: "string", default: "32" },
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
      maxConnectionsPerAddress: parseCount(values["max-per-address"], "--max-per-address"),
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
      }), ${stats.duplicates} already had, ${counted(stats.errors, "error")}, in ${
        formatDuration(performance.now() - started)
      }`,
    );
    Deno.exit(stdout.failed ? 1 : 0);
  };
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    Deno.addSignalListener(signal, () => void shutdown(signal));
  }
}

if (import.meta.main) await main();
