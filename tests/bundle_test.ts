/**
 * `deno task bundle` output: each file must run alone, copied into an empty
 * folder, with the same flags as the `.ts` script.
 */
import assert from "node:assert/strict";
import { fakeJpeg, listFolder, ROOT, Spawned, TempDirs } from "./helpers.ts";

const SCRIPTS = ["server", "client", "udp_server", "udp_client"];

const made: string[] = [];
globalThis.addEventListener("unload", () => {
  for (const folder of made) Deno.removeSync(folder, { recursive: true });
});

/**
 * Builds the bundles once, with `deno task bundle`'s own command line but
 * into a temporary folder, so that the tests write nothing into the
 * checkout; then copies each into a folder of its own.
 */
const bundled = (async () => {
  const tasks = JSON.parse(await Deno.readTextFile(`${ROOT}deno.json`)).tasks;
  const args: string[] = tasks.bundle.split(" ").slice(1);
  assert.equal(args[args.indexOf("--outdir") + 1], "dist", "deno task bundle writes to dist/");
  const dist = await Deno.makeTempDir({ prefix: "bundle_dist_" });
  made.push(dist);
  args[args.indexOf("--outdir") + 1] = dist;
  const build = await new Deno.Command(Deno.execPath(), { args, cwd: ROOT, stdin: "null" })
    .output();
  assert.equal(build.code, 0, new TextDecoder().decode(build.stderr));
  const folders: Record<string, string> = {};
  for (const script of SCRIPTS) {
    folders[script] = await Deno.makeTempDir({ prefix: `bundle_${script}_` });
    made.push(folders[script]);
    await Deno.copyFile(`${dist}/${script}.js`, `${folders[script]}/${script}.js`);
  }
  return folders;
})();

function runBundle(folder: string, script: string, flags: string[], args: string[]): Spawned {
  return new Spawned(Deno.execPath(), ["run", ...flags, `${script}.js`, ...args], { cwd: folder });
}

Deno.test("deno task bundle writes four files that import nothing but the runtime", async () => {
  const folders = await bundled;
  for (const script of SCRIPTS) {
    const source = await Deno.readTextFile(`${folders[script]}/${script}.js`);
    const imports = [...source.matchAll(/^import .* from "([^"]+)";$/gm)].map((m) => m[1]);
    assert.ok(imports.length > 0, script);
    for (const specifier of imports) assert.match(specifier, /^node:/, `${script}: ${specifier}`);
    assert.doesNotMatch(source, /from "\.{1,2}\/(protocol|lib)/, script);
  }
});

Deno.test("the bundled server and client upload a folder, each run alone in an empty folder", async () => {
  const folders = await bundled;
  await using temporary = new TempDirs();
  const input = await temporary.make();
  const files = new Map([["one", fakeJpeg(1000)], ["two", fakeJpeg(300_000)]]);
  for (const [name, bytes] of files) await Deno.writeFile(`${input}/${name}.jpg`, bytes);
  await using server = runBundle(folders.server, "server", [
    "--allow-net=127.0.0.1",
    "--allow-read=uploads",
    "--allow-write=uploads",
  ], ["--host", "127.0.0.1", "--port", "0"]);
  const port = (await server.waitFor(/listening on 127\.0\.0\.1:(\d+)/))[1];
  await using client = runBundle(folders.client, "client", [
    `--allow-net=127.0.0.1:${port}`,
    `--allow-read=${input}`,
  ], ["--port", port, input]);
  assert.equal((await client.wait()).code, 0, client.stderr);
  assert.match(client.stdout, /confirmed 2 of 2 files/);
  assert.deepEqual(await listFolder(`${folders.server}/uploads`), ["one.jpg", "two.jpg"]);
  for (const [name, bytes] of files) {
    assert.deepEqual(await Deno.readFile(`${folders.server}/uploads/${name}.jpg`), bytes);
  }
  assert.equal((await server.stop()).code, 0);
});

Deno.test("the bundled UDP client and server talk, each run alone in an empty folder", async () => {
  const folders = await bundled;
  await using server = runBundle(folders.udp_server, "udp_server", ["--allow-net=127.0.0.1"], [
    "--host",
    "127.0.0.1",
    "--port",
    "0",
  ]);
  const port = (await server.waitFor(/listening on 127\.0\.0\.1:(\d+)/))[1];
  await using client = runBundle(folders.udp_client, "udp_client", [
    `--allow-net=127.0.0.1:${port},0.0.0.0:0`,
  ], ["--port", port, "from the bundle", "第二"]);
  assert.equal((await client.wait()).code, 0, client.stderr);
  await server.waitFor(/第二\n/);
  assert.equal(server.stdout.replace(/^listening.*\n/, ""), "from the bundle\n第二\n");
});

Deno.test("the bundled UDP server run without --unstable-net says it receives the slow way", async () => {
  const folders = await bundled;
  for (const fast of [false, true]) {
    await using server = runBundle(folders.udp_server, "udp_server", [
      ...(fast ? ["--unstable-net"] : []),
      "--allow-net=127.0.0.1",
    ], ["--host", "127.0.0.1", "--port", "0"]);
    await server.waitFor(/listening on 127\.0\.0\.1:\d+\n/);
    assert.equal((await server.stop()).code, 0);
    const notice =
      "udp_server.js: Receiving through node:dgram, about a quarter as fast as with --unstable-net: add the flag if floods may come\n";
    assert.equal(server.stderr, `${fast ? "" : notice}SIGTERM: received 0 datagrams, printed 0\n`);
  }
});

Deno.test("a bundled script names itself by its own file name in what it says", async () => {
  const folders = await bundled;
  await using client = runBundle(folders.client, "client", [], ["--bogus"]);
  assert.equal((await client.wait()).code, 2);
  assert.equal(client.stderr, "client.js: Unknown option '--bogus'\nTry 'client.js --help'.\n");
});
