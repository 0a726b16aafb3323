/** An offset: a `number` while it is at most 2^53, a `bigint` beyond (never in practice). */
export type Offset = number | bigint;
/** One message record of a data message (§5.1). */
export interface DataRecord {
    topic: string;
    offset: Offset;
    /** The topic's epoch; the protocol keeps epochs below 2^53. */
    epoch: number;
    /** Publish time, µs since the UNIX epoch (server clock). */
    publishTimeUs: number;
    /** The payload is JSON text (published with JSON `data`). */
    json: boolean;
    /** The payload, never the metadata block. */
    payload: Uint8Array;
    /** The record's metadata (flag bit 1), parsed; absent on records without it. */
    meta?: RecordMeta;
}
/**
 * A record's metadata (§5.1, flag bit 1): where a message that an upstream source published came
 * from. The hub sets it on such messages only (never on a client's publish).
 */
export interface RecordMeta {
    /** The configured source's name. */
    source: string;
    /** The upstream topic, subject, stream or outbox topic the record came from. */
    upstream: string;
    /** Where positions are ordered (a Kafka partition, a stream key, …). */
    partition: string;
    /** The upstream position as text: Kafka offset, JetStream sequence, Redis stream id, outbox id. */
    position: string;
    /** The upstream record's key, when it has one. */
    key?: string;
    /** The upstream record's headers. */
    headers?: Record<string, string>;
    /** On dead letters: why (`topic`, `payload_field`, `too_large`, `refused`). */
    reason?: string;
    /** On dead letters: the details. */
    error?: string;
    /** Fields added later. */
    [field: string]: unknown;
}
/** A u64 as a `number` when it is exact, otherwise the `bigint`. */
export declare function u64(v: bigint): Offset;
/**
 * Splits one binary data message into its records (§5.1). Payloads are views into `data`, not
 * copies. A record with flag bit 1 has its metadata block (`u16` length, JSON object) split off
 * the payload and parsed into `meta`. Reserved flag bits are ignored.
 *
 * @throws {RangeError} when a record is truncated, has an unknown kind, or its metadata block is
 * longer than its payload field or not a UTF-8 JSON object.
 */
export declare function parseRecords(data: ArrayBuffer | Uint8Array): DataRecord[];
/**
 * Encodes a publish frame (§5.2). `requestId` 0 asks for no acknowledgement; otherwise it is
 * echoed as the `id` of the `published` answer.
 *
 * @throws {RangeError} for a topic over 65535 bytes or a request id outside 0..2^32−1.
 */
export declare function encodePublishFrame(topic: string, payload: Uint8Array, requestId: number, json?: boolean): Uint8Array;
