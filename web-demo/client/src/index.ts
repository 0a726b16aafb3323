// The package's public surface.
export { connect, Client, Subscription } from "./client.js";
export type { MessageEvent, GapEvent, SubscriptionEvent, StatusEvent, PublishResult, PublishOptions, SubscribeOptions } from "./client.js";
export { FanhubError } from "./errors.js";
export type { FanhubErrorCode, ClientErrorCode } from "./errors.js";
export type { ConnectOptions, WebSocketConstructor, WebSocketLike } from "./options.js";
export { resolveOptions } from "./options.js";
export { type BackoffOptions, DEFAULT_BACKOFF, backoffCeiling, backoffDelay } from "./backoff.js";
export { type DataRecord, type Offset, parseRecords, encodePublishFrame } from "./records.js";
export { TopicTracker, type SubscribedAnswer, type RecordVerdict, type GapReason } from "./tracker.js";
