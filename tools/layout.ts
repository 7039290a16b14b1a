#!/usr/bin/env -S deno run --allow-read --allow-env
/**
 * Checks the layout with the TypeScript parser: lines per function (its own,
 * nested functions not counted, and in all) and per file, a running example
 * on every export of the modules behind `protocol.ts`, and no import cycle.
 *
 * Run `deno task layout` from the checkout: it prints what breaks a rule and
 * exits 1 when anything does, 0 otherwise.
 *
 * @module
 */
import ts from "typescript";

/** One function-like node: a function, method, accessor or arrow. */
export interface FunctionSize {
  /** `Class.method`, the function's or variable's name, or `<anonymous>`. */
  name: string;
  /** 1-based line where it starts (after its JSDoc). */
  line: number;
  /** Lines from its first to its last, nested functions included. */
  total: number;
  /** `total` less the lines of the functions nested directly in it. */
  own: number;
}

/** The limits; `@default`s are the issue's goals. */
export interface SizeLimits {
  /** Most lines of its own a function may have. @default {60} */
  own?: number;
  /** Most lines a function may have in all. @default {120} */
  total?: number;
  /** Most lines a source file may have. @default {800} */
  file?: number;
}

const DEFAULT_LIMITS: Required<SizeLimits> = { own: 60, total: 120, file: 800 };

function nameOf(node: ts.Node): string {
  const named = node as { name?: ts.Node };
  if (named.name && ts.isIdentifier(named.name)) {
    const owner = node.parent;
    if (ts.isClassLike(owner) && owner.name) return `${owner.name.text}.${named.name.text}`;
    return named.name.text;
  }
  if (ts.isConstructorDeclaration(node) && node.parent.name) {
    return `${node.parent.name.text}.constructor`;
  }
  if (ts.isVariableDeclaration(node.parent) && ts.isIdentifier(node.parent.name)) {
    return node.parent.name.text;
  }
  return "<anonymous>";
}

/**
 * Lists every function-like node of a source text with its sizes.
 *
 * @example A nested arrow counts in the total, not in its parent's own lines
 * ```ts
 * import assert from "node:assert/strict";
 * import { measure } from "./layout.ts";
 *
 * const sizes = measure("function outer() {\n  const inner = () => {\n    return 1;\n  };\n}\n");
 * assert.deepEqual(sizes.map((f) => [f.name, f.total, f.own]), [["outer", 5, 2], ["inner", 3, 3]]);
 * ```
 */
export function measure(source: string, fileName = "source.ts"): FunctionSize[] {
  const file = ts.createSourceFile(fileName, source, ts.ScriptTarget.Latest, true);
  const lineOf = (pos: number) => file.getLineAndCharacterOfPosition(pos).line + 1;
  const found: FunctionSize[] = [];
  const visit = (node: ts.Node, enclosing: FunctionSize | undefined): void => {
    let inner = enclosing;
    if (ts.isFunctionLike(node) && (node as ts.FunctionLikeDeclaration).body) {
      const line = lineOf(node.getStart(file));
      const total = lineOf(node.getEnd()) - line + 1;
      inner = { name: nameOf(node), line, total, own: total };
      if (enclosing) enclosing.own -= total;
      found.push(inner);
    }
    ts.forEachChild(node, (child) => visit(child, inner));
  };
  visit(file, undefined);
  return found;
}

/** A function or file over a limit, as one line for the report. */
export function overLimits(
  file: string,
  source: string,
  limits: SizeLimits = {},
): string[] {
  const { own, total, file: fileLines } = { ...DEFAULT_LIMITS, ...limits };
  const found: string[] = [];
  const lines = source.split("\n").length - (source.endsWith("\n") ? 1 : 0);
  if (lines > fileLines) found.push(`${file}: ${lines} lines (limit ${fileLines})`);
  for (const f of measure(source, file)) {
    if (f.own > own || f.total > total) {
      found.push(`${file}:${f.line} ${f.name}: ${f.own} own, ${f.total} in all`);
    }
  }
  return found;
}

/**
 * The exports of a module that have no `@example` in their JSDoc.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { exportsWithoutExample } from "./layout.ts";
 *
 * const source = "/** Shown.\n * @example\n * x\n *\u002f\nexport const a = 1;\nexport const b = 2;\n";
 * assert.deepEqual(exportsWithoutExample(source), ["b"]);
 * ```
 */
export function exportsWithoutExample(source: string, fileName = "source.ts"): string[] {
  const file = ts.createSourceFile(fileName, source, ts.ScriptTarget.Latest, true);
  const missing: string[] = [];
  for (const statement of file.statements) {
    const modifiers = ts.canHaveModifiers(statement) ? ts.getModifiers(statement) : undefined;
    if (!modifiers?.some((m) => m.kind === ts.SyntaxKind.ExportKeyword)) continue;
    const docs = ts.getJSDocCommentsAndTags(statement).map((doc) => doc.getText()).join("\n");
    if (docs.includes("@example")) continue;
    const named = statement as { name?: ts.Identifier };
    const name = named.name?.text ??
      (ts.isVariableStatement(statement)
        ? statement.declarationList.declarations.map((d) => d.name.getText()).join(", ")
        : "<anonymous>");
    missing.push(name);
  }
  return missing;
}

/**
 * The relative imports of a module, resolved against its path; those in
 * comments (doc examples) are not imports.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { importsOf } from "./layout.ts";
 *
 * const source = 'import { a } from "./a.ts";\nimport type { B } from "../lib/b.ts";\n';
 * assert.deepEqual(importsOf(source, "protocol/x.ts"), ["protocol/a.ts", "lib/b.ts"]);
 * ```
 */
export function importsOf(source: string, path: string): string[] {
  const file = ts.createSourceFile(path, source, ts.ScriptTarget.Latest, true);
  const folder = path.includes("/") ? path.slice(0, path.lastIndexOf("/")) : "";
  const found: string[] = [];
  for (const statement of file.statements) {
    const specifier = (ts.isImportDeclaration(statement) || ts.isExportDeclaration(statement))
      ? statement.moduleSpecifier
      : undefined;
    if (!specifier || !ts.isStringLiteral(specifier) || !specifier.text.startsWith(".")) continue;
    const parts = folder === "" ? [] : folder.split("/");
    for (const part of specifier.text.split("/")) {
      if (part === "..") parts.pop();
      else if (part !== ".") parts.push(part);
    }
    found.push(parts.join("/"));
  }
  return found;
}

/**
 * An import cycle among the modules, as the paths around it, or `undefined`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { findCycle } from "./layout.ts";
 *
 * assert.deepEqual(findCycle(new Map([["a", ["b"]], ["b", ["a"]]])), ["a", "b", "a"]);
 * assert.equal(findCycle(new Map([["a", ["b"]], ["b", []]])), undefined);
 * ```
 */
export function findCycle(imports: Map<string, string[]>): string[] | undefined {
  const done = new Set<string>();
  const visit = (path: string, trail: string[]): string[] | undefined => {
    if (trail.includes(path)) return [...trail.slice(trail.indexOf(path)), path];
    if (done.has(path)) return undefined;
    for (const next of imports.get(path) ?? []) {
      const cycle = visit(next, [...trail, path]);
      if (cycle) return cycle;
    }
    done.add(path);
    return undefined;
  };
  for (const path of imports.keys()) {
    const cycle = visit(path, []);
    if (cycle) return cycle;
  }
  return undefined;
}

/** The source files the goals cover: every `.ts` outside `tests/` and `dist/`. */
export async function sourceFiles(root: string): Promise<string[]> {
  const files: string[] = [];
  const walk = async (folder: string, prefix: string) => {
    for await (const entry of Deno.readDir(folder)) {
      const path = `${prefix}${entry.name}`;
      if (entry.isDirectory && !/^(\.|tests$|dist$|node_modules$)/.test(entry.name)) {
        await walk(`${folder}/${entry.name}`, `${path}/`);
      } else if (entry.isFile && entry.name.endsWith(".ts")) files.push(path);
    }
  };
  await walk(root, "");
  return files.sort();
}

/**
 * Every rule the layout breaks in the checkout at `root`, one line each.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { layoutProblems } from "./layout.ts";
 *
 * assert.ok(Array.isArray(await layoutProblems(new URL("../", import.meta.url).pathname)));
 * ```
 */
export async function layoutProblems(root: string): Promise<string[]> {
  const problems: string[] = [];
  const imports = new Map<string, string[]>();
  for (const file of await sourceFiles(root)) {
    const source = await Deno.readTextFile(`${root}${file}`);
    problems.push(...overLimits(file, source));
    imports.set(file, importsOf(source, file));
    // The modules behind protocol.ts are its public face: each export shows its use.
    if (!/^(protocol|lib)\//.test(file)) continue;
    for (const name of exportsWithoutExample(source, file)) {
      problems.push(`${file}: export ${name} has no @example`);
    }
    if (imports.get(file)!.includes("protocol.ts")) {
      problems.push(`${file}: imports protocol.ts; modules import their siblings`);
    }
  }
  const cycle = findCycle(imports);
  if (cycle) problems.push(`import cycle: ${cycle.join(" -> ")}`);
  return problems;
}

async function main(): Promise<number> {
  const root = new URL("../", import.meta.url).pathname;
  const problems = await layoutProblems(root);
  let longest = { name: "", own: 0 };
  for (const file of await sourceFiles(root)) {
    for (const f of measure(await Deno.readTextFile(`${root}${file}`), file)) {
      if (f.own > longest.own) longest = { name: `${file}:${f.line} ${f.name}`, own: f.own };
    }
  }
  for (const line of problems) console.log(line);
  console.log(
    `${problems.length} problems; the longest function has ${longest.own} lines of its own (${longest.name})`,
  );
  return problems.length > 0 ? 1 : 0;
}

if (import.meta.main) Deno.exit(await main());
