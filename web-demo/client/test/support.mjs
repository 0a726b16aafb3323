// Shared by the unit tests (not a test file itself): building wire records.

/**
 * A data record (protocol §5.1) of `topic` at `offset` of `epoch`; a string payload is UTF-8 and
 * JSON-flagged. With `meta` (an object), the metadata block (flag bit 1: `u16` length, its JSON)
 * precedes the payload, as the hub writes it for messages from upstream sources.
 */
export function record(topic, offset, epoch, payload, json = typeof payload === "string", meta = undefined) {
  const t = new TextEncoder().encode(topic);
  let p = typeof payload === "string" ? new TextEncoder().encode(payload) : payload;
  if (meta !== undefined) p = metaField(new TextEncoder().encode(JSON.stringify(meta)), p);
  const buf = new Uint8Array(32 + t.length + p.length);
  const dv = new DataView(buf.buffer);
  dv.setUint8(0, 1);
  dv.setUint8(1, (json ? 1 : 0) | (meta !== undefined ? 2 : 0));
  dv.setUint16(2, t.length);
  dv.setUint32(4, p.length);
  dv.setBigUint64(8, BigInt(offset));
  dv.setBigUint64(16, BigInt(epoch));
  buf.set(t, 32);
  buf.set(p, 32 + t.length);
  return buf;
}

/** A payload field with a metadata block: `u16` length of `metaBytes`, them, then `payload`. */
export function metaField(metaBytes, payload) {
  const out = new Uint8Array(2 + metaBytes.length + payload.length);
  new DataView(out.buffer).setUint16(0, metaBytes.length);
  out.set(metaBytes, 2);
  out.set(payload, 2 + metaBytes.length);
  return out;
}
