// node web-demo/tests/dashboard.mjs http://127.0.0.1:ADMIN_PORT TOKEN — the dashboard streams live
// stats and lists the connections the test holds open.
import { withPage } from "./browser.mjs";

const [base, token] = process.argv.slice(2);
if (!base || !token) { console.error("usage: dashboard.mjs <admin base url> <admin token>"); process.exit(2); }
await withPage(async (page) => {
  await page.goto(`${base}/dashboard?token=${encodeURIComponent(token)}`);
  await page.waitForFunction(() => Number(document.getElementById("active-connections").textContent) >= 1);
  await page.waitForSelector("#conn-table tr[data-id]");
  const users = await page.$$eval("#conn-table tr", (rows) => rows.map((r) => r.children[3].textContent));
  if (!users.includes("dashboard-watcher")) throw new Error(`rows: ${JSON.stringify(users)}`);
  await page.waitForFunction(() => document.getElementById("state").textContent === "live");
});
