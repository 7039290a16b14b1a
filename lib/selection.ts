/**
 * Which files a client sends: the files named, the matching files in the
 * folders named, in order, each once, as the original's batching picks them.
 *
 * @module
 */
import type { FileResult, UploadFile } from "./uploader.ts";
import { encodeName } from "../protocol/name.ts";
import { checkPath } from "../protocol/path.ts";

/**
 * The defaults of {@linkcode collectFiles}, as the original script has them.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { SELECTION_DEFAULTS } from "../protocol.ts";
 *
 * assert.equal(SELECTION_DEFAULTS.batchSize * SELECTION_DEFAULTS.maxBatch, 200_000);
 * ```
 */
export const SELECTION_DEFAULTS = {
  extensions: ["jpg"],
  start: 0,
  batchSize: 20,
  maxBatch: 10_000,
} as const;

/**
 * Options for {@linkcode collectFiles}.
 *
 * @example
 * ```ts
 * import type { CollectOptions } from "../protocol.ts";
 *
 * const options: CollectOptions = { extensions: ["jpg", "png"], recursive: true };
 * ```
 */
export interface CollectOptions {
  /**
   * Extensions to pick from folders, compared without case.
   * @default {SELECTION_DEFAULTS.extensions}
   */
  extensions?: string[];
  /**
   * Descend into sub-folders. A link to a folder is reported among the
   * skipped, not followed.
   * @default {false}
   */
  recursive?: boolean;
  /**
   * Give each file its path relative to the folder named (its file name,
   * for a file named), checked as a path, for a server that takes paths;
   * otherwise check the 32-byte name, as the original server takes it.
   * @default {false}
   */
  paths?: boolean;
  /**
   * Index of the first file to send, as the original's `start_idx`.
   * @default {SELECTION_DEFAULTS.start}
   */
  start?: number;
  /**
   * Files per batch, as the original's `batch_size`.
   * @default {SELECTION_DEFAULTS.batchSize}
   */
  batchSize?: number;
  /**
   * Batches to send at most, as the original's `max_batch`.
   * @default {SELECTION_DEFAULTS.maxBatch}
   */
  maxBatch?: number;
}

/**
 * Files picked by {@linkcode collectFiles}, and those that cannot be sent.
 *
 * @example
 * ```ts
 * import type { Selection } from "../protocol.ts";
 *
 * const none: Selection = { files: [], skipped: [], found: 0, hidden: 0, unmatched: new Map() };
 * ```
 */
export interface Selection {
  /** Files to send, in order. */
  files: UploadFile[];
  /** Selected files that cannot be sent, and links to folders not followed, with the reason. */
  skipped: FileResult[];
  /** Files found, before `start` and the batching chose among them. */
  found: number;
  /**
   * Hidden entries of the folders (names starting with a dot) left out, as a
   * shell's `*` leaves them: files with a matching extension, and with
   * `recursive` folders.
   */
  hidden: number;
  /**
   * Files in the folders left out for their extension, counted by
   * extension (lower case, with its dot; `""` for none), most first.
   */
  unmatched: Map<string, number>;
}

/**
 * Returns the name a file is sent under: its base name without the last
 * extension. (The original's `rstrip('.jpg')` also ate trailing `.`, `j`, `p`
 * and `g` characters of the name itself.)
 *
 * @param path The file's path.
 * @returns The name for the frame.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { nameFor } from "../protocol.ts";
 *
 * assert.equal(nameFor("photos/dog.jpg"), "dog");
 * assert.equal(nameFor("photos/archive.tar.gz"), "archive.tar");
 * ```
 */
export function nameFor(path: string): string {
  const base = nameOf(path);
  const dot = base.lastIndexOf(".");
  return dot > 0 ? base.slice(0, dot) : base;
}

/** A path's last part: the file's name. */
function nameOf(path: string): string {
  return path.slice(path.lastIndexOf("/") + 1);
}

/** A path found, whether it is a regular file (or a link to one), and its path from its root. */
interface Candidate {
  path: string;
  regular: boolean;
  remote: string;
}

/**
 * What a folder holds: the files in it, and with `recursive` the links to
 * folders it does not follow; apart, the hidden entries it leaves out.
 */
interface Listing {
  files: Candidate[];
  linkedFolders: string[];
  hiddenFiles: string[];
  hiddenFolders: string[];
}

async function listFolder(
  folder: string,
  recursive: boolean,
  into: Listing,
  under = "",
): Promise<void> {
  for await (const entry of Deno.readDir(folder)) {
    const path = folder.endsWith("/") ? folder + entry.name : `${folder}/${entry.name}`;
    const remote = under + entry.name;
    // A camera card's ._ files, a phone's .thumbnails, a drive's .Trashes:
    // not photos to send, and a name starting with a dot cannot be sent anyway.
    if (entry.name.startsWith(".")) {
      if (!entry.isDirectory) into.hiddenFiles.push(path);
      else if (recursive) into.hiddenFolders.push(path);
      continue;
    }
    if (entry.isDirectory) {
      if (recursive) await listFolder(path, recursive, into, `${remote}/`);
    } else if (entry.isSymlink) {
      // Only links need a stat; the listing already tells files from the rest.
      const target = await Deno.stat(path).catch(() => undefined);
      if (recursive && target?.isDirectory) into.linkedFolders.push(path);
      else into.files.push({ path, regular: target?.isFile ?? false, remote });
    } else {
      into.files.push({ path, regular: entry.isFile, remote });
    }
  }
}

/**
 * Folds "." and doubled slashes, so that two spellings of one path compare
 * equal; not "..", since "link/.." may lead elsewhere.
 */
function samePathKey(path: string): string {
  return path.replace(/\/+/g, "/").replace(/(^|\/)(?:\.\/)+/g, "$1");
}

/**
 * Picks the files to send: each file named, and the files with a matching
 * extension in each folder named, sorted by path, each path once; then the
 * original's batching selects `batchSize * maxBatch` of them from `start`.
 * Hidden files and folders inside the folders are left out, and counted.
 *
 * @param paths Folders and files.
 * @param options Which files to take.
 * @returns The files to send and the selected files that cannot be sent.
 * @throws {TypeError} If a path does not exist: the command line named nothing.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { collectFiles } from "../protocol.ts";
 *
 * const folder = await Deno.makeTempDir();
 * for (const name of ["b.jpg", "a.jpg", "notes.txt", ".hidden.jpg"]) {
 *   await Deno.writeFile(`${folder}/${name}`, new Uint8Array([0xff]));
 * }
 * const selection = await collectFiles([folder]);
 * assert.deepEqual(selection.files.map((f) => f.name), ["a", "b"]);
 * assert.equal(selection.hidden, 1);
 * await Deno.remove(folder, { recursive: true });
 * ```
 */
export async function collectFiles(
  paths: string[],
  options: CollectOptions = {},
): Promise<Selection> {
  const extensions = new Set(
    (options.extensions ?? SELECTION_DEFAULTS.extensions).map((e) => e.toLowerCase()),
  );
  const matches = (path: string) =>
    extensions.has(path.slice(path.lastIndexOf(".") + 1).toLowerCase());
  const candidates: Candidate[] = [];
  const unmatched: string[] = [];
  const [linkedFolders, hiddenFiles, hiddenFolders]: string[][] = [[], [], []];
  for (const path of paths) {
    const info = await Deno.stat(path).catch((error) => {
      // The command line named nothing: its fault, not the run's.
      if (!(error instanceof Deno.errors.NotFound)) throw error;
      throw new TypeError(`No such file or folder: ${path}`, { cause: error });
    });
    if (!info.isDirectory) {
      candidates.push({ path, regular: info.isFile, remote: nameOf(path) });
      continue;
    }
    const found: Listing = { files: [], linkedFolders, hiddenFiles, hiddenFolders };
    await listFolder(path, options.recursive ?? false, found);
    candidates.push(
      ...found.files.filter(({ path }) => matches(path))
        .sort((a, b) => a.path < b.path ? -1 : a.path > b.path ? 1 : 0),
    );
    unmatched.push(...found.files.filter(({ path }) => !matches(path)).map(({ path }) => path));
  }
  // A file named twice, or named and found in its folder, is sent once.
  const seen = new Set<string>();
  const unique = candidates.filter(({ path }) => {
    const key = samePathKey(path);
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
  const start = options.start ?? SELECTION_DEFAULTS.start;
  const count = (options.batchSize ?? SELECTION_DEFAULTS.batchSize) *
    (options.maxBatch ?? SELECTION_DEFAULTS.maxBatch);
  // A folder named twice hides the same entries twice.
  const hidden = new Set([...hiddenFiles.filter(matches), ...hiddenFolders].map(samePathKey));
  const selection: Selection = {
    files: [],
    skipped: [],
    found: unique.length,
    hidden: hidden.size,
    unmatched: byExtension(new Set(unmatched.map(samePathKey))),
  };
  for (const { path, regular, remote } of unique.slice(start, start + count)) {
    const name = nameFor(path);
    try {
      // Opening a FIFO would wait for a writer: such paths are never opened.
      if (!regular) throw new TypeError("Cannot send: not a regular file");
      if (options.paths) checkPath(remote);
      else encodeName(name);
      selection.files.push(options.paths ? { path, name, remote } : { path, name });
    } catch (error) {
      selection.skipped.push({ path, ok: false, bytes: 0, message: (error as Error).message });
    }
  }
  // Not followed, since a link may lead back up the tree; said, since what it holds is not sent.
  const linksOnce = new Map(linkedFolders.map((path) => [samePathKey(path), path]));
  for (const path of [...linksOnce.values()].sort()) {
    const message = "Not followed: a link to a folder; name it to send the files in it";
    selection.skipped.push({ path, ok: false, bytes: 0, message });
  }
  return selection;
}

/** Counts paths by extension, most first. */
function byExtension(paths: Set<string>): Map<string, number> {
  const counts = new Map<string, number>();
  for (const path of paths) {
    const base = path.slice(path.lastIndexOf("/") + 1);
    const dot = base.lastIndexOf(".");
    const extension = dot > 0 ? base.slice(dot).toLowerCase() : "";
    counts.set(extension, (counts.get(extension) ?? 0) + 1);
  }
  return new Map([...counts].sort((a, b) => b[1] - a[1]));
}

/**
 * Files to send, taken by several workers at once, given as they become
 * known: the answers to the queries about them arrive while the first ones
 * are already being sent.
 *
 * @example Workers wait for files until the queue is closed
 * ```ts
 * import assert from "node:assert/strict";
 * import { FileQueue } from "../protocol.ts";
 *
 * const queue = new FileQueue();
 * const taken = queue.take();
 * queue.push({ path: "a.jpg", name: "a" });
 * queue.close();
 * assert.equal((await taken)?.name, "a");
 * assert.equal(await queue.take(), undefined);
 * ```
 */
export class FileQueue {
  readonly #files: UploadFile[] = [];
  readonly #takers: ((file: UploadFile | undefined) => void)[] = [];
  #closed = false;

  /** A queue already holding `files`, closed: nothing more will come. */
  static of(files: readonly UploadFile[]): FileQueue {
    const queue = new FileQueue();
    for (const file of files) queue.push(file);
    queue.close();
    return queue;
  }

  /** Adds a file, handing it straight to a worker that waits. */
  push(file: UploadFile): void {
    const taker = this.#takers.shift();
    if (taker) taker(file);
    else this.#files.push(file);
  }

  /** Says that no more files will come: waiting workers get `undefined`. */
  close(): void {
    this.#closed = true;
    for (const taker of this.#takers.splice(0)) taker(undefined);
  }

  /** The next file, waiting for one while the queue is open; `undefined` once it is closed and empty. */
  take(): Promise<UploadFile | undefined> {
    const file = this.#files.shift();
    if (file !== undefined || this.#closed) return Promise.resolve(file);
    return new Promise((resolve) => this.#takers.push(resolve));
  }
}
