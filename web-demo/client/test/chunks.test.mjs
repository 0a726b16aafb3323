// Chunk reassembly (protocol §10b) without a channel: whole messages pass through, chunks come
// back together in index order whatever order they arrive in, malformed headers are reported
// and keep nothing, and the lossy channel drops a frame whole once a newer frame starts.
import { test } from "node:test";
import assert from "node:assert/strict";
import { ChunkReassembler, ChunkError, parseChunk, encodeChunks, CHUNK_MAGIC, parseRecords } from "../dist/index.js";
import { record } from "./support.mjs";

function bytes(n, seed = 1) {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
}
function header(index, count, frame, reserved = 0) {
  const m = new Uint8Array(10);
  const dv = new DataView(m.buffer);
  dv.setUint8(0, CHUNK_MAGIC);
  dv.setUint8(1, reserved);
  dv.setUint16(2, index);
  dv.setUint16(4, count);
  dv.setUint32(6, frame);
  return m;
}
function chunk(index, count, frame, body = new Uint8Array([index])) {
  const m = new Uint8Array(10 + body.length);
  m.set(header(index, count, frame));
  m.set(body, 10);
  return m;
}

test("a message that is not a chunk passes through whole, as one chunk", () => {
  const r = new ChunkReassembler();
  const m = record("a", 1, 1, bytes(10));
  const out = r.push(m);
  assert.equal(out.kind, "whole");
  assert.equal(out.data, m);
  assert.equal(out.chunks, 1);
  assert.equal(parseChunk(m), undefined);
  assert.equal(parseChunk(new Uint8Array(0)), undefined);
});

test("encodeChunks splits as the hub does and the reassembler restores the record byte-exact", () => {
  const rec = record("rel/video", 7, 1, bytes(100_000));
  const parts = encodeChunks(rec, 16 * 1024, 42);
  assert.equal(parts.length, Math.ceil(rec.length / (16 * 1024 - 10)));
  assert.ok(parts.every((p) => p.length <= 16 * 1024 && p[0] === CHUNK_MAGIC));
  const r = new ChunkReassembler();
  for (const p of parts.slice(0, -1)) assert.deepEqual(r.push(p), { kind: "pending" });
  const out = r.push(parts.at(-1));
  assert.equal(out.kind, "whole");
  assert.equal(out.chunks, parts.length);
  assert.deepEqual(out.data, rec);
  const [parsed] = parseRecords(out.data);
  assert.equal(parsed.topic, "rel/video");
  assert.equal(parsed.offset, 7);
  assert.equal(r.incomplete().length, 0);
});

test("a record of exactly the chunk size is not chunked; one byte more is two chunks", () => {
  assert.equal(encodeChunks(bytes(100), 100, 1).length, 1);
  const two = encodeChunks(bytes(101), 100, 1);
  assert.equal(two.length, 2);
  assert.deepEqual(two.map((c) => c.length), [100, 21]);
});

test("chunks arriving out of order are put back in index order; duplicates are ignored", () => {
  const rec = bytes(50);
  const parts = encodeChunks(rec, 20, 9); // 10-byte bodies: 5 chunks
  const r = new ChunkReassembler({ lossy: true });
  for (const i of [3, 0, 4, 0, 1]) assert.equal(r.push(parts[i]).kind, "pending");
  assert.deepEqual(r.incomplete(), [[9, 4, 5]]);
  const out = r.push(parts[2]);
  assert.deepEqual(out.data, rec);
});

test("the body is copied: reusing the message's buffer afterwards does not corrupt the frame", () => {
  const r = new ChunkReassembler();
  const m = chunk(0, 2, 1, new Uint8Array([1, 2]));
  r.push(m);
  m.fill(0xee);
  assert.deepEqual(r.push(chunk(1, 2, 1, new Uint8Array([3]))).data, new Uint8Array([1, 2, 3]));
});

test("malformed chunk headers are reported, keep nothing, and do not disturb other frames", () => {
  const r = new ChunkReassembler();
  assert.equal(r.push(chunk(0, 2, 5, new Uint8Array([1]))).kind, "pending");
  const cases = [
    [new Uint8Array([CHUNK_MAGIC]), /shorter than its header/],
    [header(0, 0, 6).subarray(0, 9), /shorter than its header/],
    [chunk(0, 0, 6), /out of range/],
    [chunk(2, 2, 6), /out of range/],
    [chunk(0xffff, 1, 6), /out of range/],
    [chunk(1, 3, 5), /chunk count 3 after 2/],
  ];
  for (const [m, re] of cases) {
    const out = r.push(m);
    assert.equal(out.kind, "malformed", `${[...m]}`);
    assert.ok(out.error instanceof ChunkError);
    assert.match(out.error.message, re);
  }
  assert.throws(() => parseChunk(chunk(3, 3, 1)), ChunkError);
  assert.deepEqual(r.incomplete(), [[5, 1, 2]], "only frame 5, untouched");
  assert.deepEqual(r.push(chunk(1, 2, 5, new Uint8Array([2]))).data, new Uint8Array([1, 2]));
  assert.equal(r.dropped, 0);
});

test("the reserved byte is ignored, like reserved record flags", () => {
  const m = chunk(0, 1, 3, new Uint8Array([7]));
  m[1] = 0x80;
  assert.deepEqual(new ChunkReassembler().push(m).data, new Uint8Array([7]));
});

test("lossy: a chunk of a newer frame drops the older incomplete frame whole", () => {
  const r = new ChunkReassembler({ lossy: true });
  r.push(chunk(0, 3, 10));
  r.push(chunk(1, 3, 10)); // chunk 2 of frame 10 is lost
  assert.equal(r.push(chunk(0, 2, 11, new Uint8Array([5]))).kind, "pending");
  assert.equal(r.dropped, 1);
  assert.deepEqual(r.incomplete(), [[11, 1, 2]]);
  // Its late chunk completes nothing, and starts nothing.
  assert.deepEqual(r.push(chunk(2, 3, 10)), { kind: "pending" });
  assert.deepEqual(r.incomplete(), [[11, 1, 2]]);
  assert.deepEqual(r.push(chunk(1, 2, 11, new Uint8Array([6]))).data, new Uint8Array([5, 6]));
  // A duplicate chunk of the frame just completed does not start it again.
  assert.deepEqual(r.push(chunk(0, 2, 11, new Uint8Array([5]))), { kind: "pending" });
  assert.deepEqual(r.incomplete(), []);
  assert.equal(r.dropped, 1);
});

test("lossy: frame ids wrap at 2^32: 0 is newer than 0xffffffff", () => {
  const r = new ChunkReassembler({ lossy: true });
  r.push(chunk(0, 2, 0xffff_ffff));
  assert.equal(r.push(chunk(0, 1, 0, new Uint8Array([1]))).kind, "whole");
  assert.equal(r.dropped, 1);
  assert.deepEqual(r.push(chunk(1, 2, 0xffff_ffff)), { kind: "pending" }, "the old frame is stale now");
  assert.deepEqual(r.incomplete(), []);
});

test("reliable: frames may interleave, none is dropped for a newer one; maxPartial bounds memory", () => {
  const r = new ChunkReassembler({ maxPartial: 2 });
  r.push(chunk(0, 2, 1, new Uint8Array([1])));
  r.push(chunk(0, 2, 2, new Uint8Array([2])));
  assert.equal(r.dropped, 0);
  assert.deepEqual(r.push(chunk(1, 2, 1, new Uint8Array([3]))).data, new Uint8Array([1, 3]));
  r.push(chunk(0, 2, 3));
  r.push(chunk(0, 2, 4)); // a third incomplete frame: the oldest (2) goes
  assert.equal(r.dropped, 1);
  assert.deepEqual(r.incomplete().map(([id]) => id), [3, 4]);
});

test("reset forgets incomplete frames without counting them", () => {
  const r = new ChunkReassembler({ lossy: true });
  r.push(chunk(0, 2, 1));
  r.reset();
  assert.deepEqual(r.incomplete(), []);
  assert.equal(r.dropped, 0);
  assert.equal(r.push(chunk(0, 1, 1, new Uint8Array([1]))).kind, "whole", "after a reset old ids are fresh again");
});
