#!/usr/bin/env -S deno run --allow-net --allow-read
/**
 * TCP image uploader: sends every matching file in the given folders to
 * `server.ts` (or, with `--legacy`, to the original Python server) and
 * reports each file the server did not confirm.
 *
 * @module
 */
import { parseArgs } from "node:util";
import {
  askHeld,
  checkNetPermission,
  classifyError,
  collectFiles,
  type CollectOptions,
  connectWithin,
  counted,
  DEFAULT_CLIENT_TIMEOUT,
  DEFAULT_PEER_HOST,
  DEFAULT_PORT,
  EXTENSIONS,
  failuresByReason,
  FileQueue,
  type FileResult,
  formatAddress,
  FrameWriter,
  isTransient,
  nameFor,
  parseCount,
  parseHost,
  parsePort,
  parseRate,
  parseSeconds,
  Progress,
  RateLimiter,
  readTokenFile,
  ScriptOutput,
  type Selection,
  SELECTION_DEFAULTS,
  type Target,
  Uploader,
  type UploadFile,
} from "./protocol.ts";

export { collectFiles, failuresByReason, nameFor };
export type { CollectOptions, FileResult, Selection, UploadFile };

/**
 * The client's defaults, each written once: the options, the flags and the
 * usage text all read them.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { CLIENT_DEFAULTS } from "./client.ts";
 *
 * assert.equal(CLIENT_DEFAULTS.concurrency, 4);
 * ```
 */
export const CLIENT_DEFAULTS = {
  host: DEFAULT_PEER_HOST,
  port: DEFAULT_PORT,
  ...SELECTION_DEFAULTS,
  concurrency: 4,
  timeout: DEFAULT_CLIENT_TIMEOUT,
  retries: 3,
  window: 32,
} as const;

/** Options for {@linkcode uploadFiles}. */
export interface UploadOptions {
  /**
   * Server address.
   * @default {CLIENT_DEFAULTS.host}
   */
  host?: string;
  /**
   * Server port.
   * @default {CLIENT_DEFAULTS.port}
   */
  port?: number;
  /**
   * Connections used in parallel.
   * @default {CLIENT_DEFAULTS.concurrency}
   */
  concurrency?: number;
  /**
   * Milliseconds allowed to connect, for each write, and for each answer
   * after a frame is sent; the original used 50 s.
   * @default {CLIENT_DEFAULTS.timeout}
   */
  timeout?: number;
  /**
   * Talk to the original server: one frame per connection, no
   * acknowledgement; a file counts as sent when the server has read it all
   * and closed.
   * @default {false}
   */
  legacy?: boolean;
  /**
   * The server's shared token, presented first on every connection. Not
   * with `legacy`.
   * @default {undefined}
   */
  token?: string;
  /**
   * Ask the server which files it already holds (same name, size and
   * CRC-32) and send only the others; the answers come while the first files
   * are sent. When the server cannot tell (a `--raw` server), `true` sends
   * every file, and `"strict"` none, so as not to store one twice. Not with
   * `legacy`.
   * @default {false}
   */
  resume?: boolean | "strict";
  /**
   * Offer our server raw-byte frames, and send file data as it is, a
   * quarter fewer bytes than base64, where it agrees. Not with `legacy`.
   * @default {true}
   */
  rawFrames?: boolean;
  /**
   * Offer our server path frames, and send each file with a `remote` path
   * (as {@linkcode collectFiles} gives with `paths`) under it, with its
   * mtime, where it agrees; queries then ask by path. Not with `legacy`.
   * @default {true}
   */
  paths?: boolean;
  /**
   * Bytes per second sent at most, across all connections.
   * @default {undefined}
   */
  limitRate?: number;
  /**
   * Connect with TLS; `caCerts` (PEM) are trusted as well as the system's.
   * @default {undefined}
   */
  tls?: { caCerts?: string[] };
  /**
   * Further tries for files that failed for a transient reason, each pass
   * after a pause that doubles from half a second up to 4 seconds.
   * @default {CLIENT_DEFAULTS.retries}
   */
  retries?: number;
  /**
   * Frames sent ahead of their acknowledgement on one connection.
   * @default {CLIENT_DEFAULTS.window}
   */
  window?: number;
  /**
   * Called once for every file, as soon as its fate is known. What it throws
   * is ignored: a log that cannot be written must not fail the upload.
   * @default {() => {}}
   */
  onResult?: (result: FileResult) => void;
}

/** Totals of an upload. */
export interface UploadReport {
  /** Files confirmed (or, with `legacy`, sent). */
  confirmed: number;
  /** Bytes of file data in those files. */
  bytes: number;
  /** Every file that failed, with the reason. */
  failed: FileResult[];
}

/**
 * One run of {@linkcode uploadFiles}: its passes, the workers of each pass,
 * and what the server has shown of itself so far.
 */
class Upload {
  readonly report: UploadReport = { confirmed: 0, bytes: 0, failed: [] };
  readonly #options: UploadOptions;
  readonly #target: Target;
  readonly #timeout: number;
  #queue = FileQueue.of([]);
  /** Every file of the run by path, to send again after a transient failure. */
  readonly #entries = new Map<string, UploadFile>();
  #onResult: (result: FileResult) => void = () => {};
  /** Why the server will take nothing from this client, once it is known: the rest fail at once. */
  #refusal: string | undefined;
  /** Connections open now, over all workers. */
  #open = 0;
  /** Workers of this pass that stopped because the server turned their connection away. */
  #retired = 0;
  /** Connections for the next pass. */
  #width: number;
  /** The cap on bytes per second every connection shares, if any. */
  readonly #limiter: RateLimiter | undefined;

  constructor(options: UploadOptions) {
    this.#options = options;
    const host = options.host ?? CLIENT_DEFAULTS.host;
    const port = options.port ?? CLIENT_DEFAULTS.port;
    this.#target = { hostname: host, port, tls: options.tls };
    this.#timeout = options.timeout ?? CLIENT_DEFAULTS.timeout;
    this.#width = options.concurrency ?? CLIENT_DEFAULTS.concurrency;
    this.#limiter = options.limitRate ? new RateLimiter(options.limitRate) : undefined;
  }

  /** Sends every file, in rounds and passes, and returns the totals. */
  async run(files: UploadFile[]): Promise<UploadReport> {
    for (const file of files) this.#entries.set(file.path, file);
    // A name's later files wait for the first one's answer: which file the
    // server keeps must not depend on which connection was faster. They then
    // meet it there, all at once: each is confirmed if the same, else refused.
    const [firsts, rest = []] = firstOfEachNameThenTheRest(files);
    if (!this.#options.resume || this.#options.legacy) {
      await this.#round(FileQueue.of(firsts));
      if (rest.length > 0) await this.#round(FileQueue.of(rest));
      return this.report;
    }
    // The first files go while the answers about the others come.
    const first = new FileQueue();
    const later: UploadFile[] = [];
    const isFirst = new Set(firsts);
    const asking = this.#ask(
      files,
      (file) => isFirst.has(file) ? first.push(file) : later.push(file),
    )
      .finally(() => first.close());
    await this.#round(first);
    await asking;
    if (later.length > 0) await this.#round(FileQueue.of(later));
    return this.report;
  }

  /** Counts a file's final fate and passes it on. */
  #record(result: FileResult): void {
    if (result.ok) {
      this.report.confirmed++;
      this.report.bytes += result.bytes;
    } else {
      this.report.failed.push(result);
    }
    try {
      this.#options.onResult?.(result);
    } catch {
      // The caller's log failed; the file did not.
    }
  }

  /** Sends a round of files; each pass sends what the last failed to for a transient reason. */
  async #round(files: FileQueue): Promise<void> {
    const retries = this.#options.retries ?? CLIENT_DEFAULTS.retries;
    let pass = files;
    for (let attempt = 0;; attempt++) {
      const again: UploadFile[] = [];
      this.#queue = pass;
      this.#onResult = (result) => {
        if (!result.ok && result.transient && attempt < retries) {
          again.push(this.#entries.get(result.path)!);
        } else this.#record(result);
      };
      // A worker connects once it has a file: those left without one cost nothing.
      const workers = Math.max(1, this.#width);
      this.#retired = 0;
      const work = () => this.#options.legacy ? this.#legacyWorker() : this.#worker();
      await Promise.all(Array.from({ length: workers }, work));
      if (again.length === 0) return;
      // As many connections as the server took this time.
      this.#width = workers - this.#retired;
      await new Promise((resolve) => setTimeout(resolve, Math.min(500 * 2 ** attempt, 4000)));
      pass = FileQueue.of(again);
    }
  }

  #fail(entry: UploadFile, message: string, transient: boolean): void {
    this.#onResult({ path: entry.path, ok: false, bytes: 0, message, transient });
  }

  async #legacyWorker(): Promise<void> {
    const writer = new FrameWriter(this.#timeout, this.#limiter);
    for (let entry; (entry = await this.#queue.take()) !== undefined;) {
      try {
        const bytes = await writer.sendToOriginal(this.#target, entry);
        this.#onResult({ path: entry.path, ok: true, bytes });
      } catch (error) {
        this.#fail(entry, (error as Error).message, isTransient(error));
      }
    }
  }

  async #worker(): Promise<void> {
    let uploader: Uploader | undefined;
    for (;;) {
      if (uploader?.broken) {
        if (uploader.refused) this.#refusal ??= uploader.broken;
        const turnedAway = !uploader.accepted;
        await this.#close(uploader);
        uploader = undefined;
        // Turned away before taking anything while other connections work:
        // the server is at its limit, so this one leaves the rest to them.
        if (turnedAway && this.#open > 0 && this.#refusal === undefined) {
          this.#retired++;
          return;
        }
      }
      const entry = await this.#queue.take();
      if (entry === undefined) break;
      if (this.#refusal !== undefined) {
        this.#fail(entry, this.#refusal, false);
        continue;
      }
      uploader ??= await this.#connect(entry);
      if (uploader && !await uploader.send(entry)) {
        if (uploader.refused) this.#refusal ??= uploader.broken;
        this.#fail(entry, uploader.broken!, !uploader.refused);
      }
    }
    if (uploader !== undefined) await this.#close(uploader);
  }

  /** Opens a connection for `entry`; when that fails, fails the file and returns nothing. */
  async #connect(entry: UploadFile): Promise<Uploader | undefined> {
    try {
      const uploader = new Uploader(await connectWithin(this.#target, this.#timeout), {
        timeout: this.#timeout,
        window: this.#options.window ?? CLIENT_DEFAULTS.window,
        onResult: this.#onResult,
        token: this.#options.token,
        rawFrames: this.#options.rawFrames ?? true,
        paths: this.#options.paths ?? true,
        limiter: this.#limiter,
      });
      this.#open++;
      return uploader;
    } catch (error) {
      const { hostname, port } = this.#target;
      const message = `Cannot connect to ${formatAddress(hostname, port)}: ${connectReason(error)}`;
      // A certificate TLS refused, a missing permission, or a name that does
      // not exist stays so however often it is tried.
      const kind = classifyError(error);
      const transient = kind !== "certificate" && kind !== "ca-certificate" &&
        kind !== "not-tls" && kind !== "permission" && kind !== "unknown-host";
      if (!transient) this.#refusal ??= message;
      this.#fail(entry, message, transient);
      return undefined;
    }
  }

  async #close(uploader: Uploader): Promise<void> {
    await uploader.close();
    this.#open--;
  }

  /**
   * Asks the server which files it already holds and records those; passes
   * each other to `missing` as its answer comes. When the queries fail, the
   * files they did not settle are sent, but for a `"strict"` resume of a
   * server that cannot tell.
   */
  async #ask(files: UploadFile[], missing: (file: UploadFile) => void): Promise<void> {
    const { unsettled, refused } = await askHeld(files, {
      target: this.#target,
      timeout: this.#timeout,
      token: this.#options.token,
      paths: this.#options.paths ?? true,
      onHeld: (result) => this.#record(result),
      onMissing: missing,
    });
    if (refused === undefined || this.#options.resume !== "strict") {
      for (const file of unsettled) missing(file);
      return;
    }
    // A server that cannot say what it holds would store each file again.
    const message = `Not sent, so as not to store it twice: ${refused}`;
    for (const { path } of unsettled) this.#record({ path, ok: false, bytes: 0, message });
  }
}

/** What a failed connection attempt tells the user. */
function connectReason(error: unknown): string {
  const reason = (error as Error).message;
  switch (classifyError(error)) {
    case "ca-certificate":
      return "the server's certificate is a CA's, which TLS does not accept as a server's own: make it with -addext basicConstraints=critical,CA:FALSE (see the README)";
    case "not-tls":
      return `the server does not speak TLS (${reason})`;
    default:
      return reason;
  }
}

/**
 * Uploads files over `concurrency` connections, reusing each connection for
 * many files, and reports each file's fate through `onResult`. Files that
 * share a name follow once the first of them is answered, so the server
 * keeps the first.
 *
 * @param files The files to send.
 * @param options Server, parallelism, deadlines and mode.
 * @returns The totals, with every failure.
 */
export function uploadFiles(
  files: UploadFile[],
  options: UploadOptions = {},
): Promise<UploadReport> {
  return new Upload(options).run(files);
}

/**
 * Splits files into the first of each name (or path, for those sent under
 * one) and, when there are any, the others; order kept.
 */
function firstOfEachNameThenTheRest(files: UploadFile[]): UploadFile[][] {
  const names = new Set<string>();
  const [firsts, rest]: UploadFile[][] = [[], []];
  for (const file of files) {
    const key = file.remote ?? file.name;
    if (names.has(key)) rest.push(file);
    else {
      names.add(key);
      firsts.push(file);
    }
  }
  return rest.length > 0 ? [firsts, rest] : [firsts];
}

const USAGE = `Usage: deno run --allow-net --allow-read client.ts [options] DIR|FILE...

Uploads the images in each DIR (and each FILE named) to server.ts and reports
every file the server did not confirm.

Options:
  --host HOST          server address (default ${CLIENT_DEFAULTS.host})
  --port PORT          server port (default ${CLIENT_DEFAULTS.port})
  --ext LIST           extensions to pick from folders, comma-separated
                       (default ${CLIENT_DEFAULTS.extensions.join(",")})
  -r, --recursive      descend into sub-folders; our server keeps the tree, each
                       file's path relative to the folder named (a link to a
                       folder is reported, not followed)
  --start N            skip the first N files (default ${CLIENT_DEFAULTS.start})
  --batch-size N       files per batch, as the original (default ${CLIENT_DEFAULTS.batchSize})
  --max-batch N        send at most N batches (default ${CLIENT_DEFAULTS.maxBatch})
  -c, --concurrency N  parallel connections (default ${CLIENT_DEFAULTS.concurrency})
  --timeout SEC        deadline to connect, per write and per answer (default ${
  CLIENT_DEFAULTS.timeout / 1000
})
  --retries N          tries again, after 0.5 s, 1 s, 2 s, ..., files that failed
                       for a transient reason: refused, reset, timed out, server
                       busy (default ${CLIENT_DEFAULTS.retries})
  --limit-rate RATE    send at most RATE bytes a second over all connections,
                       such as 500K or 10M (K = 1024)
  --legacy             talk to the original Python server: one file per
                       connection, no acknowledgement
  --base64             send file data as base64 even to a server that takes it
                       as raw bytes, a quarter fewer (our server does)
  --token-file FILE    present the token on this file's first line, for a server
                       started with --token-file (grant --allow-read on it)
  --send-all           send every file, even those the server already holds;
                       by default it asks first (same name, size and CRC-32)
                       and sends only the others, or all to a server that
                       cannot tell (--raw)
  --resume             ask first as by default, but send nothing to a server
                       that cannot tell, so as never to store a file twice
  --tls                connect with TLS, checking the server's certificate
  --ca FILE            also trust this PEM certificate (a private CA or a
                       self-signed server); implies --tls
  -v, --verbose        one line per file sent
  -h, --help           show this help

In folders, hidden files and folders (names starting with a dot, such as a
camera card's ._ files or a phone's .thumbnails) are left out, and counted.

On SIGINT or SIGTERM it stops at once and says how many files were
confirmed; the same command run again sends only what the server lacks.

Exit status: 0 when every selected file was confirmed (with --legacy: sent),
1 when any failed, it was stopped, or stdout could not be written, 2 on a
usage error.`;

/** What the command line asks of the client. */
interface ClientCommand {
  paths: string[];
  collect: Required<CollectOptions>;
  upload: UploadOptions & { tokenFile?: string; caFile?: string };
  verbose: boolean;
}

/** The extensions `--ext` names, without dots or `*.`. */
function parseExtensions(text: string): string[] {
  const extensions = text.split(",").map((e) => e.trim().replace(/^\*?\./, "")).filter(Boolean);
  if (extensions.length === 0) {
    const given = JSON.stringify(text.slice(0, 80));
    throw new TypeError(`Invalid --ext: name at least one extension, got ${given}`);
  }
  return extensions;
}

/** Refuses flags that contradict each other. */
function refuseConflicts(
  values: { legacy: boolean; resume: boolean; "send-all": boolean; "token-file"?: string },
): void {
  if (values.legacy && values["token-file"] !== undefined) {
    throw new TypeError("Invalid --token-file: the original server (--legacy) takes no token");
  }
  if (values.legacy && values.resume) {
    throw new TypeError("Invalid --resume: the original server (--legacy) answers no queries");
  }
  if (values.resume && values["send-all"]) {
    throw new TypeError("Invalid --send-all: --resume asks the server first, --send-all does not");
  }
}

/** The client's flags, for `parseArgs`. */
const CLIENT_FLAGS = {
  host: { type: "string", default: CLIENT_DEFAULTS.host },
  port: { type: "string", default: String(CLIENT_DEFAULTS.port) },
  ext: { type: "string", default: CLIENT_DEFAULTS.extensions.join(",") },
  recursive: { type: "boolean", short: "r", default: false },
  start: { type: "string", default: String(CLIENT_DEFAULTS.start) },
  "batch-size": { type: "string", default: String(CLIENT_DEFAULTS.batchSize) },
  "max-batch": { type: "string", default: String(CLIENT_DEFAULTS.maxBatch) },
  concurrency: { type: "string", short: "c", default: String(CLIENT_DEFAULTS.concurrency) },
  timeout: { type: "string", default: String(CLIENT_DEFAULTS.timeout / 1000) },
  retries: { type: "string", default: String(CLIENT_DEFAULTS.retries) },
  "limit-rate": { type: "string" },
  legacy: { type: "boolean", default: false },
  tls: { type: "boolean", default: false },
  resume: { type: "boolean", default: false },
  "send-all": { type: "boolean", default: false },
  base64: { type: "boolean", default: false },
  "token-file": { type: "string" },
  ca: { type: "string" },
  verbose: { type: "boolean", short: "v", default: false },
  help: { type: "boolean", short: "h", default: false },
} as const;

/**
 * Turns the command line into what to send and how.
 *
 * @returns The command, or `"help"` when the usage text was asked for.
 * @throws {TypeError | RangeError} Naming the flag at fault.
 */
function parseClientArgs(args: string[]): ClientCommand | "help" {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: CLIENT_FLAGS,
  });
  if (values.help) return "help";
  if (positionals.length === 0) {
    throw new TypeError("Missing DIR: name at least one folder or file");
  }
  refuseConflicts(values);
  return {
    paths: positionals,
    collect: {
      extensions: parseExtensions(values.ext),
      recursive: values.recursive,
      // Our server takes paths and long names; the original only 32-byte names.
      paths: !values.legacy,
      start: parseCount(values.start, "--start", 0),
      batchSize: parseCount(values["batch-size"], "--batch-size"),
      maxBatch: parseCount(values["max-batch"], "--max-batch"),
    },
    upload: {
      host: parseHost(values.host),
      port: parsePort(values.port, 1),
      concurrency: parseCount(values.concurrency, "--concurrency"),
      timeout: parseSeconds(values.timeout, "--timeout"),
      retries: parseCount(values.retries, "--retries", 0),
      limitRate: values["limit-rate"] === undefined
        ? undefined
        : parseRate(values["limit-rate"], "--limit-rate"),
      legacy: values.legacy,
      rawFrames: !values.base64,
      // Asking first is the default toward our server; the original answers no query.
      resume: values.resume ? "strict" : !values.legacy && !values["send-all"],
      tokenFile: values["token-file"],
      caFile: values.ca,
      tls: values.tls || values.ca !== undefined ? {} : undefined,
    },
    verbose: values.verbose,
  };
}

/**
 * Reads what the command names before anything is sent: the permission to
 * connect, the token, the CA certificate and the files.
 */
async function prepare(command: ClientCommand): Promise<Selection> {
  const { upload } = command;
  await checkNetPermission(formatAddress(upload.host!, upload.port!));
  if (upload.tokenFile !== undefined) upload.token = await readTokenFile(upload.tokenFile);
  if (upload.caFile !== undefined) {
    const ca = await Deno.readTextFile(upload.caFile);
    // Deno ignores a file with no certificate in it, and the server then seems untrusted.
    if (!ca.includes("-----BEGIN CERTIFICATE-----")) {
      throw new SyntaxError(`Invalid --ca: ${upload.caFile} holds no PEM certificate`);
    }
    upload.tls = { caCerts: [ca] };
  }
  return await collectFiles(command.paths, command.collect);
}

/** Says why there is nothing to send, and exits 0. */
function nothingToSend(script: ScriptOutput, selection: Selection, command: ClientCommand): never {
  const { start, extensions } = command.collect;
  const why = selection.found > 0
    ? `--start ${start} skips all ${selection.found} files found`
    : `none matching *.${extensions.join(", *.")}`;
  script.error(`No files to send: ${why}${leftOut(selection, extensions)}`);
  Deno.exit(0);
}

/** Extensions worth suggesting for `--ext`: the image types a server saves, and `jpeg`. */
const IMAGE_EXTENSIONS = new Set([...EXTENSIONS, "jpeg"].map((extension) => `.${extension}`));

/**
 * What the folders held that is not sent, as the start line says it: files
 * of other extensions, with the `--ext` that would take the images among
 * them, and hidden names.
 */
function leftOut(selection: Selection, extensions: readonly string[]): string {
  const parts: string[] = [];
  const unmatched = [...selection.unmatched];
  if (unmatched.length > 0) {
    const count = unmatched.reduce((sum, [, n]) => sum + n, 0);
    const shown = unmatched.slice(0, 4).map(([extension, n]) =>
      `${extension || "no extension"} ×${n}`
    );
    if (unmatched.length > 4) shown.push("…");
    const images = unmatched.map(([extension]) => extension).filter((e) => IMAGE_EXTENSIONS.has(e));
    const hint = images.length === 0
      ? ""
      : `; add --ext ${[...extensions, ...images.map((e) => e.slice(1))].join(",")}`;
    const pattern = extensions.map((e) => `*.${e}`).join(", ");
    parts.push(
      `left out ${counted(count, "file")} not matching ${pattern}: ${shown.join(", ")}${hint}`,
    );
  }
  if (selection.hidden > 0) {
    parts.push(`left out ${counted(selection.hidden, "name")} starting with a dot`);
  }
  return parts.map((part) => `; ${part}`).join("");
}

/** The line that says what is about to be sent, and where. */
function startLine(selection: Selection, command: ClientCommand): string {
  const { host, port, concurrency, legacy, resume } = command.upload;
  const connections = Math.max(1, Math.min(concurrency!, selection.files.length));
  const over = `over ${counted(connections, "connection")}`;
  const address = formatAddress(host!, port!);
  const { files, skipped } = selection;
  // The summary counts the files that cannot be sent among the selected: so does this line.
  const what = skipped.length === 0
    ? counted(files.length, "file")
    : `${files.length} of ${
      counted(files.length + skipped.length, "file")
    } (${skipped.length} cannot be sent, listed above)`;
  const mode = legacy ? " (legacy)" : resume ? ", skipping those it already holds" : "";
  return `sending ${what} to ${address} ${over}${mode}${
    leftOut(selection, command.collect.extensions)
  }`;
}

/** What running the same command again will do, for the summary of an interrupted run. */
function reRun(command: ClientCommand): string {
  if (command.upload.legacy) {
    return "the original server cannot say what it holds: run again, it sends every file";
  }
  if (!command.upload.resume) {
    return "run again without --send-all to send only what the server lacks";
  }
  return "run the same command again to send only what the server lacks";
}

async function main(): Promise<void> {
  const script: ScriptOutput = new ScriptOutput();
  const command = script.command(() => parseClientArgs(Deno.args), USAGE);
  script.requireMinDeno();
  let selection: Selection;
  try {
    selection = await prepare(command);
  } catch (error) {
    script.fail(error);
  }
  for (const skipped of selection.skipped) {
    script.stderr.line(`skipped ${skipped.path}: ${skipped.message}`);
  }
  if (selection.files.length + selection.skipped.length === 0) {
    nothingToSend(script, selection, command);
  }
  const progress = new Progress(script, {
    total: selection.files.length + selection.skipped.length,
    skipped: selection.skipped,
    legacy: command.upload.legacy ?? false,
    verbose: command.verbose,
    cap: command.upload.limitRate,
  });
  // Frames in flight are not waited for: the server keeps each one that
  // arrived whole, and the next run's queries find it there.
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    Deno.addSignalListener(signal, () => {
      const verb = command.upload.legacy ? "sent" : "confirmed";
      const stopped = `${signal}: stopped with ${progress.unsettled} not ${verb}`;
      progress.finish(`; ${stopped}; ${reRun(command)}`);
      Deno.exit(1);
    });
  }
  script.stdout.line(startLine(selection, command));
  await uploadFiles(selection.files, {
    ...command.upload,
    onResult: (result) => progress.onResult(result),
  });
  progress.finish();
  script.exit(progress.complete);
}

if (import.meta.main) await main();
