/**
 * Interoperability with the original scripts, run as Python 3 ports from
 * tests/original/ that keep the original's algorithm.
 */
import assert from "node:assert/strict";
import { encodeFrame, sniffExtension } from "../protocol.ts";
import {
  denoScript,
  fakeJpeg,
  listFolder,
  makeImages,
  quarantined,
  ROOT,
  spawnClient,
  Spawned,
  spawnServer,
  spawnUdpServer,
  TempDirs,
} from "./helpers.ts";

function python(script: string, args: string[], options: { stdin?: boolean } = {}): Spawned {
  return new Spawned("python3", ["-u", `${ROOT}tests/original/${script}`, ...args], options);
}

/** Starts one of the original servers on a free loopback port and returns the port. */
async function pythonServer(script: string, args: string[] = []) {
  const server = python(script, ["0", ...args]);
  const port = (await server.waitFor(/listening on 127\.0\.0\.1:(\d+)/))[1];
  return { server, port };
}

Deno.test("the original client's uploads are saved byte for byte by server.ts", async () => {
  await using temporary = new TempDirs();
  const input = await temporary.make();
  const out = await temporary.make();
  const images = await makeImages(input, [1, 5000, 250_000, ...Array(10).fill(3000)]);
  const { server, port } = await spawnServer(out);
  await using _server = server;
  await using client = python("tcp_client.py", ["127.0.0.1", String(port), input, "5", "100"]);
  const status = await client.wait();
  assert.equal(status.code, 0, client.stderr);
  await server.waitFor(new RegExp(`(saved .*\\n.*){${images.size}}`, "s"));
  for (const [name, bytes] of images) {
    const extension = bytes.length >= 3 ? "jpg" : "bin";
    assert.deepEqual(await Deno.readFile(`${out}/${name}.${extension}`), bytes, name);
  }
  await server.stop();
  assert.match(server.stdout, new RegExp(`stopped: ${images.size} files .* 0 errors`));
  assert.equal(server.stderr.match(/rejected/g), null, server.stderr);
});

Deno.test("server.ts --raw saves the original client's frame bodies as the original server numbers them", async () => {
  await using temporary = new TempDirs();
  const input = await temporary.make();
  const out = await temporary.make();
  const images = await makeImages(input, [10, 20_000, 300_000]);
  const { server, port } = await spawnServer(out, ["--raw"]);
  await using _server = server;
  await using client = python("tcp_client.py", ["127.0.0.1", String(port), input]);
  assert.equal((await client.wait()).code, 0, client.stderr);
  await server.waitFor(/(saved .*\n.*){3}/s);
  assert.deepEqual(await listFolder(out), ["00000", "00001", "00002"]);
  // The original client sends in os.listdir order: compare as a set.
  const expected = new Set(
    [...images].map(([name, bytes]) => encodeFrame(name, bytes).subarray(16).toBase64()),
  );
  for (const name of await listFolder(out)) {
    assert.ok(expected.delete((await Deno.readFile(`${out}/${name}`)).toBase64()), name);
  }
});

/**
 * Waits until `folder` holds `count` files under their final names, failing
 * after 30 s with how many it had: a temporary `.upload-*.part` is not one.
 */
async function waitForFiles(folder: string, count: number): Promise<string[]> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const names = (await listFolder(folder)).filter((name) => !name.startsWith("."));
    if (names.length >= count) return names;
    if (Date.now() > deadline) throw new Error(`${names.length} of ${count} files arrived`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** The name the tutorial's client sends for a file: Python's `rstrip('.jpg')`. */
function sentName(file: string): string {
  return file.replace(/[.jpg]+$/, "");
}

/** Writes small photos named as a camera names them, IMG_0000.jpg on, with random sizes. */
async function makePhotos(folder: string, count: number): Promise<Map<string, Uint8Array>> {
  const photos = new Map<string, Uint8Array>();
  for (let i = 0; i < count; i++) {
    const name = `IMG_${String(i).padStart(4, "0")}`;
    const bytes = fakeJpeg(200 + Math.floor(Math.random() * 5000));
    await Deno.writeFile(`${folder}/${name}.jpg`, bytes);
    photos.set(name, bytes);
  }
  return photos;
}

Deno.test("the original client at full speed: 3,000 photos named IMG_0000.jpg on, every one saved byte for byte", async () => {
  await using temporary = new TempDirs();
  const input = await temporary.make();
  const out = await temporary.make();
  const photos = await makePhotos(input, 3000);
  const { server, port } = await spawnServer(out, ["-q"]);
  await using _server = server;
  await using client = python("tcp_client.py", ["127.0.0.1", String(port), input, "1000"]);
  assert.equal((await client.wait()).code, 0, client.stderr);
  await waitForFiles(out, photos.size);
  for (const [name, bytes] of photos) {
    assert.deepEqual(await Deno.readFile(`${out}/${name}.jpg`), bytes, name);
  }
  await server.stop();
  assert.match(server.stdout, /stopped: 3000 files .* 0 errors/);
  assert.doesNotMatch(server.stderr, /rejected|refused|kept/);
});

Deno.test("the original client at full speed to server.ts --raw: all 3,000 bodies kept", async () => {
  await using temporary = new TempDirs();
  const input = await temporary.make();
  const out = await temporary.make();
  const photos = await makePhotos(input, 3000);
  const { server, port } = await spawnServer(out, ["--raw", "-q"]);
  await using _server = server;
  await using client = python("tcp_client.py", ["127.0.0.1", String(port), input, "1000"]);
  assert.equal((await client.wait()).code, 0, client.stderr);
  const saved = await waitForFiles(out, photos.size);
  const expected = new Set(
    [...photos].map(([name, bytes]) => name + bytes.toBase64()),
  );
  for (const name of saved) {
    const body = new TextDecoder().decode(await Deno.readFile(`${out}/${name}`));
    assert.ok(expected.delete(body), `${name} is not one of the bodies sent`);
  }
  assert.equal(expected.size, 0);
});

Deno.test("the original client with real-world file names, run twice: each saved once under the name it sends", async () => {
  await using temporary = new TempDirs();
  const input = await temporary.make();
  const out = await temporary.make();
  const sample = (name: string) => Deno.readFileSync(`${ROOT}samples/${name}`);
  const files: [string, Uint8Array][] = [
    ["IMG_0001.jpg", fakeJpeg(3000)],
    ["IMG_20240501_123456_HDR.jpg", fakeJpeg(4000)],
    ["DSC-0042.jpg", fakeJpeg(100)],
    ["plasma.jpg", sample("plasma.jpg")],
    ["rose.jpg", sample("rose.jpg")],
    ["猫的照片.jpg", fakeJpeg(700)],
    ["2024-05-01 12.34.56.jpg", fakeJpeg(800)],
    ["screenshot (1).jpg", fakeJpeg(900)],
    ["a.jpg", fakeJpeg(5)],
    // rstrip('.jpg') strips letters, not a suffix: the client sends "do".
    ["dog.jpg", fakeJpeg(1000)],
    [`${"h".repeat(27)}1.jpg`, fakeJpeg(600)],
    ["IMG_20240501_123456_HDR_portrait_mode_01.jpg", fakeJpeg(1200)],
    // A PNG named .jpg, as a phone's screenshot saved by hand.
    ["checkerboard.jpg", sample("checkerboard.png")],
  ];
  for (const [name, bytes] of files) await Deno.writeFile(`${input}/${name}`, bytes);
  const { server, port } = await spawnServer(out);
  await using _server = server;
  // Run twice, as a person does who is not sure the first run worked.
  for (const run of [1, 2]) {
    await using client = python("tcp_client.py", ["127.0.0.1", String(port), input]);
    assert.equal((await client.wait()).code, 0, client.stderr);
    if (run === 2) await server.waitFor(new RegExp(`(already have .*\\n.*){${files.length}}`, "s"));
    await waitForFiles(out, files.length);
  }
  for (const [name, bytes] of files) {
    const saved = `${sentName(name)}.${sniffExtension(bytes.subarray(0, 12))}`;
    assert.deepEqual(await Deno.readFile(`${out}/${saved}`), bytes, saved);
  }
  assert.equal(server.stderr, "");
  // The second run wrote nothing, and kept nothing aside.
  assert.equal((await listFolder(out)).length, files.length);
});

Deno.test("the original client's files that no name can be given are kept whole in .quarantine", async () => {
  await using temporary = new TempDirs();
  const input = await temporary.make();
  const out = await temporary.make();
  const good = fakeJpeg(2000);
  const hidden = fakeJpeg(3000);
  const text = new TextEncoder().encode("not an image at all");
  await Deno.writeFile(`${input}/good.jpg`, good);
  await Deno.writeFile(`${input}/.hidden.jpg`, hidden);
  await Deno.writeFile(`${input}/notes.jpg`, text);
  const { server, port } = await spawnServer(out);
  await using _server = server;
  await using client = python("tcp_client.py", ["127.0.0.1", String(port), input]);
  assert.equal((await client.wait()).code, 0, client.stderr);
  await server.waitFor(/(kept .*\n.*){2}/s, "stderr");
  assert.deepEqual(await Deno.readFile(`${out}/good.jpg`), good);
  const frame = (name: string, bytes: Uint8Array) => {
    const body = new TextEncoder().encode(name + bytes.toBase64());
    return [...new TextEncoder().encode(String(body.length).padStart(16, "0")), ...body];
  };
  const kept = (await quarantined(out)).map((bytes) => [...bytes]);
  assert.equal(kept.length, 2);
  for (const expected of [frame(".hidden", hidden), frame("notes", text)]) {
    assert.ok(kept.some((bytes) => bytes.join() === expected.join()), "a frame was not kept whole");
  }
  assert.match(
    server.stderr,
    /kept 127\.0\.0\.1:\d+'s frame as \.quarantine\/\S+\.frame: Invalid name: it starts with a dot/,
  );
});

Deno.test("client.ts --legacy uploads to the original server, one connection per file", async () => {
  await using temporary = new TempDirs();
  const input = await temporary.make();
  const out = await temporary.make();
  // The original server truncates a body when a recv returns less than 4096
  // bytes, which on loopback happens for bodies above about 256 KiB; these
  // sizes are the tutorial's small images.
  const images = await makeImages(input, [0, 100, 4096, 20_000, 70_000]);
  const { server: original, port } = await pythonServer("tcp_server.py", [out]);
  await using _original = original;
  await using client = spawnClient(input, ["--legacy", "--port", String(port)]);
  assert.equal((await client.wait()).code, 0, client.stderr);
  assert.match(client.stdout, /sent 5 of 5 files/);
  await original.waitFor(/num finish: 5/);
  const expected = new Set(
    [...images].map(([name, bytes]) => encodeFrame(name, bytes).subarray(16).toBase64()),
  );
  for (const name of await listFolder(out)) {
    const saved = (await Deno.readFile(`${out}/${name}`)).toBase64();
    assert.ok(expected.delete(saved), `${name} is not one of the bodies sent`);
  }
  assert.equal(expected.size, 0);
});

Deno.test("the original UDP client's lines are printed by udp_server.ts", async () => {
  const { server, port } = await spawnUdpServer();
  await using _server = server;
  await using client = python("udp_client.py", [String(port)], { stdin: true });
  await client.write("hello\n  数据 data  \nexit\n");
  await client.child.stdin.close();
  assert.equal((await client.wait()).code, 0, client.stderr);
  await server.waitFor(/数据 data\n/);
  assert.equal(server.stdout.replace(/^listening.*\n/, ""), "hello\n数据 data\n");
});

Deno.test("udp_client.ts lines are printed by the original UDP server", async () => {
  const { server, port } = await pythonServer("udp_server.py");
  await using _server = server;
  await using client = denoScript("udp_client.ts", ["--allow-net=127.0.0.1,0.0.0.0"], [
    "--port",
    String(port),
  ], {
    stdin: true,
  });
  await client.write("first\n第二行\nexit\n");
  await client.child.stdin.close();
  assert.equal((await client.wait()).code, 0, client.stderr);
  await server.waitFor(/第二行\n/);
  assert.equal(server.stdout.replace(/^listening.*\n/, ""), "first\n第二行\n");
});
