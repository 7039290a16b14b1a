#!/usr/bin/env -S deno run --allow-net --allow-read
/**
 * TCP image uploader: sends every matching file in the given folders to
 * `server.ts` (or, with `--legacy`, to the original Python server) and
 * reports each file the server did not confirm.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { crc32 } from "node:zlib";
import {
  base64Length,
  checkNetPermission,
  closeQuietly,
  concatBytes,
  counted,
  crc32OfFile,
  describeError,
  encodeHeader,
  encodeName,
  encodeQuery,
  encodeToken,
  formatAddress,
  formatBytes,
  formatDuration,
  HEADER_SIZE,
  type Held,
  isOlderThanMinDeno,
  LineReader,
  LogOutput,
  MAX_ACK_SIZE,
  MIN_DENO,
  NAME_SIZE,
  parseAck,
  parseCount,
  parseHave,
  parseHost,
  parsePort,
  parseSeconds,
  ProtocolError,
  readTokenFile,
  withDeadline,
  writeAll,
} from "./protocol.ts";

/** A file chosen for upload. */
export interface UploadFile {
  /** Where it is read from. */
  path: string;
  /** The name sent in the frame: the file name without its extension. */
  name: string;
}

/** What happened to one file. */
export interface FileResult {
  /** Where it was read from. */
  path: string;
  /** Confirmed by the server (or, with `legacy`, sent completely). */
  ok: boolean;
  /** Bytes of file data. */
  bytes: number;
  /** The name the server saved it under, when it said. */
  savedAs?: string;
  /** Why it failed. */
  message?: string;
  /** Confirmed by a query: the server already held this very file, so it was not sent. */
  alreadyThere?: boolean;
  /**
   * The failure came from the connection (refused, reset, timed out, server
   * busy), not from the file or the server's verdict: another try may work.
   */
  transient?: boolean;
}

/** Options for {@linkcode collectFiles}. */
export interface CollectOptions {
  /**
   * Extensions to pick from folders, compared without case.
   * @default {["jpg"]}
   */
  extensions?: string[];
  /**
   * Descend into sub-folders. A link to a folder is reported among the
   * skipped, not followed.
   * @default {false}
   */
  recursive?: boolean;
  /**
   * Index of the first file to send, as the original's `start_idx`.
   * @default {0}
   */
  start?: number;
  /**
   * Files per batch, as the original's `batch_size`.
   * @default {20}
   */
  batchSize?: number;
  /**
   * Batches to send at most, as the original's `max_batch`.
   * @default {10_000}
   */
  maxBatch?: number;
}

/** Files picked by {@linkcode collectFiles}, and those that cannot be sent. */
export interface Selection {
  /** Files to send, in order. */
  files: UploadFile[];
  /** Selected files that cannot be sent, and links to folders not followed, with the reason. */
  skipped: FileResult[];
  /** Files found, before `start` and the batching chose among them. */
  found: number;
  /**
   * Hidden entries of the folders (names starting with a dot) left out, as a
   * shell's `*` leaves them: files with a matching extension, and with
   * `recursive` folders.
   */
  hidden: number;
}

/**
 * Returns the name a file is sent under: its base name without the last
 * extension. (The original's `rstrip('.jpg')` also ate trailing `.`, `j`, `p`
 * and `g` characters of the name itself.)
 *
 * @param path The file's path.
 * @returns The name for the frame.
 */
export function nameFor(path: string): string {
  const base = path.slice(path.lastIndexOf("/") + 1);
  const dot = base.lastIndexOf(".");
  return dot > 0 ? base.slice(0, dot) : base;
}

/** A path found, and whether it is a regular file (or a link to one). */
interface Candidate {
  path: string;
  regular: boolean;
}

/**
 * What a folder holds: the files in it, and with `recursive` the links to
 * folders it does not follow; apart, the hidden entries it leaves out.
 */
interface Listing {
  files: Candidate[];
  linkedFolders: string[];
  hiddenFiles: string[];
  hiddenFolders: string[];
}

async function listFolder(folder: string, recursive: boolean, into: Listing): Promise<void> {
  for await (const entry of Deno.readDir(folder)) {
    const path = folder.endsWith("/") ? folder + entry.name : `${folder}/${entry.name}`;
    // A camera card's ._ files, a phone's .thumbnails, a drive's .Trashes:
    // not photos to send, and a name starting with a dot cannot be sent anyway.
    if (entry.name.startsWith(".")) {
      if (!entry.isDirectory) into.hiddenFiles.push(path);
      else if (recursive) into.hiddenFolders.push(path);
      continue;
    }
    if (entry.isDirectory) {
      if (recursive) await listFolder(path, recursive, into);
    } else if (entry.isSymlink) {
      // Only links need a stat; the listing already tells files from the rest.
      const target = await Deno.stat(path).catch(() => undefined);
      if (recursive && target?.isDirectory) into.linkedFolders.push(path);
      else into.files.push({ path, regular: target?.isFile ?? false });
    } else {
      into.files.push({ path, regular: entry.isFile });
    }
  }
}

/**
 * Folds "." and doubled slashes, so that two spellings of one path compare
 * equal; not "..", since "link/.." may lead elsewhere.
 */
function samePathKey(path: string): string {
  return path.replace(/\/+/g, "/").replace(/(^|\/)(?:\.\/)+/g, "$1");
}

/**
 * Picks the files to send: each file named, and the files with a matching
 * extension in each folder named, sorted by path, each path once; then the
 * original's batching selects `batchSize * maxBatch` of them from `start`.
 * Hidden files and folders inside the folders are left out, and counted.
 *
 * @param paths Folders and files.
 * @param options Which files to take.
 * @returns The files to send and the selected files that cannot be sent.
 * @throws {Deno.errors.NotFound} If a path does not exist.
 */
export async function collectFiles(
  paths: string[],
  options: CollectOptions = {},
): Promise<Selection> {
  const extensions = new Set((options.extensions ?? ["jpg"]).map((e) => e.toLowerCase()));
  const matches = (path: string) =>
    extensions.has(path.slice(path.lastIndexOf(".") + 1).toLowerCase());
  const candidates: Candidate[] = [];
  const [linkedFolders, hiddenFiles, hiddenFolders]: string[][] = [[], [], []];
  for (const path of paths) {
    const info = await Deno.stat(path);
    if (!info.isDirectory) {
      candidates.push({ path, regular: info.isFile });
      continue;
    }
    const found: Listing = { files: [], linkedFolders, hiddenFiles, hiddenFolders };
    await listFolder(path, options.recursive ?? false, found);
    candidates.push(
      ...found.files.filter(({ path }) => matches(path))
        .sort((a, b) => a.path < b.path ? -1 : a.path > b.path ? 1 : 0),
    );
  }
  // A file named twice, or named and found in its folder, is sent once.
  const seen = new Set<string>();
  const unique = candidates.filter(({ path }) => {
    const key = samePathKey(path);
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
  const start = options.start ?? 0;
  const count = (options.batchSize ?? 20) * (options.maxBatch ?? 10_000);
  // A folder named twice hides the same entries twice.
  const hidden = new Set([...hiddenFiles.filter(matches), ...hiddenFolders].map(samePathKey));
  const selection: Selection = {
    files: [],
    skipped: [],
    found: unique.length,
    hidden: hidden.size,
  };
  for (const { path, regular } of unique.slice(start, start + count)) {
    const name = nameFor(path);
    try {
      // Opening a FIFO would wait for a writer: such paths are never opened.
      if (!regular) throw new TypeError("Cannot send: not a regular file");
      encodeName(name);
      selection.files.push({ path, name });
    } catch (error) {
      selection.skipped.push({ path, ok: false, bytes: 0, message: (error as Error).message });
    }
  }
  // Not followed, since a link may lead back up the tree; said, since what it holds is not sent.
  const linksOnce = new Map(linkedFolders.map((path) => [samePathKey(path), path]));
  for (const path of [...linksOnce.values()].sort()) {
    const message = "Not followed: a link to a folder; name it to send the files in it";
    selection.skipped.push({ path, ok: false, bytes: 0, message });
  }
  return selection;
}

/** Options for {@linkcode uploadFiles}. */
export interface UploadOptions {
  /**
   * Server address.
   * @default {"127.0.0.1"}
   */
  host?: string;
  /**
   * Server port.
   * @default {9999}
   */
  port?: number;
  /**
   * Connections used in parallel.
   * @default {4}
   */
  concurrency?: number;
  /**
   * Milliseconds allowed to connect, for each write, and for each answer
   * after a frame is sent; the original used 50 s.
   * @default {50_000}
   */
  timeout?: number;
  /**
   * Talk to the original server: one frame per connection, no
   * acknowledgement; a file counts as sent when the server has read it all
   * and closed.
   * @default {false}
   */
  legacy?: boolean;
  /**
   * The server's shared token, presented first on every connection. Not
   * with `legacy`.
   * @default {undefined}
   */
  token?: string;
  /**
   * Ask the server first which files it already holds (same name, size and
   * CRC-32) and send only the others. Not with `legacy`.
   * @default {false}
   */
  resume?: boolean;
  /**
   * Connect with TLS; `caCerts` (PEM) are trusted as well as the system's.
   * @default {undefined}
   */
  tls?: { caCerts?: string[] };
  /**
   * Further tries for files that failed for a transient reason, each pass
   * after a pause that doubles from half a second up to 4 seconds.
   * @default {3}
   */
  retries?: number;
  /**
   * Frames sent ahead of their acknowledgement on one connection.
   * @default {32}
   */
  window?: number;
  /**
   * Called once for every file, as soon as its fate is known. What it throws
   * is ignored: a log that cannot be written must not fail the upload.
   * @default {() => {}}
   */
  onResult?: (result: FileResult) => void;
}

/** Bytes of file read per chunk: a multiple of 3, so chunks encode alone. */
const CHUNK_SIZE = 3 * 65_536;

/** What a client waits for after each frame, as a timeout names it. */
const ANSWER = { waitingFor: "the server's answer" };

/** Queries sent in one write. */
const QUERY_BATCH = 64;
/**
 * Batches of queries written before the first one's answers are read: enough
 * that the server always has the next batch, few enough (some 20 KB of
 * answers) that neither side's socket buffers fill up.
 */
const QUERY_BATCHES_IN_FLIGHT = 4;

/** Reads until `buffer` is full or the file ends. */
function readFull(file: Deno.FsFile, buffer: Uint8Array): number {
  let filled = 0;
  while (filled < buffer.length) {
    const n = file.readSync(buffer.subarray(filled));
    if (n === null) break;
    filled += n;
  }
  return filled;
}

/** Where to connect, and how. */
interface Target {
  hostname: string;
  port: number;
  /** Connect with TLS, trusting these PEM certificates as well as the system's. */
  tls?: { caCerts?: string[] };
}

/** Writes all of `bytes`, failing with a `timeout` error after `ms` milliseconds. */
function writeWithin(conn: Deno.Conn, bytes: Uint8Array, ms: number): Promise<void> {
  return withDeadline(writeAll(conn, bytes), ms, { waitingFor: "the server to read" });
}

async function connectWithin(target: Target, ms: number): Promise<Deno.Conn> {
  const { hostname, port, tls } = target;
  const connecting: Promise<Deno.Conn> = tls
    ? Deno.connectTls({ hostname, port, caCerts: tls.caCerts })
    : Deno.connect({ hostname, port }).then((conn) => {
      conn.setNoDelay(true);
      return conn;
    });
  try {
    const conn = await withDeadline(connecting, ms, {
      waitingFor: `a connection to ${formatAddress(hostname, port)}`,
    });
    // TLS verifies the server before the first frame goes, not during it.
    if (tls) await withDeadline((conn as Deno.TlsConn).handshake(), ms, { waitingFor: "TLS" });
    return conn;
  } catch (error) {
    connecting.then((late) => late.close(), () => {});
    throw error;
  }
}

/**
 * Streams files as frames, reusing one chunk of memory whatever the file
 * size: a frame's header, name and first data leave in one write.
 */
class FrameWriter {
  readonly #raw = new Uint8Array(CHUNK_SIZE);
  readonly #out = new Uint8Array(HEADER_SIZE + NAME_SIZE + base64Length(CHUNK_SIZE));
  readonly #encoder = new TextEncoder();
  readonly #probe = new Uint8Array(1);
  readonly #timeout: number;
  /** Whether part of the last frame reached the wire. */
  started = false;

  /** @param timeout Milliseconds each write may take. */
  constructor(timeout: number) {
    this.#timeout = timeout;
  }

  /**
   * Sends one file.
   *
   * @returns Bytes of file data sent, and the CRC-32 of that data and of the
   * frame body (what a `--raw` server saves).
   * @throws {Error} When the file cannot be read, or changes while being
   * sent; {@linkcode FrameWriter.started} tells whether part of the frame
   * was already written.
   */
  async send(conn: Deno.Conn, entry: UploadFile): Promise<Sent> {
    this.started = false;
    using file = Deno.openSync(entry.path);
    // A short first chunk leaves 256 KiB after the header in every write,
    // so the original server's recv(4096) loop, which counts 4096 bytes for
    // every recv, finds whole 4096-byte blocks rather than a short tail.
    let want = CHUNK_SIZE - 24;
    let n: number;
    try {
      n = readFull(file, this.#raw.subarray(0, want));
    } catch (error) {
      if (error instanceof Deno.errors.IsADirectory) {
        throw new TypeError("Cannot send: not a regular file");
      }
      throw error;
    }
    // A file that ends within the first chunk gave its size by ending: no stat.
    let size = n;
    if (n === want) {
      const info = file.statSync();
      if (!info.isFile) throw new TypeError("Cannot send: not a regular file");
      size = info.size;
    }
    this.#out.set(encodeHeader(NAME_SIZE + base64Length(size)));
    this.#out.set(encodeName(entry.name), HEADER_SIZE);
    let offset = HEADER_SIZE + NAME_SIZE;
    let sent = 0;
    let dataCrc = 0;
    let bodyCrc = 0;
    for (;;) {
      const end = sent + n;
      // The header promised `size` bytes: a file that shrinks or grows cannot be sent.
      if (
        end > size || (n < want && end < size) ||
        (end === size && n === want && file.readSync(this.#probe) !== null)
      ) {
        throw new Deno.errors.InvalidData("Cannot send: the file changed while being sent");
      }
      const { written } = this.#encoder.encodeInto(
        this.#raw.subarray(0, n).toBase64(),
        this.#out.subarray(offset),
      );
      const chunk = this.#out.subarray(0, offset + written);
      dataCrc = crc32(this.#raw.subarray(0, n), dataCrc);
      bodyCrc = crc32(sent === 0 ? chunk.subarray(HEADER_SIZE) : chunk, bodyCrc);
      this.started = true;
      await writeWithin(conn, chunk, this.#timeout);
      sent = end;
      if (sent === size) return { bytes: size, dataCrc, bodyCrc };
      offset = 0;
      want = Math.min(CHUNK_SIZE, size - sent);
      n = readFull(file, this.#raw.subarray(0, want));
    }
  }
}

/** What went out for one file. */
interface Sent {
  /** Bytes of file data. */
  bytes: number;
  /** CRC-32 of the file data, which a decoding server saves. */
  dataCrc: number;
  /** CRC-32 of the frame body, which a `--raw` server saves. */
  bodyCrc: number;
}

/** A frame sent and waiting for its acknowledgement. */
interface Pending extends Sent {
  entry: UploadFile;
  /** The token frame, whose answer is the connection's, not a file's. */
  token?: true;
}

/**
 * One connection to our server, sending frames ahead of their
 * acknowledgements and matching the answers to them in order.
 */
class Uploader {
  readonly #conn: Deno.Conn;
  readonly #timeout: number;
  readonly #window: number;
  readonly #report: (result: FileResult) => void;
  readonly #writer: FrameWriter;
  readonly #pending: Pending[] = [];
  readonly #acks: Promise<void>;
  #wake = Promise.withResolvers<void>();
  #room = Promise.withResolvers<void>();
  #sending = true;
  /** The token still to present before the first frame. */
  #token: string | undefined;
  /** Why no more frames can be sent on this connection, once that is so. */
  broken: string | undefined;
  /** Whether no other connection could do better: the server refused this client itself. */
  refused = false;
  /** Whether the server has said OK to anything here; one that turned the connection away never has. */
  accepted = false;

  constructor(
    conn: Deno.Conn,
    options: Required<Pick<UploadOptions, "timeout" | "window" | "onResult">> & {
      token?: string;
    },
  ) {
    this.#conn = conn;
    this.#timeout = options.timeout;
    this.#window = options.window;
    this.#report = options.onResult;
    this.#writer = new FrameWriter(options.timeout);
    this.#token = options.token;
    this.#acks = this.#readAcks();
  }

  async #readAcks(): Promise<void> {
    const lines = new LineReader(this.#conn, MAX_ACK_SIZE);
    try {
      for (;;) {
        while (this.#pending.length === 0) {
          if (!this.#sending) return;
          await this.#wake.promise;
          this.#wake = Promise.withResolvers();
        }
        const line = await lines.readLine(this.#timeout, ANSWER);
        if (line === null) throw new Error("the server closed the connection");
        const ack = parseAck(line);
        if (ack.ok) this.accepted = true;
        // Before any OK, busy is said of the connection, which the server then closes.
        else if (!this.accepted && ack.message.startsWith("Server busy")) {
          throw new Deno.errors.Busy(`Refused by the server: ${ack.message}`);
        }
        // The server closes after this answer, and answers every connection so.
        if (!ack.ok && ack.message.startsWith("Authentication required")) {
          throw new Deno.errors.PermissionDenied(
            `The server requires a token: add --token-file FILE (it said: ${ack.message})`,
          );
        }
        const { entry, bytes, dataCrc, bodyCrc, token } = this.#pending.shift()!;
        this.#room.resolve();
        if (token) {
          if (!ack.ok) throw new Deno.errors.PermissionDenied(`Token refused: ${ack.message}`);
          continue;
        }
        // A decoding server saves the file's bytes; a --raw one the frame body.
        const complete = ack.ok &&
          ((ack.bytes === bytes && ack.crc32 === dataCrc) ||
            (ack.bytes === NAME_SIZE + base64Length(bytes) && ack.crc32 === bodyCrc));
        this.#report(
          complete ? { path: entry.path, bytes, ok: true, savedAs: ack.file } : {
            path: entry.path,
            bytes,
            ok: false,
            message: ack.ok
              ? `Server saved other bytes than were sent as ${ack.file}: ${ack.bytes} bytes with CRC-32 ${
                ack.crc32.toString(16).padStart(8, "0")
              }, sent ${bytes} with ${dataCrc.toString(16).padStart(8, "0")}`
              : `Refused by the server: ${ack.message}`,
            transient: !ack.ok && ack.message.startsWith("Server busy"),
          },
        );
      }
    } catch (error) {
      const tls = error instanceof ProtocolError && error.code === "tls";
      // A refused token is final, and so is a server that speaks TLS; anything
      // else may pass on another try.
      const refused = error instanceof Deno.errors.PermissionDenied || tls;
      this.refused = refused;
      // Only a failure of the connection itself is called a lost connection.
      const message = tls
        ? "The server speaks TLS: add --tls, or --ca FILE"
        : refused || error instanceof ProtocolError || error instanceof SyntaxError ||
            error instanceof Deno.errors.Busy
        ? (error as Error).message
        : `Connection lost: ${(error as Error).message}`;
      this.broken ??= message;
      for (const { entry, bytes, token } of this.#pending.splice(0)) {
        if (!token) {
          this.#report({ path: entry.path, bytes, ok: false, message, transient: !refused });
        }
      }
      this.#room.resolve();
      closeQuietly(this.#conn);
    }
  }

  /**
   * Sends one file, waiting first for room in the window.
   *
   * @returns False when the connection broke before the file could go.
   */
  async send(entry: UploadFile): Promise<boolean> {
    while (this.#pending.length >= this.#window && !this.broken) {
      await this.#room.promise;
      this.#room = Promise.withResolvers();
    }
    if (this.broken) return false;
    if (this.#token !== undefined) {
      const frame = encodeToken(this.#token);
      this.#token = undefined;
      try {
        await writeWithin(this.#conn, frame, this.#timeout);
      } catch (error) {
        this.broken = `Connection lost: ${(error as Error).message}`;
        closeQuietly(this.#conn);
        return false;
      }
      const none = { bytes: 0, dataCrc: 0, bodyCrc: 0 };
      this.#pending.push({ entry: { path: "", name: "" }, ...none, token: true });
      this.#wake.resolve();
    }
    let sent: Sent;
    try {
      sent = await this.#writer.send(this.#conn, entry);
    } catch (error) {
      // The answers failed and closed the connection under this write: it failed as they did.
      if (this.broken) return false;
      const message = (error as Error).message;
      this.#report({
        path: entry.path,
        ok: false,
        bytes: 0,
        message,
        transient: isNetworkError(error),
      });
      if (this.#writer.started) {
        // The stream is out of step: let the answers to earlier frames arrive, send no more.
        this.broken = `Connection ended after a failed frame: ${message}`;
        this.#sending = false;
        this.#wake.resolve();
        this.#conn.closeWrite().catch(() => {});
      }
      return true;
    }
    // The answers stopped while this frame was being written: it will never get one.
    if (this.broken) return false;
    this.#pending.push({ entry, ...sent });
    this.#wake.resolve();
    return true;
  }

  /** Waits for the answers to everything sent, then closes. */
  async close(): Promise<void> {
    this.#sending = false;
    this.#wake.resolve();
    await this.#acks;
    // A TLS close_notify sent by close() alone is lost when the process exits
    // at once, and the server then sees the connection cut.
    await this.#conn.closeWrite().catch(() => {});
    closeQuietly(this.#conn);
  }
}

/** Whether an error came from the connection rather than from a file. */
function isNetworkError(error: unknown): boolean {
  return error instanceof Deno.errors.ConnectionRefused ||
    error instanceof Deno.errors.ConnectionReset ||
    error instanceof Deno.errors.ConnectionAborted ||
    error instanceof Deno.errors.BrokenPipe ||
    error instanceof Deno.errors.NotConnected ||
    error instanceof Deno.errors.TimedOut ||
    (error instanceof ProtocolError && error.code === "timeout");
}

/** Totals of an upload. */
export interface UploadReport {
  /** Files confirmed (or, with `legacy`, sent). */
  confirmed: number;
  /** Bytes of file data in those files. */
  bytes: number;
  /** Every file that failed, with the reason. */
  failed: FileResult[];
}

/**
 * Uploads files over `concurrency` connections, reusing each connection for
 * many files, and reports each file's fate through `onResult`. Files that
 * share a name follow once the first of them is answered, so the server
 * keeps the first.
 *
 * @param files The files to send.
 * @param options Server, parallelism, deadlines and mode.
 * @returns The totals, with every failure.
 */
export async function uploadFiles(
  files: UploadFile[],
  options: UploadOptions = {},
): Promise<UploadReport> {
  const host = options.host ?? "127.0.0.1";
  const port = options.port ?? 9999;
  const timeout = options.timeout ?? 50_000;
  const retries = options.retries ?? 3;
  const target: Target = { hostname: host, port, tls: options.tls };
  const report: UploadReport = { confirmed: 0, bytes: 0, failed: [] };
  let queue: Iterator<UploadFile>;
  let onResult: (result: FileResult) => void;
  /** Why the server will take nothing from this client, once it is known: the rest fail at once. */
  let refusal: string | undefined;
  /** Connections open now, over all workers. */
  let open = 0;
  /** Workers of this pass that stopped because the server turned their connection away. */
  let retired = 0;
  /** Connections for the next pass. */
  let width = options.concurrency ?? 4;
  /** Counts a file's final fate and passes it on. */
  const record = (result: FileResult) => {
    if (result.ok) {
      report.confirmed++;
      report.bytes += result.bytes;
    } else {
      report.failed.push(result);
    }
    try {
      options.onResult?.(result);
    } catch {
      // The caller's log failed; the file did not.
    }
  };

  /** Sends one file to the original server: one connection, no answer. */
  async function sendLegacy(entry: UploadFile, writer: FrameWriter): Promise<number> {
    using conn = await connectWithin(target, timeout);
    // The original server reads until it has counted the body or the input
    // ends, then closes: a clean close means it read every byte.
    let bytes: number;
    try {
      ({ bytes } = await writer.send(conn, entry));
      await conn.closeWrite();
      const sink = new Uint8Array(4096);
      const closing = { waitingFor: "the server to close" };
      while (await withDeadline(conn.read(sink), timeout, closing) !== null) {
        // The original server sends nothing; anything it does send is ignored.
      }
    } catch (error) {
      if (
        !(error instanceof Deno.errors.ConnectionReset || error instanceof Deno.errors.BrokenPipe)
      ) {
        throw error;
      }
      // Not transient: sending again would leave a second numbered copy there.
      throw new Deno.errors.InvalidData(
        "Cannot confirm: the server closed before reading all of it, so it may keep a truncated copy (the original server does when a recv returns less than 4096 bytes)",
      );
    }
    return bytes;
  }

  async function legacyWorker(): Promise<void> {
    const writer = new FrameWriter(timeout);
    for (let next = queue.next(); !next.done; next = queue.next()) {
      const entry = next.value;
      try {
        const bytes = await sendLegacy(entry, writer);
        onResult({ path: entry.path, ok: true, bytes });
      } catch (error) {
        const message = (error as Error).message;
        onResult({
          path: entry.path,
          ok: false,
          bytes: 0,
          message,
          transient: isNetworkError(error),
        });
      }
    }
  }

  async function worker(): Promise<void> {
    let uploader: Uploader | undefined;
    for (;;) {
      if (uploader?.broken) {
        if (uploader.refused) refusal ??= uploader.broken;
        const turnedAway = !uploader.accepted;
        await uploader.close();
        uploader = undefined;
        open--;
        // Turned away before taking anything while other connections work:
        // the server is at its limit, so this one leaves the rest to them.
        if (turnedAway && open > 0 && refusal === undefined) {
          retired++;
          return;
        }
      }
      const next = queue.next();
      if (next.done) break;
      const entry = next.value;
      if (refusal !== undefined) {
        onResult({ path: entry.path, ok: false, bytes: 0, message: refusal, transient: false });
        continue;
      }
      try {
        if (uploader === undefined) {
          uploader = new Uploader(await connectWithin(target, timeout), {
            timeout,
            window: options.window ?? 32,
            onResult,
            token: options.token,
          });
          open++;
        }
      } catch (error) {
        const reason = (error as Error).message;
        const message = `Cannot connect to ${formatAddress(host, port)}: ${
          reason.includes("CaUsedAsEndEntity")
            ? "the server's certificate is a CA's, which TLS does not accept as a server's own: make it with -addext basicConstraints=critical,CA:FALSE (see the README)"
            : reason.includes("InvalidContentType")
            ? `the server does not speak TLS (${reason})`
            : reason
        }`;
        // A certificate TLS refused (InvalidData), a missing permission, or a
        // name that does not exist stays so however often it is tried.
        const transient = !(error instanceof Deno.errors.InvalidData) &&
          !(error instanceof Deno.errors.NotCapable) &&
          !/Name or service not known|No address associated with hostname|nor servname provided/
            .test(reason);
        if (!transient) refusal ??= message;
        onResult({ path: entry.path, ok: false, bytes: 0, message, transient });
        continue;
      }
      if (!await uploader.send(entry)) {
        if (uploader.refused) refusal ??= uploader.broken;
        onResult({
          path: entry.path,
          ok: false,
          bytes: 0,
          message: uploader.broken!,
          transient: !uploader.refused,
        });
      }
    }
    if (uploader !== undefined) {
      await uploader.close();
      open--;
    }
  }

  /**
   * Asks the server about each file, 64 queries a write and up to four writes
   * ahead of the answers, and reports those it already holds; returns the
   * others. Any failure leaves the rest to be sent: a query only ever saves
   * work.
   */
  async function skipHeld(candidates: UploadFile[]): Promise<UploadFile[]> {
    const rest: UploadFile[] = [];
    /** Candidates settled so far: recorded as held, or put in `rest`. */
    let settled = 0;
    try {
      using conn = await connectWithin(target, timeout);
      const lines = new LineReader(conn, MAX_ACK_SIZE);
      if (options.token !== undefined) {
        await writeWithin(conn, encodeToken(options.token), timeout);
        const line = await lines.readLine(timeout, ANSWER);
        if (line === null || !parseAck(line).ok) return candidates;
      }
      // Writing ahead keeps the server busy: waiting for each batch's answers
      // left it a round trip idle per batch (bench/RESULTS.md).
      const inFlight: { entry: UploadFile; size: number }[][] = [];
      let queued = 0;
      while (queued < candidates.length || inFlight.length > 0) {
        while (queued < candidates.length && inFlight.length < QUERY_BATCHES_IN_FLIGHT) {
          const batch = candidates.slice(queued, queued + QUERY_BATCH).map((entry) => {
            const info = Deno.statSync(entry.path);
            return { entry, size: info.isFile ? info.size : -1 };
          });
          queued += batch.length;
          const queries = batch.filter(({ size }) => size >= 0);
          const frames = queries.map(({ entry, size }) => encodeQuery(entry.name, size));
          await writeWithin(conn, concatBytes(frames), timeout);
          inFlight.push(batch);
        }
        for (const { entry, size } of inFlight.shift()!) {
          let held: Held | undefined;
          if (size >= 0) {
            const line = await lines.readLine(timeout, ANSWER);
            if (line === null) throw new Error("the server closed the connection");
            held = parseHave(line);
          }
          if (held?.bytes === size && held.crc32 === crc32OfFile(entry.path)) {
            record({
              path: entry.path,
              ok: true,
              bytes: size,
              savedAs: held.file,
              alreadyThere: true,
            });
          } else {
            rest.push(entry);
          }
          settled++;
        }
      }
      return rest;
    } catch (error) {
      const unsettled = [...rest, ...candidates.slice(settled)];
      if (!(error instanceof ProtocolError && error.code === "refused")) return unsettled;
      // A server that cannot say what it holds would store each file again.
      const message = `Not sent, so as not to store it twice: ${error.message}`;
      for (const { path } of unsettled) record({ path, ok: false, bytes: 0, message });
      return [];
    }
  }

  const unsent = options.resume && !options.legacy ? await skipHeld(files) : files;
  // A name's later files wait for the first one's answer: which file the
  // server keeps must not depend on which connection was faster. They then
  // meet it there, all at once: each is confirmed if the same, else refused.
  for (const round of firstOfEachNameThenTheRest(unsent)) {
    // Each pass sends what the last one failed to for a transient reason.
    let pass = round;
    for (let attempt = 0;; attempt++) {
      const again: UploadFile[] = [];
      const byPath = new Map(pass.map((entry) => [entry.path, entry]));
      queue = pass.values();
      onResult = (result) => {
        if (!result.ok && result.transient && attempt < retries) {
          again.push(byPath.get(result.path)!);
        } else record(result);
      };
      const workers = Math.max(1, Math.min(width, pass.length));
      retired = 0;
      await Promise.all(Array.from({ length: workers }, options.legacy ? legacyWorker : worker));
      if (again.length === 0) break;
      // As many connections as the server took this time.
      width = workers - retired;
      await new Promise((resolve) => setTimeout(resolve, Math.min(500 * 2 ** attempt, 4000)));
      pass = again;
    }
  }
  return report;
}

/** Splits files into the first of each name and, when there are any, the others; order kept. */
function firstOfEachNameThenTheRest(files: UploadFile[]): UploadFile[][] {
  const names = new Set<string>();
  const [firsts, rest]: UploadFile[][] = [[], []];
  for (const file of files) {
    if (names.has(file.name)) rest.push(file);
    else {
      names.add(file.name);
      firsts.push(file);
    }
  }
  return rest.length > 0 ? [firsts, rest] : [firsts];
}

/**
 * Counts failed files by their reason, most common first, so that thousands
 * of files failed for one reason read as one line after the list.
 *
 * @param failed The failed files, each with its message.
 * @param limit The most reasons listed one by one; any more are counted together.
 * @returns Lines of a count and a reason, or none when no two files failed
 * for the same reason (the list of files already says it all).
 */
export function failuresByReason(failed: readonly FileResult[], limit = 5): string[] {
  const counts = new Map<string, number>();
  for (const { message = "no reason given" } of failed) {
    counts.set(message, (counts.get(message) ?? 0) + 1);
  }
  // Stable: reasons of equal count keep the order they first came in.
  const reasons = [...counts].sort((a, b) => b[1] - a[1]);
  if (reasons.length === 0 || reasons[0][1] < 2) return [];
  const shown = reasons.length > limit + 1 ? reasons.slice(0, limit) : reasons;
  const others = reasons.slice(shown.length);
  const width = String(reasons[0][1]).length;
  const line = (count: number, text: string) => `  ${String(count).padStart(width)} ${text}`;
  return [
    ...shown.map(([reason, count]) => line(count, reason)),
    ...(others.length === 0 ? [] : [
      line(others.reduce((sum, [, count]) => sum + count, 0), `for ${others.length} other reasons`),
    ]),
  ];
}

const USAGE = `Usage: deno run --allow-net --allow-read client.ts [options] DIR|FILE...

Uploads the images in each DIR (and each FILE named) to server.ts and reports
every file the server did not confirm.

Options:
  --host HOST          server address (default 127.0.0.1)
  --port PORT          server port (default 9999)
  --ext LIST           extensions to pick from folders, comma-separated
                       (default jpg)
  -r, --recursive      descend into sub-folders (a link to a folder is reported,
                       not followed)
  --start N            skip the first N files (default 0)
  --batch-size N       files per batch, as the original (default 20)
  --max-batch N        send at most N batches (default 10000)
  -c, --concurrency N  parallel connections (default 4)
  --timeout SEC        deadline to connect, per write and per answer (default 50)
  --retries N          tries again, after 0.5 s, 1 s, 2 s, ..., files that failed
                       for a transient reason: refused, reset, timed out, server
                       busy (default 3)
  --legacy             talk to the original Python server: one file per
                       connection, no acknowledgement
  --token-file FILE    present the token on this file's first line, for a server
                       started with --token-file (grant --allow-read on it)
  --resume             ask the server first which files it already holds (same
                       name, size and CRC-32) and send only the others; sends
                       nothing to a --raw server, which cannot tell
  --tls                connect with TLS, checking the server's certificate
  --ca FILE            also trust this PEM certificate (a private CA or a
                       self-signed server); implies --tls
  -v, --verbose        one line per file sent
  -h, --help           show this help

In folders, hidden files and folders (names starting with a dot, such as a
camera card's ._ files or a phone's .thumbnails) are left out, and counted.

On SIGINT or SIGTERM it stops at once and says how many files were
confirmed; --resume then sends only what the server lacks.

Exit status: 0 when every selected file was confirmed (with --legacy: sent),
1 when any failed, it was stopped, or stdout could not be written, 2 on a
usage error.`;

async function main(): Promise<void> {
  // Nothing is left to report a failed stderr to; the work goes on without it.
  const stderr = new LogOutput(() => {}, { write: (bytes) => Deno.stderr.writeSync(bytes) });
  // The upload goes on without its log; the exit status says the log failed.
  const stdout = new LogOutput((error) =>
    stderr.line(`client.ts: Cannot write to stdout: ${error.message}`)
  );
  let parsed;
  try {
    const { values, positionals } = parseArgs({
      args: Deno.args,
      allowPositionals: true,
      options: {
        host: { type: "string", default: "127.0.0.1" },
        port: { type: "string", default: "9999" },
        ext: { type: "string", default: "jpg" },
        recursive: { type: "boolean", short: "r", default: false },
        start: { type: "string", default: "0" },
        "batch-size": { type: "string", default: "20" },
        "max-batch": { type: "string", default: "10000" },
        concurrency: { type: "string", short: "c", default: "4" },
        timeout: { type: "string", default: "50" },
        retries: { type: "string", default: "3" },
        legacy: { type: "boolean", default: false },
        tls: { type: "boolean", default: false },
        resume: { type: "boolean", default: false },
        "token-file": { type: "string" },
        ca: { type: "string" },
        verbose: { type: "boolean", short: "v", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
    });
    if (values.help) {
      stdout.line(USAGE);
      Deno.exit(stdout.failed ? 1 : 0);
    }
    if (positionals.length === 0) {
      throw new TypeError("Missing DIR: name at least one folder or file");
    }
    if (values.legacy && values["token-file"] !== undefined) {
      throw new TypeError("Invalid --token-file: the original server (--legacy) takes no token");
    }
    if (values.legacy && values.resume) {
      throw new TypeError("Invalid --resume: the original server (--legacy) answers no queries");
    }
    const extensions = values.ext.split(",").map((e) => e.trim().replace(/^\*?\./, ""))
      .filter(Boolean);
    if (extensions.length === 0) {
      throw new TypeError(
        `Invalid --ext: name at least one extension, got ${
          JSON.stringify(values.ext.slice(0, 80))
        }`,
      );
    }
    parsed = {
      paths: positionals,
      collect: {
        extensions,
        recursive: values.recursive,
        start: parseCount(values.start, "--start", 0),
        batchSize: parseCount(values["batch-size"], "--batch-size"),
        maxBatch: parseCount(values["max-batch"], "--max-batch"),
      },
      upload: {
        host: parseHost(values.host),
        port: parsePort(values.port, 1),
        concurrency: parseCount(values.concurrency, "--concurrency"),
        timeout: parseSeconds(values.timeout, "--timeout"),
        retries: parseCount(values.retries, "--retries", 0),
        legacy: values.legacy,
        resume: values.resume,
        tokenFile: values["token-file"],
        tls: values.tls || values.ca !== undefined ? { caFile: values.ca } : undefined,
      },
      verbose: values.verbose,
    };
  } catch (error) {
    stderr.line(`client.ts: ${describeError(error)}\nTry 'client.ts --help'.`);
    Deno.exit(2);
  }

  if (isOlderThanMinDeno(Deno.version.deno)) {
    stderr.line(`client.ts: Needs Deno ${MIN_DENO} or later: this is Deno ${Deno.version.deno}`);
    Deno.exit(1);
  }
  let selection: Selection;
  let tls: UploadOptions["tls"];
  let token: string | undefined;
  try {
    await checkNetPermission(formatAddress(parsed.upload.host, parsed.upload.port));
    const tokenFile = parsed.upload.tokenFile;
    token = tokenFile === undefined ? undefined : await readTokenFile(tokenFile);
    const caFile = parsed.upload.tls?.caFile;
    const ca = caFile === undefined ? undefined : await Deno.readTextFile(caFile);
    // Deno ignores a file with no certificate in it, and the server then seems untrusted.
    if (ca !== undefined && !ca.includes("-----BEGIN CERTIFICATE-----")) {
      throw new SyntaxError(`Invalid --ca: ${caFile} holds no PEM certificate`);
    }
    tls = parsed.upload.tls && { caCerts: ca === undefined ? undefined : [ca] };
    selection = await collectFiles(parsed.paths, parsed.collect);
  } catch (error) {
    stderr.line(`client.ts: ${describeError(error)}`);
    Deno.exit(error instanceof Deno.errors.NotCapable || error instanceof SyntaxError ? 2 : 1);
  }
  for (const skipped of selection.skipped) {
    stderr.line(`skipped ${skipped.path}: ${skipped.message}`);
  }
  const { host, port, concurrency, legacy } = parsed.upload;
  const total = selection.files.length + selection.skipped.length;
  const leftOut = selection.hidden === 0
    ? ""
    : `; left out ${counted(selection.hidden, "name")} starting with a dot`;
  if (total === 0) {
    const start = parsed.collect.start;
    stderr.line(
      `client.ts: No files to send: ${
        selection.found > 0
          ? `--start ${start} skips all ${selection.found} files found`
          : `none matching *.${parsed.collect.extensions.join(", *.")}`
      }${leftOut}`,
    );
    Deno.exit(0);
  }

  const tty = Deno.stdout.isTerminal();
  const started = performance.now();
  const tally = { confirmed: 0, bytes: 0, already: 0 };
  /** The files failed so far; the selected files that cannot be sent count among them. */
  const failures: FileResult[] = [...selection.skipped];
  const progress = () => {
    const done = tally.confirmed + failures.length;
    const seconds = (performance.now() - started) / 1000;
    const rate = tally.bytes / seconds;
    const eta = done > 0 ? (seconds / done) * (total - done) * 1000 : NaN;
    const line = `${done}/${total} files  ${formatBytes(tally.bytes)}  ${
      formatBytes(rate)
    }/s  ETA ${Number.isFinite(eta) ? formatDuration(eta) : "?"}`;
    stdout.text(`\r\x1b[K${line}`);
  };
  const ticker = tty ? setInterval(progress, 250) : undefined;
  const clearProgress = () => tty && stdout.text("\r\x1b[K");
  const printReasons = () => {
    const lines = failuresByReason(failures);
    if (lines.length > 0) stderr.line(["failed, by reason:", ...lines].join("\n"));
  };
  const summary = () => {
    const elapsed = performance.now() - started;
    return `${legacy ? "sent" : "confirmed"} ${tally.confirmed} of ${counted(total, "file")} (${
      formatBytes(tally.bytes)
    }) in ${formatDuration(elapsed)}, ${formatBytes(tally.bytes / (elapsed / 1000))}/s${
      tally.already > 0 ? ` (${tally.already} already there, not sent)` : ""
    }${failures.length > 0 ? `; ${failures.length} failed (listed above)` : ""}`;
  };

  // Frames in flight are not waited for: the server keeps each one that
  // arrived whole, and --resume finds it there next time.
  const shutdown = (signal: Deno.Signal) => {
    clearInterval(ticker);
    clearProgress();
    const unconfirmed = total - tally.confirmed - failures.length;
    printReasons();
    stdout.line(
      `${summary()}; ${signal}: stopped with ${unconfirmed} not ${legacy ? "sent" : "confirmed"}`,
    );
    Deno.exit(1);
  };
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    Deno.addSignalListener(signal, () => shutdown(signal));
  }

  const connections = Math.max(1, Math.min(concurrency, selection.files.length));
  const over = `over ${counted(connections, "connection")}`;
  const address = formatAddress(host, port);
  const count = selection.files.length;
  const files = counted(count, "file");
  stdout.line(
    (parsed.upload.resume
      ? `asking ${address} which of ${files} it holds, then sending the others ${over}`
      : `sending ${files} to ${address} ${over}${legacy ? " (legacy)" : ""}`) + leftOut,
  );
  try {
    await uploadFiles(selection.files, {
      ...parsed.upload,
      tls,
      token,
      onResult(result) {
        if (!result.ok) {
          failures.push(result);
          clearProgress();
          stderr.line(`failed ${result.path}: ${result.message}`);
          return;
        }
        tally.confirmed++;
        tally.bytes += result.bytes;
        if (result.alreadyThere) tally.already++;
        if (parsed.verbose) {
          clearProgress();
          const saved = result.savedAs ? ` as ${result.savedAs}` : "";
          stdout.line(`${result.alreadyThere ? "already there:" : "sent"} ${result.path}${saved}`);
        }
      },
    });
  } finally {
    clearInterval(ticker);
    clearProgress();
  }
  printReasons();
  stdout.line(summary());
  Deno.exit(tally.confirmed === total && !stdout.failed ? 0 : 1);
}

if (import.meta.main) await main();
