// Dead-connection detection, sans-IO: time comes in as `now` (ms). A connection that goes
// silent for `intervalMs` gets a `ping` (any answer, or anything else, proves it alive); one
// that then stays silent for `timeoutMs` more is dead. That is what finds a black-holed
// connection (a pulled cable, a frozen NAT entry, a stuck proxy): the socket stays open and
// nothing errors, so without it a client would wait for TCP's own timeouts (many minutes).
// Browsers do not show WebSocket-level pings to scripts, hence an application `ping` (§4.6).
export class KeepAlive {
    intervalMs;
    timeoutMs;
    lastReceived;
    pingSentAt;
    /** `now`: when the connection was established (counts as having received something). */
    constructor(intervalMs, timeoutMs, now) {
        this.intervalMs = intervalMs;
        this.timeoutMs = timeoutMs;
        this.lastReceived = now;
    }
    /** Something arrived at `now`: the connection is alive. Cheap: called for every message. */
    received(now) {
        this.lastReceived = now;
    }
    /**
     * What to do at `now`: `ping` once the connection was silent for the interval (once per
     * silence), `dead` when nothing arrived within the timeout after that ping.
     */
    poll(now) {
        if (this.pingSentAt !== undefined && this.lastReceived >= this.pingSentAt)
            this.pingSentAt = undefined;
        if (this.pingSentAt !== undefined)
            return now - this.pingSentAt >= this.timeoutMs ? "dead" : undefined;
        if (now - this.lastReceived >= this.intervalMs) {
            this.pingSentAt = now;
            return "ping";
        }
        return undefined;
    }
    /** When `poll` next has something to say (ms, same origin as `now`). */
    get deadline() {
        if (this.pingSentAt !== undefined && this.lastReceived < this.pingSentAt)
            return this.pingSentAt + this.timeoutMs;
        return this.lastReceived + this.intervalMs;
    }
}
