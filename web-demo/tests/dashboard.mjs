// node web-demo/tests/dashboard.mjs <admin_base_url> <admin_token> [<subject_to_kick>]
//
// The dashboard streams live stats (active connections ≥ 1: the caller keeps a client
// connected) and lists the connections. With a subject, it kicks that subject's connection with
// the row's button and waits for the row to go.
import { withPage, check } from "./browser.mjs";

const [base, token, kickSubject] = process.argv.slice(2);
if (!base || !token) {
  console.error("usage: dashboard.mjs <admin_base_url> <admin_token> [<subject_to_kick>]");
  process.exit(2);
}

await withPage(async (page) => {
  page.on("dialog", (d) => d.accept());
  await page.goto(`${base}/dashboard?token=${encodeURIComponent(token)}`);
  await page.waitForFunction(() => document.getElementById("state").textContent === "live");
  await page.waitForFunction(() => Number(document.getElementById("active-connections").textContent) >= 1);
  check(/^\d+$/.test(await page.textContent("#active-connections")), "#active-connections is not a plain number");
  check(!page.url().includes(token), "the token stays in the address bar");
  await page.waitForSelector("#conn-table tr[data-id]");
  const rows = await page.$$eval("#conn-table tr[data-id]", (trs) => trs.map((r) => [r.dataset.id, r.dataset.subject]));
  console.log(`rows: ${JSON.stringify(rows)}; deliveries/s ${await page.textContent("#deliveries-rate")}`);
  check(/^\d/.test(await page.textContent("#deliveries-rate")), "#deliveries-rate shows no number");

  if (!kickSubject) return;
  const row = rows.find(([, s]) => s === kickSubject);
  check(row, `no row for ${kickSubject}`);
  await page.click(`#conn-table tr[data-id="${row[0]}"] button.kick`);
  await page.waitForFunction((id) => !document.querySelector(`#conn-table tr[data-id="${id}"]`), row[0]);
  console.log(`kicked connection ${row[0]} (${kickSubject})`);
});
