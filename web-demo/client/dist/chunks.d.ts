/** First byte of a chunk message. */
export declare const CHUNK_MAGIC = 207;
/** Length of a chunk header. */
export declare const CHUNK_HEADER_LEN = 10;
/** The header of one chunk. */
export interface ChunkHeader {
    /** Position in the frame, from 0. */
    index: number;
    /** Chunks in the frame (≥ 1). */
    count: number;
    /** The frame's id (u32, wrapping). */
    frame: number;
}
/** Thrown by {@link parseChunk} and reported by {@link ChunkReassembler.push} for a malformed chunk. */
export declare class ChunkError extends Error {
    constructor(message: string);
}
/**
 * Splits a data-channel message into its chunk header and body; `undefined` when it is not a
 * chunk (a message of whole records). The reserved byte is ignored, like reserved record flags.
 *
 * @throws {ChunkError} for a chunk shorter than its header, a count of 0 or an index not below the count.
 */
export declare function parseChunk(msg: Uint8Array): {
    header: ChunkHeader;
    body: Uint8Array;
} | undefined;
/**
 * Cuts `record` into chunk messages of at most `chunkSize` bytes, as the hub does (a record that
 * fits is one message, unchanged). For tests and for peers that send large records.
 *
 * @throws {RangeError} for a chunk size not above the header, or a record needing over 65535 chunks.
 */
export declare function encodeChunks(record: Uint8Array, chunkSize: number, frame: number): Uint8Array[];
/** What one message became. */
export type ChunkResult = 
/** A whole message of records: a message that was not chunked, or the last missing chunk of a frame. */
{
    kind: "whole";
    data: Uint8Array;
    chunks: number;
}
/** A chunk kept until its frame completes (or a duplicate, or a late chunk of a dropped frame). */
 | {
    kind: "pending";
}
/** A malformed chunk; nothing of it was kept. */
 | {
    kind: "malformed";
    error: ChunkError;
};
export interface ReassemblerOptions {
    /** The lossy channel's rule: a newer frame's chunk drops older incomplete frames (default false). */
    lossy?: boolean;
    /** Incomplete frames kept at most; the oldest is dropped for a new one (default 64). */
    maxPartial?: number;
}
/** Puts chunked frames back together, for one channel. */
export declare class ChunkReassembler {
    private readonly lossy;
    private readonly maxPartial;
    /** Frame id → its chunks so far; insertion order is arrival order. */
    private partial;
    /** Lossy: the newest frame id seen; chunks of frames before it are stale. */
    private newest;
    private droppedFrames;
    constructor(o?: ReassemblerOptions);
    /** Frames given up incomplete so far (a chunk lost, or pushed out by `maxPartial`). */
    get dropped(): number;
    /** Frames waiting for chunks now: [frame id, chunks here, chunk count]. */
    incomplete(): [number, number, number][];
    /** Forgets every incomplete frame (a new connection), without counting them as dropped. */
    reset(): void;
    /** Takes one data-channel message. Never throws: a malformed chunk is a result. */
    push(msg: Uint8Array): ChunkResult;
}
