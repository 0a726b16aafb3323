// node web-demo/tests/dashboard.mjs single <public_base_url> <admin_base_url> <admin_token> <subject_to_kick> <policy_topic>
// node web-demo/tests/dashboard.mjs cluster <admin_base_url> <admin_token> <node_id>…
// node web-demo/tests/dashboard.mjs sources <admin_base_url> <admin_token> <source> <upstream> <published>
//
// single: the operator dashboard of one hub whose caller keeps clients connected (one of them as
// <subject_to_kick>), publishes to <policy_topic> and subscribes to it.
//  - A wrong token given in the URL fragment is refused and said so; the right one pasted makes
//    the page live; given as ?token= it works too; neither stays in the address bar.
//  - A second page in the same browser, the telemetry demo page (/ on the public listener, the
//    hub runs the demo publisher), connects with the TypeScript client: the dashboard lists that
//    connection with its protocol, subject and topics. Kicking it from its row closes the page's
//    connection; the page connects again (its streams resuming without an offset break) and the
//    dashboard lists the new connection instead of the old one.
//  - The row of <subject_to_kick>'s connection goes when kicked.
//  - Policy changes of <policy_topic> through its row's controls show in the topics table and
//    in the API; a refused one shows the hub's message and changes nothing.
//  - The three charts draw, and a screenshot of the final state is saved.
// cluster: the dashboard's cluster card lists every given node.
// sources: the upstream sources card shows <source>'s mapping of <upstream>, its consumer
// connected, and at least <published> records published.
import { withPage, check, call, shot } from "./browser.mjs";

const [mode, ...args] = process.argv.slice(2);
const usage = "usage: dashboard.mjs single <public_base_url> <admin_base_url> <admin_token> <subject_to_kick> <policy_topic>\n" +
  "       dashboard.mjs cluster <admin_base_url> <admin_token> <node_id>…\n" +
  "       dashboard.mjs sources <admin_base_url> <admin_token> <source> <upstream> <published>";
if (!(mode === "single" && args.length === 5) && !(mode === "cluster" && args.length >= 3) &&
    !(mode === "sources" && args.length === 5)) {
  console.error(usage);
  process.exit(2);
}

const CLIENT_SUBJECT = /^telemetry-/;
const CLIENT_TOPICS = ["demo/vehicle/1/speed", "demo/vehicle/1/events"];

const text = (page, selector) => page.textContent(selector);

// Progress with the seconds since the start, to see where the time goes on a slow run.
const started = Date.now();
const log = (message) => console.log(`${((Date.now() - started) / 1000).toFixed(1)} s: ${message}`);

async function waitLive(page) {
  await page.waitForFunction(() => document.getElementById("state").textContent === "live");
}

// ---- the browser connection ----

// The telemetry demo page in a second tab.
async function openClientPage(browser, publicBase) {
  const client = await browser.newPage();
  client.on("console", (m) => log(`[client console.${m.type()}] ${m.text()}`));
  client.on("pageerror", (e) => log(`[client exception] ${e.message}`));
  await client.goto(`${publicBase}/`);
  return client;
}

// The id of the page's connection once it is connected (and not `other`).
async function clientConnection(client, other) {
  await client.waitForFunction((other) => {
    const s = document.getElementById("status");
    return s.dataset.state === "connected" && s.dataset.connId && Number(s.dataset.connId) !== other;
  }, other);
  return Number(await client.$eval("#status", (s) => s.dataset.connId));
}

const connRow = (id) => `#conn-table tr[data-id="${id}"]`;

async function waitRowGone(page, id) {
  await page.waitForFunction((sel) => !document.querySelector(sel), connRow(id));
}

// Waits for the connection's row to list `topics`; returns what the row shows.
async function connectionRow(page, id, topics) {
  await page.waitForFunction(([sel, topics]) => {
    const cell = document.querySelector(`${sel} td.topics`);
    return cell && topics.every((t) => cell.title.split("\n").includes(t));
  }, [connRow(id), topics]);
  return page.$eval(connRow(id), (tr) => ({
    subject: tr.dataset.subject,
    protocol: tr.querySelector("td.protocol").textContent,
    topics: tr.querySelector("td.topics").textContent,
  }));
}

async function checkBrowserConnection(page, browser, publicBase) {
  const client = await openClientPage(browser, publicBase);
  const first = await clientConnection(client);
  const shown = await connectionRow(page, first, CLIENT_TOPICS);
  log(`the browser's connection ${first}: ${JSON.stringify(shown)}`);
  check(CLIENT_SUBJECT.test(shown.subject) && shown.protocol === "websocket",
    `row of connection ${first}: ${JSON.stringify(shown)}`);

  await page.click(`${connRow(first)} button.kick`);
  await client.waitForFunction(() => document.getElementById("status").dataset.kicks === "1");
  const second = await clientConnection(client, first);
  await waitRowGone(page, first);
  const again = await connectionRow(page, second, CLIENT_TOPICS);
  check(CLIENT_SUBJECT.test(again.subject), `row of connection ${second}: ${JSON.stringify(again)}`);
  // The page resumed its streams on the new connection: more samples, no offset break.
  const speed = '.stream[data-stream="speed"]';
  const before = Number(await client.$eval(speed, (c) => c.dataset.received));
  await client.waitForFunction(([sel, n]) => Number(document.querySelector(sel).dataset.received) > n + 20, [speed, before]);
  check(await client.$eval(speed, (c) => c.dataset.breaks) === "0", "offset breaks in the speed stream after the kick");
  log(`kicked connection ${first}; the page reconnected as ${second}, listed`);
}

async function kickSubject(page, subject) {
  const sel = `#conn-table tr[data-subject="${subject}"]`;
  await page.waitForSelector(sel);
  const id = await page.getAttribute(sel, "data-id");
  await page.click(`${connRow(id)} button.kick`);
  await waitRowGone(page, id);
  log(`kicked connection ${id} (${subject})`);
}

// ---- the token ----

async function checkToken(page, adminBase, token) {
  const wrong = "not-the-admin-token";
  await page.goto(`${adminBase}/dashboard#token=${wrong}`);
  await page.waitForFunction(() => document.getElementById("state").textContent === "wrong admin token");
  check(!page.url().includes(wrong), `the wrong token stays in the address bar: ${page.url()}`);
  check((await text(page, "#notice")).includes("refused"), `#notice: ${await text(page, "#notice")}`);

  await page.fill("#token", token);
  await page.click("#apply");
  await waitLive(page);
  check(await page.evaluate(() => sessionStorage.getItem("fanhub-admin-token")) === token, "the token is not in sessionStorage");
  check((await text(page, "#notice")) === "", `#notice after the right token: ${await text(page, "#notice")}`);

  await page.goto(`${adminBase}/dashboard?token=${encodeURIComponent(token)}`);
  await waitLive(page);
  check(!page.url().includes(token), "the token stays in the address bar");
}

// ---- policies ----

async function changePolicy(page, topic, button, kind, perSecond) {
  const row = `#topic-table tr[data-topic="${topic}"]`;
  if (kind) await page.selectOption(`${row} select.policy-kind`, kind);
  if (perSecond !== undefined) await page.fill(`${row} input.policy-rate`, String(perSecond));
  await page.evaluate((sel) => { document.querySelector(`${sel} .policy-msg`).textContent = ""; }, row);
  await page.click(`${row} button.policy-${button}`);
  await page.waitForFunction((sel) => !["", "…"].includes(document.querySelector(`${sel} .policy-msg`).textContent), row);
  return page.$eval(row, (tr) => ({
    message: tr.querySelector(".policy-msg").textContent,
    kind: tr.dataset.policy,
    params: tr.querySelector(".params").textContent,
  }));
}

async function checkPolicies(page, adminBase, token, topic) {
  const policyUrl = `${adminBase}/v1/admin/topics/${encodeURIComponent(topic)}/policy`;
  await page.waitForSelector(`#topic-table tr[data-topic="${topic}"]`);
  const steps = [
    ["apply", "reliable", undefined, "reliable", (p) => p.kind === "reliable"],
    ["reset", undefined, undefined, "best_effort", (p) => p.kind === "best_effort"],
    ["apply", "rate_limited", 5, "rate_limited", (p) => p.kind === "rate_limited" && p.per_second === 5],
  ];
  for (const [button, kind, perSecond, shown, inApi] of steps) {
    const row = await changePolicy(page, topic, button, kind, perSecond);
    check(row.kind === shown, `${button} ${kind ?? ""}: the table shows ${JSON.stringify(row)}`);
    const policy = await call("GET", policyUrl, token);
    check(inApi(policy), `${button} ${kind ?? ""}: the API has ${JSON.stringify(policy)}`);
    log(`${button} ${kind ?? ""}: table ${JSON.stringify(row)}, API ${JSON.stringify(policy)}`);
    if (button === "reset") await checkRefusedPolicy(page, topic, policyUrl, token);
  }
  const params = await text(page, `#topic-table tr[data-topic="${topic}"] .params`);
  check(params.startsWith("5/s"), `rate_limited parameters shown as ${params}`);
}

// A rate of 0 is refused: the row shows the hub's message and the policy stays.
async function checkRefusedPolicy(page, topic, policyUrl, token) {
  const before = await call("GET", policyUrl, token);
  const row = await changePolicy(page, topic, "apply", "rate_limited", 0);
  check(/400 invalid_argument/.test(row.message) && row.message.includes("per_second"), `refused change: ${row.message}`);
  check(row.kind === before.kind, `the table shows ${row.kind} after a refused change`);
  const after = await call("GET", policyUrl, token);
  check(JSON.stringify(after) === JSON.stringify(before), `the policy changed: ${JSON.stringify(after)}`);
  log(`refused change: ${row.message}`);
}

// ---- charts ----

async function checkCharts(page) {
  await page.waitForFunction(() => Number(document.getElementById("charts").dataset.samples) >= 4);
  await page.waitForFunction(() => Number(document.getElementById("deliveries-rate").textContent) > 0);
  const painted = await page.$$eval(".chart canvas", (canvases) => canvases.map((c) => {
    const pixels = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
    let inked = 0;
    for (let i = 3; i < pixels.length; i += 4) if (pixels[i]) inked++;
    return { width: c.width, height: c.height, inked };
  }));
  log(`charts: ${JSON.stringify(painted)}`);
  check(painted.length === 3 && painted.every((p) => p.width > 0 && p.height > 0 && p.inked > 0),
    `charts not drawn: ${JSON.stringify(painted)}`);
}

// The whole page in the screenshot: the viewport as tall as the page.
async function screenshot(page, name) {
  const height = await page.evaluate(() => document.documentElement.scrollHeight);
  await page.setViewportSize({ width: 1440, height: Math.min(height, 2400) });
  // Tables scrolled sideways by a click show from their first column.
  await page.evaluate(() => document.querySelectorAll("*").forEach((e) => { if (e.scrollLeft) e.scrollLeft = 0; }));
  await page.evaluate(() => new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve))));
  await shot(page, name);
}

// ---- the modes ----

async function single(page, browser) {
  const [publicBase, adminBase, token, kickedSubject, policyTopic] = args;
  log("browser started");
  await checkToken(page, adminBase, token);
  log("the token: refused when wrong, taken from the fragment, the query and the form");
  await page.waitForFunction(() => Number(document.getElementById("active-connections").textContent) >= 1);
  check(/^\d+$/.test(await text(page, "#active-connections")), "#active-connections is not a plain number");
  check(/^\d/.test(await text(page, "#deliveries-rate")), "#deliveries-rate shows no number");
  await page.waitForSelector("#conn-table tr[data-id]");

  await checkBrowserConnection(page, browser, publicBase);
  await kickSubject(page, kickedSubject);
  await checkPolicies(page, adminBase, token, policyTopic);
  await checkCharts(page);
  check((await page.getAttribute("#cluster", "data-broker")) === "memory", "the cluster card does not say memory");
  check((await text(page, "#cluster-summary")).startsWith("single node"), "the cluster card does not say single node");
  check((await text(page, "#notice")) === "", `#notice at the end: ${await text(page, "#notice")}`);
  await screenshot(page, "dashboard");
}

async function cluster(page) {
  const [adminBase, token, ...nodes] = args;
  await page.goto(`${adminBase}/dashboard#token=${encodeURIComponent(token)}`);
  await waitLive(page);
  await page.waitForFunction((ids) => ids.every((id) => document.querySelector(`#cluster-nodes tr[data-node="${id}"]`)), nodes);
  check((await page.getAttribute("#cluster", "data-broker")) === "redis", "the cluster card does not say redis");
  const listed = await page.$$eval("#cluster-nodes tr[data-node]", (trs) => trs.map((tr) => tr.cells[0].textContent));
  log(`nodes listed: ${JSON.stringify(listed)}`);
  check(listed.filter((n) => n.endsWith("(this node)")).length === 1, `one node is this one: ${JSON.stringify(listed)}`);
  await screenshot(page, "dashboard-cluster");
}

async function sources(page) {
  const [adminBase, token, source, upstream, published] = args;
  await page.goto(`${adminBase}/dashboard#token=${encodeURIComponent(token)}`);
  await waitLive(page);
  const row = `#source-table tr[data-source="${source}"]`;
  await page.waitForFunction(([row, n]) => {
    const tr = document.querySelector(row);
    return tr && Number(tr.cells[6].textContent.replace(/\D/g, "")) >= n;
  }, [row, Number(published)]);
  const cells = await page.$$eval(`${row} td`, (tds) => tds.map((td) => td.textContent));
  log(`source row: ${JSON.stringify(cells)}`);
  check(cells[0].startsWith(source), `the row names ${source}: ${cells[0]}`);
  check(cells[1].startsWith(`${upstream} → `), `the row shows the mapping of ${upstream}: ${cells[1]}`);
  check(cells[2].endsWith(": connected"), `the consumer is connected: ${cells[2]}`);
  check((await text(page, "#sources-summary")).includes("all connected"), "the summary says all connected");
  check((await page.getAttribute("#sources", "hidden")) === null, "the sources card is shown");
}

await withPage(async (page, browser) => {
  page.on("dialog", (d) => d.accept());
  await page.setViewportSize({ width: 1440, height: 1000 });
  if (mode === "single") await single(page, browser);
  else if (mode === "sources") await sources(page);
  else await cluster(page);
});
