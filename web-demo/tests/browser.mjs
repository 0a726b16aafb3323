// Shared by the browser tests: Debian's Chromium, headless — never a browser downloaded by
// Playwright. Prints "ok" and exits 0, or prints the reason and exits 1 (also when its guard, 30 s
// unless the script gives another, runs out).
import { chromium } from "playwright-core";

const GUARD_MS = 30_000;

// Chromium flags for WebRTC on loopback (as in webrtc.mjs): real addresses in candidates, not
// mDNS .local names, whose registration would multicast on the LAN.
export const WEBRTC_LOOPBACK_ARGS = [
  "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update",
  "--disable-sync", "--allow-loopback-in-peer-connection", "--disable-features=WebRtcHideLocalIpsWithMdns",
];

// Runs `fn(page, browser)` in a fresh headless Chromium; `args` are extra command-line flags,
// `guardMs` how long it may take in all (below the 60 s the Rust tests wait for a script).
export async function withPage(fn, { args = [], guardMs = GUARD_MS } = {}) {
  const guard = setTimeout(() => {
    console.error(`FAILED: guard timeout, not done after ${guardMs / 1000} s`);
    process.exit(1);
  }, guardMs);
  let browser;
  try {
    browser = await chromium.launch({
      executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
      args: ["--headless", "--no-sandbox", "--disable-gpu", ...args],
    });
    const page = await browser.newPage();
    page.setDefaultTimeout(15_000);
    page.on("console", (m) => console.log(`[page console.${m.type()}] ${m.text()}`));
    page.on("pageerror", (e) => console.log(`[page exception] ${e.message}`));
    await fn(page, browser);
    console.log("ok");
  } catch (e) {
    console.error(`FAILED: ${e.stack || e}`);
    process.exitCode = 1;
  } finally {
    clearTimeout(guard);
    if (browser) await browser.close().catch(() => {});
  }
  process.exit(process.exitCode ?? 0);
}

// Fails with `what` unless `cond` holds.
export function check(cond, what) {
  if (!cond) throw new Error(what);
}

// `fetch` with a JSON body and bearer token; returns the parsed answer, failing on non-2xx.
export async function call(method, url, token, body) {
  const headers = { Authorization: `Bearer ${token}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const r = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  if (!r.ok) throw new Error(`${method} ${url}: ${r.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

// Saves a screenshot of the page as target/screenshots/<name>.png (under the crate root, where
// the tests run the scripts) and returns its path.
export async function shot(page, name) {
  const path = `target/screenshots/${name}.png`;
  await page.screenshot({ path });
  console.log(`screenshot: ${path}`);
  return path;
}
