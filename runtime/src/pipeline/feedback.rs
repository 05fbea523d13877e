//! The feedback join's side of a run: late labels read, held until every partition's
//! watermark passed them, then joined to their predictions.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use inferwatch_schemas::feedback::UnmatchedBuilder;
use inferwatch_schemas::{
    decode_feedback, DeadLetterBuilder, Feedback, Limits, RawBatch, Unmatched,
};

use super::partitions::{lock, Shared};
use super::sink_thread::ToSink;
use super::FeedbackCounts;
use crate::error::Result;

/// How far ahead of the events' watermark feedback may be dated and still wait for it.
pub(super) const FUTURE_FEEDBACK_MS: i64 = 7 * 24 * 3_600_000;

/// Feedback read but not yet joined: it waits until every partition's watermark has passed
/// its time, so its prediction (which is older) has surely been processed. Each feedback
/// partition is released in offset order, so a checkpoint can name one offset below which
/// everything is joined.
pub(super) struct FeedbackSide {
    pub(super) source: Arc<str>,
    pub(super) limits: Limits,
    /// Kafka: feedback partition p is read by whoever owns events partition p.
    pub(super) co_partitioned: bool,
    pub(super) held: BTreeMap<i32, VecDeque<Feedback>>,
    /// Per feedback partition: the next offset to read.
    pub(super) next_read: HashMap<i32, i64>,
    /// Partitions the feedback source should start or stop following.
    pub(super) follow: Vec<(i32, Option<Option<i64>>)>,
    /// Feedback partitions whose files were reset for this run (file sources).
    pub(super) started: HashSet<i32>,
    pub(super) done: bool,
    pub(super) counts: FeedbackCounts,
    pub(super) dead: DeadLetterBuilder,
}

impl FeedbackSide {
    pub(super) fn held_len(&self) -> usize {
        self.held.values().map(|q| q.len()).sum()
    }

    /// The first offset of feedback partition `p` not yet joined.
    pub(super) fn position(&self, p: i32) -> Option<i64> {
        self.held
            .get(&p)
            .and_then(|q| q.front())
            .map(|f| f.offset)
            .or_else(|| self.next_read.get(&p).copied())
    }
}

impl Shared {
    /// Decodes a batch of feedback payloads and holds the good ones for the join.
    pub(super) fn read_feedback(&mut self, raw: RawBatch) -> Result<()> {
        let Some(fb) = self.feedback.as_mut() else {
            return Ok(());
        };
        if raw.is_empty() || (fb.co_partitioned && !self.parts.contains_key(&raw.partition)) {
            return Ok(()); // polled just before its partition left
        }
        // After a partition is followed again from a checkpoint, older messages may still
        // arrive from the previous position: skip them.
        let from = fb
            .next_read
            .get(&raw.partition)
            .copied()
            .unwrap_or(i64::MIN);
        let raw = if raw.offset(0) < from {
            let mut kept = RawBatch::new(raw.source.clone(), raw.partition);
            for i in (0..raw.len()).filter(|&i| raw.offset(i) >= from) {
                kept.push(raw.payload(i), raw.offset(i));
            }
            if kept.is_empty() {
                return Ok(());
            }
            kept
        } else {
            raw
        };
        let last = raw.last_offset().unwrap_or(raw.offset(0));
        fb.next_read.insert(raw.partition, last + 1);
        if !fb.co_partitioned && fb.started.insert(raw.partition) {
            // A file is read from its start each run: its earlier files go.
            let msg = ToSink::FeedbackStart {
                source: fb.source.clone(),
                partition: raw.partition,
                from: 0,
            };
            self.send(msg)?;
        }
        let fb = self.feedback.as_mut().expect("checked above");
        let (good, bad) = decode_feedback(&raw, &fb.limits);
        fb.counts.received += raw.len() as u64;
        fb.counts.invalid += bad.len() as u64;
        let stream_time = good.iter().map(|f| f.timestamp).max().unwrap_or(0);
        fb.held.entry(raw.partition).or_default().extend(good);
        if !bad.is_empty() {
            self.telemetry
                .counters
                .classify(bad.iter().map(|r| r.reason.as_str()));
            let fb = self.feedback.as_mut().expect("checked above");
            fb.dead.append_rejects(&raw, &bad, stream_time);
            let dead = fb.dead.finish();
            let first = raw.offset(0);
            let msg = ToSink::Feedback {
                source: fb.source.clone(),
                partition: raw.partition,
                dead: Some(dead),
                unmatched: None,
                first,
                last: raw.last_offset().unwrap_or(first),
            };
            self.send(msg)?;
        }
        Ok(())
    }

    /// The watermark every partition has passed: feedback up to it may join.
    pub(super) fn feedback_watermark(&self) -> Option<i64> {
        let ooo = self.out_of_orderness_ms();
        self.parts
            .values()
            .map(|p| lock(p).chain.window().max_event_time().map(|t| t - ooo))
            .min()
            .flatten()
    }

    /// Whether the feedback source should be read now: it is not exhausted, and what is held
    /// is already due (so memory holds about one batch of feedback ahead of the events).
    pub(super) fn wants_feedback(&self) -> bool {
        let Some(fb) = &self.feedback else {
            return false;
        };
        if fb.done || fb.held_len() >= self.config.processor.feedback.max_pending {
            return false;
        }
        let newest = fb
            .held
            .values()
            .flat_map(|q| q.back())
            .map(|f| f.timestamp)
            .max();
        match (newest, self.feedback_watermark()) {
            (None, _) => true,
            (Some(t), Some(wm)) => t <= wm,
            (Some(_), None) => false,
        }
    }

    /// Joins held feedback that is due (all of it with `all`), then emits the revisions of
    /// windows that late labels changed.
    pub(super) fn release_feedback(&mut self, all: bool) -> Result<()> {
        self.settle()?;
        let wm = if all {
            Some(i64::MAX)
        } else {
            self.feedback_watermark()
        };
        let (Some(wm), Some(fb)) = (wm, self.feedback.as_mut()) else {
            return Ok(());
        };
        let mut due = Vec::new();
        for q in fb.held.values_mut() {
            while let Some(f) = q.front() {
                // Feedback dated more than a week ahead of the events would hold its
                // partition up for that long: it is joined at once (and is likely unknown).
                if f.timestamp > wm && f.timestamp - wm <= FUTURE_FEEDBACK_MS {
                    break;
                }
                due.push(q.pop_front().expect("front exists"));
            }
        }
        if due.is_empty() {
            return Ok(());
        }
        // Per feedback partition: unmatched rows and the offsets they span.
        let mut unmatched: BTreeMap<i32, (UnmatchedBuilder, i64, i64)> = BTreeMap::new();
        for f in &due {
            let mut outcome = Err(Unmatched::Unknown);
            for (&p, part) in self.parts.iter() {
                if fb.co_partitioned && p != f.partition {
                    continue;
                }
                outcome = lock(part).chain.window_mut().join_feedback(f);
                if outcome != Err(Unmatched::Unknown) {
                    break;
                }
            }
            let c = &mut fb.counts;
            match outcome {
                Ok(()) => c.joined += 1,
                Err(why) => {
                    match why {
                        Unmatched::Unknown => c.unknown += 1,
                        Unmatched::Expired => c.expired += 1,
                        Unmatched::Duplicate => c.duplicate += 1,
                        Unmatched::Unusable => c.unusable += 1,
                    }
                    let e = unmatched
                        .entry(f.partition)
                        .or_insert_with(|| (UnmatchedBuilder::default(), f.offset, f.offset));
                    e.0.append(f, why);
                    e.1 = e.1.min(f.offset);
                    e.2 = e.2.max(f.offset);
                }
            }
        }
        let source = fb.source.clone();
        for (partition, (mut rows, first, last)) in unmatched {
            self.send(ToSink::Feedback {
                source: source.clone(),
                partition,
                dead: None,
                unmatched: Some(rows.finish()),
                first,
                last,
            })?;
        }
        self.emit_revisions(false)
    }

    pub(super) fn feedback_counts(&self) -> Option<FeedbackCounts> {
        let fb = self.feedback.as_ref()?;
        let mut c = fb.counts;
        for p in self.parts.values() {
            let s = lock(p).chain.window().label_stats();
            c.waiting += s.waiting;
            c.evicted += s.evicted;
        }
        Some(c)
    }
}
