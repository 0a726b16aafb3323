// node web-demo/client/test/integration.mjs <ws_url> <admin_base_url> <admin_token>
//
// The client against a real hub whose `rel/>` topics are `reliable`. It connects with a token
// from the hub's development endpoint, subscribes, publishes JSON and binary and receives them;
// then the hub is drained (bye `maintenance`), three messages are published over HTTP while the
// client is away, the drain is lifted, and the client must come back and deliver every message
// exactly once, in order, with no gap. A subscribe with a stale epoch must report a gap.
// Run by tests/it/ts_client.rs; exits non-zero with a reason on any failure.
import WebSocket from "ws";
import { connect, FanhubError } from "../dist/index.js";

const [wsUrl, adminUrl, adminToken] = process.argv.slice(2);
if (!wsUrl || !adminUrl || !adminToken) {
  console.error("usage: integration.mjs <ws_url> <admin_base_url> <admin_token>");
  process.exit(2);
}
const guard = setTimeout(() => fail("still running after 30 s"), 30_000);
const publicUrl = wsUrl.replace(/^ws/, "http").replace(/\/ws$/, "");
const topic = `rel/ts/${Date.now().toString(36)}`;
const log = (...a) => console.log(new Date().toISOString().slice(11, 23), ...a);

function fail(why) {
  console.error(`FAIL: ${why}`);
  process.exit(1);
}
function check(cond, why) {
  if (!cond) fail(why);
}

async function http(base, method, path, body) {
  const res = await fetch(base + path, {
    method,
    headers: { authorization: `Bearer ${adminToken}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok) fail(`${method} ${path}: ${res.status} ${text}`);
  return text ? JSON.parse(text) : {};
}

let tokens = 0;
async function tokenProvider() {
  tokens++;
  const res = await fetch(`${publicUrl}/v1/dev/token`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ subject: "ts-client", subscribe: [">"], publish: [">"] }),
  });
  if (!res.ok) throw new Error(`dev token: ${res.status} ${await res.text()}`);
  return (await res.json()).token;
}

/** Waits until `pred(event)` holds for a status event (or already did, per `seen`). */
function waitStatus(client, pred, what) {
  return new Promise((resolve) => {
    const t = setTimeout(() => fail(`no status ${what} within 10 s`), 10_000);
    const off = client.on("status", (s) => {
      if (pred(s)) {
        clearTimeout(t);
        off();
        resolve(s);
      }
    });
  });
}

const statuses = [];
const client = connect({
  endpoints: [wsUrl],
  tokenProvider,
  clientId: "ts-integration",
  backoff: { initialMs: 50, maxMs: 400 },
  requestTimeoutMs: 5000,
  WebSocket,
});
client.on("status", (s) => {
  statuses.push(s.state);
  log("status", JSON.stringify(s));
});
client.on("error", (e) => log("error", e.code, e.message));

await waitStatus(client, (s) => s.state === "connected", "connected");

// Subscribe (live) and collect what arrives, through the async iterator.
const sub = client.subscribe(topic);
const got = [];
const gaps = [];
const consumer = (async () => {
  for await (const ev of sub) {
    if (ev.type === "gap") gaps.push(ev);
    else got.push(ev);
  }
})();
await sub.ready;
log("subscribed", topic);

async function waitFor(n, what) {
  const deadline = Date.now() + 10_000;
  while (got.length < n) {
    if (Date.now() > deadline) fail(`${what}: ${got.length} of ${n} messages after 10 s`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

// JSON and binary publishes from the client itself.
const p1 = await client.publish(topic, { n: 1 });
const p2 = await client.publish(topic, new Uint8Array([0, 1, 2, 250]));
const p3 = await client.publish(topic, { n: 3 }, { binary: true });
check(typeof p1.offset === "number" && p2.offset === p1.offset + 1 && p3.offset === p1.offset + 2, `publish offsets ${JSON.stringify([p1, p2, p3])}`);
check(p1.epoch === p2.epoch && p2.epoch === p3.epoch, "one epoch");
await waitFor(3, "before the drain");
check(got[0].json && got[0].parse().n === 1, `JSON message: ${got[0].text()}`);
check(!got[1].json && got[1].payload.join(",") === "0,1,2,250", `binary message: ${got[1].payload}`);
check(got[2].json && got[2].parse().n === 3, `JSON sent as a binary frame: ${got[2].text()}`);
log("received the JSON and binary messages");

// A publish with no connection is refused after the drop, or waits for the reconnect; either
// way it must not be lost silently. Drain: the hub says bye `maintenance` and refuses /ws.
const bye = waitStatus(client, (s) => s.state === "bye", "bye");
const reconnecting = waitStatus(client, (s) => s.state === "reconnecting", "reconnecting");
await http(adminUrl, "POST", "/v1/admin/drain");
const b = await bye;
check(b.reason === "maintenance" && b.code === 1001, `bye ${JSON.stringify(b)}`);
await reconnecting;

// While the client is away (the hub refuses it), three more over HTTP.
const sentWhileAway = [];
for (let i = 4; i <= 6; i++) {
  const r = await http(adminUrl, "POST", "/v1/publish", { topic, data: { n: i } });
  sentWhileAway.push(r.offset);
}
log("published while away at offsets", sentWhileAway.join(","));
// Let it fail at least one more attempt against the draining node before lifting the drain.
await new Promise((r) => setTimeout(r, 300));
const back = waitStatus(client, (s) => s.state === "connected", "connected again");
await http(adminUrl, "DELETE", "/v1/admin/drain");
await back;
log("reconnected");

const p7 = await client.publish(topic, { n: 7 });
await waitFor(7, "after the reconnect");
await new Promise((r) => setTimeout(r, 200)); // any duplicate would show up now
const offsets = got.map((m) => m.offset);
const ns = got.map((m) => (m.json ? m.parse().n : "bin"));
log("offsets", offsets.join(","), "payloads", ns.join(","));
check(got.length === 7, `exactly once: ${got.length} messages (${offsets})`);
for (let i = 0; i < 7; i++) check(offsets[i] === p1.offset + i, `in order, no gap: ${offsets}`);
check(JSON.stringify(ns) === JSON.stringify([1, "bin", 3, 4, 5, 6, 7]), `payloads ${ns}`);
check(p7.offset === p1.offset + 6, `publish after the reconnect at ${p7.offset}`);
check(gaps.length === 0, `no gap expected: ${JSON.stringify(gaps)}`);
check(statuses.includes("reconnecting") && tokens >= 1, "reconnected through the backoff");

// A stale epoch: the subscription must report a gap, not skip silently.
const stale = client.subscribe(`${topic}-stale`, { offset: 1, epoch: 424242 });
const staleGapP = new Promise((resolve) => {
  const t = setTimeout(() => fail("no gap for a stale epoch"), 5000);
  stale.on("gap", (g) => (clearTimeout(t), resolve(g)));
});
await client.publish(`${topic}-stale`, { n: 1 }).catch((e) => fail(`publish stale: ${e}`));
const staleGap = await staleGapP;
check(staleGap.epochChanged === true && staleGap.from === 1, `stale epoch gap ${JSON.stringify(staleGap)}`);
log("stale epoch reported as", JSON.stringify(staleGap));

// A request pending when the connection is gone is rejected with a typed error.
await client.unsubscribe(topic);
await consumer;
client.close();
const afterClose = await client.publish(topic, { n: 8 }).then(
  () => fail("publish after close succeeded"),
  (e) => e,
);
check(afterClose instanceof FanhubError && afterClose.code === "closed", `after close: ${afterClose}`);
check(statuses.at(-1) === "closed", `last status ${statuses.at(-1)}`);

clearTimeout(guard);
log("ok");
