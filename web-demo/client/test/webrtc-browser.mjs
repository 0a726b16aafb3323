// node web-demo/client/test/webrtc-browser.mjs <public_base_url> <token>
//
// The client's WebRTC transport in headless Debian Chromium against a real hub (driven by
// tests/it/ts_client.rs; playwright-core from web-demo/, never a downloaded browser). In a page
// of the hub's origin it imports the package from /client/index.js, connects with
// `transport: webrtc()`, subscribes to a `reliable` topic and receives records published by a
// second client over WebSocket, some larger than a chunk. Then it ends its signaling session
// (DELETE /v1/rtc/sessions/{id}): the client must find the peer gone, make a new peer
// connection and resume, so every message arrives once, in order, with no gap.
// Exits non-zero with a reason on any failure. Page console output goes to stderr.
import { chromium } from "playwright-core";

const [base, token] = process.argv.slice(2);
if (!base || !token) {
  console.error("usage: webrtc-browser.mjs <public_base_url> <token>");
  process.exit(2);
}
const GUARD_MS = 90_000;
const guard = setTimeout(() => fail(`still running after ${GUARD_MS / 1000} s`), GUARD_MS);
function fail(why) {
  console.error(`FAIL: ${why}`);
  process.exit(1);
}

let browser;
try {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
      // WebRTC on loopback, as in web-demo/tests/webrtc.mjs.
      "--allow-loopback-in-peer-connection", "--disable-features=WebRtcHideLocalIpsWithMdns",
    ],
  });
  const page = await browser.newPage();
  page.on("console", (m) => console.error(`[page console.${m.type()}] ${m.text()}`));
  page.on("pageerror", (e) => console.error(`[page exception] ${e.message}`));
  await page.goto(new URL("/healthz", base).href); // any page of the hub's origin

  const sizes = [100, 40_000, 100_000, 10, 70_000, 200];
  const result = await page.evaluate(async ({ token, sizes }) => {
    const m = await import("/client/index.js");
    // Only loopback candidates (the hub answers at 127.0.0.1; Chromium gathers none there and
    // reaches it peer-reflexively): see loopbackOnly() in web-demo/rtc.html.
    const mungeOffer = (sdp) => sdp.split("\r\n").filter((l) => !l.startsWith("a=candidate:") || / udp \d+ 127\./i.test(l))
      .map((l) => l.replace(/^c=IN IP[46] .*/, "c=IN IP4 0.0.0.0").replace(/^m=application \d+ /, "m=application 9 ")).join("\r\n");
    const inner = m.webrtc({ mungeOffer });
    const peers = [];
    const transport = { name: "webrtc", open: (url, t) => { const s = inner.open(url, t); peers.push(s); return s; } };
    const wsUrl = `${location.origin.replace(/^http/, "ws")}/ws`;
    const statuses = [];
    const frames = [];
    const client = m.connect({
      endpoints: [wsUrl], token, transport, clientId: "rtc-subscriber",
      backoff: { initialMs: 20, maxMs: 200 }, keepaliveIntervalMs: 500, keepaliveTimeoutMs: 1000,
    });
    client.on("status", (s) => { statuses.push(s); console.log("status", JSON.stringify(s)); });
    const publisher = m.connect({ endpoints: [wsUrl], token, clientId: "ws-publisher" });
    const topic = `rel/rtc-resume/${Date.now().toString(36)}`;
    const sub = client.subscribe(topic);
    const got = [];
    const gaps = [];
    let wake = () => {};
    sub.on("message", (msg) => { got.push({ offset: msg.offset, size: msg.payload.length, first: msg.payload[0] }); wake(); });
    sub.on("gap", (g) => gaps.push(g));
    await sub.ready;
    const until = (what, cond) => new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`timed out waiting for ${what}: ${JSON.stringify({ got: got.length, statuses })}`)), 30_000);
      const check = () => { if (cond()) { clearTimeout(t); wake = () => {}; resolve(); } };
      wake = check;
      client.on("status", () => check());
      check();
    });
    const publish = (i) => publisher.publish(topic, new Uint8Array(sizes[i]).fill(i + 1));
    for (let i = 0; i < 3; i++) await publish(i);
    await until("the first three", () => got.length >= 3);
    const connections = () => statuses.filter((s) => s.state === "connected").length;
    // End the peer's signaling session: the hub forgets the peer.
    const session = peers[0].session;
    const del = await fetch(session, { method: "DELETE", headers: { authorization: `Bearer ${token}` } });
    if (del.status !== 204) throw new Error(`DELETE ${session}: ${del.status}`);
    for (let i = 3; i < sizes.length; i++) await publish(i);
    await until("a second connection", () => connections() >= 2);
    await until("every message", () => got.length >= sizes.length);
    // A marker: a duplicate from the resume would arrive before it.
    const marker = await publisher.publish(topic, { marker: true });
    await until("the marker", () => got.some((g) => g.offset === marker.offset));
    client.close();
    publisher.close();
    return { got, gaps, peers: peers.length, states: statuses.map((s) => s.state), frames };
  }, { token, sizes });

  console.log(JSON.stringify({ ...result, got: result.got.map((g) => [g.offset, g.size]) }));
  const want = [...sizes.map((size, i) => [i + 1, size, i + 1]), [sizes.length + 1, 15, "{".charCodeAt(0)]];
  const seen = result.got.map((g) => [g.offset, g.size, g.first]);
  if (JSON.stringify(seen) !== JSON.stringify(want)) fail(`exactly once, in order: got ${JSON.stringify(seen)}, want ${JSON.stringify(want)}`);
  if (result.gaps.length !== 0) fail(`no gap expected: ${JSON.stringify(result.gaps)}`);
  if (result.peers < 2) fail(`a new peer connection after the session ended: ${result.peers}`);
  if (!result.states.includes("disconnected") || !result.states.includes("reconnecting")) fail(`states ${result.states}`);
  console.log("ok");
} catch (e) {
  fail(String(e?.stack ?? e));
} finally {
  clearTimeout(guard);
  if (browser) await browser.close().catch(() => {});
}
process.exit(0);
