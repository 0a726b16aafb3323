// connect() options: checked up front, every mistake a FanhubError `invalid_options` naming
// the field.
import { test } from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";
import { resolveOptions, FanhubError, connect } from "../dist/index.js";

const base = { endpoints: ["ws://127.0.0.1:1/ws"], WebSocket };

function rejects(opts, field) {
  assert.throws(
    () => resolveOptions(opts),
    (e) => e instanceof FanhubError && e.code === "invalid_options" && e.message.includes(`\`${field}\``),
    `expected invalid_options naming ${field}`,
  );
}

test("defaults are filled in", () => {
  const r = resolveOptions(base);
  assert.deepEqual(r.backoff, { initialMs: 100, maxMs: 10_000, multiplier: 2 });
  assert.equal(r.requestTimeoutMs, 10_000);
  assert.equal(typeof r.clientId, "string");
  assert.ok(r.clientId.length > 0);
  assert.equal(resolveOptions({ ...base, backoff: { maxMs: 500 } }).backoff.maxMs, 500);
  assert.deepEqual(r.breaker, { failureRatio: 0.5, minThroughput: 3, samplingWindowMs: 30_000, breakDurationMs: 5_000 });
  assert.equal(resolveOptions({ ...base, breaker: { breakDurationMs: 50 } }).breaker.breakDurationMs, 50);
  assert.equal(r.connectTimeoutMs, 10_000);
  assert.equal(r.keepaliveIntervalMs, 15_000);
  assert.equal(r.keepaliveTimeoutMs, 10_000);
  assert.equal(typeof r.now(), "number");
});

test("each invalid option is refused with a message naming it", () => {
  rejects({ ...base, endpoints: [] }, "endpoints");
  rejects({ ...base, endpoints: "ws://x/ws" }, "endpoints");
  rejects({ ...base, endpoints: ["ws://ok/ws", "http://x/ws"] }, "endpoints[1]");
  rejects({ ...base, endpoints: ["not a url"] }, "endpoints[0]");
  rejects({ ...base, token: "" }, "token");
  rejects({ ...base, tokenProvider: "abc" }, "tokenProvider");
  rejects({ ...base, clientId: 5 }, "clientId");
  rejects({ ...base, backoff: { initialMs: 0 } }, "backoff.initialMs");
  rejects({ ...base, backoff: { multiplier: 0.5 } }, "backoff.multiplier");
  rejects({ ...base, backoff: { initialMs: 500, maxMs: 100 } }, "backoff.maxMs");
  rejects({ ...base, requestTimeoutMs: Number.NaN }, "requestTimeoutMs");
  rejects({ ...base, WebSocket: 42 }, "WebSocket");
  rejects({ ...base, breaker: 3 }, "breaker");
  rejects({ ...base, breaker: { failureRatio: 0 } }, "breaker.failureRatio");
  rejects({ ...base, breaker: { failureRatio: 1.5 } }, "breaker.failureRatio");
  rejects({ ...base, breaker: { minThroughput: 0 } }, "breaker.minThroughput");
  rejects({ ...base, breaker: { minThroughput: 2.5 } }, "breaker.minThroughput");
  rejects({ ...base, breaker: { samplingWindowMs: -1 } }, "breaker.samplingWindowMs");
  rejects({ ...base, breaker: { breakDurationMs: "5s" } }, "breaker.breakDurationMs");
  rejects({ ...base, connectTimeoutMs: 0 }, "connectTimeoutMs");
  rejects({ ...base, keepaliveIntervalMs: Infinity }, "keepaliveIntervalMs");
  rejects({ ...base, keepaliveTimeoutMs: -5 }, "keepaliveTimeoutMs");
  rejects({ ...base, now: 1 }, "now");
  rejects({ ...base, fetch: "x" }, "fetch");
  rejects({ ...base, transport: { open: 1 } }, "transport");
});

test("with a transport no WebSocket constructor is needed", () => {
  const transport = { name: "fake", open: () => ({}) };
  assert.equal(resolveOptions({ endpoints: base.endpoints, transport }).transport, transport);
  assert.equal(resolveOptions(base).transport.name, "websocket");
});

test("without a global WebSocket (Node 20) the constructor must be passed", { skip: typeof globalThis.WebSocket === "function" }, () => {
  rejects({ endpoints: base.endpoints }, "WebSocket");
});

test("connect() throws the validation error synchronously", () => {
  assert.throws(() => connect({ ...base, endpoints: [] }), (e) => e.code === "invalid_options");
});
