/** Breaker settings. */
export interface BreakerOptions {
    /** Share of failed attempts in the window that opens the circuit, in (0, 1] (default 0.5). */
    failureRatio: number;
    /** Attempts the window must hold before it can open, ≥ 1 (default 3). */
    minThroughput: number;
    /** How far back attempts count, ms (default 30000). */
    samplingWindowMs: number;
    /** How long an open circuit refuses attempts before it lets one probe through, ms (default 5000). */
    breakDurationMs: number;
}
export declare const DEFAULT_BREAKER: Readonly<BreakerOptions>;
/** `closed`: attempts go through; `open`: refused until the break is over; `half_open`: one probe goes through. */
export type CircuitState = "closed" | "open" | "half_open";
/**
 * One endpoint's breaker. It opens when, within the sampling window, at least `minThroughput`
 * attempts were made and the share that failed reached `failureRatio`; it stays open for
 * `breakDurationMs`, then lets one probe through (half-open); the probe's success closes it, its
 * failure opens it again.
 */
export declare class CircuitBreaker {
    private readonly o;
    private current;
    private until;
    /** Attempts in the window, oldest first: [time, ok]. */
    private window;
    constructor(o?: BreakerOptions);
    /** The state at `now`: an open circuit whose break is over is half-open. */
    state(now: number): CircuitState;
    /** Whether an attempt may go through at `now`. */
    allows(now: number): boolean;
    /** When an open circuit lets its probe through; undefined unless open. */
    get openUntil(): number | undefined;
    /**
     * Records an attempt's outcome at `now`; returns the new state when it changed. Only a failure
     * can open the circuit (the threshold is checked when one is recorded); any success closes it
     * (a probe, or an attempt that went through another way, e.g. reconnect advice).
     */
    record(now: number, ok: boolean): CircuitState | undefined;
    private open;
    private close;
}
/** What the endpoint choice reports: a circuit changed state, or the client moved to another endpoint. */
export type EndpointEvent = {
    state: "circuit";
    endpoint: string;
    circuit: CircuitState;
} | {
    state: "failed_over";
    from: string;
    to: string;
};
/** The next URL to try, or how long to wait before one may be tried (every circuit is open). */
export type Pick = {
    url: string;
    waitMs?: undefined;
} | {
    url?: undefined;
    waitMs: number;
};
/**
 * The endpoints with one breaker each and the one in use. The client stays on the current
 * endpoint while its attempts succeed; a failed attempt moves it to the next (`failed_over`);
 * a pick skips endpoints whose circuit is open, and when all are open says how long to wait for
 * the first to half-open. Events are returned, not emitted: the caller decides who hears them.
 */
export declare class Endpoints {
    readonly urls: readonly string[];
    private readonly breakers;
    private current;
    constructor(urls: readonly string[], o?: BreakerOptions);
    /** The endpoint in use (or to be tried next). */
    get currentUrl(): string;
    /** The circuit of `url` at `now` (`closed` for a URL that is not one of the endpoints, e.g. advised by a bye). */
    circuit(url: string, now: number): CircuitState;
    /** The endpoint to try at `now`, from the current one on, skipping open circuits. */
    pick(now: number, events: EndpointEvent[]): Pick;
    /**
     * Records an attempt on `url` at `now`: its circuit may change, and after a failure on the
     * current endpoint the next one becomes current (`failed_over`).
     */
    record(url: string, now: number, ok: boolean, events: EndpointEvent[]): void;
}
