// node web-demo/tests/demo.mjs http://127.0.0.1:PORT — the demo page gets a dev token, connects,
// subscribes, publishes three messages through its form and shows them in order.
import { withPage } from "./browser.mjs";

const base = process.argv[2];
if (!base) { console.error("usage: demo.mjs <public base url>"); process.exit(2); }
await withPage(async (page) => {
  await page.goto(`${base}/`);
  await page.waitForFunction(() => document.getElementById("status").textContent === "connected");
  await page.fill("#topic", "demo/test");
  await page.click("#subscribe");
  await page.waitForSelector("text=subscribed to demo/test");
  for (const n of [1, 2, 3]) {
    await page.fill("#publish-topic", "demo/test");
    await page.fill("#publish-data", JSON.stringify({ n }));
    await page.click("#publish");
    await page.waitForSelector(`#messages div[data-topic="demo/test"][data-offset="${n}"]`);
  }
  const got = await page.$$eval('#messages div[data-topic="demo/test"]', (ds) =>
    ds.map((d) => [Number(d.dataset.offset), d.querySelector(".payload").textContent]).reverse());
  const want = [[1, '{"n":1}'], [2, '{"n":2}'], [3, '{"n":3}']];
  if (JSON.stringify(got) !== JSON.stringify(want)) throw new Error(`got ${JSON.stringify(got)}`);
  const count = await page.textContent("#count");
  if (count !== "3") throw new Error(`count ${count}`);
});
