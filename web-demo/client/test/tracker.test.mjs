// Dedupe and gaps, without sockets: what a subscription delivers after resumes.
import { test } from "node:test";
import assert from "node:assert/strict";
import { TopicTracker } from "../dist/index.js";

test("a live subscription resumes at the answer's offset when nothing was delivered", () => {
  const t = new TopicTracker("t");
  assert.deepEqual(t.resumeFrom(), {});
  assert.equal(t.onSubscribed({ epoch: 7, offset: 5, recovered: true }), undefined);
  assert.deepEqual(t.resumeFrom(), { offset: 5, epoch: 7 });
  assert.equal(t.lastDelivered, 4);
});

test("after deliveries it resumes from last delivered + 1 in the same epoch", () => {
  const t = new TopicTracker("t");
  t.onSubscribed({ epoch: 7, offset: 1, recovered: true });
  for (const o of [1, 2, 3]) assert.deepEqual(t.onRecord(o, 7), { deliver: true });
  assert.deepEqual(t.resumeFrom(), { offset: 4, epoch: 7 });
});

test("duplicates (offset at or below the last delivered, same epoch) are dropped", () => {
  const t = new TopicTracker("t");
  t.onSubscribed({ epoch: 7, offset: 1, recovered: true });
  t.onRecord(1, 7);
  t.onRecord(2, 7);
  assert.deepEqual(t.onRecord(2, 7), { deliver: false });
  assert.deepEqual(t.onRecord(1, 7), { deliver: false });
  assert.deepEqual(t.onRecord(3, 7), { deliver: true });
});

test("recovered: false in the same epoch reports the missing range", () => {
  const t = new TopicTracker("t");
  t.onSubscribed({ epoch: 7, offset: 1, recovered: true });
  t.onRecord(1, 7);
  t.onRecord(2, 7);
  const gap = t.onSubscribed({ epoch: 7, offset: 10, recovered: false });
  assert.deepEqual(gap, { type: "gap", topic: "t", reason: "not_recovered", from: 3, to: 9, epochChanged: false, epoch: 7 });
  assert.deepEqual(t.onRecord(10, 7), { deliver: true });
});

test("recovered: false with a new epoch reports an epoch change; the new epoch's records are delivered", () => {
  const t = new TopicTracker("t", { offset: 4, epoch: 7 });
  assert.deepEqual(t.resumeFrom(), { offset: 4, epoch: 7 });
  const gap = t.onSubscribed({ epoch: 9, offset: 1, recovered: false });
  assert.deepEqual(gap, { type: "gap", topic: "t", reason: "epoch_changed", from: 4, epochChanged: true, epoch: 9 });
  assert.deepEqual(t.onRecord(1, 9), { deliver: true });
  assert.deepEqual(t.resumeFrom(), { offset: 2, epoch: 9 });
});

test("recovered: true never reports a gap", () => {
  const t = new TopicTracker("t", { offset: 4, epoch: 7 });
  assert.equal(t.onSubscribed({ epoch: 7, offset: 4, recovered: true }), undefined);
});

test("a record in another epoch mid-stream is delivered after an epoch-change gap", () => {
  const t = new TopicTracker("t");
  t.onSubscribed({ epoch: 7, offset: 1, recovered: true });
  t.onRecord(1, 7);
  const v = t.onRecord(1, 8);
  assert.equal(v.deliver, true);
  assert.deepEqual(v.gap, { type: "gap", topic: "t", reason: "epoch_changed", from: 2, epochChanged: true, epoch: 8 });
  assert.deepEqual(t.onRecord(1, 8), { deliver: false });
});

test("an offset given without an epoch resumes without one until the answer tells it", () => {
  const t = new TopicTracker("t", { offset: 0 });
  assert.deepEqual(t.resumeFrom(), { offset: 0 });
  t.onSubscribed({ epoch: 3, offset: 1, recovered: true });
  assert.deepEqual(t.resumeFrom(), { offset: 1, epoch: 3 });
});

test("bigint offsets compare exactly", () => {
  const t = new TopicTracker("t");
  const big = 2n ** 60n;
  t.onSubscribed({ epoch: 1, offset: big, recovered: true });
  assert.deepEqual(t.onRecord(big, 1), { deliver: true });
  assert.deepEqual(t.onRecord(big, 1), { deliver: false });
  assert.deepEqual(t.resumeFrom(), { offset: big + 1n, epoch: 1 });
});

test("offset 0 (oldest retained) reports no gap even when the answer is not recovered", () => {
  const t = new TopicTracker("t", { offset: 0 });
  assert.equal(t.onSubscribed({ epoch: 3, offset: 40, recovered: false }), undefined);
});

test("a live record past the next expected offset is delivered after a skipped gap for the offsets between", () => {
  const t = new TopicTracker("t");
  t.onSubscribed({ epoch: 7, offset: 1, recovered: true });
  assert.deepEqual(t.onRecord(1, 7), { deliver: true });
  const v = t.onRecord(4, 7);
  assert.deepEqual(v, {
    deliver: true,
    gap: { type: "gap", topic: "t", reason: "skipped", from: 2, to: 3, epochChanged: false, epoch: 7 },
  });
  // Delivery continues after the skipped record; the skipped offsets arriving late are duplicates.
  assert.deepEqual(t.onRecord(5, 7), { deliver: true });
  assert.deepEqual(t.onRecord(3, 7), { deliver: false });
  assert.deepEqual(t.resumeFrom(), { offset: 6, epoch: 7 });
});

test("the first live record after a subscribed answer may itself skip: one offset missing is a gap of one", () => {
  const t = new TopicTracker("t");
  t.onSubscribed({ epoch: 7, offset: 10, recovered: true });
  const v = t.onRecord(11, 7);
  assert.deepEqual(v.gap, { type: "gap", topic: "t", reason: "skipped", from: 10, to: 10, epochChanged: false, epoch: 7 });
});

test("a skip over bigint offsets reports an exact range", () => {
  const t = new TopicTracker("t");
  const big = 2n ** 60n;
  t.onSubscribed({ epoch: 1, offset: big, recovered: true });
  assert.deepEqual(t.onRecord(big + 5n, 1).gap, {
    type: "gap", topic: "t", reason: "skipped", from: big, to: big + 4n, epochChanged: false, epoch: 1,
  });
});

test("an offset asked for without an epoch is not a position: the answer sets it, then skips count", () => {
  const t = new TopicTracker("t", { offset: 3 });
  assert.deepEqual(t.onRecord(8, 2), { deliver: true });
  assert.deepEqual(t.onRecord(10, 2).gap?.reason, "skipped");
});
