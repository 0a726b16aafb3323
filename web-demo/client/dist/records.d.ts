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
    payload: Uint8Array;
}
/** A u64 as a `number` when it is exact, otherwise the `bigint`. */
export declare function u64(v: bigint): Offset;
/**
 * Splits one binary data message into its records (§5.1). Payloads are views into `data`, not
 * copies. Reserved flag bits are ignored.
 *
 * @throws {RangeError} when a record is truncated or has an unknown kind.
 */
export declare function parseRecords(data: ArrayBuffer | Uint8Array): DataRecord[];
/**
 * Encodes a publish frame (§5.2). `requestId` 0 asks for no acknowledgement; otherwise it is
 * echoed as the `id` of the `published` answer.
 *
 * @throws {RangeError} for a topic over 65535 bytes or a request id outside 0..2^32−1.
 */
export declare function encodePublishFrame(topic: string, payload: Uint8Array, requestId: number, json?: boolean): Uint8Array;
