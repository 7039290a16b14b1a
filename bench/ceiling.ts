/**
 * The loopback ceiling for the benchmark: pushes a byte count through one TCP
 * connection with nothing else done.
 *
 *   deno run --allow-net=127.0.0.1 bench/ceiling.ts BYTES
 *
 * Prints the seconds taken from connect until the receiver has every byte.
 */

async function main(): Promise<void> {
  const total = Number(Deno.args[0]);
  if (!Number.isSafeInteger(total) || total <= 0) {
    console.error("Usage: ceiling.ts BYTES");
    Deno.exit(2);
  }
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const started = performance.now();
  const receiving = (async () => {
    using conn = await listener.accept();
    const buffer = new Uint8Array(1 << 20);
    let received = 0;
    while (received < total) {
      const n = await conn.read(buffer);
      if (n === null) throw new Error(`Connection ended after ${received} of ${total} bytes`);
      received += n;
    }
  })();
  {
    using conn = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
    const chunk = new Uint8Array(1 << 20);
    for (let sent = 0; sent < total;) {
      sent += await conn.write(chunk.subarray(0, Math.min(chunk.length, total - sent)));
    }
    await receiving;
  }
  console.log(((performance.now() - started) / 1000).toFixed(4));
}

if (import.meta.main) await main();
