// node web-demo/tests/video.mjs <public_base_url> [fallback]
//
// The video page (/video) in headless Debian Chromium against a hub running the demo publisher
// (driven by tests/it/web_video.rs).
//
// Without a second argument: the page plays the demo video over WebRTC (the canvas changes from
// one screenshot to the next, the frame counter advances, the frames come on the lossy data
// channel, the latency is a positive number, the dropped frames are counted), and with ?transport=websocket over WebSocket; leaving the WebRTC
// page ends its connection to the hub.
//
// With "fallback": the page falls back to WebSocket, and says why, when the browser has no
// RTCPeerConnection, when the hub refuses the WebRTC offer and when WebRTC does not connect in
// time; with ?transport=webrtc it keeps trying WebRTC instead.
//
// Prints "ok" and exits 0, or prints the reason and what the page shows, and exits 1.
import { check, shot, withPage, WEBRTC_LOOPBACK_ARGS } from "./browser.mjs";

const [base, part = "play"] = process.argv.slice(2);
if (!base || !["play", "fallback"].includes(part)) {
  console.error("usage: video.mjs <public_base_url> [fallback]");
  process.exit(2);
}
// Under the caller's 60 s: the script reports a hang itself.
const GUARD_MS = 50_000;
// Generous waits: a debug-build hub and Chromium share two busy cores.
const WAIT_MS = 20_000;
// WebRTC's connect time before the page falls back, for the runs that expect WebRTC: the
// default of a few seconds is too tight on a loaded machine.
const RTC_CONNECT_MS = 30_000;
// How many frames apart the two screenshots are.
const FRAMES_APART = 10;

// ---- the browser ----

// Debian's Chromium (browser.mjs) with WebRTC on loopback: real addresses in the candidates,
// not mDNS .local names. The page keeps only loopback candidates in its offer to a hub on
// loopback. The scripts open pages of their own (`newPage`).
const withBrowser = (fn) => withPage((_page, browser) => fn(browser), { args: WEBRTC_LOOPBACK_ARGS, guardMs: GUARD_MS });

async function newPage(browser, name) {
  const page = await browser.newPage();
  page.setDefaultTimeout(WAIT_MS);
  page.on("console", (m) => console.log(`[${name} console.${m.type()}] ${m.text()}`));
  page.on("pageerror", (e) => console.log(`[${name} exception] ${e.message}`));
  return page;
}

// ---- what the page shows ----

// The page's figures, from their data attributes.
function figures(page) {
  return page.evaluate(() => {
    const data = (id) => document.getElementById(id).dataset;
    const num = (v) => (v === undefined || v === "" ? NaN : Number(v));
    const transport = data("transport");
    return {
      transport: transport.transport,
      connected: transport.connected === "true",
      reason: transport.reason,
      channel: data("channel").channel,
      chunks: num(data("channel").chunks),
      status: document.getElementById("status").textContent,
      statusState: document.getElementById("status").dataset.state,
      notice: document.getElementById("notice").textContent,
      frames: num(data("frames").value),
      rendered: num(data("screen").rendered),
      fps: num(data("fps").value),
      latestMs: num(data("latency").latest),
      medianMs: num(data("latency").median),
      dropped: num(data("dropped").value),
      skipped: num(data("skipped").value),
      bytes: num(data("size").bytes),
      rttMs: num(data("rtt").value),
      width: num(data("resolution").width),
      height: num(data("resolution").height),
      shown: {
        transport: document.getElementById("transport").textContent,
        latency: document.getElementById("latency").textContent,
        dropped: document.getElementById("dropped").textContent,
      },
    };
  });
}

// FNV-1a 32 of the canvas's picture (as a PNG data URL).
function canvasHash(page) {
  return page.evaluate(() => {
    const png = document.getElementById("screen").toDataURL("image/png");
    let h = 0x811c9dc5;
    for (let i = 0; i < png.length; i++) h = Math.imul(h ^ png.charCodeAt(i), 0x01000193) >>> 0;
    return h.toString(16);
  });
}

// Waits until `predicate(figures)` holds; fails with `what` and the last figures.
async function waitFor(page, what, predicate) {
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    const f = await figures(page);
    if (predicate(f)) return f;
    if (Date.now() > deadline) throw new Error(`still waiting for ${what} after ${WAIT_MS / 1000} s: ${JSON.stringify(f)}`);
    await page.waitForTimeout(100);
  }
}

// Frames drawn from a connection over `transport`, with a latency.
const receivingOver = (transport) => (f) =>
  f.transport === transport && f.connected && f.rendered >= 3 && Number.isFinite(f.latestMs);

// The hub's connection count (GET /healthz).
async function hubConnections() {
  const r = await fetch(`${base}/healthz`);
  return (await r.json()).connections;
}

async function waitForHubConnections(n) {
  const deadline = Date.now() + WAIT_MS;
  let seen;
  while ((seen = await hubConnections()) !== n) {
    check(Date.now() < deadline, `the hub has ${seen} connections, expected ${n}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

// The latencies are positive once the clock sync has settled (at first, a slow sync can put the
// hub's clock offset off by half its round trip, more than a frame takes over loopback).
async function checkLatency(page) {
  const f = await waitFor(page, "positive latencies", (f) => f.latestMs > 0 && f.medianMs > 0);
  check(f.latestMs < 10_000 && f.medianMs < 10_000, `latencies of seconds over loopback: ${JSON.stringify(f)}`);
}

// ---- playing ----

async function playsOverWebRtc(page) {
  await page.goto(`${base}/video?webrtc_timeout_ms=${RTC_CONNECT_MS}`);
  await waitFor(page, "video over WebRTC", receivingOver("webrtc"));
  const first = await figures(page);
  const firstPixels = await canvasHash(page);
  await shot(page, "video-1");
  await waitFor(page, `${FRAMES_APART} more frames drawn`, (f) => f.rendered >= first.rendered + FRAMES_APART);
  await shot(page, "video");
  const second = await figures(page);
  const secondPixels = await canvasHash(page);
  console.log(`over WebRTC: ${JSON.stringify(second)}`);

  check(firstPixels !== secondPixels, `the canvas did not change in ${FRAMES_APART} frames (pixels ${firstPixels})`);
  check(second.frames > first.frames, `the frame counter did not advance: ${first.frames} → ${second.frames}`);
  check(second.reason === "", `no fallback expected: ${second.reason}`);
  check(second.status === "live over WebRTC", `the header says "${second.status}"`);
  check(second.channel === "fanhub-lossy" && second.chunks >= 1, `frames on ${second.channel} in ${second.chunks} chunks`);
  await checkLatency(page);
  check(Number.isInteger(second.dropped) && second.dropped >= 0, `dropped frames: ${second.dropped}`);
  check(/^\d+ \(/.test(second.shown.dropped), `the dropped frames shown as "${second.shown.dropped}"`);
  check(second.width === 640 && second.height === 360, `resolution ${second.width}×${second.height}`);
  check(second.bytes > 1000, `frame size ${second.bytes} bytes`);
  check(second.fps > 0, `frames/s ${second.fps}`);
  check(second.notice === "", `notice: ${second.notice}`);
}

async function playsOverWebSocket(page) {
  await page.goto(`${base}/video?transport=websocket`);
  await waitFor(page, "video over WebSocket", receivingOver("websocket"));
  const first = await figures(page);
  const firstPixels = await canvasHash(page);
  await waitFor(page, `${FRAMES_APART} more frames drawn`, (f) => f.rendered >= first.rendered + FRAMES_APART);
  const second = await figures(page);
  console.log(`over WebSocket: ${JSON.stringify(second)}`);
  check(firstPixels !== (await canvasHash(page)), "the canvas did not change over WebSocket");
  check(second.frames > first.frames, `the frame counter did not advance: ${first.frames} → ${second.frames}`);
  check(second.status === "live over WebSocket", `the header says "${second.status}"`);
  check(second.shown.transport === "websocket" && second.reason === "", `transport shown as ${JSON.stringify(second)}`);
  await checkLatency(page);
  // The WebRTC page closed its client when it was left: this page's is the hub's only connection.
  await waitForHubConnections(1);
}

// ---- falling back ----

async function fallsBack(browser, name, url, prepare, reasonPattern) {
  const page = await newPage(browser, name);
  await prepare(page);
  await page.goto(url);
  await waitFor(page, `video over WebSocket after a fallback (${name})`, receivingOver("websocket"));
  const f = await figures(page);
  console.log(`${name}: ${JSON.stringify(f)}`);
  check(reasonPattern.test(f.reason), `${name}: the fallback reason is "${f.reason}", expected ${reasonPattern}`);
  check(f.shown.transport === "websocket", `${name}: transport shown as "${f.shown.transport}"`);
  const explained = await page.textContent("#transport-reason");
  check(explained.includes(f.reason), `${name}: the page explains the fallback as "${explained}"`);
  await shot(page, `video-fallback-${name}`);
  await page.close();
}

const refuseOffers = (page) =>
  page.route("**/v1/rtc/offer", (route) => route.fulfill({ status: 503, contentType: "application/json", body: '{"code":"unavailable"}' }));

async function fallbackCases(browser) {
  await fallsBack(browser, "no-webrtc", `${base}/video`,
    (page) => page.addInitScript(() => Object.defineProperty(window, "RTCPeerConnection", { value: undefined })),
    /RTCPeerConnection/);
  await fallsBack(browser, "offer-refused", `${base}/video?webrtc_timeout_ms=${RTC_CONNECT_MS}`, refuseOffers,
    /WebRTC failed: .*503/);
  await fallsBack(browser, "timeout", `${base}/video?webrtc_timeout_ms=1`, async () => {},
    /did not connect within 1 ms/);

  // Forced WebRTC: no fallback, the client keeps retrying.
  const page = await newPage(browser, "forced-webrtc");
  await refuseOffers(page);
  await page.goto(`${base}/video?transport=webrtc`);
  await waitFor(page, "a WebRTC retry", (f) => f.statusState === "reconnecting");
  const f = await figures(page);
  check(f.transport === "webrtc" && !f.connected && f.frames === 0 && f.reason === "", `forced WebRTC: ${JSON.stringify(f)}`);
  await page.close();
}

await withBrowser(async (browser) => {
  if (part === "fallback") return fallbackCases(browser);
  const page = await newPage(browser, "page");
  await playsOverWebRtc(page);
  await playsOverWebSocket(page);
});
