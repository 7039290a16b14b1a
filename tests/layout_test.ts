/** The layout rules of the checkout, measured with the TypeScript parser (tools/layout.ts). */
import assert from "node:assert/strict";
import {
  exportsWithoutExample,
  findCycle,
  importsOf,
  layoutProblems,
  measure,
  overLimits,
} from "../tools/layout.ts";
import { ROOT } from "./helpers.ts";

const functions: [string, string, [string, number, number][]][] = [
  ["a plain function", "function a() {\n  return 1;\n}\n", [["a", 3, 3]]],
  [
    "a method, named after its class",
    "class K {\n  m() {\n    return 1;\n  }\n}\n",
    [["K.m", 3, 3]],
  ],
  [
    "an arrow in a variable, not counted in its parent's own lines",
    "function outer() {\n  const inner = () => {\n    return 1;\n  };\n  return inner;\n}\n",
    [["outer", 6, 3], ["inner", 3, 3]],
  ],
  [
    "a callback, counted as a function of its own",
    "function run() {\n  [1].map((x) => {\n    return x;\n  });\n}\n",
    [["run", 5, 2], ["<anonymous>", 3, 3]],
  ],
  ["a declaration without a body, not a function", "declare function f(): void;\n", []],
];

for (const [what, source, expected] of functions) {
  Deno.test(`measure() sizes ${what}`, () => {
    assert.deepEqual(measure(source).map((f) => [f.name, f.total, f.own]), expected);
  });
}

Deno.test("overLimits() names a function over 60 lines of its own and a file over 800", () => {
  const long = `function long() {\n${"  1;\n".repeat(61)}}\n`;
  assert.deepEqual(overLimits("a.ts", long), ["a.ts:1 long: 63 own, 63 in all"]);
  const big = "// x\n".repeat(801);
  assert.deepEqual(overLimits("b.ts", big), ["b.ts: 801 lines (limit 800)"]);
  assert.deepEqual(overLimits("c.ts", long, { own: 70 }), []);
});

Deno.test("exportsWithoutExample() names exports whose JSDoc shows no use", () => {
  const source = [
    "/**\n * Shown.\n *\n * @example\n * ```ts\n * f();\n * ```\n */\nexport function f() {}",
    "/** Not shown. */\nexport function g() {}",
    "export const h = 1;",
    "function private_() {}",
  ].join("\n");
  assert.deepEqual(exportsWithoutExample(source), ["g", "h"]);
});

Deno.test("importsOf() resolves relative imports and re-exports, and leaves packages out", () => {
  const source = [
    'import { a } from "./a.ts";',
    'export { b } from "../lib/b.ts";',
    'import assert from "node:assert/strict";',
    '// import { c } from "./c.ts";',
  ].join("\n");
  assert.deepEqual(importsOf(source, "protocol/x.ts"), ["protocol/a.ts", "lib/b.ts"]);
});

Deno.test("findCycle() finds a cycle through three modules", () => {
  const imports = new Map([["a", ["b"]], ["b", ["c"]], ["c", ["a"]], ["d", ["a"]]]);
  assert.deepEqual(findCycle(imports), ["a", "b", "c", "a"]);
});

Deno.test("the checkout keeps every layout rule: sizes, an example on each export, no cycle", async () => {
  assert.deepEqual(await layoutProblems(ROOT), []);
});
