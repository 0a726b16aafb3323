// Reconnect delays: exponential growth with a cap and FULL jitter, so that many clients dropped
// at once (a drained node) do not come back in lockstep. Pure: the random source is injected.

export interface BackoffOptions {
  /** First ceiling, ms (default 100). */
  initialMs: number;
  /** The ceiling never exceeds this, ms (default 10000). */
  maxMs: number;
  /** Growth of the ceiling per attempt (default 2). */
  multiplier: number;
}

export const DEFAULT_BACKOFF: Readonly<BackoffOptions> = Object.freeze({ initialMs: 100, maxMs: 10_000, multiplier: 2 });

/** The ceiling for `attempt` (0 for the first reconnect): min(max, initial · multiplier^attempt). */
export function backoffCeiling(attempt: number, o: BackoffOptions): number {
  return Math.min(o.maxMs, o.initialMs * Math.pow(o.multiplier, attempt));
}

/**
 * The delay before reconnect `attempt`: uniform in [0, ceiling). `random` returns a number in
 * [0, 1) like `Math.random`, which is the default.
 */
export function backoffDelay(attempt: number, o: BackoffOptions, random: () => number = Math.random): number {
  return Math.floor(random() * backoffCeiling(attempt, o));
}
