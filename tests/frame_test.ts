/** The frame's header and name codecs, and where an unpadded name ends (protocol/frame.ts, protocol/name.ts). */
import assert from "node:assert/strict";
import {
  bytesSource,
  encodeFrame,
  encodeHeader,
  encodeName,
  FrameReader,
  LineReader,
  parseHeader,
  parseName,
  ProtocolError,
  type ProtocolErrorCode,
  quoteBytes,
  splitName,
} from "../protocol.ts";
import {
  assertProtocolError,
  concat,
  randomBytes,
  readAll,
  stallingSource,
  utf8,
} from "./helpers.ts";

const badHeaders: [string, string | Uint8Array, ProtocolErrorCode][] = [
  ["a plus sign", "+000000000000100", "header"],
  ["a minus sign", "-000000000000100", "header"],
  ["a leading space", " 000000000000100", "header"],
  ["a trailing space", "000000000000100 ", "header"],
  ["a hexadecimal prefix", "0x00000000000100", "header"],
  ["an exponent", "00000000000001e3", "header"],
  ["a decimal point", "0000000000100.00", "header"],
  ["full-width digits", "０００００１", "header"],
  ["an HTTP request line", "GET / HTTP/1.1\r\n", "header"],
  ["NUL bytes", new Uint8Array(16), "header"],
  ["a length of zero", "0000000000000000", "header"],
  ["a length above 2^53", "9999999999999999", "size"],
  ["a length above the default limit", "0000000536870913", "size"],
];

for (const [what, header, code] of badHeaders) {
  Deno.test(`readHead() rejects a header with ${what}`, async () => {
    const bytes = typeof header === "string" ? utf8(header) : header;
    const frame = concat(bytes, new Uint8Array(64).fill(0x41));
    await assertProtocolError(new FrameReader(bytesSource(frame)).readHead(), code);
    await assertProtocolError(new FrameReader(bytesSource(frame, [1])).readHead(), code);
  });
}

Deno.test("parseHeader() quotes at most 80 bytes of the offending input", () => {
  assert.throws(() => parseHeader(utf8("GET / HTTP/1.1\r\n")), {
    message: 'Cannot parse header: expected 16 digits, got "GET / HTTP/1.1\\r\\n"',
  });
  assert.throws(() => parseHeader(new Uint8Array(300).fill(0x7a)), {
    message: `Cannot parse header: expected 16 digits, got "${"z".repeat(80)}"…`,
  });
});

Deno.test("parseHeader() and LineReader name TLS bytes as such", async () => {
  const clientHello = new Uint8Array([0x16, 0x03, 0x01, 0x00, 0xd9, 0x01, 0x00, 0x00]);
  assert.throws(() => parseHeader(clientHello), {
    name: "ProtocolError",
    code: "tls",
    message: "Cannot parse header: a TLS handshake, and this server does not speak TLS",
  });
  const alert = new Uint8Array([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x32]);
  await assert.rejects(new LineReader(bytesSource(alert), 100).readLine(), {
    name: "ProtocolError",
    code: "tls",
    message: "Input ended inside a line: a TLS record, so the peer speaks TLS",
  });
});

const quotations: [string, number[], string][] = [
  ["printable ASCII as is", [0x41, 0x20, 0x7e], '"A ~"'],
  ["a quote and a backslash escaped", [0x22, 0x5c], '"\\"\\\\"'],
  ["line breaks by their short escapes", [0x0d, 0x0a], '"\\r\\n"'],
  [
    "DEL and bytes 0x80 to 0x9f as their own value",
    [0x7f, 0x80, 0x97, 0x9f],
    '"\\x7f\\x80\\x97\\x9f"',
  ],
  ["UTF-8 byte by byte", [0xe6, 0x97, 0xa5], '"\\xe6\\x97\\xa5"'],
  ["the top byte", [0xff], '"\\xff"'],
];

for (const [what, bytes, quoted] of quotations) {
  Deno.test(`quoteBytes() shows ${what}`, () => {
    assert.equal(quoteBytes(new Uint8Array(bytes)), quoted);
  });
}

Deno.test("parseHeader() accepts both size-limit boundaries and rejects one past each", () => {
  assert.equal(parseHeader(utf8("0000000000000001"), 1000), 1);
  assert.equal(parseHeader(utf8("0000000000001000"), 1000), 1000);
  assert.throws(() => parseHeader(utf8("0000000000000000"), 1000), { name: "ProtocolError" });
  assert.throws(() => parseHeader(utf8("0000000000001001"), 1000), /exceeds the limit of 1000/);
});

Deno.test("readHead() rejects a bad header byte without waiting for all sixteen", async () => {
  const reader = new FrameReader(stallingSource(utf8("GET ")), { headerTimeout: 60_000 });
  await assertProtocolError(reader.readHead(), "header", /"GET "/);
});

Deno.test("encodeHeader() refuses lengths that cannot be framed", () => {
  for (const length of [31, -1, 1.5, 10 ** 16, NaN]) {
    assert.throws(() => encodeHeader(length), RangeError, String(length));
  }
});

const goodNames = ["0123456789abcdef0123456789abcdef", "猫", "a b", "IMG_0001", "x".repeat(32)];
for (const name of goodNames) {
  Deno.test(`encodeName() and parseName() round-trip ${JSON.stringify(name)}`, () => {
    assert.equal(parseName(encodeName(name)), name);
  });
}

const badNames: [string, string, RegExp][] = [
  ["an empty name", "", /empty/],
  ["a 33-byte name", "x".repeat(33), /33 bytes/],
  ["eleven 3-byte characters", "猫".repeat(11), /33 bytes/],
  ["a slash", "a/b", /slash/],
  ["a parent reference", "../etc", /(dot|slash)/],
  ["a backslash", "a\\b", /backslash/],
  ["a dot", ".", /dot/],
  ["two dots", "..", /dot/],
  ["a dotfile", ".hidden", /dot/],
  ["a NUL byte", "a\0b", /control/],
  ["a tab", "a\tb", /control/],
  ["an escape sequence", "\x1b[31m", /control/],
  ["a C1 control", "a\u0085", /control/],
  ["a trailing space", "name ", /space/],
  ["a lone surrogate", "a\ud800", /UTF-8/],
];
for (const [what, name, message] of badNames) {
  Deno.test(`encodeName() refuses ${what}`, () => {
    assert.throws(() => encodeName(name), (error) => {
      assert.ok(error instanceof ProtocolError);
      assert.equal(error.code, "name");
      assert.match(error.message, message);
      return true;
    });
  });
}

const badFields: [string, Uint8Array, RegExp][] = [
  ["a NUL followed by more bytes", concat(utf8("ab\0c"), new Uint8Array(28)), /NUL/],
  ["invalid UTF-8", concat(new Uint8Array([0xff, 0x41]), new Uint8Array(30)), /UTF-8/],
  ["a character cut at byte 32", concat(utf8("a".repeat(31)), utf8("猫").subarray(0, 1)), /UTF-8/],
  ["only padding", new Uint8Array(32), /empty/],
  ["an absolute path", concat(utf8("/etc/passwd"), new Uint8Array(21)), /slash/],
  ["a parent path", concat(utf8("../../x"), new Uint8Array(25)), /(dot|slash)/],
  ["space padding", utf8("name".padEnd(32)), /space/],
];
for (const [what, field, message] of badFields) {
  Deno.test(`parseName() rejects a field with ${what}`, () => {
    assert.throws(() => parseName(field), (error) => {
      assert.ok(error instanceof ProtocolError);
      assert.match(error.message, message);
      assert.equal(error.recoverable, true);
      return true;
    });
  });
}

/** A body as the tutorial's client sends it: the name unpadded, then base64; L in characters. */
function tutorialBody(name: string, data: Uint8Array): { body: Uint8Array; length: number } {
  const base64 = data.toBase64();
  return { body: utf8(name + base64), length: [...name].length + base64.length };
}

const pngBytes = concat(
  new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
  randomBytes(300),
);
const hexName = "3f2a9c41d07b8e65a1c4f0d92b7e3a58";
const splits: [string, { body: Uint8Array; length: number }, number][] = [
  [
    "our client's padded field",
    (() => {
      const body = encodeFrame("a", pngBytes).subarray(16);
      return { body, length: body.length };
    })(),
    32,
  ],
  ["a photo's name before a JPEG", tutorialBody("IMG_0001", fakeJpegBytes(100)), 8],
  ["a name before a PNG, whose base64 begins with letters", tutorialBody("photo", pngBytes), 5],
  [
    "a 28-byte name, which a 32-byte reading would end 4 characters into the data",
    tutorialBody("p".repeat(28), pngBytes),
    28,
  ],
  ["a name longer than 32 bytes", tutorialBody("IMG_20240501_123456_HDR_portrait", pngBytes), 32],
  ["a name of 40 bytes", tutorialBody("n".repeat(40), fakeJpegBytes(50)), 40],
  ["the original's 32 hex characters before a JPEG", tutorialBody(hexName, fakeJpegBytes(50)), 32],
  [
    "32 hex characters before data of no known type: read as the fixed field",
    tutorialBody(hexName, utf8("plain text, not an image")),
    32,
  ],
  ["a short body with no image after any split: no name", tutorialBody("notes", utf8("hi")), 0],
  [
    "a name ending in what decodes to BMP's BM, before a JPEG",
    tutorialBody("cat_Qk12", fakeJpegBytes(60)),
    8,
  ],
  [
    "an invalid name before a JPEG: split there, to be refused for what it is",
    tutorialBody(".hidden", fakeJpegBytes(60)),
    7,
  ],
  ["a Chinese name, counted in characters", tutorialBody("猫的照片", fakeJpegBytes(60)), 12],
  ["a one-character Chinese name, 3 bytes", tutorialBody("猫", fakeJpegBytes(61)), 3],
];

/** Bytes with a JPEG's signature, of a deterministic kind for the split table. */
function fakeJpegBytes(size: number): Uint8Array {
  const bytes = randomBytes(size);
  bytes.set([0xff, 0xd8, 0xff, 0xe0]);
  return bytes;
}

for (const [what, { body, length }, nameLength] of splits) {
  Deno.test(`splitName() finds the name in ${what}`, () => {
    const split = splitName(body, length);
    assert.equal(split.nameLength, nameLength);
    // The data runs to the end of what was sent.
    if (nameLength > 0) assert.equal(split.nameLength + split.dataLength, body.length);
  });
}

Deno.test("FrameReader reads the tutorial client's Chinese name and the whole body past L", async () => {
  const data = fakeJpegBytes(1000);
  const { body, length } = tutorialBody("猫的照片", data);
  const stream = concat(utf8(String(length).padStart(16, "0")), body, encodeFrame("next", data));
  const got = await readAll(new FrameReader(bytesSource(stream, [7])));
  assert.deepEqual(got.map((frame) => frame.name), ["猫的照片", "next"]);
  assert.deepEqual(got[0].data, data);
});
