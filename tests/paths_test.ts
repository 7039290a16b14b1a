/**
 * Folders as they are between our own peers: sub-folders, long names and
 * modification times kept, and hostile paths that never leave `--out`.
 */
import assert from "node:assert/strict";
import { crc32 } from "node:zlib";
import {
  checkPath,
  collectFiles,
  encodeHello,
  encodeName,
  encodePathHead,
  LineReader,
  MAX_ACK_SIZE,
  MAX_PATH_LINE,
  PATHS,
  RAW_BYTES,
} from "../protocol.ts";
import { uploadFiles } from "../client.ts";
import { startServer } from "../server.ts";
import { concat, fakeJpeg, listFolder, spawnClient, TempDirs, utf8 } from "./helpers.ts";

/** One connection that agreed to raw bytes and paths, sending frames and reading answers. */
class PathConnection implements Disposable {
  readonly #conn: Deno.Conn;
  readonly #lines: LineReader;

  private constructor(conn: Deno.Conn) {
    this.#conn = conn;
    this.#lines = new LineReader(conn, MAX_ACK_SIZE);
  }

  static async open(port: number): Promise<PathConnection> {
    const connection = new PathConnection(await Deno.connect({ hostname: "127.0.0.1", port }));
    assert.equal(
      await connection.send(encodeHello([RAW_BYTES, PATHS])),
      `OK 0 00000000 ?+${RAW_BYTES} ${PATHS}`,
    );
    return connection;
  }

  /** Sends bytes and reads the one answer they get. */
  async send(bytes: Uint8Array): Promise<string> {
    await this.#conn.write(bytes);
    const line = await this.#lines.readLine(5000);
    assert.ok(line !== null, "the server closed the connection");
    return new TextDecoder().decode(line);
  }

  [Symbol.dispose](): void {
    this.#conn.close();
  }
}

/** A path frame built by hand, so that the path can break any rule: raw bytes after it. */
function pathFrame(path: Uint8Array, data: Uint8Array, mtime = "1000"): Uint8Array {
  const line = concat(utf8(`${mtime} `), path, utf8("\n"));
  const body = concat(encodeName("x"), line, data);
  body.set(utf8("?/\0"), 0);
  return concat(utf8(String(body.length).padStart(16, "0")), body);
}

/** A valid path frame for `data` at `path`. */
function validFrame(path: string, data: Uint8Array, mtime = 1000): Uint8Array {
  return concat(encodePathHead({ path, mtime }, data.length), data);
}

/** Runs `body` against a server whose `--out` is `root/out`, beside which nothing may appear. */
async function withPathServer(
  body: (port: number, out: string, root: string) => Promise<void>,
): Promise<void> {
  await using temporary = new TempDirs();
  const root = await temporary.make();
  const out = `${root}/out`;
  const server = await startServer({ host: "127.0.0.1", port: 0, out });
  try {
    await body(server.addr.port, out, root);
  } finally {
    await server.shutdown(1000);
  }
}

/** Every file and folder under `folder`, as relative paths, sorted; a running server's lock left out. */
async function tree(folder: string, under = ""): Promise<string[]> {
  const found: string[] = [];
  for (const name of await listFolder(`${folder}/${under}`)) {
    const path = `${under}${name}`;
    const info = await Deno.lstat(`${folder}/${path}`);
    found.push(info.isDirectory ? `${path}/` : path);
    if (info.isDirectory) found.push(...await tree(folder, `${path}/`));
  }
  return found.sort();
}

const bytes = (...values: number[]) => new Uint8Array(values);

/** Paths a hostile client may send, and the reason each is refused. */
const hostile: [string, Uint8Array, RegExp][] = [
  ["an absolute path", utf8("/etc/cron.d/x"), /it is absolute/],
  ["a lone slash", utf8("/"), /it is absolute/],
  ["a leading ..", utf8("../escape.jpg"), /it has a \.\. part/],
  ["a .. that climbs out of a folder", utf8("a/../../escape.jpg"), /it has a \.\. part/],
  ["a path that is only ..", utf8(".."), /it has a \.\. part/],
  ["a path that is only .", utf8("."), /it has a \. part/],
  ["a . in the middle", utf8("a/./b.jpg"), /it has a \. part/],
  ["an empty part", utf8("a//b.jpg"), /it has an empty part/],
  ["a trailing slash", utf8("a/"), /it has an empty part/],
  ["an empty path", utf8(""), /it is empty/],
  ["backslashes", utf8("..\\..\\escape.jpg"), /it contains a backslash/],
  ["a Windows drive", utf8("C:\\Windows\\x.jpg"), /it contains a backslash/],
  ["a NUL byte", utf8("a\0.jpg"), /it contains a control character/],
  ["a carriage return", utf8("a\r.jpg"), /it contains a control character/],
  ["a terminal escape", utf8("a\x1b[2J.jpg"), /it contains a control character/],
  ["a C1 control character", utf8("a\u009b.jpg"), /it contains a control character/],
  ["bytes that are not UTF-8", bytes(0x61, 0xff, 0xfe), /it is not valid UTF-8/],
  ["an overlong encoding of /", bytes(0x2e, 0x2e, 0xc0, 0xaf, 0x78), /it is not valid UTF-8/],
  ["an encoded surrogate", bytes(0x61, 0xed, 0xa0, 0x80), /it is not valid UTF-8/],
  ["the server's own temporary files", utf8(".upload-0123456789abcdef.lock"), /starts with a dot/],
  ["the quarantine", utf8(".quarantine/x.frame"), /starts with a dot/],
  ["a hidden folder", utf8("a/.git/config"), /starts with a dot/],
  ["a part of 256 bytes", utf8("x".repeat(256)), /a part is 256 bytes, more than 255/],
  ["a path of 1,025 bytes", utf8("abcd/".repeat(205)), /it is 1025 bytes, more than 1024/],
];

for (const [what, path, reason] of hostile) {
  Deno.test(`a path frame with ${what} is refused, writes nothing, and the connection serves on`, async () => {
    await withPathServer(async (port, _out, root) => {
      using connection = await PathConnection.open(port);
      const answer = await connection.send(pathFrame(path, fakeJpeg(100)));
      assert.match(answer, /^ERR Invalid path: /);
      assert.match(answer, reason);
      const ok = fakeJpeg(10);
      assert.equal(
        await connection.send(validFrame("ok.jpg", ok)),
        `OK 10 ${crc32(ok).toString(16).padStart(8, "0")} ok.jpg`,
      );
      assert.deepEqual(await tree(root), ["out/", "out/ok.jpg"]);
    });
  });
}

const badLines: [string, Uint8Array, RegExp][] = [
  [
    "an mtime that is not a number",
    pathFrame(utf8("a.jpg"), fakeJpeg(10), "soon"),
    /expected <mtime> <path>/,
  ],
  ["no mtime at all", pathFrame(utf8("a.jpg"), fakeJpeg(10), ""), /expected <mtime> <path>/],
  [
    "no newline within the longest path line",
    pathFrame(utf8("x".repeat(MAX_PATH_LINE)), fakeJpeg(10)),
    /no newline within 1048 bytes/,
  ],
];

for (const [what, frame, reason] of badLines) {
  Deno.test(`a path frame with ${what} is refused, and the connection serves on`, async () => {
    await withPathServer(async (port, out) => {
      using connection = await PathConnection.open(port);
      assert.match(await connection.send(frame), reason);
      assert.match(await connection.send(validFrame("ok.jpg", fakeJpeg(10))), /^OK /);
      assert.deepEqual(await listFolder(out), ["ok.jpg"]);
    });
  });
}

Deno.test("a link planted inside --out at any folder of a path is neither followed nor replaced", async () => {
  await withPathServer(async (port, out, root) => {
    await Deno.mkdir(`${root}/outside/deep`, { recursive: true });
    await Deno.mkdir(`${out}/a`);
    await Deno.symlink(`${root}/outside`, `${out}/cat`);
    await Deno.symlink(`${root}/outside`, `${out}/a/b`);
    using connection = await PathConnection.open(port);
    for (const [path, under] of [["cat/x.jpg", "cat"], ["a/b/deep/x.jpg", "a/b"]]) {
      const answer = await connection.send(validFrame(path, fakeJpeg(10)));
      assert.equal(answer, `ERR Cannot save under "${under}": it is a link, which is not followed`);
    }
    assert.deepEqual(await tree(`${root}/outside`), ["deep/"]);
    assert.ok((await Deno.lstat(`${out}/cat`)).isSymlink);
    assert.ok((await Deno.lstat(`${out}/a/b`)).isSymlink);
  });
});

Deno.test("a link planted at a file's own path is not written through, nor answered as held", async () => {
  await withPathServer(async (port, out, root) => {
    const secret = utf8("outside --out");
    await Deno.writeFile(`${root}/secret.jpg`, secret);
    await Deno.mkdir(`${out}/cat`, { recursive: true });
    await Deno.symlink(`${root}/secret.jpg`, `${out}/cat/x.jpg`);
    await Deno.symlink(`${root}`, `${out}/up`);
    using connection = await PathConnection.open(port);
    const answer = await connection.send(validFrame("cat/x.jpg", fakeJpeg(10)));
    assert.equal(answer, "ERR Cannot save cat/x.jpg: a different file of that name exists");
    assert.deepEqual(await Deno.readFile(`${root}/secret.jpg`), secret);
    // A query through a link learns nothing of what lies outside.
    const { encodeQuery } = await import("../protocol.ts");
    for (const path of ["cat/x.jpg", "up/secret.jpg"]) {
      assert.equal(
        await connection.send(encodeQuery(path, secret.length, { paths: true })),
        "NONE",
      );
    }
  });
});

Deno.test("a file where a path needs a folder refuses that path only", async () => {
  await withPathServer(async (port, out) => {
    await Deno.mkdir(out, { recursive: true });
    await Deno.writeFile(`${out}/cat`, utf8("a file"));
    using connection = await PathConnection.open(port);
    assert.equal(
      await connection.send(validFrame("cat/x.jpg", fakeJpeg(10))),
      'ERR Cannot save under "cat": it is not a folder',
    );
    assert.match(await connection.send(validFrame("dog/x.jpg", fakeJpeg(10))), /^OK /);
  });
});

Deno.test("a path frame's file gets its mtime before it appears, and a different file at a path is refused", async () => {
  await withPathServer(async (port, out) => {
    using connection = await PathConnection.open(port);
    const image = fakeJpeg(1000);
    const mtime = Date.UTC(2021, 4, 1, 12, 34, 56, 789);
    assert.match(
      await connection.send(validFrame("猫/a b/long name.jpeg", image, mtime)),
      /^OK 1000 /,
    );
    const info = await Deno.stat(`${out}/猫/a b/long name.jpeg`);
    assert.equal(info.mtime?.getTime(), mtime);
    assert.deepEqual(await Deno.readFile(`${out}/猫/a b/long name.jpeg`), image);
    // The same bytes again are confirmed; other bytes at that path are refused, the first kept.
    assert.match(await connection.send(validFrame("猫/a b/long name.jpeg", image)), /^OK 1000 /);
    assert.equal(
      await connection.send(validFrame("猫/a b/long name.jpeg", fakeJpeg(1000))),
      "ERR Cannot save 猫/a b/long name.jpeg: a different file of that name exists",
    );
    assert.deepEqual(await Deno.readFile(`${out}/猫/a b/long name.jpeg`), image);
    assert.deepEqual(await listFolder(out), ["猫"], "no quarantine for a client that hears");
  });
});

/** Classes of a data set, one with a Chinese name. */
const CLASSES = [...Array.from({ length: 9 }, (_, i) => `class${i}`), "猫"];

/**
 * Makes a data set: every class the same 200 file names, some over 32 bytes,
 * each file its own mtime.
 */
async function makeDataSet(root: string): Promise<Map<string, Uint8Array>> {
  const files = new Map<string, Uint8Array>();
  let second = 0;
  for (const name of CLASSES) {
    await Deno.mkdir(`${root}/${name}`, { recursive: true });
    for (let i = 0; i < 200; i++) {
      const file = i % 50 === 0
        ? `IMG_20240501_123456_HDR_portrait_${String(i).padStart(4, "0")}.jpg`
        : `${String(i).padStart(4, "0")}.jpg`;
      const path = `${name}/${file}`;
      // 8 to 24 KB, as the small images of a data set: 32 MB in all.
      const data = fakeJpeg(8_000 + (i * 997) % 16_000);
      await Deno.writeFile(`${root}/${path}`, data);
      // Whole and fractional seconds: milliseconds are what each side reads.
      const mtime = new Date(Date.UTC(2024, 0, 1) + (second++) * 1000 + (i % 7) * 111);
      await Deno.utime(`${root}/${path}`, mtime, mtime);
      files.set(path, data);
    }
  }
  return files;
}

/** The files under `folder` with their bytes and mtimes. */
async function filesIn(folder: string): Promise<Map<string, [Uint8Array, number]>> {
  const found = new Map<string, [Uint8Array, number]>();
  for (const path of await tree(folder)) {
    if (path.endsWith("/")) continue;
    const info = await Deno.stat(`${folder}/${path}`);
    found.set(path, [await Deno.readFile(`${folder}/${path}`), info.mtime!.getTime()]);
  }
  return found;
}

Deno.test("client.ts -r uploads a data set of 10 classes × 200 images as the same tree, with the same mtimes, and a second run sends under 1%", async () => {
  await using temporary = new TempDirs();
  const train = `${await temporary.make()}/train`;
  const out = await temporary.make();
  const files = await makeDataSet(train);
  const server = await startServer({ host: "127.0.0.1", port: 0, out });
  try {
    const port = String(server.addr.port);
    await using first = spawnClient(`${train}/`, ["--port", port, "-r"]);
    assert.equal((await first.wait()).code, 0, first.stderr);
    assert.match(first.stdout, /confirmed 2000 of 2000 files/);
    const sent = server.stats.received;
    assert.deepEqual(await filesIn(out), await filesIn(train));
    assert.equal((await filesIn(out)).size, files.size);

    await using second = spawnClient(train, ["--port", port, "-r"]);
    assert.equal((await second.wait()).code, 0, second.stderr);
    assert.match(second.stdout, /2000 already there, not sent/);
    const again = server.stats.received - sent;
    assert.ok(again < sent / 100, `${again} of ${sent} bytes`);
  } finally {
    await server.shutdown(1000);
  }
});

Deno.test("--resume and the default skip ask per path: a file changed in one class is the only one sent", async () => {
  await using temporary = new TempDirs();
  const input = await temporary.make();
  const out = await temporary.make();
  for (const name of ["cat", "dog"]) {
    await Deno.mkdir(`${input}/${name}`);
    for (const file of ["1.jpg", "2.jpg"]) {
      await Deno.writeFile(`${input}/${name}/${file}`, fakeJpeg(500));
    }
  }
  const server = await startServer({ host: "127.0.0.1", port: 0, out });
  try {
    const port = server.addr.port;
    const { files } = await collectFiles([input], { recursive: true, paths: true });
    assert.deepEqual(files.map((file) => file.remote), [
      "cat/1.jpg",
      "cat/2.jpg",
      "dog/1.jpg",
      "dog/2.jpg",
    ]);
    assert.equal((await uploadFiles(files, { port })).confirmed, 4);
    // The same size, other bytes: only the CRC-32 tells them apart.
    await Deno.writeFile(`${input}/dog/1.jpg`, fakeJpeg(500));
    for (const resume of [true, "strict"] as const) {
      const results: { path: string; alreadyThere?: boolean }[] = [];
      const report = await uploadFiles(files, { port, resume, onResult: (r) => results.push(r) });
      assert.equal(report.confirmed, 3);
      assert.deepEqual(
        report.failed.map((f) => [f.path, f.message]),
        [[
          `${input}/dog/1.jpg`,
          "Refused by the server: Cannot save dog/1.jpg: a different file of that name exists",
        ]],
      );
      assert.equal(results.filter((r) => r.alreadyThere).length, 3);
    }
  } finally {
    await server.shutdown(1000);
  }
});

Deno.test("long names go whole to our server, and are skipped with the reason for the original", async () => {
  await using temporary = new TempDirs();
  const input = await temporary.make();
  const out = await temporary.make();
  const long = "Screenshot_2024-05-01-12-34-56-789_com.android.chrome.jpg";
  await Deno.writeFile(`${input}/${long}`, fakeJpeg(100));
  const names = await collectFiles([input]);
  assert.deepEqual(names.files, []);
  assert.match(names.skipped[0].message!, /^Invalid name: it is 53 bytes, more than 32/);
  const paths = await collectFiles([input], { paths: true });
  const server = await startServer({ host: "127.0.0.1", port: 0, out });
  try {
    const report = await uploadFiles(paths.files, { port: server.addr.port });
    assert.equal(report.confirmed, 1);
    assert.deepEqual(await listFolder(out), [long]);
  } finally {
    await server.shutdown(1000);
  }
});

Deno.test("checkPath() takes the paths of a real data set", () => {
  for (
    const path of [
      "train/猫/0001.jpg",
      "a b/c-d_e.JPG",
      "IMG_20240501_123456_HDR_portrait.jpg",
      "x".repeat(255),
    ]
  ) {
    assert.deepEqual(checkPath(path), utf8(path));
  }
});
