/**
 * The PROXY protocol header (`--proxy-protocol`): what a balancer sends is
 * read with its limits and deadline, the server sees the client it names,
 * and a connection without one is refused and logged. The test behind a
 * real HAProxy needs Debian's haproxy and root (it binds 127.0.0.5).
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  type ByteSource,
  bytesSource,
  concatBytes,
  encodeFrame,
  parseCidr,
  ProtocolError,
  readProxyHeader,
} from "../protocol.ts";
import { type ServerEvent, startServer } from "../server.ts";
import {
  answerTo,
  fakeJpeg,
  freePort,
  listFolder,
  spawnClient,
  Spawned,
  spawnServer,
  TempDirs,
  utf8,
  waitForListener,
} from "./helpers.ts";

/** A version 2 header: PROXY over TCP and IPv4 (or LOCAL), with `tlvs` bytes of TLVs after. */
function v2(options: { local?: boolean; family?: number; tlvs?: number } = {}): Uint8Array {
  const family = options.family ?? 0x11;
  const addresses = family === 0x21 ? 36 : family === 0x11 ? 12 : 0;
  const length = addresses + (options.tlvs ?? 0);
  const header = new Uint8Array(16 + length);
  header.set([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
  header[12] = options.local ? 0x20 : 0x21;
  header[13] = family;
  const view = new DataView(header.buffer);
  view.setUint16(14, length);
  if (family === 0x11) {
    header.set([192, 0, 2, 7, 198, 51, 100, 1], 16);
    view.setUint16(24, 51234);
    view.setUint16(26, 9999);
  }
  if (family === 0x21) {
    view.setUint16(16, 0x2001);
    view.setUint16(18, 0xdb8);
    view.setUint16(30, 7);
    view.setUint16(48, 40000);
  }
  return header;
}

const FRAME_START = utf8("0000000000000036");
const valid: [string, Uint8Array, string | undefined][] = [
  ["v1 TCP4", utf8("PROXY TCP4 192.0.2.7 198.51.100.1 51234 9999\r\n"), "192.0.2.7:51234"],
  ["v1 TCP6", utf8("PROXY TCP6 2001:db8::7 2001:db8::1 40000 9999\r\n"), "2001:db8::7:40000"],
  ["v1 UNKNOWN, the balancer's own", utf8("PROXY UNKNOWN\r\n"), undefined],
  ["v2 PROXY TCP4", v2(), "192.0.2.7:51234"],
  ["v2 PROXY TCP6", v2({ family: 0x21 }), "2001:db8:0:0:0:0:0:7:40000"],
  ["v2 PROXY TCP4 with 200 bytes of TLVs", v2({ tlvs: 200 }), "192.0.2.7:51234"],
  ["v2 LOCAL, a health check", v2({ local: true }), undefined],
  ["v2 UNSPEC", v2({ family: 0x00 }), undefined],
];
for (const [what, header, source] of valid) {
  Deno.test(`readProxyHeader() reads ${what} and keeps the frame behind it`, async () => {
    // One byte a read: no header may be read past, whatever the reads return.
    for (const chunks of [undefined, [1]]) {
      const read = await readProxyHeader(
        bytesSource(new Uint8Array([...header, ...FRAME_START]), chunks),
        1000,
      );
      assert.ok(read !== null);
      const address = read.source && `${read.source.hostname}:${read.source.port}`;
      assert.equal(address, source);
      // What came with the header's last read, then the rest of the stream.
      assert.ok(FRAME_START.subarray(0, read.rest.length).every((b, i) => b === read.rest[i]));
    }
  });
}

const invalid: [string, Uint8Array, RegExp][] = [
  ["a frame with no header", utf8("0000000000000036cat"), /^Invalid PROXY header: "0000/],
  ["an HTTP request", utf8("GET / HTTP/1.1\r\n\r\n"), /^Invalid PROXY header: "GET \/ HTTP/],
  ["a v1 address out of range", utf8("PROXY TCP4 300.0.0.1 10.0.0.1 1 2\r\n"), /"PROXY TCP4 300/],
  ["a v1 port out of range", utf8("PROXY TCP4 10.0.0.2 10.0.0.1 65536 2\r\n"), /65536/],
  ["a v1 port with a leading zero", utf8("PROXY TCP4 10.0.0.2 10.0.0.1 080 2\r\n"), / 080 /],
  ["an unknown v1 family", utf8("PROXY TCP5 10.0.0.2 10.0.0.1 1 2\r\n"), /TCP5/],
  ["a v1 line without CR", utf8("PROXY TCP4 10.0.0.2 10.0.0.1 1 2\n"), /\\n"$/],
  ["a v1 line over 107 bytes", utf8(`PROXY UNKNOWN ${"x".repeat(120)}\r\n`), /x"…$/],
  ["a v2 header of version 3", v2().map((b, i) => i === 12 ? 0x31 : b), /version 3, command 1/],
  ["a v2 header with command 2", v2().map((b, i) => i === 12 ? 0x22 : b), /command 2/],
  ["a v2 header over UDP", v2({ family: 0x12 }), /family and transport 0x12/],
  ["a v2 header of 70,000 bytes", v2({ tlvs: 65_000 }), /version 2 header of 65028 bytes/],
  [
    "a v2 signature off by a byte",
    v2().map((b, i) => i === 7 ? 0x52 : b),
    /"\\r\\n\\r\\n\\u0000\\r\\nRUIT/,
  ],
];
for (const [what, bytes, message] of invalid) {
  Deno.test(`readProxyHeader() refuses ${what}`, async () => {
    await assert.rejects(readProxyHeader(bytesSource(bytes), 1000), (error) => {
      assert.ok(error instanceof ProtocolError, String(error));
      assert.equal(error.code, "header");
      assert.match(error.message, message);
      return true;
    });
  });
}

Deno.test("readProxyHeader() cut at any byte says the connection ended inside it, or null before its first", async () => {
  const headers = [valid[0][1], valid[3][1], v2({ tlvs: 40 })];
  await fc.assert(fc.asyncProperty(
    fc.constantFrom(...headers).chain((header) =>
      fc.tuple(fc.constant(header), fc.integer({ min: 0, max: header.length - 1 }))
    ),
    async ([header, cut]) => {
      const reading = readProxyHeader(bytesSource(header.subarray(0, cut)), 1000);
      if (cut === 0) return assert.equal(await reading, null);
      await assert.rejects(reading, (error) => {
        assert.ok(error instanceof ProtocolError);
        assert.equal(error.code, "truncated");
        return true;
      });
    },
  ));
});

Deno.test("readProxyHeader() gives up on a header that never comes, at its deadline", async () => {
  const silent: ByteSource = { read: () => new Promise(() => {}) };
  await assert.rejects(readProxyHeader(silent, 50), (error) => {
    assert.ok(error instanceof ProtocolError);
    assert.equal(error.code, "timeout");
    assert.match(error.message, /^Timed out waiting for a PROXY header/);
    return true;
  });
});

Deno.test("server with proxyProtocol lets in by the header's address, and refuses a connection without one", async () => {
  await using temporary = new TempDirs();
  const out = await temporary.make();
  const events: ServerEvent[] = [];
  await using server = await startServer({
    host: "127.0.0.1",
    port: 0,
    out,
    proxyProtocol: true,
    // Every connection comes from 127.0.0.1 here, as from a balancer: only the header lets in.
    allow: [parseCidr("192.0.2.0/24")],
    onEvent: (event) => events.push(event),
  });
  const { port } = server.addr;
  const frame = (name: string) => encodeFrame(name, fakeJpeg(100));
  const from = (client: string) => utf8(`PROXY TCP4 ${client} 127.0.0.1 51234 9999\r\n`);
  assert.match((await answerTo(port, concatBytes([from("192.0.2.7"), frame("cat")])))!, /^OK /);
  assert.equal(await answerTo(port, concatBytes([from("10.0.0.1"), frame("cow")])), null);
  assert.equal(await answerTo(port, frame("dog")), null);
  // The balancer's own connection (LOCAL), as HAProxy's health checks send: closed without a word.
  assert.equal(await answerTo(port, v2({ local: true })), null);
  assert.deepEqual(await listFolder(out), ["cat.jpg"]);
  const lines = events.flatMap((event) =>
    event.type === "refused" ? [`${event.peer}: ${event.message}`] : []
  );
  const saved = events.flatMap((event) => event.type === "saved" ? [event.peer] : []);
  assert.deepEqual(saved, ["192.0.2.7:51234"]);
  assert.equal(lines.length, 2);
  assert.equal(lines[0], "10.0.0.1:51234: Not in an --allow block: dropped");
  assert.match(lines[1], /^127\.0\.0\.1:\d+: Invalid PROXY header: "0000/);
});

/** HAProxy in tcp mode in front of one server, sending PROXY v2 from 127.0.0.5, with health checks. */
function haproxyConfig(front: number, back: number): string {
  return `global
  maxconn 256
defaults
  mode tcp
  timeout connect 2s
  timeout client 30s
  timeout server 30s
frontend uploads
  bind 127.0.0.1:${front}
  default_backend receivers
backend receivers
  option redispatch
  server r1 127.0.0.1:${back} send-proxy-v2 source 127.0.0.5 check inter 200ms
`;
}

Deno.test("client.ts through Debian's HAProxy with send-proxy-v2 reaches a server that allows only 127.0.0.1 (haproxy)", async () => {
  await using temporary = new TempDirs();
  const [input, out, etc] = [
    await temporary.make(),
    await temporary.make(),
    await temporary.make(),
  ];
  const images = new Map<string, Uint8Array>();
  for (let i = 1; i <= 30; i++) images.set(`IMG_${String(i).padStart(4, "0")}`, fakeJpeg(i * 997));
  for (const [name, bytes] of images) await Deno.writeFile(`${input}/${name}.jpg`, bytes);
  const { server, port } = await spawnServer(out, ["--proxy-protocol", "--allow", "127.0.0.1/32"]);
  await using _server = server;
  const front = freePort();
  await Deno.writeTextFile(`${etc}/haproxy.cfg`, haproxyConfig(front, port));
  await using haproxy = new Spawned("haproxy", ["-db", "-f", `${etc}/haproxy.cfg`]);
  await waitForListener(front, haproxy);
  await using client = spawnClient(input, ["--port", String(front)]);
  assert.equal((await client.wait()).code, 0, client.stderr);
  assert.match(client.stdout, /confirmed 30 of 30 files/);
  for (const [name, bytes] of images) {
    assert.deepEqual(await Deno.readFile(`${out}/${name}.jpg`), bytes);
  }
  // Straight to the server, with no header: refused, and said so.
  assert.equal(await answerTo(port, encodeFrame("direct", fakeJpeg(10))), null);
  await server.waitFor(/Invalid PROXY header: "0000/, "stderr");
  assert.equal(await listFolder(out).then((names) => names.length), 30);
  // HAProxy's health checks only connect, from 127.0.0.5: none of them is logged.
  assert.doesNotMatch(server.stdout + server.stderr, /127\.0\.0\.5/);
  assert.match(server.stdout, /127\.0\.0\.1:\d+/);
});
