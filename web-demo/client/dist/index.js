// The package's public surface.
export { connect, Client, Subscription, httpBase } from "./client.js";
export { FanhubError } from "./errors.js";
export { webrtc, RtcSocket, offerUrl, CONTROL_CHANNEL, LOSSY_CHANNEL } from "./rtc.js";
export { resolveOptions } from "./options.js";
export { DEFAULT_BACKOFF, backoffCeiling, backoffDelay } from "./backoff.js";
export { parseRecords, encodePublishFrame } from "./records.js";
export { TopicTracker } from "./tracker.js";
export { DEFAULT_BREAKER, CircuitBreaker, Endpoints } from "./breaker.js";
export { KeepAlive } from "./keepalive.js";
export { CHUNK_MAGIC, CHUNK_HEADER_LEN, ChunkError, ChunkReassembler, encodeChunks, parseChunk, } from "./chunks.js";
