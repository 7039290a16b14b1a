/** The receiver's folder and quarantine (lib/folder.ts). */
import assert from "node:assert/strict";
import { Folder, Quarantine } from "../protocol.ts";
import { listFolder, TempDirs } from "./helpers.ts";

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

Deno.test("Folder removes what a killed run left, and keeps a second opener out", async () => {
  await using temporary = new TempDirs();
  const out = await temporary.make();
  await Deno.writeFile(`${out}/.upload-left.part`, new Uint8Array(10));
  const folder = await Folder.open(out);
  try {
    assert.equal(folder.removed, 1);
    assert.deepEqual(await listFolder(out), []);
    await assert.rejects(Folder.open(out), Deno.errors.Busy, "Folder in use");
  } finally {
    folder.close();
  }
  (await Folder.open(out)).close();
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
