/**
 * Property tests of the frame reader and the uploader with fast-check:
 * bounded in runs, and each run bounded in time by the reader's and the
 * client's own deadlines.
 */
import assert from "node:assert/strict";
import { crc32 } from "node:zlib";
import fc from "fast-check";
import { collectFiles, uploadFiles } from "../client.ts";
import {
  bytesSource,
  closeQuietly,
  encodeAck,
  encodeFrame,
  encodeHave,
  FrameReader,
  type Held,
  isQuery,
  parseName,
  parseQuery,
  ProtocolError,
} from "../protocol.ts";
import { startServer } from "../server.ts";
import { concat, listFolder, makeImages, TempDirs } from "./helpers.ts";

const names = fc.stringMatching(/^[A-Za-z0-9_-]{1,32}$/);
const files = fc.uint8Array({ maxLength: 3000 });
const splits = fc.array(fc.integer({ min: 1, max: 500 }), { minLength: 1, maxLength: 20 });

/** Reads every frame, collecting names and data, until the input ends or an error. */
async function readAll(reader: FrameReader) {
  const frames: { name: string; data: Uint8Array }[] = [];
  for (let head; (head = await reader.readHead()) !== null;) {
    const chunks: Uint8Array[] = [];
    for await (const chunk of reader.data()) chunks.push(chunk.slice());
    frames.push({ name: parseName(head.nameField), data: concat(...chunks) });
  }
  return frames;
}

Deno.test("any valid frames split at any points decode to the same files", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.record({ name: names, data: files }), { minLength: 1, maxLength: 5 }),
      splits,
      fc.constantFrom(512, 1024, 262_144),
      async (frames, chunkSizes, bufferSize) => {
        const stream = concat(...frames.map(({ name, data }) => encodeFrame(name, data)));
        const got = await readAll(
          new FrameReader(bytesSource(stream, chunkSizes), { maxBufferSize: bufferSize }),
        );
        assert.deepEqual(got, frames.map(({ name, data }) => ({ name, data })));
      },
    ),
    { numRuns: 300 },
  );
});

Deno.test("any bytes fed to the frame reader end in frames or a ProtocolError, never another error", async () => {
  const header = fc.oneof(
    fc.uint8Array({ minLength: 16, maxLength: 16 }),
    fc.integer({ min: 0, max: 200 }).map((n) =>
      new TextEncoder().encode(String(n).padStart(16, "0"))
    ),
  );
  const inputs = fc.oneof(
    fc.uint8Array({ maxLength: 400 }),
    fc.tuple(header, fc.uint8Array({ maxLength: 300 })).map(([h, rest]) => concat(h, rest)),
    // Valid frames with a few bytes flipped.
    fc.tuple(names, files, fc.array(fc.nat(), { maxLength: 4 }), fc.nat(255)).map(
      ([name, data, positions, value]) => {
        const frame = encodeFrame(name, data);
        for (const position of positions) frame[position % frame.length] = value;
        return frame;
      },
    ),
  );
  await fc.assert(
    fc.asyncProperty(inputs, splits, async (input, chunkSizes) => {
      const reader = new FrameReader(bytesSource(input, chunkSizes), {
        maxBufferSize: 512,
        headerTimeout: 1000,
        idleTimeout: 1000,
      });
      try {
        await readAll(reader);
      } catch (error) {
        assert.ok(error instanceof ProtocolError, `not a ProtocolError: ${error}`);
      }
    }),
    { numRuns: 1000 },
  );
});

/** What the fake server below does with one frame or query. */
type Verdict = "ok" | "err" | "wrong" | "garbage" | "silent" | "close";

/** The answer a verdict gives to a file or to a query about one the server holds. */
function answer(verdict: Verdict, held: Held): Uint8Array {
  if (verdict === "garbage") return new TextEncoder().encode("HELLO\n");
  const answered = verdict === "wrong" ? { ...held, crc32: held.crc32 ^ 1 } : held;
  return held.file.startsWith("?")
    ? encodeHave(verdict === "err" ? undefined : { ...answered, file: held.file.slice(1) })
    : encodeAck(
      verdict === "err" ? { ok: false, message: "Refused for the test" } : {
        ok: true,
        ...answered,
      },
    );
}

/**
 * Serves frames and queries (for which it holds every file it is asked
 * about, with the CRC-32 in `crcs`), answering each as the next verdict says
 * (then "ok" once they run out), across however many connections the
 * client opens.
 */
function verdictServer(
  verdicts: Verdict[],
  crcs: Map<string, number>,
): { port: number; close: () => Promise<void> } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns = new Set<Deno.Conn>();
  const serve = async (conn: Deno.Conn) => {
    const reader = new FrameReader(conn, { headerTimeout: 5_000, idleTimeout: 5_000 });
    try {
      for (let head; (head = await reader.readHead()) !== null;) {
        const chunks: Uint8Array[] = [];
        for await (const chunk of reader.data()) chunks.push(chunk.slice());
        const data = concat(...chunks);
        let held: Held;
        if (isQuery(head.nameField)) {
          const { name, bytes } = parseQuery(data);
          held = { file: `?${name}.jpg`, bytes, crc32: crcs.get(name) ?? 0 };
        } else {
          held = {
            file: `${parseName(head.nameField)}.jpg`,
            bytes: data.length,
            crc32: crc32(data),
          };
        }
        const verdict = verdicts.shift() ?? "ok";
        if (verdict === "close") break;
        if (verdict !== "silent") await conn.write(answer(verdict, held));
      }
    } catch {
      // The client went away, or gave up on a silent answer.
    } finally {
      conns.delete(conn);
      closeQuietly(conn);
    }
  };
  const accepting = (async () => {
    for await (const conn of listener) {
      conns.add(conn);
      serve(conn);
    }
  })().catch(() => {});
  return {
    port: (listener.addr as Deno.NetAddr).port,
    async close() {
      listener.close();
      for (const conn of conns) closeQuietly(conn);
      await accepting;
    },
  };
}

Deno.test("uploadFiles() accounts for every file exactly once, whatever the server answers, with --resume too", async () => {
  await using temporary = new TempDirs();
  const input = await temporary.make();
  const images = await makeImages(input, [10, 20, 30, 40, 50, 60]);
  const crcs = new Map([...images].map(([name, bytes]) => [name, crc32(bytes)]));
  const { files } = await collectFiles([input]);
  const verdict = fc.constantFrom<Verdict>("ok", "err", "wrong", "garbage", "silent", "close");
  await fc.assert(
    fc.asyncProperty(
      fc.array(verdict, { maxLength: 12 }),
      fc.integer({ min: 1, max: files.length }),
      fc.integer({ min: 1, max: 3 }),
      fc.integer({ min: 1, max: 4 }),
      fc.integer({ min: 0, max: 1 }),
      fc.boolean(),
      async (verdicts, count, concurrency, window, retries, resume) => {
        const server = verdictServer([...verdicts], crcs);
        try {
          const chosen = files.slice(0, count);
          const seen: string[] = [];
          const report = await uploadFiles(chosen, {
            port: server.port,
            concurrency,
            window,
            retries,
            timeout: 300,
            resume,
            onResult: (result) => seen.push(result.path),
          });
          assert.deepEqual(seen.toSorted(), chosen.map((file) => file.path).toSorted());
          assert.equal(report.confirmed + report.failed.length, count);
          for (const { message } of report.failed) {
            assert.doesNotMatch(
              message!,
              /Bad resource|operation canceled/,
              "a reason, not the socket closed under it",
            );
          }
        } finally {
          await server.close();
        }
      },
    ),
    { numRuns: 50 },
  );
});

/**
 * Forwards connections to `target`, cutting the n-th one (both ways) once
 * `cuts[n]` bytes of it have gone from client to server; an undefined cut
 * or a connection past the list forwards everything.
 */
function cuttingProxy(target: number, cuts: (number | undefined)[]) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const tasks: Promise<void>[] = [];
  const relay = async (client: Deno.Conn, cut: number | undefined) => {
    using server = await Deno.connect({ hostname: "127.0.0.1", port: target });
    using _client = client;
    const back = server.readable.pipeTo(client.writable, { preventClose: true }).catch(() => {});
    const buffer = new Uint8Array(16_384);
    let forwarded = 0;
    try {
      for (let n; (n = await client.read(buffer)) !== null;) {
        const allowed = cut === undefined ? n : Math.min(n, cut - forwarded);
        await server.write(buffer.subarray(0, allowed));
        forwarded += allowed;
        if (allowed < n || forwarded === cut) break;
      }
      if (cut === undefined) await server.closeWrite();
    } catch {
      // One side went away: the other goes too.
    }
    if (cut !== undefined) {
      closeQuietly(server);
      closeQuietly(client);
    }
    await back;
  };
  const accepting = (async () => {
    for (let n = 0;; n++) {
      const conn = await listener.accept().catch(() => null);
      if (conn === null) return;
      tasks.push(relay(conn, cuts[n]).catch(() => {}));
    }
  })();
  let closed: Promise<void> | undefined;
  return {
    port: (listener.addr as Deno.NetAddr).port,
    close: () =>
      closed ??= (async () => {
        listener.close();
        await accepting;
        await Promise.all(tasks);
      })(),
  };
}

Deno.test("connections cut at any byte lose no file without a word, and leave nothing partial, with raw-byte or base64 frames, --resume and a token too", async () => {
  await using temporary = new TempDirs();
  const input = await temporary.make();
  const images = await makeImages(input, [10, 3_000, 70_000, 300_000]);
  const { files } = await collectFiles([input]);
  const total = [...images.values()].reduce((sum, bytes) => sum + bytes.length, 0);
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.option(fc.integer({ min: 0, max: Math.ceil(total * 4 / 3) + 500 })), {
        maxLength: 6,
      }),
      fc.integer({ min: 1, max: 2 }),
      fc.boolean(),
      fc.option(fc.constant("correct horse battery staple"), { nil: undefined }),
      fc.boolean(),
      async (cuts, concurrency, resume, token, rawFrames) => {
        const out = await temporary.make();
        const server = await startServer({ host: "127.0.0.1", port: 0, out, token });
        const proxy = cuttingProxy(server.addr.port, cuts.map((cut) => cut ?? undefined));
        try {
          const confirmed: string[] = [];
          const report = await uploadFiles(files, {
            port: proxy.port,
            concurrency,
            retries: 1,
            timeout: 2_000,
            resume,
            token,
            rawFrames,
            onResult: (result) => result.ok && confirmed.push(result.savedAs!),
          });
          assert.equal(report.confirmed + report.failed.length, files.length);
          for (const { message } of report.failed) {
            assert.doesNotMatch(
              message!,
              /Bad resource|operation canceled/,
              "a reason, not the socket closed under it",
            );
          }
          await proxy.close();
          await server.shutdown(2_000);
          const saved = await listFolder(out);
          for (const name of saved) {
            assert.ok(!name.endsWith(".part"), `a temporary file is left: ${name}`);
            const original = images.get(name.replace(/\.jpg$/, ""));
            assert.deepEqual(await Deno.readFile(`${out}/${name}`), original, name);
          }
          for (const name of confirmed) assert.ok(saved.includes(name), `${name} was confirmed`);
        } finally {
          await proxy.close();
          await server.shutdown(2_000);
        }
      },
    ),
    { numRuns: 30 },
  );
});
