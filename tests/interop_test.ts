/**
 * Interoperability with the original scripts, run as Python 3 ports from
 * tests/original/ that keep the original's algorithm.
 */
import assert from "node:assert/strict";
import { encodeFrame } from "../protocol.ts";
import {
  denoScript,
  listFolder,
  makeImages,
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
