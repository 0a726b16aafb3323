// Connect options: their types, their defaults, and one validation up front that names the
// offending field, so a mistake fails at `connect()` and not at the first reconnect.

import { type BackoffOptions, DEFAULT_BACKOFF } from "./backoff.js";
import { type BreakerOptions, DEFAULT_BREAKER } from "./breaker.js";
import { FanhubError } from "./errors.js";

/** The part of the browser `WebSocket` constructor the client uses (Node's `ws` package fits). */
export interface WebSocketLike {
  binaryType: string;
  readonly readyState: number;
  readonly protocol: string;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  send(data: string | Uint8Array): void;
  close(code?: number, reason?: string): void;
}

export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

/** The part of an HTTP response the client reads. */
export interface FetchResponseLike {
  readonly ok: boolean;
  readonly status: number;
  readonly headers?: { get(name: string): string | null };
  text(): Promise<string>;
}

/** The part of the standard `fetch` the client uses (`health()`, WebRTC signaling); global in browsers and Node ≥ 18. */
export type FetchLike = (
  url: string,
  init?: { method?: string; headers?: Record<string, string>; body?: string; signal?: AbortSignal },
) => Promise<FetchResponseLike>;

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

function bad(field: string, why: string): FanhubError {
  return new FanhubError("invalid_options", `invalid option \`${field}\`: ${why}`);
}

function positiveNumber(v: unknown, field: string, min: number): number {
  if (typeof v !== "number" || !Number.isFinite(v) || v < min) {
    throw bad(field, `expected a finite number ≥ ${min}, got ${JSON.stringify(v)}`);
  }
  return v;
}

function randomId(): string {
  const c = (globalThis as { crypto?: { randomUUID?: () => string } }).crypto;
  return c?.randomUUID ? c.randomUUID() : `c-${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
}

/**
 * Checks `o` and fills in the defaults.
 *
 * @throws {FanhubError} code `invalid_options`, the message naming the field.
 */
export function resolveOptions(o: ConnectOptions): ResolvedOptions {
  if (o === null || typeof o !== "object") throw bad("options", "expected an object");
  const { endpoints } = o;
  if (!Array.isArray(endpoints) || endpoints.length === 0) {
    throw bad("endpoints", "expected a non-empty array of ws:// or wss:// URLs");
  }
  endpoints.forEach((e, i) => {
    let u: URL | undefined;
    try {
      u = typeof e === "string" ? new URL(e) : undefined;
    } catch {
      u = undefined;
    }
    if (!u || (u.protocol !== "ws:" && u.protocol !== "wss:")) {
      throw bad(`endpoints[${i}]`, `expected a ws:// or wss:// URL, got ${JSON.stringify(e)}`);
    }
  });
  if (o.token !== undefined && (typeof o.token !== "string" || o.token === "")) {
    throw bad("token", "expected a non-empty string");
  }
  if (o.tokenProvider !== undefined && typeof o.tokenProvider !== "function") {
    throw bad("tokenProvider", "expected a function returning a Promise<string>");
  }
  if (o.clientId !== undefined && (typeof o.clientId !== "string" || o.clientId === "")) {
    throw bad("clientId", "expected a non-empty string");
  }
  const b = o.backoff ?? {};
  if (typeof b !== "object" || b === null) throw bad("backoff", "expected an object");
  const backoff: BackoffOptions = {
    initialMs: positiveNumber(b.initialMs ?? DEFAULT_BACKOFF.initialMs, "backoff.initialMs", 1),
    maxMs: positiveNumber(b.maxMs ?? DEFAULT_BACKOFF.maxMs, "backoff.maxMs", 1),
    multiplier: positiveNumber(b.multiplier ?? DEFAULT_BACKOFF.multiplier, "backoff.multiplier", 1),
  };
  if (backoff.maxMs < backoff.initialMs) {
    throw bad("backoff.maxMs", `must be ≥ backoff.initialMs (${backoff.initialMs}), got ${backoff.maxMs}`);
  }
  const br = o.breaker ?? {};
  if (typeof br !== "object" || br === null) throw bad("breaker", "expected an object");
  const breaker: BreakerOptions = {
    failureRatio: br.failureRatio ?? DEFAULT_BREAKER.failureRatio,
    minThroughput: positiveNumber(br.minThroughput ?? DEFAULT_BREAKER.minThroughput, "breaker.minThroughput", 1),
    samplingWindowMs: positiveNumber(br.samplingWindowMs ?? DEFAULT_BREAKER.samplingWindowMs, "breaker.samplingWindowMs", 1),
    breakDurationMs: positiveNumber(br.breakDurationMs ?? DEFAULT_BREAKER.breakDurationMs, "breaker.breakDurationMs", 1),
  };
  const ratio = breaker.failureRatio;
  if (typeof ratio !== "number" || !(ratio > 0 && ratio <= 1)) {
    throw bad("breaker.failureRatio", `expected a share in (0, 1], got ${JSON.stringify(ratio)}`);
  }
  if (!Number.isInteger(breaker.minThroughput)) throw bad("breaker.minThroughput", `expected an integer, got ${breaker.minThroughput}`);
  const requestTimeoutMs = positiveNumber(o.requestTimeoutMs ?? 10_000, "requestTimeoutMs", 1);
  const connectTimeoutMs = positiveNumber(o.connectTimeoutMs ?? 10_000, "connectTimeoutMs", 1);
  const keepaliveIntervalMs = positiveNumber(o.keepaliveIntervalMs ?? 15_000, "keepaliveIntervalMs", 1);
  const keepaliveTimeoutMs = positiveNumber(o.keepaliveTimeoutMs ?? 10_000, "keepaliveTimeoutMs", 1);
  const t = o.transport;
  if (t !== undefined && (t === null || typeof t !== "object" || typeof t.open !== "function")) {
    throw bad("transport", "expected a transport, e.g. webrtc()");
  }
  const ws = o.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
  if (t === undefined && typeof ws !== "function") {
    throw bad("WebSocket", "no global WebSocket here (Node < 22): pass a constructor, e.g. the `ws` package's");
  }
  const transport: Transport = t ?? { name: "websocket", open: (url) => new ws!(url, "fanhub.v1") };
  if (o.random !== undefined && typeof o.random !== "function") throw bad("random", "expected a function");
  if (o.now !== undefined && typeof o.now !== "function") throw bad("now", "expected a function");
  if (o.wallClockUs !== undefined && typeof o.wallClockUs !== "function") throw bad("wallClockUs", "expected a function");
  if (o.fetch !== undefined && typeof o.fetch !== "function") throw bad("fetch", "expected a function");
  const globalFetch = (globalThis as { fetch?: FetchLike }).fetch;
  return {
    endpoints: [...endpoints],
    token: o.token,
    tokenProvider: o.tokenProvider,
    clientId: o.clientId ?? randomId(),
    backoff,
    breaker,
    requestTimeoutMs,
    connectTimeoutMs,
    keepaliveIntervalMs,
    keepaliveTimeoutMs,
    transport,
    fetch: o.fetch ?? (globalFetch ? globalFetch.bind(globalThis) : undefined),
    random: o.random ?? Math.random,
    now: o.now ?? (() => performance.now()),
    wallClockUs: o.wallClockUs ?? (() => Date.now() * 1000),
  };
}
