//! Late labels: predictions that carry a `confidence` but no `correct` wait here for their
//! feedback, joined by `event_id`.
//!
//! A prediction waits until the watermark passes its event time plus `label_horizon`; it is
//! then remembered as expired for two more horizons, so late feedback for it is told apart
//! from feedback for an id never seen. Memory is bounded by `max_pending` entries per
//! source partition (waiting, answered and expired alike, ~150 bytes each): past it the
//! oldest entry is dropped, counted in `evicted` when it was still waiting, and feedback for
//! it then counts as unknown.

use std::collections::VecDeque;
use std::sync::Arc;

use inferwatch_schemas::{Feedback, Unmatched};
use serde::{Deserialize, Serialize};

use std::time::Duration;

use crate::error::{config_err, ProcessorError};
use inferwatch_schemas::time::deserialize_duration as duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum Stage {
    Waiting,
    Answered,
    Expired,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    key: u32,
    time: i64,
    confidence: f64,
    prediction: Option<u32>,
    stage: Stage,
}

/// A label that found its prediction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Joined {
    pub key: u32,
    /// The prediction's event time: its windows get the label.
    pub time: i64,
    pub confidence: f64,
    pub correct: bool,
}

/// Counters of the join, per source partition.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelStats {
    pub waiting: u64,
    pub joined: u64,
    pub unknown: u64,
    pub expired: u64,
    pub duplicate: u64,
    pub unusable: u64,
    /// Waiting predictions dropped to stay within `max_pending`.
    pub evicted: u64,
}

pub struct LabelJoin {
    horizon: i64,
    max_pending: usize,
    score_threshold: f64,
    entries: crate::FastMap<Arc<str>, Entry>,
    /// Waiting or answered entries in arrival order, and expired ones: both expire from the
    /// front (arrival order is event-time order up to the allowed out-of-orderness).
    live: VecDeque<Arc<str>>,
    expired: VecDeque<Arc<str>>,
    stats: LabelStats,
}

/// Serialised [`LabelJoin`] state for checkpoints.
#[derive(Serialize, Deserialize)]
pub struct LabelSnapshot {
    live: Vec<(String, Entry)>,
    expired: Vec<(String, Entry)>,
    stats: LabelStats,
}

impl LabelJoin {
    pub fn new(c: &FeedbackConfig) -> Self {
        Self {
            horizon: c.label_horizon.as_millis() as i64,
            max_pending: c.max_pending,
            score_threshold: c.score_threshold,
            entries: Default::default(),
            live: VecDeque::new(),
            expired: VecDeque::new(),
            stats: LabelStats::default(),
        }
    }

    pub fn stats(&self) -> LabelStats {
        self.stats
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// A prediction without a label starts waiting (a redelivered one is ignored).
    pub fn wait(
        &mut self,
        event_id: &str,
        key: u32,
        time: i64,
        confidence: f64,
        prediction: Option<u32>,
    ) {
        if self.entries.contains_key(event_id) {
            return;
        }
        while self.entries.len() >= self.max_pending {
            self.evict_oldest();
        }
        let id: Arc<str> = Arc::from(event_id);
        self.entries.insert(
            id.clone(),
            Entry {
                key,
                time,
                confidence,
                prediction,
                stage: Stage::Waiting,
            },
        );
        self.live.push_back(id);
        self.stats.waiting += 1;
    }

    fn evict_oldest(&mut self) {
        let id = match self.expired.pop_front() {
            Some(id) => id,
            None => self
                .live
                .pop_front()
                .expect("entries are in one of the queues"),
        };
        if let Some(e) = self.entries.remove(&id) {
            if e.stage == Stage::Waiting {
                self.stats.waiting -= 1;
                self.stats.evicted += 1;
            }
        }
    }

    /// The watermark moved to `wm`: predictions older than the horizon stop waiting, and
    /// expired ones older than three horizons are forgotten.
    pub fn expire(&mut self, wm: i64) {
        while let Some(id) = self.expired.front() {
            if self.entries[id].time + 3 * self.horizon >= wm {
                break;
            }
            let id = self.expired.pop_front().expect("front exists");
            self.entries.remove(&id);
        }
        while let Some(id) = self.live.front() {
            if self.entries[id].time + self.horizon >= wm {
                break;
            }
            let id = self.live.pop_front().expect("front exists");
            let e = self.entries.get_mut(&id).expect("queued ids have entries");
            if e.stage == Stage::Waiting {
                self.stats.waiting -= 1;
            }
            e.stage = Stage::Expired;
            self.expired.push_back(id);
        }
    }

    /// Joins one feedback event; `category` names a prediction's category id.
    pub fn join<'a>(
        &mut self,
        f: &Feedback,
        category: impl Fn(u32) -> Option<&'a str>,
    ) -> Result<Joined, Unmatched> {
        let r = self.try_join(f, category);
        match r {
            Ok(_) => self.stats.joined += 1,
            Err(Unmatched::Unknown) => {} // another partition may know it: the caller counts
            Err(Unmatched::Expired) => self.stats.expired += 1,
            Err(Unmatched::Duplicate) => self.stats.duplicate += 1,
            Err(Unmatched::Unusable) => self.stats.unusable += 1,
        }
        r
    }

    fn try_join<'a>(
        &mut self,
        f: &Feedback,
        category: impl Fn(u32) -> Option<&'a str>,
    ) -> Result<Joined, Unmatched> {
        let e = self
            .entries
            .get_mut(f.event_id.as_str())
            .ok_or(Unmatched::Unknown)?;
        match e.stage {
            Stage::Expired => return Err(Unmatched::Expired),
            Stage::Answered => return Err(Unmatched::Duplicate),
            Stage::Waiting if f.timestamp - e.time > self.horizon => {
                return Err(Unmatched::Expired)
            }
            Stage::Waiting => {}
        }
        let correct = match (f.correct, &f.label, f.score) {
            (Some(c), _, _) => c,
            (None, Some(label), _) => match e.prediction.and_then(&category) {
                Some(p) => p == label,
                None => return Err(Unmatched::Unusable),
            },
            (None, None, Some(s)) => s >= self.score_threshold,
            (None, None, None) => return Err(Unmatched::Unusable),
        };
        e.stage = Stage::Answered;
        self.stats.waiting -= 1;
        Ok(Joined {
            key: e.key,
            time: e.time,
            confidence: e.confidence,
            correct,
        })
    }

    pub fn snapshot(&self) -> LabelSnapshot {
        let dump = |q: &VecDeque<Arc<str>>| {
            q.iter()
                .map(|id| (id.to_string(), self.entries[id].clone()))
                .collect()
        };
        LabelSnapshot {
            live: dump(&self.live),
            expired: dump(&self.expired),
            stats: self.stats,
        }
    }

    pub fn restore(&mut self, s: LabelSnapshot) {
        self.entries.clear();
        self.live.clear();
        self.expired.clear();
        for (queue, items) in [(&mut self.live, s.live), (&mut self.expired, s.expired)] {
            for (id, e) in items {
                let id: Arc<str> = Arc::from(id);
                self.entries.insert(id.clone(), e);
                queue.push_back(id);
            }
        }
        self.stats = s.stats;
    }
}

/// `[feedback]`: joining late labels to their predictions.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FeedbackConfig {
    /// Feedback is joined to a prediction until the watermark passes the prediction's event
    /// time plus this; later feedback is counted as expired.
    #[serde(deserialize_with = "duration")]
    pub label_horizon: Duration,
    /// Most predictions waiting for feedback per processor. Past it the oldest prediction
    /// stops waiting (counted in `feedback_evicted`); its feedback then counts as unknown.
    pub max_pending: usize,
    /// Feedback with only a `score` counts as correct when `score >= score_threshold`.
    pub score_threshold: f64,
}

impl Default for FeedbackConfig {
    fn default() -> Self {
        Self {
            label_horizon: Duration::from_secs(3600),
            max_pending: 1_000_000,
            score_threshold: 0.5,
        }
    }
}

impl FeedbackConfig {
    pub fn validate(&self) -> Result<(), ProcessorError> {
        if self.max_pending == 0 || !(0.0..=1.0).contains(&self.score_threshold) {
            return Err(config_err!(
                "feedback.max_pending must be at least 1 and feedback.score_threshold in [0, 1]"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn fb(id: &str, t: i64, correct: Option<bool>, label: Option<&str>) -> Feedback {
        Feedback {
            event_id: id.into(),
            timestamp: t,
            correct,
            label: label.map(Into::into),
            score: None,
            source: None,
            partition: 0,
            offset: 0,
        }
    }

    fn join(max_pending: usize) -> LabelJoin {
        LabelJoin::new(&FeedbackConfig {
            label_horizon: Duration::from_millis(1000),
            max_pending,
            score_threshold: 0.5,
        })
    }

    #[test]
    fn labels_join_once_within_the_horizon() {
        let mut j = join(10);
        let names = |c: u32| ["cat", "dog"].get(c as usize).copied();
        j.wait("a", 7, 100, 0.9, Some(1));
        j.wait("b", 7, 200, 0.6, None);
        let a = j.join(&fb("a", 900, None, Some("dog")), names).unwrap();
        assert_eq!((a.key, a.time, a.correct), (7, 100, true));
        assert_eq!(
            j.join(&fb("a", 950, Some(false), None), names),
            Err(Unmatched::Duplicate)
        );
        assert_eq!(
            j.join(&fb("b", 300, None, Some("dog")), names),
            Err(Unmatched::Unusable)
        );
        assert_eq!(
            j.join(&fb("b", 1201, Some(true), None), names),
            Err(Unmatched::Expired)
        );
        assert_eq!(
            j.join(&fb("zz", 300, Some(true), None), names),
            Err(Unmatched::Unknown)
        );
        // The watermark passes b's horizon: b expires, and is forgotten a horizon later.
        j.expire(1201);
        assert_eq!(
            j.join(&fb("b", 1000, Some(true), None), names),
            Err(Unmatched::Expired)
        );
        j.expire(3201);
        assert_eq!(
            j.join(&fb("b", 1000, Some(true), None), names),
            Err(Unmatched::Unknown)
        );
        let s = j.stats();
        assert_eq!(
            (s.joined, s.duplicate, s.unusable, s.expired, s.waiting),
            (1, 1, 1, 2, 0)
        );
    }

    #[test]
    fn past_max_pending_the_oldest_stops_waiting() {
        let mut j = join(2);
        j.wait("a", 0, 1, 0.5, None);
        j.wait("b", 0, 2, 0.5, None);
        j.wait("c", 0, 3, 0.5, None);
        assert_eq!(j.len(), 2);
        assert_eq!(j.stats().evicted, 1);
        assert_eq!(
            j.join(&fb("a", 5, Some(true), None), |_| None),
            Err(Unmatched::Unknown)
        );
        assert!(j.join(&fb("c", 5, Some(true), None), |_| None).is_ok());
        let snap = serde_json::to_vec(&j.snapshot()).unwrap();
        let mut k = join(2);
        k.restore(serde_json::from_slice(&snap).unwrap());
        assert_eq!(
            k.join(&fb("c", 5, Some(true), None), |_| None),
            Err(Unmatched::Duplicate)
        );
        assert!(k.join(&fb("b", 5, Some(false), None), |_| None).is_ok());
    }
}
