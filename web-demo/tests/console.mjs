// node web-demo/tests/console.mjs <public_base_url> [<admin_base_url> <admin_token>]
//
// The console (/console) gets a development token, connects, subscribes to demo/test, publishes three
// messages through its form and shows them with increasing offsets and the right text.
// With the admin listener and token it also checks a binary payload's hex preview and that the
// page reconnects after a maintenance drain and resumes its subscription after the last offset
// it received (messages published while it was away are replayed, none twice).
import { withPage, check, call } from "./browser.mjs";

const [base, adminBase, adminToken] = process.argv.slice(2);
if (!base) {
  console.error("usage: console.mjs <public_base_url> [<admin_base_url> <admin_token>]");
  process.exit(2);
}
const TOPIC = "demo/test";

// [offset, payload text] of every message shown for TOPIC, oldest first.
const shown = (page) =>
  page.$$eval(`#messages [data-topic="${TOPIC}"]`, (els) =>
    els.map((e) => [Number(e.dataset.offset), e.querySelector(".payload").textContent]).reverse());

async function waitForCount(page, n) {
  await page.waitForFunction(([t, n]) => document.querySelectorAll(`#messages [data-topic="${t}"]`).length >= n,
    [TOPIC, n]);
}

await withPage(async (page) => {
  await page.goto(`${base}/console`);
  await page.waitForFunction(() => document.getElementById("status").textContent === "connected");

  await page.fill("#topic", TOPIC);
  await page.click("#subscribe");
  await page.waitForSelector(`#subscriptions li[data-topic="${TOPIC}"]`);

  const sent = ['{"n":1}', "plain text 2", '{"n":3,"s":"drei"}'];
  for (const data of sent) {
    await page.fill("#publish-topic", TOPIC);
    await page.fill("#publish-data", data);
    await page.click("#publish");
  }
  await waitForCount(page, 3);
  let got = await shown(page);
  check(got.length === 3, `expected 3 messages, got ${JSON.stringify(got)}`);
  check(got.every(([o], i) => i === 0 || o > got[i - 1][0]), `offsets not increasing: ${JSON.stringify(got)}`);
  check(JSON.stringify(got.map(([, t]) => t)) === JSON.stringify(sent), `payloads: ${JSON.stringify(got)}`);
  check((await page.textContent("#count")) === "3", `#count is ${await page.textContent("#count")}`);
  console.log(`received ${JSON.stringify(got)}`);

  if (!adminBase) return;

  // A payload that is not UTF-8 is shown as a hex preview with its size.
  const first = got[0][0];
  await call("POST", `${adminBase}/v1/publish`, adminToken,
    { topic: TOPIC, data_base64: Buffer.from([0xff, 0xfe, 0x00, 0x01]).toString("base64") });
  await waitForCount(page, 4);
  const bin = await page.$eval(`#messages [data-topic="${TOPIC}"]`, (e) =>
    ({ size: e.dataset.size, text: e.querySelector(".payload").textContent }));
  check(bin.size === "4" && bin.text.startsWith("ff fe 00 01") && bin.text.includes("4 bytes"),
    `binary payload shown as ${JSON.stringify(bin)}`);

  // Drain: the hub says bye (maintenance) and refuses connections; what is published meanwhile
  // must arrive after the page reconnects, exactly once.
  await call("POST", `${adminBase}/v1/admin/drain`, adminToken);
  await page.waitForFunction(() => document.getElementById("status").textContent !== "connected");
  for (const n of [5, 6]) await call("POST", `${adminBase}/v1/publish`, adminToken, { topic: TOPIC, data: { n } });
  // Let at least one reconnect attempt be refused (503) before accepting connections again.
  await page.waitForFunction(() => /attempt [2-9]/.test(document.getElementById("status").textContent));
  await call("DELETE", `${adminBase}/v1/admin/drain`, adminToken);
  await page.waitForFunction(() => document.getElementById("status").textContent === "connected");
  await waitForCount(page, 6);
  await page.waitForTimeout(300); // a duplicate would show up now
  got = await shown(page);
  const offsets = got.map(([o]) => o);
  check(JSON.stringify(offsets) === JSON.stringify([0, 1, 2, 3, 4, 5].map((i) => first + i)),
    `after the reconnect: ${JSON.stringify(got)}`);
  check(got[4][1] === '{"n":5}' && got[5][1] === '{"n":6}', `replayed payloads: ${JSON.stringify(got)}`);
  check((await page.textContent("#count")) === "6", `#count is ${await page.textContent("#count")}`);
  console.log(`resumed after the drain: offsets ${JSON.stringify(offsets)}`);
});
