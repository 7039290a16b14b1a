/** Reading frames with limits and deadlines (protocol/frame_reader.ts). */
import assert from "node:assert/strict";
import {
  type ByteSource,
  bytesSource,
  encodeFrame,
  encodeHeader,
  encodeName,
  FrameReader,
  type ProtocolErrorCode,
} from "../protocol.ts";
import {
  assertProtocolError,
  concat,
  random,
  randomBytes,
  readAll,
  stallingSource,
  utf8,
} from "./helpers.ts";

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
