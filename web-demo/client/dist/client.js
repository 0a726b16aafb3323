// The connection: one WebSocket at a time, reconnected with backoff, every subscription resumed
// after its last delivered offset. Requests are matched to answers by id; the pure rules
// (records, backoff, dedupe and gaps) live in their own modules.
import { backoffDelay } from "./backoff.js";
import { Endpoints } from "./breaker.js";
import { FanhubError } from "./errors.js";
import { resolveOptions } from "./options.js";
import { encodePublishFrame, parseRecords } from "./records.js";
import { TopicTracker } from "./tracker.js";
import { KeepAlive } from "./keepalive.js";
/** Bye reasons after which reconnecting is pointless (§8: not advised, and not a transient state). */
const TERMINAL_BYES = new Set(["kicked", "replaced"]);
const OPEN = 1;
const MAX_ID = 0xffffffff;
/** Most times one rate-limited publish is sent again. */
const MAX_RATE_RETRIES = 8;
const utf8 = new TextDecoder();
const utf8enc = new TextEncoder();
class Emitter {
    ls = {};
    on(ev, fn) {
        (this.ls[ev] ??= new Set()).add(fn);
        return () => this.ls[ev]?.delete(fn);
    }
    emit(ev, v) {
        for (const fn of this.ls[ev] ?? []) {
            try {
                fn(v);
            }
            catch (e) {
                // A listener's bug must not break the connection's bookkeeping.
                queueMicrotask(() => {
                    throw e;
                });
            }
        }
    }
}
/**
 * One topic's stream: `on('message')` / `on('gap')` callbacks, or `for await (const ev of sub)`
 * (messages and gaps in order, buffered from the moment iteration starts). Survives reconnects;
 * ends at `unsubscribe` or `close`.
 */
export class Subscription extends Emitter {
    topic;
    /** @internal */ tracker;
    queue = [];
    waiters = [];
    ended = false;
    /** Buffer for the iterator only once one exists: a callback-only subscriber must not grow a queue. */
    iterating = false;
    answers = 0;
    readyResolve;
    readyReject;
    /** Resolves at the first `subscribed` answer; rejects when the hub refuses the subscription. */
    ready;
    /** @internal */
    constructor(topic, o) {
        super();
        this.topic = topic;
        this.tracker = new TopicTracker(topic, o);
        this.ready = new Promise((resolve, reject) => {
            this.readyResolve = resolve;
            this.readyReject = reject;
        });
        // Callback users need not await `ready`: its rejection must not count as unhandled.
        this.ready.catch(() => { });
    }
    /** The last delivered offset and its epoch (what a resume starts after). */
    get position() {
        return { offset: this.tracker.lastDelivered, epoch: this.tracker.currentEpoch };
    }
    /** @internal */ subscribed(a) {
        const resumed = this.answers++ > 0;
        this.emit("subscribed", {
            type: "subscribed",
            topic: this.topic,
            epoch: a.epoch,
            offset: a.offset,
            head: a.head ?? a.offset,
            replayed: a.replayed ?? 0,
            recovered: a.recovered,
            resumed,
        });
        const gap = this.tracker.onSubscribed(a);
        if (gap)
            this.push("gap", gap);
        this.readyResolve();
    }
    /** @internal */ record(r) {
        const v = this.tracker.onRecord(r.offset, r.epoch);
        if (!v.deliver)
            return;
        if (v.gap)
            this.push("gap", v.gap);
        const payload = r.payload;
        const ev = {
            type: "message",
            topic: r.topic,
            offset: r.offset,
            epoch: r.epoch,
            publishTimeUs: r.publishTimeUs,
            payload,
            json: r.json,
            text: () => utf8.decode(payload),
            parse: () => JSON.parse(utf8.decode(payload)),
        };
        if (r.meta)
            ev.meta = r.meta;
        this.push("message", ev);
    }
    /** @internal */ failed(e) {
        this.emit("error", e);
        this.readyReject(e);
    }
    push(kind, ev) {
        if (this.ended)
            return;
        if (kind === "message")
            this.emit("message", ev);
        else
            this.emit("gap", ev);
        const w = this.waiters.shift();
        if (w)
            w({ value: ev, done: false });
        else if (this.iterating)
            this.queue.push(ev);
    }
    /** @internal */ end() {
        this.ended = true;
        for (const w of this.waiters.splice(0))
            w({ value: undefined, done: true });
    }
    [Symbol.asyncIterator]() {
        this.iterating = true;
        return {
            next: () => {
                const ev = this.queue.shift();
                if (ev)
                    return Promise.resolve({ value: ev, done: false });
                if (this.ended)
                    return Promise.resolve({ value: undefined, done: true });
                return new Promise((r) => this.waiters.push(r));
            },
            return: () => {
                this.iterating = false;
                this.queue = [];
                return Promise.resolve({ value: undefined, done: true });
            },
        };
    }
}
/** A connection to a fanhub cluster; see {@link connect}. */
export class Client extends Emitter {
    o;
    ws;
    ready = false;
    closed = false;
    token;
    /** A fresh token was fetched after an `unauthenticated`; a second one in a row is final. */
    authRetried = false;
    attempt = 0;
    endpoints;
    /** The URL of the current socket (or attempt), for `health()`, breakers and status events. */
    url;
    lastError;
    preferred = [];
    reconnectTimer;
    /** Until `welcome`: the connect timeout; after: the keep-alive's next deadline. */
    socketTimer;
    keepAlive;
    nextId = 1;
    pending = new Map();
    subs = new Map();
    /** Subscribe request id → topic, for the current socket. */
    subscribeIds = new Map();
    lastBye;
    /** Until when the hub holds publishes back (`rate_limited` … `retry_after_ms`), on the `now` clock. */
    throttledUntil = 0;
    /** The held publishes, chained: each starts after the previous one's answer. */
    turns = Promise.resolve();
    /** No reconnect before this time (`reconnect(…, awayMs)`), on the `now` clock. */
    awayUntil = 0;
    /** @internal use {@link connect} */
    constructor(options) {
        super();
        this.o = resolveOptions(options);
        this.endpoints = new Endpoints(this.o.endpoints, this.o.breaker);
        this.token = this.o.token;
        queueMicrotask(() => void this.open());
    }
    /** Subscribes `topic`; messages and gaps arrive on the returned subscription, across reconnects. */
    subscribe(topic, o = {}) {
        if (this.closed)
            throw new FanhubError("closed", "the client is closed");
        if (typeof topic !== "string" || topic === "")
            throw new FanhubError("invalid_options", "invalid `topic`: expected a non-empty string");
        if (this.subs.has(topic))
            throw new FanhubError("failed_precondition", `already subscribed to ${topic}`, { topic });
        const sub = new Subscription(topic, o);
        this.subs.set(topic, sub);
        if (this.ready)
            this.sendSubscribe(sub);
        return sub;
    }
    /** Ends the subscription of `topic` (its iterator finishes). */
    async unsubscribe(topic) {
        const sub = this.subs.get(topic);
        if (!sub)
            throw new FanhubError("failed_precondition", `not subscribed to ${topic}`, { topic });
        this.subs.delete(topic);
        sub.end();
        if (this.ready) {
            await this.request({ op: "unsubscribe", topic }).catch((e) => {
                // Already gone on the server (a reconnect raced us): nothing left to undo.
                if (e.code !== "failed_precondition" && e.code !== "disconnected")
                    throw e;
            });
        }
    }
    /**
     * Publishes `data`: a `Uint8Array` as a binary publish frame (§5.2), anything else as JSON.
     * Waits for a connection when there is none (up to `requestTimeoutMs`).
     *
     * @throws {FanhubError} the server's error; `disconnected` when the connection dropped before
     * the answer (then it was not published, unless the close was abnormal); `timeout`.
     */
    async publish(topic, data, opts = {}) {
        // A `rate_limited` publish was not published: it is sent again after the hub's
        // `retry_after_ms`. While the hub holds this client back, publishes go one at a time, each
        // after the previous one's answer and no sooner than the hub said.
        for (let attempt = 0;; attempt++) {
            const once = () => this.publishOnce(topic, data, opts);
            try {
                return this.o.now() < this.throttledUntil ? await this.inTurn(once) : await once();
            }
            catch (e) {
                const wait = e instanceof FanhubError && e.code === "rate_limited" ? e.retryAfterMs : undefined;
                if (wait === undefined || attempt >= MAX_RATE_RETRIES || this.closed)
                    throw e;
                this.throttledUntil = Math.max(this.throttledUntil, this.o.now() + Math.max(1, wait));
            }
        }
    }
    /** Runs `f` after every earlier held publish, and not before `throttledUntil`. */
    inTurn(f) {
        const turn = this.turns.then(async () => {
            // Again until the clock says so: a timer may fire a little early (the event loop's
            // cached time), and the hub's retry_after_ms is a floor.
            for (let d = this.throttledUntil - this.o.now(); d > 0; d = this.throttledUntil - this.o.now()) {
                await new Promise((r) => setTimeout(r, d));
            }
            return f();
        });
        this.turns = turn.then(() => undefined, () => undefined);
        return turn;
    }
    async publishOnce(topic, data, opts) {
        let a;
        if (data instanceof Uint8Array || opts.binary) {
            const json = !(data instanceof Uint8Array);
            const bytes = data instanceof Uint8Array ? data : utf8enc.encode(JSON.stringify(data));
            a = await this.requestWith((id) => encodePublishFrame(topic, bytes, id, json));
        }
        else {
            a = await this.request({ op: "publish", topic, data });
        }
        return { offset: a.offset, epoch: a.epoch };
    }
    /**
     * Measures the round trip to the hub and the hub's clock offset (§4.6, client-initiated), e.g.
     * to turn a message's `publishTimeUs` (the hub's clock) into an end-to-end latency. One sample:
     * callers that want a steady estimate keep the sample with the smallest round trip of several.
     *
     * @throws {FanhubError} `disconnected`, `timeout`, `closed`.
     */
    async timeSync() {
        const t1 = this.o.wallClockUs();
        const a = await this.request({ op: "time_sync", t1 });
        const t4 = this.o.wallClockUs();
        const t2 = Number(a.t2);
        const t3 = Number(a.t3);
        return { rttUs: t4 - t1 - (t3 - t2), offsetUs: (t2 - t1 + (t3 - t4)) / 2 };
    }
    /**
     * Drops the current connection at once, as a network failure would: requests in flight fail
     * `disconnected`, then the client reconnects (with backoff) and resumes every subscription
     * after its last delivered offset, no sooner than `awayMs` from now. For failover drills and
     * demos; a no-op while disconnected.
     */
    reconnect(reason = "dropped by the application", awayMs = 0) {
        const ws = this.ws;
        if (!ws || this.closed)
            return;
        this.awayUntil = this.o.now() + Math.max(0, awayMs);
        ws.onclose = ws.onmessage = ws.onerror = ws.onopen = null;
        try {
            ws.close(4000, "dropped");
        }
        catch {
            /* already closing */
        }
        this.onSocketClosed(4000, reason);
    }
    /** Closes for good: no reconnect, pending requests rejected, subscriptions ended. */
    close() {
        this.shutdown("client");
    }
    shutdown(reason, error) {
        if (this.closed)
            return;
        this.closed = true;
        clearTimeout(this.reconnectTimer);
        clearTimeout(this.socketTimer);
        const ws = this.ws;
        this.ws = undefined;
        this.ready = false;
        if (ws) {
            ws.onclose = ws.onmessage = ws.onerror = ws.onopen = null;
            try {
                ws.close(1000, "bye");
            }
            catch {
                /* already closing */
            }
        }
        this.failPending(() => true, error ?? new FanhubError("closed", "the client was closed"));
        for (const s of this.subs.values())
            s.end();
        this.subs.clear();
        if (error)
            this.emit("error", error);
        this.emit("status", error ? { state: "closed", reason, error } : { state: "closed", reason });
    }
    id() {
        const id = this.nextId;
        this.nextId = id >= MAX_ID ? 1 : id + 1;
        return id;
    }
    request(msg) {
        return this.requestWith((id) => JSON.stringify({ ...msg, id }));
    }
    requestWith(build) {
        if (this.closed)
            return Promise.reject(new FanhubError("closed", "the client is closed"));
        const id = this.id();
        const frame = build(id);
        return new Promise((resolve, reject) => {
            const timer = setTimeout(() => {
                this.pending.delete(id);
                reject(new FanhubError("timeout", `no answer within ${this.o.requestTimeoutMs} ms`));
            }, this.o.requestTimeoutMs);
            const p = { resolve, reject, timer, sent: false, frame };
            this.pending.set(id, p);
            if (this.ready)
                this.sendPending(p);
        });
    }
    sendPending(p) {
        p.sent = true;
        this.ws?.send(p.frame);
    }
    failPending(which, e) {
        for (const [id, p] of this.pending) {
            if (!which(p))
                continue;
            this.pending.delete(id);
            clearTimeout(p.timer);
            p.reject(e);
        }
    }
    sendSubscribe(sub) {
        const id = this.id();
        this.subscribeIds.set(id, sub.topic);
        this.ws?.send(JSON.stringify({ op: "subscribe", id, topic: sub.topic, ...sub.tracker.resumeFrom() }));
    }
    /**
     * The current endpoint's health: its `GET /healthz` (timed, with the hub's version) and the
     * client's own view (the endpoint's circuit, the last connection error). Never throws for an
     * unhealthy hub: that is `healthy: false` with `error`.
     *
     * @throws {FanhubError} `invalid_options` when there is no `fetch` (pass one in the options).
     */
    async health() {
        const endpoint = this.url ?? this.endpoints.currentUrl;
        const base = { endpoint, healthy: false, circuit: this.endpoints.circuit(endpoint, this.o.now()) };
        if (this.lastError !== undefined)
            base.lastError = this.lastError;
        const fetchFn = this.o.fetch;
        if (!fetchFn)
            throw new FanhubError("invalid_options", "no global fetch here: pass `fetch` in the options");
        const ctl = new AbortController();
        const timer = setTimeout(() => ctl.abort(), this.o.requestTimeoutMs);
        const started = this.o.now();
        try {
            const res = await fetchFn(httpBase(endpoint) + "/healthz", { method: "GET", signal: ctl.signal });
            const text = await res.text();
            base.responseTimeMs = this.o.now() - started;
            let body = {};
            try {
                body = JSON.parse(text);
            }
            catch {
                return { ...base, error: `/healthz answered ${res.status} with no JSON: ${text.slice(0, 100)}` };
            }
            if (typeof body.version === "string")
                base.serverVersion = body.version;
            if (typeof body.node_id === "string")
                base.nodeId = body.node_id;
            base.healthy = res.ok && body.status === "ok";
            if (!base.healthy)
                base.error = `/healthz answered ${res.status} ${text.slice(0, 100)}`;
            return base;
        }
        catch (e) {
            return { ...base, error: ctl.signal.aborted ? `no answer within ${this.o.requestTimeoutMs} ms` : String(e) };
        }
        finally {
            clearTimeout(timer);
        }
    }
    emitEndpointEvents(events) {
        for (const ev of events)
            this.emit("status", ev);
    }
    /** The attempt on `url` ended: `ok` at its welcome, not ok when it failed before one or died. */
    recordAttempt(url, ok) {
        const events = [];
        this.endpoints.record(url, this.o.now(), ok, events);
        this.emitEndpointEvents(events);
    }
    async open() {
        if (this.closed)
            return;
        if (this.token === undefined && this.o.tokenProvider) {
            try {
                this.token = await this.o.tokenProvider();
            }
            catch (e) {
                this.scheduleReconnect();
                this.emit("error", new FanhubError("unauthenticated", `tokenProvider failed: ${String(e)}`));
                return;
            }
            if (this.closed)
                return;
        }
        // Advised URLs first (a bye's reconnect list), then the endpoints whose circuit allows it.
        let url = this.preferred.shift();
        if (url === undefined) {
            const events = [];
            const pick = this.endpoints.pick(this.o.now(), events);
            this.emitEndpointEvents(events);
            if (pick.url === undefined) {
                // Every circuit is open: wait for the first to let a probe through.
                this.reconnectTimer = setTimeout(() => void this.open(), Math.max(1, pick.waitMs));
                return;
            }
            url = pick.url;
        }
        this.url = url;
        this.emit("status", { state: "connecting", url });
        let ws;
        try {
            ws = this.o.transport.open(url, this.token);
        }
        catch (e) {
            this.lastError = `cannot open ${url}: ${String(e)}`;
            this.emit("error", new FanhubError("disconnected", this.lastError));
            this.recordAttempt(url, false);
            this.scheduleReconnect();
            return;
        }
        ws.binaryType = "arraybuffer";
        this.ws = ws;
        this.lastBye = undefined;
        this.keepAlive = undefined;
        clearTimeout(this.socketTimer);
        this.socketTimer = setTimeout(() => {
            if (this.ws === ws)
                this.abandon(ws, 4000, `no welcome within ${this.o.connectTimeoutMs} ms`);
        }, this.o.connectTimeoutMs);
        const connectId = this.id();
        ws.onopen = () => {
            const msg = { op: "connect", id: connectId, client_id: this.o.clientId, client: { name: "fanhub-ts" } };
            if (this.token !== undefined)
                msg.token = this.token;
            ws.send(JSON.stringify(msg));
        };
        ws.onmessage = (ev) => {
            if (this.ws !== ws)
                return;
            // Anything at all proves the connection alive; the keep-alive's timer reads this later.
            this.keepAlive?.received(this.o.now());
            if (typeof ev.data !== "string")
                return this.onData(ev.data);
            let m;
            try {
                m = JSON.parse(ev.data);
            }
            catch {
                this.emit("error", new FanhubError("invalid_argument", `bad control message from the server: ${ev.data.slice(0, 100)}`));
                return;
            }
            if (m !== null && typeof m === "object")
                this.onControl(m, url, connectId);
        };
        ws.onerror = () => {
            /* the close event follows and carries what we act on */
        };
        ws.onclose = (ev) => {
            if (this.ws !== ws)
                return;
            this.onSocketClosed(ev.code, ev.reason);
        };
    }
    /**
     * Gives up on `ws` without waiting for its close handshake (a dead or stuck connection would
     * never complete one) and goes on as if it had closed with `code` and `reason`.
     */
    abandon(ws, code, reason) {
        ws.onclose = ws.onmessage = ws.onerror = ws.onopen = null;
        const terminate = ws.terminate;
        try {
            if (typeof terminate === "function")
                terminate.call(ws); // Node's `ws`: no close handshake
            else
                ws.close(4000, "dead");
        }
        catch {
            /* already closing */
        }
        this.onSocketClosed(code, reason, true);
    }
    /** Runs the keep-alive at its deadline: ping, or give up on a dead connection. */
    armKeepAlive(ws) {
        const ka = this.keepAlive;
        if (!ka)
            return;
        clearTimeout(this.socketTimer);
        this.socketTimer = setTimeout(() => {
            if (this.ws !== ws || this.keepAlive !== ka)
                return;
            const action = ka.poll(this.o.now());
            if (action === "ping")
                ws.send(JSON.stringify({ op: "ping", id: this.id() }));
            if (action === "dead") {
                const silent = this.o.keepaliveIntervalMs + this.o.keepaliveTimeoutMs;
                this.abandon(ws, 4000, `keep-alive: nothing received for ${Math.round(silent)} ms`);
                return;
            }
            this.armKeepAlive(ws);
        }, Math.max(1, ka.deadline - this.o.now()));
    }
    onData(buf) {
        let records;
        try {
            records = parseRecords(buf);
        }
        catch (e) {
            this.emit("error", new FanhubError("invalid_argument", `bad data message from the server: ${String(e)}`));
            return;
        }
        for (const r of records)
            this.subs.get(r.topic)?.record(r);
    }
    onControl(m, url, connectId) {
        const id = typeof m.id === "number" ? m.id : undefined;
        switch (m.type) {
            case "welcome": {
                this.ready = true;
                this.attempt = 0;
                this.authRetried = false;
                this.lastError = undefined;
                this.recordAttempt(url, true);
                const ws = this.ws;
                if (ws) {
                    this.keepAlive = new KeepAlive(this.o.keepaliveIntervalMs, this.o.keepaliveTimeoutMs, this.o.now());
                    this.armKeepAlive(ws);
                }
                this.emit("status", {
                    state: "connected",
                    url,
                    connId: m.conn_id,
                    nodeId: m.node_id,
                    transport: this.o.transport.name,
                });
                for (const s of this.subs.values())
                    this.sendSubscribe(s);
                for (const p of this.pending.values())
                    if (!p.sent)
                        this.sendPending(p);
                return;
            }
            case "subscribed": {
                const topic = id !== undefined ? this.subscribeIds.get(id) : undefined;
                if (id !== undefined)
                    this.subscribeIds.delete(id);
                if (topic !== undefined)
                    this.subs.get(topic)?.subscribed(m);
                return;
            }
            case "error": {
                const err = new FanhubError(String(m.code), String(m.message ?? m.code), {
                    ...(typeof m.limit === "string" ? { limit: m.limit } : {}),
                    ...(typeof m.topic === "string" ? { topic: m.topic } : {}),
                    ...(typeof m.retry_after_ms === "number" ? { retryAfterMs: m.retry_after_ms } : {}),
                });
                if (id === connectId && m.code === "unauthenticated")
                    return; // the bye and close follow
                if (id !== undefined && this.subscribeIds.has(id)) {
                    const topic = this.subscribeIds.get(id);
                    this.subscribeIds.delete(id);
                    const sub = this.subs.get(topic);
                    if (sub) {
                        // `unavailable` is transient (cluster mode, Redis away): the next connect retries it.
                        // Any other refusal would only repeat at every reconnect: the subscription ends.
                        if (m.code !== "unavailable") {
                            this.subs.delete(topic);
                            sub.end();
                        }
                        sub.failed(err);
                    }
                    return;
                }
                const p = id !== undefined ? this.pending.get(id) : undefined;
                if (p && id !== undefined) {
                    this.pending.delete(id);
                    clearTimeout(p.timer);
                    p.reject(err);
                }
                else if (m.code !== "unauthenticated") {
                    this.emit("error", err);
                }
                return;
            }
            case "bye": {
                const reconnect = Array.isArray(m.reconnect) ? m.reconnect : [];
                this.lastBye = { reason: String(m.reason) };
                this.preferred = reconnect.filter((u) => typeof u === "string" && /^wss?:\/\//.test(u));
                this.emit("status", { state: "bye", reason: String(m.reason), code: Number(m.code), reconnect });
                return;
            }
            case "reconnect": {
                // Advice without a close (§4.7, reserved): remember where to go when this socket ends.
                const urls = Array.isArray(m.urls) ? m.urls : [];
                this.preferred = urls.filter((u) => typeof u === "string" && /^wss?:\/\//.test(u));
                return;
            }
            case "token_expiring":
                void this.refreshToken();
                return;
            case "time_sync_request": {
                const t = this.o.wallClockUs();
                this.ws?.send(JSON.stringify({ op: "time_sync_reply", seq: m.seq, t1: m.t1, t2: t, t3: t }));
                return;
            }
            default: {
                const p = id !== undefined ? this.pending.get(id) : undefined;
                if (p && id !== undefined) {
                    this.pending.delete(id);
                    clearTimeout(p.timer);
                    p.resolve(m);
                }
            }
        }
    }
    async refreshToken() {
        if (!this.o.tokenProvider)
            return;
        try {
            const token = await this.o.tokenProvider();
            this.token = token;
            await this.request({ op: "refresh", token });
        }
        catch (e) {
            this.emit("error", e instanceof FanhubError ? e : new FanhubError("unauthenticated", `token refresh failed: ${String(e)}`));
        }
    }
    /** `failed`: the client gave up on the socket (no welcome in time, or found dead). */
    onSocketClosed(code, reason, failed = false) {
        const url = this.url ?? this.endpoints.currentUrl;
        const wasReady = this.ready;
        this.ws = undefined;
        this.ready = false;
        this.keepAlive = undefined;
        clearTimeout(this.socketTimer);
        if (!this.closed) {
            this.emit("status", { state: "disconnected", url, code, reason });
            // An attempt that never got its welcome failed, and so did a connection found dead: both
            // count against the endpoint's circuit and move the client to the next endpoint. A
            // connection that worked and then closed (a drain, a cut) does not.
            if (!wasReady || failed) {
                this.lastError = `${url}: ${reason || `closed with ${code}`}`;
                if (this.lastBye === undefined)
                    this.recordAttempt(url, false);
            }
        }
        this.subscribeIds.clear();
        this.failPending((p) => p.sent, new FanhubError("disconnected", `the connection closed (${code}${reason ? ` ${reason}` : ""}) before the answer`));
        for (const p of this.pending.values())
            p.sent = false;
        if (this.closed)
            return;
        const bye = this.lastBye?.reason;
        if (code === 4001 || bye === "unauthenticated" || code === 4002 || bye === "token_expired") {
            // A bad token does not heal by retrying: one fresh token, then give up.
            if (this.o.tokenProvider && !this.authRetried) {
                this.authRetried = true;
                this.token = undefined;
                this.attempt = 0;
                void this.open();
                return;
            }
            this.shutdown("unauthenticated", new FanhubError("unauthenticated", `the server refused the token (${bye ?? code})`));
            return;
        }
        if (bye !== undefined && TERMINAL_BYES.has(bye)) {
            this.shutdown(bye, new FanhubError(bye, `closed by the server: ${bye}`));
            return;
        }
        this.scheduleReconnect();
    }
    scheduleReconnect() {
        if (this.closed)
            return;
        const attempt = this.attempt++;
        const delayMs = Math.max(backoffDelay(attempt, this.o.backoff, this.o.random), Math.ceil(this.awayUntil - this.o.now()));
        this.emit("status", { state: "reconnecting", attempt, delayMs });
        this.reconnectTimer = setTimeout(() => void this.open(), delayMs);
    }
}
/** `ws://host:port/ws` → `http://host:port` (`wss:` → `https:`). */
export function httpBase(wsUrl) {
    const u = new URL(wsUrl);
    return `${u.protocol === "wss:" ? "https:" : "http:"}//${u.host}`;
}
/**
 * Validates `options` and starts connecting (in the background: watch `on('status')`).
 *
 * @throws {FanhubError} code `invalid_options` naming the field.
 */
export function connect(options) {
    return new Client(options);
}
