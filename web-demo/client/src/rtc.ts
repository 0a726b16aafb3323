// The WebRTC transport (protocol §10b): a connection that looks like a WebSocket to the client
// (`WebSocketLike`), built from an `RTCPeerConnection` with the `fanhub` channel (reliable,
// ordered: control messages and reliable records) and the `fanhub-lossy` channel (unordered, no
// retransmits: best-effort records), signaled WHEP-style with `POST /v1/rtc/offer`. Chunked
// records are put back together per channel before the client sees them, so everything above
// (connect, subscribe, resume, dedupe, gaps, keep-alive) is the same code as over WebSocket.
// `RTCPeerConnection` and `fetch` are injectable: browsers have both, tests pass fakes.

import { ChunkReassembler, type ChunkError } from "./chunks.js";
import type { FetchLike, Transport, WebSocketLike } from "./options.js";

/** Label of the reliable channel. */
export const CONTROL_CHANNEL = "fanhub";
/** Label of the lossy channel. */
export const LOSSY_CHANNEL = "fanhub-lossy";

/** The `RTCPeerConnection` constructor (the browser's, or a test double). */
export type RTCPeerConnectionConstructor = new (configuration?: RTCConfiguration) => RTCPeerConnection;

export interface WebRtcOptions {
  /** Default `globalThis.RTCPeerConnection`. */
  RTCPeerConnection?: RTCPeerConnectionConstructor;
  /** For the offer and the session's DELETE; default `globalThis.fetch`. */
  fetch?: FetchLike;
  /** STUN/TURN servers for the peer's own gathering (the hub's `GET /v1/rtc/config` lists them). Default none. */
  iceServers?: RTCIceServer[];
  /** Also open `fanhub-lossy` (best-effort records on it). Default true. */
  lossy?: boolean;
  /** How long to wait for ICE gathering before sending the offer with what there is, ms. Default 3000. */
  gatherTimeoutMs?: number;
  /** Rewrites the offer's SDP before it is sent (e.g. to keep only some candidates). */
  mungeOffer?: (sdp: string) => string;
  /** Told about every whole message of records: its channel and how many chunks it came in. For diagnostics. */
  onMessage?: (m: { channel: string; chunks: number; bytes: Uint8Array }) => void;
  /** Told about malformed chunks (nothing of them is delivered). */
  onMalformed?: (m: { channel: string; error: ChunkError }) => void;
}

const CONNECTING = 0;
const OPEN = 1;
const CLOSED = 3;

/** `ws://host:port/ws` → `http://host:port/v1/rtc/offer` (`wss:` → `https:`). */
export function offerUrl(wsUrl: string): string {
  const u = new URL(wsUrl);
  return `${u.protocol === "wss:" ? "https:" : "http:"}//${u.host}/v1/rtc/offer`;
}

function gathered(pc: RTCPeerConnection, timeoutMs: number): Promise<void> {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, timeoutMs);
    const check = (): void => {
      if (pc.iceGatheringState !== "complete") return;
      clearTimeout(timer);
      pc.removeEventListener("icegatheringstatechange", check);
      resolve();
    };
    pc.addEventListener("icegatheringstatechange", check);
  });
}

/** One peer connection as a `WebSocketLike`. Opening starts at once; `onopen` fires when `fanhub` is open. */
export class RtcSocket implements WebSocketLike {
  binaryType = "arraybuffer";
  readyState = CONNECTING;
  readonly protocol = "fanhub.v1";
  onopen: ((ev: unknown) => void) | null = null;
  onmessage: ((ev: { data: unknown }) => void) | null = null;
  onclose: ((ev: { code: number; reason: string }) => void) | null = null;
  onerror: ((ev: unknown) => void) | null = null;
  /** The signaling session (`Location` of the answer), once answered. */
  session: string | undefined;
  private pc: RTCPeerConnection | undefined;
  private control: RTCDataChannel | undefined;
  private readonly channels: RTCDataChannel[] = [];
  private readonly o: WebRtcOptions;
  private readonly fetchFn: FetchLike;
  private readonly token: string | undefined;
  private readonly url: string;

  constructor(url: string, token: string | undefined, o: WebRtcOptions, Pc: RTCPeerConnectionConstructor, fetchFn: FetchLike) {
    this.url = url;
    this.token = token;
    this.o = o;
    this.fetchFn = fetchFn;
    try {
      this.pc = new Pc({ iceServers: o.iceServers ?? [] });
    } catch (e) {
      this.end(1006, `cannot create a peer connection: ${String(e)}`);
      return;
    }
    this.start(this.pc).catch((e: unknown) => this.end(1006, `WebRTC: ${String(e)}`));
  }

  private async start(pc: RTCPeerConnection): Promise<void> {
    this.control = this.wire(pc.createDataChannel(CONTROL_CHANNEL));
    if (this.o.lossy ?? true) this.wire(pc.createDataChannel(LOSSY_CHANNEL, { ordered: false, maxRetransmits: 0 }));
    pc.addEventListener("connectionstatechange", () => {
      if (pc.connectionState === "failed" || pc.connectionState === "closed") this.end(1006, `peer connection ${pc.connectionState}`);
    });
    await pc.setLocalDescription(await pc.createOffer());
    // No trickle: the offer goes once, with its candidates (host ones take milliseconds).
    await gathered(pc, this.o.gatherTimeoutMs ?? 3000);
    if (this.readyState === CLOSED) return;
    let sdp = pc.localDescription?.sdp ?? "";
    if (this.o.mungeOffer) sdp = this.o.mungeOffer(sdp);
    const headers: Record<string, string> = { "content-type": "application/sdp" };
    if (this.token !== undefined) headers.authorization = `Bearer ${this.token}`;
    const res = await this.fetchFn(offerUrl(this.url), { method: "POST", headers, body: sdp });
    const answer = await res.text();
    if (this.readyState === CLOSED) return;
    if (res.status !== 201) {
      // A refused token is 4001 as on a WebSocket: the client fetches a fresh one once.
      this.end(res.status === 401 ? 4001 : 1006, `POST /v1/rtc/offer: ${res.status} ${answer.slice(0, 200)}`);
      return;
    }
    this.session = res.headers?.get("location") ?? undefined;
    await pc.setRemoteDescription({ type: "answer", sdp: answer });
  }

  private wire(ch: RTCDataChannel): RTCDataChannel {
    ch.binaryType = "arraybuffer";
    this.channels.push(ch);
    const label = ch.label;
    const chunks = new ChunkReassembler({ lossy: label === LOSSY_CHANNEL });
    ch.onopen = () => {
      if (label !== CONTROL_CHANNEL || this.readyState !== CONNECTING) return;
      this.readyState = OPEN;
      this.onopen?.({});
    };
    ch.onclose = () => {
      if (label === CONTROL_CHANNEL) this.end(1006, `the ${label} channel closed`);
    };
    ch.onmessage = (ev: MessageEvent) => {
      if (this.readyState !== OPEN) return;
      const data: unknown = ev.data;
      if (typeof data === "string") {
        if (label === CONTROL_CHANNEL) this.onmessage?.({ data });
        return;
      }
      const bytes = data instanceof ArrayBuffer ? new Uint8Array(data) : ArrayBuffer.isView(data) ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength) : undefined;
      if (!bytes) return;
      const r = chunks.push(bytes);
      if (r.kind === "malformed") {
        this.o.onMalformed?.({ channel: label, error: r.error });
        return;
      }
      if (r.kind !== "whole") return;
      this.o.onMessage?.({ channel: label, chunks: r.chunks, bytes: r.data });
      const whole = r.data;
      const buf = whole.byteOffset === 0 && whole.byteLength === whole.buffer.byteLength ? whole.buffer : whole.slice().buffer;
      this.onmessage?.({ data: buf });
    };
    return ch;
  }

  send(data: string | Uint8Array): void {
    if (this.readyState !== OPEN || !this.control) throw new Error(`the ${CONTROL_CHANNEL} channel is not open`);
    if (typeof data === "string") this.control.send(data);
    else this.control.send(data as Uint8Array<ArrayBuffer>);
  }

  close(code = 1000, reason = ""): void {
    this.end(code, reason);
  }

  private end(code: number, reason: string): void {
    if (this.readyState === CLOSED) return;
    this.readyState = CLOSED;
    for (const ch of this.channels) {
      ch.onopen = ch.onclose = ch.onmessage = null;
      try {
        ch.close();
      } catch {
        /* already closed */
      }
    }
    try {
      this.pc?.close();
    } catch {
      /* already closed */
    }
    // End the signaling session: the hub forgets the peer at once, not when ICE consent expires.
    if (this.session !== undefined) {
      const u = new URL(this.session, offerUrl(this.url)).href;
      const headers: Record<string, string> = this.token !== undefined ? { authorization: `Bearer ${this.token}` } : {};
      this.fetchFn(u, { method: "DELETE", headers }).catch(() => {});
    }
    const onclose = this.onclose;
    if (onclose) queueMicrotask(() => onclose({ code, reason }));
  }
}

/**
 * The WebRTC transport, for `connect({ transport: webrtc() })`: each connection is a new peer
 * connection signaled at the endpoint's `/v1/rtc/offer` (endpoints stay `ws://…/ws` URLs: the
 * same host and port serve the signaling).
 *
 * @throws {TypeError} when there is no `RTCPeerConnection` or `fetch` and none was passed.
 */
export function webrtc(o: WebRtcOptions = {}): Transport {
  const Pc = o.RTCPeerConnection ?? (globalThis as { RTCPeerConnection?: RTCPeerConnectionConstructor }).RTCPeerConnection;
  if (typeof Pc !== "function") throw new TypeError("no RTCPeerConnection here: pass one in the options");
  const globalFetch = (globalThis as { fetch?: FetchLike }).fetch;
  const fetchFn = o.fetch ?? (globalFetch ? globalFetch.bind(globalThis) : undefined);
  if (typeof fetchFn !== "function") throw new TypeError("no fetch here: pass one in the options");
  return { name: "webrtc", open: (url, token) => new RtcSocket(url, token, o, Pc, fetchFn) };
}
