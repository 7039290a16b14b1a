/**
 * Admission: frames over a cap wait their turn instead of being refused, idle
 * connections are shed for newcomers, and a crowd of them stops no upload.
 */
import assert from "node:assert/strict";
import { crc32 } from "node:zlib";
import { collectFiles, uploadFiles } from "../client.ts";
import {
  bytesSource,
  concatBytes,
  encodeFrame,
  encodeQuery,
  Folder,
  FrameReader,
  FrameSlots,
  LineReader,
  MAX_ACK_SIZE,
  parseHave,
  refusalOf,
  Session,
  type SessionHost,
} from "../protocol.ts";
import { type ServerEvent, type ServerOptions, startServer } from "../server.ts";
import {
  fakeJpeg,
  listFolder,
  makeImages,
  ROOT,
  spawnClient,
  Spawned,
  spawnServer,
  TempDirs,
} from "./helpers.ts";

/** A raw connection to the server under test, reading its answers line by line. */
class Peer implements Disposable {
  readonly conn: Deno.TcpConn;
  readonly #lines: LineReader;

  private constructor(conn: Deno.TcpConn) {
    this.conn = conn;
    this.#lines = new LineReader(conn, MAX_ACK_SIZE);
  }

  static async open(port: number): Promise<Peer> {
    return new Peer(await Deno.connect({ hostname: "127.0.0.1", port }));
  }

  send(bytes: Uint8Array): Promise<void> {
    return this.conn.write(bytes).then(() => {});
  }

  /** The next answer line, or `null` once the server has closed, within `ms`. */
  async answer(ms = 5000): Promise<string | null> {
    const line = await this.#lines.readLine(ms);
    return line === null ? null : new TextDecoder().decode(line);
  }

  /** Whether the server answers a query within `ms`: false when the answer waits. */
  async answersWithin(ms: number): Promise<boolean> {
    try {
      await this.send(encodeQuery("probe", 1));
      return parseHave(new TextEncoder().encode((await this.answer(ms))!)) === undefined;
    } catch {
      return false;
    }
  }

  [Symbol.dispose](): void {
    try {
      this.conn.close();
    } catch {
      // Closed by the server already.
    }
  }
}

async function withServer(
  options: ServerOptions,
  body: (port: number, out: string, events: ServerEvent[]) => Promise<void>,
): Promise<void> {
  await using temporary = new TempDirs();
  const out = await temporary.make();
  const events: ServerEvent[] = [];
  const server = await startServer({
    host: "127.0.0.1",
    port: 0,
    out,
    ...options,
    onEvent: (event) => events.push(event),
  });
  try {
    await body(server.addr.port, out, events);
  } finally {
    await server.shutdown(1000);
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Whether a promise is still pending after `ms`: an answer the server holds back. */
async function pendingAfter(promise: Promise<unknown>, ms: number): Promise<boolean> {
  const waiting = Symbol("waiting");
  return await Promise.race([promise, sleep(ms).then(() => waiting)]) === waiting;
}

Deno.test("a frame over the per-address cap waits its turn, unanswered, then is saved", async () => {
  await withServer({ maxFramesPerAddress: 1 }, async (port, out) => {
    const slow = fakeJpeg(100_000);
    const slowFrame = encodeFrame("slow", slow);
    using first = await Peer.open(port);
    await first.send(slowFrame.subarray(0, 50_000));
    await sleep(100);
    using second = await Peer.open(port);
    const quick = fakeJpeg(1000);
    await second.send(encodeFrame("quick", quick));
    const answer = second.answer();
    // Waiting, not refused: no answer while the first frame holds the turn.
    assert.ok(await pendingAfter(answer, 300), "the second frame was answered at once");
    assert.ok(!(await listFolder(out)).includes("quick.jpg"));
    await first.send(slowFrame.subarray(50_000));
    assert.match((await first.answer())!, /^OK 100000 .* slow\.jpg$/);
    assert.equal(await answer, `OK 1000 ${hex(crc32(quick))} quick.jpg`);
    assert.deepEqual(await listFolder(out), ["quick.jpg", "slow.jpg"]);
  });
});

function hex(value: number): string {
  return value.toString(16).padStart(8, "0");
}

Deno.test("a frame that waits past the queue deadline is answered busy, and the client's retry lands it", async () => {
  await withServer({ maxFrames: 1, queueTimeout: 300 }, async (port, out, events) => {
    await using temporary = new TempDirs();
    const input = await temporary.make();
    const images = await makeImages(input, [2000, 3000]);
    const held = encodeFrame("held", fakeJpeg(100_000));
    using holder = await Peer.open(port);
    await holder.send(held.subarray(0, 50_000));
    await sleep(100);
    const { files } = await collectFiles([input]);
    const upload = uploadFiles(files, { port, retries: 3 });
    // The first try is turned away after 300 ms; the retries come after 0.5 s and 1 s.
    await sleep(700);
    await holder.send(held.subarray(50_000));
    const report = await upload;
    assert.deepEqual(report.failed, []);
    assert.match((await holder.answer())!, /^OK 100000 /);
    const refusals = events.flatMap((event) => event.type === "refused" ? [event.message] : []);
    assert.ok(refusals.length > 0, "no frame was turned away");
    for (const message of refusals) {
      assert.match(message, /^Server busy: no turn within 300 ms: 1 frame in progress$/);
    }
    for (const [name, bytes] of images) {
      assert.deepEqual(await Deno.readFile(`${out}/${name}.jpg`), bytes);
    }
  });
});

Deno.test("at the connection cap the connection idle longest is closed for a newcomer, never one inside a frame", async () => {
  await withServer({ maxConnections: 3 }, async (port, out, events) => {
    using oldest = await Peer.open(port);
    await sleep(50);
    const frame = encodeFrame("inside", fakeJpeg(50_000));
    using inside = await Peer.open(port);
    await inside.send(frame.subarray(0, 20_000));
    await sleep(50);
    using younger = await Peer.open(port);
    await sleep(50);
    using newcomer = await Peer.open(port);
    await newcomer.send(encodeFrame("newcomer", fakeJpeg(100)));
    assert.match((await newcomer.answer())!, /^OK 100 .* newcomer\.jpg$/);
    assert.equal(await oldest.answer(), null, "the oldest idle connection was closed");
    assert.ok(await younger.answersWithin(2000), "the younger idle one is still served");
    await inside.send(frame.subarray(20_000));
    assert.match((await inside.answer())!, /^OK 50000 .* inside\.jpg$/);
    assert.deepEqual(await listFolder(out), ["inside.jpg", "newcomer.jpg"]);
    const shed = events.filter((event) => event.type === "shed");
    assert.equal(shed.length, 1);
  });
});

Deno.test("with every connection inside a frame, a newcomer waits until one finishes, and is then served", async () => {
  await withServer({ maxConnections: 1 }, async (port, out) => {
    const frame = encodeFrame("first", fakeJpeg(50_000));
    using first = await Peer.open(port);
    await first.send(frame.subarray(0, 20_000));
    await sleep(50);
    using second = await Peer.open(port);
    await second.send(encodeFrame("second", fakeJpeg(100)));
    const answer = second.answer();
    assert.ok(await pendingAfter(answer, 300), "the newcomer was served past the cap");
    await first.send(frame.subarray(20_000));
    assert.match((await first.answer())!, /^OK 50000 /);
    assert.match((await answer)!, /^OK 100 .* second\.jpg$/);
    assert.deepEqual(await listFolder(out), ["first.jpg", "second.jpg"]);
  });
});

Deno.test("a reader keeps its body buffer on release() while a body is still reading", async () => {
  const bytes = encodeFrame("a", fakeJpeg(200_000));
  const frame = bytesSource(bytes);
  let stall = false;
  const reader = new FrameReader({
    read: (buffer) => stall ? new Promise(() => {}) : frame.read(buffer),
  }, { untimedIdle: true });
  assert.equal(reader.bufferSize, 512, "waiting for a frame");
  await reader.readHead();
  const chunks = reader.data();
  await chunks.next(); // what came with the head
  await chunks.next(); // a read into the body's own buffer
  const grown = reader.bufferSize;
  assert.ok(grown >= 65_536, `body buffer ${grown}`);
  stall = true;
  void chunks.next();
  reader.release();
  assert.equal(reader.bufferSize, grown);
});

Deno.test("a reader that falls idle after a frame gives its body buffer up on release()", async () => {
  const bytes = encodeFrame("a", fakeJpeg(200_000));
  const frame = bytesSource(bytes);
  let left = bytes.length;
  const reader = new FrameReader({
    read: (buffer) =>
      left === 0 ? new Promise(() => {}) : frame.read(buffer).then((n) => (left -= n!, n)),
  }, { untimedIdle: true });
  await reader.readHead();
  await reader.skipBody();
  assert.ok(reader.bufferSize >= 65_536);
  void reader.readHead(); // waits for a frame that never comes
  reader.release();
  assert.equal(reader.bufferSize, 512);
});

/** Runs tests/crowd.py against `port`: idle sockets from many addresses, and a few trickling. */
async function crowd(
  port: number,
  idle: number,
  addresses: number,
  trickle: number,
): Promise<Spawned> {
  const spawned = new Spawned(
    "python3",
    [
      "-u",
      `${ROOT}tests/crowd.py`,
      String(port),
      String(idle),
      String(addresses),
      String(trickle),
      "60",
    ],
    { stdin: true },
  );
  await spawned.waitFor(/^ready$/m);
  return spawned;
}

/** Ends a crowd and returns how many of its idle sockets the server had closed. */
async function disperse(spawned: Spawned): Promise<number> {
  await spawned.child.stdin.close();
  assert.equal((await spawned.wait()).code, 0, spawned.stderr);
  return Number(spawned.stdout.match(/^closed (\d+)$/m)![1]);
}

const crowds: [string, ServerOptions, number, (closed: number) => void][] = [
  ["the default server holds 3,000 idle connections open", {}, 3000, (closed) => {
    assert.equal(closed, 0, "the default server closed idle connections below its cap");
  }],
  ["a server capped at 1,000 sheds idle ones for the uploads", { maxConnections: 1000 }, 2000, (
    closed,
  ) => {
    assert.ok(closed >= 1000, `only ${closed} of 2,000 idle connections were closed`);
  }],
];

for (const [what, options, idle, checkClosed] of crowds) {
  Deno.test(`under a crowd of idle connections from 300 addresses and trickling headers, four uploads all land: ${what}`, async () => {
    await withServer(options, async (port, out) => {
      await using temporary = new TempDirs();
      const inputs = await Promise.all([1, 2, 3, 4].map(() => temporary.make()));
      const images = new Map<string, Uint8Array>();
      for (const input of inputs) {
        for (const entry of await makeImages(input, Array(50).fill(5000))) images.set(...entry);
      }
      await using people = await crowd(port, idle, 300, 4);
      const reports = await Promise.all(inputs.map(async (input) => {
        const { files } = await collectFiles([input]);
        return uploadFiles(files, { port, retries: 0, timeout: 20_000 });
      }));
      assert.deepEqual(reports.flatMap((report) => report.failed), []);
      for (const [name, bytes] of images) {
        assert.deepEqual(await Deno.readFile(`${out}/${name}.jpg`), bytes, name);
      }
      checkClosed(await disperse(people));
    });
  });
}

Deno.test("200 of our clients at once all succeed against a default server", async () => {
  await withServer({}, async (port, out) => {
    await using temporary = new TempDirs();
    const input = await temporary.make();
    const images = await makeImages(input, Array(200).fill(20_000));
    const { files } = await collectFiles([input]);
    const reports = await Promise.all(
      files.map((file) => uploadFiles([file], { port, retries: 0, timeout: 20_000 })),
    );
    assert.deepEqual(reports.flatMap((report) => report.failed), []);
    for (const [name, bytes] of images) {
      assert.deepEqual(await Deno.readFile(`${out}/${name}.jpg`), bytes);
    }
  });
});

Deno.test("server.ts under a descriptor limit of 200 says so, holds fewer connections, and sheds idle ones for an upload", async () => {
  await using temporary = new TempDirs();
  const out = await temporary.make();
  const input = await temporary.make();
  const images = await makeImages(input, Array(20).fill(3000));
  const { server, port } = await spawnServer(out, [], ["prlimit", "--nofile=200:200"]);
  await using _server = server;
  const match = server.stderr.match(
    /The descriptor limit allows (\d+) more open files, too few for --max-connections 10000: holding at most (\d+) connections \(raise it with ulimit -n\)/,
  );
  assert.ok(match, server.stderr);
  const held = Number(match[2]);
  assert.ok(held > 50 && held < 200, `holding ${held}`);
  await using people = await crowd(port, 300, 30, 0);
  await using client = spawnClient(input, [`--port=${port}`, "--retries=0"]);
  assert.equal((await client.wait()).code, 0, client.stderr);
  for (const [name, bytes] of images) {
    assert.deepEqual(await Deno.readFile(`${out}/${name}.jpg`), bytes);
  }
  assert.ok((await disperse(people)) >= 300 - held, "idle connections were shed");
  assert.match(
    server.stderr,
    /shed 127\.1\.\d+\.\d+:\d+: idle .* without a frame, closed for a newcomer/,
  );
});

Deno.test("FrameSlots gives a freed turn to the oldest frame that may have it, not to a capped address", async () => {
  const slots = new FrameSlots({ max: 2, perAddress: 1, timeout: 5_000 });
  assert.equal(slots.take("10.0.0.1"), undefined);
  assert.equal(slots.take("10.0.0.2"), undefined);
  const order: string[] = [];
  // 10.0.0.1 waits first, but its own turn is still out when 10.0.0.2's comes back.
  const first = slots.take("10.0.0.1")!.then(() => order.push("10.0.0.1"));
  const second = slots.take("10.0.0.3")!.then(() => order.push("10.0.0.3"));
  slots.give("10.0.0.2");
  await second;
  slots.give("10.0.0.1");
  await first;
  assert.deepEqual(order, ["10.0.0.3", "10.0.0.1"]);
  slots.give("10.0.0.1");
  slots.give("10.0.0.3");
});

Deno.test("FrameSlots refuses a frame as busy, in the wire's words, once its wait passes the deadline", async () => {
  const slots = new FrameSlots({ max: 1, perAddress: 1, timeout: 20 });
  slots.take("10.0.0.1");
  await assert.rejects(slots.take("10.0.0.2")!, (error) => {
    assert.ok(error instanceof Deno.errors.Busy);
    assert.equal(refusalOf(error.message), "busy");
    assert.match(error.message, /no turn within 20 ms: 1 frame in progress/);
    return true;
  });
  slots.give("10.0.0.1");
});

Deno.test("FrameSlots.close() turns every waiting frame away", async () => {
  const slots = new FrameSlots({ max: 1, perAddress: 1, timeout: 5_000 });
  slots.take("10.0.0.1");
  const waiting = slots.take("10.0.0.2")!;
  slots.close();
  await assert.rejects(waiting, Deno.errors.Interrupted);
});

/**
 * A connection whose every read completes at once, as Deno's do while the
 * kernel holds data: these bytes, then the end.
 */
function eagerConn(bytes: Uint8Array): { conn: Deno.Conn; read: () => number } {
  let offset = 0;
  const conn = {
    remoteAddr: { transport: "tcp", hostname: "127.0.0.1", port: 1 },
    read(buffer: Uint8Array): Promise<number | null> {
      if (offset === bytes.length) return Promise.resolve(null);
      const n = Math.min(buffer.length, 4096, bytes.length - offset);
      buffer.set(bytes.subarray(offset, offset + n));
      offset += n;
      return Promise.resolve(n);
    },
    write: (data: Uint8Array) => Promise.resolve(data.length),
    closeWrite: () => Promise.resolve(),
    close() {},
  };
  return { conn: conn as unknown as Deno.Conn, read: () => offset / bytes.length };
}

const alwaysThere: [string, () => Uint8Array][] = [
  [
    "50,000 queries",
    () => concatBytes(Array.from({ length: 50_000 }, (_, i) => encodeQuery(`absent-${i}`, 1000))),
  ],
  ["one frame of 64 MiB", () => encodeFrame("large", fakeJpeg(64 * 1024 * 1024))],
];
for (const [what, bytes] of alwaysThere) {
  Deno.test(`a connection whose data is always there (${what}) still lets accept() run`, async () => {
    await using temporary = new TempDirs();
    const folder = await Folder.open(await temporary.make());
    const stats = { files: 0, duplicates: 0, bytes: 0, errors: 0, received: 0, kept: 0, shed: 0 };
    const host: SessionHost = {
      folder,
      stats,
      quarantine: undefined,
      raw: false,
      fsync: false,
      token: undefined,
      rawFrames: true,
      slots: new FrameSlots({ max: 8, perAddress: 8, timeout: 1000 }),
      idleTimeout: 1000,
      stopping: false,
      emit() {},
      idle() {},
      active() {},
    };
    using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const { conn, read } = eagerConn(bytes());
    let readWhenAccepted: number | undefined;
    const accepting = listener.accept().then((accepted) => {
      readWhenAccepted = read();
      accepted.close();
    });
    // A newcomer in the kernel's backlog, connected while this thread blocks:
    // only a turn of the event loop can hand it to the pending accept().
    const newcomer =
      `import socket; socket.create_connection(("127.0.0.1", ${listener.addr.port}))`;
    assert.ok(new Deno.Command("python3", { args: ["-c", newcomer] }).outputSync().success);
    await new Session(conn, host).run();
    await accepting;
    folder.close();
    assert.ok(readWhenAccepted! < 1, "accept() waited until the busy connection ended");
  });
}
