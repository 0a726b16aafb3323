/** Codes the client itself produces; server error codes (protocol §7) pass through as strings. */
export type ClientErrorCode = "invalid_options" | "disconnected" | "timeout" | "closed" | "unauthenticated" | "failed_precondition";
export type FanhubErrorCode = ClientErrorCode | (string & {});
/** Every error from this package: `code` says what happened, `message` explains it. */
export declare class FanhubError extends Error {
    readonly code: FanhubErrorCode;
    /** The server's `limit` (for `resource_exhausted`), when it named one. */
    readonly limit?: string;
    /** The topic the error is about, when there is one. */
    readonly topic?: string;
    /** For `rate_limited`: milliseconds until the hub would accept the request. */
    readonly retryAfterMs?: number;
    constructor(code: FanhubErrorCode, message: string, extra?: {
        limit?: string;
        topic?: string;
        retryAfterMs?: number;
    });
}
