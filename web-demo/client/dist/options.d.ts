import { type BackoffOptions } from "./backoff.js";
import { type BreakerOptions } from "./breaker.js";
/** The part of the browser `WebSocket` constructor the client uses (Node's `ws` package fits). */
export interface WebSocketLike {
    binaryType: string;
    readonly readyState: number;
    readonly protocol: string;
    onopen: ((ev: unknown) => void) | null;
    onmessage: ((ev: {
        data: unknown;
    }) => void) | null;
    onclose: ((ev: {
        code: number;
        reason: string;
    }) => void) | null;
    onerror: ((ev: unknown) => void) | null;
    send(data: string | Uint8Array): void;
    close(code?: number, reason?: string): void;
}
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;
/** The part of an HTTP response the client reads. */
export interface FetchResponseLike {
    readonly ok: boolean;
    readonly status: number;
    readonly headers?: {
        get(name: string): string | null;
    };
    text(): Promise<string>;
}
/** The part of the standard `fetch` the client uses (`health()`, WebRTC signaling); global in browsers and Node ≥ 18. */
export type FetchLike = (url: string, init?: {
    method?: string;
    headers?: Record<string, string>;
    body?: string;
    signal?: AbortSignal;
}) => Promise<FetchResponseLike>;
/**
 * How a connection to an endpoint is made. The default is a WebSocket (`fanhub.v1`
 * subprotocol); `webrtc()` makes a peer connection with data channels instead. Whatever it
 * is, it behaves like a WebSocket carrying `fanhub.v1` (§1): text frames are JSON control
 * messages, binary ones whole data messages.
 */
export interface Transport {
    readonly name: string;
    /** Starts connecting to the endpoint `url` (a `ws://` or `wss://` URL) with `token` (if any). */
    open(url: string, token: string | undefined): WebSocketLike;
}
export interface ConnectOptions {
    /** WebSocket URLs of the hub's nodes, e.g. `ws://127.0.0.1:8080/ws`; tried in turn. */
    endpoints: string[];
    /** A JWT. */
    token?: string;
    /** Called for a token before the first connect when `token` is absent, after `unauthenticated`, and on `token_expiring`. */
    tokenProvider?: () => Promise<string>;
    /** Sent as `client_id`: a reconnect replaces this client's previous connection at once. Default: a random id. */
    clientId?: string;
    /** Reconnect delays (full jitter). */
    backoff?: Partial<BackoffOptions>;
    /** The circuit breaker each endpoint has (connection attempts that fail open it). */
    breaker?: Partial<BreakerOptions>;
    /** How long a request (publish, subscribe, …) waits for its answer, ms. Default 10000. */
    requestTimeoutMs?: number;
    /** How long an attempt may take from opening the socket to `welcome`, ms. Default 10000. */
    connectTimeoutMs?: number;
    /** After this long with nothing received the client sends a `ping`, ms. Default 15000. */
    keepaliveIntervalMs?: number;
    /** With nothing received this long after that ping the connection is dead: reconnect, ms. Default 10000. */
    keepaliveTimeoutMs?: number;
    /** The WebSocket constructor; default `globalThis.WebSocket` (browsers, Node ≥ 22). */
    WebSocket?: WebSocketConstructor;
    /** How to connect: WebSocket (the default, with `WebSocket`) or `webrtc()`. */
    transport?: Transport;
    /** `fetch` for `health()`; default `globalThis.fetch`. */
    fetch?: FetchLike;
    /** Random source in [0, 1) for the jitter; default `Math.random`. */
    random?: () => number;
    /** Monotonic clock in ms for breakers and keep-alive; default `performance.now`. For tests. */
    now?: () => number;
    /** Wall clock in µs since the UNIX epoch, for time sync; default `Date.now() * 1000`. For tests. */
    wallClockUs?: () => number;
}
export interface ResolvedOptions {
    endpoints: string[];
    token: string | undefined;
    tokenProvider: (() => Promise<string>) | undefined;
    clientId: string;
    backoff: BackoffOptions;
    breaker: BreakerOptions;
    requestTimeoutMs: number;
    connectTimeoutMs: number;
    keepaliveIntervalMs: number;
    keepaliveTimeoutMs: number;
    transport: Transport;
    fetch: FetchLike | undefined;
    random: () => number;
    now: () => number;
    wallClockUs: () => number;
}
/**
 * Checks `o` and fills in the defaults.
 *
 * @throws {FanhubError} code `invalid_options`, the message naming the field.
 */
export declare function resolveOptions(o: ConnectOptions): ResolvedOptions;
