/**
 * Asking our server which files it already holds, before sending: queries
 * written ahead of their answers, by name or, where the server agrees, by path.
 *
 * @module
 */
import {
  agreedIn,
  encodeHello,
  encodeQuery,
  encodeToken,
  type Held,
  MAX_ACK_SIZE,
  parseAck,
  parseHave,
} from "../protocol/control.ts";
import { ProtocolError } from "../protocol/errors.ts";
import { concatBytes } from "../protocol/io.ts";
import { LineReader } from "../protocol/line_reader.ts";
import { PATHS } from "../protocol/path.ts";
import { crc32OfFile } from "./files.ts";
import {
  ANSWER,
  connectWithin,
  type FileResult,
  type Target,
  type UploadFile,
  writeWithin,
} from "./uploader.ts";

/**
 * Options for {@linkcode askHeld}.
 *
 * @example
 * ```ts
 * import type { AskOptions } from "../protocol.ts";
 *
 * const options: AskOptions = {
 *   target: { hostname: "127.0.0.1", port: 9999 },
 *   timeout: 50_000,
 *   onHeld: (result) => console.log(`already there: ${result.path}`),
 *   onMissing: (file) => console.log(`to send: ${file.path}`),
 * };
 * ```
 */
export interface AskOptions {
  /** The server. */
  target: Target;
  /** Milliseconds allowed to connect, for each write and each answer. */
  timeout: number;
  /**
   * The server's token, presented first.
   * @default {undefined}
   */
  token?: string;
  /**
   * Ask about each file with a `remote` path by that path, when the server
   * agrees to paths in a hello.
   * @default {false}
   */
  paths?: boolean;
  /** Called for each file the server already holds, as confirmed. */
  onHeld: (result: FileResult) => void;
  /** Called for each file the server does not hold, as soon as it says so. */
  onMissing: (file: UploadFile) => void;
}

/** Queries sent in one write. */
const QUERY_BATCH = 64;
/**
 * Batches of queries written before the first one's answers are read: enough
 * that the server always has the next batch, few enough (some 20 KB of
 * answers) that neither side's socket buffers fill up.
 */
const QUERY_BATCHES_IN_FLIGHT = 4;

/**
 * Asks the server about each file, 64 queries a write and up to four writes
 * ahead of the answers. Each file it already holds with the same size and
 * CRC-32 goes to `onHeld`; each other to `onMissing`, as its answer comes,
 * so that sending can begin before the last answer.
 *
 * @returns The files no answer settled, when the queries failed; with
 * `refused`, why the server answers none (a `--raw` server).
 *
 * @example A file the server holds is not sent again
 * ```ts
 * import assert from "node:assert/strict";
 * import { askHeld, connectWithin, type UploadFile, Uploader } from "../protocol.ts";
 * import { startServer } from "../server.ts";
 *
 * const out = await Deno.makeTempDir();
 * const server = await startServer({ host: "127.0.0.1", port: 0, out });
 * const target = { hostname: "127.0.0.1", port: server.addr.port };
 * const input = await Deno.makeTempDir();
 * await Deno.writeFile(`${input}/cat.jpg`, new Uint8Array([0xff, 0xd8, 0xff, 0xe0]));
 * const file = { path: `${input}/cat.jpg`, name: "cat" };
 * const uploader = new Uploader(await connectWithin(target, 1000), {
 *   timeout: 1000,
 *   window: 4,
 *   onResult() {},
 * });
 * await uploader.send(file);
 * await uploader.close();
 * const missing: UploadFile[] = [];
 * const { unsettled } = await askHeld([file], {
 *   target,
 *   timeout: 1000,
 *   onHeld() {},
 *   onMissing: (file) => missing.push(file),
 * });
 * assert.deepEqual([missing, unsettled], [[], []]);
 * await server.shutdown();
 * for (const folder of [out, input]) await Deno.remove(folder, { recursive: true });
 * ```
 */
export async function askHeld(
  candidates: UploadFile[],
  options: AskOptions,
): Promise<{ unsettled: UploadFile[]; refused?: string }> {
  const { target, timeout } = options;
  /** Candidates settled so far: reported as held, or as missing. */
  let settled = 0;
  try {
    using conn = await connectWithin(target, timeout);
    const lines = new LineReader(conn, MAX_ACK_SIZE);
    if (!await presentToken(conn, lines, options)) return { unsettled: candidates };
    // One connection asks by path or by name: by path when the files have one.
    const paths = options.paths === true && candidates.some((file) => file.remote !== undefined) &&
      await agreePaths(conn, lines, timeout);
    const asked = (entry: UploadFile) => paths ? entry.remote ?? entry.name : entry.name;
    // Writing ahead keeps the server busy: waiting for each batch's answers
    // left it a round trip idle per batch (bench/RESULTS.md).
    const inFlight: { entry: UploadFile; size: number }[][] = [];
    let queued = 0;
    while (queued < candidates.length || inFlight.length > 0) {
      while (queued < candidates.length && inFlight.length < QUERY_BATCHES_IN_FLIGHT) {
        const batch = sized(candidates.slice(queued, queued + QUERY_BATCH));
        queued += batch.length;
        const frames = batch.filter(({ size }) => size >= 0)
          .map(({ entry, size }) => encodeQuery(asked(entry), size, { paths }));
        await writeWithin(conn, concatBytes(frames), timeout);
        inFlight.push(batch);
      }
      for (const { entry, size } of inFlight.shift()!) {
        const held = size >= 0 ? await readHave(lines, timeout) : undefined;
        if (held?.bytes === size && held.crc32 === crc32OfFile(entry.path)) {
          const savedAs = held.file;
          options.onHeld({ path: entry.path, ok: true, bytes: size, savedAs, alreadyThere: true });
        } else {
          options.onMissing(entry);
        }
        settled++;
      }
    }
    return { unsettled: [] };
  } catch (error) {
    const unsettled = candidates.slice(settled);
    const refused = error instanceof ProtocolError && error.code === "refused";
    return refused ? { unsettled, refused: error.message } : { unsettled };
  }
}

/** Presents the token, if there is one; false when the server did not take it. */
async function presentToken(
  conn: Deno.Conn,
  lines: LineReader,
  options: AskOptions,
): Promise<boolean> {
  if (options.token === undefined) return true;
  await writeWithin(conn, encodeToken(options.token), options.timeout);
  const line = await lines.readLine(options.timeout, ANSWER);
  return line !== null && parseAck(line).ok;
}

/** Offers paths in a hello; true when the server agrees, and queries may then name paths. */
async function agreePaths(conn: Deno.Conn, lines: LineReader, timeout: number): Promise<boolean> {
  await writeWithin(conn, encodeHello([PATHS]), timeout);
  const line = await lines.readLine(timeout, ANSWER);
  return line !== null && agreedIn(parseAck(line)).includes(PATHS);
}

/** Each file with its size; -1 for what is no regular file, which is not asked about. */
function sized(files: UploadFile[]): { entry: UploadFile; size: number }[] {
  return files.map((entry) => {
    const info = Deno.statSync(entry.path);
    return { entry, size: info.isFile ? info.size : -1 };
  });
}

/** Reads one answer to a query. */
async function readHave(lines: LineReader, timeout: number): Promise<Held | undefined> {
  const line = await lines.readLine(timeout, ANSWER);
  if (line === null) throw new Error("the server closed the connection");
  return parseHave(line);
}
