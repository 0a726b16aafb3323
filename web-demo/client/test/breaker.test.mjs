// The circuit breaker and the endpoint choice with a fake clock (ms): no sockets, no timers.
import { test } from "node:test";
import assert from "node:assert/strict";
import { CircuitBreaker, Endpoints, DEFAULT_BREAKER } from "../dist/index.js";

const opts = { failureRatio: 0.5, minThroughput: 4, samplingWindowMs: 10_000, breakDurationMs: 5_000 };

test("the defaults: half of at least 3 attempts within 30 s opens for 5 s", () => {
  assert.deepEqual({ ...DEFAULT_BREAKER }, { failureRatio: 0.5, minThroughput: 3, samplingWindowMs: 30_000, breakDurationMs: 5_000 });
});

test("it opens at the threshold once the window holds enough attempts", () => {
  const b = new CircuitBreaker(opts);
  for (let i = 0; i < 3; i++) assert.equal(b.record(i * 1000, false), undefined, "below the minimum throughput");
  // A success never opens it, whatever the ratio: the endpoint just worked.
  assert.equal(b.record(3000, true), undefined, "3 of 4 failed, but this one went through");
  assert.equal(b.record(4000, false), "open", "4 of 5 failed");
  assert.equal(b.allows(8000), false);
  assert.equal(b.openUntil, 9000);
  assert.equal(b.state(8999), "open");
  // A failure while open changes nothing; a success (reconnect advice) closes it.
  assert.equal(b.record(5000, false), undefined);
  assert.equal(b.openUntil, 9000);
  assert.equal(b.record(6000, true), "closed");
});

test("below the failure ratio it stays closed however many attempts", () => {
  const b = new CircuitBreaker(opts);
  // One attempt in three fails (the 2nd, 5th, …): never half of the window.
  for (let i = 0; i < 30; i++) assert.equal(b.record(i, i % 3 !== 1), undefined);
  assert.equal(b.state(30), "closed");
});

test("old failures leave the window and do not count", () => {
  const b = new CircuitBreaker(opts);
  for (let i = 0; i < 3; i++) b.record(i * 1000, false);
  // 20 s later the old failures are out of the 10 s window: 1 failure of 4.
  for (let i = 0; i < 4; i++) assert.equal(b.record(20_000 + i * 1000, i !== 0), undefined);
  assert.equal(b.allows(25_000), true);
});

test("it half-opens after the break, closes on a good probe and reopens on a bad one", () => {
  const b = new CircuitBreaker(opts);
  for (let i = 0; i < 4; i++) b.record(i, false);
  assert.equal(b.state(4_999), "open");
  assert.equal(b.state(6_000), "half_open");
  assert.equal(b.allows(6_000), true);
  assert.equal(b.record(6_000, false), "open", "a failed probe opens it again, for a full break");
  assert.equal(b.openUntil, 11_000);
  assert.equal(b.state(10_999), "open");
  assert.equal(b.record(11_000, true), "closed");
  assert.equal(b.state(11_000), "closed");
  // Closed again with an empty window: one failure does not reopen it.
  assert.equal(b.record(11_001, false), undefined);
});

test("endpoints: stay on a working endpoint, fail over after a failure, skip open circuits", () => {
  const e = new Endpoints(["ws://a/ws", "ws://b/ws", "ws://c/ws"], { ...opts, minThroughput: 1 });
  const ev = [];
  assert.deepEqual(e.pick(0, ev), { url: "ws://a/ws" });
  e.record("ws://a/ws", 0, true, ev);
  assert.deepEqual(e.pick(1, ev), { url: "ws://a/ws" });
  assert.deepEqual(ev, []);
  e.record("ws://a/ws", 2, false, ev);
  assert.deepEqual(ev, [
    { state: "circuit", endpoint: "ws://a/ws", circuit: "open" },
    { state: "failed_over", from: "ws://a/ws", to: "ws://b/ws" },
  ]);
  ev.length = 0;
  e.record("ws://b/ws", 3, false, ev);
  assert.deepEqual(e.pick(4, (ev.length = 0, ev)), { url: "ws://c/ws" });
  e.record("ws://c/ws", 5, false, ev);
  ev.length = 0;
  // All open: wait until a's break ends (opened at 2, 5 s).
  assert.deepEqual(e.pick(6, ev), { waitMs: 4_996 });
  assert.deepEqual(ev, []);
  // After it: c failed last, so a is current again, and half-open.
  assert.deepEqual(e.pick(5_002, ev), { url: "ws://a/ws" });
  assert.deepEqual(ev, [{ state: "circuit", endpoint: "ws://a/ws", circuit: "half_open" }]);
  assert.equal(e.circuit("ws://b/ws", 5_002), "open");
  assert.equal(e.circuit("ws://elsewhere/ws", 5_002), "closed", "an advised URL has no breaker");
});

test("endpoints: a pick that skips an open current endpoint reports the failover", () => {
  const e = new Endpoints(["ws://a/ws", "ws://b/ws"], { ...opts, minThroughput: 1, failureRatio: 1 });
  const ev = [];
  e.record("ws://b/ws", 0, false, ev); // b (not current) fails: no failover, its circuit opens
  assert.deepEqual(ev, [{ state: "circuit", endpoint: "ws://b/ws", circuit: "open" }]);
  ev.length = 0;
  e.record("ws://a/ws", 1, false, ev); // a fails: the client moves to b, whose circuit is open
  ev.length = 0;
  assert.deepEqual(e.pick(2, ev), { waitMs: 4_998 });
  assert.deepEqual(e.pick(5_000, ev), { url: "ws://b/ws" });
  assert.deepEqual(ev, [{ state: "circuit", endpoint: "ws://b/ws", circuit: "half_open" }]);
});

test("a single endpoint never fails over", () => {
  const e = new Endpoints(["ws://a/ws"], opts);
  const ev = [];
  e.record("ws://a/ws", 0, false, ev);
  assert.deepEqual(ev, []);
  assert.equal(e.currentUrl, "ws://a/ws");
});
