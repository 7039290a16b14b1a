/**
 * The receiver's output folder: temporary files, commits under final names
 * that never replace a file, the names held, and the quarantine of frames
 * no name could be given.
 *
 * @module
 */
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { crc32OfFile, joinPath, removeQuietly, writeAllSync } from "./files.ts";
import { EXTENSIONS } from "./images.ts";
import { quoteName } from "./format.ts";
import { osReason, ProtocolError } from "../protocol/errors.ts";
import type { Held } from "../protocol/control.ts";
import type { FrameHead, FrameReader } from "../protocol/frame_reader.ts";
import { HEADER_SIZE } from "../protocol/limits.ts";

const encoder = new TextEncoder();

const TEMP_PREFIX = ".upload-";
const TEMP_SUFFIX = ".part";
const LOCK_SUFFIX = ".lock";
/** A server's lock file (`.upload-ID.lock`) or temporary file (`.upload-ID-UUID.part`). */
const OWNED = /^\.upload-([0-9a-f]{16})(?:\.lock|-[0-9a-f-]{36}\.part)$/;

/** Names a server keeps in memory at most; past that it looks each query up on disk. */
const MAX_INDEXED_NAMES = 100_000;

/** A fresh temporary file name in a folder, marked as the server `owner`'s. */
function temporaryPath(folder: string, owner: string): string {
  return joinPath(folder, `${TEMP_PREFIX}${owner}-${crypto.randomUUID()}${TEMP_SUFFIX}`);
}

/**
 * Adds a name to those kept, or gives up the list once it passes
 * {@linkcode MAX_INDEXED_NAMES}: a list missing names would answer NONE for them.
 */
function keepName(names: Set<string> | undefined, name: string): Set<string> | undefined {
  names?.add(name);
  return names !== undefined && names.size > MAX_INDEXED_NAMES ? undefined : names;
}

/**
 * The errors of a hard link on a file system that makes none: FAT or exFAT
 * (EPERM), some network shares (EOPNOTSUPP), some FUSE mounts (ENOSYS).
 */
const NO_HARD_LINKS = ["EPERM", "ENOTSUP", "EOPNOTSUPP", "ENOSYS"];

/**
 * Options for {@linkcode Folder.open}.
 *
 * @example
 * ```ts
 * import type { FolderOptions } from "../protocol.ts";
 *
 * const options: FolderOptions = { raw: true, fsync: true };
 * ```
 */
export interface FolderOptions {
  /**
   * Commit bodies under numbers `00000`, `00001`, … as the original server
   * does, rather than under names.
   * @default {false}
   */
  raw?: boolean;
  /**
   * Sync the folder after each commit, so that a new name survives a power cut.
   * @default {false}
   */
  fsync?: boolean;
}

/** What {@linkcode Folder.open} finds in the folder. */
interface Scan {
  removed: number;
  names?: Set<string>;
  nextRawIndex: number;
}

/**
 * A server's output folder, which several servers may share. A file is
 * written to a temporary name and linked to its final name only when
 * complete, so a final name never shows a partial file and never replaces
 * another file, whichever server saved it. Each server holds a lock file of
 * its own as long as it runs, and its temporary files carry its mark: a
 * server that starts removes only those of servers whose lock is free,
 * because they were killed.
 *
 * @example Commit a file, then the same bytes again
 * ```ts
 * import assert from "node:assert/strict";
 * import { Folder } from "../protocol.ts";
 *
 * const out = await Deno.makeTempDir();
 * const folder = await Folder.open(out);
 * for (const expected of [false, true]) {
 *   const temp = folder.temporaryPath();
 *   folder.createWith(temp, new Uint8Array([1, 2, 3]));
 *   const { file, duplicate } = await folder.commit(temp, "cat.jpg");
 *   Deno.removeSync(temp);
 *   assert.deepEqual([file, duplicate], ["cat.jpg", expected]);
 * }
 * folder.close();
 * await Deno.remove(out, { recursive: true });
 * ```
 */
export class Folder {
  /** The folder's absolute path. */
  readonly path: string;
  /** The same, with the links above it resolved, as a commit's check finds it. */
  readonly #realPath: string;
  /** Temporary files an earlier run left when it was killed, removed at open. */
  readonly removed: number;
  /** Whether its file system makes hard links; FAT and exFAT make none. */
  readonly hardLinks: boolean;
  readonly #raw: boolean;
  readonly #fsync: boolean;
  /** The folder itself: shared by servers that decode, held alone by a `--raw` one. */
  readonly #lock: Deno.FsFile;
  /** This server's mark on its temporary files, and the lock file that says it runs. */
  readonly #owner: { id: string; lock: Deno.FsFile };
  /** Whether another server has shared the folder: names may then be saved behind our back. */
  #shared: boolean;
  /**
   * The names in the folder at start and those saved since, so that a query
   * for a missing file costs no look-up on disk; `undefined` once there are
   * too many to keep, and in raw mode. A file another program puts there
   * meanwhile is missed, and so sent again: the upload then finds it, and
   * answers that it already had it.
   */
  #names: Set<string> | undefined;
  #rawIndex: number;

  private constructor(path: string, locks: Locks, scan: Scan, options: FolderOptions) {
    this.path = path;
    this.#realPath = Deno.realPathSync(path);
    this.#lock = locks.folder;
    this.#owner = locks.owner;
    this.removed = scan.removed;
    this.#names = scan.names;
    this.#rawIndex = scan.nextRawIndex;
    this.#raw = options.raw ?? false;
    this.#fsync = options.fsync ?? false;
    this.#shared = false;
    this.hardLinks = locks.hardLinks;
  }

  /**
   * Opens a folder, creating it when missing: takes its lock, removes what
   * an earlier run left, and notes the names it holds.
   *
   * @throws {Deno.errors.Busy} When another server holds the folder.
   * @throws {Deno.errors.NotADirectory} When a file is in the way.
   */
  static async open(out: string, options: FolderOptions = {}): Promise<Folder> {
    // An absolute path spares Deno's permission check a getcwd on every file call.
    const path = resolve(out);
    await Deno.mkdir(path, { recursive: true }).catch((error) => {
      // mkdir says "File exists" when a file is in the way, which reads as if all were well.
      if (error instanceof Deno.errors.AlreadyExists) {
        throw new Deno.errors.NotADirectory(`Not a folder: ${path}`, { cause: error });
      }
      throw error;
    });
    const raw = options.raw ?? false;
    const folder = await lockFolder(path, raw);
    let owner: { id: string; lock: Deno.FsFile } | undefined;
    try {
      owner = takeOwnerLock(path);
      const hardLinks = makesHardLinks(path, owner.id);
      // Without hard links a commit looks, then renames: only a server alone can do that safely.
      if (!hardLinks && !raw && !folder.tryLockSync(true)) {
        throw new Deno.errors.Busy(
          `Folder in use: another server is saving to ${path}, and its file system makes no hard links, which sharing needs`,
        );
      }
      const locks = { folder, owner, hardLinks };
      return new Folder(path, locks, await scan(path, raw, owner.id), options);
    } catch (error) {
      if (owner) releaseOwner(path, owner);
      folder.close();
      throw error;
    }
  }

  /** A fresh temporary file name in the folder, marked as this server's. */
  temporaryPath(): string {
    return temporaryPath(this.path, this.#owner.id);
  }

  /**
   * Creates a temporary file open for writing. Running out of descriptors
   * passes as connections close, so it says busy, which a client takes as
   * worth another try.
   */
  create(path: string): Deno.FsFile {
    return tooManyFilesIsBusy(() => Deno.openSync(path, { write: true, createNew: true }));
  }

  /** Creates a temporary file holding `data`, in one call. */
  createWith(path: string, data: Uint8Array): void {
    tooManyFilesIsBusy(() => Deno.writeFileSync(path, data, { createNew: true }));
  }

  /**
   * Links a finished temporary file to its final name without replacing
   * anything (renames it, where there are no hard links); in raw mode, given
   * no name, to the next free number.
   *
   * @returns The name committed, and whether the same bytes were already there.
   * @throws {Deno.errors.AlreadyExists} When a different file holds the name.
   */
  async commit(
    tempPath: string,
    finalName: string | undefined,
  ): Promise<{ file: string; duplicate: boolean }> {
    // A path's folders are made, or found to be folders and not links, first.
    const slash = finalName?.lastIndexOf("/") ?? -1;
    const folder = slash === -1 ? this.path : this.#subFolder(finalName!.slice(0, slash), true)!;
    for (;;) {
      const file = finalName ?? String(this.#rawIndex++).padStart(5, "0");
      const path = joinPath(folder, file.slice(slash + 1));
      try {
        if (this.hardLinks) Deno.linkSync(tempPath, path);
        else renameToFreeName(tempPath, path);
        if (folder !== this.path) this.#confirmInside(folder, path);
        if (this.#fsync) await syncFolder(folder);
        return { file, duplicate: false };
      } catch (error) {
        if (!(error instanceof Deno.errors.AlreadyExists)) throw error;
        if (finalName === undefined) continue;
        // Compare only with a regular file: never read through a planted link.
        if (Deno.lstatSync(path).isFile && sameContent(tempPath, path)) {
          return { file, duplicate: true };
        }
        throw new Deno.errors.AlreadyExists(
          `Cannot save ${file}: a different file of that name exists`,
        );
      }
    }
  }

  /**
   * The absolute path of a folder inside this one, walked part by part with
   * `lstat`: a link at any part is refused, never followed, and with
   * `create` each missing part is made with `mkdir`, which never replaces
   * what another made meanwhile.
   *
   * @returns The folder, or undefined when a part is missing and not to be made.
   * @throws {ProtocolError} `name`, when a part is a link or not a folder.
   */
  #subFolder(relative: string, create: boolean): string | undefined {
    let folder = this.path;
    for (const part of relative.split("/")) {
      folder = joinPath(folder, part);
      let info = lstatIfAny(folder);
      if (info === undefined) {
        if (!create) return undefined;
        try {
          Deno.mkdirSync(folder);
          // Made through a link swapped in above it since its parent was walked: undone.
          if (!this.#stillInside(folder)) {
            removeQuietly(folder);
            throw this.#swapped(folder);
          }
        } catch (error) {
          // Made by another meanwhile: looked at below, as any part found.
          if (!(error instanceof Deno.errors.AlreadyExists)) throw error;
        }
        info = Deno.lstatSync(folder);
      }
      if (!info.isDirectory) {
        const what = info.isSymlink ? "a link, which is not followed" : "not a folder";
        throw new ProtocolError("name", `Cannot save under ${this.#quoted(folder)}: it is ${what}`);
      }
    }
    return folder;
  }

  /**
   * Checks, after a commit into a sub-folder, that the folder is still the
   * one walked: a link swapped in for one of its parts after the walk would
   * have taken the file elsewhere. Such a file is removed again.
   */
  #confirmInside(folder: string, path: string): void {
    if (this.#stillInside(folder)) return;
    removeQuietly(path);
    throw this.#swapped(folder);
  }

  /** Whether a folder inside this one is where its path says, with no link above it. */
  #stillInside(folder: string): boolean {
    return Deno.realPathSync(folder) === this.#realPath + folder.slice(this.path.length);
  }

  #swapped(folder: string): ProtocolError {
    return new ProtocolError(
      "name",
      `Cannot save under ${this.#quoted(folder)}: a link replaced one of its folders`,
    );
  }

  /** A folder inside this one, as a message names it: its path from here, quoted. */
  #quoted(folder: string): string {
    return quoteName(encoder.encode(folder.slice(this.path.length + 1)));
  }

  /** Notes a name saved, or gives up the list once it passes {@linkcode MAX_INDEXED_NAMES}. */
  remember(name: string): void {
    this.#names = keepName(this.#names, name);
  }

  /** The file saved under a queried name with the queried size, if any. */
  heldAs(query: { name: string; bytes: number }): Held | undefined {
    this.#noticeOthers();
    // A name never saved here is missing under every extension: ~5 µs of probes each.
    if (this.#names !== undefined && !this.#names.has(query.name)) return undefined;
    for (const extension of EXTENSIONS) {
      const file = `${query.name}.${extension}`;
      const path = joinPath(this.path, file);
      // Most names are missing under most extensions: existsSync() costs a
      // third of an lstat that throws.
      if (!existsSync(path)) continue;
      let info: Deno.FileInfo;
      try {
        info = Deno.lstatSync(path);
      } catch {
        continue;
      }
      if (info.isFile && info.size === query.bytes) {
        return { file, bytes: info.size, crc32: crc32OfFile(path) };
      }
    }
    return undefined;
  }

  /**
   * The file saved at a queried path with the queried size, if any, found
   * without following a link at any part of the path.
   */
  heldAt(query: { name: string; bytes: number }): Held | undefined {
    const slash = query.name.lastIndexOf("/");
    let folder: string | undefined;
    try {
      folder = slash === -1 ? this.path : this.#subFolder(query.name.slice(0, slash), false);
    } catch (error) {
      if (error instanceof ProtocolError) return undefined;
      throw error;
    }
    if (folder === undefined) return undefined;
    const path = joinPath(folder, query.name.slice(slash + 1));
    // A first upload asks about files that are all missing: existsSync() is a third of a throwing lstat.
    if (!existsSync(path)) return undefined;
    const info = lstatIfAny(path);
    if (!info?.isFile || info.size !== query.bytes) return undefined;
    return { file: query.name, bytes: info.size, crc32: crc32OfFile(path) };
  }

  /**
   * Stops trusting the names kept once another server shares the folder: it
   * saves files this one does not hear of. Whether one does is whether the
   * folder's lock can be had alone, for a moment (two calls, ~2 µs).
   */
  #noticeOthers(): void {
    // Held alone: raw, or without hard links.
    if (this.#shared || this.#raw || !this.hardLinks) return;
    // A failed upgrade drops the shared lock (flock converts by unlocking first): take it again.
    const alone = this.#lock.tryLockSync(true);
    this.#lock.lockSync(false);
    if (alone) return;
    this.#shared = true;
    this.#names = undefined;
  }

  /** Gives up the folder's lock and this server's own. */
  close(): void {
    releaseOwner(this.path, this.#owner);
    this.#lock.close();
  }
}

/** A path's `lstat`, or undefined when nothing is there. */
function lstatIfAny(path: string): Deno.FileInfo | undefined {
  try {
    return Deno.lstatSync(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
}

/** The locks a server holds on a folder it saves to. */
interface Locks {
  folder: Deno.FsFile;
  owner: { id: string; lock: Deno.FsFile };
  /** Whether the folder's file system makes hard links, found under those locks. */
  hardLinks: boolean;
}

/**
 * Locks the folder itself: shared among servers that decode, alone for a
 * `--raw` one, whose numbered names no other server can share. A moment's
 * exclusive hold (another server's look at whether it is alone) is waited out.
 */
async function lockFolder(path: string, raw: boolean): Promise<Deno.FsFile> {
  const folder = Deno.openSync(path);
  for (let attempt = 0; attempt < 50; attempt++) {
    if (folder.tryLockSync(raw)) return folder;
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
  folder.close();
  const holder = raw
    ? "another server is saving to"
    : "a server that holds it alone (--raw, or no hard links) is saving to";
  throw new Deno.errors.Busy(`Folder in use: ${holder} ${path}`);
}

/**
 * This server's mark, and its lock file, held until it closes the folder or
 * dies. The file is locked before it takes its name, so that another
 * server's start never finds it free; a start that removed it first, as an
 * unowned temporary file, makes this one try another mark.
 */
function takeOwnerLock(path: string): { id: string; lock: Deno.FsFile } {
  for (let attempt = 0;; attempt++) {
    const id = [...crypto.getRandomValues(new Uint8Array(8))]
      .map((byte) => byte.toString(16).padStart(2, "0")).join("");
    const unnamed = temporaryPath(path, id);
    Deno.writeFileSync(unnamed, new Uint8Array(), { createNew: true });
    let lock: Deno.FsFile | undefined;
    try {
      // Read-only, so that the file system can still be remounted read-only under the server.
      lock = Deno.openSync(unnamed);
      lock.lockSync(true);
      Deno.renameSync(unnamed, joinPath(path, `${TEMP_PREFIX}${id}${LOCK_SUFFIX}`));
      return { id, lock };
    } catch (error) {
      lock?.close();
      if (!(error instanceof Deno.errors.NotFound) || attempt === 4) throw error;
    }
  }
}

function releaseOwner(path: string, owner: { id: string; lock: Deno.FsFile }): void {
  removeQuietly(joinPath(path, `${TEMP_PREFIX}${owner.id}${LOCK_SUFFIX}`));
  owner.lock.close();
}

/** Whether the server that marked files `id` still runs: its lock file is held. */
function running(path: string, id: string): boolean {
  let lock: Deno.FsFile;
  try {
    lock = Deno.openSync(joinPath(path, `${TEMP_PREFIX}${id}${LOCK_SUFFIX}`));
  } catch {
    return false;
  }
  try {
    return !lock.tryLockSync(true);
  } finally {
    lock.close();
  }
}

/**
 * Lists the folder once: removes the temporary files and lock files of
 * servers killed in the middle of a frame, keeps those of servers that run,
 * and notes what a raw or a decoding server needs.
 */
async function scan(out: string, raw: boolean, self: string): Promise<Scan> {
  const found: Scan = { removed: 0, names: raw ? undefined : new Set(), nextRawIndex: 0 };
  // Only the living are remembered: a server that starts meanwhile is dead only until it runs.
  const alive = new Set<string>([self]);
  const isAlive = (id: string) => alive.has(id) || (running(out, id) && !!alive.add(id));
  for await (const { isFile, name } of Deno.readDir(out)) {
    if (isFile && name.startsWith(TEMP_PREFIX)) {
      const owner = OWNED.exec(name)?.[1];
      // Unmarked: left by a version that held the folder alone, so by none that runs.
      if (owner !== undefined && isAlive(owner)) continue;
      if (!name.endsWith(TEMP_SUFFIX) && !name.endsWith(LOCK_SUFFIX)) continue;
      await Deno.remove(joinPath(out, name)).catch(() => {});
      if (name.endsWith(TEMP_SUFFIX)) found.removed++;
    } else if (raw) {
      if (/^[0-9]{5,15}$/.test(name)) {
        found.nextRawIndex = Math.max(found.nextRawIndex, Number(name) + 1);
      }
    } else if (found.names !== undefined) {
      const dot = name.lastIndexOf(".");
      if (dot < 1 || !EXTENSIONS.includes(name.slice(dot + 1))) continue;
      found.names = keepName(found.names, name.slice(0, dot));
    }
  }
  return found;
}

/** Runs a file call, turning running out of descriptors into `Deno.errors.Busy`. */
function tooManyFilesIsBusy<T>(call: () => T): T {
  try {
    return call();
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (code !== "EMFILE" && code !== "ENFILE") throw error;
    throw new Deno.errors.Busy(`Server busy: ${osReason(error) ?? "too many open files"}`, {
      cause: error,
    });
  }
}

/**
 * Tells whether the folder's file system makes hard links, by making one
 * between two temporary files (which a restart would remove if left).
 */
function makesHardLinks(out: string, owner: string): boolean {
  const [probe, link] = [temporaryPath(out, owner), temporaryPath(out, owner)];
  try {
    Deno.writeFileSync(probe, new Uint8Array(), { createNew: true });
  } catch (error) {
    // A folder that takes no file (read-only, full) says so for each frame instead.
    if (error instanceof Deno.errors.NotCapable) throw error;
    return true;
  }
  try {
    Deno.linkSync(probe, link);
    Deno.removeSync(link);
    return true;
  } catch (error) {
    if (NO_HARD_LINKS.includes((error as { code?: string }).code ?? "")) return false;
    throw error;
  } finally {
    Deno.removeSync(probe);
  }
}

/**
 * Renames a file to a name that must be free, where no hard link can keep
 * the rename from replacing a file. Only another program could take the name
 * between the look and the rename: such a folder is held by one server
 * alone, and its own commits never interleave, as neither call waits.
 */
function renameToFreeName(from: string, to: string): void {
  try {
    Deno.lstatSync(to);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
    Deno.renameSync(from, to);
    return;
  }
  throw new Deno.errors.AlreadyExists(`File exists: ${to}`);
}

/** Makes a folder's entries durable, as a new link is only once its folder is synced. */
async function syncFolder(folder: string): Promise<void> {
  using handle = await Deno.open(folder);
  await handle.sync();
}

/** Chunks of the two files {@linkcode sameContent} compares, read synchronously and so never shared. */
const chunkA = new Uint8Array(262_144);
const chunkB = new Uint8Array(262_144);
const wordsA = new Uint32Array(chunkA.buffer);
const wordsB = new Uint32Array(chunkB.buffer);

/**
 * Compares two files byte for byte, reading both in bounded chunks. Reads are
 * synchronous, into buffers kept for the purpose: re-sending a set the server
 * holds compares every file, and a fresh buffer and an asynchronous read each
 * cost more than the comparison.
 */
function sameContent(pathA: string, pathB: string): boolean {
  using fileA = Deno.openSync(pathA);
  using fileB = Deno.openSync(pathB);
  if (fileA.statSync().size !== fileB.statSync().size) return false;
  for (;;) {
    const n = fileA.readSync(chunkA);
    if (n === null) return true;
    for (let filled = 0; filled < n;) {
      const m = fileB.readSync(chunkB.subarray(filled, n));
      if (m === null) return false;
      filled += m;
    }
    const words = n >>> 2;
    for (let i = 0; i < words; i++) if (wordsA[i] !== wordsB[i]) return false;
    for (let i = words << 2; i < n; i++) if (chunkA[i] !== chunkB[i]) return false;
  }
}

/**
 * Where {@linkcode Quarantine.keep} finds what was received of a frame.
 *
 * @example
 * ```ts
 * import type { KeepOptions } from "../protocol.ts";
 *
 * const options: KeepOptions = { decodedPath: "/srv/uploads/.upload-1.part", rawBytes: true };
 * ```
 */
export interface KeepOptions {
  /** The temporary file holding the data received before the frame was refused. */
  decodedPath: string;
  /**
   * Whether the frame carried raw bytes, agreed in a hello, rather than base64.
   * @default {false}
   */
  rawBytes?: boolean;
}

/**
 * The hidden folder inside the output folder that keeps frames no name could be given.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { QUARANTINE } from "../protocol.ts";
 *
 * assert.ok(QUARANTINE.startsWith("."));
 * ```
 */
export const QUARANTINE = ".quarantine";

/**
 * Frames that arrived whole but cannot be saved under a name (no name found,
 * a bad name, data that is not base64, a different file of that name), kept
 * byte for byte as they arrived: the original client cannot hear a refusal,
 * so a refusal alone would lose its file. Bounded by a byte quota.
 *
 * @example Keep a frame whose name cannot be saved
 * ```ts
 * import assert from "node:assert/strict";
 * import { bytesSource, Folder, FrameReader, Quarantine } from "../protocol.ts";
 *
 * const out = await Deno.makeTempDir();
 * const folder = await Folder.open(out);
 * const quarantine = await Quarantine.open(folder, 1_000_000);
 * const frame = new TextEncoder().encode("0000000000000036..\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0/w==");
 * const reader = new FrameReader(bytesSource(frame));
 * const head = (await reader.readHead())!;
 * const kept = await quarantine.keep(reader, head, { decodedPath: "/no/such/file" });
 * assert.deepEqual(await Deno.readFile(`${out}/${kept}`), frame);
 * folder.close();
 * await Deno.remove(out, { recursive: true });
 * ```
 */
export class Quarantine {
  readonly #folder: Folder;
  readonly #quota: number;
  #used: number;

  private constructor(folder: Folder, quota: number, used: number) {
    this.#folder = folder;
    this.#quota = quota;
    this.#used = used;
  }

  /** Opens the quarantine of a folder, counting what it already holds against the quota. */
  static async open(folder: Folder, quota: number): Promise<Quarantine> {
    let used = 0;
    try {
      for await (const entry of Deno.readDir(joinPath(folder.path, QUARANTINE))) {
        if (entry.isFile) {
          used += (await Deno.lstat(joinPath(folder.path, `${QUARANTINE}/${entry.name}`))).size;
        }
      }
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
    return new Quarantine(folder, quota, used);
  }

  /**
   * Keeps a frame as it arrived: its header, its name, what was received
   * before the frame was refused (decoded in `decodedPath`, if any: written
   * back as base64, or as it is for a raw-byte frame), and the rest of the
   * body, read from `reader` as it comes.
   *
   * @returns The kept file's path inside the output folder, or `undefined`
   * when the quota has no room for the frame.
   */
  async keep(
    reader: FrameReader,
    head: FrameHead,
    options: KeepOptions,
  ): Promise<string | undefined> {
    // What came on the wire, which a name counted in characters makes longer than L.
    const size = HEADER_SIZE + head.nameField.length + head.dataLength;
    if (this.#used + size > this.#quota) return undefined;
    this.#used += size;
    const tempPath = this.#folder.temporaryPath();
    try {
      {
        using file = this.#folder.create(tempPath);
        writeAllSync(file, encoder.encode(String(head.bodyLength).padStart(HEADER_SIZE, "0")));
        writeAllSync(file, head.nameField);
        copyData(options.decodedPath, file, options.rawBytes ?? false);
        for await (const chunk of reader.raw()) writeAllSync(file, chunk);
      }
      const stamp = new Date().toISOString().replaceAll(":", "-");
      const kept = `${QUARANTINE}/${stamp}-${crypto.randomUUID().slice(0, 8)}.frame`;
      await Deno.mkdir(joinPath(this.#folder.path, QUARANTINE), { recursive: true });
      Deno.renameSync(tempPath, joinPath(this.#folder.path, kept));
      return kept;
    } catch (error) {
      this.#used -= size;
      throw error;
    } finally {
      removeQuietly(tempPath);
    }
  }
}

/** Bytes re-encoded at a time: a multiple of 3, so that no chunk but the last is padded. */
const REENCODE_CHUNK = 3 * 65_536;

/**
 * Writes a file into another, as the data of a frame arrived: as base64,
 * since the server decodes only canonical base64, whose encoding gives back
 * the same characters; or, for a raw-byte frame, as it is. A missing file
 * writes nothing.
 */
function copyData(path: string, into: Deno.FsFile, rawBytes: boolean): void {
  let file: Deno.FsFile;
  try {
    file = Deno.openSync(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return;
    throw error;
  }
  using _ = file;
  const chunk = new Uint8Array(REENCODE_CHUNK);
  for (;;) {
    let filled = 0;
    for (let n; filled < chunk.length && (n = file.readSync(chunk.subarray(filled))) !== null;) {
      filled += n;
    }
    if (filled === 0) return;
    const data = chunk.subarray(0, filled);
    writeAllSync(into, rawBytes ? data : encoder.encode(data.toBase64()));
    if (filled < chunk.length) return;
  }
}
