import assert from "node:assert/strict";
import { crc32 } from "node:zlib";
import { collectFiles, uploadFiles } from "../client.ts";
import { encodeAck, encodeFrame, FrameReader } from "../protocol.ts";
import {
  concat,
  denoScript,
  fakeJpeg,
  freePort,
  listFolder,
  makeImages,
  ROOT,
  serverCommand,
  spawnClient,
  Spawned,
  spawnServer,
  spawnUdpServer,
  TempDirs,
  utf8,
} from "./helpers.ts";

const scripts: [string, string[]][] = [
  ["server.ts", ["--allow-net=127.0.0.1"]],
  ["client.ts", ["--allow-net=127.0.0.1", "--allow-read"]],
  ["udp_server.ts", ["--allow-net=127.0.0.1"]],
  ["udp_client.ts", ["--allow-net=127.0.0.1,0.0.0.0"]],
];

for (const [script, flags] of scripts) {
  Deno.test(`${script} --help prints its usage and exits 0`, async () => {
    await using child = denoScript(script, flags, ["--help"]);
    const status = await child.wait();
    assert.equal(status.code, 0);
    assert.match(child.stdout, new RegExp(`^Usage: deno run .*${script.replace(".", "\\.")}`));
    assert.match(child.stdout, /--port PORT/);
  });

  Deno.test(`${script} rejects an unknown flag with one line on stderr and exit 2`, async () => {
    await using child = denoScript(script, flags, ["--bogus"]);
    const status = await child.wait();
    assert.equal(status.code, 2);
    assert.equal(child.stdout, "");
    assert.match(
      child.stderr,
      new RegExp(`^${script.replace(".", "\\.")}: Unknown option '--bogus'\nTry`),
    );
  });

  Deno.test(`${script} names an option left without its value, with exit 2`, async () => {
    await using child = denoScript(script, flags, ["--host", "--port", "1"]);
    assert.equal((await child.wait()).code, 2);
    assert.match(
      child.stderr,
      /: Option '--host' is missing its value: write --host=VALUE if the value starts with a dash\nTry/,
    );
  });

  Deno.test(`${script} rejects a bad port with exit 2`, async () => {
    await using child = denoScript(script, flags, [
      "--port",
      "99999",
      ...(script === "client.ts" ? ["."] : []),
    ]);
    assert.equal((await child.wait()).code, 2);
    assert.match(child.stderr, /Cannot parse port: expected [01] to 65535, got "99999"/);
  });

  Deno.test(`${script} rejects a host with a port in it with exit 2`, async () => {
    await using child = denoScript(script, flags, [
      "--host",
      "127.0.0.1:9999",
      ...(script === "client.ts" ? ["."] : []),
    ]);
    assert.equal((await child.wait()).code, 2);
    assert.match(
      child.stderr,
      /: Cannot parse host: give the port with --port, got "127\.0\.0\.1:9999"\nTry/,
    );
  });
}

const admissionFlags: [string, string, RegExp][] = [
  ["--max-frames", "0", /Invalid --max-frames: expected a whole number from 1, got "0"/],
  ["--queue-timeout", "soon", /Invalid --queue-timeout/],
  [
    "--quarantine-size",
    "lots",
    /Cannot parse size: expected a number with an optional K, M or G, got "lots"/,
  ],
];
for (const [flag, value, message] of admissionFlags) {
  Deno.test(`server.ts rejects ${flag} ${value} with one line and exit 2`, async () => {
    await using child = denoScript("server.ts", ["--allow-net=127.0.0.1"], [flag, value]);
    assert.equal((await child.wait()).code, 2);
    assert.match(child.stderr, message);
    assert.match(child.stdout, /^$/);
  });
}

for (const script of ["client.ts", "udp_client.ts"]) {
  Deno.test(`${script} refuses port 0 as a destination with exit 2`, async () => {
    await using child = denoScript(script, ["--allow-net=127.0.0.1,0.0.0.0", "--allow-read"], [
      "--port",
      "0",
      ".",
    ]);
    assert.equal((await child.wait()).code, 2);
    assert.match(child.stderr, /Cannot parse port: expected 1 to 65535, got "0"/);
  });
}

Deno.test("bench/bench.ts prints its usage with --help and refuses a bad --rounds with exit 2", async () => {
  await using help = denoScript("bench/bench.ts", ["--allow-all"], ["--help"]);
  assert.equal((await help.wait()).code, 0);
  assert.match(help.stdout, /^Usage: deno task bench .*--rounds N/);
  for (const rounds of ["0", "three"]) {
    await using child = denoScript("bench/bench.ts", ["--allow-all"], ["--rounds", rounds]);
    assert.equal((await child.wait()).code, 2);
    assert.equal(child.stdout, "");
    assert.equal(
      child.stderr,
      `bench: Invalid --rounds: expected a whole number from 1, got "${rounds}"\nTry 'deno task bench --help'.\n`,
    );
  }
});

Deno.test("bench/bench.ts says in one line why it cannot go on, exits 1 and leaves no data behind", async () => {
  await using missing = denoScript("bench/bench.ts", ["--allow-all"], [
    "--quick",
    "--dir",
    "/no-such-folder",
  ]);
  assert.equal((await missing.wait()).code, 1);
  assert.equal(missing.stderr, "bench: Cannot make a folder in /no-such-folder: no such folder\n");

  // A tar that fails stops the run at tar | nc, once the data is made and other runs are done.
  const dir = await Deno.makeTempDir();
  try {
    await Deno.mkdir(`${dir}/bin`);
    await Deno.writeTextFile(
      `${dir}/bin/tar`,
      "#!/bin/sh\necho 'tar: broken on purpose' >&2\nexit 1\n",
      {
        mode: 0o755,
      },
    );
    await using broken = denoScript("bench/bench.ts", ["--allow-all"], ["--quick", "--dir", dir], {
      env: { PATH: `${dir}/bin:/usr/local/bin:/usr/bin:/bin` },
    });
    assert.equal((await broken.wait()).code, 1);
    assert.match(broken.stderr, /intact\nbench: tar c \| nc failed: tar: broken on purpose\n$/);
    assert.deepEqual([...Deno.readDirSync(dir)].map((entry) => entry.name), ["bin"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** The ids of the processes but `except` whose command line mentions `text`, found with pgrep. */
async function processesMentioning(text: string, except: number): Promise<string[]> {
  const { stdout } = await new Deno.Command("pgrep", { args: ["-f", text], stdout: "piped" })
    .output();
  return new TextDecoder().decode(stdout).split("\n")
    .filter((line) => line !== "" && line !== String(except));
}

Deno.test("bench/bench.ts stopped by SIGINT ends what it started, removes its data and exits 1", async () => {
  const dir = await Deno.makeTempDir();
  try {
    // On loopback: tests/bench_link_test.ts stops one on the shaped link.
    await using bench = denoScript("bench/bench.ts", ["--allow-all"], [
      "--quick",
      "--link",
      "off",
      "--dir",
      dir,
    ]);
    await bench.waitFor(/round 1, small, ours -c 1: /, "stderr");
    // Signalled while one of its servers, clients or senders runs, which only it can end.
    const started = () => processesMentioning(dir, bench.child.pid);
    const deadline = Date.now() + 15_000;
    while ((await started()).length === 0) {
      assert.ok(Date.now() < deadline, `no process of the benchmark seen: ${bench.stderr}`);
    }
    bench.child.kill("SIGINT");
    assert.equal((await bench.wait()).code, 1);
    assert.match(bench.stderr, /\nbench: stopped by SIGINT\n$/);
    assert.deepEqual([...Deno.readDirSync(dir)], []);
    // A grandchild such as tar or nc ends by itself once its peer is gone.
    while ((await started()).length > 0) {
      assert.ok(Date.now() < deadline + 5_000, `still running: ${await started()}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

const serverUsageErrors: [string, string[], RegExp][] = [
  [
    "a --max-frame-size below the 32-byte name field",
    ["--max-frame-size", "10"],
    /^server\.ts: Invalid --max-frame-size: every frame body holds a 32-byte name, got 10 bytes\n/,
  ],
  ["an empty --host", ["--host", ""], /^server\.ts: Cannot parse host: expected a host name/],
  [
    "--proxy-protocol with TLS, whose listener reads no byte before its handshake",
    ["--proxy-protocol", "--tls-cert", "cert.pem", "--tls-key", "key.pem"],
    /^server\.ts: Cannot serve TLS with --proxy-protocol: let the balancer end TLS/,
  ],
];
for (const [what, args, message] of serverUsageErrors) {
  Deno.test(`server.ts refuses ${what} with exit 2`, async () => {
    await using child = denoScript("server.ts", ["--allow-net=127.0.0.1"], [
      "--port",
      "0",
      ...args,
    ]);
    assert.equal((await child.wait()).code, 2);
    assert.match(child.stderr, message);
  });
}

const taskUsages: [string, RegExp][] = [
  ["demo", /^Usage: deno task demo/],
  ["e2e:docker", /^End-to-end/],
];
for (const [task, usage] of taskUsages) {
  Deno.test(`deno task ${task} prints its usage with --help and refuses other arguments`, async () => {
    const run = (arg: string) =>
      new Spawned(Deno.execPath(), ["task", "--quiet", task, arg], { cwd: ROOT });
    await using help = run("--help");
    assert.equal((await help.wait()).code, 0, help.stderr);
    assert.match(help.stdout, usage);
    await using bogus = run("--bogus");
    assert.equal((await bogus.wait()).code, 2);
    assert.match(bogus.stderr, /Unknown argument '--bogus': it takes none\n$/);
  });
}

Deno.test("server.ts without write permission names the flags to add and exits 2 before listening", async () => {
  const out = await Deno.makeTempDir();
  try {
    await using child = denoScript("server.ts", ["--allow-net=127.0.0.1", `--allow-read=${out}`], [
      "--out",
      out,
      "--port",
      "0",
    ]);
    assert.equal((await child.wait()).code, 2);
    assert.doesNotMatch(child.stdout, /listening/);
    assert.match(
      child.stderr,
      new RegExp(
        `Missing write permission for ${out}: add --allow-read=${out} --allow-write=${out}`,
      ),
    );
  } finally {
    await Deno.remove(out);
  }
});

Deno.test("client.ts uploads a folder to server.ts, which saves every file byte for byte and prints a summary on SIGTERM", async () => {
  await using temporary = new TempDirs();
  const input = await temporary.make();
  const out = await temporary.make();
  const images = await makeImages(input, [10, 1000, 100_000, 400_000, ...Array(20).fill(5000)]);
  const { server, port } = await spawnServer(out);
  await using _server = server;
  await using client = spawnClient(input, ["--port", String(port), "-c", "2"]);
  assert.equal((await client.wait()).code, 0, client.stderr);
  assert.match(
    client.stdout,
    /confirmed 24 of 24 files \(\d+\.\d+ KiB\) in [\d.]+ m?s, [\d.]+ (B|[KMGT]iB)\/s\n/,
  );
  assert.doesNotMatch(client.stdout, /\r/, "no progress line when stdout is not a terminal");
  for (const [name, bytes] of images) {
    assert.deepEqual(await Deno.readFile(`${out}/${name}.jpg`), bytes);
  }
  const status = await server.stop("SIGTERM");
  assert.equal(status.code, 0);
  assert.equal(server.stdout.match(/^saved /gm)?.length, 24);
  assert.match(server.stdout, /stopped: 24 files \(.*\), 0 already had, 0 errors/);
});

Deno.test("server.ts saves into a relative --out that is a symbolic link, allowed by the link's name alone", async () => {
  await using temporary = new TempDirs();
  const [base, target, input] = await Promise.all([
    temporary.make(),
    temporary.make(),
    temporary.make(),
  ]);
  await Deno.symlink(target, `${base}/link`);
  const images = await makeImages(input, [5000]);
  await using server = new Spawned(Deno.execPath(), [
    "run",
    "--allow-net=127.0.0.1",
    "--allow-read=link",
    "--allow-write=link",
    `${ROOT}server.ts`,
    "--host=127.0.0.1",
    "--port=0",
    "--out=link",
  ], { cwd: base });
  const port = (await server.waitFor(/listening on 127\.0\.0\.1:(\d+)/))[1];
  await using client = spawnClient(input, ["--port", port]);
  assert.equal((await client.wait()).code, 0, client.stderr);
  const [[name, bytes]] = images;
  assert.deepEqual(await Deno.readFile(`${target}/${name}.jpg`), bytes);
});

Deno.test("server.ts --raw stores each frame body as the original server did", async () => {
  await using temporary = new TempDirs();
  const input = await temporary.make();
  const out = await temporary.make();
  const images = await makeImages(input, [300, 7000]);
  const { server: spawned, port } = await spawnServer(out, ["--raw", "--quiet"]);
  await using _server = spawned;
  await using client = spawnClient(input, ["--port", String(port), "-c", "1"]);
  assert.equal((await client.wait()).code, 0, client.stderr);
  assert.deepEqual(await listFolder(out), ["00000", "00001"]);
  const expected = [...images].sort(([a], [b]) => a.localeCompare(b))
    .map(([name, bytes]) => encodeFrame(name, bytes).subarray(16));
  assert.deepEqual(await Deno.readFile(`${out}/00000`), expected[0]);
  assert.deepEqual(await Deno.readFile(`${out}/00001`), expected[1]);
  assert.equal(spawned.stdout.match(/^saved /gm), null, "--quiet prints no line per file");
});

Deno.test("server.ts keeps serving several clients at once after garbage and a cut frame", async () => {
  await using temporary = new TempDirs();
  const out = await temporary.make();
  const inputs = await Promise.all(Array.from({ length: 4 }, () => temporary.make()));
  const { server, port } = await spawnServer(out, ["--quiet"]);
  await using _server = server;
  const garbage = await Deno.connect({ hostname: "127.0.0.1", port });
  await garbage.write(utf8("hello there, this is not a frame\n"));
  const cut = await Deno.connect({ hostname: "127.0.0.1", port });
  await cut.write(encodeFrame("cut", fakeJpeg(50_000)).subarray(0, 20_000));
  cut.close();
  await Promise.all(inputs.map((input) => makeImages(input, Array(10).fill(3000))));
  const clients = inputs.map((input) => spawnClient(input, ["--port", String(port)]));
  for (const client of clients) {
    await using _client = client;
    assert.equal((await client.wait()).code, 0, client.stderr);
  }
  garbage.close();
  assert.equal((await listFolder(out)).length, 40);
  await server.stop();
  assert.match(
    server.stderr,
    /rejected 127\.0\.0\.1:\d+: Cannot parse header: expected 16 digits, got "hello there, thi"/,
  );
  assert.match(server.stderr, /rejected 127\.0\.0\.1:\d+: Input ended inside a frame body/);
  assert.match(server.stdout, /stopped: 40 files .* 2 errors/);
});

/** Runs `command` with its stdout, and stderr too when asked, on a device that is always full. */
function withFullStdout(command: string[], { stderr = false } = {}): Spawned {
  const redirect = stderr ? "> /dev/full 2>&1" : "> /dev/full";
  return new Spawned("bash", ["-c", `exec "$@" ${redirect}`, "bash", ...command]);
}

/** Waits until something accepts connections on a loopback port, for up to 15 s. */
async function waitForListener(port: number): Promise<void> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
      return;
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}

const FULL = "Cannot write to stdout: No space left on device (os error 28)";

Deno.test("server.ts goes on serving when its stdout fails, says so once, and exits 1", async () => {
  await using temporary = new TempDirs();
  const input = await temporary.make();
  const out = await temporary.make();
  const images = await makeImages(input, Array(30).fill(2000));
  const port = freePort();
  await using server = withFullStdout(serverCommand(out, [`--port=${port}`]));
  // Its first line is the one that says it listens.
  await server.waitFor(/Cannot write to stdout/, "stderr");
  const { files } = await collectFiles([input]);
  const report = await uploadFiles(files, { port, retries: 0 });
  assert.deepEqual(report.failed, []);
  assert.equal(report.confirmed, 30);
  for (const [name, bytes] of images) {
    assert.deepEqual(await Deno.readFile(`${out}/${name}.jpg`), bytes);
  }
  assert.equal((await server.stop("SIGTERM")).code, 1);
  assert.equal(server.stderr.split(FULL).length - 1, 1, server.stderr);
});

Deno.test("server.ts with stdout and stderr on a full disk still serves, drains on SIGTERM and exits 1", async () => {
  await using temporary = new TempDirs();
  const input = await temporary.make();
  const out = await temporary.make();
  await makeImages(input, Array(30).fill(2000));
  const port = freePort();
  await using server = withFullStdout(serverCommand(out, [`--port=${port}`]), { stderr: true });
  await waitForListener(port);
  const { files } = await collectFiles([input]);
  const report = await uploadFiles(files, { port, retries: 0 });
  assert.equal(report.confirmed, 30);
  // Not killed by the signal (143): its handler got past the line it could not print.
  assert.equal((await server.stop("SIGTERM")).code, 1);
});

for (const stderr of [false, true]) {
  const which = stderr ? "stdout and stderr fail" : "stdout fails, says so once,";
  Deno.test(`client.ts sends every file when its ${which} and exits 1`, async () => {
    await using temporary = new TempDirs();
    const input = await temporary.make();
    const out = await temporary.make();
    const images = await makeImages(input, Array(30).fill(2000));
    const { server, port } = await spawnServer(out, ["--quiet"]);
    await using _server = server;
    await using client = withFullStdout([
      Deno.execPath(),
      "run",
      "--allow-net=127.0.0.1",
      `--allow-read=${input}`,
      `${ROOT}client.ts`,
      "--verbose",
      `--port=${port}`,
      input,
    ], { stderr });
    assert.equal((await client.wait()).code, 1);
    assert.equal(client.stderr, stderr ? "" : `client.ts: ${FULL}\n`);
    for (const [name, bytes] of images) {
      assert.deepEqual(await Deno.readFile(`${out}/${name}.jpg`), bytes);
    }
  });
}

Deno.test("udp_server.ts stops with one line and exit 1 when it cannot print", async () => {
  await using server = withFullStdout([
    Deno.execPath(),
    "run",
    "--allow-net=127.0.0.1",
    `${ROOT}udp_server.ts`,
    "--host=127.0.0.1",
    "--port=0",
  ]);
  assert.equal((await server.wait()).code, 1);
  assert.equal(
    server.stderr,
    `udp_server.ts: Cannot print to stdout: No space left on device (os error 28)\n`,
  );
});

Deno.test("client.ts exits 1 and names each file that was not confirmed", async () => {
  await using temporary = new TempDirs();
  const input = await temporary.make();
  const out = await temporary.make();
  const images = await makeImages(input, [100, 100]);
  // A name no path may hold, as a file system allows it.
  await Deno.writeFile(`${input}/line\nbreak.jpg`, fakeJpeg(10));
  const [taken] = images.keys();
  await Deno.writeFile(`${out}/${taken}.jpg`, utf8("someone else's"));
  const { server, port } = await spawnServer(out);
  await using _server = server;
  await using client = spawnClient(input, ["--port", String(port)]);
  assert.equal((await client.wait()).code, 1);
  assert.match(
    client.stderr,
    new RegExp(
      `failed ${input}/${taken}\\.jpg: Refused by the server: Cannot save ${taken}\\.jpg: a different file of that name exists`,
    ),
  );
  assert.match(
    client.stderr,
    /skipped .*line\nbreak\.jpg: Invalid path: it contains a control character/,
  );
  // Two reasons of one file each: the list says it all.
  assert.doesNotMatch(client.stderr, /by reason/);
  assert.match(client.stdout, /confirmed 1 of 3 files .*; 2 failed/);
});

Deno.test("client.ts counts the files that failed for one reason after listing them", async () => {
  await using temporary = new TempDirs();
  const input = await temporary.make();
  await makeImages(input, [10, 10, 10]);
  const port = freePort();
  await using client = spawnClient(input, ["--port", String(port), "--retries", "0"]);
  assert.equal((await client.wait()).code, 1);
  const refused = `Cannot connect to 127\\.0\\.0\\.1:${port}: Connection refused`;
  assert.match(
    client.stderr,
    new RegExp(`(failed [^\\n]+: ${refused}[^\\n]*\\n){3}failed, by reason:\\n  3 ${refused}`),
  );
  assert.match(client.stdout, /confirmed 0 of 3 files .*; 3 failed/);
});

const clientUsageErrors: [string, string[], RegExp][] = [
  ["without a folder", [], /^client\.ts: Missing DIR/],
  [
    "with a --ca file that holds no certificate",
    ["--ca", `${ROOT}deno.json`, "."],
    /^client\.ts: Invalid --ca: \S+deno\.json holds no PEM certificate\n$/,
  ],
  ["with an empty --ext", ["--ext", " , ", "."], /^client\.ts: Invalid --ext: name at least one/],
  [
    "with a --limit-rate of 0",
    ["--limit-rate", "0", "."],
    /^client\.ts: Invalid --limit-rate: a rate of 0 sends nothing\n/,
  ],
  [
    "with a --limit-rate that is no rate",
    ["--limit-rate", "fast", "."],
    /^client\.ts: Invalid --limit-rate: Cannot parse size: expected a number/,
  ],
  [
    "with --resume for the original server",
    ["--legacy", "--resume", "."],
    /^client\.ts: Invalid --resume: the original server \(--legacy\) answers no queries/,
  ],
];

for (const [what, args, message] of clientUsageErrors) {
  Deno.test(`client.ts ${what} is a usage error`, async () => {
    await using child = denoScript("client.ts", ["--allow-net=127.0.0.1", "--allow-read"], args);
    assert.equal((await child.wait()).code, 2);
    assert.match(child.stderr, message);
  });
}

for (
  const [count, files, connections] of [[2, "2 files", "2 connections"], [
    1,
    "1 file",
    "1 connection",
  ]] as const
) {
  Deno.test(`client.ts says it sends ${files} over no more than ${connections}`, async () => {
    await using temporary = new TempDirs();
    const input = await temporary.make();
    await makeImages(input, Array(count).fill(10));
    const { server, port } = await spawnServer(await temporary.make());
    await using _server = server;
    await using client = spawnClient(input, ["--port", String(port), "-c", "8"]);
    assert.equal((await client.wait()).code, 0, client.stderr);
    assert.match(
      client.stdout,
      new RegExp(
        `^sending ${files} to 127\\.0\\.0\\.1:\\d+ over ${connections}, skipping those it already holds\\n`,
      ),
    );
    assert.match(client.stdout, new RegExp(`\\nconfirmed ${count} of ${files} `));
  });
}

Deno.test("client.ts run again sends nothing the server already holds, and counts it", async () => {
  await using temporary = new TempDirs();
  const input = await temporary.make();
  await makeImages(input, [10, 20]);
  const { server, port } = await spawnServer(await temporary.make());
  await using _server = server;
  {
    await using first = spawnClient(input, ["--port", String(port)]);
    assert.equal((await first.wait()).code, 0, first.stderr);
  }
  await using again = spawnClient(input, ["--port", String(port)]);
  assert.equal((await again.wait()).code, 0, again.stderr);
  assert.match(
    again.stdout,
    /^sending 2 files to 127\.0\.0\.1:\d+ over 2 connections, skipping those it already holds\n/,
  );
  assert.match(again.stdout, /confirmed 2 of 2 files .*\(2 already there, not sent\)\n$/);
});

Deno.test("client.ts takes --ext as a shell pattern or with a dot, in any case, and says what hidden files it left out", async () => {
  await using temporary = new TempDirs();
  const input = await temporary.make();
  for (const name of ["a.JPG", "b.png", "c.gif", "._a.JPG"]) {
    await Deno.writeFile(`${input}/${name}`, fakeJpeg(10));
  }
  const { server, port } = await spawnServer(await temporary.make());
  await using _server = server;
  await using client = spawnClient(input, ["--port", String(port), "--ext", "*.jpg, .PNG", "-v"]);
  assert.equal((await client.wait()).code, 0, client.stderr);
  assert.match(
    client.stdout,
    /^sending 2 files .*; left out 1 name starting with a dot\n/,
  );
  assert.match(client.stdout, /\/a\.JPG as /);
  assert.match(client.stdout, /\/b\.png as /);
});

Deno.test("client.ts with --start past the last file says so and exits 0", async () => {
  await using temporary = new TempDirs();
  const input = await temporary.make();
  await makeImages(input, [10, 20]);
  await using client = spawnClient(input, ["--port", "9", "--start", "5"]);
  assert.equal((await client.wait()).code, 0, client.stderr);
  assert.equal(client.stderr, "client.ts: No files to send: --start 5 skips all 2 files found\n");
});

Deno.test("client.ts with a folder that does not exist says so in one line, a usage error", async () => {
  await using child = denoScript("client.ts", ["--allow-net=127.0.0.1", "--allow-read"], [
    "/no/such/folder",
  ]);
  assert.equal((await child.wait()).code, 2);
  assert.equal(child.stderr, "client.ts: No such file or folder: /no/such/folder\n");
});

Deno.test("client.ts names the files it left out for their extension, and the --ext that takes the images", async () => {
  await using temporary = new TempDirs();
  const input = await temporary.make();
  for (const name of ["a.jpg", "b.png", "c.PNG", "notes.txt"]) {
    await Deno.writeFile(`${input}/${name}`, fakeJpeg(10));
  }
  const { server, port } = await spawnServer(await temporary.make());
  await using _server = server;
  await using client = spawnClient(input, ["--port", String(port)]);
  assert.equal((await client.wait()).code, 0, client.stderr);
  assert.match(
    client.stdout,
    /^sending 1 file to .*; left out 3 files not matching \*\.jpg: \.png ×2, \.txt ×1; add --ext jpg,png\n/,
  );
});

Deno.test("client.ts counts the same files at the start and in the summary, and shows a Chinese name as text", async () => {
  await using temporary = new TempDirs();
  const input = await temporary.make();
  // Five folders of 240 bytes each: a path over 1,024 bytes.
  const long = "我的猫在花园里晒太阳的照片第二张".repeat(5);
  const deep = `${input}/${Array(5).fill(long).join("/")}`;
  await Deno.mkdir(deep, { recursive: true });
  for (const path of [`${input}/a.jpg`, `${deep}/b.jpg`]) await Deno.writeFile(path, fakeJpeg(10));
  const { server, port } = await spawnServer(await temporary.make());
  await using _server = server;
  await using client = spawnClient(input, ["--port", String(port), "-r"]);
  assert.equal((await client.wait()).code, 1);
  assert.match(client.stdout, /^sending 1 of 2 files \(1 cannot be sent, listed above\) to /);
  assert.match(client.stdout, /\nconfirmed 1 of 2 files /);
  assert.match(
    client.stderr,
    new RegExp(`skipped .*: Invalid path: it is 1210 bytes, more than 1024: "${long.slice(0, 20)}`),
  );
});

Deno.test("client.ts stopped by SIGINT says how many files were confirmed and exits 1", async () => {
  // A server that confirms the first frame and then answers nothing more.
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const serving = (async () => {
    using conn = await listener.accept();
    const reader = new FrameReader(conn);
    for (let frame = 0; await reader.readHead() !== null; frame++) {
      const chunks: Uint8Array[] = [];
      for await (const chunk of reader.data()) chunks.push(chunk.slice());
      const data = concat(...chunks);
      // The first frame is the hello, which this answer agrees to nothing.
      if (frame > 1) continue;
      await conn.write(
        encodeAck({ ok: true, file: "a.jpg", bytes: data.length, crc32: crc32(data) }),
      );
    }
  })().catch(() => {}); // The client goes away in the middle.
  await using temporary = new TempDirs();
  const input = await temporary.make();
  await makeImages(input, [100, 200, 300]);
  // This server answers no query (--send-all), and its answer to the hello agrees to nothing.
  await using client = spawnClient(input, [
    "--port",
    String(listener.addr.port),
    "-c",
    "1",
    "-v",
    "--send-all",
    "--base64",
  ]);
  await client.waitFor(/^sent /m);
  assert.equal((await client.stop("SIGINT")).code, 1);
  assert.match(
    client.stdout,
    /\nconfirmed 1 of 3 files \(\d+ B\) in .*; SIGINT: stopped with 2 not confirmed; run again without --send-all to send only what the server lacks\n$/,
  );
  await serving;
});

Deno.test("udp_client.ts sends each piped line to udp_server.ts, which prints it as one safe line", async () => {
  const { server, port } = await spawnUdpServer();
  await using _server = server;
  await using client = denoScript("udp_client.ts", ["--allow-net=127.0.0.1,0.0.0.0"], [
    "--port",
    String(port),
  ], {
    stdin: true,
  });
  const lines = [
    "hello",
    "你好，世界",
    "\x1b[2J\x1b[31mred",
    "  trimmed  ",
    "",
    "x".repeat(70_000),
    "after the long one",
    "exit",
    "never sent",
  ];
  await client.write(lines.join("\n") + "\n");
  await client.child.stdin.close();
  const status = await client.wait();
  assert.equal(status.code, 1, "one line was too long");
  assert.equal(client.stdout, "", "no prompt when stdin is not a terminal");
  assert.match(client.stderr, /Line too long for one datagram: 70000 bytes, the limit is 65507/);
  await server.waitFor(/after the long one\n/);
  await server.stop();
  assert.equal(
    server.stdout.replace(/^listening.*\n/, ""),
    "hello\n你好，世界\n\\x1b[2J\\x1b[31mred\ntrimmed\n\nafter the long one\n",
  );
  assert.match(server.stderr, /SIGTERM: received 6 datagrams, printed 6\n$/);
});

Deno.test("udp_client.ts sends a line that is not UTF-8 as its own bytes, trimmed of spaces", async () => {
  const receiver = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  // A datagram that never comes would leave receive() waiting for ever.
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    receiver.close();
  }, 10_000);
  try {
    const { port } = receiver.addr as Deno.NetAddr;
    await using client = denoScript("udp_client.ts", ["--allow-net=127.0.0.1,0.0.0.0"], [
      "--port",
      String(port),
    ], { stdin: true });
    await client.write(
      concat(utf8(" a"), new Uint8Array([0xff, 0xc3]), utf8("b\t\n\u3000你\u3000\n")),
    );
    await client.child.stdin.close();
    assert.equal((await client.wait()).code, 0, client.stderr);
    const received = [(await receiver.receive())[0], (await receiver.receive())[0]];
    assert.deepEqual(received, [
      concat(utf8("a"), new Uint8Array([0xff, 0xc3]), utf8("b")),
      utf8("你"),
    ]);
  } finally {
    clearTimeout(timer);
    if (!timedOut) receiver.close();
  }
});

Deno.test("udp_server.ts prints a datagram of 65,507 bytes whole and replaces invalid UTF-8", async () => {
  const { server, port } = await spawnUdpServer();
  await using _server = server;
  const { default: dgram } = await import("node:dgram");
  const sender = dgram.createSocket("udp4");
  await new Promise<void>((resolve) => sender.bind(0, "127.0.0.1", resolve));
  const send = (bytes: Uint8Array) =>
    new Promise<void>((resolve, reject) =>
      sender.send(bytes, port, "127.0.0.1", (e) => e ? reject(e) : resolve())
    );
  await send(new Uint8Array(65_507).fill(0x61));
  await send(new Uint8Array([0xff, 0x41, 0x0a, 0x7f]));
  sender.close();
  await server.waitFor(/\\x7f\n/);
  await server.stop();
  const printed = server.stdout.split("\n");
  assert.equal(printed[1], "a".repeat(65_507));
  assert.equal(printed[2], "\ufffdA\\n\\x7f");
});

Deno.test("the demo uploads the sample images, shows where they arrived, and leaves nothing behind", async () => {
  await using temporary = new TempDirs();
  const tmp = await temporary.make();
  await using demo = new Spawned(Deno.execPath(), ["task", "--quiet", "demo"], {
    cwd: ROOT,
    env: { TMPDIR: tmp },
  });
  const status = await demo.wait(60_000);
  assert.match(demo.stdout, new RegExp(`\nremoved ${tmp}/socket-demo-\\w+\n`), "in TMPDIR");
  assert.deepEqual(await listFolder(tmp), [], "the demo's folder is removed");
  assert.equal(status.code, 0, demo.stderr);
  const sent = demo.stdout.match(/confirmed (\d+) of \1 files/)?.[1];
  assert.ok(sent, demo.stdout);
  // What arrived is what was sent, and nothing of the server's own.
  assert.match(demo.stdout, new RegExp(`identical to the originals: ${sent} of ${sent}\n`));
});

Deno.test("udp_client.ts on a terminal prompts for each line and ends the last prompt's line at end of input", async () => {
  const { server, port } = await spawnUdpServer();
  await using _server = server;
  // script(1) gives the client a terminal; the end of its piped input reaches the client as Ctrl-D.
  const command =
    `'${Deno.execPath()}' run --allow-net=127.0.0.1,0.0.0.0 '${ROOT}udp_client.ts' --port ${port}`;
  await using client = new Spawned("script", ["-qec", command, "/dev/null"], { stdin: true });
  await client.write("typed\n");
  await client.child.stdin.close();
  assert.equal((await client.wait()).code, 0, client.stderr);
  assert.match(client.stdout, /data: data: \r?\n$/);
  await server.waitFor(/^typed$/m);
});

Deno.test("udp_client.ts sends each MESSAGE argument as one datagram and exits", async () => {
  const { server, port } = await spawnUdpServer();
  await using _server = server;
  await using client = denoScript("udp_client.ts", ["--allow-net=127.0.0.1,0.0.0.0"], [
    "--port",
    String(port),
    "  kept as given  ",
    "第二",
  ]);
  assert.equal((await client.wait()).code, 0, client.stderr);
  await server.waitFor(/第二\n/);
  assert.equal(server.stdout.replace(/^listening.*\n/, ""), "  kept as given  \n第二\n");
});

const udpClientMissingNet: [string, string, string[], RegExp][] = [
  [
    "with permission to bind only",
    "--allow-net=0.0.0.0",
    ["--port", "9", "message"],
    /^udp_client\.ts: Requires net access to 127\.0\.0\.1:9: add --allow-net=127\.0\.0\.1:9\n$/,
  ],
  [
    "given a host name it may not look up",
    "--allow-net=0.0.0.0,127.0.0.1",
    ["--host", "localhost", "--port", "9", "message"],
    /^udp_client\.ts: Requires net access to localhost: add --allow-net=localhost\n$/,
  ],
  [
    "given a host name, without permission for its address",
    "--allow-net=localhost,0.0.0.0",
    ["--host", "localhost", "--port", "9", "message"],
    /^udp_client\.ts: Requires net access to (127\.0\.0\.1|\[::1\]):9: add --allow-net=\1:9\n$/,
  ],
];
for (const [what, flag, args, message] of udpClientMissingNet) {
  Deno.test(`udp_client.ts ${what} names the flag to add and exits 2`, async () => {
    await using child = denoScript("udp_client.ts", [flag], args);
    assert.equal((await child.wait()).code, 2, child.stderr);
    assert.match(child.stderr, message);
  });
}

Deno.test("udp_client.ts sends to a host name by the address it resolves to", async () => {
  const { server, port } = await spawnUdpServer();
  await using _server = server;
  await using client = denoScript("udp_client.ts", ["--allow-net=localhost,127.0.0.1,0.0.0.0"], [
    "--host",
    "localhost",
    "--port",
    String(port),
    "by name",
  ]);
  assert.equal((await client.wait()).code, 0, client.stderr);
  await server.waitFor(/by name\n/);
});

const missingNet: [string, string[], RegExp][] = [
  ["udp_server.ts", ["--host", "127.0.0.1", "--port", "9"], /--allow-net=127\.0\.0\.1:9/],
  ["udp_client.ts", ["--port", "9", "message"], /--allow-net=127\.0\.0\.1:9,0\.0\.0\.0:0\n/],
  ["client.ts", ["--port", "9", "."], /--allow-net=127\.0\.0\.1:9/],
  ["server.ts", ["--host", "127.0.0.1", "--port", "9", "--out", "/tmp"], /--allow-net/],
];
for (const [script, args, flag] of missingNet) {
  Deno.test(`${script} without net permission names the flag to add and exits 2`, async () => {
    await using child = denoScript(script, ["--allow-read=/tmp,.", "--allow-write=/tmp"], args);
    assert.equal((await child.wait()).code, 2, child.stderr);
    assert.match(child.stderr, flag);
    assert.equal(child.stderr.trim().split("\n").length, 1, child.stderr);
  });
}

Deno.test("udp_server.ts --rcvbuf without --allow-ffi names the flag to add and exits 2", async () => {
  const args = ["--host", "127.0.0.1", "--port", "0", "--rcvbuf", "4M"];
  await using child = denoScript("udp_server.ts", ["--allow-net=127.0.0.1"], args);
  assert.equal((await child.wait()).code, 2, child.stderr);
  assert.equal(
    child.stderr,
    "udp_server.ts: Cannot listen on 127.0.0.1:0: Socket options go through libc: add --allow-ffi\n",
  );
});

Deno.test("udp_server.ts --rcvbuf past net.core.rmem_max, run by a user who may not pass it, says what it got (needs root, to run it as nobody)", async () => {
  assert.equal(Deno.uid(), 0, "this test runs the server as nobody and so needs root");
  // Deno reads /proc/sys only with --allow-all.
  const cat = await new Deno.Command("cat", { args: ["/proc/sys/net/core/rmem_max"] }).output();
  const max = Number(new TextDecoder().decode(cat.stdout));
  await using temporary = new TempDirs();
  const home = await temporary.make();
  await Deno.chmod(home, 0o777);
  await using server = new Spawned("setpriv", [
    ...["--reuid=65534", "--regid=65534", "--clear-groups", Deno.execPath(), "run"],
    ...["--unstable-net", "--allow-net=127.0.0.1", "--allow-ffi", `${ROOT}udp_server.ts`],
    ...["--host=127.0.0.1", "--port=0", `--rcvbuf=${2 * max}`],
  ], { cwd: home, env: { DENO_DIR: home } });
  await server.waitFor(/listening on/);
  assert.equal((await server.stop("SIGINT")).code, 0);
  assert.match(
    server.stderr,
    new RegExp(
      `^The receive buffer is ${
        2 * max
      } bytes: net.core.rmem_max capped --rcvbuf at ${max} \\(raise it, or run as root\\)\n`,
    ),
  );
});

Deno.test("client.ts stopped by SIGINT says a re-run sends only what is missing, and a plain re-run completes the set", async () => {
  await using temporary = new TempDirs();
  const input = await temporary.make();
  const out = await temporary.make();
  const images = await makeImages(input, Array(200).fill(64 * 1024));
  const { server, port } = await spawnServer(out);
  await using _server = server;
  {
    await using client = spawnClient(input, ["--port", String(port), "-c", "1", "-v"]);
    await client.waitFor(/^sent .*\n(.*\n){4}/m);
    assert.equal((await client.stop("SIGINT")).code, 1);
    assert.match(
      client.stdout,
      /; SIGINT: stopped with \d+ not confirmed; run the same command again to send only what the server lacks\n$/,
    );
  }
  await using again = spawnClient(input, ["--port", String(port), "-c", "1"]);
  assert.equal((await again.wait()).code, 0, again.stderr);
  assert.match(again.stdout, /confirmed 200 of 200 files .*\(\d+ already there, not sent\)\n$/);
  assert.deepEqual(await listFolder(out), [...images.keys()].map((name) => `${name}.jpg`).sort());
  for (const [name, bytes] of images) {
    assert.deepEqual(await Deno.readFile(`${out}/${name}.jpg`), bytes);
  }
});

Deno.test("client.ts --limit-rate on a terminal shows the capped rate on its progress line", async () => {
  await using temporary = new TempDirs();
  const input = await temporary.make();
  const out = await temporary.make();
  await makeImages(input, [300_000, 300_000]);
  const { server, port } = await spawnServer(out);
  await using _server = server;
  const command =
    `exec ${Deno.execPath()} run --allow-net=127.0.0.1 --allow-read=${input} ${ROOT}client.ts --port ${port} --limit-rate 400K ${input}`;
  await using client = new Spawned("script", ["-qefc", command, "/dev/null"], { env: {} });
  assert.equal((await client.wait()).code, 0, client.stdout);
  // The line is redrawn in place: a carriage return and an erase to the end of the line.
  // deno-lint-ignore no-control-regex
  assert.match(client.stdout, /\r\u001b\[K\d\/2 files .* \(cap 400\.0 KiB\/s\) {2}ETA /);
  assert.match(client.stdout, /confirmed 2 of 2 files/);
});

/** Runs server.ts as the design card does, on a pseudo-terminal (util-linux script), in `cwd`. */
function onTerminal(cwd: string): Spawned {
  // exec: Ctrl-C then reaches deno alone, as from an interactive shell, not a waiting sh too.
  const command =
    `exec ${Deno.execPath()} run --allow-net ${ROOT}server.ts --host 127.0.0.1 --port 0`;
  return new Spawned("script", ["-qefc", command, "/dev/null"], { cwd, stdin: true, env: {} });
}

/** Answers Deno's permission prompt, once it waits: it drops what was typed before. */
async function answerPrompt(server: Spawned, access: string, answer: string): Promise<void> {
  await server.waitFor(new RegExp(`${access} access to[^]*Allow\\?[^]*> $`));
  await new Promise((resolve) => setTimeout(resolve, 300));
  await server.write(`${answer}\r`);
}

for (const answer of ["y", "n"]) {
  Deno.test(`deno run --allow-net server.ts on a terminal asks for the folder, answered ${answer}`, async () => {
    await using temporary = new TempDirs();
    const cwd = await temporary.make();
    await using server = onTerminal(cwd);
    await answerPrompt(server, "read", answer);
    if (answer === "n") {
      assert.equal((await server.wait()).code, 2);
      assert.match(
        server.stdout,
        /server\.ts: Missing read permission for uploads: add --allow-read=uploads --allow-write=uploads/,
      );
      assert.deepEqual(await listFolder(cwd), []);
      return;
    }
    await answerPrompt(server, "write", answer);
    await server.waitFor(/listening on 127\.0\.0\.1:\d+, saving to uploads/);
    // Ctrl-C on the terminal: the server stops as on SIGINT.
    await server.write("\x03");
    assert.equal((await server.wait()).code, 0, server.stdout);
    assert.deepEqual(await listFolder(cwd), ["uploads"]);
  });
}

Deno.test("deno run --allow-net server.ts without a terminal exits 2 with the flags to add", async () => {
  await using temporary = new TempDirs();
  const cwd = await temporary.make();
  await using server = new Spawned(Deno.execPath(), [
    "run",
    "--allow-net",
    `${ROOT}server.ts`,
    "--host=127.0.0.1",
    "--port=0",
  ], { cwd });
  assert.equal((await server.wait()).code, 2);
  assert.equal(
    server.stderr,
    "server.ts: Missing read permission for uploads: add --allow-read=uploads --allow-write=uploads\n",
  );
});

Deno.test("tools/setup.sh, not run as root, names in one line what the tests lack (needs setpriv, util-linux)", async () => {
  await using temporary = new TempDirs();
  const where = async (tool: string) => {
    const found = await new Deno.Command("sh", { args: ["-c", `command -v ${tool}`] }).output();
    assert.ok(found.success, `${tool} is needed for this test`);
    return new TextDecoder().decode(found.stdout).trim();
  };
  // A PATH with bash only: every tool the tests use is missing, but /usr/bin/time, named by path.
  const bin = await temporary.make();
  await Deno.symlink(await where("bash"), `${bin}/bash`);
  await using setup = new Spawned(await where("setpriv"), [
    "--reuid=65534",
    "--regid=65534",
    "--clear-groups",
    `${bin}/bash`,
    `${ROOT}tools/setup.sh`,
  ], { env: { PATH: bin } });
  assert.equal((await setup.wait()).code, 1);
  const packages =
    "python3 openssl strace netcat-openbsd exfatprogs exfat-fuse mount bsdutils rsync iproute2 haproxy";
  assert.equal(
    setup.stderr,
    `setup: the tests need ${packages}: run as root, or apt-get install ${packages}\n`,
  );
});

Deno.test("udp_server.ts prints `printf 'hello\\n' | nc -u` and a CRLF line as plain lines (needs nc: netcat-openbsd)", async () => {
  const { server, port } = await spawnUdpServer();
  await using _server = server;
  for (const line of ["hello\n", "from windows\r\n", "two\n\n", "bell\x07\n"]) {
    const nc = new Deno.Command("nc", {
      args: ["-u", "-w0", "127.0.0.1", String(port)],
      stdin: "piped",
    }).spawn();
    const writer = nc.stdin.getWriter();
    await writer.write(utf8(line));
    await writer.close();
    assert.equal((await nc.status).code, 0);
  }
  await server.waitFor(/bell/);
  await server.stop();
  assert.equal(
    server.stdout.replace(/^listening.*\n/, ""),
    "hello\nfrom windows\ntwo\\n\nbell\\x07\n",
  );
  assert.equal(server.stderr, "SIGTERM: received 4 datagrams, printed 4\n");
});

Deno.test("udp_server.ts in a terminal without --allow-net says which flag to add, rather than asking for 127.0.0.1 (needs script: bsdutils)", async () => {
  // Its warm-up uses 127.0.0.1 only when allowed: asking would stop it at a prompt.
  const { stdout } = await new Deno.Command("script", {
    args: [
      "-qec",
      `timeout -s INT 5 "${Deno.execPath()}" run "${ROOT}udp_server.ts" --host=127.0.0.2 --port=9`,
      "/dev/null",
    ],
    stdin: "null",
    stdout: "piped",
  }).output();
  const said = new TextDecoder().decode(stdout);
  assert.doesNotMatch(said, /requests net access/);
  assert.match(
    said,
    /^udp_server\.ts: Cannot listen on 127\.0\.0\.2:9: .*add --allow-net=127\.0\.0\.2:9\r\n$/,
  );
});
