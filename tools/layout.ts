#!/usr/bin/env -S deno run --allow-read --allow-env
/**
 * Measures the layout goals with the TypeScript parser: lines per function
 * (its own, nested functions not counted, and in all) and lines per file.
 *
 * Run `deno task sizes` from the checkout: it prints
 * what is over a limit and exits 1 when anything is, 0 otherwise.
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

/** The limits; `@default`s are the goals. */
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
 * import { measure } from "./sizes.ts";
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

async function main(): Promise<number> {
  const root = new URL("../", import.meta.url).pathname;
  const files = Deno.args.length > 0 ? Deno.args : await sourceFiles(root);
  const found: string[] = [];
  let longest = { name: "", size: 0 };
  for (const file of files) {
    const source = await Deno.readTextFile(Deno.args.length > 0 ? file : `${root}${file}`);
    found.push(...overLimits(file, source));
    for (const f of measure(source, file)) {
      if (f.own > longest.size) longest = { name: `${file}:${f.line} ${f.name}`, size: f.own };
    }
  }
  for (const line of found) console.log(line);
  console.log(
    `${files.length} files, ${found.length} over a limit; most own lines: ${longest.size} (${longest.name})`,
  );
  return found.length > 0 ? 1 : 0;
}

if (import.meta.main) Deno.exit(await main());
