// Chunked records on WebRTC data channels (protocol §10b), pure: parsing a chunk header and
// putting a frame's chunks back together, one reassembler per channel. No channel, no clock.
//
// A record larger than the hub's chunk size travels as several messages, each a 10-byte header
// then its part of the record:
//   0 u8 0xCF (a record starts with its kind 0x01, never with this) · 1 u8 reserved ·
//   2 u16 chunk index · 4 u16 chunk count · 6 u32 frame id (per connection, wrapping)
// On the lossy channel (unordered, no retransmits) a frame that lost a chunk never completes:
// it is dropped whole as soon as a chunk of a newer frame arrives (the hub sends a frame's
// chunks before the next frame's), and a late chunk of a frame already given up is dropped too.
/** First byte of a chunk message. */
export const CHUNK_MAGIC = 0xcf;
/** Length of a chunk header. */
export const CHUNK_HEADER_LEN = 10;
/** Thrown by {@link parseChunk} and reported by {@link ChunkReassembler.push} for a malformed chunk. */
export class ChunkError extends Error {
    constructor(message) {
        super(message);
        this.name = "ChunkError";
    }
}
/**
 * Splits a data-channel message into its chunk header and body; `undefined` when it is not a
 * chunk (a message of whole records). The reserved byte is ignored, like reserved record flags.
 *
 * @throws {ChunkError} for a chunk shorter than its header, a count of 0 or an index not below the count.
 */
export function parseChunk(msg) {
    if (msg.byteLength === 0 || msg[0] !== CHUNK_MAGIC)
        return undefined;
    if (msg.byteLength < CHUNK_HEADER_LEN)
        throw new ChunkError(`chunk of ${msg.byteLength} bytes is shorter than its header`);
    const dv = new DataView(msg.buffer, msg.byteOffset, msg.byteLength);
    const header = { index: dv.getUint16(2), count: dv.getUint16(4), frame: dv.getUint32(6) };
    if (header.index >= header.count)
        throw new ChunkError(`chunk ${header.index} of ${header.count} is out of range`);
    return { header, body: msg.subarray(CHUNK_HEADER_LEN) };
}
/**
 * Cuts `record` into chunk messages of at most `chunkSize` bytes, as the hub does (a record that
 * fits is one message, unchanged). For tests and for peers that send large records.
 *
 * @throws {RangeError} for a chunk size not above the header, or a record needing over 65535 chunks.
 */
export function encodeChunks(record, chunkSize, frame) {
    if (record.byteLength <= chunkSize)
        return [record];
    if (!Number.isInteger(chunkSize) || chunkSize <= CHUNK_HEADER_LEN)
        throw new RangeError(`chunk size ${chunkSize} must exceed ${CHUNK_HEADER_LEN}`);
    const body = chunkSize - CHUNK_HEADER_LEN;
    const count = Math.ceil(record.byteLength / body);
    if (count > 0xffff)
        throw new RangeError(`${count} chunks: more than 65535`);
    const out = [];
    for (let i = 0; i < count; i++) {
        const part = record.subarray(i * body, Math.min(record.byteLength, (i + 1) * body));
        const m = new Uint8Array(CHUNK_HEADER_LEN + part.byteLength);
        const dv = new DataView(m.buffer);
        dv.setUint8(0, CHUNK_MAGIC);
        dv.setUint16(2, i);
        dv.setUint16(4, count);
        dv.setUint32(6, frame >>> 0);
        m.set(part, CHUNK_HEADER_LEN);
        out.push(m);
    }
    return out;
}
/** `a` is after `b` in wrapping u32 order. */
function newer(a, b) {
    const d = (a - b) >>> 0;
    return d !== 0 && d < 0x8000_0000;
}
/** Puts chunked frames back together, for one channel. */
export class ChunkReassembler {
    lossy;
    maxPartial;
    /** Frame id → its chunks so far; insertion order is arrival order. */
    partial = new Map();
    /** Lossy: the newest frame id seen; chunks of frames before it are stale. */
    newest;
    droppedFrames = 0;
    constructor(o = {}) {
        this.lossy = o.lossy ?? false;
        this.maxPartial = Math.max(1, o.maxPartial ?? 64);
    }
    /** Frames given up incomplete so far (a chunk lost, or pushed out by `maxPartial`). */
    get dropped() {
        return this.droppedFrames;
    }
    /** Frames waiting for chunks now: [frame id, chunks here, chunk count]. */
    incomplete() {
        return [...this.partial].map(([id, p]) => [id, p.have, p.parts.length]);
    }
    /** Forgets every incomplete frame (a new connection), without counting them as dropped. */
    reset() {
        this.partial.clear();
        this.newest = undefined;
    }
    /** Takes one data-channel message. Never throws: a malformed chunk is a result. */
    push(msg) {
        let parsed;
        try {
            parsed = parseChunk(msg);
        }
        catch (e) {
            return { kind: "malformed", error: e };
        }
        if (!parsed)
            return { kind: "whole", data: msg, chunks: 1 };
        const { header: h, body } = parsed;
        let p = this.partial.get(h.frame);
        if (!p) {
            if (this.lossy && this.newest !== undefined && !newer(h.frame, this.newest)) {
                // A late chunk (or a duplicate) of a frame already completed or given up: nothing can
                // come of it.
                return { kind: "pending" };
            }
            if (this.lossy) {
                this.newest = h.frame;
                // A newer frame started: the older incomplete ones lost a chunk for good.
                this.droppedFrames += this.partial.size;
                this.partial.clear();
            }
            while (this.partial.size >= this.maxPartial) {
                const oldest = this.partial.keys().next().value;
                this.partial.delete(oldest);
                this.droppedFrames++;
            }
            p = { parts: new Array(h.count), have: 0, size: 0 };
            this.partial.set(h.frame, p);
        }
        else if (p.parts.length !== h.count) {
            return { kind: "malformed", error: new ChunkError(`frame ${h.frame}: chunk count ${h.count} after ${p.parts.length}`) };
        }
        if (p.parts[h.index] === undefined) {
            // A copy: the message's buffer may be reused by the channel once this returns.
            p.parts[h.index] = body.slice();
            p.have++;
            p.size += body.byteLength;
        }
        if (p.have < p.parts.length)
            return { kind: "pending" };
        this.partial.delete(h.frame);
        const whole = new Uint8Array(p.size);
        let at = 0;
        for (const part of p.parts) {
            whole.set(part, at);
            at += part.byteLength;
        }
        return { kind: "whole", data: whole, chunks: p.parts.length };
    }
}
