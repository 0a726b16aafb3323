// The keep-alive with a fake clock (ms): when to ping, when a connection is dead.
import { test } from "node:test";
import assert from "node:assert/strict";
import { KeepAlive } from "../dist/index.js";

test("a busy connection is never pinged", () => {
  const k = new KeepAlive(15_000, 10_000, 0);
  for (let t = 1000; t < 100_000; t += 1000) {
    k.received(t);
    assert.equal(k.poll(t), undefined);
  }
  assert.equal(k.deadline, 99_000 + 15_000);
});

test("silence for the interval sends one ping; silence for the timeout after it is death", () => {
  const k = new KeepAlive(15_000, 10_000, 0);
  assert.equal(k.poll(14_999), undefined);
  assert.equal(k.deadline, 15_000);
  assert.equal(k.poll(15_000), "ping");
  assert.equal(k.poll(15_001), undefined, "one ping per silence");
  assert.equal(k.deadline, 25_000);
  assert.equal(k.poll(24_999), undefined);
  assert.equal(k.poll(25_000), "dead");
});

test("anything received after the ping (its pong or a record) keeps the connection", () => {
  const k = new KeepAlive(15_000, 10_000, 0);
  assert.equal(k.poll(15_000), "ping");
  k.received(20_000);
  assert.equal(k.poll(25_000), undefined, "alive");
  assert.equal(k.deadline, 35_000);
  assert.equal(k.poll(35_000), "ping", "the next silence gets the next ping");
  assert.equal(k.poll(45_000), "dead");
});

test("a late timer still decides from the times, not from how often it ran", () => {
  const k = new KeepAlive(100, 50, 0);
  // The first poll comes very late: it pings (nothing proves the connection dead yet).
  assert.equal(k.poll(10_000), "ping");
  assert.equal(k.poll(10_049), undefined);
  assert.equal(k.poll(10_050), "dead");
});
