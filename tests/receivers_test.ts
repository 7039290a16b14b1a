/**
 * Several receivers on one folder behind a load balancer, as an operator
 * runs them: Debian's HAProxy in tcp mode with send-proxy-v2, health checks
 * and redispatch, three of our servers with --proxy-protocol, four clients
 * at once, and one server killed with SIGKILL in the middle. Needs haproxy
 * (tools/setup.sh installs it).
 */
import assert from "node:assert/strict";
import {
  fakeJpeg,
  freePort,
  listFolder,
  serverFiles,
  spawnClient,
  Spawned,
  spawnServer,
  TempDirs,
  waitForListener,
} from "./helpers.ts";

/** HAProxy in front of `ports`, round robin, each server checked every 200 ms. */
function haproxyConfig(front: number, ports: number[]): string {
  const servers = ports.map((port, i) =>
    `  server r${i + 1} 127.0.0.1:${port} send-proxy-v2 check inter 200ms fall 1 rise 2`
  );
  return `global
  maxconn 1024
defaults
  mode tcp
  timeout connect 2s
  timeout client 60s
  timeout server 60s
  retries 3
  option redispatch
frontend uploads
  bind 127.0.0.1:${front}
  default_backend receivers
backend receivers
  balance roundrobin
${servers.join("\n")}
`;
}

Deno.test("three servers on one folder behind HAProxy, one killed mid-run: four clients lose no file (haproxy)", async () => {
  await using temporary = new TempDirs();
  const out = await temporary.make();
  const etc = await temporary.make();
  // Four cameras' worth of photos, named as cameras name them, prefixed per camera.
  const images = new Map<string, Uint8Array>();
  const inputs: string[] = [];
  for (let camera = 1; camera <= 4; camera++) {
    const input = await temporary.make();
    inputs.push(input);
    for (let i = 1; i <= 150; i++) {
      const name = `CAM${camera}_IMG_${String(i).padStart(4, "0")}`;
      const bytes = fakeJpeg(96 * 1024 + camera * 1000 + i);
      images.set(name, bytes);
      await Deno.writeFile(`${input}/${name}.jpg`, bytes);
    }
  }
  const servers = [];
  for (let i = 0; i < 3; i++) {
    servers.push(await spawnServer(out, ["--proxy-protocol", "--quiet"]));
  }
  await using _r1 = servers[0].server;
  await using _r2 = servers[1].server;
  await using _r3 = servers[2].server;
  const front = freePort();
  await Deno.writeTextFile(`${etc}/haproxy.cfg`, haproxyConfig(front, servers.map((s) => s.port)));
  await using haproxy = new Spawned("haproxy", ["-db", "-f", `${etc}/haproxy.cfg`]);
  await waitForListener(front, haproxy);

  const clients = inputs.map((input) => spawnClient(input, ["--port", String(front), "-c", "2"]));
  try {
    // Killed once a tenth of the files are in, while every client still sends.
    const deadline = Date.now() + 30_000;
    while ((await listFolder(out)).length < images.size / 10) {
      assert.ok(Date.now() < deadline, "the uploads did not start");
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    await servers[1].server.stop("SIGKILL");
    const statuses = await Promise.all(clients.map((client) => client.wait(120_000)));
    for (const [i, status] of statuses.entries()) {
      assert.equal(status.code, 0, `client ${i + 1}: ${clients[i].stdout}${clients[i].stderr}`);
    }
  } finally {
    for (const client of clients) await client[Symbol.asyncDispose]();
  }
  // Every file once, whole; nothing refused, nothing kept aside. The killed server's
  // temporary files wait for the next start.
  const saved = (await listFolder(out)).filter((name) => !name.endsWith(".part"));
  assert.deepEqual(saved, [...images.keys()].map((name) => `${name}.jpg`).sort());
  for (const [name, bytes] of images) {
    assert.deepEqual(await Deno.readFile(`${out}/${name}.jpg`), bytes, name);
  }
  // What the killed server left (its lock, perhaps a file it was writing) goes when it restarts.
  const locks = async () => (await serverFiles(out)).filter((name) => name.endsWith(".lock"));
  const before = await locks();
  assert.equal(before.length, 3);
  const port = servers[1].port;
  const { server: restarted } = await spawnServer(out, ["--proxy-protocol", `--port=${port}`]);
  await using _restarted = restarted;
  const left = await serverFiles(out);
  assert.equal(left.filter((name) => name.endsWith(".part")).length, 0, left.join(" "));
  // The two that run keep theirs; the killed one's is gone, the restarted one's is new.
  const after = await locks();
  assert.equal(after.length, 3);
  assert.equal(before.filter((name) => after.includes(name)).length, 2);
});
