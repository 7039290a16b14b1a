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
