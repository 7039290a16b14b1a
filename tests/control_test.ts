/** Acknowledgements and answer lines (protocol/control.ts, protocol/line_reader.ts). */
import assert from "node:assert/strict";
import {
  bytesSource,
  encodeAck,
  LineReader,
  MAX_ACK_SIZE,
  parseAck,
  type Refusal,
  refusalOf,
} from "../protocol.ts";
import { assertProtocolError, utf8 } from "./helpers.ts";

Deno.test("encodeAck() and parseAck() round-trip both answers", () => {
  const answers = [
    { ok: true as const, file: "猫 1.jpg", bytes: 0, crc32: 0 },
    { ok: true as const, file: "00001", bytes: 2 ** 40, crc32: 0xffffffff },
    { ok: false as const, message: 'Invalid name: it starts with a dot: ".x"' },
  ];
  for (const answer of answers) {
    const line = encodeAck(answer);
    assert.equal(line.at(-1), 0x0a);
    assert.deepEqual(parseAck(line.subarray(0, -1)), answer);
  }
});

Deno.test("encodeAck() keeps a long message on one line within the limit", () => {
  const line = encodeAck({ ok: false, message: "a\r\nb".repeat(1000) });
  assert.equal(line.length, MAX_ACK_SIZE);
  assert.equal(line.indexOf(0x0a), MAX_ACK_SIZE - 1);
});

Deno.test("parseAck() rejects lines that are neither OK nor ERR", () => {
  const lines = [
    "",
    "OK",
    "OK x 00000000 a.jpg",
    "OK 1 a.jpg",
    "OK 1 0000000g a.jpg",
    "OK 1 00000000",
    "ok 1 00000000 a",
    "ERR",
    "HTTP/1.1 200 OK",
  ];
  for (const line of lines) {
    assert.throws(() => parseAck(utf8(line)), SyntaxError, line);
  }
});

Deno.test("LineReader rejects a line longer than its limit", async () => {
  const lines = new LineReader(bytesSource(utf8("x".repeat(100) + "\n")), 50);
  await assert.rejects(lines.readLine(), RangeError);
});

Deno.test("LineReader reports input that ends inside a line", async () => {
  const lines = new LineReader(bytesSource(utf8("OK 1 a\nOK 2")), 50);
  assert.deepEqual(await lines.readLine(), utf8("OK 1 a"));
  await assertProtocolError(lines.readLine(), "truncated");
});

const refusals: [string, Refusal][] = [
  ["Server busy: no turn within 30 s: 256 frames in progress", "busy"],
  ["Server busy: Too many open files (os error 24)", "busy"],
  ["Authentication required: send the token first", "auth"],
  ["Authentication failed: wrong token", "other"],
  ["Invalid name: it is empty", "other"],
  // Only the opening words with their colon make the code, not a name that happens to start so.
  ["Server busyness is not a refusal", "other"],
];

for (const [message, refusal] of refusals) {
  Deno.test(`refusalOf() reads ${JSON.stringify(message.slice(0, 30))} as ${refusal}`, () => {
    assert.equal(refusalOf(message), refusal);
    const answer = parseAck(encodeAck({ ok: false, message }).subarray(0, -1));
    assert.equal(!answer.ok && refusalOf(answer.message), refusal);
  });
}
