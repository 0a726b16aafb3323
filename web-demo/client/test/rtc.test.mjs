// The WebRTC transport with a scripted fake RTCPeerConnection and fetch: no browser, no hub.
// What it offers (channels and their options), how it signals (POST /v1/rtc/offer with the
// token), and that the client's own connect / subscribe / resume run unchanged over it, with
// chunked records put back together per channel.
import { test } from "node:test";
import assert from "node:assert/strict";
import { connect, webrtc, encodeChunks, offerUrl } from "../dist/index.js";
import { record } from "./support.mjs";

class FakeChannel {
  constructor(label, init) {
    this.label = label;
    this.init = init;
    this.readyState = "connecting";
    this.binaryType = "blob";
    this.sent = [];
    this.onopen = this.onclose = this.onmessage = null;
  }
  send(d) {
    this.sent.push(typeof d === "string" ? JSON.parse(d) : d);
  }
  close() {
    this.readyState = "closed";
  }
  // The hub's side.
  open() {
    this.readyState = "open";
    this.onopen?.({});
  }
  push(msg) {
    this.onmessage?.({ data: typeof msg === "string" ? msg : msg.buffer.slice(msg.byteOffset, msg.byteOffset + msg.byteLength) });
  }
  ops(op) {
    return this.sent.filter((m) => m.op === op);
  }
}

class FakePC {
  static all = [];
  constructor(config) {
    this.config = config;
    this.channels = {};
    this.iceGatheringState = "new";
    this.connectionState = "new";
    this.listeners = {};
    this.closed = false;
    FakePC.all.push(this);
  }
  createDataChannel(label, init) {
    return (this.channels[label] = new FakeChannel(label, init));
  }
  async createOffer() {
    return { type: "offer", sdp: "v=0 offer" };
  }
  async setLocalDescription(d) {
    this.localDescription = d;
    queueMicrotask(() => {
      this.iceGatheringState = "complete";
      for (const f of this.listeners.icegatheringstatechange ?? []) f();
    });
  }
  async setRemoteDescription(d) {
    this.remote = d;
  }
  addEventListener(ev, f) {
    (this.listeners[ev] ??= []).push(f);
  }
  removeEventListener(ev, f) {
    this.listeners[ev] = (this.listeners[ev] ?? []).filter((g) => g !== f);
  }
  close() {
    this.closed = true;
  }
  fail() {
    this.connectionState = "failed";
    for (const f of this.listeners.connectionstatechange ?? []) f();
  }
}

const tick = () => new Promise((r) => setTimeout(r, 1));
async function until(what, f) {
  for (let i = 0; i < 500; i++) {
    const v = f();
    if (v) return v;
    await tick();
  }
  assert.fail(`no ${what}`);
}


function setup(fetchAnswer = () => ({ status: 201, body: "v=0 answer", location: `/v1/rtc/sessions/${FakePC.all.length}` })) {
  FakePC.all = [];
  const requests = [];
  const fetch = async (url, init = {}) => {
    requests.push({ url, ...init });
    if (init.method === "DELETE") return { ok: true, status: 204, text: async () => "", headers: { get: () => null } };
    const a = fetchAnswer();
    return { ok: a.status < 300, status: a.status, text: async () => a.body, headers: { get: (h) => (h.toLowerCase() === "location" ? a.location : null) } };
  };
  const frames = [];
  const transport = webrtc({ RTCPeerConnection: FakePC, fetch, onMessage: (m) => frames.push([m.channel, m.chunks]) });
  return { transport, requests, frames };
}

test("the offer URL is the endpoint's HTTP side", () => {
  assert.equal(offerUrl("ws://127.0.0.1:8080/ws"), "http://127.0.0.1:8080/v1/rtc/offer");
  assert.equal(offerUrl("wss://hub.example/ws"), "https://hub.example/v1/rtc/offer");
});

test("it offers fanhub (reliable) and fanhub-lossy (unordered, no retransmits) and signals with the token as application/sdp", async () => {
  const { transport, requests } = setup();
  const c = connect({ endpoints: ["ws://h:1/ws"], token: "tok", transport, clientId: "me" });
  const pc = await until("a peer connection", () => FakePC.all[0]);
  assert.deepEqual(Object.keys(pc.channels), ["fanhub", "fanhub-lossy"]);
  assert.equal(pc.channels.fanhub.init, undefined, "the default: reliable and ordered");
  assert.deepEqual(pc.channels["fanhub-lossy"].init, { ordered: false, maxRetransmits: 0 });
  const offer = await until("the offer", () => requests[0]);
  assert.equal(offer.url, "http://h:1/v1/rtc/offer");
  assert.equal(offer.method, "POST");
  assert.equal(offer.headers.authorization, "Bearer tok");
  assert.equal(offer.headers["content-type"], "application/sdp");
  assert.equal(offer.body, "v=0 offer");
  await until("the answer", () => pc.remote);
  assert.deepEqual(pc.remote, { type: "answer", sdp: "v=0 answer" });
  c.close();
  await until("the DELETE", () => requests.find((r) => r.method === "DELETE"));
  assert.equal(requests.at(-1).url, "http://h:1/v1/rtc/sessions/1");
  assert.ok(pc.closed);
});

test("subscribe and resume run over the data channels; chunked records are reassembled per channel", async () => {
  const { transport, frames } = setup();
  const c = connect({ endpoints: ["ws://h:1/ws"], token: "tok", transport, clientId: "me", random: () => 0 });
  const statuses = [];
  c.on("status", (s) => statuses.push(s.state));
  const sub = c.subscribe("be/video");
  const got = [];
  sub.on("message", (m) => got.push([m.offset, m.payload.length]));
  const gaps = [];
  sub.on("gap", (g) => gaps.push(g));

  const pc1 = await until("pc 1", () => FakePC.all[0]?.remote && FakePC.all[0]);
  const ctl = pc1.channels.fanhub;
  ctl.open();
  pc1.channels["fanhub-lossy"].open();
  const hello = await until("connect", () => ctl.ops("connect")[0]);
  assert.equal(hello.token, "tok");
  ctl.push(JSON.stringify({ type: "welcome", id: hello.id, conn_id: 1, node_id: "n" }));
  const s1 = await until("subscribe", () => ctl.ops("subscribe")[0]);
  ctl.push(JSON.stringify({ type: "subscribed", id: s1.id, topic: "be/video", epoch: 3, offset: 1, head: 0, replayed: 0, recovered: true }));
  // Offset 1 whole on the control channel, offset 2 in chunks on the lossy one.
  ctl.push(record("be/video", 1, 3, new Uint8Array(100)));
  for (const m of encodeChunks(record("be/video", 2, 3, new Uint8Array(50_000)), 16 * 1024, 7)) pc1.channels["fanhub-lossy"].push(m);
  assert.deepEqual(got, [[1, 100], [2, 50_000]]);
  assert.deepEqual(frames, [["fanhub", 1], ["fanhub-lossy", 4]]);

  // The peer connection fails: a new one, and the subscription resumes after offset 2.
  pc1.fail();
  const pc2 = await until("pc 2", () => FakePC.all[1]?.remote && FakePC.all[1]);
  pc2.channels.fanhub.open();
  const hello2 = await until("connect 2", () => pc2.channels.fanhub.ops("connect")[0]);
  pc2.channels.fanhub.push(JSON.stringify({ type: "welcome", id: hello2.id, conn_id: 2, node_id: "n" }));
  const s2 = await until("subscribe 2", () => pc2.channels.fanhub.ops("subscribe")[0]);
  assert.deepEqual([s2.offset, s2.epoch], [3, 3]);
  assert.deepEqual(gaps, []);
  assert.ok(statuses.includes("reconnecting"));
  c.close();
});

test("a refused token (401 to the offer) is handled like a WebSocket's 4001: one fresh token, then closed", async () => {
  const { transport } = setup(() => ({ status: 401, body: '{"code":"unauthenticated"}' }));
  let tokens = 0;
  const c = connect({ endpoints: ["ws://h:1/ws"], tokenProvider: async () => `t${++tokens}`, transport });
  const statuses = [];
  c.on("status", (s) => statuses.push(s));
  c.on("error", () => {});
  await until("closed", () => statuses.find((s) => s.state === "closed"));
  assert.equal(tokens, 2);
  assert.equal(statuses.at(-1).error.code, "unauthenticated");
  assert.equal(FakePC.all.length, 2);
});

test("webrtc() needs an RTCPeerConnection", { skip: typeof globalThis.RTCPeerConnection === "function" }, () => {
  assert.throws(() => webrtc({ fetch: async () => ({}) }), /RTCPeerConnection/);
});
