/** What the connection should do at `now`. */
export type KeepAliveAction = "ping" | "dead" | undefined;
export declare class KeepAlive {
    private readonly intervalMs;
    private readonly timeoutMs;
    private lastReceived;
    private pingSentAt;
    /** `now`: when the connection was established (counts as having received something). */
    constructor(intervalMs: number, timeoutMs: number, now: number);
    /** Something arrived at `now`: the connection is alive. Cheap: called for every message. */
    received(now: number): void;
    /**
     * What to do at `now`: `ping` once the connection was silent for the interval (once per
     * silence), `dead` when nothing arrived within the timeout after that ping.
     */
    poll(now: number): KeepAliveAction;
    /** When `poll` next has something to say (ms, same origin as `now`). */
    get deadline(): number;
}
