/**
 * Errors: the protocol's own, and how every script tells one kind from another.
 *
 * @module
 */

/**
 * What went wrong in a frame, or why a server refused a query; see
 * {@linkcode ProtocolError}.
 *
 * @example Branch on the code
 * ```ts
 * import assert from "node:assert/strict";
 * import { ProtocolError, type ProtocolErrorCode } from "../protocol.ts";
 *
 * const code: ProtocolErrorCode = new ProtocolError("name", "Invalid name: it is empty").code;
 * assert.equal(code, "name");
 * ```
 */
export type ProtocolErrorCode =
  | "header"
  | "size"
  | "name"
  | "base64"
  | "truncated"
  | "timeout"
  | "idle"
  | "auth"
  | "tls"
  | "refused";

/**
 * A frame or acknowledgement broke the protocol. After a `name` or `base64`
 * error the rest of the body can be skipped and the connection goes on
 * ({@linkcode ProtocolError.recoverable}); after any other the connection is
 * out of step and must be closed.
 *
 * @example Tell a recoverable error from a fatal one
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseHeader, ProtocolError } from "../protocol.ts";
 *
 * try {
 *   parseHeader(new TextEncoder().encode("+000000000000100"));
 *   assert.fail("accepted a plus sign");
 * } catch (error) {
 *   assert.ok(error instanceof ProtocolError);
 *   assert.equal(error.code, "header");
 *   assert.equal(error.recoverable, false);
 * }
 * ```
 */
export class ProtocolError extends Error {
  /** Which rule was broken. */
  readonly code: ProtocolErrorCode;

  /**
   * Creates the error.
   *
   * @param code Which rule was broken.
   * @param message Sentence-case text with the detail after a colon.
   */
  constructor(code: ProtocolErrorCode, message: string) {
    super(message);
    this.name = "ProtocolError";
    this.code = code;
  }

  /** Whether skipping the rest of the body puts the stream back in step. */
  get recoverable(): boolean {
    return this.code === "name" || this.code === "base64";
  }
}

/**
 * Returns the first sentence of an error's message, for a one-line report.
 * `parseArgs` calls an option followed by another one "ambiguous"; that is
 * nearly always a forgotten value, so it is named as such.
 *
 * @param error Anything thrown.
 * @returns The message up to its first full stop or line break.
 *
 * @example Shorten a parser's message
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseArgs } from "node:util";
 * import { describeError } from "../protocol.ts";
 *
 * const error = new TypeError("Unknown option '--x'. To specify a positional argument, use --");
 * assert.equal(describeError(error), "Unknown option '--x'");
 * assert.throws(
 *   () => parseArgs({ args: ["--host", "--port"], options: { host: { type: "string" } } }),
 *   (error) =>
 *     describeError(error) ===
 *       "Option '--host' is missing its value: write --host=VALUE if the value starts with a dash",
 * );
 * assert.throws(
 *   () => parseArgs({ args: ["-c", "-v"], options: { c: { type: "string" } } }),
 *   (error) => describeError(error) === "Option '-c' is missing its value",
 * );
 * ```
 */
export function describeError(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  const ambiguous = /^Option '(-[\w-]+)' argument is ambiguous\./.exec(message);
  if (ambiguous) {
    const option = ambiguous[1];
    const hint = option.startsWith("--")
      ? `: write ${option}=VALUE if the value starts with a dash`
      : "";
    return `Option '${option}' is missing its value${hint}`;
  }
  return message.split(/\. |\n/)[0];
}

/**
 * What kind of failure an error is, for the decisions every role makes on
 * it: whether the peer went away, whether another try may work, what to
 * tell the user. Decided on error classes and codes; only Deno's TLS and
 * name look-up failures, which carry neither, are told by their text, here
 * and nowhere else.
 *
 * - `closed`: this side closed the connection (a stop, a shed).
 * - `disconnect`: the peer went away: reset, broken pipe, TLS without close_notify.
 * - `unreachable`: nothing answered at that address, or the connection timed out.
 * - `timeout`: one of our deadlines passed.
 * - `unknown-host`: the name does not resolve, and will not on another try.
 * - `not-tls`: TLS met a peer that does not speak it.
 * - `ca-certificate`: the server's certificate is a CA's, refused as a server's own.
 * - `certificate`: TLS refused the peer's certificate.
 * - `permission`: Deno lacks a permission flag.
 * - `other`: anything else.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { classifyError, type ErrorKind } from "../protocol.ts";
 *
 * const kind: ErrorKind = classifyError(new Deno.errors.ConnectionRefused("refused"));
 * assert.equal(kind, "unreachable");
 * ```
 */
export type ErrorKind =
  | "closed"
  | "disconnect"
  | "unreachable"
  | "timeout"
  | "unknown-host"
  | "not-tls"
  | "ca-certificate"
  | "certificate"
  | "permission"
  | "other";

const CLASSES: [new (message?: string) => Error, ErrorKind][] = [
  [Deno.errors.BadResource, "closed"],
  [Deno.errors.Interrupted, "closed"],
  [Deno.errors.ConnectionReset, "disconnect"],
  [Deno.errors.ConnectionAborted, "disconnect"],
  [Deno.errors.BrokenPipe, "disconnect"],
  [Deno.errors.NotConnected, "disconnect"],
  // A TLS peer gone without close_notify, as a process that exits straight after close().
  [Deno.errors.UnexpectedEof, "disconnect"],
  [Deno.errors.ConnectionRefused, "unreachable"],
  [Deno.errors.TimedOut, "unreachable"],
  [Deno.errors.NotCapable, "permission"],
];

/** getaddrinfo's words for a name that does not exist, on glibc, musl and BSD. */
const UNKNOWN_HOST = /Name or service not known|No address associated with hostname|nor servname/;

/**
 * Tells what kind of failure an error is; see {@linkcode ErrorKind}.
 *
 * @param error Anything thrown.
 * @returns Its kind.
 *
 * @example Sort a few errors
 * ```ts
 * import assert from "node:assert/strict";
 * import { classifyError, ProtocolError } from "../protocol.ts";
 *
 * assert.equal(classifyError(new Deno.errors.BrokenPipe("Broken pipe")), "disconnect");
 * assert.equal(classifyError(new ProtocolError("timeout", "Timed out")), "timeout");
 * assert.equal(classifyError(new Error("invalid peer certificate: CaUsedAsEndEntity")), "ca-certificate");
 * assert.equal(classifyError(new RangeError("Invalid --port")), "other");
 * ```
 */
export function classifyError(error: unknown): ErrorKind {
  if (error instanceof ProtocolError) return error.code === "timeout" ? "timeout" : "other";
  for (const [Class, kind] of CLASSES) if (error instanceof Class) return kind;
  const message = error instanceof Error ? error.message : String(error);
  if (message.includes("CaUsedAsEndEntity")) return "ca-certificate";
  if (message.includes("InvalidContentType")) return "not-tls";
  if (error instanceof Deno.errors.InvalidData) return "certificate";
  return UNKNOWN_HOST.test(message) ? "unknown-host" : "other";
}

/**
 * Whether a connection ended under a read or a write: the peer went away,
 * or this side closed it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { isDisconnect } from "../protocol.ts";
 *
 * assert.ok(isDisconnect(new Deno.errors.ConnectionReset("reset")));
 * assert.equal(isDisconnect(new Deno.errors.NotFound("gone")), false);
 * ```
 */
export function isDisconnect(error: unknown): boolean {
  const kind = classifyError(error);
  return kind === "disconnect" || kind === "closed";
}

/**
 * Whether an error came from the connection rather than from a file or the
 * server's verdict, so that another try may work.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { isTransient } from "../protocol.ts";
 *
 * assert.ok(isTransient(new Deno.errors.ConnectionRefused("refused")));
 * assert.equal(isTransient(new Deno.errors.PermissionDenied("denied")), false);
 * ```
 */
export function isTransient(error: unknown): boolean {
  const kind = classifyError(error);
  return kind === "disconnect" || kind === "unreachable" || kind === "timeout";
}

/**
 * The system's reason for a failed call, without the paths Deno appends to
 * it: a server's folders are no business of its clients.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { osReason } from "../protocol.ts";
 *
 * const error = new Error("No space left on device (os error 28): write '/srv/a'");
 * assert.equal(osReason(error), "No space left on device (os error 28)");
 * assert.equal(osReason(new Error("Invalid name")), undefined);
 * ```
 */
export function osReason(error: unknown): string | undefined {
  return /^.*?\(os error \d+\)/.exec((error as Error).message)?.[0];
}

/**
 * The same kind of error with a message that says more, or less, than Deno's.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { rephrase } from "../protocol.ts";
 *
 * const error = rephrase(new Deno.errors.AddrInUse("Address in use"), "Cannot listen: in use");
 * assert.ok(error instanceof Deno.errors.AddrInUse);
 * assert.equal(error.message, "Cannot listen: in use");
 * ```
 */
export function rephrase(error: unknown, message: string): Error {
  const Class = error instanceof Error ? error.constructor as ErrorConstructor : Error;
  return new Class(message, { cause: error });
}

/**
 * The exit status for an error that ends a script: 2 when the command line
 * asked for what cannot be (a flag's value, a missing permission, a file
 * named on it that holds the wrong thing), 1 for anything the run met.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { exitCodeFor } from "../protocol.ts";
 *
 * assert.equal(exitCodeFor(new RangeError("Invalid --port: 99999")), 2);
 * assert.equal(exitCodeFor(new Deno.errors.NotCapable("Requires net access")), 2);
 * assert.equal(exitCodeFor(new Deno.errors.NotFound("No such file")), 1);
 * ```
 */
export function exitCodeFor(error: unknown): 1 | 2 {
  const usage = error instanceof TypeError || error instanceof RangeError ||
    error instanceof SyntaxError || error instanceof Deno.errors.NotCapable;
  return usage ? 2 : 1;
}
