// Where a subscription stands in its topic's history, and what to make of what arrives: which
// records are duplicates, where a resume lost messages, where the live stream skipped offsets.
// Pure and socket-free so every rule is unit-tested; the client feeds it `subscribed` answers and
// records in arrival order. The same rules as the Rust client's `client::resume::Position`.
import { u64 } from "./records.js";
/**
 * Tracks one topic: the epoch and the next offset expected (last delivered + 1). Offsets are
 * kept as `bigint` internally so comparisons are exact whatever their size.
 */
export class TopicTracker {
    topic;
    epoch;
    next;
    /** `offset`/`epoch`: where the caller asked to start (both optional, as in §4.2). */
    constructor(topic, start = {}) {
        this.topic = topic;
        if (start.offset !== undefined)
            this.next = BigInt(start.offset);
        if (start.offset !== undefined && start.epoch !== undefined)
            this.epoch = start.epoch;
    }
    /** The `offset` and `epoch` to send in the next `subscribe`: resume after the last delivered. */
    resumeFrom() {
        const r = {};
        if (this.next !== undefined)
            r.offset = u64(this.next);
        if (this.next !== undefined && this.epoch !== undefined)
            r.epoch = this.epoch;
        return r;
    }
    /** The last delivered offset (next − 1), if known. */
    get lastDelivered() {
        return this.next === undefined || this.next === 0n ? undefined : u64(this.next - 1n);
    }
    get currentEpoch() {
        return this.epoch;
    }
    /**
     * Takes a `subscribed` answer. Returns the gap to report when it says `recovered: false` and
     * messages the subscription had not seen may be missing; never skips silently.
     */
    onSubscribed(a) {
        const answerOffset = BigInt(a.offset);
        let gap;
        // `0` asked for "the oldest retained": whatever that is, nothing was skipped on our side.
        if (!a.recovered && this.next !== undefined && this.next !== 0n) {
            const epochChanged = this.epoch !== undefined && this.epoch !== a.epoch;
            if (epochChanged) {
                gap = { type: "gap", topic: this.topic, reason: "epoch_changed", from: u64(this.next), epochChanged: true, epoch: a.epoch };
            }
            else if (answerOffset > this.next) {
                gap = {
                    type: "gap",
                    topic: this.topic,
                    reason: "not_recovered",
                    from: u64(this.next),
                    to: u64(answerOffset - 1n),
                    epochChanged: false,
                    epoch: a.epoch,
                };
            }
        }
        this.epoch = a.epoch;
        this.next = answerOffset;
        return gap;
    }
    /**
     * Takes a record of this topic. Duplicates (offset ≤ last delivered in the same epoch) are not
     * delivered. A record past the next expected offset in the same epoch is delivered after a
     * `skipped` gap for the offsets in between. A record of another epoch than the one tracked
     * starts the new epoch, after an `epoch_changed` gap.
     */
    onRecord(offset, epoch) {
        const o = BigInt(offset);
        let gap;
        if (this.epoch !== undefined && epoch !== this.epoch) {
            if (this.next !== undefined) {
                gap = { type: "gap", topic: this.topic, reason: "epoch_changed", from: u64(this.next), epochChanged: true, epoch };
            }
        }
        else if (this.next !== undefined && o < this.next) {
            return { deliver: false };
        }
        else if (this.epoch !== undefined && this.next !== undefined && o > this.next) {
            // Only once an epoch is known: an offset given without one is a request, not a position.
            gap = { type: "gap", topic: this.topic, reason: "skipped", from: u64(this.next), to: u64(o - 1n), epochChanged: false, epoch };
        }
        this.epoch = epoch;
        this.next = o + 1n;
        return gap ? { deliver: true, gap } : { deliver: true };
    }
}
