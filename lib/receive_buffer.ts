/**
 * The kernel's receive buffer of a UDP socket (`SO_RCVBUF`), which Deno
 * offers no way to set: its `node:dgram` only stores the number. Under a
 * flood the default (`net.core.rmem_default`, 208 KiB, about 280 small
 * datagrams or 1.4 ms of a loopback flood here) overflows whenever the
 * receiving thread pauses for a compile or a garbage collection; 8 MiB
 * absorbs those pauses. Set through libc, so Linux only, with `--allow-ffi`.
 *
 * @module
 */

/** Linux's `<asm-generic/socket.h>` and `<bits/socket.h>`. */
const SOL_SOCKET = 1;
const SO_TYPE = 3;
const SO_RCVBUF = 8;
const SO_RCVBUFFORCE = 33;
const SOCK_DGRAM = 2;
const AF_INET = 2;
const AF_INET6 = 10;

/** Descriptors looked through for the socket: Deno opens a few dozen. */
const FD_SCAN_LIMIT = 4096;

const LIBC_SYMBOLS = {
  getsockname: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  getsockopt: { parameters: ["i32", "i32", "i32", "buffer", "buffer"], result: "i32" },
  setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
} as const;

type Libc = Deno.DynamicLibrary<typeof LIBC_SYMBOLS>["symbols"];

/**
 * Sets the receive buffer of this process's UDP socket bound to `port`, as
 * `setsockopt(SO_RCVBUF)` does: Linux doubles the number for its own
 * bookkeeping, and caps it at `net.core.rmem_max` (4 MiB here) unless the
 * process may pass the cap (`SO_RCVBUFFORCE`, root or `CAP_NET_ADMIN`),
 * which it then does. Deno does not give a socket's descriptor, so the
 * socket is found by its port among the process's descriptors.
 *
 * @param port The port the socket is bound to.
 * @param bytes The size asked for, as `setsockopt` takes it.
 * @returns The kernel's buffer size afterwards, as `ss -uam` shows it (`rb`).
 * @throws {Deno.errors.NotSupported} Off Linux; {Deno.errors.NotCapable}
 * without `--allow-ffi`, which it never asks for; {Deno.errors.NotFound}
 * when no UDP socket of this process is bound to `port`.
 *
 * @example Twice what is asked, when the cap allows
 * ```ts
 * import assert from "node:assert/strict";
 * import { setReceiveBuffer } from "../protocol.ts";
 *
 * const socket = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
 * try {
 *   const size = await setReceiveBuffer((socket.addr as Deno.NetAddr).port, 1 << 20);
 *   assert.equal(size, 2 << 20);
 * } catch (error) {
 *   // Off Linux, or without --allow-ffi.
 *   assert.ok(error instanceof Deno.errors.NotSupported || error instanceof Deno.errors.NotCapable);
 * } finally {
 *   socket.close();
 * }
 * ```
 */
export async function setReceiveBuffer(port: number, bytes: number): Promise<number> {
  if (Deno.build.os !== "linux") {
    throw new Deno.errors.NotSupported("Setting the receive buffer works on Linux only");
  }
  const { state } = await Deno.permissions.query({ name: "ffi" });
  if (state !== "granted") {
    throw new Deno.errors.NotCapable(
      "Setting the receive buffer goes through libc: add --allow-ffi",
    );
  }
  const libc = Deno.dlopen("libc.so.6", LIBC_SYMBOLS);
  try {
    const fd = findUdpSocket(libc.symbols, port);
    const value = new Int32Array([Math.min(bytes, 0x7fff_ffff)]);
    libc.symbols.setsockopt(fd, SOL_SOCKET, SO_RCVBUF, value, 4);
    // Over net.core.rmem_max the kernel cuts silently; a privileged process may go past.
    if (socketOption(libc.symbols, fd, SO_RCVBUF) < value[0] * 2) {
      libc.symbols.setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, value, 4);
    }
    return socketOption(libc.symbols, fd, SO_RCVBUF);
  } finally {
    libc.close();
  }
}

/** The descriptor of the UDP socket (IPv4 or IPv6) bound to `port`. */
function findUdpSocket(libc: Libc, port: number): number {
  const address = new Uint8Array(128);
  const view = new DataView(address.buffer);
  const length = new Uint32Array(1);
  for (let fd = 0; fd < FD_SCAN_LIMIT; fd++) {
    length[0] = address.length;
    // Fails for a descriptor that is closed or not a socket.
    if (libc.getsockname(fd, address, length) !== 0) continue;
    const family = view.getUint16(0, true);
    // sockaddr_in and sockaddr_in6 both hold the port at byte 2, big-endian.
    if (family !== AF_INET && family !== AF_INET6) continue;
    if (view.getUint16(2) !== port || socketOption(libc, fd, SO_TYPE) !== SOCK_DGRAM) continue;
    return fd;
  }
  throw new Deno.errors.NotFound(`No UDP socket of this process is bound to port ${port}`);
}

function socketOption(libc: Libc, fd: number, option: number): number {
  const value = new Int32Array(1);
  const length = new Uint32Array([4]);
  return libc.getsockopt(fd, SOL_SOCKET, option, value, length) === 0 ? value[0] : -1;
}
