// Shared by the browser tests: Debian's Chromium, headless, never a downloaded browser.
import { chromium } from "playwright-core";

export async function withPage(fn) {
  const guard = setTimeout(() => { console.error("guard timeout: 30 s"); process.exit(1); }, 30_000);
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu"],
  });
  try {
    const page = await browser.newPage();
    page.on("console", (m) => console.log(`[page] ${m.text()}`));
    page.on("pageerror", (e) => console.log(`[page error] ${e.message}`));
    await fn(page);
    console.log("ok");
  } catch (e) {
    console.error(`FAILED: ${e.stack || e}`);
    process.exitCode = 1;
  } finally {
    clearTimeout(guard);
    await browser.close();
  }
}
