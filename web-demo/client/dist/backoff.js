// Reconnect delays: exponential growth with a cap and FULL jitter, so that many clients dropped
// at once (a drained node) do not come back in lockstep. Pure: the random source is injected.
export const DEFAULT_BACKOFF = Object.freeze({ initialMs: 100, maxMs: 10_000, multiplier: 2 });
/** The ceiling for `attempt` (0 for the first reconnect): min(max, initial · multiplier^attempt). */
export function backoffCeiling(attempt, o) {
    return Math.min(o.maxMs, o.initialMs * Math.pow(o.multiplier, attempt));
}
/**
 * The delay before reconnect `attempt`: uniform in [0, ceiling). `random` returns a number in
 * [0, 1) like `Math.random`, which is the default.
 */
export function backoffDelay(attempt, o, random = Math.random) {
    return Math.floor(random() * backoffCeiling(attempt, o));
}
