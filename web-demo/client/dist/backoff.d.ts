export interface BackoffOptions {
    /** First ceiling, ms (default 100). */
    initialMs: number;
    /** The ceiling never exceeds this, ms (default 10000). */
    maxMs: number;
    /** Growth of the ceiling per attempt (default 2). */
    multiplier: number;
}
export declare const DEFAULT_BACKOFF: Readonly<BackoffOptions>;
/** The ceiling for `attempt` (0 for the first reconnect): min(max, initial · multiplier^attempt). */
export declare function backoffCeiling(attempt: number, o: BackoffOptions): number;
/**
 * The delay before reconnect `attempt`: uniform in [0, ceiling). `random` returns a number in
 * [0, 1) like `Math.random`, which is the default.
 */
export declare function backoffDelay(attempt: number, o: BackoffOptions, random?: () => number): number;
