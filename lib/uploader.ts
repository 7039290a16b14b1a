/**
 * The sending side of one connection: files streamed as frames, sent ahead
 * of their answers, and each answer matched to its file.
 *
 * @module
 */
import { crc32 } from "node:zlib";
import {
  type Ack,
  agreedIn,
  encodeHello,
  encodeToken,
  MAX_ACK_SIZE,
  parseAck,
  RAW_BYTES,
  refusalOf,
} from "../protocol/control.ts";
import { classifyError, isTransient, ProtocolError } from "../protocol/errors.ts";
import { base64Length, encodeHeader } from "../protocol/frame.ts";
import { closeQuietly, concatBytes, withDeadline, writeAll } from "../protocol/io.ts";
import { HEADER_SIZE, NAME_SIZE } from "../protocol/limits.ts";
import { LineReader } from "../protocol/line_reader.ts";
import { encodeName } from "../protocol/name.ts";
import { formatAddress } from "./format.ts";
import { connectPinned } from "./pinned_tls.ts";
import type { RateLimiter } from "./rate.ts";
import { encodePathHead, MAX_PATH_LINE, PATHS } from "../protocol/path.ts";

/**
 * A file chosen for upload.
 *
 * @example
 * ```ts
 * import type { UploadFile } from "../protocol.ts";
 *
 * const file: UploadFile = { path: "photos/cat.jpg", name: "cat" };
 * ```
 */
export interface UploadFile {
  /** Where it is read from. */
  path: string;
  /** The name sent in the frame: the file name without its extension. */
  name: string;
  /**
   * Its path relative to the folder named (its file name, for a file
   * named), sent with its mtime instead of `name` to a server that agrees to
   * paths. Without it, `name` is sent.
   * @default {undefined}
   */
  remote?: string;
}

/**
 * What happened to one file.
 *
 * @example
 * ```ts
 * import type { FileResult } from "../protocol.ts";
 *
 * const refused: FileResult = {
 *   path: "photos/cat.jpg",
 *   ok: false,
 *   bytes: 0,
 *   message: "Refused by the server: Server busy: 256 frames in progress",
 *   transient: true,
 * };
 * ```
 */
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

/**
 * Options for {@linkcode Uploader}.
 *
 * @example
 * ```ts
 * import type { UploaderOptions } from "../protocol.ts";
 *
 * const options: UploaderOptions = { timeout: 50_000, window: 32, onResult: console.log };
 * ```
 */
export interface UploaderOptions {
  /** Milliseconds allowed for each write and each answer. */
  timeout: number;
  /** Frames sent ahead of their answers. */
  window: number;
  /** Called once for every file, as soon as its fate is known. */
  onResult: (result: FileResult) => void;
  /**
   * The server's token, presented before the first frame.
   * @default {undefined}
   */
  token?: string;
  /**
   * Offer raw-byte frames before the first file, and send file data as it
   * is when the server agrees. Only toward our server.
   * @default {false}
   */
  rawFrames?: boolean;
  /**
   * Offer path frames before the first file, and send each file that has a
   * `remote` path under it, with its mtime, when the server agrees. Only
   * toward our server.
   * @default {false}
   */
  paths?: boolean;
  /**
   * The cap on bytes per second this connection shares with the others.
   * @default {undefined}
   */
  limiter?: RateLimiter;
}

/** Bytes of file read per chunk: a multiple of 3, so chunks encode alone. */
const CHUNK_SIZE = 3 * 65_536;

/**
 * What a client waits for after each frame, as a timeout names it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ANSWER } from "../protocol.ts";
 *
 * assert.equal(ANSWER.waitingFor, "the server's answer");
 * ```
 */
export const ANSWER = { waitingFor: "the server's answer" } as const;

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

/**
 * Where to connect, and how.
 *
 * @example
 * ```ts
 * import type { Target } from "../protocol.ts";
 *
 * const target: Target = { hostname: "127.0.0.1", port: 9999, tls: { caCerts: [] } };
 * ```
 */
export interface Target {
  hostname: string;
  port: number;
  /** Connect with TLS, trusting these PEM certificates as well as the system's. */
  tls?: { caCerts?: string[] };
}

/**
 * Writes all of `bytes` to a peer, failing with a `timeout` error after `ms` milliseconds.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { writeWithin } from "../protocol.ts";
 *
 * using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const { port } = listener.addr as Deno.NetAddr;
 * using conn = await Deno.connect({ hostname: "127.0.0.1", port });
 * using peer = await listener.accept();
 * await writeWithin(conn, new Uint8Array([1, 2]), 1000);
 * assert.equal(await peer.read(new Uint8Array(2)), 2);
 * ```
 */
export function writeWithin(conn: Deno.Conn, bytes: Uint8Array, ms: number): Promise<void> {
  return withDeadline(writeAll(conn, bytes), ms, { waitingFor: "the server to read" });
}

/**
 * Connects within `ms` milliseconds, with TCP_NODELAY; with TLS, the
 * handshake too, so that the server is verified before the first frame. A
 * server whose certificate is marked as a CA, as `openssl req -x509` makes
 * it, is accepted only when that certificate is byte for byte one of
 * `caCerts`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { connectWithin } from "../protocol.ts";
 *
 * using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const { port } = listener.addr as Deno.NetAddr;
 * using conn = await connectWithin({ hostname: "127.0.0.1", port }, 1000);
 * assert.equal((conn.remoteAddr as Deno.NetAddr).port, port);
 * ```
 */
export async function connectWithin(target: Target, ms: number): Promise<Deno.Conn> {
  const { hostname, port, tls } = target;
  // TLS over a socket set to no delay: a TlsConn has no setNoDelay(), and with
  // Nagle's algorithm each small query or hello waits for a delayed ACK.
  const connecting = Deno.connect({ hostname, port }).then<Deno.Conn>((conn) => {
    conn.setNoDelay(true);
    return tls ? Deno.startTls(conn, { hostname, caCerts: tls.caCerts }) : conn;
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
    // The tutorials' one-line certificate is marked as a CA, which TLS refuses
    // as a server's own: it is accepted when the server presents exactly it.
    if (tls?.caCerts && classifyError(error) === "ca-certificate") {
      return await connectPinned({ hostname, port, pinned: tls.caCerts }, ms);
    }
    throw error;
  }
}

/**
 * Streams files as frames, reusing one chunk of memory whatever the file
 * size: a frame's header, name and first data leave in one write.
 *
 * @example Send a file as one frame
 * ```ts
 * import assert from "node:assert/strict";
 * import { connectWithin, FrameWriter } from "../protocol.ts";
 * import { startServer } from "../server.ts";
 *
 * const out = await Deno.makeTempDir();
 * const server = await startServer({ host: "127.0.0.1", port: 0, out });
 * const target = { hostname: "127.0.0.1", port: server.addr.port };
 * const input = await Deno.makeTempDir();
 * await Deno.writeFile(`${input}/cat.jpg`, new Uint8Array([0xff, 0xd8, 0xff, 0xe0]));
 * const file = { path: `${input}/cat.jpg`, name: "cat" };
 * using conn = await connectWithin(target, 1000);
 * const sent = await new FrameWriter(1000).send(conn, file);
 * assert.equal(sent.bytes, 4);
 * await server.shutdown();
 * for (const folder of [out, input]) await Deno.remove(folder, { recursive: true });
 * ```
 */
export class FrameWriter {
  readonly #raw = new Uint8Array(CHUNK_SIZE);
  readonly #out = new Uint8Array(
    HEADER_SIZE + NAME_SIZE + MAX_PATH_LINE + base64Length(CHUNK_SIZE),
  );
  readonly #encoder = new TextEncoder();
  readonly #probe = new Uint8Array(1);
  readonly #timeout: number;
  readonly #limiter: RateLimiter | undefined;
  /** Whether part of the last frame reached the wire. */
  started = false;

  /**
   * @param timeout Milliseconds each write may take.
   * @param limiter The cap on bytes per second, if any.
   */
  constructor(timeout: number, limiter?: RateLimiter) {
    this.#timeout = timeout;
    this.#limiter = limiter;
  }

  /**
   * Sends one file, its data as base64, or with `rawBytes` as it is; with
   * `paths`, under its `remote` path and with its mtime (frames both of our
   * peers agreed to in a hello).
   *
   * @returns Bytes of file data sent, and the CRC-32 of that data and of the
   * frame body (what a `--raw` server saves).
   * @throws {Error} When the file cannot be read, or changes while being
   * sent; {@linkcode FrameWriter.started} tells whether part of the frame
   * was already written.
   */
  async send(conn: Deno.Conn, entry: UploadFile, format: FrameFormat = {}): Promise<Sent> {
    const rawBytes = format.rawBytes ?? false;
    const remote = format.paths ? entry.remote : undefined;
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
    // A file that ends within the first chunk gave its size by ending: no
    // stat, unless its mtime goes with it.
    let size = n;
    let mtime = 0;
    if (n === want || remote !== undefined) {
      const info = file.statSync();
      if (!info.isFile) throw new TypeError("Cannot send: not a regular file");
      if (n === want) size = info.size;
      mtime = info.mtime?.getTime() ?? Date.now();
    }
    const dataLength = rawBytes ? size : base64Length(size);
    let offset = this.#head(entry, { remote, mtime, dataLength });
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
      const chunk = this.#out.subarray(0, offset + this.#encode(n, offset, rawBytes));
      dataCrc = crc32(this.#raw.subarray(0, n), dataCrc);
      bodyCrc = crc32(sent === 0 ? chunk.subarray(HEADER_SIZE) : chunk, bodyCrc);
      this.started = true;
      await this.#write(conn, chunk);
      sent = end;
      if (sent === size) return { bytes: size, dataCrc, bodyCrc };
      offset = 0;
      want = Math.min(CHUNK_SIZE, size - sent);
      n = readFull(file, this.#raw.subarray(0, want));
    }
  }

  /**
   * Puts a frame's header, name field and, for a path frame, its path line
   * at the start of the output.
   *
   * @returns Where the data begins.
   */
  #head(entry: UploadFile, frame: { remote?: string; mtime: number; dataLength: number }): number {
    if (frame.remote !== undefined) {
      const head = encodePathHead({ path: frame.remote, mtime: frame.mtime }, frame.dataLength);
      this.#out.set(head);
      return head.length;
    }
    this.#out.set(encodeHeader(NAME_SIZE + frame.dataLength));
    this.#out.set(encodeName(entry.name), HEADER_SIZE);
    return HEADER_SIZE + NAME_SIZE;
  }

  /** Writes all of `bytes`, in pieces that each wait for their slot when the rate is capped. */
  async #write(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
    if (this.#limiter === undefined) return await writeWithin(conn, bytes, this.#timeout);
    const piece = this.#limiter.piece;
    for (let at = 0; at < bytes.length; at += piece) {
      const part = bytes.subarray(at, at + piece);
      await this.#limiter.take(part.length);
      await writeWithin(conn, part, this.#timeout);
    }
  }

  /** Puts the chunk's `n` bytes after `offset` in the output, as base64 or as they are. */
  #encode(n: number, offset: number, rawBytes: boolean): number {
    if (rawBytes) {
      this.#out.set(this.#raw.subarray(0, n), offset);
      return n;
    }
    const base64 = this.#raw.subarray(0, n).toBase64();
    return this.#encoder.encodeInto(base64, this.#out.subarray(offset)).written;
  }

  /**
   * Sends one file to the original server: one connection, no answer.
   *
   * @returns Bytes of file data sent, once the server has closed.
   * @throws {Deno.errors.InvalidData} When the server closed before reading
   * all of it: not transient, as sending again would leave a second copy.
   */
  async sendToOriginal(target: Target, entry: UploadFile): Promise<number> {
    using conn = await connectWithin(target, this.#timeout);
    // The original server reads until it has counted the body or the input
    // ends, then closes: a clean close means it read every byte.
    try {
      const { bytes } = await this.send(conn, entry);
      await conn.closeWrite();
      const sink = new Uint8Array(4096);
      const closing = { waitingFor: "the server to close" };
      while (await withDeadline(conn.read(sink), this.#timeout, closing) !== null) {
        // The original server sends nothing; anything it does send is ignored.
      }
      return bytes;
    } catch (error) {
      if (
        !(error instanceof Deno.errors.ConnectionReset || error instanceof Deno.errors.BrokenPipe)
      ) {
        throw error;
      }
      throw new Deno.errors.InvalidData(
        "Cannot confirm: the server closed before reading all of it, so it may keep a truncated copy (the original server does when a recv returns less than 4096 bytes)",
      );
    }
  }
}

/**
 * How {@linkcode FrameWriter.send} frames a file: what the connection agreed to.
 *
 * @example
 * ```ts
 * import type { FrameFormat } from "../protocol.ts";
 *
 * const agreed: FrameFormat = { rawBytes: true, paths: true };
 * ```
 */
export interface FrameFormat {
  /**
   * The data as it is rather than as base64.
   * @default {false}
   */
  rawBytes?: boolean;
  /**
   * A file with a `remote` path is sent under it, with its mtime.
   * @default {false}
   */
  paths?: boolean;
}

/**
 * What went out for one file.
 *
 * @example
 * ```ts
 * import type { Sent } from "../protocol.ts";
 *
 * const sent: Sent = { bytes: 4, dataCrc: 0x1234abcd, bodyCrc: 0x0badf00d };
 * ```
 */
export interface Sent {
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
  /** A token or hello frame, whose answer is the connection's, not a file's. */
  control?: "token" | "hello";
}

/** What a control frame's place in the queue of answers holds: no file. */
const NO_FILE = { entry: { path: "", name: "" }, bytes: 0, dataCrc: 0, bodyCrc: 0 };

/**
 * One connection to our server, sending frames ahead of their
 * acknowledgements and matching the answers to them in order.
 *
 * @example Upload a file and hear the server confirm it
 * ```ts
 * import assert from "node:assert/strict";
 * import { connectWithin, type FileResult, Uploader } from "../protocol.ts";
 * import { startServer } from "../server.ts";
 *
 * const out = await Deno.makeTempDir();
 * const server = await startServer({ host: "127.0.0.1", port: 0, out });
 * const target = { hostname: "127.0.0.1", port: server.addr.port };
 * const input = await Deno.makeTempDir();
 * await Deno.writeFile(`${input}/cat.jpg`, new Uint8Array([0xff, 0xd8, 0xff, 0xe0]));
 * const file = { path: `${input}/cat.jpg`, name: "cat" };
 * const results: FileResult[] = [];
 * const conn = await connectWithin(target, 1000);
 * const uploader = new Uploader(conn, { timeout: 1000, window: 4, onResult: (r) => results.push(r) });
 * await uploader.send(file);
 * await uploader.close();
 * assert.deepEqual(results.map((r) => [r.ok, r.savedAs]), [[true, "cat.jpg"]]);
 * await server.shutdown();
 * for (const folder of [out, input]) await Deno.remove(folder, { recursive: true });
 * ```
 */
export class Uploader {
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
  /** The token to present before the first frame. */
  readonly #token: string | undefined;
  /** The capabilities to offer in a hello before the first frame. */
  readonly #offers: string[];
  /** The token and the hello, sent once before the first file; false when that failed. */
  #greeting: Promise<boolean> | undefined;
  /** Settles once the server has answered the hello, or the connection failed. */
  readonly #hello = Promise.withResolvers<void>();
  /** What the server agreed to in its answer to the hello. */
  #format: FrameFormat = {};
  /** Why no more frames can be sent on this connection, once that is so. */
  broken: string | undefined;
  /** Whether no other connection could do better: the server refused this client itself. */
  refused = false;
  /** Whether the server has said OK to anything here; one that turned the connection away never has. */
  accepted = false;

  /**
   * Starts reading the connection's answers.
   *
   * @param conn A connection to our server.
   * @param options Deadline, window, token and where each file's fate goes.
   */
  constructor(conn: Deno.Conn, options: UploaderOptions) {
    this.#conn = conn;
    this.#timeout = options.timeout;
    this.#window = options.window;
    this.#report = options.onResult;
    this.#writer = new FrameWriter(options.timeout, options.limiter);
    this.#token = options.token;
    this.#offers = [
      ...(options.rawFrames ? [RAW_BYTES] : []),
      ...(options.paths ? [PATHS] : []),
    ];
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
        this.#onAnswer(parseAck(line));
      }
    } catch (error) {
      this.#fail(error);
    }
  }

  /** Matches an answer to the oldest frame waiting for one, and reports that file. */
  #onAnswer(ack: Ack): void {
    const refusal = ack.ok ? undefined : refusalOf(ack.message);
    if (ack.ok) this.accepted = true;
    // Before any OK, busy is said of the connection, which the server then closes.
    else if (!this.accepted && refusal === "busy") {
      throw new Deno.errors.Busy(`Refused by the server: ${ack.message}`);
    }
    // The server closes after this answer, and answers every connection so.
    if (!ack.ok && refusal === "auth") {
      throw new Deno.errors.PermissionDenied(
        `The server requires a token: add --token-file FILE (it said: ${ack.message})`,
      );
    }
    const { entry, bytes, dataCrc, bodyCrc, control } = this.#pending.shift()!;
    this.#room.resolve();
    if (control === "token") {
      if (!ack.ok) throw new Deno.errors.PermissionDenied(`Token refused: ${ack.message}`);
      return;
    }
    if (control === "hello") {
      // Anything but our server's answer agrees to nothing: base64 and names, as ever.
      const agreed = agreedIn(ack);
      this.#format = { rawBytes: agreed.includes(RAW_BYTES), paths: agreed.includes(PATHS) };
      this.#hello.resolve();
      return;
    }
    if (!ack.ok) {
      const message = `Refused by the server: ${ack.message}`;
      this.#report({ path: entry.path, bytes, ok: false, message, transient: refusal === "busy" });
      return;
    }
    // A decoding server saves the file's bytes; a --raw one the frame body.
    const complete = (ack.bytes === bytes && ack.crc32 === dataCrc) ||
      (ack.bytes === NAME_SIZE + base64Length(bytes) && ack.crc32 === bodyCrc);
    const hex = (crc: number) => crc.toString(16).padStart(8, "0");
    this.#report(
      complete ? { path: entry.path, bytes, ok: true, savedAs: ack.file } : {
        path: entry.path,
        bytes,
        ok: false,
        message:
          `Server saved other bytes than were sent as ${ack.file}: ${ack.bytes} bytes with CRC-32 ${
            hex(ack.crc32)
          }, sent ${bytes} with ${hex(dataCrc)}`,
        transient: false,
      },
    );
  }

  /** Fails every frame still waiting for an answer, and closes the connection. */
  #fail(error: unknown): void {
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
    this.#hello.resolve();
    for (const { entry, bytes, control } of this.#pending.splice(0)) {
      if (!control) {
        this.#report({ path: entry.path, bytes, ok: false, message, transient: !refused });
      }
    }
    this.#room.resolve();
    closeQuietly(this.#conn);
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
    if (this.broken || !await (this.#greeting ??= this.#greet())) return false;
    let sent: Sent;
    try {
      sent = await this.#writer.send(this.#conn, entry, this.#format);
    } catch (error) {
      // The answers failed and closed the connection under this write: it failed as they did.
      if (this.broken) return false;
      const message = (error as Error).message;
      this.#report({
        path: entry.path,
        ok: false,
        bytes: 0,
        message,
        transient: isTransient(error),
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

  /**
   * Presents the token and offers raw-byte frames and paths, once, before the first
   * file, and waits for the answer to the offer: each file's frame depends
   * on it.
   *
   * @returns False when the connection broke.
   */
  async #greet(): Promise<boolean> {
    const frames: [Uint8Array, "token" | "hello"][] = [];
    if (this.#token !== undefined) frames.push([encodeToken(this.#token), "token"]);
    if (this.#offers.length > 0) frames.push([encodeHello(this.#offers), "hello"]);
    if (frames.length === 0) return true;
    try {
      await writeWithin(this.#conn, concatBytes(frames.map(([frame]) => frame)), this.#timeout);
    } catch (error) {
      this.broken = `Connection lost: ${(error as Error).message}`;
      closeQuietly(this.#conn);
      return false;
    }
    for (const [, control] of frames) this.#pending.push({ ...NO_FILE, control });
    this.#wake.resolve();
    if (this.#offers.length > 0) await this.#hello.promise;
    return this.broken === undefined;
  }

  /** Says that nothing more will come, waits for the answers to everything sent, then closes. */
  async close(): Promise<void> {
    this.#sending = false;
    this.#wake.resolve();
    // Before the last answers, not after: the server then closes as soon as
    // it has answered, and a closing socket sends at once what Nagle's
    // algorithm holds. A TLS server's socket has no setNoDelay(), so its
    // last answer otherwise waited for our delayed ACK: 40 ms an upload.
    // (And a TLS close_notify left to close() is lost when the process exits.)
    await this.#conn.closeWrite().catch(() => {});
    await this.#acks;
    closeQuietly(this.#conn);
  }
}
