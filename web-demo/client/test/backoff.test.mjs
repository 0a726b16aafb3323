// Reconnect delays: full jitter within [0, ceiling), the ceiling growing by the multiplier and
// capped at maxMs.
import { test } from "node:test";
import assert from "node:assert/strict";
import { backoffDelay, backoffCeiling, DEFAULT_BACKOFF } from "../dist/index.js";

const o = { initialMs: 100, maxMs: 10_000, multiplier: 2 };

test("the defaults are 100 ms, 10 s and a doubling", () => {
  assert.deepEqual({ ...DEFAULT_BACKOFF }, o);
});

test("the ceiling grows by the multiplier and stops at maxMs", () => {
  assert.deepEqual([0, 1, 2, 3, 6, 7, 8, 50].map((a) => backoffCeiling(a, o)), [100, 200, 400, 800, 6400, 10_000, 10_000, 10_000]);
  assert.equal(backoffCeiling(2, { initialMs: 50, maxMs: 1000, multiplier: 3 }), 450);
});

test("full jitter: random 0 gives 0, random just under 1 gives just under the ceiling", () => {
  for (const a of [0, 3, 20]) {
    assert.equal(backoffDelay(a, o, () => 0), 0);
    const top = backoffDelay(a, o, () => 0.999999);
    assert.ok(top < backoffCeiling(a, o) && top >= backoffCeiling(a, o) - 1, `attempt ${a}: ${top}`);
  }
  assert.equal(backoffDelay(2, o, () => 0.5), 200);
});

test("with Math.random every delay stays within [0, ceiling)", () => {
  for (let a = 0; a < 30; a++) {
    for (let i = 0; i < 50; i++) {
      const d = backoffDelay(a, o);
      assert.ok(d >= 0 && d < backoffCeiling(a, o), `attempt ${a}: ${d}`);
    }
  }
});
