/** Promises about losing nothing: each test would fail if its promise broke. */
import assert from "node:assert/strict";
import { encodeFrame, LineReader, MAX_ACK_SIZE, parseAck } from "../protocol.ts";
import { fakeJpeg, listFolder, ROOT, Spawned, spawnServer } from "./helpers.ts";

Deno.test("a server killed with SIGKILL mid-upload keeps every acknowledged file and a restart clears its temporary file", async () => {
  const out = await Deno.makeTempDir();
  try {
    const { server, port } = await spawnServer(out);
    await using _server = server;
    const saved = fakeJpeg(50_000);
    using conn = await Deno.connect({ hostname: "127.0.0.1", port });
    await conn.write(encodeFrame("saved", saved));
    const answer = await new LineReader(conn, MAX_ACK_SIZE).readLine(5000);
    assert.deepEqual(parseAck(answer!), { ok: true, file: "saved.jpg", bytes: 50_000 });
    // Half of a second frame: the server is writing its temporary file when killed.
    await conn.write(encodeFrame("partial", fakeJpeg(3_000_000)).subarray(0, 2_000_000));
    for (let i = 0; i < 100 && !(await listFolder(out)).some((n) => n.endsWith(".part")); i++) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    assert.equal((await server.stop("SIGKILL")).signal, "SIGKILL");

    const left = await listFolder(out);
    assert.ok(left.includes("saved.jpg"), left.join());
    assert.ok(
      !left.some((name) => name.startsWith("partial")),
      "no partial file under a final name",
    );
    assert.equal(left.filter((name) => name.endsWith(".part")).length, 1, left.join());
    assert.deepEqual(await Deno.readFile(`${out}/saved.jpg`), saved);

    const { server: restarted } = await spawnServer(out);
    await using _restarted = restarted;
    assert.match(restarted.stdout, /removed 1 temporary files left by an earlier run/);
    assert.deepEqual(await listFolder(out), ["saved.jpg"]);
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});

Deno.test("server.ts --fsync syncs each file it saves and its folder", async () => {
  const out = await Deno.makeTempDir();
  const input = await Deno.makeTempDir();
  const trace = await Deno.makeTempFile();
  try {
    for (const name of ["a", "b", "c"]) {
      await Deno.writeFile(`${input}/${name}.jpg`, fakeJpeg(1000));
    }
    const server = new Spawned("strace", [
      "-f",
      "-e",
      "trace=fsync,fdatasync",
      "-o",
      trace,
      Deno.execPath(),
      "run",
      "--allow-net=127.0.0.1",
      `--allow-read=${out}`,
      `--allow-write=${out}`,
      `${ROOT}server.ts`,
      "--host=127.0.0.1",
      "--port=0",
      `--out=${out}`,
      "--fsync",
    ]);
    await using _server = server;
    const port = (await server.waitFor(/listening on 127\.0\.0\.1:(\d+)/))[1];
    const client = new Spawned(Deno.execPath(), [
      "run",
      "--allow-net=127.0.0.1",
      `--allow-read=${input}`,
      `${ROOT}client.ts`,
      `--port=${port}`,
      "-c",
      "1",
      input,
    ]);
    await using _client = client;
    assert.equal((await client.wait()).code, 0, client.stderr);
    // Stopping strace would leave the server running: stop the server, and strace ends with it.
    const stopped = await new Deno.Command("pkill", {
      args: ["-TERM", "-f", "--", `--out=${out} --fsync`],
    })
      .output();
    assert.ok(stopped.success, "the traced server was found");
    assert.equal((await server.wait()).code, 0, server.stderr);
    const calls = (await Deno.readTextFile(trace)).split("\n").filter((line) =>
      /fsync|fdatasync/.test(line)
    );
    // One for each file's data and one for the folder after each link.
    assert.ok(calls.length >= 6, `expected at least 6 syncs, strace saw:\n${calls.join("\n")}`);
  } finally {
    for (const path of [out, input, trace]) await Deno.remove(path, { recursive: true });
  }
});
