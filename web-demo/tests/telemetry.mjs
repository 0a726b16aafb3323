// node web-demo/tests/telemetry.mjs <public_base_url>
//
// The telemetry page (/) against a hub running the demo publisher: every stream's chart
// receives and draws points (its canvas changes), the end-to-end latency is a positive number,
// a stream can be removed and added back, "Cut connection" drops the socket and the page
// resumes every stream with the replayed count shown and no offset break, and another vehicle
// can be chosen.
import { withPage, check, shot } from "./browser.mjs";

const [base] = process.argv.slice(2);
if (!base) {
  console.error("usage: telemetry.mjs <public_base_url>");
  process.exit(2);
}

const card = (stream) => `.stream[data-stream="${stream}"]`;
const figure = (page, stream, name) => page.$eval(card(stream), (c, n) => c.dataset[n], name);
const received = async (page, stream) => Number(await figure(page, stream, "received"));

async function receivedAtLeast(page, stream, n) {
  await page.waitForFunction(([sel, n]) => Number(document.querySelector(sel)?.dataset.received) >= n, [card(stream), n]);
}

// A digest of what a canvas shows.
const pixels = (page, sel) => page.$eval(sel, (c) => c.toDataURL());

await withPage(async (page) => {
  await page.goto(`${base}/`);
  await page.waitForFunction(() => document.getElementById("status").dataset.state === "connected");
  const streams = await page.$$eval("#streams input", (els) => els.map((e) => e.value));
  check(streams.length === 6, `six streams offered, got ${streams}`);

  // Every stream receives; the charts draw what arrives.
  for (const s of streams) await receivedAtLeast(page, s, 10);
  const speedCanvas = `${card("speed")} canvas`;
  const before = await pixels(page, speedCanvas);
  await receivedAtLeast(page, "speed", (await received(page, "speed")) + 10);
  await page.waitForFunction(([sel, before]) => document.querySelector(sel).toDataURL() !== before, [speedCanvas, before]);
  const trackBefore = await pixels(page, `${card("gps")} canvas`);
  await receivedAtLeast(page, "gps", (await received(page, "gps")) + 10);
  check((await pixels(page, `${card("gps")} canvas`)) !== trackBefore, "the GPS track did not change");

  // Latency: measured against the hub's clock (time sync), a positive number of milliseconds once
  // the clock estimate has settled (its error is at most half the best round trip so far).
  await page.waitForFunction((sel) => Number(document.querySelector(sel).dataset.latency) > 0, card("speed"));
  const latency = Number(await figure(page, "speed", "latency"));
  check(Number.isFinite(latency) && latency > 0, `latency ${latency} is not a positive number`);
  const rate = Number(await figure(page, "speed", "rate"));
  check(rate > 0, `rate ${rate}`);
  console.log(`speed: latency ${latency.toFixed(3)} ms, ${rate} msg/s, clock ${await page.textContent("#clock")}`);

  // Remove a stream and add it back.
  await page.uncheck('#streams input[value="rpm"]');
  await page.waitForSelector(card("rpm"), { state: "detached" });
  await page.check('#streams input[value="rpm"]');
  await receivedAtLeast(page, "rpm", 5);

  // Cut: the socket drops, the client stays away 2 s, then resumes every stream.
  const atCut = Object.fromEntries(await Promise.all(streams.map(async (s) => [s, await received(page, s)])));
  await page.click("#cut");
  await page.waitForFunction(() => document.getElementById("status").dataset.state !== "connected");
  await page.waitForFunction(() => document.getElementById("resume").dataset.state === "resumed", null, { timeout: 20_000 });
  for (const s of streams) await receivedAtLeast(page, s, atCut[s] + 60);
  const replayed = Number(await page.$eval("#resume", (r) => r.dataset.replayed));
  check(replayed > 0, `nothing replayed after a 2 s cut: ${await page.textContent("#resume")}`);
  for (const s of streams) {
    const breaks = Number(await figure(page, s, "breaks"));
    check(breaks === 0, `${s}: ${breaks} offset breaks after the resume`);
    check(/last resume: \d+ replayed/.test(await page.textContent(`${card(s)} .replayed`)), `${s}: no resume marker`);
  }
  console.log(`resume: ${await page.textContent("#resume")}`);
  await shot(page, "telemetry");

  // Another vehicle: the charts follow its topics.
  await page.selectOption("#vehicle", "2");
  await page.waitForFunction((sel) => document.querySelector(`${sel} h2`)?.textContent.includes("demo/vehicle/2/speed"), card("speed"));
  await receivedAtLeast(page, "speed", 10);
});
