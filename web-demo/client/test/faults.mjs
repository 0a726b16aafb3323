// node web-demo/client/test/faults.mjs <mode> <args…>
//
// The client against a real hub through a fault-injecting TCP proxy that the caller
// (tests/it/ts_client.rs) drives. The script asks for a fault by printing a JSON line
// {"event":"cut"|"blackhole", …} on stdout and waits for the caller to answer "done" on stdin;
// it never sleeps to let something happen, it waits for the client's events (timeouts only
// guard against hangs). It prints {"event":"result", …} and then "ok" when everything held,
// and exits non-zero with a reason otherwise. Logs go to stderr.
//
// Modes (the hub's `rel/>` topics are `reliable`):
//   cuts <proxy_ws_url> <hub_ws_url> <cuts>   the subscriber's connection (through the proxy)
//       is cut <cuts> times while a publisher (straight to the hub) publishes; every message
//       must arrive exactly once, in order, with no gap; prints the replay delay after each cut
//       (from asking for the cut to the first message published after it) with p50 and p99.
//   failover <refusing_proxy_ws_url> <hub_ws_url>   the first endpoint refuses every
//       connection: the client fails over to the second; status events show it.
//   blackhole <proxy_ws_url> <hub_ws_url>   the live connection (through the proxy) is
//       black-holed: the keep-alive must find it dead, and the client must resume on the second
//       endpoint with every message once, in order.
//   health <hub_ws_url> <expected_version>   health() against the hub.
import { createInterface } from "node:readline";
import WebSocket from "ws";
import { connect } from "../dist/index.js";

const [mode, ...args] = process.argv.slice(2);
const GUARD_MS = 50_000;
const guard = setTimeout(() => fail(`still running after ${GUARD_MS / 1000} s`), GUARD_MS);
const log = (...a) => console.error(new Date().toISOString().slice(11, 23), ...a);
const emit = (event, body = {}) => console.log(JSON.stringify({ event, ...body }));

function fail(why) {
  console.error(`FAIL: ${why}`);
  emit("failed", { reason: why });
  process.exit(1);
}
function check(cond, why) {
  if (!cond) fail(why);
}

// The caller's answers, one line each, in order.
const answers = [];
const answerWaiters = [];
createInterface({ input: process.stdin }).on("line", (line) => {
  const w = answerWaiters.shift();
  if (w) w(line.trim());
  else answers.push(line.trim());
});
/** Asks the caller for a fault and waits until it says it is done. */
async function ask(event, body) {
  emit(event, body);
  const line = answers.length ? answers.shift() : await new Promise((r) => answerWaiters.push(r));
  check(line === "done", `the caller answered ${JSON.stringify(line)} to ${event}`);
}

/** Resolves with the first truthy `poll()`, re-run after every event of `sources` ([emitter, event] pairs). */
function until(what, poll, ...sources) {
  const v = poll();
  if (v) return Promise.resolve(v);
  return new Promise((resolve) => {
    const t = setTimeout(() => fail(`timed out waiting for ${what}`), 20_000);
    const offs = [];
    const again = () => {
      const v = poll();
      if (!v) return;
      clearTimeout(t);
      for (const off of offs) off();
      resolve(v);
    };
    for (const [emitter, ev] of sources) offs.push(emitter.on(ev, () => queueMicrotask(again)));
  });
}

function httpBase(wsUrl) {
  return wsUrl.replace(/^ws/, "http").replace(/\/ws$/, "");
}

function tokenProviderFor(wsUrl, subject) {
  return async () => {
    const res = await fetch(`${httpBase(wsUrl)}/v1/dev/token`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ subject, subscribe: [">"], publish: [">"] }),
    });
    if (!res.ok) throw new Error(`dev token: ${res.status} ${await res.text()}`);
    return (await res.json()).token;
  };
}

/** A client with its status events recorded (and logged). */
function client(name, endpoints, tokenUrl, extra = {}) {
  const c = connect({
    endpoints,
    tokenProvider: tokenProviderFor(tokenUrl, name),
    clientId: `${name}-${process.pid}`,
    backoff: { initialMs: 20, maxMs: 200 },
    requestTimeoutMs: 10_000,
    WebSocket,
    ...extra,
  });
  const statuses = [];
  c.on("status", (s) => {
    statuses.push({ ...s, at: performance.now() });
    log(name, "status", JSON.stringify(s));
  });
  c.on("error", (e) => log(name, "error", e.code, e.message));
  return { c, statuses };
}

const connectedCount = (statuses) => statuses.filter((s) => s.state === "connected").length;

/** Subscribes live and collects offsets and gaps. */
async function collect(c, topic) {
  const sub = c.subscribe(topic);
  const got = [];
  const gaps = [];
  sub.on("message", (m) => got.push(m.offset));
  sub.on("gap", (g) => {
    gaps.push(g);
    log("gap", JSON.stringify(g));
  });
  await sub.ready;
  return { sub, got, gaps };
}

async function publishN(publisher, topic, n) {
  const offsets = await Promise.all(Array.from({ length: n }, (_, i) => publisher.publish(topic, { i })));
  return offsets.map((r) => r.offset);
}

function exactlyOnceInOrder(got, first, total, gaps) {
  check(gaps.length === 0, `no gap expected: ${JSON.stringify(gaps)}`);
  check(got.length === total, `exactly once: ${got.length} messages of ${total}`);
  for (let i = 0; i < total; i++) {
    check(got[i] === first + i, `in order: position ${i} has offset ${got[i]}, expected ${first + i} (${got.slice(Math.max(0, i - 3), i + 3)})`);
  }
}

function percentile(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

async function cuts([proxyUrl, hubUrl, cutsArg]) {
  const CUTS = Number(cutsArg ?? 10);
  const CHUNK = 100;
  const topic = `rel/ts-cuts/${Date.now().toString(36)}`;
  const sub = client("cut-subscriber", [proxyUrl], hubUrl);
  const pub = client("cut-publisher", [hubUrl], hubUrl);
  const { sub: stream, got, gaps } = await collect(sub.c, topic);
  const delays = [];
  const detect = [];
  let first;
  for (let round = 0; round < CUTS; round++) {
    // Connected (again): the cut below hits a live connection.
    await until(`connection ${round + 1}`, () => connectedCount(sub.statuses) >= round + 1, [sub.c, "status"]);
    const offs = await publishN(pub.c, topic, CHUNK);
    first ??= offs[0];
    const base = first + round * 2 * CHUNK;
    await until(`half of chunk ${2 * round}`, () => got.length >= round * 2 * CHUNK + CHUNK / 2, [stream, "message"]);
    const disconnectsBefore = sub.statuses.filter((s) => s.state === "disconnected").length;
    const askedAt = performance.now();
    await ask("cut", { round });
    // A chunk published while the client is away (or reconnecting).
    await publishN(pub.c, topic, CHUNK);
    const firstAfterCut = base + CHUNK;
    await until(`offset ${firstAfterCut} after cut ${round}`, () => got.includes(firstAfterCut), [stream, "message"]);
    const now = performance.now();
    delays.push(now - askedAt);
    const d = sub.statuses.filter((s) => s.state === "disconnected")[disconnectsBefore];
    check(d !== undefined, `cut ${round}: the client saw no disconnect`);
    detect.push(d.at - askedAt);
    await until(`chunk ${2 * round + 1}`, () => got.length >= (round + 1) * 2 * CHUNK, [stream, "message"]);
    log(`cut ${round}: replay after ${delays.at(-1).toFixed(1)} ms (disconnect seen after ${detect.at(-1).toFixed(1)} ms)`);
  }
  exactlyOnceInOrder(got, first, CUTS * 2 * CHUNK, gaps);
  check(connectedCount(sub.statuses) === CUTS + 1, `one connection per cut: ${connectedCount(sub.statuses)}`);
  const sorted = [...delays].sort((a, b) => a - b);
  const ms = (v) => Math.round(v * 10) / 10;
  emit("result", {
    cuts: CUTS,
    messages: got.length,
    replay_delay_ms: delays.map(ms),
    p50_ms: ms(percentile(sorted, 50)),
    p99_ms: ms(percentile(sorted, 99)),
    max_ms: ms(sorted.at(-1)),
    disconnect_seen_ms: detect.map(ms),
  });
  sub.c.close();
  pub.c.close();
}

async function failover([refusingUrl, hubUrl]) {
  // The first endpoint refuses: with a minimum throughput of 1 its circuit opens at once.
  const a = client("failover", [refusingUrl, hubUrl], hubUrl, { breaker: { minThroughput: 1, breakDurationMs: 60_000 } });
  const connected = await until("connected", () => a.statuses.find((s) => s.state === "connected"), [a.c, "status"]);
  check(connected.url === hubUrl, `connected to ${connected.url}, expected ${hubUrl}`);
  const seq = a.statuses.map((s) => s.state);
  const failedOver = a.statuses.find((s) => s.state === "failed_over");
  check(failedOver && failedOver.from === refusingUrl && failedOver.to === hubUrl, `failed_over: ${JSON.stringify(failedOver)}`);
  const opened = a.statuses.find((s) => s.state === "circuit");
  check(opened && opened.endpoint === refusingUrl && opened.circuit === "open", `circuit: ${JSON.stringify(opened)}`);
  check(seq.indexOf("failed_over") < seq.indexOf("connected"), `order: ${seq}`);
  check(a.statuses.some((s) => s.state === "connecting" && s.url === refusingUrl), "the first endpoint was tried first");
  // It works: a round trip on the second endpoint.
  const topic = `rel/ts-failover/${Date.now().toString(36)}`;
  const s = await collect(a.c, topic);
  const [off] = await publishN(a.c, topic, 1);
  await until("the message", () => s.got.includes(off), [s.sub, "message"]);
  const h = await a.c.health();
  check(h.healthy && h.endpoint === hubUrl && h.circuit === "closed", `health after failover: ${JSON.stringify(h)}`);

  // A client with only the refusing endpoint: health() says why it is unhealthy, without throwing.
  const b = client("refused", [refusingUrl], hubUrl, { breaker: { minThroughput: 1, breakDurationMs: 60_000 } });
  await until("a failed attempt", () => b.statuses.find((s) => s.state === "circuit"), [b.c, "status"]);
  const hb = await b.c.health();
  check(!hb.healthy && typeof hb.error === "string" && hb.circuit === "open" && /refus|closed|1006/i.test(hb.lastError ?? ""),
    `health of a refusing endpoint: ${JSON.stringify(hb)}`);
  emit("result", { statuses: a.statuses.map(({ at, ...s }) => s), health: h, refused_health: hb });
  a.c.close();
  b.c.close();
}

async function blackhole([proxyUrl, hubUrl]) {
  const N = 50;
  const topic = `rel/ts-blackhole/${Date.now().toString(36)}`;
  const sub = client("bh-subscriber", [proxyUrl, hubUrl], hubUrl, { keepaliveIntervalMs: 200, keepaliveTimeoutMs: 300 });
  const pub = client("bh-publisher", [hubUrl], hubUrl);
  await until("connected", () => connectedCount(sub.statuses) >= 1, [sub.c, "status"]);
  check(sub.statuses.find((s) => s.state === "connected").url === proxyUrl, "first through the proxy");
  const { sub: stream, got, gaps } = await collect(sub.c, topic);
  const before = await publishN(pub.c, topic, N);
  await until("the first messages", () => got.length >= N, [stream, "message"]);
  const askedAt = performance.now();
  await ask("blackhole");
  // Published while every byte to the subscriber vanishes.
  await publishN(pub.c, topic, N);
  const dead = await until("the keep-alive finding the connection dead",
    () => sub.statuses.find((s) => s.state === "disconnected"), [sub.c, "status"]);
  check(/keep-alive/.test(dead.reason), `disconnected because ${dead.reason}`);
  const back = await until("connected again", () => sub.statuses.filter((s) => s.state === "connected")[1], [sub.c, "status"]);
  check(back.url === hubUrl, `resumed on ${back.url}, expected the second endpoint ${hubUrl}`);
  check(sub.statuses.some((s) => s.state === "failed_over" && s.from === proxyUrl && s.to === hubUrl), "failed over");
  await until("every message", () => got.length >= 2 * N, [stream, "message"]);
  // Anything duplicated after the resume would be queued behind this round trip.
  const [last] = await publishN(pub.c, topic, 1);
  await until("the marker", () => got.includes(last), [stream, "message"]);
  exactlyOnceInOrder(got, before[0], 2 * N + 1, gaps);
  emit("result", { detected_after_ms: Math.round(dead.at - askedAt), reason: dead.reason, messages: got.length });
  sub.c.close();
  pub.c.close();
}

async function health([hubUrl, version]) {
  const a = client("health", [hubUrl], hubUrl);
  await until("connected", () => connectedCount(a.statuses) >= 1, [a.c, "status"]);
  const h = await a.c.health();
  check(h.healthy === true, `healthy: ${JSON.stringify(h)}`);
  check(h.serverVersion === version, `server version ${h.serverVersion}, expected ${version}`);
  check(h.endpoint === hubUrl && h.circuit === "closed" && h.lastError === undefined, JSON.stringify(h));
  check(typeof h.responseTimeMs === "number" && h.responseTimeMs >= 0, `response time ${h.responseTimeMs}`);
  check(typeof h.nodeId === "string" && h.nodeId.length > 0, `node id ${h.nodeId}`);
  emit("result", { health: h });
  a.c.close();
}

const modes = { cuts, failover, blackhole, health };
if (!modes[mode]) {
  console.error("usage: faults.mjs cuts|failover|blackhole|health <args…>");
  process.exit(2);
}
try {
  await modes[mode](args);
} catch (e) {
  fail(String(e?.stack ?? e));
}
clearTimeout(guard);
console.log("ok");
process.exit(0);
