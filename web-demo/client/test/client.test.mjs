// The client's connection logic against a scripted fake WebSocket: no hub, no network. What a
// pending request becomes when the socket drops or the answer never comes, how a refused token
// is handled, where a reconnect goes, and what a resumed subscription asks for and delivers.
import { afterEach, test } from "node:test";
import assert from "node:assert/strict";
import { connect, FanhubError } from "../dist/index.js";
import { record } from "./support.mjs";

class FakeWS {
  static sockets = [];
  constructor(url, protocol) {
    this.url = url;
    this.protocol = protocol;
    this.readyState = 0;
    this.binaryType = "blob";
    this.sent = [];
    this.onopen = this.onmessage = this.onclose = this.onerror = null;
    FakeWS.sockets.push(this);
  }
  send(data) {
    this.sent.push(typeof data === "string" ? JSON.parse(data) : data);
  }
  close(code = 1000, reason = "") {
    this.closedByClient = code;
    this.readyState = 3;
  }
  terminate() {
    this.terminated = true;
    this.readyState = 3;
  }
  // The server's side.
  accept() {
    this.readyState = 1;
    this.onopen?.({});
  }
  push(msg) {
    this.onmessage?.({ data: JSON.stringify(msg) });
  }
  pushBinary(bytes) {
    this.onmessage?.({ data: bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) });
  }
  drop(code = 1006, reason = "") {
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }
  /** Accepts and welcomes the client's `connect`. */
  welcome() {
    this.accept();
    const c = this.sent.find((m) => m.op === "connect");
    assert.ok(c, "connect sent on open");
    this.push({ type: "welcome", id: c.id, conn_id: FakeWS.sockets.indexOf(this) + 1, node_id: "n1", subscriptions: [] });
    return c;
  }
  ops(op) {
    return this.sent.filter((m) => m.op === op);
  }
}


const tick = () => new Promise((r) => setTimeout(r, 1));
async function nthSocket(n) {
  for (let i = 0; i < 500 && FakeWS.sockets.length < n; i++) await tick();
  assert.ok(FakeWS.sockets.length >= n, `socket ${n} opened`);
  return FakeWS.sockets[n - 1];
}

/** Clients a test made: each is closed after its test, whatever the test did, so no keep-alive
 * or request timer outlives it and keeps the runner's process alive. */
const made = [];
afterEach(() => {
  for (const c of made.splice(0)) c.close();
});

function client(extra = {}) {
  FakeWS.sockets = [];
  const c = connect({ endpoints: ["ws://a/ws", "ws://b/ws"], token: "t0", WebSocket: FakeWS, random: () => 0, clientId: "me", ...extra });
  made.push(c);
  const statuses = [];
  c.on("status", (s) => statuses.push(s));
  c.on("error", () => {});
  return { c, statuses };
}

test("connect sends the token and client_id with the fanhub.v1 subprotocol", async () => {
  const { c, statuses } = client();
  const ws = await nthSocket(1);
  assert.equal(ws.url, "ws://a/ws");
  assert.equal(ws.protocol, "fanhub.v1");
  const hello = ws.welcome();
  assert.equal(hello.token, "t0");
  assert.equal(hello.client_id, "me");
  assert.equal(ws.binaryType, "arraybuffer");
  assert.deepEqual(statuses.map((s) => s.state), ["connecting", "connected"]);
  c.close();
  assert.equal(statuses.at(-1).state, "closed");
});

test("a publish unanswered when the connection drops is rejected as disconnected", async () => {
  const { c } = client();
  const ws = await nthSocket(1);
  ws.welcome();
  const p = c.publish("t", { a: 1 });
  await tick();
  assert.equal(ws.ops("publish").length, 1);
  ws.drop(1006);
  await assert.rejects(p, (e) => e instanceof FanhubError && e.code === "disconnected");
  c.close();
});

test("a binary publish is a publish frame whose request id the answer echoes", async () => {
  const { c } = client();
  const ws = await nthSocket(1);
  ws.welcome();
  const p = c.publish("t", new Uint8Array([7, 8]));
  await tick();
  const frame = ws.sent.find((m) => m instanceof Uint8Array);
  assert.equal(frame[0], 2);
  const id = new DataView(frame.buffer).getUint32(4);
  assert.ok(id > 0);
  ws.push({ type: "published", id, topic: "t", offset: 12, epoch: 3 });
  assert.deepEqual(await p, { offset: 12, epoch: 3 });
  c.close();
});

test("a server error rejects the request with the server's code", async () => {
  const { c } = client();
  const ws = await nthSocket(1);
  ws.welcome();
  const p = c.publish("t", 1);
  await tick();
  ws.push({ type: "error", id: ws.ops("publish")[0].id, code: "permission_denied", message: "no", topic: "t" });
  await assert.rejects(p, (e) => e.code === "permission_denied" && e.topic === "t");
  c.close();
});

test("a rate-limited publish is sent again after the hub's retry_after_ms, and later ones wait their turn", async () => {
  const { c } = client();
  const ws = await nthSocket(1);
  ws.welcome();
  const first = c.publish("t", 1);
  for (let i = 0; i < 200 && ws.ops("publish").length < 1; i++) await tick();
  const [op] = ws.ops("publish");
  const refusedAt = Date.now();
  ws.push({ type: "error", id: op.id, code: "rate_limited", message: "slow down", topic: "t", limit: "publish_rate_per_second", retry_after_ms: 30 });
  await tick();
  // Held: a second publish, made once the refusal is known, waits behind the first one's retry.
  const second = c.publish("t", 2);
  for (let i = 0; i < 200 && ws.ops("publish").length < 2; i++) await tick();
  assert.ok(Date.now() - refusedAt >= 29, "not sent again before retry_after_ms");
  assert.deepEqual(ws.ops("publish").map((m) => m.data), [1, 1], "the refused one again, the later one still held");
  ws.push({ type: "published", id: ws.ops("publish")[1].id, topic: "t", offset: 1, epoch: 7 });
  assert.deepEqual(await first, { offset: 1, epoch: 7 });
  for (let i = 0; i < 200 && ws.ops("publish").length < 3; i++) await tick();
  assert.equal(ws.ops("publish")[2].data, 2);
  ws.push({ type: "published", id: ws.ops("publish")[2].id, topic: "t", offset: 2, epoch: 7 });
  assert.deepEqual(await second, { offset: 2, epoch: 7 });
  // Without retry_after_ms (or for another code) the error is the caller's.
  const third = c.publish("t", 3);
  for (let i = 0; i < 200 && ws.ops("publish").length < 4; i++) await tick();
  ws.push({ type: "error", id: ws.ops("publish")[3].id, code: "rate_limited", message: "no hint" });
  await assert.rejects(third, (e) => e.code === "rate_limited" && e.retryAfterMs === undefined);
  c.close();
});

test("a request without an answer times out", async () => {
  const { c } = client({ requestTimeoutMs: 20 });
  const ws = await nthSocket(1);
  ws.welcome();
  await assert.rejects(c.publish("t", 1), (e) => e instanceof FanhubError && e.code === "timeout");
  c.close();
});

test("a publish made while disconnected is sent once connected", async () => {
  const { c } = client();
  const ws = await nthSocket(1);
  const p = c.publish("t", { x: 1 });
  await tick();
  assert.equal(ws.ops("publish").length, 0);
  ws.welcome();
  const sent = ws.ops("publish");
  assert.equal(sent.length, 1);
  ws.push({ type: "published", id: sent[0].id, offset: 1, epoch: 1 });
  assert.deepEqual(await p, { offset: 1, epoch: 1 });
  c.close();
});

test("after a drop it reconnects to the same endpoint and resumes after the last delivered offset", async () => {
  const { c, statuses } = client();
  const ws1 = await nthSocket(1);
  ws1.welcome();
  const sub = c.subscribe("a/b");
  const got = [];
  const gaps = [];
  sub.on("message", (m) => got.push([m.offset, m.parse().n]));
  sub.on("gap", (g) => gaps.push(g));
  const s1 = ws1.ops("subscribe")[0];
  assert.equal(s1.offset, undefined);
  ws1.push({ type: "subscribed", id: s1.id, topic: "a/b", epoch: 5, offset: 3, head: 3, replayed: 0, recovered: true });
  ws1.pushBinary(new Uint8Array([...record("a/b", 3, 5, '{"n":3}'), ...record("a/b", 4, 5, '{"n":4}')]));
  ws1.drop(1006);

  const ws2 = await nthSocket(2);
  assert.equal(ws2.url, "ws://a/ws", "a connection that worked is not a failed endpoint");
  assert.ok(!statuses.some((s) => s.state === "failed_over"));
  const r = statuses.find((s) => s.state === "reconnecting");
  assert.deepEqual(r, { state: "reconnecting", attempt: 0, delayMs: 0 });
  ws2.welcome();
  const s2 = ws2.ops("subscribe")[0];
  assert.deepEqual([s2.topic, s2.offset, s2.epoch], ["a/b", 5, 5]);
  ws2.push({ type: "subscribed", id: s2.id, topic: "a/b", epoch: 5, offset: 5, head: 6, replayed: 1, recovered: true });
  // A duplicate of 4, then 5.
  ws2.pushBinary(new Uint8Array([...record("a/b", 4, 5, '{"n":4}'), ...record("a/b", 5, 5, '{"n":5}')]));
  assert.deepEqual(got, [[3, 3], [4, 4], [5, 5]]);
  assert.deepEqual(gaps, []);
  c.close();
});

test("a message from an upstream source carries its metadata; its payload and parse() exclude the block", async () => {
  const { c } = client();
  const ws = await nthSocket(1);
  ws.welcome();
  const sub = c.subscribe("src/t");
  const got = [];
  sub.on("message", (m) => got.push(m));
  const s = ws.ops("subscribe")[0];
  ws.push({ type: "subscribed", id: s.id, topic: "src/t", epoch: 1, offset: 1, head: 1, replayed: 0, recovered: true });
  const meta = { source: "fleet", upstream: "orders", partition: "orders", position: "5-0" };
  ws.pushBinary(new Uint8Array([...record("src/t", 1, 1, '{"n":1}', true, meta), ...record("src/t", 2, 1, '{"n":2}')]));
  assert.deepEqual(got.map((m) => [m.offset, m.parse(), m.text(), m.meta]), [
    [1, { n: 1 }, '{"n":1}', meta],
    [2, { n: 2 }, '{"n":2}', undefined],
  ]);
  c.close();
});

test("a resume that is not recovered emits a gap with the missing range", async () => {
  const { c } = client();
  const ws1 = await nthSocket(1);
  ws1.welcome();
  const sub = c.subscribe("t", { offset: 10, epoch: 2 });
  const events = [];
  const it = (async () => {
    for await (const ev of sub) events.push(ev.type === "gap" ? ev : ev.offset);
  })();
  const s = ws1.ops("subscribe")[0];
  assert.deepEqual([s.offset, s.epoch], [10, 2]);
  ws1.push({ type: "subscribed", id: s.id, topic: "t", epoch: 2, offset: 15, head: 20, replayed: 5, recovered: false });
  ws1.pushBinary(record("t", 15, 2, "{}"));
  const unsub = c.unsubscribe("t");
  await it; // the iterator ends at once
  await tick();
  ws1.push({ type: "unsubscribed", id: ws1.ops("unsubscribe")[0].id, topic: "t" });
  await unsub;
  assert.deepEqual(events, [{ type: "gap", topic: "t", reason: "not_recovered", from: 10, to: 14, epochChanged: false, epoch: 2 }, 15]);
  c.close();
});

test("a bye's reconnect advice is the next URL tried", async () => {
  const { c, statuses } = client();
  const ws1 = await nthSocket(1);
  ws1.welcome();
  ws1.push({ type: "bye", reason: "maintenance", code: 1001, message: "", reconnect: ["ws://c/ws"] });
  ws1.drop(1001);
  const ws2 = await nthSocket(2);
  assert.equal(ws2.url, "ws://c/ws");
  assert.ok(statuses.some((s) => s.state === "bye" && s.reason === "maintenance"));
  c.close();
});

test("kicked is final: no reconnect", async () => {
  const { c, statuses } = client();
  const ws1 = await nthSocket(1);
  ws1.welcome();
  ws1.push({ type: "bye", reason: "kicked", code: 4005, message: "" });
  ws1.drop(4005);
  await tick();
  await tick();
  assert.equal(FakeWS.sockets.length, 1);
  assert.equal(statuses.at(-1).state, "closed");
  assert.equal(statuses.at(-1).error.code, "kicked");
  c.close();
});

function refuse(ws) {
  ws.accept();
  const hello = ws.ops("connect")[0];
  ws.push({ type: "error", id: hello.id, code: "unauthenticated", message: "expired: token expired" });
  ws.push({ type: "bye", reason: "unauthenticated", code: 4001, message: "" });
  ws.drop(4001);
  return hello;
}

test("a refused token is replaced once from the tokenProvider, then the client closes with unauthenticated", async () => {
  let calls = 0;
  const { c, statuses } = client({ token: undefined, tokenProvider: async () => `fresh-${++calls}` });
  const errors = [];
  c.on("error", (e) => errors.push(e));
  const ws1 = await nthSocket(1);
  assert.equal(refuse(ws1).token, "fresh-1");
  const ws2 = await nthSocket(2);
  assert.equal(refuse(ws2).token, "fresh-2");
  for (let i = 0; i < 5; i++) await tick();
  assert.equal(FakeWS.sockets.length, 2, "no reconnect loop");
  assert.equal(calls, 2);
  assert.equal(statuses.filter((s) => s.state === "reconnecting").length, 0);
  const last = statuses.at(-1);
  assert.equal(last.state, "closed");
  assert.ok(last.error instanceof FanhubError && last.error.code === "unauthenticated");
  assert.ok(errors.some((e) => e.code === "unauthenticated"));
});

test("without a tokenProvider a refused token closes at once", async () => {
  const { statuses } = client();
  refuse(await nthSocket(1));
  await tick();
  assert.equal(FakeWS.sockets.length, 1);
  assert.equal(statuses.at(-1).error.code, "unauthenticated");
});

test("token_expiring fetches a token and sends refresh", async () => {
  let calls = 0;
  const { c } = client({ tokenProvider: async () => `new-${++calls}` });
  const ws = await nthSocket(1);
  ws.welcome();
  ws.push({ type: "token_expiring", expires_at: 1, in_ms: 1000 });
  for (let i = 0; i < 5 && ws.ops("refresh").length === 0; i++) await tick();
  assert.deepEqual(ws.ops("refresh").map((m) => m.token), ["new-1"]);
  ws.push({ type: "refreshed", id: ws.ops("refresh")[0].id, expires_at: 2 });
  c.close();
});

test("a refused subscribe ends the subscription, rejects ready and is not resent on reconnect", async () => {
  const { c } = client();
  const ws1 = await nthSocket(1);
  ws1.welcome();
  const sub = c.subscribe("secret");
  const errors = [];
  sub.on("error", (e) => errors.push(e.code));
  const s = ws1.ops("subscribe")[0];
  ws1.push({ type: "error", id: s.id, code: "permission_denied", message: "no", topic: "secret" });
  await assert.rejects(sub.ready, (e) => e.code === "permission_denied");
  assert.deepEqual(errors, ["permission_denied"]);
  const done = await sub[Symbol.asyncIterator]().next();
  assert.equal(done.done, true);
  ws1.drop(1006);
  const ws2 = await nthSocket(2);
  ws2.welcome();
  assert.equal(ws2.ops("subscribe").length, 0);
  c.close();
});

test("a malformed control message is reported, not thrown", async () => {
  const { c } = client();
  const errors = [];
  c.on("error", (e) => errors.push(e.code));
  const ws = await nthSocket(1);
  ws.welcome();
  ws.onmessage({ data: "{not json" });
  assert.deepEqual(errors, ["invalid_argument"]);
  c.close();
});

test("a live stream that skips offsets emits a skipped gap before the record after the hole", async () => {
  const { c } = client();
  const ws = await nthSocket(1);
  ws.welcome();
  const sub = c.subscribe("t");
  const events = [];
  sub.on("gap", (g) => events.push(`gap ${g.reason} ${g.from}..${g.to}`));
  sub.on("message", (m) => events.push(m.offset));
  await tick();
  const s = ws.ops("subscribe")[0];
  ws.push({ type: "subscribed", id: s.id, topic: "t", epoch: 2, offset: 1, head: 0, replayed: 0, recovered: true });
  ws.pushBinary(record("t", 1, 2, "{}"));
  ws.pushBinary(record("t", 4, 2, "{}"));
  ws.pushBinary(record("t", 5, 2, "{}"));
  assert.deepEqual(events, [1, "gap skipped 2..3", 4, 5]);
  c.close();
});

test("a failed attempt fails over to the next endpoint; enough failures open its circuit", async () => {
  const { c, statuses } = client({ breaker: { minThroughput: 1, failureRatio: 1, breakDurationMs: 60_000 } });
  const ws1 = await nthSocket(1);
  assert.equal(ws1.url, "ws://a/ws");
  ws1.drop(1006); // refused before any welcome
  const ws2 = await nthSocket(2);
  assert.equal(ws2.url, "ws://b/ws");
  ws2.welcome();
  const seen = statuses.map((s) => [s.state, s.url ?? s.endpoint ?? s.from, s.circuit ?? s.to ?? s.code].filter((x) => x !== undefined).join(" "));
  assert.deepEqual(seen, [
    "connecting ws://a/ws",
    "disconnected ws://a/ws 1006",
    "circuit ws://a/ws open",
    "failed_over ws://a/ws ws://b/ws",
    "reconnecting",
    "connecting ws://b/ws",
    "connected ws://b/ws",
  ]);
  // b now fails too: a's circuit is still open, so b is tried again (the only one allowed).
  ws2.drop(1006);
  const ws3 = await nthSocket(3);
  assert.equal(ws3.url, "ws://b/ws");
  c.close();
});

test("when every circuit is open the client waits for the first to half-open, then probes it", async () => {
  let now = 0;
  const { c, statuses } = client({ now: () => now, breaker: { minThroughput: 1, failureRatio: 1, breakDurationMs: 30 } });
  (await nthSocket(1)).drop(1006);
  (await nthSocket(2)).drop(1006);
  assert.deepEqual(statuses.filter((s) => s.state === "circuit").map((s) => `${s.endpoint} ${s.circuit}`), ["ws://a/ws open", "ws://b/ws open"]);
  for (let i = 0; i < 20; i++) await tick();
  assert.equal(FakeWS.sockets.length, 2, "no attempt while both circuits are open");
  now = 31; // the fake clock passes the break; the client's wait (real timer) ends soon after
  const ws3 = await nthSocket(3);
  assert.equal(ws3.url, "ws://a/ws", "b's failure moved the client back to a");
  ws3.welcome();
  assert.deepEqual(statuses.filter((s) => s.state === "circuit").map((s) => `${s.endpoint} ${s.circuit}`).slice(2), ["ws://a/ws half_open", "ws://a/ws closed"]);
  c.close();
});

test("no welcome within connectTimeoutMs: the attempt is given up and the next endpoint tried", async () => {
  const { c, statuses } = client({ connectTimeoutMs: 20 });
  const ws1 = await nthSocket(1);
  ws1.accept(); // open, but the hub never answers connect
  const ws2 = await nthSocket(2);
  assert.equal(ws2.url, "ws://b/ws");
  const d = statuses.find((s) => s.state === "disconnected");
  assert.match(d.reason, /no welcome within 20 ms/);
  ws2.welcome();
  c.close();
});

test("keep-alive: a silent connection gets a ping; an answer keeps it, silence after a ping ends it", async () => {
  const { c, statuses } = client({ keepaliveIntervalMs: 30, keepaliveTimeoutMs: 30 });
  const ws1 = await nthSocket(1);
  ws1.welcome();
  while (ws1.ops("ping").length === 0) await tick();
  ws1.push({ type: "pong", id: ws1.ops("ping")[0].id, server_time_us: 1 });
  while (ws1.ops("ping").length < 2) await tick();
  assert.equal(FakeWS.sockets.length, 1, "answered: still the first connection");
  // Now the hub goes silent (a black hole): no answer to the second ping.
  const ws2 = await nthSocket(2);
  assert.ok(ws1.terminated || ws1.closedByClient, "the dead socket was closed");
  const d = statuses.find((s) => s.state === "disconnected");
  assert.match(d.reason, /keep-alive: nothing received for 60 ms/);
  assert.equal(ws2.url, "ws://b/ws", "a dead connection counts against its endpoint: fail over");
  ws2.welcome();
  c.close();
});

test("health() asks /healthz of the current endpoint's HTTP side and reports the client's view", async () => {
  const asked = [];
  const fetch = async (url) => {
    asked.push(url);
    return { ok: true, status: 200, text: async () => JSON.stringify({ status: "ok", version: "9.9.9", node_id: "n7" }) };
  };
  const { c } = client({ fetch, endpoints: ["wss://hub.example:8443/ws"] });
  (await nthSocket(1)).welcome();
  const h = await c.health();
  assert.deepEqual(asked, ["https://hub.example:8443/healthz"]);
  assert.equal(h.healthy, true);
  assert.equal(h.serverVersion, "9.9.9");
  assert.equal(h.nodeId, "n7");
  assert.equal(h.circuit, "closed");
  assert.equal(h.endpoint, "wss://hub.example:8443/ws");
  assert.equal(typeof h.responseTimeMs, "number");
  assert.equal(h.lastError, undefined);
  c.close();
});

test("health() of an unreachable or unhealthy hub is healthy: false with the reason, not a throw", async () => {
  const { c } = client({ fetch: async () => { throw new TypeError("fetch failed"); } });
  (await nthSocket(1)).drop(1006);
  const h = await c.health();
  assert.equal(h.healthy, false);
  assert.match(h.error, /fetch failed/);
  assert.match(h.lastError, /ws:\/\/a\/ws/);
  c.close();
  const { c: c2 } = client({ fetch: async () => ({ ok: false, status: 503, text: async () => '{"status":"unavailable","version":"1"}' }) });
  const h2 = await c2.health();
  assert.equal(h2.healthy, false);
  assert.equal(h2.serverVersion, "1");
  assert.match(h2.error, /503/);
  c2.close();
});

test("every subscribe answer is a subscribed event; those after a reconnect are resumes with the replayed count", async () => {
  const { c } = client();
  const ws1 = await nthSocket(1);
  ws1.welcome();
  const sub = c.subscribe("a/b");
  const answers = [];
  sub.on("subscribed", (a) => answers.push(a));
  const s1 = ws1.ops("subscribe")[0];
  ws1.push({ type: "subscribed", id: s1.id, topic: "a/b", epoch: 5, offset: 3, head: 3, replayed: 0, recovered: true });
  ws1.pushBinary(record("a/b", 3, 5, '{"n":3}'));
  c.reconnect();
  assert.equal(ws1.closedByClient, 4000, "the socket is closed at once");
  const ws2 = await nthSocket(2);
  ws2.welcome();
  const s2 = ws2.ops("subscribe")[0];
  assert.deepEqual([s2.offset, s2.epoch], [4, 5], "resumes after the last delivered offset");
  ws2.push({ type: "subscribed", id: s2.id, topic: "a/b", epoch: 5, offset: 4, head: 9, replayed: 5, recovered: true });
  assert.deepEqual(answers, [
    { type: "subscribed", topic: "a/b", epoch: 5, offset: 3, head: 3, replayed: 0, recovered: true, resumed: false },
    { type: "subscribed", topic: "a/b", epoch: 5, offset: 4, head: 9, replayed: 5, recovered: true, resumed: true },
  ]);
  c.close();
});

test("reconnect() is not a failure: no circuit counts it, and a reconnect while disconnected does nothing", async () => {
  const { c, statuses } = client();
  const ws1 = await nthSocket(1);
  ws1.welcome();
  c.reconnect("cut");
  c.reconnect("again"); // no socket now: nothing happens
  const ws2 = await nthSocket(2);
  assert.equal(ws2.url, "ws://a/ws");
  ws2.welcome();
  const kinds = statuses.map((s) => s.state);
  assert.deepEqual(kinds.filter((k) => k === "disconnected").length, 1);
  assert.deepEqual(statuses.find((s) => s.state === "disconnected").reason, "cut");
  assert.ok(!kinds.includes("circuit") && !kinds.includes("failed_over"), kinds.join(","));
  assert.equal(statuses.filter((s) => s.state === "connected").at(-1).transport, "websocket");
  c.close();
});

test("timeSync() sends t1 and computes the round trip and the server's clock offset from the answer", async () => {
  let wall = 1_000_000;
  const { c } = client({ wallClockUs: () => wall });
  const ws1 = await nthSocket(1);
  ws1.welcome();
  const p = c.timeSync();
  await tick();
  const req = ws1.ops("time_sync")[0];
  assert.equal(req.t1, 1_000_000);
  // Server clock 5 000 µs ahead; 300 µs each way; 100 µs in the server.
  wall = 1_000_700;
  ws1.push({ type: "time_sync", id: req.id, t1: req.t1, t2: 1_005_300, t3: 1_005_400 });
  assert.deepEqual(await p, { rttUs: 600, offsetUs: 5_000 });
  c.close();
});

test("timeSync() while the connection drops fails disconnected", async () => {
  const { c } = client();
  const ws1 = await nthSocket(1);
  ws1.welcome();
  const p = c.timeSync();
  await tick();
  ws1.drop(1006);
  await assert.rejects(p, (e) => e instanceof FanhubError && e.code === "disconnected");
  c.close();
});

test("reconnect(reason, awayMs) stays away at least awayMs before the next attempt", async () => {
  let now = 1000;
  const { c, statuses } = client({ now: () => now });
  const ws1 = await nthSocket(1);
  ws1.welcome();
  c.reconnect("cut", 2500);
  assert.deepEqual(statuses.find((s) => s.state === "reconnecting"), { state: "reconnecting", attempt: 0, delayMs: 2500 });
  c.close();
});
