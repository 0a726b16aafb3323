// node web-demo/client/test/source-meta.mjs <ws_url> <token> <topic> <positions_json>
//
// The client against a real hub with an upstream source (a Redis Streams source whose stream
// already holds one entry per position, payload `{"n":<index>}`, key `car-7`, header
// `trace: t`): it subscribes from offset 1 and must get each entry with its payload — without
// the metadata block — and `meta` naming the source, the upstream stream, the partition and the
// entry's position; then its own publish, which has no metadata. Prints one JSON line of what it
// got. Run by tests/it/ts_client.rs; exits non-zero with a reason on any failure.
import { isDeepStrictEqual } from "node:util";
import WebSocket from "ws";
import { connect } from "../dist/index.js";

const [wsUrl, token, topic, positionsJson] = process.argv.slice(2);
if (!wsUrl || !token || !topic || !positionsJson) {
  console.error("usage: source-meta.mjs <ws_url> <token> <topic> <positions_json>");
  process.exit(2);
}
const positions = JSON.parse(positionsJson);
const guard = setTimeout(() => fail("still running after 30 s"), 30_000);

function fail(why) {
  console.error(`FAIL: ${why}`);
  process.exit(1);
}
function same(got, want, what) {
  if (!isDeepStrictEqual(got, want)) fail(`${what}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
}

const client = connect({ endpoints: [wsUrl], token, WebSocket });
client.on("error", (e) => console.error("client error:", e.message));
const sub = client.subscribe(topic, { offset: 1 });
const it = sub[Symbol.asyncIterator]();
async function next() {
  const { value, done } = await it.next();
  if (done) fail("the subscription ended");
  if (value.type !== "message") fail(`expected a message, got ${JSON.stringify(value)}`);
  return value;
}

const got = [];
for (const [n, position] of positions.entries()) {
  const m = await next();
  same([m.offset, m.json, m.text(), m.parse()], [n + 1, true, JSON.stringify({ n }), { n }], `message ${n + 1}`);
  same(
    m.meta,
    { source: "fleet", upstream: "orders", partition: "orders", position, key: "car-7", headers: { trace: "t" } },
    `meta of message ${n + 1}`,
  );
  got.push({ offset: m.offset, position: m.meta.position });
}
await client.publish(topic, new TextEncoder().encode("mine"));
const own = await next();
same([own.text(), own.meta, own.json], ["mine", undefined, false], "the client's own publish");
console.log(JSON.stringify({ ok: true, got }));
clearTimeout(guard);
client.close();
