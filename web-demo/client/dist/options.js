// Connect options: their types, their defaults, and one validation up front that names the
// offending field, so a mistake fails at `connect()` and not at the first reconnect.
import { DEFAULT_BACKOFF } from "./backoff.js";
import { DEFAULT_BREAKER } from "./breaker.js";
import { FanhubError } from "./errors.js";
function bad(field, why) {
    return new FanhubError("invalid_options", `invalid option \`${field}\`: ${why}`);
}
function positiveNumber(v, field, min) {
    if (typeof v !== "number" || !Number.isFinite(v) || v < min) {
        throw bad(field, `expected a finite number ≥ ${min}, got ${JSON.stringify(v)}`);
    }
    return v;
}
function randomId() {
    const c = globalThis.crypto;
    return c?.randomUUID ? c.randomUUID() : `c-${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
}
/**
 * Checks `o` and fills in the defaults.
 *
 * @throws {FanhubError} code `invalid_options`, the message naming the field.
 */
export function resolveOptions(o) {
    if (o === null || typeof o !== "object")
        throw bad("options", "expected an object");
    const { endpoints } = o;
    if (!Array.isArray(endpoints) || endpoints.length === 0) {
        throw bad("endpoints", "expected a non-empty array of ws:// or wss:// URLs");
    }
    endpoints.forEach((e, i) => {
        let u;
        try {
            u = typeof e === "string" ? new URL(e) : undefined;
        }
        catch {
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
    if (typeof b !== "object" || b === null)
        throw bad("backoff", "expected an object");
    const backoff = {
        initialMs: positiveNumber(b.initialMs ?? DEFAULT_BACKOFF.initialMs, "backoff.initialMs", 1),
        maxMs: positiveNumber(b.maxMs ?? DEFAULT_BACKOFF.maxMs, "backoff.maxMs", 1),
        multiplier: positiveNumber(b.multiplier ?? DEFAULT_BACKOFF.multiplier, "backoff.multiplier", 1),
    };
    if (backoff.maxMs < backoff.initialMs) {
        throw bad("backoff.maxMs", `must be ≥ backoff.initialMs (${backoff.initialMs}), got ${backoff.maxMs}`);
    }
    const br = o.breaker ?? {};
    if (typeof br !== "object" || br === null)
        throw bad("breaker", "expected an object");
    const breaker = {
        failureRatio: br.failureRatio ?? DEFAULT_BREAKER.failureRatio,
        minThroughput: positiveNumber(br.minThroughput ?? DEFAULT_BREAKER.minThroughput, "breaker.minThroughput", 1),
        samplingWindowMs: positiveNumber(br.samplingWindowMs ?? DEFAULT_BREAKER.samplingWindowMs, "breaker.samplingWindowMs", 1),
        breakDurationMs: positiveNumber(br.breakDurationMs ?? DEFAULT_BREAKER.breakDurationMs, "breaker.breakDurationMs", 1),
    };
    const ratio = breaker.failureRatio;
    if (typeof ratio !== "number" || !(ratio > 0 && ratio <= 1)) {
        throw bad("breaker.failureRatio", `expected a share in (0, 1], got ${JSON.stringify(ratio)}`);
    }
    if (!Number.isInteger(breaker.minThroughput))
        throw bad("breaker.minThroughput", `expected an integer, got ${breaker.minThroughput}`);
    const requestTimeoutMs = positiveNumber(o.requestTimeoutMs ?? 10_000, "requestTimeoutMs", 1);
    const connectTimeoutMs = positiveNumber(o.connectTimeoutMs ?? 10_000, "connectTimeoutMs", 1);
    const keepaliveIntervalMs = positiveNumber(o.keepaliveIntervalMs ?? 15_000, "keepaliveIntervalMs", 1);
    const keepaliveTimeoutMs = positiveNumber(o.keepaliveTimeoutMs ?? 10_000, "keepaliveTimeoutMs", 1);
    const t = o.transport;
    if (t !== undefined && (t === null || typeof t !== "object" || typeof t.open !== "function")) {
        throw bad("transport", "expected a transport, e.g. webrtc()");
    }
    const ws = o.WebSocket ?? globalThis.WebSocket;
    if (t === undefined && typeof ws !== "function") {
        throw bad("WebSocket", "no global WebSocket here (Node < 22): pass a constructor, e.g. the `ws` package's");
    }
    const transport = t ?? { name: "websocket", open: (url) => new ws(url, "fanhub.v1") };
    if (o.random !== undefined && typeof o.random !== "function")
        throw bad("random", "expected a function");
    if (o.now !== undefined && typeof o.now !== "function")
        throw bad("now", "expected a function");
    if (o.wallClockUs !== undefined && typeof o.wallClockUs !== "function")
        throw bad("wallClockUs", "expected a function");
    if (o.fetch !== undefined && typeof o.fetch !== "function")
        throw bad("fetch", "expected a function");
    const globalFetch = globalThis.fetch;
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
