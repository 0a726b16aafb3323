// node web-demo/tests/webrtc.mjs <public_base_url> <token | dev:<subject>> <reliable_topic> <lossy_topic> <reliable_frames> [<lossy_frames>]
//
// Headless Debian Chromium as a WebRTC peer of the hub (driven by tests/it/web_rtc_browser.rs):
// opens <base>/rtc (web-demo/rtc.html) with the token (dev:<subject>: the page fetches a
// development token for <subject>) and both topics, waits until the page has
// both data channels open and is subscribed, and prints one JSON line
//   {"event":"ready","conn_id":…,"offer":{…},"stats":{…}}
// on stdout. The caller then publishes; this script waits until the page has <reliable_frames>
// records of <reliable_topic> (and up to <lossy_frames> of <lossy_topic>, briefly: the lossy
// channel may lose some), then prints
//   {"event":"result","frames":[{topic,offset,size,fnv,channel,chunks}…],"bye":…,"stats":…,…}
// and "ok", and exits 0. On any failure it prints {"event":"failed",…} with what the page and
// getStats() know (SDP, candidate pairs, DTLS and channel states, a timeline of state changes)
// and exits 1 (also after 150 s).
// Page console output goes to stderr, so stdout has only these lines.
import { chromium } from "playwright-core";
import { check } from "./browser.mjs";

// Only against hangs: a debug-build hub on a loaded 2-CPU machine took 45 s for everything.
const GUARD_MS = 150_000;
const [base, token, relTopic, lossyTopic, relCount, lossyCount] = process.argv.slice(2);
if (!base || !token || !relTopic || !lossyTopic || !relCount) {
  console.error("usage: webrtc.mjs <public_base_url> <token | dev:<subject>> <reliable_topic> <lossy_topic> <reliable_frames> [<lossy_frames>]");
  process.exit(2);
}
const wantRel = Number(relCount), wantLossy = Number(lossyCount ?? 0);

const emit = (event, body) => console.log(JSON.stringify({ event, ...body }));
const isLoopback = (ip) => /^127\./.test(ip) || ip === "::1";
// "host udp 127.0.0.1:5000" or "host udp [::1]:5000" -> the IP
const ipOf = (c) => String(c).split(" ").pop().replace(/^\[?(.*?)\]?:\d+$/, "$1");

// What the page knows, for a failure report.
async function diagnose(page) {
  return page.evaluate(async () => {
    const r = window.rtc;
    if (!r) return { page: "window.rtc missing" };
    let stats = null;
    try { stats = await r.stats(); } catch (e) { stats = `getStats failed: ${e.message}`; }
    return {
      phase: r.phase, ready: r.ready, channels: r.channels, connection: r.connection, errors: r.errors,
      control: r.control, frames: r.frames.length, lossyIncomplete: r.lossyIncomplete, malformed: r.malformed,
      incomplete: r.incomplete(),
      session: r.session, timeline: r.timeline, statsAtTrouble: r.statsAtTrouble, sdp: r.sdp, stats,
    };
  }).catch((e) => ({ evaluate: e.message }));
}

function candidates(sdp) {
  return (sdp || "").split(/\r\n/).filter((l) => l.startsWith("a=candidate:")).map((l) => l.slice(2));
}

let browser, page;
const guard = setTimeout(async () => {
  const d = page ? await diagnose(page) : null;
  emit("failed", { reason: `guard timeout: not done after ${GUARD_MS / 1000} s`, page: d });
  process.exit(1);
}, GUARD_MS);

try {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
      // WebRTC on loopback. Real addresses in candidates, not mDNS .local names (whose
      // registration would multicast on the LAN). Chromium 156 gathers no 127.0.0.1 host
      // candidate even with --allow-loopback-in-peer-connection (kept in case other builds do);
      // it reaches the hub's 127.0.0.1 candidate anyway, as a peer-reflexive 127.0.0.1 pair.
      "--allow-loopback-in-peer-connection", "--disable-features=WebRtcHideLocalIpsWithMdns",
    ],
  });
  page = await browser.newPage();
  page.setDefaultTimeout(60_000);
  page.on("console", (m) => console.error(`[page console.${m.type()}] ${m.text()}`));
  page.on("pageerror", (e) => console.error(`[page exception] ${e.message}`));

  const url = new URL("/rtc", base);
  if (token.startsWith("dev:")) url.searchParams.set("subject", token.slice(4));
  else url.searchParams.set("token", token);
  url.searchParams.set("topics", `${relTopic},${lossyTopic}`);
  await page.goto(url.href);
  await page.waitForFunction(() => window.rtc && (window.rtc.ready || window.rtc.phase === "failed"));
  let d = await diagnose(page);
  check(d.ready, `the page did not get ready: ${JSON.stringify(d)}`);
  const sent = candidates(d.sdp.sent);
  // The offer the hub got names no address but loopback ones (Chromium gathers none: see
  // loopbackOnly() in rtc.html).
  check(sent.every((c) => isLoopback(c.split(" ")[4])), `non-loopback candidate sent: ${sent}`);
  const defaults = (d.sdp.sent.match(/^c=.*$/m) || [""])[0];
  check(/ (127\.\S+|::1|0\.0\.0\.0)$/.test(defaults.trim()), `the offer's c= line: ${defaults}`);
  const welcome = await page.evaluate(() => window.rtc.welcome);
  emit("ready", {
    conn_id: welcome.conn_id,
    offer: { gathered: candidates(d.sdp.gathered), sent, stripped: d.sdp.stripped },
    stats: d.stats,
  });

  // The caller publishes now.
  await page.waitForFunction(([t, n]) =>
    window.rtc.phase === "failed" || window.rtc.frames.filter((f) => f.topic === t).length >= n, [relTopic, wantRel],
    { timeout: 100_000 });
  // Lossy frames come interleaved with the reliable ones; give stragglers a moment.
  await page.waitForFunction(([t, n]) => window.rtc.frames.filter((f) => f.topic === t).length >= n,
    [lossyTopic, wantLossy], { timeout: 1500 }).catch(() => {});
  d = await diagnose(page);
  check(d.phase === "ready", `the page is ${d.phase}: ${JSON.stringify(d)}`);
  const frames = await page.evaluate(() =>
    window.rtc.frames.map(({ topic, offset, epoch, size, fnv, channel, chunks, at }) =>
      ({ topic, offset, epoch, size, fnv, channel, chunks, at })));
  // The page shows them: one row per frame (newest first) with its size and checksum.
  const rows = await page.$$eval("#frames tr", (trs) => trs.map((tr) => [tr.dataset.topic, Number(tr.dataset.offset),
    Number(tr.dataset.size), tr.dataset.fnv]).reverse());
  check(JSON.stringify(rows) === JSON.stringify(frames.map((f) => [f.topic, f.offset, f.size, f.fnv])),
    `the frames table shows ${JSON.stringify(rows)}`);
  check((await page.textContent("#count")) === String(frames.length), `#count is ${await page.textContent("#count")}`);
  // Which addresses ICE actually used: every pair that carried a check or traffic.
  const used = (d.stats.pairs || []).filter((p) => p.requestsSent || p.responsesReceived || p.bytesReceived);
  const bye = await page.evaluate(() => window.rtc.stop());
  emit("result", {
    frames,
    errors: d.errors,
    malformed: d.malformed,
    lossy_incomplete: d.lossyIncomplete,
    incomplete: d.incomplete,
    remote_candidates: d.stats.remoteCandidates,
    used_pairs: used,
    non_loopback_pairs: used.filter((p) => !isLoopback(ipOf(p.local)) || !isLoopback(ipOf(p.remote))),
    stats: { transport: d.stats.transport, channels: d.stats.channels },
    bye,
    timeline: await page.evaluate(() => window.rtc.timeline),
  });
  check(bye && bye.type === "closed", `bye answered ${JSON.stringify(bye)}`);
  console.log("ok");
} catch (e) {
  emit("failed", { reason: String(e.stack || e), page: page ? await diagnose(page) : null });
  process.exitCode = 1;
} finally {
  clearTimeout(guard);
  if (browser) await browser.close().catch(() => {});
}
process.exit(process.exitCode ?? 0);
