// The WebRTC transport (protocol §10b): a connection that looks like a WebSocket to the client
// (`WebSocketLike`), built from an `RTCPeerConnection` with the `fanhub` channel (reliable,
// ordered: control messages and reliable records) and the `fanhub-lossy` channel (unordered, no
// retransmits: best-effort records), signaled WHEP-style with `POST /v1/rtc/offer`. Chunked
// records are put back together per channel before the client sees them, so everything above
// (connect, subscribe, resume, dedupe, gaps, keep-alive) is the same code as over WebSocket.
// `RTCPeerConnection` and `fetch` are injectable: browsers have both, tests pass fakes.
import { ChunkReassembler } from "./chunks.js";
/** Label of the reliable channel. */
export const CONTROL_CHANNEL = "fanhub";
/** Label of the lossy channel. */
export const LOSSY_CHANNEL = "fanhub-lossy";
const CONNECTING = 0;
const OPEN = 1;
const CLOSED = 3;
/** `ws://host:port/ws` → `http://host:port/v1/rtc/offer` (`wss:` → `https:`). */
export function offerUrl(wsUrl) {
    const u = new URL(wsUrl);
    return `${u.protocol === "wss:" ? "https:" : "http:"}//${u.host}/v1/rtc/offer`;
}
function gathered(pc, timeoutMs) {
    if (pc.iceGatheringState === "complete")
        return Promise.resolve();
    return new Promise((resolve) => {
        const timer = setTimeout(resolve, timeoutMs);
        const check = () => {
            if (pc.iceGatheringState !== "complete")
                return;
            clearTimeout(timer);
            pc.removeEventListener("icegatheringstatechange", check);
            resolve();
        };
        pc.addEventListener("icegatheringstatechange", check);
    });
}
/** One peer connection as a `WebSocketLike`. Opening starts at once; `onopen` fires when `fanhub` is open. */
export class RtcSocket {
    binaryType = "arraybuffer";
    readyState = CONNECTING;
    protocol = "fanhub.v1";
    onopen = null;
    onmessage = null;
    onclose = null;
    onerror = null;
    /** The signaling session (`Location` of the answer), once answered. */
    session;
    pc;
    control;
    channels = [];
    o;
    fetchFn;
    token;
    url;
    constructor(url, token, o, Pc, fetchFn) {
        this.url = url;
        this.token = token;
        this.o = o;
        this.fetchFn = fetchFn;
        try {
            this.pc = new Pc({ iceServers: o.iceServers ?? [] });
        }
        catch (e) {
            this.end(1006, `cannot create a peer connection: ${String(e)}`);
            return;
        }
        this.start(this.pc).catch((e) => this.end(1006, `WebRTC: ${String(e)}`));
    }
    async start(pc) {
        this.control = this.wire(pc.createDataChannel(CONTROL_CHANNEL));
        if (this.o.lossy ?? true)
            this.wire(pc.createDataChannel(LOSSY_CHANNEL, { ordered: false, maxRetransmits: 0 }));
        pc.addEventListener("connectionstatechange", () => {
            if (pc.connectionState === "failed" || pc.connectionState === "closed")
                this.end(1006, `peer connection ${pc.connectionState}`);
        });
        await pc.setLocalDescription(await pc.createOffer());
        // No trickle: the offer goes once, with its candidates (host ones take milliseconds).
        await gathered(pc, this.o.gatherTimeoutMs ?? 3000);
        if (this.readyState === CLOSED)
            return;
        let sdp = pc.localDescription?.sdp ?? "";
        if (this.o.mungeOffer)
            sdp = this.o.mungeOffer(sdp);
        const headers = { "content-type": "application/sdp" };
        if (this.token !== undefined)
            headers.authorization = `Bearer ${this.token}`;
        const res = await this.fetchFn(offerUrl(this.url), { method: "POST", headers, body: sdp });
        const answer = await res.text();
        if (this.readyState === CLOSED)
            return;
        if (res.status !== 201) {
            // A refused token is 4001 as on a WebSocket: the client fetches a fresh one once.
            this.end(res.status === 401 ? 4001 : 1006, `POST /v1/rtc/offer: ${res.status} ${answer.slice(0, 200)}`);
            return;
        }
        this.session = res.headers?.get("location") ?? undefined;
        await pc.setRemoteDescription({ type: "answer", sdp: answer });
    }
    wire(ch) {
        ch.binaryType = "arraybuffer";
        this.channels.push(ch);
        const label = ch.label;
        const chunks = new ChunkReassembler({ lossy: label === LOSSY_CHANNEL });
        ch.onopen = () => {
            if (label !== CONTROL_CHANNEL || this.readyState !== CONNECTING)
                return;
            this.readyState = OPEN;
            this.onopen?.({});
        };
        ch.onclose = () => {
            if (label === CONTROL_CHANNEL)
                this.end(1006, `the ${label} channel closed`);
        };
        ch.onmessage = (ev) => {
            if (this.readyState !== OPEN)
                return;
            const data = ev.data;
            if (typeof data === "string") {
                if (label === CONTROL_CHANNEL)
                    this.onmessage?.({ data });
                return;
            }
            const bytes = data instanceof ArrayBuffer ? new Uint8Array(data) : ArrayBuffer.isView(data) ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength) : undefined;
            if (!bytes)
                return;
            const r = chunks.push(bytes);
            if (r.kind === "malformed") {
                this.o.onMalformed?.({ channel: label, error: r.error });
                return;
            }
            if (r.kind !== "whole")
                return;
            this.o.onMessage?.({ channel: label, chunks: r.chunks, bytes: r.data });
            const whole = r.data;
            const buf = whole.byteOffset === 0 && whole.byteLength === whole.buffer.byteLength ? whole.buffer : whole.slice().buffer;
            this.onmessage?.({ data: buf });
        };
        return ch;
    }
    send(data) {
        if (this.readyState !== OPEN || !this.control)
            throw new Error(`the ${CONTROL_CHANNEL} channel is not open`);
        if (typeof data === "string")
            this.control.send(data);
        else
            this.control.send(data);
    }
    close(code = 1000, reason = "") {
        this.end(code, reason);
    }
    end(code, reason) {
        if (this.readyState === CLOSED)
            return;
        this.readyState = CLOSED;
        for (const ch of this.channels) {
            ch.onopen = ch.onclose = ch.onmessage = null;
            try {
                ch.close();
            }
            catch {
                /* already closed */
            }
        }
        try {
            this.pc?.close();
        }
        catch {
            /* already closed */
        }
        // End the signaling session: the hub forgets the peer at once, not when ICE consent expires.
        if (this.session !== undefined) {
            const u = new URL(this.session, offerUrl(this.url)).href;
            const headers = this.token !== undefined ? { authorization: `Bearer ${this.token}` } : {};
            this.fetchFn(u, { method: "DELETE", headers }).catch(() => { });
        }
        const onclose = this.onclose;
        if (onclose)
            queueMicrotask(() => onclose({ code, reason }));
    }
}
/**
 * The WebRTC transport, for `connect({ transport: webrtc() })`: each connection is a new peer
 * connection signaled at the endpoint's `/v1/rtc/offer` (endpoints stay `ws://…/ws` URLs: the
 * same host and port serve the signaling).
 *
 * @throws {TypeError} when there is no `RTCPeerConnection` or `fetch` and none was passed.
 */
export function webrtc(o = {}) {
    const Pc = o.RTCPeerConnection ?? globalThis.RTCPeerConnection;
    if (typeof Pc !== "function")
        throw new TypeError("no RTCPeerConnection here: pass one in the options");
    const globalFetch = globalThis.fetch;
    const fetchFn = o.fetch ?? (globalFetch ? globalFetch.bind(globalThis) : undefined);
    if (typeof fetchFn !== "function")
        throw new TypeError("no fetch here: pass one in the options");
    return { name: "webrtc", open: (url, token) => new RtcSocket(url, token, o, Pc, fetchFn) };
}
