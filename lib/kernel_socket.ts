/**
 * A UDP socket of this process as the kernel sees it, reached through libc:
 * Deno offers no way to set its receive buffer (`SO_RCVBUF`; its
 * `node:dgram` only stores the number) nor to read how many datagrams the
 * kernel dropped because that buffer was full. Under a flood the default
 * buffer (`net.core.rmem_default`, 208 KiB, about 280 small datagrams or
 * 1.4 ms of a loopback flood here) overflows whenever the receiving thread
 * pauses for a compile or a garbage collection; 8 MiB absorbs those pauses.
 * Linux only, with `--allow-ffi`.
 *
 * @module
 */

/** Linux's `<asm-generic/socket.h>`, `<bits/socket.h>` and `<linux/sock_diag.h>`. */
const SOL_SOCKET = 1;
const SO_TYPE = 3;
const SO_RCVBUF = 8;
const SO_RCVBUFFORCE = 33;
const SO_MEMINFO = 55;
const SK_MEMINFO_DROPS = 8;
const SK_MEMINFO_VARS = 9;
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
 * This process's UDP socket bound to a port, found by that port among the
 * process's descriptors, since Deno does not give a socket's descriptor.
 * It holds libc open until disposed, and never closes the socket.
 *
 * @example Set the receive buffer and read the drops
 * ```ts
 * import assert from "node:assert/strict";
 * import { KernelSocket } from "../protocol.ts";
 *
 * const socket = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
 * try {
 *   using kernel = await KernelSocket.find((socket.addr as Deno.NetAddr).port);
 *   assert.equal(kernel.setReceiveBuffer(1 << 20), 2 << 20);
 *   assert.equal(kernel.drops, 0);
 * } catch (error) {
 *   // Off Linux, or without --allow-ffi.
 *   assert.ok(error instanceof Deno.errors.NotSupported || error instanceof Deno.errors.NotCapable);
 * } finally {
 *   socket.close();
 * }
 * ```
 */
export class KernelSocket {
  #library: Deno.DynamicLibrary<typeof LIBC_SYMBOLS>;
  #fd: number;

  private constructor(library: Deno.DynamicLibrary<typeof LIBC_SYMBOLS>, fd: number) {
    this.#library = library;
    this.#fd = fd;
  }

  /**
   * Finds the UDP socket (IPv4 or IPv6) of this process bound to `port`.
   *
   * @param port The port the socket is bound to.
   * @returns The socket, to dispose of when done.
   * @throws {Deno.errors.NotSupported} Off Linux; {Deno.errors.NotCapable}
   * without `--allow-ffi`, which it never asks for; {Deno.errors.NotFound}
   * when no UDP socket of this process is bound to `port`.
   */
  static async find(port: number): Promise<KernelSocket> {
    if (Deno.build.os !== "linux") {
      throw new Deno.errors.NotSupported("Socket options through libc work on Linux only");
    }
    const { state } = await Deno.permissions.query({ name: "ffi" });
    if (state !== "granted") {
      throw new Deno.errors.NotCapable("Socket options go through libc: add --allow-ffi");
    }
    const library = Deno.dlopen("libc.so.6", LIBC_SYMBOLS);
    try {
      return new KernelSocket(library, findUdpSocket(library.symbols, port));
    } catch (error) {
      library.close();
      throw error;
    }
  }

  /**
   * Asks for a receive buffer of `bytes`, as `setsockopt(SO_RCVBUF)` does:
   * Linux doubles the number for its own bookkeeping, and caps it at
   * `net.core.rmem_max` (4 MiB here) unless the process may pass the cap
   * (`SO_RCVBUFFORCE`, root or `CAP_NET_ADMIN`), which it then does.
   *
   * @param bytes The size asked for, as `setsockopt` takes it.
   * @returns The kernel's buffer size afterwards, as `ss -uam` shows it (`rb`).
   */
  setReceiveBuffer(bytes: number): number {
    const libc = this.#library.symbols;
    const value = new Int32Array([Math.min(bytes, 0x7fff_ffff)]);
    libc.setsockopt(this.#fd, SOL_SOCKET, SO_RCVBUF, value, 4);
    // Over net.core.rmem_max the kernel cuts silently; a privileged process may go past.
    if (this.receiveBuffer < value[0] * 2) {
      libc.setsockopt(this.#fd, SOL_SOCKET, SO_RCVBUFFORCE, value, 4);
    }
    return this.receiveBuffer;
  }

  /** The kernel's receive buffer in bytes, as `ss -uam` shows it (`rb`). */
  get receiveBuffer(): number {
    const value = new Int32Array(1);
    getOption(this.#library.symbols, this.#fd, SO_RCVBUF, value);
    return value[0];
  }

  /** Datagrams the kernel dropped for this socket since it was made: its buffer was full. */
  get drops(): number {
    const values = new Uint32Array(SK_MEMINFO_VARS);
    getOption(this.#library.symbols, this.#fd, SO_MEMINFO, values);
    return values[SK_MEMINFO_DROPS];
  }

  /** Closes libc; the socket stays open. */
  [Symbol.dispose](): void {
    this.#library.close();
  }
}

/** The descriptor of the UDP socket (IPv4 or IPv6) bound to `port`. */
function findUdpSocket(libc: Libc, port: number): number {
  const address = new Uint8Array(128);
  const view = new DataView(address.buffer);
  const length = new Uint32Array(1);
  const type = new Int32Array(1);
  for (let fd = 0; fd < FD_SCAN_LIMIT; fd++) {
    length[0] = address.length;
    // Fails for a descriptor that is closed or not a socket.
    if (libc.getsockname(fd, address, length) !== 0) continue;
    const family = view.getUint16(0, true);
    // sockaddr_in and sockaddr_in6 both hold the port at byte 2, big-endian.
    if (family !== AF_INET && family !== AF_INET6) continue;
    if (view.getUint16(2) !== port || !getOption(libc, fd, SO_TYPE, type)) continue;
    if (type[0] === SOCK_DGRAM) return fd;
  }
  throw new Deno.errors.NotFound(`No UDP socket of this process is bound to port ${port}`);
}

/** `getsockopt(SOL_SOCKET)` into `value`; whether it succeeded. */
function getOption(libc: Libc, fd: number, option: number, value: Int32Array | Uint32Array) {
  return libc.getsockopt(fd, SOL_SOCKET, option, value, new Uint32Array([value.byteLength])) === 0;
}
