#!/usr/bin/env -S deno run --allow-net
/**
 * UDP datagram sender: sends each line typed (or piped in) as one datagram,
 * like the original interactive client; `exit` or end of input stops.
 *
 * @module
 */
import dgram from "node:dgram";
import { lookup } from "node:dns/promises";
import { isIP, isIPv6 } from "node:net";
import { parseArgs } from "node:util";
import {
  type ByteSource,
  checkNetPermission,
  DEFAULT_PEER_HOST,
  DEFAULT_PORT,
  exitCodeFor,
  formatAddress,
  MAX_DATAGRAM_SIZE,
  parseHost,
  parsePort,
  ScriptOutput,
} from "./protocol.ts";

/** One line read by {@linkcode readLines}. */
export type LineResult =
  | { ok: true; line: Uint8Array }
  | { ok: false; tooLong: number };

/**
 * Splits a stream into lines at `\n`, holding at most `maxLineSize` bytes: a
 * longer line is read to its end, discarded and reported by its size.
 *
 * @param source Where the lines come from.
 * @param maxLineSize The longest line kept, without its newline.
 * @returns Each line without its newline, or the size of one too long; a
 * last line without a newline counts.
 */
export async function* readLines(
  source: ByteSource,
  maxLineSize: number,
): AsyncGenerator<LineResult> {
  const buffer = new Uint8Array(Math.max(maxLineSize + 1, 4096));
  let start = 0;
  let end = 0;
  /** Bytes of an overlong line seen so far; -1 while the line fits. */
  let overflow = -1;
  for (;;) {
    const newline = buffer.subarray(start, end).indexOf(0x0a);
    if (newline !== -1) {
      const lineEnd = start + newline;
      if (overflow >= 0) {
        yield { ok: false, tooLong: overflow + newline };
        overflow = -1;
      } else {
        yield { ok: true, line: buffer.slice(start, lineEnd) };
      }
      start = lineEnd + 1;
      continue;
    }
    buffer.copyWithin(0, start, end);
    end -= start;
    start = 0;
    if (overflow >= 0 || end > maxLineSize) {
      overflow = Math.max(overflow, 0) + end;
      end = 0;
    }
    const n = await source.read(buffer.subarray(end));
    if (n === null) {
      if (overflow >= 0) yield { ok: false, tooLong: overflow + end };
      else if (end > 0) yield { ok: true, line: buffer.slice(0, end) };
      return;
    }
    end += n;
  }
}

const strictUtf8 = new TextDecoder("utf-8", { fatal: true });
const encoder = new TextEncoder();

/** Bytes Python's `str.strip()` removes that are ASCII: tab to carriage return, and space. */
function isAsciiSpace(byte: number): boolean {
  return byte === 0x20 || (byte >= 0x09 && byte <= 0x0d);
}

/**
 * Trims a line as the original client did: UTF-8 text loses its whitespace
 * at both ends, full-width spaces included; a line that is not UTF-8 loses
 * only its ASCII whitespace, and its other bytes are sent as they are
 * rather than as U+FFFD.
 *
 * @param line A line without its newline.
 * @returns The trimmed line.
 */
export function trimLine(line: Uint8Array): Uint8Array {
  let text: string;
  try {
    text = strictUtf8.decode(line);
  } catch {
    let start = 0;
    let end = line.length;
    while (start < end && isAsciiSpace(line[start])) start++;
    while (end > start && isAsciiSpace(line[end - 1])) end--;
    return line.subarray(start, end);
  }
  return encoder.encode(text.trim());
}

/** Sends datagrams to one address. */
export interface UdpSender extends Disposable {
  /**
   * Sends one datagram.
   *
   * @param payload At most {@linkcode MAX_DATAGRAM_SIZE} bytes.
   * @throws {RangeError} For a larger payload, before anything is sent.
   */
  send(payload: Uint8Array): Promise<void>;
}

function tooLong(bytes: number): RangeError {
  return new RangeError(
    `Line too long for one datagram: ${bytes} bytes, the limit is ${MAX_DATAGRAM_SIZE}`,
  );
}

/**
 * Finds the address to send to once, since `node:dgram` would otherwise look
 * a host name up again for every datagram (four times slower here).
 */
async function resolveHost(host: string): Promise<string> {
  if (isIP(host) !== 0) return host;
  await checkNetPermission(host);
  try {
    return (await lookup(host)).address;
  } catch (error) {
    const reason = (error as { code?: string }).code === "ENOTFOUND"
      ? "no such host"
      : (error as Error).message;
    throw new Error(`Cannot resolve ${host}: ${reason}`, { cause: error });
  }
}

/**
 * Opens a UDP socket that sends to `host:port`, bound to any local address
 * of the matching family.
 *
 * @param host The receiver's address or host name, looked up once.
 * @param port The receiver's port.
 * @returns The sender, once bound; dispose of it to close the socket.
 * @throws {Deno.errors.NotCapable} Without net permission to look the name
 * up, to send to its address, or to bind the wildcard address
 * (`--allow-net=0.0.0.0:0`).
 */
export async function createUdpSender(host: string, port: number): Promise<UdpSender> {
  const address = await resolveHost(host);
  const ipv6 = isIPv6(address);
  const wildcard = ipv6 ? "::" : "0.0.0.0";
  await checkNetPermission(formatAddress(address, port), formatAddress(wildcard, 0));
  const socket = dgram.createSocket(ipv6 ? "udp6" : "udp4");
  const sender: UdpSender = {
    send(payload) {
      if (payload.length > MAX_DATAGRAM_SIZE) return Promise.reject(tooLong(payload.length));
      return new Promise((resolve, reject) =>
        socket.send(payload, port, address, (error) => error ? reject(error) : resolve())
      );
    },
    [Symbol.dispose]() {
      socket.close();
    },
  };
  return new Promise((resolve, reject) => {
    const fail = (error: Error) =>
      reject(new Error(`Cannot open a UDP socket: ${error.message}`, { cause: error }));
    socket.once("error", fail);
    socket.bind(0, wildcard, () => {
      socket.off("error", fail);
      resolve(sender);
    });
  });
}

/** Lines are trimmed before sending, so a longer line may still fit. */
const MAX_LINE_SIZE = 4 * MAX_DATAGRAM_SIZE;

const USAGE = `Usage: deno run --allow-net udp_client.ts [options] [MESSAGE...]

Sends each line of standard input, trimmed, as one UDP datagram. On a
terminal it prompts for each line. The line "exit", or the end of input, stops.
Given MESSAGE arguments instead, it sends each one as a datagram and exits.

Options:
  --host HOST   receiver address (default ${DEFAULT_PEER_HOST})
  --port PORT   receiver port (default ${DEFAULT_PORT})
  -h, --help    show this help

Exit status: 0 when every line was sent, 1 when any was not or a prompt could
not be written, 2 on a usage error. A line may hold at most ${MAX_DATAGRAM_SIZE}
bytes.`;

/** Where the datagrams go, and the messages given on the command line. */
interface UdpClientCommand {
  host: string;
  port: number;
  messages: string[];
}

/** Turns the command line into a command, or `"help"`. */
function parseUdpClientArgs(args: string[]): UdpClientCommand | "help" {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      host: { type: "string", default: DEFAULT_PEER_HOST },
      port: { type: "string", default: String(DEFAULT_PORT) },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) return "help";
  return { host: parseHost(values.host), port: parsePort(values.port, 1), messages: positionals };
}

/**
 * Sends each line of stdin as a datagram, with a prompt on a terminal, until
 * `exit` or the end of input.
 *
 * @returns How many lines were too long to send.
 */
async function sendLines(
  send: (payload: Uint8Array) => Promise<void>,
  script: ScriptOutput,
): Promise<number> {
  let tooLongLines = 0;
  const interactive = Deno.stdin.isTerminal();
  const prompt = () => interactive && script.stdout.text("data: ");
  prompt();
  for await (const result of readLines(Deno.stdin, MAX_LINE_SIZE)) {
    if (result.ok) {
      const line = trimLine(result.line);
      if (line.length === 4 && new TextDecoder().decode(line) === "exit") return tooLongLines;
      await send(line);
    } else {
      script.error(tooLong(result.tooLong).message);
      tooLongLines++;
    }
    prompt();
  }
  // Ctrl-D leaves the cursor after the last prompt: end its line for the shell.
  if (interactive) script.stdout.text("\n");
  return tooLongLines;
}

async function main(): Promise<void> {
  const script: ScriptOutput = new ScriptOutput();
  const command = script.command(() => parseUdpClientArgs(Deno.args), USAGE);
  let sender: UdpSender;
  try {
    sender = await createUdpSender(command.host, command.port);
  } catch (error) {
    script.error((error as Error).message);
    Deno.exit(exitCodeFor(error));
  }
  using _sender = sender;
  let failures = 0;
  const send = (payload: Uint8Array) =>
    sender.send(payload).catch((error) => {
      failures++;
      script.error((error as Error).message);
    });
  if (command.messages.length > 0) {
    for (const message of command.messages) await send(encoder.encode(message));
  } else {
    // Awaited first: `failures +=` would read the count before the sends that add to it.
    const tooLongLines = await sendLines(send, script);
    failures += tooLongLines;
  }
  script.exit(failures === 0);
}

if (import.meta.main) await main();
