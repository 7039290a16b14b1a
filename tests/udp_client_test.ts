import assert from "node:assert/strict";
import { bytesSource } from "../protocol.ts";
import { type LineResult, readLines, trimLine } from "../udp_client.ts";
import { concat, utf8 } from "./helpers.ts";

const trims: [string, Uint8Array, Uint8Array][] = [
  ["ASCII spaces and tabs at both ends", utf8(" \thello world\t "), utf8("hello world")],
  ["a carriage return left by CRLF input", utf8("line\r"), utf8("line")],
  ["full-width spaces, as Python's strip() does", utf8("\u3000你好\u3000"), utf8("你好")],
  ["a line of spaces to nothing", utf8("   "), new Uint8Array(0)],
  [
    "a line that is not UTF-8 only of its ASCII whitespace, its bytes kept",
    concat(utf8(" \t"), new Uint8Array([0xff, 0x20, 0xc3]), utf8("\r")),
    new Uint8Array([0xff, 0x20, 0xc3]),
  ],
];

for (const [what, line, trimmed] of trims) {
  Deno.test(`trimLine() trims ${what}`, () => {
    assert.deepEqual(trimLine(line), trimmed);
  });
}

async function collect(input: Uint8Array, maxLineSize: number): Promise<LineResult[]> {
  const results: LineResult[] = [];
  // Reads of three bytes put line ends and overlong lines across reads.
  for await (const result of readLines(bytesSource(input, [3]), maxLineSize)) results.push(result);
  return results;
}

Deno.test("readLines() splits at newlines and keeps a last line without one", async () => {
  assert.deepEqual(await collect(utf8("one\n\ntwo\nthree"), 10), [
    { ok: true, line: utf8("one") },
    { ok: true, line: utf8("") },
    { ok: true, line: utf8("two") },
    { ok: true, line: utf8("three") },
  ]);
});

Deno.test("readLines() reports an overlong line by its size and goes on after it", async () => {
  const long = "x".repeat(10_000);
  assert.deepEqual(await collect(utf8(`short\n${long}\nafter\n${long}`), 8), [
    { ok: true, line: utf8("short") },
    { ok: false, tooLong: 10_000 },
    { ok: true, line: utf8("after") },
    { ok: false, tooLong: 10_000 },
  ]);
});
