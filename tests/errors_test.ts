/** One classifier for every role's decisions on errors, and one exit code (protocol/errors.ts). */
import assert from "node:assert/strict";
import {
  classifyError,
  type ErrorKind,
  exitCodeFor,
  isDisconnect,
  isTransient,
  osReason,
  ProtocolError,
  rephrase,
} from "../protocol.ts";

const kinds: [string, unknown, ErrorKind, { disconnect: boolean; transient: boolean }][] = [
  ["a reset", new Deno.errors.ConnectionReset("reset"), "disconnect", {
    disconnect: true,
    transient: true,
  }],
  ["a broken pipe", new Deno.errors.BrokenPipe("pipe"), "disconnect", {
    disconnect: true,
    transient: true,
  }],
  ["a TLS peer gone without close_notify", new Deno.errors.UnexpectedEof("eof"), "disconnect", {
    disconnect: true,
    transient: true,
  }],
  ["a connection this side closed", new Deno.errors.BadResource("closed"), "closed", {
    disconnect: true,
    transient: false,
  }],
  ["a stop", new Deno.errors.Interrupted("Server stopping"), "closed", {
    disconnect: true,
    transient: false,
  }],
  ["a refused connection", new Deno.errors.ConnectionRefused("refused"), "unreachable", {
    disconnect: false,
    transient: true,
  }],
  ["our deadline", new ProtocolError("timeout", "Timed out"), "timeout", {
    disconnect: false,
    transient: true,
  }],
  ["a broken protocol rule", new ProtocolError("header", "Invalid header"), "other", {
    disconnect: false,
    transient: false,
  }],
  [
    "a CA's certificate used as a server's",
    new Deno.errors.InvalidData("invalid peer certificate: Other(CaUsedAsEndEntity)"),
    "ca-certificate",
    { disconnect: false, transient: false },
  ],
  [
    "a peer that does not speak TLS",
    new Deno.errors.InvalidData("received corrupt message of type InvalidContentType"),
    "not-tls",
    { disconnect: false, transient: false },
  ],
  ["a certificate TLS refused", new Deno.errors.InvalidData("UnknownIssuer"), "certificate", {
    disconnect: false,
    transient: false,
  }],
  [
    "a name that does not resolve",
    new Error("failed to lookup address information: Name or service not known"),
    "unknown-host",
    { disconnect: false, transient: false },
  ],
  ["a missing permission", new Deno.errors.NotCapable("Requires net access"), "permission", {
    disconnect: false,
    transient: false,
  }],
  ["a missing file", new Deno.errors.NotFound("No such file"), "other", {
    disconnect: false,
    transient: false,
  }],
  ["something thrown that is no error", "text", "other", { disconnect: false, transient: false }],
];

for (const [what, error, kind, { disconnect, transient }] of kinds) {
  Deno.test(`classifyError() calls ${what} ${kind}`, () => {
    assert.equal(classifyError(error), kind);
    assert.equal(isDisconnect(error), disconnect, "isDisconnect");
    assert.equal(isTransient(error), transient, "isTransient");
  });
}

const exitCodes: [string, unknown, 1 | 2][] = [
  ["an unknown flag", new TypeError("Unknown option '--x'"), 2],
  ["a value out of range", new RangeError("Invalid --port: 99999"), 2],
  [
    "a file named on the command line that holds the wrong thing",
    new SyntaxError("Invalid --ca"),
    2,
  ],
  ["a missing permission", new Deno.errors.NotCapable("Requires read access"), 2],
  ["a folder that does not exist", new Deno.errors.NotFound("No such file or directory"), 1],
  ["a folder another server holds", new Deno.errors.Busy("Folder in use"), 1],
  ["an address in use", new Deno.errors.AddrInUse("Address in use"), 1],
];

for (const [what, error, code] of exitCodes) {
  Deno.test(`exitCodeFor() exits ${code} for ${what}`, () => {
    assert.equal(exitCodeFor(error), code);
  });
}

Deno.test("osReason() keeps the system's words and drops the paths after them", () => {
  const error = new Deno.errors.PermissionDenied(
    "Permission denied (os error 13): open '/srv/uploads/.upload-1.part'",
  );
  assert.equal(osReason(error), "Permission denied (os error 13)");
  assert.equal(osReason(new Error("Invalid name: it is empty")), undefined);
});

Deno.test("rephrase() keeps the class, so decisions on it still hold", () => {
  const original = new Deno.errors.NotFound("No such file");
  const rephrased = rephrase(original, "Cannot save cat: No such file");
  assert.ok(rephrased instanceof Deno.errors.NotFound);
  assert.equal(rephrased.cause, original);
  assert.equal(classifyError(rephrase("text", "Something")), "other");
});
