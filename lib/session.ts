/**
 * One connection to the receiver: its frames read in turn, each file saved
 * or kept, each answered, and its end reported.
 *
 * @module
 */
import { crc32 } from "node:zlib";
import { timingSafeEqual } from "node:crypto";
import { Answers } from "../protocol/answers.ts";
import {
  encodeAck,
  encodeHave,
  encodeHelloAnswer,
  isHello,
  isQuery,
  isToken,
  parseHello,
  parseQuery,
  RAW_BYTES,
  REFUSALS,
} from "../protocol/control.ts";
import {
  classifyError,
  isDisconnect,
  osReason,
  ProtocolError,
  rephrase,
} from "../protocol/errors.ts";
import { type FrameHead, FrameReader, type FrameReaderOptions } from "../protocol/frame_reader.ts";
import { type ByteSource, closeQuietly, concatBytes, withDeadline } from "../protocol/io.ts";
import { HEADER_SIZE, NAME_SIZE } from "../protocol/limits.ts";
import { parseName } from "../protocol/name.ts";
import {
  type FileMeta,
  isPathFrame,
  MAX_PATH_LINE,
  parsePathLine,
  PATHS,
} from "../protocol/path.ts";
import type { FrameSlots } from "./admission.ts";
import type { Folder, Quarantine } from "./folder.ts";
import { removeQuietly, writeAllSync } from "./files.ts";
import { counted, formatAddress, formatBytes, formatDuration } from "./format.ts";
import { sniffExtension } from "./images.ts";

/**
 * Something that happened on the server, for the log.
 *
 * @example
 * ```ts
 * import type { ServerEvent } from "../protocol.ts";
 *
 * const event: ServerEvent = { type: "refused", peer: "10.0.0.1:5000", message: "Not in an --allow block: dropped" };
 * ```
 */
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

/**
 * Counts kept while the server runs.
 *
 * @example
 * ```ts
 * import type { ServerStats } from "../protocol.ts";
 *
 * const none: ServerStats = { files: 0, duplicates: 0, bytes: 0, errors: 0, received: 0, kept: 0, shed: 0 };
 * ```
 */
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

const NO_HARD_LINKS_LINE =
  "no hard links on this file system (FAT or exFAT?): each file is renamed into place once its name is found free";

/**
 * The log line for a server event, and where it goes; none for a saved file
 * when `quiet`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { eventLine } from "../protocol.ts";
 *
 * assert.deepEqual(eventLine({ type: "accept-error", message: "Too many open files" }, false), {
 *   stream: "stderr",
 *   text: "accept failed: Too many open files",
 * });
 * ```
 */
export function eventLine(
  event: ServerEvent,
  quiet: boolean,
): { stream: "stdout" | "stderr"; text: string } | undefined {
  switch (event.type) {
    case "saved": {
      if (quiet) return undefined;
      const verb = event.duplicate ? "already have" : "saved";
      const took = `${formatBytes(event.bytes)} in ${formatDuration(event.ms)}`;
      return { stream: "stdout", text: `${verb} ${event.file} (${took}) from ${event.peer}` };
    }
    case "rejected":
    case "refused":
      return { stream: "stderr", text: `${event.type} ${event.peer}: ${event.message}` };
    case "kept":
      return {
        stream: "stderr",
        text: `kept ${event.peer}'s frame as ${event.file}: ${event.message}`,
      };
    case "shed": {
      const idle = formatDuration(event.idleMs);
      const text = `shed ${event.peer}: idle ${idle} without a frame, closed for a newcomer`;
      return { stream: "stderr", text };
    }
    case "cleaned": {
      const files = counted(event.files, "temporary file");
      return { stream: "stdout", text: `removed ${files} left by an earlier run` };
    }
    case "no-hard-links":
      return { stream: "stdout", text: NO_HARD_LINKS_LINE };
    case "accept-error":
      return { stream: "stderr", text: `accept failed: ${event.message}` };
  }
}

/**
 * What a {@linkcode Session} shares with the server that runs it: the
 * example of {@linkcode Session} makes one by hand.
 *
 * @example
 * ```ts
 * import type { SessionHost } from "../protocol.ts";
 *
 * type Shared = Pick<SessionHost, "raw" | "fsync" | "token">;
 * const plain: Shared = { raw: false, fsync: false, token: undefined };
 * ```
 */
export interface SessionHost {
  readonly folder: Folder;
  /** Where refused whole frames are kept; none in raw mode. */
  readonly quarantine: Quarantine | undefined;
  readonly slots: FrameSlots;
  readonly stats: ServerStats;
  /** Store frame bodies as they came rather than decoding them. */
  readonly raw: boolean;
  /** Sync each file before it is answered. */
  readonly fsync: boolean;
  /** Agree to raw-byte frames when our client offers them (never in raw mode). */
  readonly rawFrames: boolean;
  /** The token every connection must present first, if any. */
  readonly token: string | undefined;
  /** Milliseconds an answer may take to be written. */
  readonly idleTimeout: number;
  /** Whether the server is stopping: no frame is begun then. */
  readonly stopping: boolean;
  /** Reports an event; never throws. */
  emit(event: ServerEvent): void;
  /** The session waits for a frame with nothing on its way, and may be shed. */
  idle(session: Session): void;
  /** The session's wait for a frame is over. */
  active(session: Session): void;
}

/** Longest a connection is read and ignored after the answer that ends it. */
const LINGER_MS = 2_000;

/** Milliseconds a connection may run without a turn of the event loop. */
const YIELD_AFTER_MS = 10;
/** A read that took longer waited for the kernel, and so let the event loop turn. */
const WAITED_MS = 1;

/**
 * A connection's reads that let accept() and the other connections run
 * once this one has held the thread for a while. Deno completes a read at
 * once when the kernel holds data, without a turn of the event loop: a
 * client that kept queries coming (four batches ahead) held accept() back
 * for the whole 170 ms of a 2,000-file query run, its own upload
 * connections with it, and a large frame could do the same. Only a timer
 * frees them on the shaped link (setImmediate() and a MessageChannel did
 * not: 1.20 s against 1.13 s for that upload); every 10 ms, it costs a lone
 * large upload on loopback about 1%.
 */
class TakingTurns implements ByteSource {
  readonly #source: ByteSource;
  /** When the event loop last turned while this connection read. */
  #turned = performance.now();

  constructor(source: ByteSource) {
    this.#source = source;
  }

  async read(buffer: Uint8Array): Promise<number | null> {
    if (performance.now() - this.#turned >= YIELD_AFTER_MS) {
      await new Promise((resolve) => setTimeout(resolve, 0));
      this.#turned = performance.now();
    }
    const started = performance.now();
    const n = await this.#source.read(buffer);
    const now = performance.now();
    if (now - started > WAITED_MS) this.#turned = now;
    return n;
  }
}

/** Largest data of a query or token frame; anything larger is refused. */
const MAX_CONTROL_DATA = 1368;

const encoder = new TextEncoder();

/**
 * Serves one connection: reads frames in turn, takes a turn from the host's
 * slots for each, saves, keeps or refuses it, and answers.
 *
 * @example Save one frame sent over a real connection
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeFrame, Folder, FrameSlots, Session, type SessionHost } from "../protocol.ts";
 *
 * const out = await Deno.makeTempDir();
 * const folder = await Folder.open(out);
 * const stats = { files: 0, duplicates: 0, bytes: 0, errors: 0, received: 0, kept: 0, shed: 0 };
 * const host: SessionHost = {
 *   folder, stats, quarantine: undefined, raw: false, fsync: false, token: undefined, rawFrames: true,
 *   slots: new FrameSlots({ max: 1, perAddress: 1, timeout: 1000 }),
 *   idleTimeout: 1000, stopping: false, emit() {}, idle() {}, active() {},
 * };
 * using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const { port } = listener.addr as Deno.NetAddr;
 * const client = await Deno.connect({ hostname: "127.0.0.1", port });
 * const serving = new Session(await listener.accept(), host).run();
 * await client.write(encodeFrame("cat", new Uint8Array([0xff, 0xd8, 0xff])));
 * await client.closeWrite();
 * await serving;
 * client.close();
 * assert.equal(stats.files, 1);
 * assert.deepEqual(await Deno.readFile(`${out}/cat.jpg`), new Uint8Array([0xff, 0xd8, 0xff]));
 * folder.close();
 * await Deno.remove(out, { recursive: true });
 * ```
 */
export class Session {
  /** The connection served. */
  readonly conn: Deno.Conn;
  /** Its frames, read with the host's limits. */
  readonly reader: FrameReader;
  /** Whether a frame has begun on it: a stop lets that finish. */
  busy = false;
  /** When it began to wait for its next frame, if it waits. */
  idleSince = 0;
  readonly #host: SessionHost;
  readonly #peer: string;
  readonly #address: string;
  readonly #answers: Answers;
  #authenticated: boolean;
  /** Whether this connection's file frames carry raw bytes, as agreed in a hello. */
  #rawBytes = false;
  /** Whether its file frames may carry paths and mtimes, as agreed in a hello. */
  #paths = false;
  /** Bytes read already added to the host's count. */
  #counted = 0;

  /**
   * Creates the session; {@linkcode Session.run} serves it.
   *
   * @param conn The accepted connection.
   * @param host What the server shares with it.
   * @param readerOptions The frame reader's limits.
   */
  constructor(conn: Deno.Conn, host: SessionHost, readerOptions: FrameReaderOptions = {}) {
    this.conn = conn;
    this.#host = host;
    const addr = conn.remoteAddr as Deno.NetAddr;
    this.#address = addr.hostname;
    this.#peer = formatAddress(addr.hostname, addr.port);
    this.reader = new FrameReader(new TakingTurns(conn), readerOptions);
    this.#answers = new Answers(conn, host.idleTimeout);
    this.#authenticated = host.token === undefined;
  }

  /** The peer's address and port, for the log. */
  get peer(): string {
    return this.#peer;
  }

  /** Serves frames until the client closes, the stream breaks or the server stops; then closes. */
  async run(): Promise<void> {
    try {
      for (let head; (head = await this.#nextHead()) !== null;) {
        // Begun, if not yet received: a stop lets it finish, as the client sent it.
        this.busy = true;
        const turn = this.#host.slots.take(this.#address);
        if (turn) await turn;
        try {
          await this.#answers.add(await this.#answer(head));
        } finally {
          this.#host.slots.give(this.#address);
        }
      }
    } catch (error) {
      await this.#fail(error);
    } finally {
      await this.#answers.flush();
      this.#account();
      closeQuietly(this.conn);
    }
  }

  /** Waits for the next frame's head, as an idle connection when nothing is on its way. */
  async #nextHead(): Promise<FrameHead | null> {
    if (this.#host.stopping) return null;
    this.busy = false;
    // A client that waits for each answer before its next frame gets it at once.
    if (this.reader.buffered < HEADER_SIZE + NAME_SIZE) await this.#answers.flush();
    // Only a connection with nothing on its way is idle, and so may be shed.
    if (this.reader.buffered === 0) {
      this.idleSince = performance.now();
      this.#host.idle(this);
    }
    try {
      return await this.reader.readHead();
    } finally {
      this.#host.active(this);
    }
  }

  /** Reads one frame's body and says what to answer. */
  async #answer(head: FrameHead): Promise<Uint8Array> {
    if (isToken(head.nameField)) {
      const matches = await this.#tokenMatches(head);
      this.#account();
      if (!matches) throw new ProtocolError("auth", "Authentication failed: wrong token");
      this.#authenticated = true;
      return encodeAck({ ok: true, file: "!", bytes: 0, crc32: 0 });
    }
    if (!this.#authenticated) {
      throw new ProtocolError("auth", `${REFUSALS.auth}: send the token first`);
    }
    if (isHello(head.nameField)) return await this.#hello(head);
    const answer = isQuery(head.nameField) ? await this.#lookUp(head) : await this.#fileFrame(head);
    // Counted before each answer, so the figure is current once a client has it.
    this.#account();
    return answer;
  }

  #account(): void {
    this.#host.stats.received += this.reader.bytesRead - this.#counted;
    this.#counted = this.reader.bytesRead;
  }

  /** Reports what ended the connection and, when the client can hear it, answers why. */
  async #fail(error: unknown): Promise<void> {
    const quiet = error instanceof ProtocolError
      ? error.code === "idle"
      : !this.busy && (this.#host.stopping || isDisconnect(error));
    if (quiet) return;
    this.#host.stats.errors++;
    const reason = error instanceof Error ? error.message : String(error);
    const message = isDisconnect(error)
      ? `Connection lost inside a frame: ${reason}`
      : classifyError(error) === "not-tls"
      ? `Not a TLS client: ${reason}`
      : reason;
    const busy = error instanceof Deno.errors.Busy;
    this.#host.emit({ type: busy ? "refused" : "rejected", peer: this.#peer, message });
    if (error instanceof ProtocolError || busy) {
      await this.#answers.add(encodeAck({ ok: false, message }));
      await this.#answers.flush();
      await drainBriefly(this.conn);
    }
  }

  /** Reads the data of a query or token frame, which is small or refused. */
  async #smallData(head: FrameHead): Promise<Uint8Array> {
    if (head.dataLength > MAX_CONTROL_DATA) {
      throw new ProtocolError("size", `Control frame too large: ${head.dataLength} bytes of data`);
    }
    const chunks: Uint8Array[] = [];
    for await (const chunk of this.reader.data()) chunks.push(chunk.slice());
    return concatBytes(chunks);
  }

  /** Tells whether a token frame carries the server's token (any, when it has none). */
  async #tokenMatches(head: FrameHead): Promise<boolean> {
    const given = await this.#smallData(head);
    if (this.#host.token === undefined) return true;
    const expected = encoder.encode(this.#host.token);
    return given.length === expected.length && timingSafeEqual(given, expected);
  }

  /**
   * Answers a hello: agrees to raw-byte frames when they are on, and to
   * paths; neither in raw mode, whose bodies are kept as the original's
   * base64 ones under numbers.
   */
  async #hello(head: FrameHead): Promise<Uint8Array> {
    const offered = parseHello(await this.#smallData(head));
    const agreed = this.#host.raw
      ? []
      : offered.filter((capability) =>
        (capability === RAW_BYTES && this.#host.rawFrames) || capability === PATHS
      );
    this.#rawBytes = agreed.includes(RAW_BYTES);
    this.#paths = agreed.includes(PATHS);
    // Only our client says hello, and it pads every name.
    this.reader.padNames();
    this.#account();
    return encodeHelloAnswer(agreed);
  }

  /** Answers a query: the file saved under that name (or at that path) with that size, if any. */
  async #lookUp(head: FrameHead): Promise<Uint8Array> {
    const query = parseQuery(await this.#smallData(head), { paths: this.#paths });
    // NONE would have the client send everything again, stored twice under new numbers.
    if (this.#host.raw) return encodeAck({ ok: false, message: RAW_QUERY_REFUSAL });
    const { folder } = this.#host;
    return encodeHave(this.#paths ? folder.heldAt(query) : folder.heldAs(query));
  }

  /**
   * Receives a file frame and answers it. A frame refused for its name or
   * data, or for a different file of its name, is kept in the quarantine
   * when it arrives whole: its client may not hear the refusal.
   */
  async #fileFrame(head: FrameHead): Promise<Uint8Array> {
    const started = performance.now();
    const tempPath = this.#host.folder.temporaryPath();
    let saved: Saved;
    try {
      saved = await this.#receive(head, tempPath);
    } catch (error) {
      // A lost connection or a stream out of step ends the connection, not just the frame.
      if (isDisconnect(error) || error instanceof ProtocolError && !error.recoverable) {
        throw error;
      }
      return await this.#refuse(head, tempPath, error);
    } finally {
      // Gone before a save is reported: whoever reads the log then finds only the saved file.
      removeQuietly(tempPath);
    }
    const stats = this.#host.stats;
    stats.files++;
    stats.bytes += saved.bytes;
    if (saved.duplicate) stats.duplicates++;
    const ms = performance.now() - started;
    this.#host.emit({ type: "saved", peer: this.#peer, ...saved, ms });
    return encodeAck({ ok: true, file: saved.file, bytes: saved.bytes, crc32: saved.crc32 });
  }

  /** Refuses a frame for a bad name or data, or a file that cannot be saved: this frame only. */
  async #refuse(head: FrameHead, tempPath: string, error: unknown): Promise<Uint8Array> {
    const reason = error instanceof Error ? error.message : String(error);
    this.#host.stats.errors++;
    // Our own client, which sent a path, hears the refusal: only the original's frames are kept.
    const keepable = !(this.#paths && isPathFrame(head.nameField)) &&
      (error instanceof ProtocolError || error instanceof Deno.errors.AlreadyExists);
    const kept = keepable ? await this.#keep(head, tempPath) : undefined;
    if (typeof kept !== "string") {
      const message = kept === undefined ? reason : `${reason} (not kept: ${kept.reason})`;
      this.#host.emit({ type: "rejected", peer: this.#peer, message });
      await this.reader.skipBody();
      return encodeAck({ ok: false, message: reason });
    }
    this.#host.stats.kept++;
    this.#host.emit({ type: "kept", peer: this.#peer, file: kept, message: reason });
    return encodeAck({ ok: false, message: `${reason}: kept as ${kept}` });
  }

  /**
   * Keeps a refused frame in the quarantine, if there is one with room.
   *
   * @returns Where it was kept; `undefined` where it was not tried; why it
   * failed where it could not be written (a full disk), the frame then being
   * refused as before. A frame cut short still ends the connection.
   */
  async #keep(head: FrameHead, tempPath: string): Promise<string | { reason: string } | undefined> {
    try {
      return await this.#host.quarantine?.keep(this.reader, head, {
        decodedPath: tempPath,
        rawBytes: this.#rawBytes,
      });
    } catch (error) {
      const reason = osReason(error);
      if (reason === undefined || isDisconnect(error)) throw error;
      return { reason };
    }
  }

  /**
   * Receives one body into the temporary file and commits it. The caller
   * removes the temporary file, which holds what was decoded if this throws.
   */
  async #receive(head: FrameHead, tempPath: string): Promise<Saved> {
    const raw = this.#host.raw;
    const meta = this.#paths && isPathFrame(head.nameField) ? await this.#pathLine() : undefined;
    const name = raw ? "" : meta?.path ?? parseName(head.nameField);
    try {
      const body = raw ? await this.#writeBody(head, tempPath) : await this.#writeData(tempPath);
      // Set before the file appears under its name, so that none sees it new.
      if (meta) Deno.utimeSync(tempPath, new Date(), new Date(meta.mtime));
      // A path names the file whole; a name is completed with the type its bytes show.
      const finalName = raw ? undefined : meta ? name : `${name}.${sniffExtension(body.head)}`;
      const committed = await this.#host.folder.commit(tempPath, finalName);
      if (!raw && !meta) this.#host.folder.remember(name);
      return { ...committed, bytes: body.bytes, crc32: body.crc };
    } catch (error) {
      const reason = osReason(error);
      if (reason === undefined || isDisconnect(error) || error instanceof Deno.errors.Busy) {
        throw error;
      }
      throw rephrase(error, `Cannot save ${raw ? "the frame" : name}: ${reason}`);
    }
  }

  /** Reads the path and mtime at the start of a path frame's data. */
  async #pathLine(): Promise<FileMeta> {
    return parsePathLine(await this.reader.readBodyLine(MAX_PATH_LINE));
  }

  /** Writes a frame body byte for byte, name field included, as the original server does. */
  async #writeBody(head: FrameHead, tempPath: string): Promise<Written> {
    using file = this.#host.folder.create(tempPath);
    writeAllSync(file, head.nameField);
    let crc = crc32(head.nameField);
    for await (const chunk of this.reader.raw()) {
      crc = crc32(chunk, crc);
      writeAllSync(file, chunk);
    }
    if (this.#host.fsync) await file.sync();
    return { bytes: head.bodyLength, crc, head: new Uint8Array() };
  }

  /** Decodes a frame's data into the temporary file; keeps its first bytes for the type. */
  async #writeData(tempPath: string): Promise<Written> {
    const { folder, fsync } = this.#host;
    const sniffed = new Uint8Array(12);
    let bytes = 0;
    let crc = 0;
    let file: Deno.FsFile | undefined;
    try {
      // Between our own peers the data may come as it is, agreed in a hello.
      for await (const chunk of this.#rawBytes ? this.reader.raw() : this.reader.data()) {
        if (bytes < sniffed.length) sniffed.set(chunk.subarray(0, sniffed.length - bytes), bytes);
        bytes += chunk.length;
        crc = crc32(chunk, crc);
        // A file that arrived whole costs one call, not an open, a write and a close.
        if (file === undefined && this.reader.remaining === 0 && !fsync) {
          folder.createWith(tempPath, chunk);
        } else {
          file ??= folder.create(tempPath);
          writeAllSync(file, chunk);
        }
      }
      // An empty body yields no chunk, yet its file must exist all the same.
      if (bytes === 0) file = folder.create(tempPath);
      // With --fsync every file went through a handle, which the sync needs.
      if (fsync) await file!.sync();
    } finally {
      file?.close();
    }
    return { bytes, crc, head: sniffed.subarray(0, Math.min(bytes, sniffed.length)) };
  }
}

/** A frame saved: under which name, whether it was already there, and what the answer reports. */
interface Saved {
  file: string;
  duplicate: boolean;
  bytes: number;
  crc32: number;
}

/** What went into a temporary file. */
interface Written {
  /** Bytes the answer reports: the file's, or with `--raw` the body's. */
  bytes: number;
  /** CRC-32 of those bytes. */
  crc: number;
  /** The file's first bytes, which tell its type. */
  head: Uint8Array;
}

/** A `--raw` server's answer to a query: it cannot tell which files it holds. */
const RAW_QUERY_REFUSAL = "Cannot answer a query: a --raw server keeps no names";

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
