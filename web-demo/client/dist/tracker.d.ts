import { type Offset } from "./records.js";
/**
 * Why messages are missing:
 * - `not_recovered`: a resume asked for history the hub no longer has (`recovered: false`);
 * - `epoch_changed`: the topic's history was lost and its offsets restarted (a new epoch);
 * - `skipped`: the live stream jumped over offsets (a `best_effort` drop, `rate_limited`
 *   coalescing).
 */
export type GapReason = "not_recovered" | "epoch_changed" | "skipped";
/** Messages that may be missing: `from`..`to` (inclusive), or everything since `from` when the epoch changed. */
export interface GapEvent {
    type: "gap";
    topic: string;
    reason: GapReason;
    /** First offset that may be missing (in the old epoch when `epochChanged`). */
    from: Offset;
    /** Last offset that may be missing; absent when the epoch changed (the old history is gone). */
    to?: Offset;
    epochChanged: boolean;
    /** The epoch delivery continues in. */
    epoch: number;
}
/** The fields of a `subscribed` answer (§4.2) the tracker needs. */
export interface SubscribedAnswer {
    epoch: number;
    offset: number | bigint;
    recovered: boolean;
}
/** What to do with an arriving record. */
export type RecordVerdict = {
    deliver: false;
} | {
    deliver: true;
    gap?: GapEvent;
};
/**
 * Tracks one topic: the epoch and the next offset expected (last delivered + 1). Offsets are
 * kept as `bigint` internally so comparisons are exact whatever their size.
 */
export declare class TopicTracker {
    readonly topic: string;
    private epoch;
    private next;
    /** `offset`/`epoch`: where the caller asked to start (both optional, as in §4.2). */
    constructor(topic: string, start?: {
        offset?: Offset;
        epoch?: number;
    });
    /** The `offset` and `epoch` to send in the next `subscribe`: resume after the last delivered. */
    resumeFrom(): {
        offset?: Offset;
        epoch?: number;
    };
    /** The last delivered offset (next − 1), if known. */
    get lastDelivered(): Offset | undefined;
    get currentEpoch(): number | undefined;
    /**
     * Takes a `subscribed` answer. Returns the gap to report when it says `recovered: false` and
     * messages the subscription had not seen may be missing; never skips silently.
     */
    onSubscribed(a: SubscribedAnswer): GapEvent | undefined;
    /**
     * Takes a record of this topic. Duplicates (offset ≤ last delivered in the same epoch) are not
     * delivered. A record past the next expected offset in the same epoch is delivered after a
     * `skipped` gap for the offsets in between. A record of another epoch than the one tracked
     * starts the new epoch, after an `epoch_changed` gap.
     */
    onRecord(offset: Offset, epoch: number): RecordVerdict;
}
