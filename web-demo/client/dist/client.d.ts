import { type CircuitState, type EndpointEvent } from "./breaker.js";
import { FanhubError } from "./errors.js";
import { type ConnectOptions } from "./options.js";
import { type DataRecord, type Offset, type RecordMeta } from "./records.js";
import { type GapEvent, TopicTracker } from "./tracker.js";
/** A delivered message. */
export interface MessageEvent {
    type: "message";
    topic: string;
    offset: Offset;
    epoch: number;
    publishTimeUs: number;
    /** The payload (never the metadata block). */
    payload: Uint8Array;
    /** The payload is JSON text (published with JSON `data`). */
    json: boolean;
    /**
     * Where a message that an upstream source published came from (§5.1 metadata: `source`,
     * `upstream`, `partition`, `position`, …); absent on other messages.
     */
    meta?: RecordMeta;
    /** The payload as UTF-8 text. */
    text(): string;
    /** The payload parsed as JSON. */
    parse<T = unknown>(): T;
}
export type { GapEvent };
export type SubscriptionEvent = MessageEvent | GapEvent;
/**
 * The hub's answer to a subscribe (§4.2), once per connection: the first subscribe and every
 * resume after a reconnect (`resumed`). `replayed` messages from history follow it, then live.
 */
export interface SubscribedEvent {
    type: "subscribed";
    topic: string;
    epoch: number;
    /** The first offset delivered on this connection. */
    offset: Offset;
    /** The topic's next offset when the hub answered (replayed messages are those before it). */
    head: Offset;
    /** How many retained messages the hub replays before the live stream. */
    replayed: number;
    /** `false`: history the subscription asked for was gone (a `gap` event says which). */
    recovered: boolean;
    /** A resume on a new connection, not the subscription's first answer. */
    resumed: boolean;
}
/** One client-initiated time sync (§4.6): the round trip and the server's clock minus ours, µs. */
export interface TimeSync {
    rttUs: number;
    /** Server clock − client clock (`Date.now()`), µs: server time ≈ `Date.now() * 1000 + offsetUs`. */
    offsetUs: number;
}
/**
 * What the connection is doing. `disconnected` is every end of a connection or of an attempt
 * (`reason` says why, e.g. a keep-alive timeout); `circuit` and `failed_over` come from the
 * endpoints' breakers.
 */
export type StatusEvent = {
    state: "connecting";
    url: string;
} | {
    state: "connected";
    url: string;
    connId: number;
    nodeId: string;
    transport: string;
} | {
    state: "disconnected";
    url: string;
    code: number;
    reason: string;
} | {
    state: "reconnecting";
    attempt: number;
    delayMs: number;
} | {
    state: "bye";
    reason: string;
    code: number;
    reconnect: string[];
} | EndpointEvent | {
    state: "closed";
    reason: string;
    error?: FanhubError;
};
/** What {@link Client.health} found. */
export interface Health {
    /** The endpoint asked: the one connected to, or the one tried next. */
    endpoint: string;
    /** `GET /healthz` answered 2xx with `"status":"ok"`. */
    healthy: boolean;
    /** How long `/healthz` took, ms (absent when it did not answer). */
    responseTimeMs?: number;
    /** The endpoint's circuit. */
    circuit: CircuitState;
    /** The hub's version, from `/healthz`. */
    serverVersion?: string;
    /** The hub node's id, from `/healthz`. */
    nodeId?: string;
    /** The client's last connection error, if any. */
    lastError?: string;
    /** Why `/healthz` could not be read, if it could not. */
    error?: string;
}
export interface PublishResult {
    offset: Offset;
    epoch: number;
}
export interface PublishOptions {
    /** Send a binary publish frame (§5.2) even for JSON data (its JSON text, JSON flag set). */
    binary?: boolean;
}
export interface SubscribeOptions {
    /** First offset wanted (0: oldest retained). Absent: live only. */
    offset?: Offset;
    /** The epoch `offset` belongs to. */
    epoch?: number;
}
type Listener<T> = (ev: T) => void;
declare class Emitter<M extends Record<string, unknown>> {
    private ls;
    on<K extends keyof M>(ev: K, fn: Listener<M[K]>): () => void;
    protected emit<K extends keyof M>(ev: K, v: M[K]): void;
}
/**
 * One topic's stream: `on('message')` / `on('gap')` callbacks, or `for await (const ev of sub)`
 * (messages and gaps in order, buffered from the moment iteration starts). Survives reconnects;
 * ends at `unsubscribe` or `close`.
 */
export declare class Subscription extends Emitter<{
    message: MessageEvent;
    gap: GapEvent;
    subscribed: SubscribedEvent;
    error: FanhubError;
}> {
    readonly topic: string;
    /** @internal */ readonly tracker: TopicTracker;
    private queue;
    private waiters;
    private ended;
    /** Buffer for the iterator only once one exists: a callback-only subscriber must not grow a queue. */
    private iterating;
    private answers;
    private readyResolve;
    private readyReject;
    /** Resolves at the first `subscribed` answer; rejects when the hub refuses the subscription. */
    readonly ready: Promise<void>;
    /** @internal */
    constructor(topic: string, o: SubscribeOptions);
    /** The last delivered offset and its epoch (what a resume starts after). */
    get position(): {
        offset?: Offset;
        epoch?: number;
    };
    /** @internal */ subscribed(a: {
        epoch: number;
        offset: Offset;
        head?: Offset;
        replayed?: number;
        recovered: boolean;
    }): void;
    /** @internal */ record(r: DataRecord): void;
    /** @internal */ failed(e: FanhubError): void;
    private push;
    /** @internal */ end(): void;
    [Symbol.asyncIterator](): AsyncIterator<SubscriptionEvent>;
}
/** A connection to a fanhub cluster; see {@link connect}. */
export declare class Client extends Emitter<{
    status: StatusEvent;
    error: FanhubError;
}> {
    private readonly o;
    private ws;
    private ready;
    private closed;
    private token;
    /** A fresh token was fetched after an `unauthenticated`; a second one in a row is final. */
    private authRetried;
    private attempt;
    private readonly endpoints;
    /** The URL of the current socket (or attempt), for `health()`, breakers and status events. */
    private url;
    private lastError;
    private preferred;
    private reconnectTimer;
    /** Until `welcome`: the connect timeout; after: the keep-alive's next deadline. */
    private socketTimer;
    private keepAlive;
    private nextId;
    private pending;
    private subs;
    /** Subscribe request id → topic, for the current socket. */
    private subscribeIds;
    private lastBye;
    /** Until when the hub holds publishes back (`rate_limited` … `retry_after_ms`), on the `now` clock. */
    private throttledUntil;
    /** The held publishes, chained: each starts after the previous one's answer. */
    private turns;
    /** No reconnect before this time (`reconnect(…, awayMs)`), on the `now` clock. */
    private awayUntil;
    /** @internal use {@link connect} */
    constructor(options: ConnectOptions);
    /** Subscribes `topic`; messages and gaps arrive on the returned subscription, across reconnects. */
    subscribe(topic: string, o?: SubscribeOptions): Subscription;
    /** Ends the subscription of `topic` (its iterator finishes). */
    unsubscribe(topic: string): Promise<void>;
    /**
     * Publishes `data`: a `Uint8Array` as a binary publish frame (§5.2), anything else as JSON.
     * Waits for a connection when there is none (up to `requestTimeoutMs`).
     *
     * @throws {FanhubError} the server's error; `disconnected` when the connection dropped before
     * the answer (then it was not published, unless the close was abnormal); `timeout`.
     */
    publish(topic: string, data: unknown, opts?: PublishOptions): Promise<PublishResult>;
    /** Runs `f` after every earlier held publish, and not before `throttledUntil`. */
    private inTurn;
    private publishOnce;
    /**
     * Measures the round trip to the hub and the hub's clock offset (§4.6, client-initiated), e.g.
     * to turn a message's `publishTimeUs` (the hub's clock) into an end-to-end latency. One sample:
     * callers that want a steady estimate keep the sample with the smallest round trip of several.
     *
     * @throws {FanhubError} `disconnected`, `timeout`, `closed`.
     */
    timeSync(): Promise<TimeSync>;
    /**
     * Drops the current connection at once, as a network failure would: requests in flight fail
     * `disconnected`, then the client reconnects (with backoff) and resumes every subscription
     * after its last delivered offset, no sooner than `awayMs` from now. For failover drills and
     * demos; a no-op while disconnected.
     */
    reconnect(reason?: string, awayMs?: number): void;
    /** Closes for good: no reconnect, pending requests rejected, subscriptions ended. */
    close(): void;
    private shutdown;
    private id;
    private request;
    private requestWith;
    private sendPending;
    private failPending;
    private sendSubscribe;
    /**
     * The current endpoint's health: its `GET /healthz` (timed, with the hub's version) and the
     * client's own view (the endpoint's circuit, the last connection error). Never throws for an
     * unhealthy hub: that is `healthy: false` with `error`.
     *
     * @throws {FanhubError} `invalid_options` when there is no `fetch` (pass one in the options).
     */
    health(): Promise<Health>;
    private emitEndpointEvents;
    /** The attempt on `url` ended: `ok` at its welcome, not ok when it failed before one or died. */
    private recordAttempt;
    private open;
    /**
     * Gives up on `ws` without waiting for its close handshake (a dead or stuck connection would
     * never complete one) and goes on as if it had closed with `code` and `reason`.
     */
    private abandon;
    /** Runs the keep-alive at its deadline: ping, or give up on a dead connection. */
    private armKeepAlive;
    private onData;
    private onControl;
    private refreshToken;
    /** `failed`: the client gave up on the socket (no welcome in time, or found dead). */
    private onSocketClosed;
    private scheduleReconnect;
}
/** `ws://host:port/ws` → `http://host:port` (`wss:` → `https:`). */
export declare function httpBase(wsUrl: string): string;
/**
 * Validates `options` and starts connecting (in the background: watch `on('status')`).
 *
 * @throws {FanhubError} code `invalid_options` naming the field.
 */
export declare function connect(options: ConnectOptions): Client;
