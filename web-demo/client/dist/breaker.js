// A circuit breaker per endpoint, and the choice of the endpoint to try next. Sans-IO: time comes
// in as `now` (ms, any monotonic origin), nothing here reads a clock or sets a timer, so a 30 s
// window is unit-tested in microseconds. The same rules as the Rust client's
// `client::breaker::Breaker` and its endpoint choice in `client::actor`.
export const DEFAULT_BREAKER = Object.freeze({
    failureRatio: 0.5,
    minThroughput: 3,
    samplingWindowMs: 30_000,
    breakDurationMs: 5_000,
});
/**
 * One endpoint's breaker. It opens when, within the sampling window, at least `minThroughput`
 * attempts were made and the share that failed reached `failureRatio`; it stays open for
 * `breakDurationMs`, then lets one probe through (half-open); the probe's success closes it, its
 * failure opens it again.
 */
export class CircuitBreaker {
    o;
    current = "closed";
    until;
    /** Attempts in the window, oldest first: [time, ok]. */
    window = [];
    constructor(o = DEFAULT_BREAKER) {
        this.o = o;
    }
    /** The state at `now`: an open circuit whose break is over is half-open. */
    state(now) {
        if (this.current === "open" && this.until !== undefined && now >= this.until)
            this.current = "half_open";
        return this.current;
    }
    /** Whether an attempt may go through at `now`. */
    allows(now) {
        return this.state(now) !== "open";
    }
    /** When an open circuit lets its probe through; undefined unless open. */
    get openUntil() {
        return this.current === "open" ? this.until : undefined;
    }
    /**
     * Records an attempt's outcome at `now`; returns the new state when it changed. Only a failure
     * can open the circuit (the threshold is checked when one is recorded); any success closes it
     * (a probe, or an attempt that went through another way, e.g. reconnect advice).
     */
    record(now, ok) {
        const before = this.state(now);
        if (before !== "closed" && ok)
            this.close();
        else if (before === "half_open")
            this.open(now);
        else if (before === "closed") {
            this.window.push([now, ok]);
            while (this.window.length > 0 && now - this.window[0][0] > this.o.samplingWindowMs)
                this.window.shift();
            const failed = this.window.filter(([, ok]) => !ok).length;
            const total = this.window.length;
            if (!ok && total >= this.o.minThroughput && failed >= this.o.failureRatio * total)
                this.open(now);
        }
        return this.current !== before ? this.current : undefined;
    }
    open(now) {
        this.current = "open";
        this.until = now + this.o.breakDurationMs;
        this.window = [];
    }
    close() {
        this.current = "closed";
        this.until = undefined;
        this.window = [];
    }
}
/**
 * The endpoints with one breaker each and the one in use. The client stays on the current
 * endpoint while its attempts succeed; a failed attempt moves it to the next (`failed_over`);
 * a pick skips endpoints whose circuit is open, and when all are open says how long to wait for
 * the first to half-open. Events are returned, not emitted: the caller decides who hears them.
 */
export class Endpoints {
    urls;
    breakers;
    current = 0;
    constructor(urls, o = DEFAULT_BREAKER) {
        if (urls.length === 0)
            throw new RangeError("no endpoints");
        this.urls = [...urls];
        this.breakers = urls.map(() => new CircuitBreaker(o));
    }
    /** The endpoint in use (or to be tried next). */
    get currentUrl() {
        return this.urls[this.current];
    }
    /** The circuit of `url` at `now` (`closed` for a URL that is not one of the endpoints, e.g. advised by a bye). */
    circuit(url, now) {
        const i = this.urls.indexOf(url);
        return i < 0 ? "closed" : this.breakers[i].state(now);
    }
    /** The endpoint to try at `now`, from the current one on, skipping open circuits. */
    pick(now, events) {
        const n = this.urls.length;
        for (let k = 0; k < n; k++) {
            const i = (this.current + k) % n;
            const b = this.breakers[i];
            if (!b.allows(now))
                continue;
            if (i !== this.current) {
                events.push({ state: "failed_over", from: this.currentUrl, to: this.urls[i] });
                this.current = i;
            }
            if (b.state(now) === "half_open")
                events.push({ state: "circuit", endpoint: this.urls[i], circuit: "half_open" });
            return { url: this.urls[i] };
        }
        const until = Math.min(...this.breakers.map((b) => b.openUntil ?? now));
        return { waitMs: Math.max(0, until - now) };
    }
    /**
     * Records an attempt on `url` at `now`: its circuit may change, and after a failure on the
     * current endpoint the next one becomes current (`failed_over`).
     */
    record(url, now, ok, events) {
        const i = this.urls.indexOf(url);
        if (i < 0)
            return;
        const changed = this.breakers[i].record(now, ok);
        if (changed !== undefined)
            events.push({ state: "circuit", endpoint: url, circuit: changed });
        if (!ok && i === this.current && this.urls.length > 1) {
            this.current = (i + 1) % this.urls.length;
            events.push({ state: "failed_over", from: url, to: this.currentUrl });
        }
    }
}
