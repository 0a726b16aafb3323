// The package's public surface.
export { connect, Client, Subscription, httpBase } from "./client.js";
export type { MessageEvent, GapEvent, SubscriptionEvent, SubscribedEvent, TimeSync, StatusEvent, PublishResult, PublishOptions, SubscribeOptions, Health } from "./client.js";
export { FanhubError } from "./errors.js";
export type { FanhubErrorCode, ClientErrorCode } from "./errors.js";
export type { ConnectOptions, WebSocketConstructor, WebSocketLike, FetchLike, FetchResponseLike, Transport } from "./options.js";
export { webrtc, RtcSocket, offerUrl, CONTROL_CHANNEL, LOSSY_CHANNEL, type WebRtcOptions, type RTCPeerConnectionConstructor } from "./rtc.js";
export { resolveOptions } from "./options.js";
export { type BackoffOptions, DEFAULT_BACKOFF, backoffCeiling, backoffDelay } from "./backoff.js";
export { type DataRecord, type Offset, type RecordMeta, parseRecords, encodePublishFrame } from "./records.js";
export { TopicTracker, type SubscribedAnswer, type RecordVerdict, type GapReason } from "./tracker.js";
export { type BreakerOptions, type CircuitState, type EndpointEvent, type Pick, DEFAULT_BREAKER, CircuitBreaker, Endpoints } from "./breaker.js";
export { KeepAlive, type KeepAliveAction } from "./keepalive.js";
export {
  CHUNK_MAGIC,
  CHUNK_HEADER_LEN,
  ChunkError,
  ChunkReassembler,
  type ChunkHeader,
  type ChunkResult,
  type ReassemblerOptions,
  encodeChunks,
  parseChunk,
} from "./chunks.js";
