// node web-demo/tests/sse.mjs <public_base_url> <admin_base_url> <token> <api_key> <admin_token>
//
// A browser's own EventSource on /v1/sse: records arrive as `message` events whose data says
// topic, offset, epoch and encoding and whose id is `epoch:offset`; JSON payloads are embedded,
// bytes base64-encoded. Then the stream is ended from the server (an admin kick) and the page
// leaves its EventSource open, so the browser reconnects by itself with Last-Event-ID: the
// messages published meanwhile arrive once each, none is missed, none repeats. (A client honouring
// the protocol closes its EventSource on a `bye` that advises no reconnect, as a kick's does; the
// test keeps it open because a kick is the one deterministic way to end the stream from outside.)
import { withPage, check, call } from "./browser.mjs";

const [base, adminBase, token, apiKey, adminToken] = process.argv.slice(2);
if (!adminToken) {
  console.error("usage: sse.mjs <public_base_url> <admin_base_url> <token> <api_key> <admin_token>");
  process.exit(2);
}
const TOPIC = "rel/sse";

async function publish(body) {
  return call("POST", `${base}/v1/publish`, apiKey, { topic: TOPIC, ...body });
}

const count = (page, kind) => page.evaluate((k) => window.__sse.filter((e) => e.type === k).length, kind);

await withPage(async (page) => {
  await page.goto(`${base}/healthz`);
  await page.evaluate(([topic, token]) => {
    window.__sse = [];
    const es = new EventSource(`/v1/sse?topics=${topic}&access_token=${token}`);
    window.__es = es;
    for (const type of ["message", "welcome", "subscribed", "bye"]) {
      es.addEventListener(type, (e) => window.__sse.push({ type, id: e.lastEventId, data: JSON.parse(e.data) }));
    }
  }, [TOPIC, token]);
  await page.waitForFunction(() => window.__sse.some((e) => e.type === "subscribed"));

  await publish({ data: { n: 1 } });
  await publish({ data_base64: Buffer.from([0, 1, 254, 255]).toString("base64") });
  await publish({ data: { n: 3 } });
  await page.waitForFunction(() => window.__sse.filter((e) => e.type === "message").length >= 3);

  const first = await page.evaluate(() => window.__sse.filter((e) => e.type === "message"));
  check(first[0].data.encoding === "json" && first[0].data.data.n === 1, `JSON embedded: ${JSON.stringify(first[0])}`);
  check(first[1].data.encoding === "base64" && first[1].data.data === "AAH+/w==", `bytes: ${JSON.stringify(first[1])}`);
  for (const m of first) {
    check(m.id === `${m.data.epoch}:${m.data.offset}`, `id is epoch:offset: ${JSON.stringify(m)}`);
  }

  // End the stream from the server; publish while the browser is away (or already back).
  const welcome = await page.evaluate(() => window.__sse.find((e) => e.type === "welcome").data);
  await call("DELETE", `${adminBase}/v1/admin/connections/${welcome.conn_id}`, adminToken);
  await page.waitForFunction(() => window.__sse.some((e) => e.type === "bye"));
  for (const n of [4, 5, 6]) await publish({ data: { n } });
  // The browser reconnects on its own (its retry delay) and says where it was.
  await page.waitForFunction(() => window.__sse.filter((e) => e.type === "welcome").length >= 2, null,
    { timeout: 20_000 });
  await page.waitForFunction(() => window.__sse.filter((e) => e.type === "message").length >= 6);
  await publish({ data: { n: 7 } });
  await page.waitForFunction(() => window.__sse.filter((e) => e.type === "message").length >= 7);

  const all = await page.evaluate(() => window.__sse.filter((e) => e.type === "message"));
  const offsets = all.map((m) => m.data.offset);
  check(JSON.stringify(offsets) === "[1,2,3,4,5,6,7]", `each offset once, in order: ${offsets}`);
  const resumed = await page.evaluate(() => window.__sse.filter((e) => e.type === "subscribed")[1].data);
  check(resumed.recovered === true, `resume recovered: ${JSON.stringify(resumed)}`);
  check((await count(page, "bye")) === 1, "one bye");
  await page.evaluate(() => window.__es.close());
  console.log(`offsets ${offsets}; resumed ${JSON.stringify(resumed)}`);
}, { guardMs: 45_000 });
