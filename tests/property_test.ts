/**
 * Property tests of the frame reader with fast-check: bounded in runs, and
 * each run bounded in time by the reader's own deadlines.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { bytesSource, encodeFrame, FrameReader, parseName, ProtocolError } from "../protocol.ts";
import { concat } from "./helpers.ts";

const names = fc.stringMatching(/^[A-Za-z0-9_-]{1,32}$/);
const files = fc.uint8Array({ maxLength: 3000 });
const splits = fc.array(fc.integer({ min: 1, max: 500 }), { minLength: 1, maxLength: 20 });

/** Reads every frame, collecting names and data, until the input ends or an error. */
async function readAll(reader: FrameReader) {
  const frames: { name: string; data: Uint8Array }[] = [];
  for (let head; (head = await reader.readHead()) !== null;) {
    const chunks: Uint8Array[] = [];
    for await (const chunk of reader.data()) chunks.push(chunk.slice());
    frames.push({ name: parseName(head.nameField), data: concat(...chunks) });
  }
  return frames;
}

Deno.test("any valid frames split at any points decode to the same files", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.record({ name: names, data: files }), { minLength: 1, maxLength: 5 }),
      splits,
      fc.constantFrom(64, 256, 262_144),
      async (frames, chunkSizes, bufferSize) => {
        const stream = concat(...frames.map(({ name, data }) => encodeFrame(name, data)));
        const got = await readAll(
          new FrameReader(bytesSource(stream, chunkSizes), { maxBufferSize: bufferSize }),
        );
        assert.deepEqual(got, frames.map(({ name, data }) => ({ name, data })));
      },
    ),
    { numRuns: 300 },
  );
});

Deno.test("any bytes fed to the frame reader end in frames or a ProtocolError, never another error", async () => {
  const header = fc.oneof(
    fc.uint8Array({ minLength: 16, maxLength: 16 }),
    fc.integer({ min: 0, max: 200 }).map((n) =>
      new TextEncoder().encode(String(n).padStart(16, "0"))
    ),
  );
  const inputs = fc.oneof(
    fc.uint8Array({ maxLength: 400 }),
    fc.tuple(header, fc.uint8Array({ maxLength: 300 })).map(([h, rest]) => concat(h, rest)),
    // Valid frames with a few bytes flipped.
    fc.tuple(names, files, fc.array(fc.nat(), { maxLength: 4 }), fc.nat(255)).map(
      ([name, data, positions, value]) => {
        const frame = encodeFrame(name, data);
        for (const position of positions) frame[position % frame.length] = value;
        return frame;
      },
    ),
  );
  await fc.assert(
    fc.asyncProperty(inputs, splits, async (input, chunkSizes) => {
      const reader = new FrameReader(bytesSource(input, chunkSizes), {
        maxBufferSize: 64,
        headerTimeout: 1000,
        idleTimeout: 1000,
      });
      try {
        await readAll(reader);
      } catch (error) {
        assert.ok(error instanceof ProtocolError, `not a ProtocolError: ${error}`);
      }
    }),
    { numRuns: 1000 },
  );
});
