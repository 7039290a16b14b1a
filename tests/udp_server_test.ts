import assert from "node:assert/strict";
import { formatDatagram, LineBatch } from "../udp_server.ts";
import { concat, random, utf8 } from "./helpers.ts";

const datagrams: [string, Uint8Array, string][] = [
  ["plain text as is", utf8("hello world"), "hello world"],
  ["Chinese as is", utf8("你好，世界"), "你好，世界"],
  ["an empty datagram as an empty line", new Uint8Array(0), ""],
  ["a newline escaped", utf8("a\nb"), "a\\nb"],
  ["a carriage return and a tab escaped", utf8("\r\t"), "\\r\\t"],
  ["an escape sequence escaped", utf8("\x1b[2J"), "\\x1b[2J"],
  ["DEL and C1 controls escaped", utf8("\x7f\u0085\u009b"), "\\x7f\\x85\\x9b"],
  ["bidirectional overrides escaped", utf8("a\u202eb\u2066"), "a\\u202eb\\u2066"],
  ["line separators escaped", utf8("\u2028\u2029"), "\\u2028\\u2029"],
  ["invalid UTF-8 replaced", new Uint8Array([0x41, 0xff, 0xc3]), "A\ufffd\ufffd"],
  ["a backslash as is", utf8("C:\\dir"), "C:\\dir"],
];

for (const [what, payload, line] of datagrams) {
  Deno.test(`formatDatagram() prints ${what}`, () => {
    assert.equal(formatDatagram(payload), line);
  });
}

Deno.test("LineBatch writes exactly what formatDatagram() prints, one line each", () => {
  const next = random(7);
  const payloads = Array.from({ length: 3000 }, (_, i) => {
    const length = i === 0 ? 65_507 : Math.floor(next() * 200);
    // Mostly printable ASCII, sometimes any byte at all.
    const anyByte = next() < 0.2;
    return Uint8Array.from({ length }, () => anyByte ? next() * 256 : 0x20 + next() * 95);
  });
  const written: Uint8Array[] = [];
  const batch = new LineBatch((lines) => written.push(lines.slice()));
  for (const payload of payloads) batch.add(payload);
  batch.flush();
  assert.ok(written.length > 1, "a full buffer is written before it overflows");
  const expected = payloads.map((p) => formatDatagram(p) + "\n").join("");
  assert.equal(new TextDecoder().decode(concat(...written)), expected);
});

Deno.test("LineBatch writes nothing when nothing was added", () => {
  let writes = 0;
  new LineBatch(() => writes++).flush();
  assert.equal(writes, 0);
});
