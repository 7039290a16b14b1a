import assert from "node:assert/strict";
import { crc32 } from "node:zlib";
import {
  type Ack,
  encodeFrame,
  encodeHeader,
  encodeName,
  encodeQuery,
  LineReader,
  MAX_ACK_SIZE,
  parseAck,
  parseHave,
} from "../protocol.ts";
import { type ServerEvent, type ServerOptions, startServer } from "../server.ts";
import { answerTo, concat, fakeJpeg, listFolder, quarantined, TempDirs, utf8 } from "./helpers.ts";

/** Starts a server on a free loopback port in a new temporary folder. */
async function withServer(
  options: ServerOptions,
  body: (
    port: number,
    out: string,
    server: Awaited<ReturnType<typeof startServer>>,
  ) => Promise<void>,
): Promise<void> {
  const out = await Deno.makeTempDir({ prefix: "server_test_" });
  const server = await startServer({ host: "127.0.0.1", port: 0, out, ...options });
  try {
    await body(server.addr.port, out, server);
  } finally {
    await server.shutdown(1000);
    await Deno.remove(out, { recursive: true });
  }
}

/** A client connection that reads acknowledgements. */
async function connect(port: number) {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const lines = new LineReader(conn, MAX_ACK_SIZE);
  return {
    conn,
    send: (bytes: Uint8Array) => conn.write(bytes).then(() => {}),
    async ack(): Promise<Ack | null> {
      const line = await lines.readLine(5000);
      return line && parseAck(line);
    },
    [Symbol.dispose]() {
      try {
        conn.close();
      } catch {
        // Closed by the test or the server.
      }
    },
  };
}

const png = concat(new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), fakeJpeg(500));

Deno.test("server saves each frame under its name with the sniffed extension", async () => {
  await withServer({}, async (port, out) => {
    using client = await connect(port);
    const jpeg = fakeJpeg(70_000);
    await client.send(concat(
      encodeFrame("photo", jpeg),
      encodeFrame("diagram", png),
      encodeFrame("notes", utf8("plain text")),
      encodeFrame("empty", new Uint8Array(0)),
    ));
    assert.deepEqual(await client.ack(), {
      ok: true,
      file: "photo.jpg",
      bytes: 70_000,
      crc32: crc32(jpeg),
    });
    assert.deepEqual(await client.ack(), {
      ok: true,
      file: "diagram.png",
      bytes: png.length,
      crc32: crc32(png),
    });
    assert.deepEqual(await client.ack(), {
      ok: true,
      file: "notes.bin",
      bytes: 10,
      crc32: crc32(utf8("plain text")),
    });
    assert.deepEqual(await client.ack(), { ok: true, file: "empty.bin", bytes: 0, crc32: 0 });
    assert.deepEqual(await listFolder(out), ["diagram.png", "empty.bin", "notes.bin", "photo.jpg"]);
    assert.deepEqual(await Deno.readFile(`${out}/photo.jpg`), jpeg);
    assert.deepEqual(await Deno.readFile(`${out}/diagram.png`), png);
  });
});

Deno.test("startServer() refuses an output folder that is a file, naming it", async () => {
  await using temporary = new TempDirs();
  const file = `${await temporary.make()}/photo.jpg`;
  await Deno.writeFile(file, fakeJpeg(10));
  await assert.rejects(startServer({ host: "127.0.0.1", port: 0, out: file }), {
    name: "NotADirectory",
    message: `Not a folder: ${file}`,
  });
});

Deno.test("two servers save to one folder: a name is taken once, and each knows what the other saved", async () => {
  await using temporary = new TempDirs();
  const out = await temporary.make();
  await using first = await startServer({ host: "127.0.0.1", port: 0, out });
  await using second = await startServer({ host: "127.0.0.1", port: 0, out });
  const [a, b] = [fakeJpeg(5000), fakeJpeg(6000)];
  // The same name, different bytes, through both at once: one wins whole, the other is refused.
  const answers = await Promise.all([
    answerTo(first.addr.port, encodeFrame("cat", a)),
    answerTo(second.addr.port, encodeFrame("cat", b)),
  ]) as string[];
  assert.deepEqual(answers.map((line) => line.slice(0, 3)).sort(), ["ERR", "OK "]);
  assert.match(answers.find((line) => line.startsWith("ERR"))!, /a different file of that name/);
  const kept = await Deno.readFile(`${out}/cat.jpg`);
  assert.deepEqual(kept, answers[0].startsWith("OK") ? a : b);
  // A file saved through one is held for a query to the other.
  assert.match((await answerTo(second.addr.port, encodeFrame("dog", a)))!, /^OK /);
  const held = (await answerTo(first.addr.port, encodeQuery("dog", a.length)))!;
  assert.equal(parseHave(utf8(held))?.file, "dog.jpg");
  // The refused one is not lost: kept whole, as any frame that cannot be saved under its name.
  assert.deepEqual(await listFolder(out), [".quarantine", "cat.jpg", "dog.jpg"]);
  assert.equal((await quarantined(out)).length, 1);
});

Deno.test("startServer() names the address it cannot listen on", async () => {
  await using temporary = new TempDirs();
  using taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = taken.addr as Deno.NetAddr;
  await assert.rejects(startServer({ host: "127.0.0.1", port, out: await temporary.make() }), {
    name: "AddrInUse",
    message: new RegExp(`^Cannot listen on 127\\.0\\.0\\.1:${port}: Address already in use`),
  });
});

Deno.test("server answers a bad header with an error and keeps serving other clients", async () => {
  const rejected: string[] = [];
  await withServer(
    { onEvent: (e) => e.type === "rejected" && rejected.push(e.message) },
    async (port, out) => {
      using bad = await connect(port);
      await bad.send(utf8("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
      const answer = await bad.ack();
      assert.equal(answer?.ok, false);
      assert.match(
        !answer!.ok ? answer!.message : "",
        /expected 16 digits, got "GET \/ HTTP\/1\.1\\r\\n"/,
      );
      assert.equal(await bad.ack(), null, "the connection is closed after a bad header");

      using good = await connect(port);
      await good.send(encodeFrame("fine", fakeJpeg(10)));
      assert.equal((await good.ack())?.ok, true);
      assert.deepEqual(await listFolder(out), ["fine.jpg"]);
      assert.equal(rejected.length, 1);
    },
  );
});

const recoverable: [string, Uint8Array, RegExp][] = [
  [
    "a name with a slash",
    concat(encodeHeader(36), utf8("../../../../../../etc/passwd\0\0\0\0"), utf8("QUJD")),
    /slash/,
  ],
  [
    "a name with invalid UTF-8",
    concat(encodeHeader(36), new Uint8Array([0xc3, 0x28]), new Uint8Array(30), utf8("QUJD")),
    /UTF-8/,
  ],
  [
    "a dotfile name",
    concat(encodeHeader(36), encodeName("x").fill(0x2e, 0, 1), utf8("QUJD")),
    /dot/,
  ],
  [
    "base64 with a bad character",
    concat(encodeHeader(40), encodeName("b"), utf8("QUJD*UJD")),
    /base64|character/,
  ],
  ["base64 with bad padding", concat(encodeHeader(36), encodeName("b"), utf8("QR==")), /padding/],
];
for (const [what, frame, message] of recoverable) {
  Deno.test(`server refuses ${what}, saves nothing under a name, keeps the frame whole, and the connection goes on`, async () => {
    await withServer({}, async (port, out) => {
      using client = await connect(port);
      const next = fakeJpeg(20);
      await client.send(concat(frame, encodeFrame("next", next)));
      const first = await client.ack();
      assert.equal(first?.ok, false);
      assert.match(first!.ok ? "" : first!.message, message);
      assert.match(first!.ok ? "" : first!.message, /: kept as \.quarantine\/[^/]+\.frame$/);
      assert.deepEqual(await client.ack(), {
        ok: true,
        file: "next.jpg",
        bytes: 20,
        crc32: crc32(next),
      });
      assert.deepEqual(await listFolder(out), [".quarantine", "next.jpg"]);
      assert.deepEqual(await quarantined(out), [frame]);
    });
  });
}

Deno.test("server refuses a frame above the limit before writing anything", async () => {
  await withServer({ maxFrameSize: 1000 }, async (port, out) => {
    using client = await connect(port);
    await client.send(concat(encodeHeader(1001), encodeName("big")));
    const answer = await client.ack();
    assert.match(answer && !answer.ok ? answer.message : "", /exceeds the limit of 1000/);
    assert.deepEqual(await listFolder(out), []);
  });
});

Deno.test("server leaves no file and no temporary file when a connection is cut mid-body", async () => {
  const rejected: string[] = [];
  await withServer(
    { onEvent: (e) => e.type === "rejected" && rejected.push(e.message) },
    async (port, out) => {
      const frame = encodeFrame("cut", fakeJpeg(300_000));
      {
        using client = await connect(port);
        await client.send(frame.subarray(0, 200_000));
        // Give the server time to create and fill its temporary file.
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      for (let i = 0; i < 50 && rejected.length === 0; i++) {
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      assert.match(rejected.join(), /ended inside a frame body|lost/);
      assert.deepEqual(await listFolder(out), []);
    },
  );
});

Deno.test("server reports a connection reset inside a body once, as a lost connection", async () => {
  const events: ServerEvent[] = [];
  const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
  await withServer({ onEvent: (e) => events.push(e) }, async (port, out) => {
    {
      using client = await connect(port);
      await client.send(encodeFrame("first", fakeJpeg(100)));
      for (let i = 0; i < 250 && !events.some((e) => e.type === "saved"); i++) await pause(10);
      // The answer to "first" arrives and stays unread, so closing resets the
      // connection, and the reset overtakes the body still on its way.
      await pause(30);
      await client.send(encodeFrame("second", fakeJpeg(3_000_000)).subarray(0, 2_000_000));
    }
    for (let i = 0; i < 50 && !events.some((e) => e.type === "rejected"); i++) await pause(20);
    await pause(100);
    const rejected = events.flatMap((e) => e.type === "rejected" ? [e.message] : []);
    // Had the server read the whole body before the reset came, it sees a
    // plain end of input instead; one line either way.
    assert.equal(rejected.length, 1, rejected.join("\n"));
    assert.match(
      rejected[0],
      /^(Connection lost inside a frame: Connection reset by peer|Input ended inside a frame body)/,
    );
    assert.deepEqual(await listFolder(out), ["first.jpg"]);
  });
});

Deno.test("server saves a file whose client closes without reading the answer", async () => {
  await withServer({}, async (port, out) => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    await conn.write(encodeFrame("0123456789abcdef0123456789abcdef", fakeJpeg(5000)));
    conn.close();
    for (let i = 0; i < 100 && (await listFolder(out)).length === 0; i++) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    assert.deepEqual(await listFolder(out), ["0123456789abcdef0123456789abcdef.jpg"]);
  });
});

Deno.test("server acknowledges an identical re-upload without a copy and refuses a different file of that name", async () => {
  await withServer({}, async (port, out) => {
    const original = fakeJpeg(1000);
    using client = await connect(port);
    await client.send(encodeFrame("same", original));
    assert.equal((await client.ack())?.ok, true);
    await client.send(encodeFrame("same", original));
    assert.deepEqual(await client.ack(), {
      ok: true,
      file: "same.jpg",
      bytes: 1000,
      crc32: crc32(original),
    });
    const different = encodeFrame("same", fakeJpeg(1000));
    await client.send(different);
    const answer = await client.ack();
    assert.match(answer && !answer.ok ? answer.message : "", /different file of that name exists/);
    assert.deepEqual(await Deno.readFile(`${out}/same.jpg`), original);
    assert.deepEqual(await listFolder(out), [".quarantine", "same.jpg"]);
    assert.deepEqual(await quarantined(out), [different]);
  });
});

// Same size, one byte apart: in a word, in the bytes after the last whole
// word, and in a later read of a file longer than one.
for (const [size, at] of [[1003, 500], [1003, 1002], [600_001, 600_000], [600_000, 300_000]]) {
  Deno.test(`server tells a ${size}-byte file from one whose byte ${at} differs`, async () => {
    await withServer({}, async (port, out) => {
      const original = fakeJpeg(size);
      const other = original.slice();
      other[at] ^= 1;
      using client = await connect(port);
      await client.send(encodeFrame("same", original));
      assert.equal((await client.ack())?.ok, true);
      await client.send(encodeFrame("same", other));
      const answer = await client.ack();
      assert.match(
        answer && !answer.ok ? answer.message : "",
        /different file of that name exists/,
      );
      await client.send(encodeFrame("same", original));
      assert.equal((await client.ack())?.ok, true);
      assert.deepEqual(await Deno.readFile(`${out}/same.jpg`), original);
    });
  });
}

Deno.test("server never writes through a symlink planted at the final name", async () => {
  const outside = await Deno.makeTempFile();
  await Deno.writeTextFile(outside, "precious");
  try {
    await withServer({}, async (port, out) => {
      await Deno.symlink(outside, `${out}/target.bin`);
      using client = await connect(port);
      // The same bytes as the link's target: still refused, so the answer cannot reveal them.
      await client.send(encodeFrame("target", utf8("precious")));
      const answer = await client.ack();
      assert.match(answer && !answer.ok ? answer.message : "", /different file of that name/);
      assert.equal(await Deno.readTextFile(outside), "precious");
    });
  } finally {
    await Deno.remove(outside);
  }
});

Deno.test("server in raw mode stores each body byte for byte after the numbered files already there", async () => {
  await withServer({ raw: true }, async (port, out) => {
    await Deno.writeTextFile(`${out}/00000`, "earlier run");
    using client = await connect(port);
    const frames = [encodeFrame("a", fakeJpeg(10)), encodeFrame("b", utf8("x"))];
    await client.send(concat(...frames));
    for (const [i, file] of ["00001", "00002"].entries()) {
      const body = frames[i].subarray(16);
      assert.deepEqual(await client.ack(), {
        ok: true,
        file,
        bytes: body.length,
        crc32: crc32(body),
      });
    }
    assert.equal(await Deno.readTextFile(`${out}/00000`), "earlier run");
    assert.deepEqual(await Deno.readFile(`${out}/00001`), frames[0].subarray(16));
    assert.deepEqual(await Deno.readFile(`${out}/00002`), frames[1].subarray(16));
  });
});

Deno.test("server in raw mode numbers on from the files a stopped server left in the folder", async () => {
  await using temporary = new TempDirs();
  const out = await temporary.make();
  await Deno.writeTextFile(`${out}/00007`, "earlier run");
  const server = await startServer({ host: "127.0.0.1", port: 0, out, raw: true });
  try {
    using client = await connect(server.addr.port);
    await client.send(encodeFrame("a", fakeJpeg(10)));
    const answer = await client.ack();
    assert.equal(answer?.ok && answer.file, "00008");
    assert.deepEqual(await listFolder(out), ["00007", "00008"]);
  } finally {
    await server.shutdown(1000);
  }
});

Deno.test("server in raw mode refuses a query, saves nothing for it, and takes the next frame", async () => {
  await withServer({ raw: true }, async (port, out) => {
    using client = await connect(port);
    await client.send(concat(encodeQuery("a", 10), encodeFrame("a", fakeJpeg(10))));
    assert.deepEqual(await client.ack(), {
      ok: false,
      message: "Cannot answer a query: a --raw server keeps no names",
    });
    const answer = await client.ack();
    assert.equal(answer?.ok && answer.file, "00000");
    assert.deepEqual(await listFolder(out), ["00000"]);
  });
});

Deno.test("server confirms each saved frame even when its onEvent throws", async () => {
  let events = 0;
  const onEvent = () => {
    events++;
    throw new Error("No space left on device (os error 28)");
  };
  await withServer({ onEvent }, async (port, out) => {
    using client = await connect(port);
    const frames = Array.from({ length: 5 }, (_, i) => encodeFrame(`f${i}`, fakeJpeg(100 + i)));
    await client.send(concat(...frames));
    for (let i = 0; i < frames.length; i++) {
      const answer = await client.ack();
      assert.equal(answer?.ok && answer.file, `f${i}.jpg`);
    }
    assert.equal((await listFolder(out)).length, 5);
    assert.ok(events >= 5, "told of each saved frame");
  });
});

Deno.test("server serves many clients at once, each with many frames", async () => {
  await withServer({}, async (port, out) => {
    const clients = 20;
    const perClient = 5;
    await Promise.all(Array.from({ length: clients }, async (_, c) => {
      using client = await connect(port);
      const frames = Array.from(
        { length: perClient },
        (_, i) => encodeFrame(`c${c}_${i}`, fakeJpeg(3000 + i)),
      );
      await client.send(concat(...frames));
      for (let i = 0; i < perClient; i++) assert.equal((await client.ack())?.ok, true);
    }));
    assert.equal((await listFolder(out)).length, clients * perClient);
  });
});

Deno.test("server cuts off a header that trickles in past its deadline", async () => {
  await withServer({ headerTimeout: 200 }, async (port) => {
    using client = await connect(port);
    await client.send(utf8("00000"));
    const answer = await client.ack();
    assert.match(
      answer && !answer.ok ? answer.message : "",
      /Timed out waiting for a frame header/,
    );
  });
});

Deno.test("server closes a connection that sends nothing for the header deadline, and serves one that then sends", async () => {
  await withServer({ headerTimeout: 300 }, async (port) => {
    using silent = await connect(port);
    using late = await connect(port);
    await new Promise((resolve) => setTimeout(resolve, 150));
    await late.send(encodeFrame("late", fakeJpeg(100)));
    assert.equal((await late.ack())?.ok, true);
    const started = performance.now();
    assert.equal(await silent.ack(), null, "the silent connection was closed");
    assert.ok(performance.now() - started < 2000);
  });
});

Deno.test("shutdown() lets a frame in progress finish and closes idle connections", async () => {
  await using temporary = new TempDirs();
  const out = await temporary.make();
  const server = await startServer({ host: "127.0.0.1", port: 0, out });
  using idle = await connect(server.addr.port);
  using busy = await connect(server.addr.port);
  const late = fakeJpeg(100_000);
  const frame = encodeFrame("late", late);
  await busy.send(frame.subarray(0, 50_000));
  await new Promise((resolve) => setTimeout(resolve, 100));
  const stopping = server.shutdown(5000);
  await busy.send(frame.subarray(50_000));
  assert.deepEqual(await busy.ack(), {
    ok: true,
    file: "late.jpg",
    bytes: 100_000,
    crc32: crc32(late),
  });
  assert.equal(await idle.ack(), null);
  const stats = await stopping;
  assert.deepEqual(stats, {
    files: 1,
    duplicates: 0,
    bytes: 100_000,
    errors: 0,
    received: frame.length,
    kept: 0,
    shed: 0,
  });
  await assert.rejects(Deno.connect({ hostname: "127.0.0.1", port: server.addr.port }));
});

Deno.test("shutdown() lets a frame waiting for its turn finish too, as its client sent it", async () => {
  await using temporary = new TempDirs();
  const out = await temporary.make();
  const server = await startServer({ host: "127.0.0.1", port: 0, out, maxFrames: 1 });
  const held = encodeFrame("held", fakeJpeg(100_000));
  using holder = await connect(server.addr.port);
  await holder.send(held.subarray(0, 50_000));
  await new Promise((resolve) => setTimeout(resolve, 100));
  // The original client's way: the whole frame, then nothing more.
  using queued = await connect(server.addr.port);
  await queued.send(encodeFrame("queued", fakeJpeg(1000)));
  await new Promise((resolve) => setTimeout(resolve, 100));
  const stopping = server.shutdown(5000);
  await holder.send(held.subarray(50_000));
  assert.equal((await holder.ack())?.ok, true);
  assert.equal((await queued.ack())?.ok, true);
  assert.equal((await stopping).files, 2);
  assert.deepEqual(await listFolder(out), ["held.jpg", "queued.jpg"]);
});

Deno.test("shutdown() drops a frame that outlasts the drain deadline and leaves no partial file", async () => {
  await using temporary = new TempDirs();
  const out = await temporary.make();
  const server = await startServer({ host: "127.0.0.1", port: 0, out });
  using busy = await connect(server.addr.port);
  await busy.send(encodeFrame("never", fakeJpeg(100_000)).subarray(0, 50_000));
  await new Promise((resolve) => setTimeout(resolve, 100));
  const stats = await server.shutdown(100);
  assert.equal(stats.files, 0);
  assert.deepEqual(await listFolder(out), []);
});

Deno.test("server answers a frame before waiting for the body of the next", async () => {
  await withServer({}, async (port) => {
    using client = await connect(port);
    const second = encodeFrame("second", fakeJpeg(100_000));
    // The first frame whole, the second's head and a little of its body; the rest never comes.
    const first = fakeJpeg(100);
    await client.send(concat(encodeFrame("first", first), second.subarray(0, 1000)));
    assert.deepEqual(await client.ack(), {
      ok: true,
      file: "first.jpg",
      bytes: 100,
      crc32: crc32(first),
    });
  });
});

/**
 * A frame as the tutorial's client sends it: header, the name unpadded, then
 * base64, with the name counted in L as Python 3's len() counts it.
 */
function tutorialFrame(name: string, data: Uint8Array): Uint8Array {
  const base64 = data.toBase64();
  const header = String([...name].length + base64.length).padStart(16, "0");
  return utf8(header + name + base64);
}

const unpadded: [string, string, Uint8Array, string][] = [
  ["a photo's name", "IMG_0001", fakeJpeg(3000), "IMG_0001.jpg"],
  ["a one-letter name", "x", fakeJpeg(10), "x.jpg"],
  ["a 28-byte name before a PNG", "p".repeat(28), png, `${"p".repeat(28)}.png`],
  [
    "a name longer than 32 bytes",
    "IMG_20240501_123456_HDR_portrait_0001",
    fakeJpeg(500),
    "IMG_20240501_123456_HDR_portrait_0001.jpg",
  ],
  ["a Chinese name", "猫的照片", fakeJpeg(700), "猫的照片.jpg"],
  ["a one-character Chinese name", "猫", fakeJpeg(701), "猫.jpg"],
  ["a name with an emoji", "🐱cat", fakeJpeg(702), "🐱cat.jpg"],
  ["a 250-byte name", "n".repeat(250), fakeJpeg(100), `${"n".repeat(250)}.jpg`],
  ["a name that ends in what reads as BMP's signature", "cat_Qk12", fakeJpeg(900), "cat_Qk12.jpg"],
];

for (const [what, name, data, file] of unpadded) {
  Deno.test(`server reads the tutorial client's unpadded frame with ${what}`, async () => {
    await withServer({}, async (port, out) => {
      using client = await connect(port);
      await client.send(tutorialFrame(name, data));
      assert.deepEqual(await client.ack(), {
        ok: true,
        file,
        bytes: data.length,
        crc32: crc32(data),
      });
      assert.deepEqual(await Deno.readFile(`${out}/${file}`), data);
    });
  });
}

Deno.test("server keeps whole a frame whose name cannot be told from its data, and says where", async () => {
  const kept: string[] = [];
  await withServer(
    { onEvent: (event) => event.type === "kept" && kept.push(`${event.file}: ${event.message}`) },
    async (port, out) => {
      // A text file named notes.jpg: no image signature after any split, shorter than 32 bytes.
      const frame = tutorialFrame("notes", utf8("hello world!"));
      using client = await connect(port);
      await client.send(frame);
      const answer = await client.ack();
      assert.match(
        answer && !answer.ok ? answer.message : "",
        /^Invalid name: none found: .*: kept as \.quarantine\/[^/]+\.frame$/,
      );
      assert.deepEqual(await quarantined(out), [frame]);
      assert.deepEqual(await listFolder(out), [".quarantine"]);
      assert.equal(kept.length, 1);
    },
  );
});

Deno.test("server keeps a large frame whose base64 goes bad late, byte for byte as it arrived", async () => {
  await withServer({}, async (port, out) => {
    const frame = encodeFrame("late", fakeJpeg(600_000));
    frame[16 + 32 + 500_000] = 0x2a; // "*", past the first reads of the body
    using client = await connect(port);
    await client.send(frame);
    const answer = await client.ack();
    assert.match(answer && !answer.ok ? answer.message : "", /base64|character/);
    const kept = await quarantined(out);
    // Compared without a diff: assert's diff of 800 KB takes minutes.
    assert.equal(kept.length, 1);
    assert.ok(kept[0].length === frame.length && kept[0].every((byte, i) => byte === frame[i]));
    assert.deepEqual(await listFolder(out), [".quarantine"]);
  });
});

Deno.test("server keeps nothing of a refused frame that never arrives whole", async () => {
  await withServer({ idleTimeout: 300 }, async (port, out, server) => {
    const frame = tutorialFrame(".hidden", fakeJpeg(100_000));
    using client = await connect(port);
    await client.send(frame.subarray(0, 60_000));
    await client.conn.closeWrite();
    assert.equal((await client.ack())?.ok, false);
    assert.deepEqual(await quarantined(out), []);
    assert.equal(server.stats.kept, 0);
    assert.deepEqual((await listFolder(out)).filter((name) => name.endsWith(".part")), []);
  });
});

Deno.test("server's quarantine holds to its quota under a flood of bad frames, across a restart, and serving goes on", async () => {
  await using temporary = new TempDirs();
  const out = await temporary.make();
  const quota = 20_000;
  const flood = async (port: number, good: string) => {
    using client = await connect(port);
    const answers: string[] = [];
    for (let i = 0; i < 100; i++) {
      await client.send(tutorialFrame(`.bad${i}`, fakeJpeg(1000)));
      const answer = await client.ack();
      answers.push(answer && !answer.ok ? answer.message : "OK");
    }
    await client.send(encodeFrame(good, fakeJpeg(100)));
    assert.equal((await client.ack())?.ok, true, "still serving");
    return answers;
  };
  const first = await startServer({ host: "127.0.0.1", port: 0, out, quarantineSize: quota });
  let answers: string[];
  try {
    answers = await flood(first.addr.port, "first");
  } finally {
    await first.shutdown(1000);
  }
  const kept = answers.filter((answer) => answer.includes(": kept as "));
  assert.ok(kept.length > 0, "nothing was kept");
  assert.ok(kept.length < 100, "the quota kept everything");
  for (const answer of answers) assert.match(answer, /^Invalid name: it starts with a dot/);
  const size = (frames: Uint8Array[]) => frames.reduce((sum, frame) => sum + frame.length, 0);
  const held = size(await quarantined(out));
  assert.ok(held <= quota, `${held} bytes kept, over the quota of ${quota}`);
  assert.equal((await quarantined(out)).length, kept.length);

  // A restart counts what is there: with the quota full, it keeps no more.
  const second = await startServer({ host: "127.0.0.1", port: 0, out, quarantineSize: quota });
  try {
    const again = await flood(second.addr.port, "second");
    assert.ok(again.every((answer) => !answer.includes("kept as")), again.join("\n"));
  } finally {
    await second.shutdown(1000);
  }
  assert.equal(size(await quarantined(out)), held);
});

Deno.test("server reads our client's full 32-byte name of Chinese characters by its bytes", async () => {
  await withServer({}, async (port, out) => {
    const name = "猫".repeat(10) + "ab";
    const data = fakeJpeg(400);
    using client = await connect(port);
    await client.send(concat(encodeFrame(name, data), encodeFrame("next", data)));
    assert.equal((await client.ack())?.ok, true);
    assert.equal((await client.ack())?.ok, true);
    assert.deepEqual(await Deno.readFile(`${out}/${name}.jpg`), data);
  });
});
