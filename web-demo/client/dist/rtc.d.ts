import { type ChunkError } from "./chunks.js";
import type { FetchLike, Transport, WebSocketLike } from "./options.js";
/** Label of the reliable channel. */
export declare const CONTROL_CHANNEL = "fanhub";
/** Label of the lossy channel. */
export declare const LOSSY_CHANNEL = "fanhub-lossy";
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
    onMessage?: (m: {
        channel: string;
        chunks: number;
        bytes: Uint8Array;
    }) => void;
    /** Told about malformed chunks (nothing of them is delivered). */
    onMalformed?: (m: {
        channel: string;
        error: ChunkError;
    }) => void;
}
/** `ws://host:port/ws` → `http://host:port/v1/rtc/offer` (`wss:` → `https:`). */
export declare function offerUrl(wsUrl: string): string;
/** One peer connection as a `WebSocketLike`. Opening starts at once; `onopen` fires when `fanhub` is open. */
export declare class RtcSocket implements WebSocketLike {
    binaryType: string;
    readyState: number;
    readonly protocol = "fanhub.v1";
    onopen: ((ev: unknown) => void) | null;
    onmessage: ((ev: {
        data: unknown;
    }) => void) | null;
    onclose: ((ev: {
        code: number;
        reason: string;
    }) => void) | null;
    onerror: ((ev: unknown) => void) | null;
    /** The signaling session (`Location` of the answer), once answered. */
    session: string | undefined;
    private pc;
    private control;
    private readonly channels;
    private readonly o;
    private readonly fetchFn;
    private readonly token;
    private readonly url;
    constructor(url: string, token: string | undefined, o: WebRtcOptions, Pc: RTCPeerConnectionConstructor, fetchFn: FetchLike);
    private start;
    private wire;
    send(data: string | Uint8Array): void;
    close(code?: number, reason?: string): void;
    private end;
}
/**
 * The WebRTC transport, for `connect({ transport: webrtc() })`: each connection is a new peer
 * connection signaled at the endpoint's `/v1/rtc/offer` (endpoints stay `ws://…/ws` URLs: the
 * same host and port serve the signaling).
 *
 * @throws {TypeError} when there is no `RTCPeerConnection` or `fetch` and none was passed.
 */
export declare function webrtc(o?: WebRtcOptions): Transport;
