/**
 * Image file types: the extensions a server saves under, told from the first bytes.
 *
 * @module
 */

/**
 * Every extension {@linkcode sniffExtension} gives, so every one a decoded
 * file can be saved with.
 *
 * @example The list
 * ```ts
 * import assert from "node:assert/strict";
 * import { EXTENSIONS, sniffExtension } from "../protocol.ts";
 *
 * assert.ok(EXTENSIONS.includes(sniffExtension(new Uint8Array([0xff, 0xd8, 0xff]))));
 * ```
 */
export const EXTENSIONS: readonly string[] = [
  "jpg",
  "png",
  "gif",
  "webp",
  "bmp",
  "tiff",
  "heic",
  "heif",
  "avif",
  "bin",
];

/**
 * Detects an image type from its first bytes.
 *
 * @param head At least the first 12 bytes of the file, or all of a shorter one.
 * @returns `jpg`, `png`, `gif`, `webp`, `bmp`, `tiff`, `heic` (an iPhone's photos),
 * `heif`, `avif`, or `bin` for anything else.
 *
 * @example Sniff a PNG
 * ```ts
 * import assert from "node:assert/strict";
 * import { sniffExtension } from "../protocol.ts";
 *
 * assert.equal(sniffExtension(new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])), "png");
 * assert.equal(sniffExtension(new Uint8Array([1, 2, 3])), "bin");
 * ```
 */
export function sniffExtension(head: Uint8Array): string {
  const startsWith = (bytes: number[], at = 0) =>
    head.length >= at + bytes.length && bytes.every((b, i) => head[at + i] === b);
  const ascii = (text: string) => [...text].map((c) => c.charCodeAt(0));
  if (startsWith([0xff, 0xd8, 0xff])) return "jpg";
  if (startsWith([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])) return "png";
  if (startsWith(ascii("GIF87a")) || startsWith(ascii("GIF89a"))) return "gif";
  if (startsWith(ascii("RIFF")) && startsWith(ascii("WEBP"), 8)) return "webp";
  if (startsWith(ascii("BM"))) return "bmp";
  if (startsWith([0x49, 0x49, 0x2a, 0x00]) || startsWith([0x4d, 0x4d, 0x00, 0x2a])) {
    return "tiff";
  }
  // HEIF and AVIF are ISO media files: a "ftyp" box whose major brand says which.
  if (startsWith(ascii("ftyp"), 4)) {
    const brand = String.fromCharCode(...head.subarray(8, 12));
    if (["heic", "heix", "heim", "heis", "hevc", "hevx"].includes(brand)) return "heic";
    if (["mif1", "msf1"].includes(brand)) return "heif";
    if (["avif", "avis"].includes(brand)) return "avif";
  }
  return "bin";
}
