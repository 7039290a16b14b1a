/** Promises about losing nothing: each test would fail if its promise broke. */
import assert from "node:assert/strict";
import dgram from "node:dgram";
import net from "node:net";
import { crc32 } from "node:zlib";
import { collectFiles, type FileResult, uploadFiles } from "../client.ts";
import { encodeFrame, LineReader, MAX_ACK_SIZE, parseAck, parseCidr } from "../protocol.ts";
import { type ServerEvent, type ServerOptions, startServer } from "../server.ts";
import {
  concat,
  denoScript,
  fakeJpeg,
  listFolder,
  makeImages,
  quarantined,
  random,
  ROOT,
  serverFiles,
  spawnClient,
  Spawned,
  spawnServer,
  spawnUdpServer,
  TempDirs,
  withServerAndImages,
} from "./helpers.ts";

Deno.test("a server killed with SIGKILL mid-upload keeps every acknowledged file and a restart clears its temporary file", async () => {
  await using temporary = new TempDirs();
  const out = await temporary.make();
  const { server, port } = await spawnServer(out);
  await using _server = server;
  const saved = fakeJpeg(50_000);
  using conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await conn.write(encodeFrame("saved", saved));
  const answer = await new LineReader(conn, MAX_ACK_SIZE).readLine(5000);
  assert.deepEqual(parseAck(answer!), {
    ok: true,
    file: "saved.jpg",
    bytes: 50_000,
    crc32: crc32(saved),
  });
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
  assert.match(restarted.stdout, /removed 1 temporary file left by an earlier run/);
  assert.deepEqual(await listFolder(out), ["saved.jpg"]);
});

Deno.test("server.ts --fsync syncs each file it saves and its folder", async () => {
  await using temporary = new TempDirs();
  const out = await temporary.make();
  const input = await temporary.make();
  const trace = await Deno.makeTempFile();
  try {
    for (const name of ["a", "b", "c"]) {
      await Deno.writeFile(`${input}/${name}.jpg`, fakeJpeg(1000));
    }
    const found = await new Deno.Command("sh", { args: ["-c", "command -v strace"] }).output();
    assert.ok(found.success, "strace is needed for this test: apt-get install strace");
    const { server, port } = await spawnServer(out, ["--fsync"], [
      "strace",
      "-f",
      "-e",
      "trace=fsync,fdatasync",
      "-o",
      trace,
    ]);
    await using _server = server;
    await using client = spawnClient(input, [`--port=${port}`, "-c", "1"]);
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
    await Deno.remove(trace);
  }
});

/** Opens a TCP connection from a chosen loopback source address. */
function connectFrom(localAddress: string, port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: "127.0.0.1", port, localAddress }, () => resolve(socket));
    socket.once("error", reject);
  });
}

async function withServer(
  options: ServerOptions,
  body: (port: number, out: string) => Promise<void>,
): Promise<void> {
  await using temporary = new TempDirs();
  const out = await temporary.make();
  const server = await startServer({ host: "127.0.0.1", port: 0, out, ...options });
  try {
    await body(server.addr.port, out);
  } finally {
    await server.shutdown(1000);
  }
}

Deno.test("server drops a peer outside its --allow blocks before reading or answering anything", async () => {
  const refused: string[] = [];
  await withServer({
    allow: [parseCidr("127.0.0.2/32")],
    onEvent: (event) => event.type === "refused" && refused.push(event.message),
  }, async (port, out) => {
    using conn = await Deno.connect({ hostname: "127.0.0.1", port });
    await conn.write(encodeFrame("sneaky", fakeJpeg(100))).catch(() => {});
    const answer = await conn.read(new Uint8Array(100)).catch(() => null);
    assert.equal(answer, null, "no answer, just a closed connection");
    assert.deepEqual(await listFolder(out), []);
    assert.deepEqual(refused, ["Not in an --allow block: dropped"]);
  });
  await withServer({ allow: [parseCidr("127.0.0.0/8")] }, async (port, out) => {
    const report = await uploadFiles([], { port });
    assert.equal(report.failed.length, 0);
    using conn = await Deno.connect({ hostname: "127.0.0.1", port });
    const welcome = fakeJpeg(100);
    await conn.write(encodeFrame("welcome", welcome));
    assert.deepEqual(parseAck((await new LineReader(conn, MAX_ACK_SIZE).readLine(5000))!), {
      ok: true,
      file: "welcome.jpg",
      bytes: 100,
      crc32: crc32(welcome),
    });
    assert.deepEqual(await listFolder(out), ["welcome.jpg"]);
  });
});

Deno.test("uploadFiles() with more connections than the server takes frames from one address delivers every file", async () => {
  await withServer({ maxFramesPerAddress: 2 }, async (port, out) => {
    await using temporary = new TempDirs();
    const input = await temporary.make();
    await makeImages(input, Array(400).fill(20_000));
    const { files } = await collectFiles([input]);
    const report = await uploadFiles(files, { port, concurrency: 8, retries: 1 });
    assert.deepEqual(report.failed, []);
    assert.equal((await listFolder(out)).length, 400);
  });
});

Deno.test("uploadFiles() turned away by a full server past its queue deadline says so for every file", async () => {
  await withServer({ maxFrames: 1, queueTimeout: 200 }, async (port) => {
    const holder = await connectFrom("127.0.0.1", port);
    // A frame begun and never finished holds the only turn.
    holder.write(encodeFrame("held", fakeJpeg(100_000)).subarray(0, 50_000));
    await using temporary = new TempDirs();
    const input = await temporary.make();
    try {
      await makeImages(input, Array(200).fill(20_000));
      const { files } = await collectFiles([input]);
      const report = await uploadFiles(files, { port, retries: 0 });
      assert.equal(report.failed.length, 200);
      const reasons = new Set(report.failed.map((failure) => failure.message));
      assert.deepEqual([...reasons], [
        "Refused by the server: Server busy: no turn within 200 ms: 1 frame in progress",
      ]);
    } finally {
      holder.destroy();
    }
  });
});

Deno.test("udp_server.ts --allow prints only datagrams from its blocks and never replies", async () => {
  const { server, port } = await spawnUdpServer(["--allow=127.0.0.2/32"]);
  await using _server = server;
  const replies: Uint8Array[] = [];
  for (const [from, text] of [["127.0.0.1", "from outside"], ["127.0.0.2", "from inside"]]) {
    const socket = dgram.createSocket("udp4");
    socket.on("message", (reply) => replies.push(reply));
    await new Promise<void>((resolve) => socket.bind(0, from, resolve));
    await new Promise((resolve) => socket.send(text, port, "127.0.0.1", resolve));
    await new Promise((resolve) => setTimeout(resolve, 100));
    socket.close();
  }
  await server.waitFor(/from inside\n/);
  await server.stop();
  assert.equal(server.stdout.replace(/^listening.*\n/, ""), "from inside\n");
  assert.match(server.stderr, /received 1 datagram, printed 1 \(1 dropped by --allow\)/);
  assert.deepEqual(replies, []);
});

Deno.test("a server fed thousands of corrupted frames still serves, and keeps only the files it acknowledged", async () => {
  const next = random(2026);
  const pick = (n: number) => Math.floor(next() * n);
  /** A valid frame, then one of several kinds of damage. */
  const variant = (i: number): Uint8Array => {
    const data = Uint8Array.from({ length: pick(3000) }, () => pick(256));
    const frame = encodeFrame(`f${i % 50}`, data);
    switch (pick(6)) {
      case 0: // Flip a few bytes anywhere.
        for (let k = 0; k < 1 + pick(4); k++) frame[pick(frame.length)] = pick(256);
        return frame;
      case 1: // Cut it short.
        return frame.subarray(0, pick(frame.length));
      case 2: // A header digit changed.
        frame[pick(16)] = 0x30 + pick(10);
        return frame;
      case 3: // Garbage after it.
        return concat(frame, Uint8Array.from({ length: 1 + pick(100) }, () => pick(256)));
      case 4: // Damage inside the name.
        frame[16 + pick(32)] = pick(256);
        return frame;
      default: // Left valid.
        return frame;
    }
  };
  await withServer({ headerTimeout: 2000, idleTimeout: 2000 }, async (port, out) => {
    const acknowledged = new Map<string, number>();
    const deadline = Date.now() + 60_000;
    const total = 2000;
    let sent = 0;
    const sender = async () => {
      while (sent < total && Date.now() < deadline) {
        const bytes = variant(sent++);
        using conn = await Deno.connect({ hostname: "127.0.0.1", port });
        await conn.write(bytes).catch(() => {});
        // Ending the input makes a cut frame fail at once instead of at the deadline.
        await conn.closeWrite().catch(() => {});
        const lines = new LineReader(conn, MAX_ACK_SIZE);
        for (;;) {
          const line = await lines.readLine(5000).catch(() => null);
          if (line === null) break;
          const answer = parseAck(line);
          if (answer.ok) acknowledged.set(answer.file, answer.bytes);
        }
      }
    };
    await Promise.all(Array.from({ length: 16 }, sender));
    assert.equal(sent, total, "all variants went out before the deadline");

    // Still serving.
    using conn = await Deno.connect({ hostname: "127.0.0.1", port });
    const after = fakeJpeg(500);
    await conn.write(encodeFrame("after", after));
    const answer = parseAck((await new LineReader(conn, MAX_ACK_SIZE).readLine(5000))!);
    assert.deepEqual(answer, { ok: true, file: "after.jpg", bytes: 500, crc32: crc32(after) });
    acknowledged.set("after.jpg", 500);

    const saved = (await listFolder(out)).filter((name) => name !== ".quarantine");
    assert.deepEqual(saved, [...acknowledged.keys()].sort(), "exactly the acknowledged files");
    // What was refused whole is kept whole: a header, then as many bytes as it says.
    for (const frame of await quarantined(out)) {
      const length = Number(new TextDecoder().decode(frame.subarray(0, 16)));
      assert.equal(frame.length, 16 + length);
    }
    for (const name of saved) {
      assert.equal((await Deno.stat(`${out}/${name}`)).size, acknowledged.get(name), name);
    }
    assert.ok(acknowledged.size > 10, `only ${acknowledged.size} variants were valid`);
  });
});

/** Mounts a tmpfs of `size` for a test, as root only; fails with the reason otherwise. */
async function withTmpfs(size: string, body: (dir: string) => Promise<void>): Promise<void> {
  assert.equal(Deno.uid(), 0, "this test mounts a small tmpfs and so needs root");
  const dir = await Deno.makeTempDir();
  const mounted = await new Deno.Command("mount", {
    args: ["-t", "tmpfs", "-o", `size=${size}`, "tmpfs", dir],
  })
    .output();
  assert.ok(mounted.success, `mount failed: ${new TextDecoder().decode(mounted.stderr)}`);
  try {
    await body(dir);
  } finally {
    await new Deno.Command("umount", { args: ["-l", dir] }).output();
    await Deno.remove(dir, { recursive: true });
  }
}

async function send(port: number, frame: Uint8Array) {
  using conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await conn.write(frame);
  return parseAck((await new LineReader(conn, MAX_ACK_SIZE).readLine(5000))!);
}

Deno.test("a full disk gets an error answer, leaves no partial file, and the server recovers when space returns", async () => {
  await withTmpfs("1m", async (dir) => {
    const out = `${dir}/out`;
    const server = await startServer({ host: "127.0.0.1", port: 0, out });
    try {
      const port = server.addr.port;
      const filler = fakeJpeg(700_000);
      assert.equal((await send(port, encodeFrame("filler", filler))).ok, true);
      const full = await send(port, encodeFrame("toolarge", fakeJpeg(600_000)));
      assert.equal(full.ok, false);
      assert.equal(
        full.ok ? "" : full.message,
        "Cannot save toolarge: No space left on device (os error 28)",
        "the reason without the server's paths",
      );
      assert.deepEqual(await listFolder(out), ["filler.jpg"], "no partial or temporary file");
      // A refused frame with no room to be kept is refused as before, and serving goes on.
      const dotfile = encodeFrame("xbad", fakeJpeg(600_000));
      dotfile[16] = 0x2e;
      const unkept = await send(port, dotfile);
      assert.match(
        unkept.ok ? "" : unkept.message,
        /^Invalid name: it starts with a dot: "\.bad"$/,
      );
      assert.deepEqual(await listFolder(out), ["filler.jpg"], "nothing of it kept");
      await Deno.remove(`${out}/filler.jpg`);
      const again = fakeJpeg(600_000);
      assert.deepEqual(await send(port, encodeFrame("toolarge", again)), {
        ok: true,
        file: "toolarge.jpg",
        bytes: 600_000,
        crc32: crc32(again),
      });
    } finally {
      await server.shutdown(1000);
    }
  });
});

Deno.test("a read-only or vanished output folder gets an error answer naming no path, and the server keeps serving", async () => {
  await withTmpfs("4m", async (dir) => {
    const out = `${dir}/out`;
    const server = await startServer({ host: "127.0.0.1", port: 0, out });
    try {
      const port = server.addr.port;
      const remount = (mode: string) =>
        new Deno.Command("mount", { args: ["-o", `remount,${mode}`, dir] }).output();
      assert.ok((await remount("ro")).success);
      const readOnly = await send(port, encodeFrame("a", fakeJpeg(1000)));
      assert.equal(
        readOnly.ok ? "" : readOnly.message,
        "Cannot save a: Read-only file system (os error 30)",
      );
      assert.ok((await remount("rw")).success);
      // Gone with all it held, the server's own lock file included.
      await Deno.remove(out, { recursive: true });
      const vanished = await send(port, encodeFrame("b", fakeJpeg(1000)));
      assert.equal(
        vanished.ok ? "" : vanished.message,
        "Cannot save b: No such file or directory (os error 2)",
      );
      await Deno.mkdir(out);
      assert.equal((await send(port, encodeFrame("c", fakeJpeg(1000)))).ok, true);
      assert.deepEqual(await listFolder(out), ["c.jpg"]);
    } finally {
      await server.shutdown(1000);
    }
  });
});

/** Runs a command for a test, failing with its output when it fails. */
async function run(command: string, args: string[]): Promise<string> {
  const result = await new Deno.Command(command, { args }).output().catch((error) => {
    throw new Error(`${command}: ${error.message} (apt-get install exfatprogs exfat-fuse)`);
  });
  const output = new TextDecoder().decode(result.stdout) + new TextDecoder().decode(result.stderr);
  assert.ok(result.success, `${command} ${args.join(" ")} failed: ${output}`);
  return output;
}

/**
 * Mounts a small exFAT image, as on most USB drives, through FUSE (the kernel
 * here has no exFAT driver); as root only, failing with the reason otherwise.
 */
async function withExfat(body: (dir: string) => Promise<void>): Promise<void> {
  assert.equal(Deno.uid(), 0, "this test mounts an exFAT image and so needs root");
  const dir = await Deno.makeTempDir();
  const image = `${dir}.img`;
  try {
    await Deno.writeFile(image, new Uint8Array());
    await Deno.truncate(image, 16 * 1024 * 1024);
    await run("mkfs.exfat", [image]);
    // FUSE's exFAT mounts only a block device.
    const device = (await run("losetup", ["--find", "--show", image])).trim();
    try {
      await run("mount.exfat-fuse", [device, dir]);
      try {
        await body(dir);
      } finally {
        await run("umount", [dir]);
      }
    } finally {
      await run("losetup", ["--detach", device]);
    }
  } finally {
    await Deno.remove(image).catch(() => {});
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("on exFAT, a tree sent with -r is renamed into place path by path, with its mtimes, and a rival at a path is refused", async () => {
  await withExfat(async (dir) => {
    await using temporary = new TempDirs();
    const input = await temporary.make();
    const sent = new Map<string, Uint8Array>();
    for (
      const path of [
        "cat/1.jpg",
        "cat/2.jpg",
        "猫/1.jpg",
        "dog/deep/IMG_20240501_123456_HDR_portrait.jpg",
      ]
    ) {
      await Deno.mkdir(`${input}/${path.slice(0, path.lastIndexOf("/"))}`, { recursive: true });
      const bytes = fakeJpeg(20_000);
      await Deno.writeFile(`${input}/${path}`, bytes);
      // Whole seconds: exFAT keeps times to 10 ms.
      await Deno.utime(`${input}/${path}`, 1_600_000_000, 1_600_000_000 + sent.size);
      sent.set(path, bytes);
    }
    const out = `${dir}/out`;
    const server = await startServer({ host: "127.0.0.1", port: 0, out });
    try {
      const { files } = await collectFiles([input], { recursive: true, paths: true });
      assert.equal((await uploadFiles(files, { port: server.addr.port })).confirmed, 4);
      let second = 0;
      for (const [path, bytes] of sent) {
        assert.deepEqual(await Deno.readFile(`${out}/${path}`), bytes);
        const mtime = (await Deno.stat(`${out}/${path}`)).mtime!.getTime();
        assert.equal(mtime, (1_600_000_000 + second++) * 1000, path);
      }
      await Deno.writeFile(`${input}/cat/1.jpg`, fakeJpeg(20_000));
      const again = await uploadFiles(files, { port: server.addr.port, resume: true });
      assert.deepEqual(again.failed.map((f) => f.message), [
        "Refused by the server: Cannot save cat/1.jpg: a different file of that name exists",
      ]);
      assert.deepEqual(await Deno.readFile(`${out}/cat/1.jpg`), sent.get("cat/1.jpg"));
    } finally {
      await server.shutdown(1000);
    }
    assert.deepEqual(await listFolder(out), ["cat", "dog", "猫"], "no temporary file left");
  });
});

Deno.test("on exFAT, which makes no hard links, files are renamed into place whole and never replace another", async () => {
  await withExfat(async (dir) => {
    const events: ServerEvent[] = [];
    const out = `${dir}/out`;
    const server = await startServer({
      host: "127.0.0.1",
      port: 0,
      out,
      onEvent: (event) => events.push(event),
    });
    const image = fakeJpeg(100_000);
    try {
      assert.deepEqual(events, [{ type: "no-hard-links" }]);
      const port = server.addr.port;
      assert.deepEqual(await send(port, encodeFrame("a", image)), {
        ok: true,
        file: "a.jpg",
        bytes: image.length,
        crc32: crc32(image),
      });
      assert.equal((await send(port, encodeFrame("a", image))).ok, true, "the same file again");
      // exFAT ignores case: "A" is the name "a" too.
      const refused = await send(port, encodeFrame("A", fakeJpeg(100_000)));
      assert.match(
        refused.ok ? "" : refused.message,
        /^Cannot save A\.jpg: a different file of that name exists: kept as \.quarantine\//,
      );
      // Eight different files of one name at once: one is kept, the others told why.
      const rivals = Array.from({ length: 8 }, () => fakeJpeg(100_000));
      const answers = await Promise.all(rivals.map((bytes) => send(port, encodeFrame("c", bytes))));
      const kept = answers.flatMap((answer, i) => answer.ok ? [rivals[i]] : []);
      assert.equal(kept.length, 1, JSON.stringify(answers));
      assert.deepEqual(await Deno.readFile(`${out}/c.jpg`), kept[0]);
      using cut = await Deno.connect({ hostname: "127.0.0.1", port });
      await cut.write(encodeFrame("b", fakeJpeg(100_000)).subarray(0, 50_000));
    } finally {
      await server.shutdown(1000);
    }
    assert.deepEqual(
      await listFolder(out),
      [".quarantine", "a.jpg", "c.jpg"],
      "no partial or temporary file",
    );
    assert.deepEqual(await Deno.readFile(`${out}/a.jpg`), image);
    // The refused "A" and seven rivals, each kept whole, renamed into the quarantine.
    const frames = await quarantined(out);
    assert.equal(frames.length, 8);
    for (const frame of frames) assert.equal(frame.length, encodeFrame("c", image).length);

    const raw = await startServer({ host: "127.0.0.1", port: 0, out: `${dir}/raw`, raw: true });
    try {
      for (const name of ["x", "y"]) {
        assert.equal((await send(raw.addr.port, encodeFrame(name, image))).ok, true);
      }
    } finally {
      await raw.shutdown(1000);
    }
    assert.deepEqual(await listFolder(`${dir}/raw`), ["00000", "00001"]);
  });
});

Deno.test("a second run with --resume sends under 1% of the bytes, and changed or missing files still go", async () => {
  await using temporary = new TempDirs();
  const input = await temporary.make();
  const out = await temporary.make();
  const server = await startServer({ host: "127.0.0.1", port: 0, out });
  try {
    const port = server.addr.port;
    const images = await makeImages(input, Array(30).fill(64 * 1024));
    const { files } = await collectFiles([input]);
    const first = await uploadFiles(files, { port, resume: true });
    assert.equal(first.confirmed, 30);
    const firstReceived = server.stats.received;

    const second = await uploadFiles(files, { port, resume: true });
    assert.equal(second.confirmed, 30);
    assert.deepEqual(second.failed, []);
    const secondReceived = server.stats.received - firstReceived;
    assert.ok(secondReceived < firstReceived / 100, `${secondReceived} of ${firstReceived} bytes`);
    assert.equal(server.stats.files, 30, "nothing saved twice");

    // One file lost on the server, one changed on the client (same size): only those travel.
    const [lost, changed] = images.keys();
    await Deno.remove(`${out}/${lost}.jpg`);
    await Deno.writeFile(`${input}/${changed}.jpg`, fakeJpeg(64 * 1024));
    const results: FileResult[] = [];
    const third = await uploadFiles(files, {
      port,
      resume: true,
      onResult: (r) => results.push(r),
    });
    assert.equal(third.confirmed, 29);
    assert.match(third.failed[0].path, new RegExp(changed));
    assert.match(third.failed[0].message!, /different file of that name exists/);
    assert.deepEqual(await Deno.readFile(`${out}/${lost}.jpg`), images.get(lost));
    assert.equal(results.filter((r) => r.alreadyThere).length, 28);
  } finally {
    await server.shutdown(1000);
  }
});

Deno.test("a plain second run of a finished upload sends under 1% of the bytes, counted at the server", async () => {
  await withServerAndImages(
    Array(40).fill(64 * 1024),
    async (port, input, _out, _images, stats) => {
      await using first = spawnClient(input, [`--port=${port}`]);
      assert.equal((await first.wait()).code, 0, first.stderr);
      const firstReceived = stats.received;
      await using again = spawnClient(input, [`--port=${port}`]);
      assert.equal((await again.wait()).code, 0, again.stderr);
      const secondReceived = stats.received - firstReceived;
      assert.ok(
        secondReceived < firstReceived / 100,
        `${secondReceived} of ${firstReceived} bytes`,
      );
      assert.match(again.stdout, /confirmed 40 of 40 files .*\(40 already there, not sent\)\n$/);
      assert.equal(stats.files, 40, "nothing saved twice");
    },
  );
});

Deno.test("--send-all sends every file again, and the server answers each as one it already had", async () => {
  await withServerAndImages([1000, 2000], async (port, input, _out, _images, stats) => {
    await using first = spawnClient(input, [`--port=${port}`]);
    assert.equal((await first.wait()).code, 0, first.stderr);
    await using again = spawnClient(input, [`--port=${port}`, "--send-all"]);
    assert.equal((await again.wait()).code, 0, again.stderr);
    assert.match(again.stdout, /^sending 2 files to 127\.0\.0\.1:\d+ over 2 connections\n/);
    assert.equal(stats.duplicates, 2);
  });
});

Deno.test("--resume pairs every answer with its own file across several batches of queries in flight", async () => {
  // 64 queries a write and four writes ahead: 400 files need seven writes.
  const sizes = Array.from({ length: 400 }, (_, i) => 100 + i);
  await withServerAndImages(sizes, async (port, input, _out, _images, stats) => {
    const { files } = await collectFiles([input]);
    const held = files.filter((_, i) => i % 3 === 0);
    assert.equal((await uploadFiles(held, { port })).confirmed, held.length);

    const results: FileResult[] = [];
    const report = await uploadFiles(files, {
      port,
      resume: true,
      onResult: (r) => results.push(r),
    });
    assert.equal(report.confirmed, 400);
    const found = results.filter((r) => r.alreadyThere).map((r) => r.path);
    assert.deepEqual(found.toSorted(), held.map((file) => file.path).toSorted());
    assert.equal(stats.files, 400, "each file saved once");
    assert.equal(stats.duplicates, 0, "no held file sent again");
  });
});

Deno.test("a plain run to a --raw server, which cannot tell what it holds, sends every file as before", async () => {
  await withServerAndImages([100, 200, 300], async (port, input, out, _images, stats) => {
    await using first = spawnClient(input, [`--port=${port}`]);
    assert.equal((await first.wait()).code, 0, first.stderr);
    await using again = spawnClient(input, [`--port=${port}`]);
    assert.equal((await again.wait()).code, 0, again.stderr);
    assert.match(again.stdout, /confirmed 3 of 3 files/);
    assert.equal(stats.files, 6);
    assert.equal((await listFolder(out)).length, 6);
  }, { raw: true });
});

Deno.test("--resume to a --raw server sends nothing and fails every file with the server's reason", async () => {
  await withServerAndImages([100, 200, 300], async (port, input, out, _images, stats) => {
    const { files } = await collectFiles([input]);
    assert.equal((await uploadFiles(files, { port })).confirmed, 3);

    const report = await uploadFiles(files, { port, resume: "strict" });
    assert.equal(report.confirmed, 0);
    assert.deepEqual(
      report.failed.map((r) => r.path).toSorted(),
      files.map((f) => f.path).toSorted(),
    );
    for (const { message } of report.failed) {
      assert.equal(
        message,
        "Not sent, so as not to store it twice: Cannot answer a query: a --raw server keeps no names",
      );
    }
    assert.equal(stats.files, 3, "no file stored a second time");
    assert.deepEqual(await listFolder(out), ["00000", "00001", "00002"]);
  }, { raw: true });
});

Deno.test("--resume finds the files a server saved before it was restarted", async () => {
  await using temporary = new TempDirs();
  const input = await temporary.make();
  const out = await temporary.make();
  await makeImages(input, Array(20).fill(1024));
  const { files } = await collectFiles([input]);
  const before = await startServer({ host: "127.0.0.1", port: 0, out });
  try {
    assert.equal((await uploadFiles(files, { port: before.addr.port })).confirmed, 20);
  } finally {
    await before.shutdown(1000);
  }
  const after = await startServer({ host: "127.0.0.1", port: 0, out });
  try {
    const results: FileResult[] = [];
    const report = await uploadFiles(files, {
      port: after.addr.port,
      resume: true,
      onResult: (r) => results.push(r),
    });
    assert.equal(report.confirmed, 20);
    assert.equal(results.filter((r) => r.alreadyThere).length, 20);
    assert.equal(after.stats.files, 0, "nothing sent again");
  } finally {
    await after.shutdown(1000);
  }
});

/**
 * Puts `count` names in a folder that the server indexes: hard links to
 * empty files, quicker to make than files (ext4 allows 65,000 links a file).
 */
function fillFolder(folder: string, count: number): void {
  for (let i = 0; i < count; i++) {
    const path = `${folder}/filler-${i}.bin`;
    if (i % 50_000 === 0) Deno.writeFileSync(path, new Uint8Array());
    else Deno.linkSync(`${folder}/filler-${i - i % 50_000}.bin`, path);
  }
}

const placedMeanwhile = [
  // The server lists its folder at start and answers a query for a name not
  // there then, nor saved since, without looking: the file placed meanwhile
  // is sent again, and the server finds it there and says so.
  { folder: "a folder it lists", names: 0, sentAgain: true },
  // Past 100,000 names it keeps no list and looks each name up.
  { folder: "a folder too large to list", names: 100_001, sentAgain: false },
];
for (const { folder, names, sentAgain } of placedMeanwhile) {
  Deno.test(`--resume confirms a file another program put in ${folder} after the server started`, async () => {
    await using temporary = new TempDirs();
    const input = await temporary.make();
    const out = await temporary.make();
    fillFolder(out, names);
    const images = await makeImages(input, [4096]);
    const [[name, bytes]] = images;
    const { files } = await collectFiles([input]);
    const server = await startServer({ host: "127.0.0.1", port: 0, out });
    try {
      await Deno.writeFile(`${out}/${name}.jpg`, bytes);
      const results: FileResult[] = [];
      const report = await uploadFiles(files, {
        port: server.addr.port,
        resume: true,
        onResult: (r) => results.push(r),
      });
      assert.equal(report.confirmed, 1);
      assert.equal(results[0].alreadyThere ?? false, !sentAgain);
      assert.equal(server.stats.duplicates, sentAgain ? 1 : 0);
      assert.equal(server.stats.files, sentAgain ? 1 : 0);
      assert.deepEqual(await Deno.readFile(`${out}/${name}.jpg`), bytes);
    } finally {
      await server.shutdown(1000);
    }
  });
}

Deno.test("udp_server.ts keeps its memory bounded under a flood of 100,000 datagrams", async () => {
  const { server, port } = await spawnUdpServer();
  await using _server = server;
  const rss = async () => {
    const { stdout } = await new Deno.Command("ps", {
      args: ["-o", "rss=", "-p", String(server.child.pid)],
    })
      .output();
    return Number(new TextDecoder().decode(stdout).trim()) / 1024;
  };
  const before = await rss();
  const flood = new Spawned("python3", [
    "-c",
    `import socket, sys
sk = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(100000): sk.sendto(b"flood %d " % i + b"x" * 1000, ("127.0.0.1", ${port}))`,
  ]);
  await using _flood = flood;
  let peak = before;
  while (
    (await Promise.race([
      flood.child.status.then(() => true),
      new Promise((r) => setTimeout(() => r(false), 50)),
    ])) === false
  ) {
    peak = Math.max(peak, await rss());
  }
  assert.equal((await flood.wait()).code, 0, flood.stderr);
  peak = Math.max(peak, await rss());
  // 100 MB went by: the server's queue to its printer is bounded; what it cannot take is dropped.
  assert.ok(
    peak < before + 64,
    `resident memory grew from ${before.toFixed(0)} to ${peak.toFixed(0)} MB`,
  );
  await server.stop();
  assert.match(server.stderr, /received \d+ datagrams?, printed \d+/);
});

Deno.test("a server with a token writes nothing for a client without it or with a wrong one", async () => {
  const token = "correct horse battery staple";
  await using temporary = new TempDirs();
  const out = await temporary.make();
  const input = await temporary.make();
  const server = await startServer({ host: "127.0.0.1", port: 0, out, token });
  try {
    const port = server.addr.port;
    const images = await makeImages(input, [100, 200]);
    const { files } = await collectFiles([input]);

    const without = await uploadFiles(files, { port, retries: 3 });
    assert.equal(without.confirmed, 0);
    for (const failure of without.failed) {
      assert.equal(
        failure.message,
        "The server requires a token: add --token-file FILE (it said: Authentication required: send the token first)",
      );
      assert.equal(failure.transient, false, "without a token, no try can succeed");
    }

    const wrong = await uploadFiles(files, {
      port,
      token: "incorrect horse battery staple",
      retries: 3,
    });
    assert.equal(wrong.confirmed, 0);
    for (const failure of wrong.failed) {
      assert.match(failure.message!, /^Token refused: Authentication failed: wrong token$/);
      assert.equal(failure.transient, false, "a refused token is not tried again");
    }
    assert.deepEqual(await listFolder(out), [], "nothing written");

    const right = await uploadFiles(files, { port, token, resume: true });
    assert.deepEqual(right.failed, []);
    for (const [name, bytes] of images) {
      assert.deepEqual(await Deno.readFile(`${out}/${name}.jpg`), bytes);
    }
    // Queries need the token too: a second run sends nothing again.
    const again = await uploadFiles(files, { port, token, resume: true });
    assert.equal(again.confirmed, 2);
    assert.equal(server.stats.files, 2);
  } finally {
    await server.shutdown(1000);
  }
});

Deno.test("uploadFiles() refused for its token stops there, rather than reconnecting for every window of files", async () => {
  await using temporary = new TempDirs();
  const input = await temporary.make();
  const rejected: string[] = [];
  const server = await startServer({
    host: "127.0.0.1",
    port: 0,
    out: await temporary.make(),
    token: "correct horse battery staple",
    onEvent: (event) => event.type === "rejected" && rejected.push(event.message),
  });
  try {
    await makeImages(input, Array(100).fill(10));
    const { files } = await collectFiles([input]);
    const report = await uploadFiles(files, {
      port: server.addr.port,
      token: "incorrect horse battery staple",
      concurrency: 2,
      window: 8,
    });
    assert.equal(report.failed.length, 100);
    assert.ok(report.failed.every((failure) => failure.transient === false));
    assert.ok(report.failed.every(({ message }) => message === report.failed[0].message));
    assert.ok(rejected.length <= 2, `${rejected.length} connections were refused`);
  } finally {
    await server.shutdown(1000);
  }
});

Deno.test("server.ts --token-file and client.ts --token-file upload; a short token is a usage error", async () => {
  await using temporary = new TempDirs();
  const dir = await temporary.make();
  const serverWithToken = (tokenFile: string) =>
    denoScript(
      "server.ts",
      ["--allow-net=127.0.0.1", `--allow-read=${dir}`, `--allow-write=${dir}`],
      ["--host=127.0.0.1", "--port=0", `--out=${dir}/out`, `--token-file=${tokenFile}`],
    );
  await Deno.writeTextFile(`${dir}/short`, "tooshort\n");
  await using refused = serverWithToken(`${dir}/short`);
  assert.equal((await refused.wait()).code, 2);
  assert.match(refused.stderr, /Token too short: .* holds 8 characters, want 16 or more/);

  await Deno.writeTextFile(`${dir}/token`, "a much longer shared secret\n");
  await Deno.mkdir(`${dir}/in`);
  const images = await makeImages(`${dir}/in`, [1000]);
  await using server = serverWithToken(`${dir}/token`);
  const port = (await server.waitFor(/listening on 127\.0\.0\.1:(\d+)/))[1];
  await using client = denoScript("client.ts", ["--allow-net=127.0.0.1", `--allow-read=${dir}`], [
    `--port=${port}`,
    `--token-file=${dir}/token`,
    `${dir}/in`,
  ]);
  assert.equal((await client.wait()).code, 0, client.stderr);
  const [[name, bytes]] = images;
  assert.deepEqual(await Deno.readFile(`${dir}/out/${name}.jpg`), bytes);
});

Deno.test("two uploads of one name at once keep exactly one file, and the other is told why", async () => {
  await withServer({}, async (port, out) => {
    const upload = async (data: Uint8Array) => {
      using conn = await Deno.connect({ hostname: "127.0.0.1", port });
      await conn.write(encodeFrame("same", data));
      return { data, answer: parseAck((await new LineReader(conn, MAX_ACK_SIZE).readLine(5000))!) };
    };
    const different = await Promise.all([upload(fakeJpeg(300_000)), upload(fakeJpeg(300_000))]);
    const saved = different.filter(({ answer }) => answer.ok);
    const refused = different.filter(({ answer }) => !answer.ok);
    assert.equal(saved.length, 1);
    assert.match(
      refused[0].answer.ok ? "" : refused[0].answer.message,
      /different file of that name/,
    );
    assert.deepEqual(await Deno.readFile(`${out}/same.jpg`), saved[0].data);

    const data = fakeJpeg(300_000);
    await Deno.remove(`${out}/same.jpg`);
    const identical = await Promise.all([upload(data), upload(data)]);
    assert.ok(identical.every(({ answer }) => answer.ok), "an identical copy is acknowledged");
    assert.deepEqual(await listFolder(out), [".quarantine", "same.jpg"]);
    assert.deepEqual(await quarantined(out), [encodeFrame("same", refused[0].data)]);
  });
});

Deno.test("a client killed mid-run and run again as it was completes the set, nothing lost or doubled", async () => {
  await using temporary = new TempDirs();
  const input = await temporary.make();
  let saved = 0;
  let killed: Spawned | undefined;
  await withServer({
    // Killed on the server's own count: a poll from here can see the run end first.
    onEvent: (event) => {
      if (event.type === "saved" && ++saved === 10) killed?.child.kill("SIGKILL");
    },
  }, async (port, out) => {
    const images = await makeImages(input, Array(300).fill(256 * 1024));
    await using client = spawnClient(input, [`--port=${port}`, "-c", "1"]);
    killed = client;
    assert.equal((await client.wait()).signal, "SIGKILL");
    const before = (await listFolder(out)).filter((name) => name.endsWith(".jpg")).length;
    assert.ok(before >= 10 && before < 300, `${before} files arrived before the kill`);

    await using again = spawnClient(input, [`--port=${port}`, "-c", "1"]);
    assert.equal((await again.wait()).code, 0, again.stderr);
    const held = Number(again.stdout.match(/\((\d+) already there, not sent\)/)?.[1]);
    assert.ok(held >= before - 1 && held < 300, `${held} already there of ${before} saved`);
    assert.match(again.stdout, /confirmed 300 of 300 files/);
    // The killed client's last frame was cut: the server drops it when the connection ends.
    for (let i = 0; i < 100 && (await listFolder(out)).some((n) => n.endsWith(".part")); i++) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    assert.deepEqual(await listFolder(out), [...images.keys()].map((name) => `${name}.jpg`).sort());
    for (const [name, bytes] of images) {
      assert.deepEqual(await Deno.readFile(`${out}/${name}.jpg`), bytes);
    }
  });
});

Deno.test("of two servers on one folder, one killed mid-frame: the other finishes its frame, and the restarted one removes only the dead one's file", async () => {
  await using temporary = new TempDirs();
  const out = await temporary.make();
  const { server: alive, port: alivePort } = await spawnServer(out, ["--quiet"]);
  await using _alive = alive;
  const { server: doomed, port: doomedPort } = await spawnServer(out, ["--quiet"]);
  await using _doomed = doomed;
  const image = fakeJpeg(256 * 1024);
  const frame = (name: string) => encodeFrame(name, image);
  const half = frame("slow").length >> 1;
  const parts = async () => (await serverFiles(out)).filter((name) => name.endsWith(".part"));
  // A frame half sent to each: each server holds a temporary file.
  using slow = await Deno.connect({ hostname: "127.0.0.1", port: alivePort });
  await slow.write(frame("slow").subarray(0, half));
  using cut = await Deno.connect({ hostname: "127.0.0.1", port: doomedPort });
  await cut.write(frame("cut").subarray(0, half));
  const deadline = Date.now() + 10_000;
  while ((await parts()).length < 2) {
    assert.ok(Date.now() < deadline, "no temporary file of each server");
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  for (const name of await parts()) {
    assert.match(name, /^\.upload-[0-9a-f]{16}-/);
  }
  await doomed.stop("SIGKILL");
  const { server: restarted } = await spawnServer(out, ["--quiet"]);
  await using _restarted = restarted;
  assert.match(restarted.stdout, /removed 1 temporary file left by an earlier run/);
  assert.equal((await parts()).length, 1);
  // The running server's frame was never touched: it completes.
  await slow.write(frame("slow").subarray(half));
  const answer = await new LineReader(slow, MAX_ACK_SIZE).readLine(5000);
  assert.ok(parseAck(answer!).ok, new TextDecoder().decode(answer!));
  assert.deepEqual(await Deno.readFile(`${out}/slow.jpg`), image);
  assert.deepEqual(await listFolder(out), ["slow.jpg"]);
});

/** Sends `count` datagrams of `size` bytes to a local port, pausing after every `burst` so the kernel keeps them. */
async function sendPaced(port: number, count: number, size: number, burst = 100): Promise<void> {
  const socket = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  const to = { transport: "udp" as const, hostname: "127.0.0.1", port };
  try {
    for (let i = 0; i < count; i++) {
      await socket.send(new TextEncoder().encode(`${i} `.padEnd(size, "x")), to);
      if (i % burst === burst - 1) await new Promise((resolve) => setTimeout(resolve, 1));
    }
  } finally {
    socket.close();
  }
}

Deno.test("udp_server.ts keeps receiving while nobody reads what it prints, and says what it dropped", async () => {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-net=127.0.0.1", `${ROOT}udp_server.ts`, "--host=127.0.0.1", "--port=0"],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  await using _child = child;
  const stderr = new Response(child.stderr).text();
  // Read the listening line, then nothing more: the pipe fills and stdout blocks.
  const stdout = child.stdout.getReader();
  const first = new TextDecoder().decode((await stdout.read()).value);
  const port = Number(first.match(/listening on 127\.0\.0\.1:(\d+)/)![1]);
  const started = performance.now();
  await sendPaced(port, 20_000, 1_000);
  await new Promise((resolve) => setTimeout(resolve, 1_500));
  const seconds = (performance.now() - started) / 1000;
  child.kill("SIGTERM");
  assert.equal((await child.status).code, 0);
  const said = await stderr;
  const [, received, printed, dropped] = said.match(
    /SIGTERM: received (\d+) datagrams, printed (\d+), dropped (\d+) for want of time\n$/,
  )!.map(Number);
  // 20 MB against 4 MiB of queue and a 64-KiB pipe: most is dropped, yet all is received.
  assert.ok(received > 15_000, `received only ${received} of 20000: receiving waited`);
  assert.ok(printed + dropped <= received && dropped > 5_000, said);
  const reports = [
    ...said.matchAll(/Dropped (\d+) datagrams in the last second: printing could not keep up\n/g),
  ];
  assert.ok(reports.length >= 1 && reports.length <= Math.ceil(seconds) + 1, said);
  const reported = reports.reduce((sum, [, n]) => sum + Number(n), 0);
  assert.ok(reported <= dropped, said);
  await stdout.cancel();
});

/** Starts `udp_server.ts > log` on a free loopback port, with extra Deno flags and arguments. */
function udpServerToFile(
  log: string,
  flags: string[] = [],
  args: string[] = [],
): Deno.ChildProcess {
  return new Deno.Command("sh", {
    args: [
      "-c",
      `exec "$0" run --allow-net=127.0.0.1 ${flags.join(" ")} "$1" --host=127.0.0.1 --port=0 ${
        args.join(" ")
      } > "$2"`,
      Deno.execPath(),
      `${ROOT}udp_server.ts`,
      log,
    ],
    stderr: "piped",
  }).spawn();
}

/** Types `lines` and then `exit` into the tutorial's UDP client, which sends each line to `port`. */
async function originalUdpClient(port: number, lines: string[]): Promise<void> {
  const client = new Deno.Command("python3", {
    args: [`${ROOT}tests/original/udp_client.py`, String(port)],
    stdin: "piped",
    stdout: "null",
  }).spawn();
  const writer = client.stdin.getWriter();
  await writer.write(new TextEncoder().encode(`${lines.join("\n")}\nexit\n`));
  await writer.close();
  assert.equal((await client.status).code, 0);
}

Deno.test("udp_server.ts > a file: the original client's lines and 2,000 more are there while it runs, none dropped", async () => {
  await using temporary = new TempDirs();
  const log = `${await temporary.make()}/datagrams.log`;
  const server = udpServerToFile(log);
  await using _server = server;
  const stderr = new Response(server.stderr).text();
  const lines = async (count: number) => {
    let text = "";
    for (const deadline = performance.now() + 10_000; performance.now() < deadline;) {
      text = await Deno.readTextFile(log).catch(() => "");
      if (text.split("\n").length > count) return text;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    throw new Error(
      `${text.split("\n").length - 1} lines of ${count} after 10 s: ${text.slice(-200)}`,
    );
  };
  const port = Number((await lines(1)).match(/listening on 127\.0\.0\.1:(\d+)/)![1]);
  await originalUdpClient(port, ["hello", "  数据 data  "]);
  // 10,000 a second at most: a server just started is not yet compiled for a flood.
  await sendPaced(port, 2_000, 200, 10);
  // Read before the server stops, as `tail -f` would.
  const printed = (await lines(2_003)).split("\n");
  assert.deepEqual(printed.slice(1, 3), ["hello", "数据 data"]);
  assert.deepEqual(
    printed.slice(3, 2_003).map((line) => line.split(" ")[0]),
    Array.from({ length: 2_000 }, (_, i) => String(i)),
  );
  server.kill("SIGINT");
  assert.equal((await server.status).code, 0);
  assert.equal(await stderr, "SIGINT: received 2002 datagrams, printed 2002\n");
});

/** The original client's burst of 2,000 lines of 200 bytes. */
const BURST = Array.from({ length: 2_000 }, (_, i) => `line ${i} `.padEnd(200, "x"));

/**
 * Runs `udp_server.ts > datagrams.log` with extra Deno flags and arguments,
 * stops it as Ctrl-Z does, has the original client send {@linkcode BURST},
 * lets it go on, and stops it with SIGINT once its output has not grown for
 * 300 ms and a second has passed (so its once-a-second report is out).
 */
async function burstWhileStopped(flags: string[], args: string[]) {
  await using temporary = new TempDirs();
  const log = `${await temporary.make()}/datagrams.log`;
  const server = udpServerToFile(log, flags, args);
  await using _server = server;
  const stderr = new Response(server.stderr).text();
  const lines = async () => (await Deno.readTextFile(log).catch(() => "")).split("\n").slice(0, -1);
  for (const deadline = Date.now() + 10_000; (await lines()).length === 0;) {
    assert.ok(Date.now() < deadline, "no listening line after 10 s");
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  const port = Number((await lines())[0].match(/listening on 127\.0\.0\.1:(\d+)/)![1]);
  // Only the kernel's buffer holds what comes meanwhile.
  Deno.kill(server.pid, "SIGSTOP");
  await originalUdpClient(port, BURST);
  Deno.kill(server.pid, "SIGCONT");
  const resumed = Date.now();
  for (let last = -1, now = (await lines()).length; now !== last || Date.now() - resumed < 1_100;) {
    await new Promise((resolve) => setTimeout(resolve, 300));
    [last, now] = [now, (await lines()).length];
  }
  server.kill("SIGINT");
  assert.equal((await server.status).code, 0);
  return { printed: (await lines()).slice(1), stderr: await stderr };
}

Deno.test("udp_server.ts --rcvbuf 4M keeps all of the original client's burst sent while it is stopped (Ctrl-Z)", async () => {
  const { printed, stderr } = await burstWhileStopped(["--allow-ffi"], ["--rcvbuf=4M"]);
  assert.deepEqual(printed, BURST);
  assert.equal(stderr, "SIGINT: received 2000 datagrams, printed 2000\n");
});

Deno.test("udp_server.ts without --rcvbuf loses most of that burst in the kernel, and with --allow-ffi says how many", async () => {
  const { printed, stderr } = await burstWhileStopped(["--allow-ffi"], []);
  assert.ok(printed.length < 1_000, `${printed.length} of 2000 printed without --rcvbuf`);
  assert.deepEqual(printed, BURST.slice(0, printed.length));
  const lost = 2_000 - printed.length;
  assert.equal(
    stderr,
    `Dropped ${lost} datagrams in the last second: the kernel's receive buffer was full (--rcvbuf makes it bigger)\n` +
      `SIGINT: received ${printed.length} datagrams, printed ${printed.length}, ${lost} dropped by the kernel\n`,
  );
  // Without --allow-ffi the kernel's count cannot be read: the summary says what it knows.
  const plain = await burstWhileStopped([], []);
  const received = plain.printed.length;
  assert.equal(plain.stderr, `SIGINT: received ${received} datagrams, printed ${received}\n`);
});
