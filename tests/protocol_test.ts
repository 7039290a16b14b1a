import assert from "node:assert/strict";
import {
  type ByteSource,
  bytesSource,
  encodeAck,
  encodeFrame,
  encodeHeader,
  encodeName,
  formatBytes,
  FrameReader,
  isOlderThanMinDeno,
  LineReader,
  LogOutput,
  MAX_ACK_SIZE,
  parseAck,
  parseByteSize,
  parseHeader,
  parseHost,
  parseName,
  parsePort,
  parseSeconds,
  ProtocolError,
  type ProtocolErrorCode,
  quoteBytes,
  sniffExtension,
  splitName,
} from "../protocol.ts";
import { concat, random, randomBytes, utf8 } from "./helpers.ts";

/** A source that returns `bytes` and then never answers again. */
function stallingSource(bytes: Uint8Array): ByteSource {
  let given = false;
  return {
    read(buffer) {
      if (given) return new Promise(() => {});
      given = true;
      buffer.set(bytes);
      return Promise.resolve(bytes.length);
    },
  };
}

async function readAll(reader: FrameReader): Promise<{ name: string; data: Uint8Array }[]> {
  const frames = [];
  for (let head; (head = await reader.readHead()) !== null;) {
    const chunks: Uint8Array[] = [];
    for await (const chunk of reader.data()) chunks.push(chunk.slice());
    frames.push({ name: parseName(head.nameField), data: concat(...chunks) });
  }
  return frames;
}

async function assertProtocolError(
  promise: Promise<unknown>,
  code: ProtocolErrorCode,
  message?: RegExp,
): Promise<void> {
  await assert.rejects(promise, (error) => {
    assert.ok(error instanceof ProtocolError, `expected a ProtocolError, got ${error}`);
    assert.equal(error.code, code, error.message);
    if (message) assert.match(error.message, message);
    return true;
  });
}

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

Deno.test("FrameReader decodes frames the same whatever the chunking", async () => {
  const sizes = [0, 1, 2, 3, 4, 5, 100, 65_536, 200_001];
  const frames = sizes.map((size, i) => ({ name: `file${i}`, data: randomBytes(size) }));
  const stream = concat(...frames.map(({ name, data }) => encodeFrame(name, data)));
  for (let seed = 1; seed <= 40; seed++) {
    const next = random(seed);
    const chunkSizes = Array.from({ length: 50 }, () => 1 + Math.floor(next() ** 3 * 70_000));
    const bufferSize = seed % 2 === 0 ? 512 : 262_144;
    const reader = new FrameReader(bytesSource(stream, chunkSizes), { maxBufferSize: bufferSize });
    const got = await readAll(reader);
    assert.equal(got.length, frames.length, `seed ${seed}`);
    got.forEach((frame, i) => {
      assert.equal(frame.name, frames[i].name, `seed ${seed}`);
      assert.deepEqual(frame.data, frames[i].data, `seed ${seed}, frame ${i}`);
    });
  }
});

Deno.test("FrameReader reads frames split into single bytes", async () => {
  const data = crypto.getRandomValues(new Uint8Array(1000));
  const stream = concat(encodeFrame("a", data), encodeFrame("b", new Uint8Array(0)));
  const got = await readAll(new FrameReader(bytesSource(stream, [1]), { maxBufferSize: 512 }));
  assert.deepEqual(got.map((f) => f.name), ["a", "b"]);
  assert.deepEqual(got[0].data, data);
  assert.equal(got[1].data.length, 0);
});

Deno.test("FrameReader reads a frame from the original client's three writes", async () => {
  // The original sends str(len).zfill(16), a 32-character name, then base64.
  const b64 = utf8(new Uint8Array([1, 2, 3, 4]).toBase64());
  const name = "0123456789abcdef0123456789abcdef";
  const stream = concat(utf8(String(32 + b64.length).padStart(16, "0")), utf8(name), b64);
  const [frame] = await readAll(new FrameReader(bytesSource(stream)));
  assert.equal(frame.name, name);
  assert.deepEqual([...frame.data], [1, 2, 3, 4]);
});

Deno.test("FrameReader never holds a whole large body: chunks stay under the buffer size", async () => {
  const data = new Uint8Array(3 * 1024 * 1024);
  const reader = new FrameReader(bytesSource(encodeFrame("big", data)), { maxBufferSize: 4096 });
  await reader.readHead();
  let largest = 0;
  let total = 0;
  for await (const chunk of reader.data()) {
    largest = Math.max(largest, chunk.length);
    total += chunk.length;
  }
  assert.equal(total, data.length);
  assert.ok(largest <= 3072, `largest chunk ${largest}`);
});

Deno.test("FrameReader grows its buffer only while reads fill it, and never past maxBufferSize", async () => {
  const stream = encodeFrame("big", new Uint8Array(3 * 1024 * 1024));
  const cases: [string, number, number, number][] = [
    ["a sender ahead of the reader", Infinity, 1_048_576, 1_048_576],
    ["a sender behind the reader", 1000, 1_048_576, 65_536],
    ["a limit below the starting size", Infinity, 4096, 4096],
  ];
  for (const [label, chunkSize, maxBufferSize, expected] of cases) {
    const inner = bytesSource(stream, [chunkSize]);
    let largestOffered = 0;
    const source: ByteSource = {
      read(buffer) {
        largestOffered = Math.max(largestOffered, buffer.length);
        return inner.read(buffer);
      },
    };
    const reader = new FrameReader(source, { maxBufferSize });
    await reader.readHead();
    await reader.skipBody();
    assert.equal(await reader.readHead(), null, label);
    assert.equal(largestOffered, expected, label);
  }
});

const badBodies: [string, string][] = [
  ["a character outside the alphabet", "QUJD!EVG"],
  ["base64url characters", "QUJD-_VG"],
  ["a length that is not a multiple of 4", "QUJDREV"],
  ["missing padding", "QUJDRA"],
  ["non-canonical padding bits", "QUJDRB=="],
  ["padding in the middle", "QQ==QUJD"],
  ["whitespace inside", "QUJD  REVG  "],
  ["a newline inside", "QUJD\nREVG\n=="],
  ["a byte above 0x7f", "QUJD\u00e9EVG"],
];

for (const [what, body] of badBodies) {
  Deno.test(`data() rejects base64 with ${what}, and the next frame still reads`, async () => {
    const bodyBytes = new TextEncoder().encode(body);
    const stream = concat(
      encodeHeader(32 + bodyBytes.length),
      encodeName("bad"),
      bodyBytes,
      encodeFrame("good", new Uint8Array([9])),
    );
    for (const chunks of [[Infinity], [1], [5]]) {
      const reader = new FrameReader(bytesSource(stream, chunks), { maxBufferSize: 512 });
      await reader.readHead();
      await assertProtocolError(
        (async () => {
          for await (const _ of reader.data()) { /* drain */ }
        })(),
        "base64",
      );
      await reader.skipBody();
      const [next] = await readAll(reader);
      assert.equal(next.name, "good");
      assert.deepEqual([...next.data], [9]);
    }
  });
}

Deno.test("data() rejects padding that ends a chunk before the body ends", async () => {
  // Reads of 64 bytes: the head waits for 266 bytes of body, so five reads
  // leave 272 bytes of it buffered, a first chunk that ends with "==", which
  // setFromBase64 alone accepts.
  const body = "QUJD".repeat(67) + "QQ==" + "QUJD".repeat(20);
  const stream = concat(encodeHeader(32 + body.length), encodeName("x"), utf8(body));
  const reader = new FrameReader(bytesSource(stream, [64]), { maxBufferSize: 512 });
  await reader.readHead();
  await assertProtocolError(
    (async () => {
      for await (const _ of reader.data()) { /* drain */ }
    })(),
    "base64",
  );
});

const truncations: [string, number, ProtocolErrorCode | null][] = [
  ["at a frame boundary ends cleanly", 0, null],
  ["inside the header is an error", 10, "truncated"],
  ["inside the name is an error", 30, "truncated"],
  ["inside the body is an error", 60, "truncated"],
];

for (const [what, cut, code] of truncations) {
  Deno.test(`FrameReader: end of input ${what}`, async () => {
    const frame = encodeFrame("a", new Uint8Array(30));
    const reader = new FrameReader(bytesSource(concat(frame, frame.subarray(0, cut))));
    await readAll(new FrameReader(bytesSource(frame)));
    const run = readAll(reader);
    if (code === null) assert.equal((await run).length, 1);
    else await assertProtocolError(run, code);
  });
}

Deno.test("readHead() reports an idle connection apart from a stalled header", async () => {
  await assertProtocolError(
    new FrameReader(stallingSource(new Uint8Array(0)), { headerTimeout: 20 }).readHead(),
    "idle",
  );
  await assertProtocolError(
    new FrameReader(stallingSource(utf8("00000")), { headerTimeout: 20 }).readHead(),
    "timeout",
  );
});

Deno.test("data() times out when the body stops arriving", async () => {
  const frame = encodeFrame("a", new Uint8Array(300));
  const reader = new FrameReader(stallingSource(frame.subarray(0, 350)), { idleTimeout: 20 });
  await reader.readHead();
  await assertProtocolError(
    (async () => {
      for await (const _ of reader.data()) { /* drain */ }
    })(),
    "timeout",
  );
});

Deno.test("readHead() with untimedIdle waits for a first byte past the deadline, then gives the head the whole deadline", async () => {
  const frame = encodeFrame("a", new Uint8Array(3));
  let reads = 0;
  const late: ByteSource = {
    async read(buffer) {
      // The first byte after twice the deadline; the rest 30 ms later.
      await new Promise((resolve) => setTimeout(resolve, reads++ === 0 ? 100 : 30));
      if (reads > 2) return null;
      const part = reads === 1 ? frame.subarray(0, 1) : frame.subarray(1);
      buffer.set(part);
      return part.length;
    },
  };
  const reader = new FrameReader(late, { headerTimeout: 50, untimedIdle: true });
  const head = await reader.readHead();
  assert.equal(head?.dataLength, 4);
  await assertProtocolError(
    new FrameReader(stallingSource(new Uint8Array(0)), { headerTimeout: 50 }).readHead(),
    "idle",
  );
});

Deno.test("readHead() refuses to start while a body is unread", async () => {
  const reader = new FrameReader(bytesSource(encodeFrame("a", new Uint8Array(10))));
  await reader.readHead();
  await assert.rejects(reader.readHead(), TypeError);
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

Deno.test("encodeAck() and parseAck() round-trip both answers", () => {
  const answers = [
    { ok: true as const, file: "猫 1.jpg", bytes: 0, crc32: 0 },
    { ok: true as const, file: "00001", bytes: 2 ** 40, crc32: 0xffffffff },
    { ok: false as const, message: 'Invalid name: it starts with a dot: ".x"' },
  ];
  for (const answer of answers) {
    const line = encodeAck(answer);
    assert.equal(line.at(-1), 0x0a);
    assert.deepEqual(parseAck(line.subarray(0, -1)), answer);
  }
});

Deno.test("encodeAck() keeps a long message on one line within the limit", () => {
  const line = encodeAck({ ok: false, message: "a\r\nb".repeat(1000) });
  assert.equal(line.length, MAX_ACK_SIZE);
  assert.equal(line.indexOf(0x0a), MAX_ACK_SIZE - 1);
});

Deno.test("parseAck() rejects lines that are neither OK nor ERR", () => {
  const lines = [
    "",
    "OK",
    "OK x 00000000 a.jpg",
    "OK 1 a.jpg",
    "OK 1 0000000g a.jpg",
    "OK 1 00000000",
    "ok 1 00000000 a",
    "ERR",
    "HTTP/1.1 200 OK",
  ];
  for (const line of lines) {
    assert.throws(() => parseAck(utf8(line)), SyntaxError, line);
  }
});

Deno.test("LineReader rejects a line longer than its limit", async () => {
  const lines = new LineReader(bytesSource(utf8("x".repeat(100) + "\n")), 50);
  await assert.rejects(lines.readLine(), RangeError);
});

Deno.test("LineReader reports input that ends inside a line", async () => {
  const lines = new LineReader(bytesSource(utf8("OK 1 a\nOK 2")), 50);
  assert.deepEqual(await lines.readLine(), utf8("OK 1 a"));
  await assertProtocolError(lines.readLine(), "truncated");
});

const denoVersions: [string, boolean][] = [
  ["2.9.6", false],
  ["2.7.1", false],
  ["2.7.0-rc.1", false],
  ["2.10.0", false],
  ["3.0.0", false],
  ["2.6.8", true],
  ["2.2.0", true],
  ["1.46.3", true],
];
for (const [version, older] of denoVersions) {
  Deno.test(`isOlderThanMinDeno() takes Deno ${version} for ${older ? "too old" : "new enough"}`, () => {
    assert.equal(isOlderThanMinDeno(version), older);
  });
}

const signatures: [string, number[], string][] = [
  ["JPEG", [0xff, 0xd8, 0xff, 0xdb], "jpg"],
  ["PNG", [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], "png"],
  ["GIF87a", [...utf8("GIF87a")], "gif"],
  ["GIF89a", [...utf8("GIF89a")], "gif"],
  ["WebP", [...utf8("RIFF\0\0\0\0WEBP")], "webp"],
  ["a RIFF that is not WebP", [...utf8("RIFF\0\0\0\0WAVE")], "bin"],
  ["BMP", [...utf8("BM")], "bmp"],
  ["little-endian TIFF", [0x49, 0x49, 0x2a, 0], "tiff"],
  ["big-endian TIFF", [0x4d, 0x4d, 0, 0x2a], "tiff"],
  ["an iPhone's HEIC", [0, 0, 0, 0x18, ...utf8("ftypheic")], "heic"],
  ["a HEIF image sequence", [0, 0, 0, 0x18, ...utf8("ftyphevc")], "heic"],
  ["a plain HEIF", [0, 0, 0, 0x1c, ...utf8("ftypmif1")], "heif"],
  ["AVIF", [0, 0, 0, 0x20, ...utf8("ftypavif")], "avif"],
  ["an MP4 video", [0, 0, 0, 0x20, ...utf8("ftypisom")], "bin"],
  ["a ftyp box cut short", [0, 0, 0, 0x20, ...utf8("ftyphe")], "bin"],
  ["a truncated PNG signature", [0x89, 0x50], "bin"],
  ["nothing", [], "bin"],
];
for (const [what, bytes, extension] of signatures) {
  Deno.test(`sniffExtension() names ${what} ${extension}`, () => {
    assert.equal(sniffExtension(new Uint8Array(bytes)), extension);
  });
}

Deno.test("parseByteSize() and parsePort() accept only plain numbers", () => {
  assert.equal(parseByteSize("0"), 0);
  assert.equal(parseByteSize("64k"), 65_536);
  assert.equal(parseByteSize("3MB"), 3 * 1024 ** 2);
  for (const text of ["", "-1", "1.5M", "0x10", "1e3", "12T", "M"]) {
    assert.throws(() => parseByteSize(text), SyntaxError, text);
  }
  assert.equal(parsePort("0"), 0);
  assert.equal(parsePort("65535"), 65_535);
  for (const text of ["", "-1", "65536", "80a", " 80", "1e3"]) {
    assert.throws(() => parsePort(text), SyntaxError, text);
  }
  assert.equal(parsePort("1", 1), 1);
  assert.throws(() => parsePort("0", 1), /expected 1 to 65535, got "0"/);
});

const hosts: [string, string | RegExp][] = [
  ["127.0.0.1", "127.0.0.1"],
  ["0.0.0.0", "0.0.0.0"],
  ["::1", "::1"],
  ["[::1]", "::1"],
  ["[fd00::7]", "fd00::7"],
  ["[::ffff:127.0.0.1]", "::ffff:127.0.0.1"],
  ["[127.0.0.1]", /got "\[127\.0\.0\.1\]"/],
  ["localhost", "localhost"],
  ["files.example.org.", "files.example.org."],
  ["server_2", "server_2"],
  ["", /expected a host name or an IP address, got ""/],
  ["127.0.0.1:9999", /give the port with --port, got "127\.0\.0\.1:9999"/],
  ["[localhost]", /expected a host name or an IP address, got "\[localhost\]"/],
  [" localhost", /got " localhost"/],
  ["bad..name", /got "bad\.\.name"/],
  ["-dash.example", /got "-dash\.example"/],
  ["1::2::3", /got "1::2::3"/],
  ["a".repeat(64), /got "a{64}"/],
  [`${"a.".repeat(127)}ab`, /got "(a\.){40}"$/],
];
for (const [text, expected] of hosts) {
  Deno.test(`parseHost() ${typeof expected === "string" ? "accepts" : "rejects"} ${JSON.stringify(text.slice(0, 20))}`, () => {
    if (typeof expected === "string") assert.equal(parseHost(text), expected);
    else assert.throws(() => parseHost(text), { name: "SyntaxError", message: expected });
  });
}

const durations: [string, number | undefined, number | undefined][] = [
  ["2.5", undefined, 2500],
  ["0.001", undefined, 1],
  ["0", undefined, undefined],
  ["0.000", undefined, undefined],
  ["0", 0, 0],
  ["1.5", 2, undefined],
  ["-1", 0, undefined],
  ["1e3", 0, undefined],
  ["0.0001", 0, undefined],
];

for (const [text, min, ms] of durations) {
  Deno.test(`parseSeconds() ${ms === undefined ? "rejects" : "accepts"} "${text}" with min ${min ?? "by default"}`, () => {
    if (ms === undefined) {
      assert.throws(() => parseSeconds(text, "--timeout", min), /Invalid --timeout/);
    } else assert.equal(parseSeconds(text, "--timeout", min), ms);
  });
}

const byteCounts: [number, string][] = [
  [0, "0 B"],
  [1023, "1023 B"],
  [511.6, "512 B"],
  [1024, "1.0 KiB"],
  [65_536, "64.0 KiB"],
  [1536 * 1024 ** 2, "1.50 GiB"],
  [2 * 1024 ** 5, "2048.00 TiB"],
];

for (const [bytes, text] of byteCounts) {
  Deno.test(`formatBytes() writes ${bytes} as "${text}"`, () => {
    assert.equal(formatBytes(bytes), text);
  });
}

/** How a stdout that fails on its second write fails, and what LogOutput makes of it. */
const outputFailures: [string, Error, boolean][] = [
  ["a reader that went away", new Deno.errors.BrokenPipe("Broken pipe (os error 32)"), false],
  ["a full disk", new Error("No space left on device (os error 28)"), true],
];

for (const [cause, failure, reported] of outputFailures) {
  Deno.test(`LogOutput drops the rest after ${cause}, and ${reported ? "reports it once" : "says nothing"}`, () => {
    const written: string[] = [];
    const errors: Error[] = [];
    let attempts = 0;
    const log = new LogOutput((error) => errors.push(error), {
      write(bytes) {
        if (++attempts === 2) throw failure;
        written.push(new TextDecoder().decode(bytes));
        return bytes.length;
      },
    });
    for (const line of ["one", "two", "three"]) log.line(line);
    assert.deepEqual(written, ["one\n"], "nothing written after the failure");
    assert.equal(attempts, 2, "no write tried after the failure");
    assert.deepEqual(errors, reported ? [failure] : []);
    assert.equal(log.failed, reported);
  });
}

Deno.test("LogOutput writes on after a short write until every byte is out", () => {
  let out = "";
  const log = new LogOutput(() => assert.fail("no error expected"), {
    write(bytes) {
      out += new TextDecoder().decode(bytes.subarray(0, 2));
      return Math.min(2, bytes.length);
    },
  });
  log.text("\r\x1b[K3/10 files");
  log.line(" done");
  assert.equal(out, "\r\x1b[K3/10 files done\n");
  assert.equal(log.failed, false);
});

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
