/**
 * Counts, sizes, durations, addresses and untrusted bytes written for people.
 *
 * @module
 */

/**
 * Quotes at most 80 bytes of untrusted input for an error message, escaping
 * everything that is not printable ASCII.
 *
 * @param bytes The offending input.
 * @returns A double-quoted string, with `…` after it when cut.
 *
 * @example Quote a request line
 * ```ts
 * import assert from "node:assert/strict";
 * import { quoteBytes } from "../protocol.ts";
 *
 * assert.equal(quoteBytes(new TextEncoder().encode("GET /\r\n")), '"GET /\\r\\n"');
 * ```
 */
export function quoteBytes(bytes: Uint8Array): string {
  const shown = bytes.subarray(0, 80);
  // One character per byte: the decoder named "latin1" is windows-1252,
  // which would show byte 0x97 as U+2014.
  const text = JSON.stringify(String.fromCharCode(...shown)).replace(
    /[^\x20-\x7e]/g,
    (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`,
  );
  return bytes.length > shown.length ? `${text}…` : text;
}

const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * Quotes a name for a message: as text when it is valid UTF-8 without
 * control characters, so that `照片` reads as itself; otherwise as
 * {@linkcode quoteBytes} does. At most 80 bytes, cut between characters.
 *
 * @param bytes The name's bytes.
 * @returns A double-quoted string, with `…` after it when cut.
 *
 * @example A Chinese name, and one with a control byte
 * ```ts
 * import assert from "node:assert/strict";
 * import { quoteName } from "../protocol.ts";
 *
 * const utf8 = (text: string) => new TextEncoder().encode(text);
 * assert.equal(quoteName(utf8("猫的照片")), '"猫的照片"');
 * assert.equal(quoteName(utf8("a\x1b[2J")), '"a\\u001b[2J"');
 * ```
 */
export function quoteName(bytes: Uint8Array): string {
  let text: string;
  try {
    text = strictUtf8.decode(bytes);
  } catch {
    return quoteBytes(bytes);
  }
  const control = (c: string) => c.charCodeAt(0) < 0x20 || (c >= "\x7f" && c <= "\x9f");
  if ([...text].some(control)) return quoteBytes(bytes);
  if (bytes.length <= 80) return JSON.stringify(text);
  // Cut before the character that holds byte 80: continuation bytes are 10xxxxxx.
  let end = 80;
  while ((bytes[end] & 0xc0) === 0x80) end--;
  return `${JSON.stringify(strictUtf8.decode(bytes.subarray(0, end)))}…`;
}

/**
 * Formats a byte count for people, in binary units.
 *
 * @param bytes The count.
 * @returns Such as `512 B`, `64.0 KiB` or `1.50 GiB`.
 *
 * @example Format sizes
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatBytes } from "../protocol.ts";
 *
 * assert.equal(formatBytes(512), "512 B");
 * assert.equal(formatBytes(1536 * 1024 * 1024), "1.50 GiB");
 * ```
 */
export function formatBytes(bytes: number): string {
  // A rate is fractional; a count of bytes shows whole.
  if (bytes < 1023.5) return `${Math.round(bytes)} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(unit === 0 ? 1 : 2)} ${units[unit]}`;
}

/**
 * Writes a count with its noun, which takes an "s" unless the count is one.
 *
 * @param count How many.
 * @param noun The noun in the singular.
 * @returns Such as `1 file` or `0 files`.
 *
 * @example Count files
 * ```ts
 * import assert from "node:assert/strict";
 * import { counted } from "../protocol.ts";
 *
 * assert.equal(counted(1, "file"), "1 file");
 * assert.equal(counted(2000, "file"), "2000 files");
 * assert.equal(counted(0, "error"), "0 errors");
 * ```
 */
export function counted(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? "" : "s"}`;
}

/**
 * Formats a duration for people.
 *
 * @param ms The duration in milliseconds.
 * @returns Such as `850 ms`, `2.53 s`, `12.5 s` or `3 min 20 s`.
 *
 * @example Format durations
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatDuration } from "../protocol.ts";
 *
 * assert.equal(formatDuration(850), "850 ms");
 * assert.equal(formatDuration(2534), "2.53 s");
 * assert.equal(formatDuration(200_000), "3 min 20 s");
 * ```
 */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;
  const seconds = Math.round(ms / 1000);
  return `${Math.floor(seconds / 60)} min ${seconds % 60} s`;
}

/**
 * Writes a host and port as one address, with an IPv6 host in brackets so
 * that the port stays apart from it.
 *
 * @param host A hostname, IPv4 or IPv6 address.
 * @param port The port.
 * @returns `host:port`, or `[host]:port` for IPv6.
 *
 * @example Format both families
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatAddress } from "../protocol.ts";
 *
 * assert.equal(formatAddress("127.0.0.1", 9999), "127.0.0.1:9999");
 * assert.equal(formatAddress("::1", 9999), "[::1]:9999");
 * ```
 */
export function formatAddress(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}
