/** Raw-byte frames between our own client and server, agreed once per connection in a hello. */
import assert from "node:assert/strict";
import {
  encodeHello,
  encodeName,
  FrameReader,
  LineReader,
  MAX_ACK_SIZE,
  parseAck,
  RAW_BYTES,
} from "../protocol.ts";
import { type ServerEvent } from "../server.ts";
import { concat, fakeJpeg, listFolder, spawnClient, utf8, withServerAndImages } from "./helpers.ts";

/** Bytes of file data in 20 images of 64 KiB. */
const DATA = 20 * 64 * 1024;

const ways: [string, { server: boolean; client: string[] }, number][] = [
  ["both sides agree: the data goes as it is", { server: true, client: [] }, 1],
  ["a server run with --base64: base64, as ever", { server: false, client: [] }, 4 / 3],
  ["a client run with --base64: base64, as ever", { server: true, client: ["--base64"] }, 4 / 3],
];

for (const [what, { server, client }, ratio] of ways) {
  Deno.test(`client.ts and server.ts: ${what}`, async () => {
    await withServerAndImages(
      Array(20).fill(64 * 1024),
      async (port, input, out, images, stats) => {
        await using upload = spawnClient(input, [`--port=${port}`, "--send-all", ...client]);
        assert.equal((await upload.wait()).code, 0, upload.stderr);
        for (const [name, bytes] of images) {
          assert.deepEqual(await Deno.readFile(`${out}/${name}.jpg`), bytes);
        }
        // Each frame adds a header and a name; a hello adds a few bytes per connection.
        const expected = DATA * ratio;
        assert.ok(
          stats.received > expected && stats.received < expected * 1.01,
          `${stats.received} bytes received, expected about ${expected}`,
        );
      },
      { rawFrames: server },
    );
  });
}

Deno.test("a --raw server never agrees to raw-byte frames: its bodies stay the original's base64", async () => {
  await withServerAndImages([300], async (port, input, out, images) => {
    await using upload = spawnClient(input, [`--port=${port}`]);
    assert.equal((await upload.wait()).code, 0, upload.stderr);
    const [[name, bytes]] = images;
    assert.deepEqual(await listFolder(out), ["00000"]);
    assert.deepEqual(
      await Deno.readFile(`${out}/00000`),
      concat(encodeName(name), utf8(bytes.toBase64())),
    );
  }, { raw: true });
});

/** Opens a connection, says hello, and returns the answer's agreed capabilities and the connection. */
async function greet(port: number) {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await conn.write(encodeHello([RAW_BYTES, "something-later"]));
  const line = await new LineReader(conn, MAX_ACK_SIZE).readLine(5000);
  return { conn, answer: parseAck(line!) };
}

Deno.test("server.ts answers a hello with what it agrees to, ignoring what it does not know", async () => {
  for (const rawFrames of [true, false]) {
    await withServerAndImages([], async (port) => {
      const { conn, answer } = await greet(port);
      conn.close();
      assert.deepEqual(answer, {
        ok: true,
        bytes: 0,
        crc32: 0,
        file: rawFrames ? "?+raw" : "?+",
      });
    }, { rawFrames });
  }
});

Deno.test("a raw-byte frame cut short saves nothing and leaves no temporary file", async () => {
  const events: ServerEvent[] = [];
  await withServerAndImages([], async (port, _input, out) => {
    const { conn } = await greet(port);
    // The header promises 32 + 1,000 bytes; 500 come, then the connection ends.
    const data = fakeJpeg(1000);
    await conn.write(
      concat(utf8(String(32 + 1000).padStart(16, "0")), encodeName("cut"), data.subarray(0, 500)),
    );
    await conn.closeWrite();
    await new FrameReader(conn).readHead().catch(() => null);
    conn.close();
    for (let i = 0; i < 100 && !events.some((e) => e.type === "rejected"); i++) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    assert.deepEqual(await listFolder(out), []);
    const rejected = events.find((e) => e.type === "rejected");
    assert.match(rejected && "message" in rejected ? rejected.message : "", /inside a frame|ended/);
  }, { onEvent: (event) => events.push(event) });
});
