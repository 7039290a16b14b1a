/**
 * The one import of every role script: the wire format shared by the TCP
 * image uploader (`client.ts`) and receiver (`server.ts`), compatible byte
 * for byte with the original Python scripts, and the helpers the four
 * scripts share.
 *
 * A frame is a 16-digit zero-padded decimal header holding the body length L,
 * then the body: a 32-byte name field and the padded standard base64 of the
 * file. Our server answers each frame with one acknowledgement line; the
 * original client never reads it. `PROTOCOL.md` has the full rules.
 *
 * What lives where, as in Go's `net/textproto`:
 * - `protocol/limits.ts`, `frame.ts`, `name.ts`: the frame's parts, header
 *   and name codecs, frame encoding;
 * - `protocol/frame_reader.ts`, `line_reader.ts`: reading frames and answer
 *   lines, each read with a byte limit and a deadline;
 * - `protocol/control.ts`: acknowledgements, queries and tokens;
 * - `protocol/path.ts`: relative paths and modification times, between our
 *   own peers;
 * - `protocol/errors.ts`: `ProtocolError`, the error classifier, exit codes;
 * - `protocol/io.ts`: byte sources, deadlines, whole writes;
 * - `protocol/proxy_header.ts`: the PROXY protocol header a load balancer
 *   puts before a connection's stream (`--proxy-protocol`);
 * - `lib/`: what is not the wire format: command-line values, log output,
 *   formatting, addresses, image types, files, the receiver's folder,
 *   quarantine and admission, and the UDP printer's lines, hand-over and
 *   socket as the kernel sees it.
 *
 * @example Encode a frame and read it back
 * ```ts
 * import assert from "node:assert/strict";
 * import { bytesSource, encodeFrame, FrameReader, parseName } from "./protocol.ts";
 *
 * const frame = encodeFrame("cat", new Uint8Array([1, 2, 3]));
 * const reader = new FrameReader(bytesSource(frame));
 * const head = await reader.readHead();
 * assert.equal(parseName(head!.nameField), "cat");
 * const data = [];
 * for await (const chunk of reader.data()) data.push(...chunk);
 * assert.deepEqual(data, [1, 2, 3]);
 * ```
 *
 * @module
 */

// The frame: sizes, header, name, encoding.
export {
  DEFAULT_CLIENT_TIMEOUT,
  DEFAULT_HEADER_TIMEOUT,
  DEFAULT_IDLE_TIMEOUT,
  DEFAULT_LISTEN_HOST,
  DEFAULT_MAX_FRAME_SIZE,
  DEFAULT_PEER_HOST,
  DEFAULT_PORT,
  HEADER_SIZE,
  MAX_NAME_BYTES,
  NAME_SIZE,
} from "./protocol/limits.ts";
export { base64Length, encodeFrame, encodeHeader, parseHeader } from "./protocol/frame.ts";
export { encodeName, type NameSplit, parseName, splitName } from "./protocol/name.ts";

// Reading frames and answer lines.
export { type FrameHead, FrameReader, type FrameReaderOptions } from "./protocol/frame_reader.ts";
export { LineReader } from "./protocol/line_reader.ts";
export { ProxiedConn, type ProxyHeader, readProxyHeader } from "./protocol/proxy_header.ts";

// The frames and answers beyond the tutorial's.
export {
  type Ack,
  agreedIn,
  encodeAck,
  encodeHave,
  encodeHello,
  encodeHelloAnswer,
  encodeQuery,
  encodeToken,
  type Held,
  isHello,
  isQuery,
  isToken,
  MAX_ACK_SIZE,
  parseAck,
  parseHave,
  parseHello,
  parseQuery,
  type QueryOptions,
  RAW_BYTES,
  readTokenFile,
  type Refusal,
  refusalOf,
  REFUSALS,
} from "./protocol/control.ts";

// Relative paths and modification times, between our own peers.
export {
  checkPath,
  encodePathHead,
  type FileMeta,
  isPathFrame,
  MAX_PART_BYTES,
  MAX_PATH_BYTES,
  MAX_PATH_LINE,
  parsePathLine,
  PATHS,
} from "./protocol/path.ts";

// Answering: acknowledgements owed on a connection, in batches.
export { Answers } from "./protocol/answers.ts";

// Errors.
export {
  classifyError,
  describeError,
  type ErrorKind,
  exitCodeFor,
  isDisconnect,
  isTransient,
  osReason,
  ProtocolError,
  type ProtocolErrorCode,
  rephrase,
} from "./protocol/errors.ts";

// Byte I/O.
export {
  type ByteSource,
  bytesSource,
  closeQuietly,
  concatBytes,
  type DeadlineOptions,
  withDeadline,
  writeAll,
} from "./protocol/io.ts";

// Not the wire format: command line, log, formatting, addresses, files.
export {
  checkNetPermission,
  isOlderThanMinDeno,
  MIN_DENO,
  missingFolderPermission,
  parseByteSize,
  parseCount,
  parseFrameSize,
  parseHost,
  parsePort,
  parseRate,
  parseSeconds,
} from "./lib/cli.ts";
export { LogOutput, type LogOutputOptions, ScriptOutput } from "./lib/log.ts";
export {
  counted,
  formatAddress,
  formatBytes,
  formatDuration,
  quoteBytes,
  quoteName,
} from "./lib/format.ts";
export { type Cidr, inAnyCidr, MAX_DATAGRAM_SIZE, parseCidr } from "./lib/net.ts";
// The UDP printer: datagrams as safe lines, written from a Worker for a
// pipe or terminal, or on the receiving thread for a file.
export { escapeControls, formatDatagram, LineBatch, withoutLineEnd } from "./lib/printer.ts";
export {
  DEFAULT_QUEUE_BYTES,
  HandOver,
  type LinePrinter,
  Printer,
  type PrinterEnd,
  type PrinterOptions,
} from "./lib/hand_over.ts";
export { DirectPrinter, type DirectPrinterOptions, writesNeverWait } from "./lib/direct_printer.ts";
export { KernelSocket } from "./lib/kernel_socket.ts";
export { EXTENSIONS, sniffExtension } from "./lib/images.ts";
export { crc32OfFile, descriptorRoom, writeAllSync } from "./lib/files.ts";

// The receiver's folder, admission and connections.
export {
  Folder,
  type FolderOptions,
  type KeepOptions,
  QUARANTINE,
  Quarantine,
} from "./lib/folder.ts";
export { FrameSlots, type FrameSlotsOptions } from "./lib/admission.ts";

// The sender's file selection and connections.
export {
  collectFiles,
  type CollectOptions,
  FileQueue,
  nameFor,
  type Selection,
  SELECTION_DEFAULTS,
} from "./lib/selection.ts";
export { askHeld, type AskOptions } from "./lib/queries.ts";
export {
  ANSWER,
  connectWithin,
  type FileResult,
  type FrameFormat,
  FrameWriter,
  type Sent,
  type Target,
  Uploader,
  type UploaderOptions,
  type UploadFile,
  writeWithin,
} from "./lib/uploader.ts";

export { RateLimiter, type RateLimiterOptions } from "./lib/rate.ts";
export { failuresByReason, Progress, type ProgressOptions } from "./lib/progress.ts";

export {
  eventLine,
  type ServerEvent,
  type ServerStats,
  Session,
  type SessionHost,
} from "./lib/session.ts";
