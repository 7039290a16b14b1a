/**
 * Reading frames from a byte source with limits and deadlines.
 *
 * @module
 */
import { type ByteSource, withDeadline } from "./io.ts";
import {
  DEFAULT_HEADER_TIMEOUT,
  DEFAULT_IDLE_TIMEOUT,
  DEFAULT_MAX_FRAME_SIZE,
  HEADER_SIZE,
  NAME_SIZE,
} from "./limits.ts";
import { lookahead, NAME_LOOKAHEAD, type NameSplit, splitName } from "./name.ts";
import { ProtocolError } from "./errors.ts";
import { firstNonDigit, parseHeader } from "./frame.ts";

// Three times faster than latin1 here; a byte above 0x7f becomes U+FFFD,
// which base64 rejects just the same.
const base64Text = new TextDecoder("utf-8", { ignoreBOM: true });

/**
 * Options for {@linkcode FrameReader}.
 *
 * @example A reader with a small frame limit
 * ```ts
 * import assert from "node:assert/strict";
 * import { bytesSource, encodeFrame, FrameReader, type FrameReaderOptions } from "../protocol.ts";
 *
 * const options: FrameReaderOptions = { maxFrameSize: 40, headerTimeout: 1000 };
 * const reader = new FrameReader(bytesSource(encodeFrame("a", new Uint8Array(9))), options);
 * await assert.rejects(reader.readHead(), /exceeds the limit of 40/);
 * ```
 */
export interface FrameReaderOptions {
  /**
   * Largest body length L accepted.
   * @default {DEFAULT_MAX_FRAME_SIZE}
   */
  maxFrameSize?: number;
  /**
   * Milliseconds allowed for the header and name field of a frame to arrive,
   * counted from when {@linkcode FrameReader.readHead} is called.
   * @default {DEFAULT_HEADER_TIMEOUT}
   */
  headerTimeout?: number;
  /**
   * Milliseconds allowed without a single byte while reading a body.
   * @default {DEFAULT_IDLE_TIMEOUT}
   */
  idleTimeout?: number;
  /**
   * Wait for a frame's first byte without a deadline, and so without a timer,
   * which costs an idle connection more memory than the rest of its reader:
   * the caller bounds that wait by closing the source, as a server sweeping
   * its idle connections does. The header deadline then runs from the first
   * byte.
   * @default {false}
   */
  untimedIdle?: boolean;
  /**
   * Largest size of the read buffer in bytes, a multiple of 4 from 512 up.
   * Waiting for a frame, the buffer is 512 bytes, room for any head. For a
   * body it starts at 64 KiB, or this if smaller, and doubles whenever a read
   * fills it, so only a connection sent more than it takes holds a large one.
   * @default {1_048_576}
   */
  maxBufferSize?: number;
}

/**
 * The start of a frame, as returned by {@linkcode FrameReader.readHead}.
 *
 * @example Lengths in a head
 * ```ts
 * import assert from "node:assert/strict";
 * import { bytesSource, encodeFrame, type FrameHead, FrameReader } from "../protocol.ts";
 *
 * const head: FrameHead | null = await new FrameReader(bytesSource(encodeFrame("a", new Uint8Array(3)))).readHead();
 * assert.deepEqual([head?.bodyLength, head?.dataLength], [36, 4]);
 * ```
 */
export interface FrameHead {
  /** L, the body length from the header. */
  bodyLength: number;
  /**
   * The name as it came, split from the data by {@linkcode splitName}: a
   * 32-byte padded field from our client, or the tutorial client's name of
   * any length; check it with {@linkcode parseName}.
   */
  nameField: Uint8Array;
  /** Bytes of base64 after the name: L - the name's length. */
  dataLength: number;
}

/** Read buffer while waiting for a frame: room for any head, and little for an idle connection. */
const HEAD_BUFFER_SIZE = 512;
/** Read buffer a body starts with, before reads that fill it double it. */
const BODY_BUFFER_SIZE = 65_536;

/**
 * Reads frames from a stream, whatever its chunking, holding at most one
 * read buffer in memory: a body is handed out in decoded chunks, never whole.
 *
 * Call {@linkcode FrameReader.readHead}, then consume the body with
 * {@linkcode FrameReader.data}, {@linkcode FrameReader.raw} or
 * {@linkcode FrameReader.skipBody}, then read the next head. After a
 * `timeout` error a read may still be pending: close the source.
 *
 * @example Read two frames that arrive one byte at a time
 * ```ts
 * import assert from "node:assert/strict";
 * import { bytesSource, encodeFrame, FrameReader, parseName } from "../protocol.ts";
 *
 * const stream = new Uint8Array([...encodeFrame("a", new Uint8Array(5)), ...encodeFrame("b", new Uint8Array(0))]);
 * const reader = new FrameReader(bytesSource(stream, [1]));
 * const names = [];
 * for (let head; (head = await reader.readHead()) !== null;) {
 *   names.push(parseName(head.nameField));
 *   await reader.skipBody();
 * }
 * assert.deepEqual(names, ["a", "b"]);
 * ```
 */
export class FrameReader {
  readonly #source: ByteSource;
  readonly #maxFrameSize: number;
  readonly #headerTimeout: number;
  readonly #idleTimeout: number;
  readonly #maxBufferSize: number;
  readonly #untimedIdle: boolean;
  /** Where a wait for a frame reads, so that the body's buffers can be given up meanwhile. */
  readonly #idleBuffer = new Uint8Array(HEAD_BUFFER_SIZE);
  #buffer = this.#idleBuffer;
  /** Whether a read into the idle buffer is pending. */
  #waiting = false;
  /** Where data() decodes to, made for the first body and dropped with a body's buffer. */
  #decoded: Uint8Array | undefined;
  #start = 0;
  #end = 0;
  #remaining = 0;
  #bytesRead = 0;
  /** Whether every name field is the padded 32 bytes, as between our own peers. */
  #padded = false;

  /**
   * Creates a reader.
   *
   * @param source Where the frames come from.
   * @param options Limits and deadlines.
   */
  constructor(source: ByteSource, options: FrameReaderOptions = {}) {
    const maxBufferSize = options.maxBufferSize ?? 1_048_576;
    if (
      !Number.isSafeInteger(maxBufferSize) || maxBufferSize < HEAD_BUFFER_SIZE ||
      maxBufferSize % 4 !== 0
    ) {
      throw new RangeError(
        `Cannot create frame reader: buffer size must be a multiple of 4 from ${HEAD_BUFFER_SIZE} up, got ${maxBufferSize}`,
      );
    }
    this.#source = source;
    this.#maxFrameSize = options.maxFrameSize ?? DEFAULT_MAX_FRAME_SIZE;
    this.#headerTimeout = options.headerTimeout ?? DEFAULT_HEADER_TIMEOUT;
    this.#idleTimeout = options.idleTimeout ?? DEFAULT_IDLE_TIMEOUT;
    this.#maxBufferSize = maxBufferSize;
    this.#untimedIdle = options.untimedIdle ?? false;
  }

  /**
   * Reads every later name field as the padded 32 bytes, without looking
   * for where an unpadded name ends: for a connection whose peer is our own
   * client, which pads every name, and whose raw file bytes no base64
   * signature could tell from a name.
   */
  padNames(): void {
    this.#padded = true;
  }

  /** Bytes read from the source so far. */
  get bytesRead(): number {
    return this.#bytesRead;
  }

  /** Bytes of the current body not yet consumed. */
  get remaining(): number {
    return this.#remaining;
  }

  /** Bytes the read buffer holds room for: small while waiting for a frame. */
  get bufferSize(): number {
    return this.#buffer.length;
  }

  /**
   * Reads once more into the buffer, compacting it first when full, and
   * growing it after a read that filled it when a body is coming.
   *
   * @returns False at end of input.
   */
  async #fill(ms: number, waitingFor: string, body: boolean): Promise<boolean> {
    // Keep reads large: move the few unconsumed bytes to the front once the
    // free tail is short.
    if (this.#start > 0 && this.#buffer.length - this.#end < this.#buffer.length / 4) {
      this.#buffer.copyWithin(0, this.#start, this.#end);
      this.#end -= this.#start;
      this.#start = 0;
    }
    const room = this.#buffer.length - this.#end;
    const n = await withDeadline(this.#source.read(this.#buffer.subarray(this.#end)), ms, {
      waitingFor,
    });
    if (n === null) return false;
    this.#end += n;
    this.#bytesRead += n;
    // A read that took all the room likely left more waiting, which fewer,
    // larger reads take at less cost.
    if (body && n === room && this.#buffer.length < this.#maxBufferSize) {
      this.#resize(this.#buffer.length * 2);
    }
    return true;
  }

  /** Moves the unconsumed bytes into a buffer of this size, within the limit. */
  #resize(size: number): void {
    const buffer = new Uint8Array(Math.min(size, this.#maxBufferSize));
    buffer.set(this.#buffer.subarray(this.#start, this.#end));
    this.#end -= this.#start;
    this.#start = 0;
    this.#buffer = buffer;
  }

  /**
   * Bytes read from the source and not yet consumed: when at least a head's
   * worth, the next frame has started arriving.
   */
  get buffered(): number {
    return this.#end - this.#start;
  }

  /**
   * Reads the header of the next frame and its name, which it tells from the
   * data with {@linkcode splitName}: it waits for the body's first 266 bytes
   * (the longest name and 16 characters of data), or all of a shorter body,
   * or 48 bytes of a padded one. While it waits
   * with nothing buffered, the reader holds a buffer of 512 bytes only, so an
   * idle connection costs little memory.
   *
   * @returns The frame's head, or `null` when the input ends cleanly between
   * frames.
   * @throws {ProtocolError} `header` or `size` for a bad header as soon as a
   * bad byte arrives; `truncated` when the input ends inside the head;
   * `idle` when no byte arrives before the header deadline, `timeout` when
   * some but not all do.
   */
  async readHead(): Promise<FrameHead | null> {
    if (this.#remaining !== 0) {
      throw new TypeError(
        `Cannot read head: ${this.#remaining} bytes of the previous body are unread`,
      );
    }
    if (this.buffered === 0) {
      this.#start = this.#end = 0;
      if (this.#untimedIdle && !await this.#awaitFrame()) return null;
    }
    const deadline = performance.now() + this.#headerTimeout;
    if (!await this.#fillHead(HEADER_SIZE, deadline)) return null;
    const bodyLength = parseHeader(
      this.#buffer.subarray(this.#start, this.#start + HEADER_SIZE),
      this.#maxFrameSize,
    );
    const { nameLength, dataLength } = this.#padded
      ? await this.#paddedName(bodyLength, deadline)
      : await this.#splitName(bodyLength, deadline);
    const nameStart = this.#start + HEADER_SIZE;
    const nameField = this.#buffer.slice(nameStart, nameStart + nameLength);
    this.#start = nameStart + nameLength;
    this.#remaining = dataLength;
    return { bodyLength, nameField, dataLength };
  }

  /** Reads a padded name field, as between our own peers: always 32 bytes. */
  async #paddedName(bodyLength: number, deadline: number): Promise<NameSplit> {
    if (bodyLength < NAME_SIZE) {
      throw new ProtocolError("size", `Frame too small: body length ${bodyLength} holds no name`);
    }
    await this.#fillHead(HEADER_SIZE + NAME_SIZE, deadline);
    return { nameLength: NAME_SIZE, dataLength: bodyLength - NAME_SIZE };
  }

  /** Reads enough of the body to tell an unpadded name from its data, and tells them apart. */
  async #splitName(bodyLength: number, deadline: number): Promise<NameSplit> {
    const body = () => this.#buffer.subarray(this.#start + HEADER_SIZE, this.#end);
    await this.#fillHead(HEADER_SIZE + Math.min(bodyLength, NAME_LOOKAHEAD), deadline);
    // A name counted in characters may need more; its sender may end first.
    await this.#fillHead(HEADER_SIZE + lookahead(body(), bodyLength), deadline, true);
    return splitName(body(), bodyLength);
  }

  /**
   * Waits for a frame's first bytes with no deadline, in the idle buffer, so
   * that {@linkcode FrameReader.release} may give up the body's meanwhile; a
   * body buffer kept gets them, so a client streaming frames reads on in
   * large pieces.
   *
   * @returns False at the end of input.
   */
  async #awaitFrame(): Promise<boolean> {
    this.#waiting = true;
    let n: number | null;
    try {
      // Straight to the source: no timer, view or promise more than the read's own.
      n = await this.#source.read(this.#idleBuffer);
    } finally {
      this.#waiting = false;
    }
    if (n === null) return false;
    if (this.#buffer !== this.#idleBuffer) this.#buffer.set(this.#idleBuffer.subarray(0, n));
    this.#end = n;
    this.#bytesRead += n;
    return true;
  }

  /**
   * Gives up the buffers a body grew while the reader waits for a frame with
   * `untimedIdle`, leaving 512 bytes: a connection that falls idle after a
   * frame then costs as little as one that never sent any. Anywhere else it
   * does nothing.
   */
  release(): void {
    if (!this.#waiting || this.#buffer === this.#idleBuffer) return;
    this.#buffer = this.#idleBuffer;
    this.#decoded = undefined;
  }

  /**
   * Reads until `size` bytes of the head are buffered, checking the header's
   * digits as they come.
   *
   * @param endOk Whether the input may end first, as after a whole frame.
   * @returns False when the input ended first: cleanly before the head began,
   * or, with `endOk`, anywhere.
   */
  async #fillHead(size: number, deadline: number, endOk = false): Promise<boolean> {
    // The buffer, at least 512 bytes, holds any head once compacted.
    if (this.#start + size > this.#buffer.length) {
      this.#buffer.copyWithin(0, this.#start, this.#end);
      this.#end -= this.#start;
      this.#start = 0;
    }
    while (this.buffered < size) {
      const seen = this.#buffer.subarray(
        this.#start,
        this.#start + Math.min(this.buffered, HEADER_SIZE),
      );
      if (firstNonDigit(seen) !== -1) parseHeader(seen);
      let more: boolean;
      try {
        more = await this.#fill(deadline - performance.now(), "a frame header", false);
      } catch (error) {
        if (error instanceof ProtocolError && this.buffered === 0) {
          throw new ProtocolError("idle", "Connection idle: no frame started");
        }
        throw error;
      }
      if (!more) {
        if (this.buffered === 0 || endOk) return false;
        throw new ProtocolError(
          "truncated",
          `Input ended inside a frame header: got ${this.buffered} of ${size} bytes`,
        );
      }
    }
    return true;
  }

  /** Makes at least one body byte available, or throws `truncated`. */
  async #fillBody(): Promise<void> {
    // A body is coming: read it in large pieces, as a head's buffer would not.
    if (this.#buffer.length < BODY_BUFFER_SIZE) this.#resize(BODY_BUFFER_SIZE);
    if (!await this.#fill(this.#idleTimeout, "frame data", true)) {
      throw new ProtocolError(
        "truncated",
        `Input ended inside a frame body: ${this.#remaining} bytes missing`,
      );
    }
  }

  /**
   * Reads the current body up to its first newline, as a path frame starts:
   * the line is consumed, the data after it left for
   * {@linkcode FrameReader.data} or {@linkcode FrameReader.raw}.
   *
   * @param maxBytes The longest line accepted, newline included.
   * @returns The line, without its newline.
   * @throws {ProtocolError} `name` when no newline comes within `maxBytes`
   * or the body (nothing consumed: call {@linkcode FrameReader.skipBody});
   * `truncated` or `timeout`.
   */
  async readBodyLine(maxBytes: number): Promise<Uint8Array> {
    const limit = Math.min(maxBytes, this.#remaining);
    for (let searched = 0;;) {
      const seen = Math.min(this.buffered, limit);
      const newline = this.#buffer.subarray(this.#start + searched, this.#start + seen).indexOf(
        0x0a,
      );
      if (newline !== -1) {
        const end = this.#start + searched + newline;
        const line = this.#buffer.slice(this.#start, end);
        this.#remaining -= end + 1 - this.#start;
        this.#start = end + 1;
        return line;
      }
      if (seen === limit) {
        throw new ProtocolError(
          "name",
          `Invalid path line: no newline within ${limit} bytes of the frame's data`,
        );
      }
      searched = seen;
      await this.#fillBody();
    }
  }

  /**
   * Yields the rest of the current body as it arrives, undecoded. Each chunk
   * is a view into the read buffer, valid until the next one is requested.
   *
   * @returns The body's bytes in order.
   * @throws {ProtocolError} `truncated` or `timeout`.
   */
  async *raw(): AsyncGenerator<Uint8Array> {
    while (this.#remaining > 0) {
      if (this.buffered === 0) await this.#fillBody();
      const n = Math.min(this.buffered, this.#remaining);
      const chunk = this.#buffer.subarray(this.#start, this.#start + n);
      this.#start += n;
      this.#remaining -= n;
      yield chunk;
    }
  }

  /**
   * Yields the decoded file data of the current body. The base64 must be
   * standard, padded and canonical, with no whitespace. Each chunk is a view
   * into a reused buffer, valid until the next one is requested.
   *
   * @returns The file's bytes in order.
   * @throws {ProtocolError} `base64` for bad data (recoverable: call
   * {@linkcode FrameReader.skipBody}), `truncated` or `timeout`.
   */
  async *data(): AsyncGenerator<Uint8Array> {
    if (this.#remaining % 4 !== 0) {
      throw new ProtocolError(
        "base64",
        `Cannot decode data: length ${this.#remaining} is not a multiple of 4`,
      );
    }
    let decodedSoFar = 0;
    while (this.#remaining > 0) {
      if (this.buffered < 4) await this.#fillBody();
      const available = Math.min(this.buffered, this.#remaining);
      const n = available - available % 4;
      if (n === 0) continue;
      const last = n === this.#remaining;
      const chunk = this.#buffer.subarray(this.#start, this.#start + n);
      if (this.#decoded === undefined || this.#decoded.length < n / 4 * 3) {
        this.#decoded = new Uint8Array(this.#buffer.length / 4 * 3);
      }
      const written = decodeBase64Chunk(chunk, this.#decoded, last, decodedSoFar);
      this.#start += n;
      this.#remaining -= n;
      decodedSoFar += written;
      yield this.#decoded.subarray(0, written);
    }
  }

  /**
   * Reads and discards the rest of the current body, so the next frame can
   * be read after a recoverable error.
   *
   * @returns Once the body is consumed.
   * @throws {ProtocolError} `truncated` or `timeout`.
   */
  async skipBody(): Promise<void> {
    for await (const _ of this.raw()) { /* discarded */ }
  }
}

const EQUALS = 0x3d;

/**
 * Decodes one chunk of a body's base64 into `out`, refusing whitespace and
 * padding before the last chunk, which `setFromBase64` would accept.
 *
 * @returns The number of bytes decoded.
 */
function decodeBase64Chunk(
  chunk: Uint8Array,
  out: Uint8Array,
  last: boolean,
  offset: number,
): number {
  const padding = last ? (chunk.at(-1) === EQUALS ? 1 : 0) + (chunk.at(-2) === EQUALS ? 1 : 0) : 0;
  const expected = chunk.length / 4 * 3 - padding;
  let written: number;
  try {
    ({ written } = out.setFromBase64(base64Text.decode(chunk), {
      lastChunkHandling: "strict",
    }));
  } catch (error) {
    throw new ProtocolError(
      "base64",
      `Cannot decode data near byte ${offset}: ${(error as Error).message}`,
    );
  }
  // Skipped whitespace or early padding leaves fewer bytes than the length implies.
  if (written !== expected) {
    throw new ProtocolError(
      "base64",
      `Cannot decode data near byte ${offset}: whitespace or padding inside the data`,
    );
  }
  return written;
}
