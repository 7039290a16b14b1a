/**
 * The ceiling of `deno task bench:udp`: a loop that receives as
 * udp_server.ts does (`Deno.listenDatagram`, one reused buffer) and prints
 * nothing. What it loses of a flood, any Deno printer on this machine loses.
 * On SIGTERM it prints how many datagrams it received.
 *
 *   deno run --unstable-net --allow-net=127.0.0.1 bench/udp_ceiling.ts
 *
 * @module
 */
const socket = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
let received = 0;
Deno.addSignalListener("SIGTERM", () => {
  console.log(`received ${received}`);
  Deno.exit(0);
});
console.log(`listening on 127.0.0.1:${(socket.addr as Deno.NetAddr).port}`);
const buffer = new Uint8Array(65_536);
for (;;) {
  await socket.receive(buffer);
  received++;
}
