// Where a subscription stands in its topic's history, and what to make of what arrives: which
// records are duplicates, where a resume lost messages, where the live stream skipped offsets.
// Pure and socket-free so every rule is unit-tested; the client feeds it `subscribed` answers and
// records in arrival order. The same rules as the Rust client's `client::resume::Position`.

import { type Offset, u64 } from "./records.js";

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
export type RecordVerdict = { deliver: false } | { deliver: true; gap?: GapEvent };

/**
 * Tracks one topic: the epoch and the next offset expected (last delivered + 1). Offsets are
 * kept as `bigint` internally so comparisons are exact whatever their size.
 */
export class TopicTracker {
  readonly topic: string;
  private epoch: number | undefined;
  private next: bigint | undefined;

  /** `offset`/`epoch`: where the caller asked to start (both optional, as in §4.2). */
  constructor(topic: string, start: { offset?: Offset; epoch?: number } = {}) {
    this.topic = topic;
    if (start.offset !== undefined) this.next = BigInt(start.offset);
    if (start.offset !== undefined && start.epoch !== undefined) this.epoch = start.epoch;
  }

  /** The `offset` and `epoch` to send in the next `subscribe`: resume after the last delivered. */
  resumeFrom(): { offset?: Offset; epoch?: number } {
    const r: { offset?: Offset; epoch?: number } = {};
    if (this.next !== undefined) r.offset = u64(this.next);
    if (this.next !== undefined && this.epoch !== undefined) r.epoch = this.epoch;
    return r;
  }

  /** The last delivered offset (next − 1), if known. */
  get lastDelivered(): Offset | undefined {
    return this.next === undefined || this.next === 0n ? undefined : u64(this.next - 1n);
  }

  get currentEpoch(): number | undefined {
    return this.epoch;
  }

  /**
   * Takes a `subscribed` answer. Returns the gap to report when it says `recovered: false` and
   * messages the subscription had not seen may be missing; never skips silently.
   */
  onSubscribed(a: SubscribedAnswer): GapEvent | undefined {
    const answerOffset = BigInt(a.offset);
    let gap: GapEvent | undefined;
    // `0` asked for "the oldest retained": whatever that is, nothing was skipped on our side.
    if (!a.recovered && this.next !== undefined && this.next !== 0n) {
      const epochChanged = this.epoch !== undefined && this.epoch !== a.epoch;
      if (epochChanged) {
        gap = { type: "gap", topic: this.topic, reason: "epoch_changed", from: u64(this.next), epochChanged: true, epoch: a.epoch };
      } else if (answerOffset > this.next) {
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
  onRecord(offset: Offset, epoch: number): RecordVerdict {
    const o = BigInt(offset);
    let gap: GapEvent | undefined;
    if (this.epoch !== undefined && epoch !== this.epoch) {
      if (this.next !== undefined) {
        gap = { type: "gap", topic: this.topic, reason: "epoch_changed", from: u64(this.next), epochChanged: true, epoch };
      }
    } else if (this.next !== undefined && o < this.next) {
      return { deliver: false };
    } else if (this.epoch !== undefined && this.next !== undefined && o > this.next) {
      // Only once an epoch is known: an offset given without one is a request, not a position.
      gap = { type: "gap", topic: this.topic, reason: "skipped", from: u64(this.next), to: u64(o - 1n), epochChanged: false, epoch };
    }
    this.epoch = epoch;
    this.next = o + 1n;
    return gap ? { deliver: true, gap } : { deliver: true };
  }
}
