/**
 * TLS to a server whose certificate is exactly the one given: the
 * self-signed certificate every tutorial makes, which rustls will not take
 * as a server's own because it is marked as a CA.
 *
 * @module
 */
import tls from "node:tls";

/** Bytes read ahead of the reader before the socket is paused. */
const HIGH_WATER = 1 << 20;

/** The DER bytes of each certificate in a PEM text. */
function derOf(pem: string): Uint8Array[] {
  const blocks = pem.matchAll(/-----BEGIN CERTIFICATE-----([^-]+)-----END CERTIFICATE-----/g);
  return [...blocks].map((block) => Uint8Array.fromBase64(block[1].replace(/\s+/g, "")));
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((byte, i) => byte === b[i]);
}

/** A Node socket error as the Deno error class our classifier reads. */
function asDenoError(error: Error & { code?: string }): Error {
  const Class = error.code === "ECONNRESET"
    ? Deno.errors.ConnectionReset
    : error.code === "EPIPE"
    ? Deno.errors.BrokenPipe
    : error.code === "ECONNREFUSED"
    ? Deno.errors.ConnectionRefused
    : Error;
  return new Class(error.message, { cause: error });
}

/**
 * Connects with TLS and accepts the server only if the certificate it
 * presents is byte for byte one of the PEM certificates given (pinning):
 * the chain is not checked, since that very certificate was trusted by
 * name on the command line; every other certificate is refused before a
 * byte is sent.
 *
 * @param target Where to connect, and the PEM certificates to pin.
 * @param ms Milliseconds allowed for the connection and the handshake.
 * @returns A connection that reads and writes as a `Deno.Conn` does.
 * @throws {Deno.errors.InvalidData} When the server presents another certificate.
 *
 * @example Accept the one certificate given, and refuse another
 * ```ts
 * import assert from "node:assert/strict";
 * import { connectPinned } from "./pinned_tls.ts";
 *
 * const dir = await Deno.makeTempDir();
 * const make = async (name: string) => {
 *   await new Deno.Command("openssl", {
 *     args: ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", `${dir}/${name}.key`,
 *       "-out", `${dir}/${name}.pem`, "-subj", "/CN=localhost", "-days", "1"],
 *     stderr: "null",
 *   }).output();
 *   return await Deno.readTextFile(`${dir}/${name}.pem`);
 * };
 * const [cert, other] = [await make("server"), await make("other")];
 * const key = await Deno.readTextFile(`${dir}/server.key`);
 * using listener = Deno.listenTls({ hostname: "127.0.0.1", port: 0, cert, key });
 * const { port } = listener.addr as Deno.NetAddr;
 * const accepting = listener.accept().then((conn) => conn.handshake().finally(() => conn.close()));
 * const conn = await connectPinned({ hostname: "127.0.0.1", port, pinned: [cert] }, 5000);
 * conn.close();
 * await accepting.catch(() => {});
 * const refusing = listener.accept().then((conn) => conn.handshake().finally(() => conn.close()));
 * await assert.rejects(connectPinned({ hostname: "127.0.0.1", port, pinned: [other] }, 5000));
 * await refusing.catch(() => {});
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export function connectPinned(
  target: { hostname: string; port: number; pinned: string[] },
  ms: number,
): Promise<Deno.Conn> {
  const pins = target.pinned.flatMap(derOf);
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      host: target.hostname,
      port: target.port,
      // Verified below, by comparing the certificate itself.
      rejectUnauthorized: false,
      servername: /^[\d.]+$|:/.test(target.hostname) ? undefined : target.hostname,
    });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Deno.errors.TimedOut(`Timed out waiting for TLS: nothing for ${ms} ms`));
    }, ms);
    socket.once("error", (error) => {
      clearTimeout(timer);
      reject(asDenoError(error));
    });
    socket.once("secureConnect", () => {
      clearTimeout(timer);
      const raw = socket.getPeerCertificate(true)?.raw as Uint8Array | undefined;
      if (raw === undefined || !pins.some((pin) => sameBytes(pin, new Uint8Array(raw)))) {
        socket.destroy();
        reject(
          new Deno.errors.InvalidData(
            "the server's certificate is not the one given with --ca, nor signed by it",
          ),
        );
        return;
      }
      resolve(new PinnedConn(socket) as unknown as Deno.Conn);
    });
  });
}

/** A Node TLS socket read and written as the parts of `Deno.Conn` the client uses. */
class PinnedConn {
  readonly #socket: tls.TLSSocket;
  readonly #chunks: Uint8Array[] = [];
  #buffered = 0;
  #ended = false;
  #error: Error | undefined;
  #wake: (() => void) | undefined;
  readonly remoteAddr: Deno.NetAddr;
  readonly localAddr: Deno.NetAddr;

  constructor(socket: tls.TLSSocket) {
    this.#socket = socket;
    socket.setNoDelay(true);
    this.remoteAddr = {
      transport: "tcp",
      hostname: socket.remoteAddress ?? "",
      port: socket.remotePort ?? 0,
    };
    this.localAddr = {
      transport: "tcp",
      hostname: socket.localAddress ?? "",
      port: socket.localPort ?? 0,
    };
    socket.on("data", (chunk: Uint8Array) => {
      this.#chunks.push(new Uint8Array(chunk));
      this.#buffered += chunk.length;
      if (this.#buffered > HIGH_WATER) socket.pause();
      this.#notify();
    });
    socket.on("end", () => {
      this.#ended = true;
      this.#notify();
    });
    socket.on("error", (error) => {
      this.#error = asDenoError(error);
      this.#notify();
    });
    socket.on("close", () => {
      this.#ended = true;
      this.#notify();
    });
  }

  #notify(): void {
    this.#wake?.();
    this.#wake = undefined;
  }

  /** Reads into `buffer`, as `Deno.Conn.read` does: `null` at the end. */
  async read(buffer: Uint8Array): Promise<number | null> {
    while (this.#chunks.length === 0) {
      if (this.#error) throw this.#error;
      if (this.#ended) return null;
      await new Promise<void>((resolve) => this.#wake = resolve);
    }
    const chunk = this.#chunks[0];
    const n = Math.min(buffer.length, chunk.length);
    buffer.set(chunk.subarray(0, n));
    if (n === chunk.length) this.#chunks.shift();
    else this.#chunks[0] = chunk.subarray(n);
    this.#buffered -= n;
    if (this.#buffered <= HIGH_WATER) this.#socket.resume();
    return n;
  }

  /** Writes all of `bytes`, waiting while the socket's buffer is full. */
  async write(bytes: Uint8Array): Promise<number> {
    if (this.#error) throw this.#error;
    if (this.#socket.destroyed) throw new Deno.errors.BadResource("Connection closed");
    const drained = this.#socket.write(bytes);
    if (!drained) {
      await new Promise<void>((resolve, reject) => {
        const onError = (error: Error) => reject(asDenoError(error));
        this.#socket.once("error", onError);
        this.#socket.once("drain", () => {
          this.#socket.off("error", onError);
          resolve();
        });
      });
    }
    return bytes.length;
  }

  /** Sends TLS close_notify and the end of the stream; reading goes on. */
  closeWrite(): Promise<void> {
    return new Promise((resolve) => this.#socket.end(resolve));
  }

  /** Closes the connection at once. */
  close(): void {
    if (this.#socket.destroyed) throw new Deno.errors.BadResource("Connection closed");
    this.#socket.destroy();
  }

  /** The handshake is over before the connection is handed out. */
  handshake(): Promise<Record<string, never>> {
    return Promise.resolve({});
  }

  [Symbol.dispose](): void {
    this.#socket.destroy();
  }
}
