// Binary frames of protocol §5: several records in one data message, the JSON flag, the
// metadata block (flag bit 1), big offsets, and the publish frame's exact bytes.
import { test } from "node:test";
import assert from "node:assert/strict";
import { parseRecords, encodePublishFrame } from "../dist/index.js";
import { metaField } from "./support.mjs";

function record({ topic, payload, offset, epoch, ts = 0n, flags = 0 }) {
  const t = new TextEncoder().encode(topic);
  const buf = new Uint8Array(32 + t.length + payload.length);
  const dv = new DataView(buf.buffer);
  dv.setUint8(0, 1);
  dv.setUint8(1, flags);
  dv.setUint16(2, t.length);
  dv.setUint32(4, payload.length);
  dv.setBigUint64(8, BigInt(offset));
  dv.setBigUint64(16, BigInt(epoch));
  dv.setBigUint64(24, ts);
  buf.set(t, 32);
  buf.set(payload, 32 + t.length);
  return buf;
}

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) (out.set(p, at), (at += p.length));
  return out;
}

test("several records in one message are all parsed, in order, with their JSON flag", () => {
  const msg = concat(
    record({ topic: "a/b", payload: new TextEncoder().encode('{"x":1}'), offset: 7, epoch: 77, ts: 1_700_000_000_000_000n, flags: 1 }),
    record({ topic: "c", payload: new Uint8Array([0, 255, 3]), offset: 1, epoch: 5 }),
    record({ topic: "a/b", payload: new Uint8Array(), offset: 8, epoch: 77, flags: 0b1111_1100 }),
  );
  const rs = parseRecords(msg.buffer);
  assert.equal(rs.length, 3);
  assert.deepEqual(
    rs.map((r) => [r.topic, r.offset, r.epoch, r.json, [...r.payload]]),
    [
      ["a/b", 7, 77, true, [...new TextEncoder().encode('{"x":1}')]],
      ["c", 1, 5, false, [0, 255, 3]],
      ["a/b", 8, 77, false, []],
    ],
  );
  assert.equal(rs[0].publishTimeUs, 1_700_000_000_000_000);
});

const enc = (s) => new TextEncoder().encode(s);
const META = { source: "fleet", upstream: "orders", partition: "orders", position: "1700000000000-0", key: "car-7", headers: { trace: "t" } };

test("flag bit 1: the metadata block is split off the payload and parsed; JSON payloads still parse", () => {
  const msg = concat(
    record({ topic: "src/t", payload: metaField(enc(JSON.stringify(META)), enc('{"n":1}')), offset: 1, epoch: 3, flags: 0b11 }),
    record({ topic: "src/t", payload: metaField(enc('{"source":"fleet","reason":"too_large"}'), new Uint8Array([0, 255])), offset: 2, epoch: 3, flags: 0b10 }),
    record({ topic: "src/t", payload: enc('{"n":3}'), offset: 3, epoch: 3, flags: 1 }),
    record({ topic: "src/t", payload: metaField(enc("{}"), new Uint8Array()), offset: 4, epoch: 3, flags: 0b10 }),
  );
  const [a, b, c, d] = parseRecords(msg);
  assert.deepEqual(a.meta, META);
  assert.equal(a.json, true);
  assert.deepEqual(JSON.parse(new TextDecoder().decode(a.payload)), { n: 1 }, "the payload without the block");
  assert.deepEqual([b.json, [...b.payload], b.meta], [false, [0, 255], { source: "fleet", reason: "too_large" }]);
  assert.equal(c.meta, undefined, "no flag, no metadata");
  assert.ok(!("meta" in c));
  assert.deepEqual(JSON.parse(new TextDecoder().decode(c.payload)), { n: 3 });
  assert.deepEqual([d.meta, d.payload.length], [{}, 0]);
});

test("without flag bit 1 the same bytes are all payload (what an old client sees)", () => {
  const field = metaField(enc(JSON.stringify(META)), enc("x"));
  const [r] = parseRecords(record({ topic: "t", payload: field, offset: 1, epoch: 1 }));
  assert.deepEqual([...r.payload], [...field]);
  assert.equal(r.meta, undefined);
});

test("a malformed metadata block is refused: longer than the field, no length, not UTF-8, not a JSON object", () => {
  const bad = (payload) => record({ topic: "t", payload, offset: 1, epoch: 1, flags: 0b10 });
  assert.throws(() => parseRecords(bad(new Uint8Array([0, 5, 123, 125]))), /truncated record metadata/);
  assert.throws(() => parseRecords(bad(new Uint8Array([0]))), /truncated record metadata/);
  assert.throws(() => parseRecords(bad(new Uint8Array())), /truncated record metadata/);
  assert.throws(() => parseRecords(bad(metaField(new Uint8Array([0xff]), new Uint8Array()))), /not UTF-8 JSON/);
  assert.throws(() => parseRecords(bad(metaField(enc("{nope"), new Uint8Array()))), /not UTF-8 JSON/);
  assert.throws(() => parseRecords(bad(metaField(enc("[1]"), new Uint8Array()))), /not a JSON object/);
  assert.throws(() => parseRecords(bad(metaField(enc("null"), new Uint8Array()))), /not a JSON object/);
});

test("a Uint8Array view at a non-zero byte offset parses like its own buffer", () => {
  const r = record({ topic: "t", payload: new Uint8Array([9]), offset: 3, epoch: 1 });
  const padded = concat(new Uint8Array([0xaa, 0xbb]), r);
  const [rec] = parseRecords(padded.subarray(2));
  assert.equal(rec.topic, "t");
  assert.deepEqual([...rec.payload], [9]);
});

test("offsets above 2^53 stay exact as bigint; smaller ones are numbers", () => {
  const big = 2n ** 53n + 1n;
  const [a, b] = parseRecords(concat(record({ topic: "t", payload: new Uint8Array(), offset: big, epoch: 1 }), record({ topic: "t", payload: new Uint8Array(), offset: 2n ** 53n - 1n, epoch: 1 })));
  assert.equal(a.offset, big);
  assert.equal(typeof b.offset, "number");
  assert.equal(b.offset, Number.MAX_SAFE_INTEGER);
});

test("a truncated record or an unknown kind is refused", () => {
  const r = record({ topic: "t", payload: new Uint8Array([1, 2, 3]), offset: 1, epoch: 1 });
  assert.throws(() => parseRecords(r.subarray(0, r.length - 1)), RangeError);
  assert.throws(() => parseRecords(r.subarray(0, 10)), RangeError);
  const bad = r.slice();
  bad[0] = 2;
  assert.throws(() => parseRecords(bad), /unknown record kind/);
});

test("a publish frame is kind 2, flags, topic length, request id, topic, payload", () => {
  const f = encodePublishFrame("ab/c", new Uint8Array([1, 2]), 0x01020304, false);
  assert.deepEqual([...f], [2, 0, 0, 4, 1, 2, 3, 4, 97, 98, 47, 99, 1, 2]);
  const j = encodePublishFrame("t", new TextEncoder().encode("{}"), 0, true);
  assert.deepEqual([...j], [2, 1, 0, 1, 0, 0, 0, 0, 116, 123, 125]);
});

test("a publish frame refuses a request id beyond u32", () => {
  assert.throws(() => encodePublishFrame("t", new Uint8Array(), 2 ** 32), RangeError);
  assert.throws(() => encodePublishFrame("t", new Uint8Array(), -1), RangeError);
});
