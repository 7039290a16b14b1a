/** The receiver's folder and quarantine (lib/folder.ts). */
import assert from "node:assert/strict";
import { Folder, Quarantine } from "../protocol.ts";
import { listFolder, serverFiles, TempDirs } from "./helpers.ts";

/** Writes `bytes` to a fresh temporary file of the folder and commits it. */
async function save(folder: Folder, bytes: Uint8Array, name?: string) {
  const temp = folder.temporaryPath();
  try {
    folder.createWith(temp, bytes);
    return await folder.commit(temp, name);
  } finally {
    await Deno.remove(temp).catch(() => {});
  }
}

Deno.test("Folder commits a name once, answers the same bytes as a duplicate and refuses others", async () => {
  await using temporary = new TempDirs();
  const folder = await Folder.open(await temporary.make());
  try {
    assert.deepEqual(await save(folder, new Uint8Array([1]), "cat.jpg"), {
      file: "cat.jpg",
      duplicate: false,
    });
    assert.deepEqual(await save(folder, new Uint8Array([1]), "cat.jpg"), {
      file: "cat.jpg",
      duplicate: true,
    });
    await assert.rejects(save(folder, new Uint8Array([2]), "cat.jpg"), Deno.errors.AlreadyExists);
    assert.deepEqual(await Deno.readFile(`${folder.path}/cat.jpg`), new Uint8Array([1]));
    assert.deepEqual(await listFolder(folder.path), ["cat.jpg"]);
  } finally {
    folder.close();
  }
});

Deno.test("Folder in raw mode numbers bodies after the numbered files already there", async () => {
  await using temporary = new TempDirs();
  const out = await temporary.make();
  await Deno.writeFile(`${out}/00041`, new Uint8Array());
  const folder = await Folder.open(out, { raw: true });
  try {
    assert.equal((await save(folder, new Uint8Array([1]))).file, "00042");
    assert.equal((await save(folder, new Uint8Array([2]))).file, "00043");
  } finally {
    folder.close();
  }
});

Deno.test("Folder removes an unmarked temporary file that a run of an earlier version left", async () => {
  await using temporary = new TempDirs();
  const out = await temporary.make();
  await Deno.writeFile(`${out}/.upload-left.part`, new Uint8Array(10));
  const folder = await Folder.open(out);
  try {
    assert.equal(folder.removed, 1);
    assert.deepEqual(await listFolder(out), []);
  } finally {
    folder.close();
  }
  assert.deepEqual(await serverFiles(out), []);
});

Deno.test("two Folders share a folder, and neither takes the other's temporary file for stale", async () => {
  await using temporary = new TempDirs();
  const out = await temporary.make();
  const first = await Folder.open(out);
  const temp = first.temporaryPath();
  first.createWith(temp, new Uint8Array([1]));
  const second = await Folder.open(out);
  try {
    assert.equal(second.removed, 0);
    assert.deepEqual(await Deno.readFile(temp), new Uint8Array([1]));
  } finally {
    second.close();
    first.close();
  }
});

Deno.test("Folder removes the temporary file and the lock of a server killed mid-frame", async () => {
  await using temporary = new TempDirs();
  const out = await temporary.make();
  const running = await Folder.open(out);
  // Another process opens the folder, starts a file and dies without a word.
  const script = `
    import { Folder } from "${new URL("../protocol.ts", import.meta.url)}";
    const folder = await Folder.open(${JSON.stringify(out)});
    folder.createWith(folder.temporaryPath(), new Uint8Array([1, 2, 3]));
    Deno.exit(0);
  `;
  const killed = await new Deno.Command(Deno.execPath(), { args: ["eval", script] }).output();
  assert.ok(killed.success, new TextDecoder().decode(killed.stderr));
  assert.equal((await serverFiles(out)).length, 3);
  const mine = running.temporaryPath();
  running.createWith(mine, new Uint8Array([4]));
  const restarted = await Folder.open(out);
  try {
    assert.equal(restarted.removed, 1);
    // Left: the running server's lock and its file in progress, and the restarted one's lock.
    const left = await serverFiles(out);
    assert.equal(left.length, 3);
    assert.ok(left.includes(mine.slice(out.length + 1)));
  } finally {
    restarted.close();
    running.close();
  }
});

Deno.test("a --raw Folder holds the folder alone, and a decoding one shares it only with its kind", async () => {
  await using temporary = new TempDirs();
  const out = await temporary.make();
  const decoding = await Folder.open(out);
  await assert.rejects(
    Folder.open(out, { raw: true }),
    Deno.errors.Busy,
    "Folder in use: another server",
  );
  decoding.close();
  const raw = await Folder.open(out, { raw: true });
  await assert.rejects(
    Folder.open(out),
    Deno.errors.Busy,
    "Folder in use: a server that holds it alone",
  );
  raw.close();
});

Deno.test("Folder answers from the disk once another server shares the folder", async () => {
  await using temporary = new TempDirs();
  const out = await temporary.make();
  const first = await Folder.open(out);
  const second = await Folder.open(out);
  try {
    const bytes = new Uint8Array([0xff, 0xd8, 0xff]);
    await save(second, bytes, "cat.jpg");
    second.remember("cat");
    // The first never heard of cat.jpg; its list of names no longer speaks for the folder.
    assert.equal(first.heldAs({ name: "cat", bytes: 3 })?.file, "cat.jpg");
  } finally {
    second.close();
    first.close();
  }
});

Deno.test("Folder answers a query only for a file of that name and size", async () => {
  await using temporary = new TempDirs();
  const folder = await Folder.open(await temporary.make());
  try {
    await save(folder, new Uint8Array([0xff, 0xd8, 0xff]), "cat.jpg");
    folder.remember("cat");
    assert.equal(folder.heldAs({ name: "cat", bytes: 3 })?.file, "cat.jpg");
    assert.equal(folder.heldAs({ name: "cat", bytes: 4 }), undefined);
    assert.equal(folder.heldAs({ name: "dog", bytes: 3 }), undefined);
  } finally {
    folder.close();
  }
});

Deno.test("Quarantine refuses a frame past its quota and counts what it already holds", async () => {
  await using temporary = new TempDirs();
  const out = await temporary.make();
  await Deno.mkdir(`${out}/.quarantine`);
  await Deno.writeFile(`${out}/.quarantine/old.frame`, new Uint8Array(90));
  const folder = await Folder.open(out);
  try {
    const quarantine = await Quarantine.open(folder, 100);
    const head = { bodyLength: 36, nameField: new Uint8Array(32), dataLength: 4 };
    const reader = { raw: async function* () {} };
    // 16 + 32 + 4 bytes do not fit in the 10 left.
    const kept = await quarantine.keep(reader as never, head as never, {
      decodedPath: "/no/such/file",
    });
    assert.equal(kept, undefined);
  } finally {
    folder.close();
  }
});
