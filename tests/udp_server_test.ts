import assert from "node:assert/strict";
import { DirectPrinter, formatDatagram, HandOver, KernelSocket, LineBatch } from "../protocol.ts";
import { startUdpServer, warmUp } from "../udp_server.ts";
import { concat, random, utf8 } from "./helpers.ts";

const datagrams: [string, Uint8Array, string][] = [
  ["plain text as is", utf8("hello world"), "hello world"],
  ["Chinese as is", utf8("你好，世界"), "你好，世界"],
  ["an empty datagram as an empty line", new Uint8Array(0), ""],
  ["a newline inside escaped", utf8("a\nb"), "a\\nb"],
  ["one trailing newline as the line's end", utf8("hello\n"), "hello"],
  ["one trailing CRLF as the line's end", utf8("hello\r\n"), "hello"],
  ["a second trailing newline escaped", utf8("hello\n\n"), "hello\\n"],
  ["a lone trailing carriage return escaped", utf8("hello\r"), "hello\\r"],
  ["a newline alone as an empty line", utf8("\n"), ""],
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
  let counted = 0;
  const batch = new LineBatch((lines, count) => {
    written.push(lines.slice());
    counted += count;
  });
  for (const payload of payloads) batch.add(payload);
  batch.flush();
  assert.ok(written.length > 1, "a full buffer is written before it overflows");
  assert.equal(counted, payloads.length);
  const expected = payloads.map((p) => formatDatagram(p) + "\n").join("");
  assert.equal(new TextDecoder().decode(concat(...written)), expected);
});

Deno.test("LineBatch writes nothing when nothing was added", () => {
  let writes = 0;
  new LineBatch(() => writes++).flush();
  assert.equal(writes, 0);
});

Deno.test("HandOver passes every datagram in order through many turns of a small ring", () => {
  const next = random(11);
  const writer = new HandOver(1000);
  const reader = new HandOver(writer.buffer);
  const sent: Uint8Array[] = [];
  const taken: Uint8Array[] = [];
  let refused = 0;
  for (let round = 0; round < 2000; round++) {
    const payload = Uint8Array.from({ length: Math.floor(next() * 300) }, () => next() * 256);
    if (writer.put(payload)) sent.push(payload);
    else refused++;
    // The reader lags: it takes only now and then.
    if (next() < 0.3) reader.take((bytes) => taken.push(bytes.slice()));
  }
  reader.take((bytes) => taken.push(bytes.slice()));
  assert.ok(refused > 0, "the ring was full at times");
  assert.ok(sent.length > 1000, `only ${sent.length} datagrams went through`);
  assert.deepEqual(taken, sent);
});

Deno.test("HandOver refuses what does not fit, keeps what it holds, and takes again once read", () => {
  const writer = new HandOver(64);
  const reader = new HandOver(writer.buffer);
  assert.equal(writer.put(new Uint8Array(61)), false, "4 bytes of length and 61 of data");
  assert.ok(writer.put(utf8("first")));
  assert.ok(writer.put(new Uint8Array(40)));
  assert.equal(writer.put(utf8("no room")), false);
  const taken: number[] = [];
  assert.equal(reader.take((bytes) => taken.push(bytes.length)), 2);
  assert.deepEqual(taken, [5, 40]);
  assert.ok(writer.put(new Uint8Array(40)), "room again, at the start");
  assert.equal(reader.take(() => {}), 1);
});

Deno.test("HandOver holds a largest datagram, 65,507 bytes", () => {
  const writer = new HandOver(4 * 1024 * 1024);
  const payload = random(3);
  const big = Uint8Array.from({ length: 65_507 }, () => payload() * 256);
  assert.ok(writer.put(big));
  const taken: Uint8Array[] = [];
  new HandOver(writer.buffer).take((bytes) => taken.push(bytes.slice()));
  assert.deepEqual(taken, [big]);
});

Deno.test("HandOver counts what the reader printed and tells it the writer closed", () => {
  const writer = new HandOver(64);
  const reader = new HandOver(writer.buffer);
  reader.addPrinted(3);
  reader.addPrinted(2);
  assert.equal(writer.printed, 5);
  assert.equal(reader.closed, false);
  writer.close();
  assert.equal(reader.closed, true);
  const started = performance.now();
  reader.wait(5_000, true);
  assert.ok(performance.now() - started < 1_000, "a closed ring does not put its reader to sleep");
});

Deno.test("DirectPrinter writes a burst in one write soon after its first line, without a close", async () => {
  let wrote: (text: string) => void = () => {};
  const written = new Promise<string>((resolve) => wrote = resolve);
  const printer = new DirectPrinter({ write: (bytes) => wrote(new TextDecoder().decode(bytes)) });
  const payloads = datagrams.map(([, payload]) => payload);
  for (const payload of payloads) printer.print(payload);
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const late = new Promise<string>((resolve) => timer = setTimeout(() => resolve("late"), 1_000));
    assert.equal(
      await Promise.race([written, late]),
      datagrams.map(([, , line]) => `${line}\n`).join(""),
      "a tail -f reader sees the lines while the server runs",
    );
  } finally {
    clearTimeout(timer);
  }
  assert.equal(printer.printed, payloads.length);
  await printer.close();
});

Deno.test("DirectPrinter stops at the first failed write and says why when it ends", async () => {
  let writes = 0;
  const printer = new DirectPrinter({
    write: () => {
      writes++;
      throw new Deno.errors.BrokenPipe("Broken pipe (os error 32)");
    },
  });
  printer.print(utf8("one"));
  await printer.close();
  printer.print(utf8("two"));
  await printer.close();
  assert.deepEqual(await printer.ended, {
    error: { name: "BrokenPipe", message: "Broken pipe (os error 32)" },
  });
  assert.deepEqual([writes, printer.received, printer.printed, printer.dropped], [1, 2, 0, 0]);
});

const outputs: [string, string, boolean][] = [
  ["a file", '> "$1/out.txt"', true],
  ["/dev/null", "> /dev/null", true],
  ["a pipe", "| cat > /dev/null", false],
];

for (const [what, redirect, direct] of outputs) {
  Deno.test(`writesNeverWait() says ${direct ? "yes" : "no"} for stdout to ${what}`, async () => {
    const dir = await Deno.makeTempDir();
    try {
      const code = `import { writesNeverWait } from "${new URL("../protocol.ts", import.meta.url)}";
console.error(String(writesNeverWait(1)));`;
      const { stderr, success } = await new Deno.Command("sh", {
        args: ["-c", `"${Deno.execPath()}" eval --quiet '${code}' ${redirect}`, "sh", dir],
        stderr: "piped",
      }).output();
      assert.ok(success);
      assert.equal(new TextDecoder().decode(stderr), `${direct}\n`);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}

Deno.test("writesNeverWait() says no for stdout to a terminal, which Ctrl-S stops (needs script: bsdutils)", async () => {
  const code = `import { writesNeverWait } from "${new URL("../protocol.ts", import.meta.url)}";
console.log(String(writesNeverWait(1)));`;
  const { stdout, success } = await new Deno.Command("script", {
    args: ["-qec", `"${Deno.execPath()}" eval --quiet '${code}'`, "/dev/null"],
    stdout: "piped",
  }).output();
  assert.ok(success);
  assert.equal(new TextDecoder().decode(stdout).trim(), "false");
});

Deno.test("warmUp() runs its datagrams through a private socket and closes it", async () => {
  // The test's sanitizers fail it if a socket or a timer is left behind.
  assert.equal(await warmUp(350), 350);
});

/** The `rb` of a UDP socket bound to `port`, as `ss -uam` shows the kernel's receive buffer. */
async function ssReceiveBuffer(port: number): Promise<number> {
  const { stdout } = await new Deno.Command("ss", { args: ["-uamnH", `sport = :${port}`] })
    .output();
  return Number(new TextDecoder().decode(stdout).match(/\brb(\d+)/)![1]);
}

Deno.test("startUdpServer() gets the receive buffer asked for, doubled as Linux does, where ss sees it (needs ss: iproute2)", async () => {
  for (const asked of [1 << 20, 3_000_000]) {
    const server = await startUdpServer(() => {}, {
      host: "127.0.0.1",
      port: 0,
      receiveBuffer: asked,
    });
    try {
      assert.equal(server.receiveBuffer, 2 * asked);
      assert.equal(await ssReceiveBuffer(server.address.port), 2 * asked);
    } finally {
      await server.close();
    }
  }
  const plain = await startUdpServer(() => {}, { host: "127.0.0.1", port: 0 });
  try {
    assert.equal(plain.receiveBuffer, undefined);
    assert.ok(await ssReceiveBuffer(plain.address.port) < 2 << 20);
  } finally {
    await plain.close();
  }
});

Deno.test("KernelSocket counts what the kernel dropped: drops and what the buffer held add up to what was sent", async () => {
  const target = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  const sender = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  const port = (target.addr as Deno.NetAddr).port;
  try {
    using kernel = await KernelSocket.find(port);
    const to = { transport: "udp" as const, hostname: "127.0.0.1", port };
    // Nobody receives meanwhile: 1,000 datagrams overflow the default buffer.
    for (let i = 0; i < 1_000; i++) await sender.send(new Uint8Array(200), to);
    let held = 0;
    for (;;) {
      const next = target.receive();
      // The last one is still pending when the socket closes.
      next.catch(() => {});
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timeout = new Promise<"empty">((done) => timer = setTimeout(() => done("empty"), 200));
      try {
        if (await Promise.race([next, timeout]) === "empty") break;
      } finally {
        clearTimeout(timer);
      }
      held++;
    }
    assert.ok(kernel.drops > 0 && held > 0, `drops ${kernel.drops}, held ${held}`);
    assert.equal(kernel.drops + held, 1_000);
  } finally {
    sender.close();
    target.close();
  }
});

Deno.test("KernelSocket.find() takes no TCP socket for the UDP one it looks for", async () => {
  using tcp = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const taken = tcp.addr.port;
  await assert.rejects(KernelSocket.find(taken), Deno.errors.NotFound);
});
