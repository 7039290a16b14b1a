/** What is not the wire format: command-line values, image types, formatting and log output (lib/). */
import assert from "node:assert/strict";
import {
  eventLine,
  formatBytes,
  isOlderThanMinDeno,
  LogOutput,
  parseByteSize,
  parseHost,
  parsePort,
  parseSeconds,
  quoteName,
  ScriptOutput,
  type ServerEvent,
  sniffExtension,
} from "../protocol.ts";
import { utf8 } from "./helpers.ts";

const denoVersions: [string, boolean][] = [
  ["2.9.6", false],
  ["2.7.1", false],
  ["2.7.0-rc.1", false],
  ["2.10.0", false],
  ["3.0.0", false],
  ["2.6.8", true],
  ["2.2.0", true],
  ["1.46.3", true],
];
for (const [version, older] of denoVersions) {
  Deno.test(`isOlderThanMinDeno() takes Deno ${version} for ${older ? "too old" : "new enough"}`, () => {
    assert.equal(isOlderThanMinDeno(version), older);
  });
}

const signatures: [string, number[], string][] = [
  ["JPEG", [0xff, 0xd8, 0xff, 0xdb], "jpg"],
  ["PNG", [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], "png"],
  ["GIF87a", [...utf8("GIF87a")], "gif"],
  ["GIF89a", [...utf8("GIF89a")], "gif"],
  ["WebP", [...utf8("RIFF\0\0\0\0WEBP")], "webp"],
  ["a RIFF that is not WebP", [...utf8("RIFF\0\0\0\0WAVE")], "bin"],
  ["BMP", [...utf8("BM")], "bmp"],
  ["little-endian TIFF", [0x49, 0x49, 0x2a, 0], "tiff"],
  ["big-endian TIFF", [0x4d, 0x4d, 0, 0x2a], "tiff"],
  ["an iPhone's HEIC", [0, 0, 0, 0x18, ...utf8("ftypheic")], "heic"],
  ["a HEIF image sequence", [0, 0, 0, 0x18, ...utf8("ftyphevc")], "heic"],
  ["a plain HEIF", [0, 0, 0, 0x1c, ...utf8("ftypmif1")], "heif"],
  ["AVIF", [0, 0, 0, 0x20, ...utf8("ftypavif")], "avif"],
  ["an MP4 video", [0, 0, 0, 0x20, ...utf8("ftypisom")], "bin"],
  ["a ftyp box cut short", [0, 0, 0, 0x20, ...utf8("ftyphe")], "bin"],
  ["a truncated PNG signature", [0x89, 0x50], "bin"],
  ["nothing", [], "bin"],
];
for (const [what, bytes, extension] of signatures) {
  Deno.test(`sniffExtension() names ${what} ${extension}`, () => {
    assert.equal(sniffExtension(new Uint8Array(bytes)), extension);
  });
}

Deno.test("parseByteSize() and parsePort() accept only plain numbers", () => {
  assert.equal(parseByteSize("0"), 0);
  assert.equal(parseByteSize("64k"), 65_536);
  assert.equal(parseByteSize("3MB"), 3 * 1024 ** 2);
  for (const text of ["", "-1", "1.5M", "0x10", "1e3", "12T", "M"]) {
    assert.throws(() => parseByteSize(text), SyntaxError, text);
  }
  assert.equal(parsePort("0"), 0);
  assert.equal(parsePort("65535"), 65_535);
  for (const text of ["", "-1", "65536", "80a", " 80", "1e3"]) {
    assert.throws(() => parsePort(text), SyntaxError, text);
  }
  assert.equal(parsePort("1", 1), 1);
  assert.throws(() => parsePort("0", 1), /expected 1 to 65535, got "0"/);
});

const hosts: [string, string | RegExp][] = [
  ["127.0.0.1", "127.0.0.1"],
  ["0.0.0.0", "0.0.0.0"],
  ["::1", "::1"],
  ["[::1]", "::1"],
  ["[fd00::7]", "fd00::7"],
  ["[::ffff:127.0.0.1]", "::ffff:127.0.0.1"],
  ["[127.0.0.1]", /got "\[127\.0\.0\.1\]"/],
  ["localhost", "localhost"],
  ["files.example.org.", "files.example.org."],
  ["server_2", "server_2"],
  ["", /expected a host name or an IP address, got ""/],
  ["127.0.0.1:9999", /give the port with --port, got "127\.0\.0\.1:9999"/],
  ["[localhost]", /expected a host name or an IP address, got "\[localhost\]"/],
  [" localhost", /got " localhost"/],
  ["bad..name", /got "bad\.\.name"/],
  ["-dash.example", /got "-dash\.example"/],
  ["1::2::3", /got "1::2::3"/],
  ["a".repeat(64), /got "a{64}"/],
  [`${"a.".repeat(127)}ab`, /got "(a\.){40}"$/],
];
for (const [text, expected] of hosts) {
  Deno.test(`parseHost() ${typeof expected === "string" ? "accepts" : "rejects"} ${JSON.stringify(text.slice(0, 20))}`, () => {
    if (typeof expected === "string") assert.equal(parseHost(text), expected);
    else assert.throws(() => parseHost(text), { name: "SyntaxError", message: expected });
  });
}

const durations: [string, number | undefined, number | undefined][] = [
  ["2.5", undefined, 2500],
  ["0.001", undefined, 1],
  ["0", undefined, undefined],
  ["0.000", undefined, undefined],
  ["0", 0, 0],
  ["1.5", 2, undefined],
  ["-1", 0, undefined],
  ["1e3", 0, undefined],
  ["0.0001", 0, undefined],
];

for (const [text, min, ms] of durations) {
  Deno.test(`parseSeconds() ${ms === undefined ? "rejects" : "accepts"} "${text}" with min ${min ?? "by default"}`, () => {
    if (ms === undefined) {
      assert.throws(() => parseSeconds(text, "--timeout", min), /Invalid --timeout/);
    } else assert.equal(parseSeconds(text, "--timeout", min), ms);
  });
}

const byteCounts: [number, string][] = [
  [0, "0 B"],
  [1023, "1023 B"],
  [511.6, "512 B"],
  [1024, "1.0 KiB"],
  [65_536, "64.0 KiB"],
  [1536 * 1024 ** 2, "1.50 GiB"],
  [2 * 1024 ** 5, "2048.00 TiB"],
];

for (const [bytes, text] of byteCounts) {
  Deno.test(`formatBytes() writes ${bytes} as "${text}"`, () => {
    assert.equal(formatBytes(bytes), text);
  });
}

/** How a stdout that fails on its second write fails, and what LogOutput makes of it. */
const outputFailures: [string, Error, boolean][] = [
  ["a reader that went away", new Deno.errors.BrokenPipe("Broken pipe (os error 32)"), false],
  ["a full disk", new Error("No space left on device (os error 28)"), true],
];

for (const [cause, failure, reported] of outputFailures) {
  Deno.test(`LogOutput drops the rest after ${cause}, and ${reported ? "reports it once" : "says nothing"}`, () => {
    const written: string[] = [];
    const errors: Error[] = [];
    let attempts = 0;
    const log = new LogOutput((error) => errors.push(error), {
      write(bytes) {
        if (++attempts === 2) throw failure;
        written.push(new TextDecoder().decode(bytes));
        return bytes.length;
      },
    });
    for (const line of ["one", "two", "three"]) log.line(line);
    assert.deepEqual(written, ["one\n"], "nothing written after the failure");
    assert.equal(attempts, 2, "no write tried after the failure");
    assert.deepEqual(errors, reported ? [failure] : []);
    assert.equal(log.failed, reported);
  });
}

Deno.test("LogOutput writes on after a short write until every byte is out", () => {
  let out = "";
  const log = new LogOutput(() => assert.fail("no error expected"), {
    write(bytes) {
      out += new TextDecoder().decode(bytes.subarray(0, 2));
      return Math.min(2, bytes.length);
    },
  });
  log.text("\r\x1b[K3/10 files");
  log.line(" done");
  assert.equal(out, "\r\x1b[K3/10 files done\n");
  assert.equal(log.failed, false);
});

/** A LogOutput that collects what it is given. */
function collecting(): { output: LogOutput; text: () => string } {
  let text = "";
  const output = new LogOutput(() => {}, {
    write(bytes) {
      text += new TextDecoder().decode(bytes);
      return bytes.length;
    },
  });
  return { output, text: () => text };
}

Deno.test("ScriptOutput writes every script's errors the same way, after its name", () => {
  const stderr = collecting();
  const script = new ScriptOutput("client.ts", { stderr: stderr.output });
  script.error("No files to send: none matching *.jpg");
  assert.equal(stderr.text(), "client.ts: No files to send: none matching *.jpg\n");
  assert.equal(
    script.usageText(new TypeError("Unknown option '--bogus'. To specify a positional argument")),
    "client.ts: Unknown option '--bogus'\nTry 'client.ts --help'.",
  );
});

Deno.test("ScriptOutput says a failed stdout once on stderr, and the run goes on", () => {
  const stderr = collecting();
  const script = new ScriptOutput("server.ts", {
    stderr: stderr.output,
    stdout: new LogOutput(
      (error) => stderr.output.line(`server.ts: Cannot write to stdout: ${error.message}`),
      {
        write() {
          throw new Error("No space left on device (os error 28)");
        },
      },
    ),
  });
  script.stdout.line("saved a.jpg");
  script.stdout.line("saved b.jpg");
  assert.equal(
    stderr.text(),
    "server.ts: Cannot write to stdout: No space left on device (os error 28)\n",
  );
  assert.equal(script.stdout.failed, true);
});

const events: [ServerEvent, boolean, { stream: "stdout" | "stderr"; text: string } | undefined][] =
  [
    [
      {
        type: "saved",
        peer: "127.0.0.1:5000",
        file: "cat.jpg",
        bytes: 2048,
        ms: 3,
        duplicate: false,
      },
      false,
      { stream: "stdout", text: "saved cat.jpg (2.0 KiB in 3 ms) from 127.0.0.1:5000" },
    ],
    [
      {
        type: "saved",
        peer: "127.0.0.1:5000",
        file: "cat.jpg",
        bytes: 2048,
        ms: 3,
        duplicate: true,
      },
      false,
      { stream: "stdout", text: "already have cat.jpg (2.0 KiB in 3 ms) from 127.0.0.1:5000" },
    ],
    [
      { type: "saved", peer: "127.0.0.1:5000", file: "cat.jpg", bytes: 1, ms: 1, duplicate: false },
      true,
      undefined,
    ],
    [
      { type: "refused", peer: "10.0.0.9:1", message: "Not in an --allow block: dropped" },
      true,
      { stream: "stderr", text: "refused 10.0.0.9:1: Not in an --allow block: dropped" },
    ],
    [
      { type: "shed", peer: "127.1.0.1:40000", idleMs: 2500 },
      false,
      {
        stream: "stderr",
        text: "shed 127.1.0.1:40000: idle 2.50 s without a frame, closed for a newcomer",
      },
    ],
    [
      { type: "cleaned", files: 2 },
      true,
      { stream: "stdout", text: "removed 2 temporary files left by an earlier run" },
    ],
  ];

for (const [event, quiet, line] of events) {
  Deno.test(`eventLine() writes a ${event.type} event${quiet ? " with --quiet" : ""}`, () => {
    assert.deepEqual(eventLine(event, quiet), line);
  });
}

Deno.test("quoteName() cuts a long name between characters, at 80 bytes at most", () => {
  // 27 characters of 3 bytes: 81 bytes, so the 27th is left out whole.
  const name = "猫".repeat(27);
  assert.equal(quoteName(new TextEncoder().encode(name)), `"${"猫".repeat(26)}"…`);
  assert.equal(quoteName(new TextEncoder().encode("猫".repeat(26))), `"${"猫".repeat(26)}"`);
  assert.equal(quoteName(new Uint8Array([0x66, 0xff])), '"f\\xff"');
});
