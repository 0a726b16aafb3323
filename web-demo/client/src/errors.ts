// The one error type the client throws or rejects with: a `code` to switch on and a message
// for people. Server errors keep the server's code (protocol §7); the client adds its own.

/** Codes the client itself produces; server error codes (protocol §7) pass through as strings. */
export type ClientErrorCode =
  | "invalid_options"
  | "disconnected"
  | "timeout"
  | "closed"
  | "unauthenticated"
  | "failed_precondition";

export type FanhubErrorCode = ClientErrorCode | (string & {});

/** Every error from this package: `code` says what happened, `message` explains it. */
export class FanhubError extends Error {
  readonly code: FanhubErrorCode;
  /** The server's `limit` (for `resource_exhausted`), when it named one. */
  readonly limit?: string;
  /** The topic the error is about, when there is one. */
  readonly topic?: string;
  /** For `rate_limited`: milliseconds until the hub would accept the request. */
  readonly retryAfterMs?: number;

  constructor(
    code: FanhubErrorCode,
    message: string,
    extra: { limit?: string; topic?: string; retryAfterMs?: number } = {},
  ) {
    super(message);
    this.name = "FanhubError";
    this.code = code;
    if (extra.limit !== undefined) this.limit = extra.limit;
    if (extra.topic !== undefined) this.topic = extra.topic;
    if (extra.retryAfterMs !== undefined) this.retryAfterMs = extra.retryAfterMs;
  }
}
