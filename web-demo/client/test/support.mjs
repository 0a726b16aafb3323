// Shared by the unit tests (not a test file itself): building wire records.

/** A data record (protocol §5.1) of `topic` at `offset` of `epoch`; a string payload is UTF-8 and JSON-flagged. */
export function record(topic, offset, epoch, payload, json = typeof payload === "string") {
  const t = new TextEncoder().encode(topic);
  const p = typeof payload === "string" ? new TextEncoder().encode(payload) : payload;
  const buf = new Uint8Array(32 + t.length + p.length);
  const dv = new DataView(buf.buffer);
  dv.setUint8(0, 1);
  dv.setUint8(1, json ? 1 : 0);
  dv.setUint16(2, t.length);
  dv.setUint32(4, p.length);
  dv.setBigUint64(8, BigInt(offset));
  dv.setBigUint64(16, BigInt(epoch));
  buf.set(t, 32);
  buf.set(p, 32 + t.length);
  return buf;
}
