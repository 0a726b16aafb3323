// The binary frames of protocol §5: parsing data messages (one or more records each) and
// encoding publish frames. Pure functions over bytes; no socket, no state.
const RECORD_HEADER = 32;
const PUBLISH_HEADER = 8;
const KIND_MESSAGE = 0x01;
const KIND_PUBLISH = 0x02;
const FLAG_JSON = 0x01;
const FLAG_META = 0x02;
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);
/** A u64 as a `number` when it is exact, otherwise the `bigint`. */
export function u64(v) {
    return v <= MAX_SAFE ? Number(v) : v;
}
const decoder = new TextDecoder("utf-8", { fatal: true });
const encoder = new TextEncoder();
/**
 * Splits one binary data message into its records (§5.1). Payloads are views into `data`, not
 * copies. A record with flag bit 1 has its metadata block (`u16` length, JSON object) split off
 * the payload and parsed into `meta`. Reserved flag bits are ignored.
 *
 * @throws {RangeError} when a record is truncated, has an unknown kind, or its metadata block is
 * longer than its payload field or not a UTF-8 JSON object.
 */
export function parseRecords(data) {
    const bytes = data instanceof Uint8Array ? data : new Uint8Array(data);
    const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const out = [];
    let p = 0;
    while (p < bytes.byteLength) {
        if (bytes.byteLength - p < RECORD_HEADER) {
            throw new RangeError(`truncated record header at byte ${p}`);
        }
        const kind = dv.getUint8(p);
        if (kind !== KIND_MESSAGE)
            throw new RangeError(`unknown record kind ${kind} at byte ${p}`);
        const flags = dv.getUint8(p + 1);
        const tlen = dv.getUint16(p + 2);
        const plen = dv.getUint32(p + 4);
        const end = p + RECORD_HEADER + tlen + plen;
        if (end > bytes.byteLength)
            throw new RangeError(`truncated record at byte ${p}`);
        let start = p + RECORD_HEADER + tlen;
        let meta;
        if (flags & FLAG_META) {
            const mlen = end - start >= 2 ? dv.getUint16(start) : -1;
            if (mlen < 0 || start + 2 + mlen > end)
                throw new RangeError(`truncated record metadata at byte ${p}`);
            meta = parseMeta(bytes.subarray(start + 2, start + 2 + mlen), p);
            start += 2 + mlen;
        }
        const record = {
            topic: decoder.decode(bytes.subarray(p + RECORD_HEADER, p + RECORD_HEADER + tlen)),
            offset: u64(dv.getBigUint64(p + 8)),
            epoch: Number(dv.getBigUint64(p + 16)),
            publishTimeUs: Number(dv.getBigUint64(p + 24)),
            json: (flags & FLAG_JSON) === FLAG_JSON,
            payload: bytes.subarray(start, end),
        };
        if (meta)
            record.meta = meta;
        out.push(record);
        p = end;
    }
    return out;
}
/** The metadata block's JSON object; a RangeError when it is not one. */
function parseMeta(block, at) {
    let v;
    try {
        v = JSON.parse(decoder.decode(block));
    }
    catch (e) {
        throw new RangeError(`record metadata at byte ${at} is not UTF-8 JSON: ${String(e)}`);
    }
    if (typeof v !== "object" || v === null || Array.isArray(v)) {
        throw new RangeError(`record metadata at byte ${at} is not a JSON object`);
    }
    return v;
}
/**
 * Encodes a publish frame (§5.2). `requestId` 0 asks for no acknowledgement; otherwise it is
 * echoed as the `id` of the `published` answer.
 *
 * @throws {RangeError} for a topic over 65535 bytes or a request id outside 0..2^32−1.
 */
export function encodePublishFrame(topic, payload, requestId, json = false) {
    const t = encoder.encode(topic);
    if (t.byteLength > 0xffff)
        throw new RangeError("topic longer than 65535 bytes");
    if (!Number.isInteger(requestId) || requestId < 0 || requestId > 0xffffffff) {
        throw new RangeError(`request id ${requestId} outside 0..2^32-1`);
    }
    const frame = new Uint8Array(PUBLISH_HEADER + t.byteLength + payload.byteLength);
    const dv = new DataView(frame.buffer);
    dv.setUint8(0, KIND_PUBLISH);
    dv.setUint8(1, json ? 1 : 0);
    dv.setUint16(2, t.byteLength);
    dv.setUint32(4, requestId);
    frame.set(t, PUBLISH_HEADER);
    frame.set(payload, PUBLISH_HEADER + t.byteLength);
    return frame;
}
