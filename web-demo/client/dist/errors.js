// The one error type the client throws or rejects with: a `code` to switch on and a message
// for people. Server errors keep the server's code (protocol §7); the client adds its own.
/** Every error from this package: `code` says what happened, `message` explains it. */
export class FanhubError extends Error {
    code;
    /** The server's `limit` (for `resource_exhausted`), when it named one. */
    limit;
    /** The topic the error is about, when there is one. */
    topic;
    /** For `rate_limited`: milliseconds until the hub would accept the request. */
    retryAfterMs;
    constructor(code, message, extra = {}) {
        super(message);
        this.name = "FanhubError";
        this.code = code;
        if (extra.limit !== undefined)
            this.limit = extra.limit;
        if (extra.topic !== undefined)
            this.topic = extra.topic;
        if (extra.retryAfterMs !== undefined)
            this.retryAfterMs = extra.retryAfterMs;
    }
}
