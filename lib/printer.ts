/**
 * Datagrams turned into safe lines for the UDP printer. `hand_over.ts`
 * passes them to the Worker that writes them, and sends these functions to
 * it as text, so they use nothing from outside themselves but each other.
 *
 * @module
 */

/**
 * A datagram's payload without one trailing line end (`\n` or `\r\n`), which
 * ends its line rather than being printed as `\n`.
 *
 * @param bytes The datagram's payload.
 * @returns The payload, shortened by the line end if it had one.
 *
 * @example `printf 'hello\n' | nc -u` sends one line
 * ```ts
 * import assert from "node:assert/strict";
 * import { withoutLineEnd } from "../protocol.ts";
 *
 * const utf8 = (text: string) => new TextEncoder().encode(text);
 * assert.deepEqual(withoutLineEnd(utf8("hello\r\n")), utf8("hello"));
 * assert.deepEqual(withoutLineEnd(utf8("a\n\n")), utf8("a\n"));
 * ```
 */
export function withoutLineEnd(bytes: Uint8Array): Uint8Array {
  const end = bytes.length;
  if (end === 0 || bytes[end - 1] !== 0x0a) return bytes;
  return bytes.subarray(0, end >= 2 && bytes[end - 2] === 0x0d ? end - 2 : end - 1);
}

/**
 * Escapes everything that could move the cursor or reorder the line: C0 and
 * C1 controls, DEL, line and paragraph separators, bidirectional overrides.
 *
 * @param text Decoded text.
 * @returns The text with those characters as `\n`, `\x1b`, `\u202e`.
 *
 * @example A datagram cannot clear the screen
 * ```ts
 * import assert from "node:assert/strict";
 * import { escapeControls } from "../protocol.ts";
 *
 * assert.equal(escapeControls("\x1b[2J\tok"), "\\x1b[2J\\tok");
 * ```
 */
export function escapeControls(text: string): string {
  // Inside the function: the printer's Worker gets this function as text.
  // deno-lint-ignore no-control-regex
  return text.replace(/[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g, (c) => {
    const code = c.charCodeAt(0);
    if (c === "\n") return "\\n";
    if (c === "\r") return "\\r";
    if (c === "\t") return "\\t";
    return code <= 0xff ? `\\x${code.toString(16).padStart(2, "0")}` : `\\u${code.toString(16)}`;
  });
}

/**
 * Turns a datagram into one printable line: one trailing line end dropped,
 * UTF-8 decoded with invalid bytes replaced by U+FFFD, control characters
 * escaped.
 *
 * @param bytes The datagram's payload.
 * @returns The line, without a newline.
 *
 * @example What `nc -u` and a hostile sender print as
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatDatagram } from "../protocol.ts";
 *
 * const utf8 = (text: string) => new TextEncoder().encode(text);
 * assert.equal(formatDatagram(utf8("hello\n")), "hello");
 * assert.equal(formatDatagram(utf8("a\nb\x1b")), "a\\nb\\x1b");
 * ```
 */
export function formatDatagram(bytes: Uint8Array): string {
  return escapeControls(new TextDecoder().decode(withoutLineEnd(bytes)));
}

/**
 * Collects printed lines in one buffer, so that a flood costs one write per
 * burst rather than one per datagram. Printable ASCII, the common case, is
 * copied as is; anything else is formatted as {@linkcode formatDatagram} does.
 *
 * @example Two datagrams, one write
 * ```ts
 * import assert from "node:assert/strict";
 * import { LineBatch } from "../protocol.ts";
 *
 * const written: string[] = [];
 * const batch = new LineBatch((lines) => written.push(new TextDecoder().decode(lines)));
 * batch.add(new TextEncoder().encode("hello\n"));
 * batch.add(new TextEncoder().encode("\x07"));
 * batch.flush();
 * assert.deepEqual(written, ["hello\n\\x07\n"]);
 * ```
 */
export class LineBatch {
  // A datagram prints as at most 4 bytes a byte (`\x1b`), plus the newline.
  readonly #buffer = new Uint8Array(4 * 65_536 + 65_536);
  readonly #write: (lines: Uint8Array, count: number) => void;
  readonly #decoder = new TextDecoder();
  readonly #encoder = new TextEncoder();
  #length = 0;
  #lines = 0;

  /**
   * @param write Takes the lines gathered so far, valid only during the call,
   * and how many they are.
   */
  constructor(write: (lines: Uint8Array, count: number) => void) {
    this.#write = write;
  }

  /**
   * Adds one datagram as one line.
   *
   * @param payload The datagram's payload.
   */
  add(payload: Uint8Array): void {
    const body = withoutLineEnd(payload);
    if (this.#length + 4 * body.length + 1 > this.#buffer.length) this.flush();
    let ascii = true;
    for (let i = 0; i < body.length && ascii; i++) ascii = body[i] >= 0x20 && body[i] <= 0x7e;
    if (ascii) {
      this.#buffer.set(body, this.#length);
      this.#length += body.length;
    } else {
      const line = escapeControls(this.#decoder.decode(body));
      this.#length += this.#encoder.encodeInto(line, this.#buffer.subarray(this.#length)).written;
    }
    this.#buffer[this.#length++] = 0x0a;
    this.#lines++;
  }

  /** Writes what was gathered. */
  flush(): void {
    if (this.#length === 0) return;
    const lines = this.#buffer.subarray(0, this.#length);
    const count = this.#lines;
    this.#length = 0;
    this.#lines = 0;
    this.#write(lines, count);
  }
}
