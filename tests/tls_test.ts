/** TLS between our client and server, with a certificate the test makes with openssl. */
import assert from "node:assert/strict";
import { collectFiles, uploadFiles } from "../client.ts";
import { startServer } from "../server.ts";
import { denoScript, listFolder, makeImages, TempDirs, withServerAndImages } from "./helpers.ts";

const made: string[] = [];
globalThis.addEventListener("unload", () => {
  for (const path of made) Deno.removeSync(path, { recursive: true });
});

/** Runs openssl with these arguments, failing the test with its message. */
async function openssl(args: string[]): Promise<void> {
  const { success, stderr } = await new Deno.Command("openssl", { args }).output();
  assert.ok(success, `openssl is needed for the TLS tests: ${new TextDecoder().decode(stderr)}`);
}

/** A private CA and a server certificate it signed for 127.0.0.1 and localhost, valid for a day. */
const certificate = (async () => {
  const dir = await Deno.makeTempDir({ prefix: "tls_test_" });
  made.push(dir);
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  await openssl([
    "req",
    "-x509",
    ...ec,
    "-days",
    "1",
    "-subj",
    "/CN=Test CA",
    "-keyout",
    `${dir}/ca.key`,
    "-out",
    `${dir}/ca.pem`,
  ]);
  await openssl([
    "req",
    ...ec,
    "-subj",
    "/CN=localhost",
    "-keyout",
    `${dir}/key.pem`,
    "-out",
    `${dir}/server.csr`,
  ]);
  await Deno.writeTextFile(
    `${dir}/server.ext`,
    "basicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
  );
  await openssl([
    "x509",
    "-req",
    "-in",
    `${dir}/server.csr`,
    "-CA",
    `${dir}/ca.pem`,
    "-CAkey",
    `${dir}/ca.key`,
    "-CAcreateserial",
    "-days",
    "1",
    "-extfile",
    `${dir}/server.ext`,
    "-out",
    `${dir}/cert.pem`,
  ]);
  return {
    dir,
    ca: await Deno.readTextFile(`${dir}/ca.pem`),
    cert: await Deno.readTextFile(`${dir}/cert.pem`),
    key: await Deno.readTextFile(`${dir}/key.pem`),
  };
})();

/** Runs `body` against a TLS server with the test's certificate, as `withServerAndImages`. */
async function withTlsServer(body: Parameters<typeof withServerAndImages>[1]): Promise<void> {
  const { cert, key } = await certificate;
  await withServerAndImages([10, 100_000, 700_000], body, { tls: { cert, key } });
}

Deno.test("uploadFiles() over TLS delivers every file to a server whose private CA it trusts", async () => {
  const { ca } = await certificate;
  await withTlsServer(async (port, input, out, images) => {
    const { files } = await collectFiles([input]);
    const report = await uploadFiles(files, { port, tls: { caCerts: [ca] } });
    assert.deepEqual(report.failed, []);
    for (const [name, bytes] of images) {
      assert.deepEqual(await Deno.readFile(`${out}/${name}.jpg`), bytes);
    }
  });
});

Deno.test("uploadFiles() over TLS refuses a server whose certificate it does not trust, and does not retry", async () => {
  await withTlsServer(async (port, input, out) => {
    const { files } = await collectFiles([input]);
    const report = await uploadFiles(files, { port, tls: {} });
    assert.equal(report.confirmed, 0);
    assert.match(report.failed[0].message!, /certificate|UnknownIssuer/i);
    assert.equal(report.failed[0].transient, false, "no try can fix a certificate");
    assert.deepEqual(await listFolder(out), []);
  });
});

/** The one-line self-signed certificate tutorials make, marked CA:TRUE by openssl's defaults. */
async function oneLiner(dir: string): Promise<{ cert: string; key: string }> {
  await openssl([
    ..."req -x509 -newkey rsa:2048 -nodes -keyout key.pem -out cert.pem -subj /CN=localhost"
      .split(" "),
    "-addext",
    "subjectAltName=DNS:localhost,IP:127.0.0.1",
  ].map((arg) => arg.replace(/^(key|cert)\.pem$/, `${dir}/$1.pem`)));
  return {
    cert: await Deno.readTextFile(`${dir}/cert.pem`),
    key: await Deno.readTextFile(`${dir}/key.pem`),
  };
}

Deno.test("client.ts --ca accepts the tutorials' one-line certificate when the server presents exactly it, and refuses another", async () => {
  await using temporary = new TempDirs();
  const [serverDir, otherDir] = [await temporary.make(), await temporary.make()];
  const tls = await oneLiner(serverDir);
  await oneLiner(otherDir);
  assert.match(tls.cert, /BEGIN CERTIFICATE/);
  await withServerAndImages([10, 70_000], async (port, input, out, images) => {
    const upload = (ca: string) =>
      denoScript("client.ts", ["--allow-net=127.0.0.1", `--allow-read=${input},${ca}`], [
        `--port=${port}`,
        `--ca=${ca}`,
        input,
      ]);
    {
      await using other = upload(`${otherDir}/cert.pem`);
      assert.equal((await other.wait()).code, 1);
      assert.match(
        other.stderr,
        /Cannot connect to 127\.0\.0\.1:\d+: the server's certificate is not the one given with --ca, nor signed by it/,
      );
      assert.deepEqual(await listFolder(out), [], "nothing written for a certificate not given");
    }
    await using right = upload(`${serverDir}/cert.pem`);
    assert.equal((await right.wait()).code, 0, right.stderr);
    for (const [name, bytes] of images) {
      assert.deepEqual(await Deno.readFile(`${out}/${name}.jpg`), bytes);
    }
  }, { tls });
});

Deno.test("uploadFiles() still checks a proper CA's chain: a one-line certificate it was not given is refused", async () => {
  const { ca } = await certificate;
  await using temporary = new TempDirs();
  const tls = await oneLiner(await temporary.make());
  await withServerAndImages([10], async (port, input, out) => {
    const { files } = await collectFiles([input]);
    const report = await uploadFiles(files, { port, tls: { caCerts: [ca] } });
    assert.equal(report.confirmed, 0);
    assert.match(report.failed[0].message!, /^Cannot connect to 127\.0\.0\.1:\d+: /);
    assert.deepEqual(await listFolder(out), []);
  }, { tls });
});

Deno.test("the README's openssl command makes a certificate that client.ts --ca accepts", async () => {
  const readme = await Deno.readTextFile(new URL("../README.md", import.meta.url));
  const command = readme.match(/^openssl req (?:.*\\\n)*.*$/m)?.[0];
  assert.ok(command, "the README shows an openssl command");
  const args = command.replaceAll("\\\n", " ").split(/\s+/).slice(1)
    .map((arg) =>
      arg.replaceAll("files.example.org", "localhost").replace("192.0.2.10", "127.0.0.1")
    );
  await using temporary = new TempDirs();
  const dir = await temporary.make();
  const { success, stderr } = await new Deno.Command("openssl", { args, cwd: dir }).output();
  assert.ok(success, new TextDecoder().decode(stderr));
  const cert = await Deno.readTextFile(`${dir}/cert.pem`);
  const tls = { cert, key: await Deno.readTextFile(`${dir}/key.pem`) };
  await withServerAndImages([10], async (port, input, out, images) => {
    const { files } = await collectFiles([input]);
    for (const host of ["localhost", "127.0.0.1"]) {
      const report = await uploadFiles(files, { host, port, tls: { caCerts: [cert] } });
      assert.deepEqual(report.failed, [], host);
    }
    assert.deepEqual(await listFolder(out), [...images.keys()].map((name) => `${name}.jpg`));
  }, { tls });
});

Deno.test("a plain client gets nothing saved by a TLS server, which goes on serving", async () => {
  const { ca } = await certificate;
  await withTlsServer(async (port, input, out) => {
    const { files } = await collectFiles([input]);
    const plain = await uploadFiles(files, { port, retries: 0, timeout: 2000 });
    assert.equal(plain.confirmed, 0);
    assert.deepEqual(await listFolder(out), []);
    const secure = await uploadFiles(files, { port, tls: { caCerts: [ca] } });
    assert.equal(secure.confirmed, 3);
  });
});

Deno.test("uploadFiles() without TLS, told off by a TLS server, says to add --tls and does not retry", async () => {
  const { cert, key } = await certificate;
  const rejected: string[] = [];
  await withServerAndImages([10], async (port, input) => {
    const { files } = await collectFiles([input]);
    const report = await uploadFiles(files, { port });
    assert.deepEqual(report.failed.map(({ message, transient }) => ({ message, transient })), [{
      message: "The server speaks TLS: add --tls, or --ca FILE",
      transient: false,
    }]);
  }, {
    tls: { cert, key },
    onEvent: (event) => event.type === "rejected" && rejected.push(event.message),
  });
  assert.deepEqual(rejected, [
    "Not a TLS client: received corrupt message of type InvalidContentType",
  ]);
});

Deno.test("uploadFiles() with TLS says when the server does not speak it, and does not retry", async () => {
  const { ca } = await certificate;
  await withServerAndImages([10], async (port, input) => {
    const { files } = await collectFiles([input]);
    const report = await uploadFiles(files, { port, tls: { caCerts: [ca] } });
    assert.match(
      report.failed[0].message!,
      /^Cannot connect to 127\.0\.0\.1:\d+: the server does not speak TLS \(received corrupt message/,
    );
    assert.equal(report.failed[0].transient, false);
  });
});

Deno.test("a TLS client that exits between frames without close_notify is no error", async () => {
  const { cert, key, dir } = await certificate;
  await using temporary = new TempDirs();
  const out = await temporary.make();
  const rejected: string[] = [];
  await using server = await startServer({
    host: "127.0.0.1",
    port: 0,
    out,
    tls: { cert, key },
    onEvent: (event) => event.type === "rejected" && rejected.push(event.message),
  });
  // close() leaves close_notify to a background task, which the exit cuts short.
  const script = `
    import { encodeFrame } from "${new URL("../protocol.ts", import.meta.url)}";
    const conn = await Deno.connectTls({
      hostname: "127.0.0.1",
      port: ${server.addr.port},
      caCerts: [await Deno.readTextFile("${dir}/ca.pem")],
    });
    await conn.write(encodeFrame("abrupt", new Uint8Array([0xff, 0xd8, 0xff, 1])));
    await conn.read(new Uint8Array(100));
    conn.close();
    Deno.exit(0);
  `;
  const child = await new Deno.Command(Deno.execPath(), { args: ["eval", script] }).output();
  assert.ok(child.success, new TextDecoder().decode(child.stderr));
  assert.deepEqual(await listFolder(out), ["abrupt.jpg"]);
  // The server sees the cut within milliseconds; shutting down sooner would hide it.
  await new Promise((resolve) => setTimeout(resolve, 500));
  assert.deepEqual(rejected, []);
  assert.equal(server.stats.errors, 0);
});

Deno.test("server.ts --tls-cert/--tls-key and client.ts --ca upload over TLS", async () => {
  const { dir } = await certificate;
  await using temporary = new TempDirs();
  const input = await temporary.make();
  const out = await temporary.make();
  const images = await makeImages(input, [5000, 6000]);
  await using server = denoScript("server.ts", [
    "--allow-net=127.0.0.1",
    `--allow-read=${out},${dir}`,
    `--allow-write=${out}`,
  ], [
    "--host=127.0.0.1",
    "--port=0",
    `--out=${out}`,
    `--tls-cert=${dir}/cert.pem`,
    `--tls-key=${dir}/key.pem`,
  ]);
  const port = (await server.waitFor(/listening on 127\.0\.0\.1:(\d+)/))[1];
  await using client = denoScript("client.ts", [
    "--allow-net=127.0.0.1",
    `--allow-read=${input},${dir}`,
  ], [
    `--port=${port}`,
    `--ca=${dir}/ca.pem`,
    input,
  ]);
  assert.equal((await client.wait()).code, 0, client.stderr);
  for (const [name, bytes] of images) {
    assert.deepEqual(await Deno.readFile(`${out}/${name}.jpg`), bytes);
  }
  assert.equal((await server.stop()).code, 0);
  assert.equal(server.stderr.match(/^rejected .*/m)?.[0], undefined, "a clean end is no error");
  assert.match(server.stdout, /stopped: 2 files .* 0 errors/);
});
