//! Loop safety: per `session_id`, steps, repeated (`tool`, `input_hash`) calls and cost.
//!
//! A session is tracked per source partition (events are keyed `service/model`, so a session
//! that spans models is tracked once per model). It is runaway when it takes more than
//! `max_steps` steps, or calls one tool with the same `input_hash` `max_repeats` times; every
//! call after the first of a (tool, input) is a repeat and its cost is wasted. A session
//! ends when the watermark passes its last event by `session_gap`; it then becomes a row of
//! the `sessions` table. At most `max_sessions` are tracked: past it the one idle longest
//! ends early and is counted as evicted.

use std::collections::hash_map::Entry;

use inferwatch_schemas::hash::Fnv64;
use serde::{Deserialize, Serialize};

use std::time::Duration;

use crate::error::{config_err, ProcessorError};
use crate::FastMap;

mod calls;
mod ended;
#[cfg(test)]
mod model_tests;
mod slots;
use calls::Calls;
pub use ended::Ended;
use inferwatch_schemas::time::deserialize_duration as duration;
use slots::{Live, Slots};

/// One tracked session.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Session {
    pub key: u32,
    pub first_seen: i64,
    pub last_seen: i64,
    pub steps: u64,
    pub repeats: u64,
    pub cost_nanos: i64,
    pub wasted_nanos: i64,
    /// Why it is runaway (`max_steps`, `max_repeats`), once it is.
    pub runaway: Option<Box<str>>,
    calls: Calls,
}

/// What one event did to its session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Step {
    /// The event is a repeat: its cost is wasted.
    pub wasted_nanos: i64,
    /// The event made the session runaway.
    pub became_runaway: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionStats {
    pub tracked: u64,
    pub ended: u64,
    pub evicted: u64,
}

/// The sessions of one partition. Each tracked session costs about 180 bytes with four
/// calls: its slot (96), its entry in the hash index (17 to 34), its place in the idle heap
/// (16 to 32), and its calls (in the slot up to two distinct ones, then 8 bytes each).
pub struct Sessions {
    max_steps: u64,
    max_repeats: u32,
    gap: i64,
    max_sessions: usize,
    slots: Slots,
    /// Slot by hash of the session id. An id whose hash another tracked id already has is
    /// found by the id itself in `collided` (with 64-bit hashes, in practice never).
    by_hash: FastMap<u64, u32>,
    collided: FastMap<Box<str>, u32>,
    /// [`session_hash`]; tests give every id one hash to exercise `collided`.
    hash_of: fn(&str) -> u64,
    /// Why a session is runaway, by slot (few are).
    runaway: FastMap<u32, Box<str>>,
    stats: SessionStats,
}

/// Checkpointed form.
#[derive(Serialize, Deserialize)]
pub struct SessionsSnapshot {
    live: Vec<(String, Session)>,
    stats: SessionStats,
}

/// A stable 64-bit hash of a session id (FNV-1a): `Sessions` finds a session by it, and the
/// `sessions` column counts distinct ones.
pub fn session_hash(id: &str) -> u64 {
    inferwatch_schemas::hash::fnv64(id.as_bytes())
}

fn call_hash(tool: &str, input: &str) -> u64 {
    // Stable across runs and builds, so checkpoints restore the same hashes.
    Fnv64::default()
        .write(tool.as_bytes())
        .write(&[0xff])
        .write(input.as_bytes())
        .finish()
}

impl Sessions {
    pub fn new(c: &LoopConfig) -> Self {
        Self {
            max_steps: c.max_steps,
            max_repeats: c.max_repeats,
            gap: c.session_gap.as_millis() as i64,
            max_sessions: c.max_sessions,
            slots: Slots::default(),
            by_hash: Default::default(),
            collided: Default::default(),
            hash_of: session_hash,
            runaway: Default::default(),
            stats: SessionStats::default(),
        }
    }

    pub fn stats(&self) -> SessionStats {
        self.stats
    }

    /// How many sessions are tracked.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Heap bytes of the sessions tracked.
    pub fn size(&self) -> usize {
        // A hash table holds up to 7/8 of its buckets; each bucket has a control byte.
        let table = |capacity: usize, entry: usize| capacity * 8 / 7 * (entry + 1);
        self.slots.size()
            + table(self.by_hash.capacity(), std::mem::size_of::<(u64, u32)>())
            + table(
                self.runaway.capacity(),
                std::mem::size_of::<(u32, Box<str>)>(),
            )
    }

    /// One event of session `id`, whose [`session_hash`] is `hash`.
    #[allow(clippy::too_many_arguments)]
    pub fn observe(
        &mut self,
        id: &str,
        hash: u64,
        key: u32,
        t: i64,
        tool: Option<&str>,
        input_hash: Option<&str>,
        cost_nanos: Option<i64>,
        ended: &mut Ended,
    ) -> Step {
        debug_assert_eq!(hash, (self.hash_of)(id));
        let slot = match self.find(id, hash) {
            Some(slot) => slot,
            None => self.track(id, hash, key, t, ended),
        };
        if t > self.slots.get(slot).last_seen() {
            self.slots.touch(slot, t);
        }
        let s = self.slots.get_mut(slot);
        s.first_seen = s.first_seen.min(t);
        s.steps = s.steps.saturating_add(1);
        let cost = cost_nanos.unwrap_or(0);
        s.cost_nanos += cost;
        let mut step = Step::default();
        let mut repeated = None;
        if let (Some(tool), Some(input)) = (tool, input_hash) {
            let n = s.calls.add(call_hash(tool, input));
            if n > 1 {
                s.repeats = s.repeats.saturating_add(1);
                s.wasted_nanos += cost;
                step.wasted_nanos = cost;
            }
            if n >= self.max_repeats {
                repeated = Some((tool, n));
            }
        }
        let steps = u64::from(s.steps);
        let too_long = steps > self.max_steps;
        if (repeated.is_some() || too_long) && !self.runaway.contains_key(&slot) {
            let why = match repeated {
                Some((tool, n)) => format!(
                    "{tool} called {n} times with the same input (max_repeats {})",
                    self.max_repeats
                ),
                None => format!("{steps} steps (max_steps {})", self.max_steps),
            };
            self.runaway.insert(slot, why.into());
            step.became_runaway = true;
        }
        step
    }

    /// Ends the sessions idle for `session_gap` at watermark `wm` (all with `wm = i64::MAX`).
    pub fn end_idle(&mut self, wm: i64, ended: &mut Ended) {
        if wm == i64::MAX {
            // All end: in any order (rows are sorted when handed out), so without the heap.
            self.by_hash.clear();
            self.collided.clear();
            let mut runaway = std::mem::take(&mut self.runaway);
            for (slot, live) in self.slots.drain() {
                self.stats.ended += 1;
                let session = session_of(&live, runaway.remove(&slot), Calls::default());
                ended.push(live.id.as_str(), session);
            }
            return;
        }
        // Ended: last seen before `wm - gap`.
        while let Some(slot) = self.slots.oldest_before(wm.saturating_sub(self.gap)) {
            self.stats.ended += 1;
            self.untrack(slot, ended);
        }
    }

    fn find(&self, id: &str, hash: u64) -> Option<u32> {
        match self.by_hash.get(&hash) {
            Some(&slot) if self.slots.get(slot).id.as_bytes() == id.as_bytes() => Some(slot),
            _ if self.collided.is_empty() => None,
            _ => self.collided.get(id).copied(),
        }
    }

    /// Starts tracking session `id` first seen at `t`, ending the one idle longest first
    /// when `max_sessions` are tracked. Returns its slot.
    fn track(&mut self, id: &str, hash: u64, key: u32, t: i64, ended: &mut Ended) -> u32 {
        while self.len() >= self.max_sessions {
            let Some(oldest) = self.slots.oldest() else {
                break;
            };
            self.stats.evicted += 1;
            self.untrack(oldest, ended);
        }
        self.stats.tracked += 1;
        self.insert(hash, Live::new(id, key, t, t))
    }

    fn insert(&mut self, hash: u64, live: Live) -> u32 {
        let slot = self.slots.insert(live);
        match self.by_hash.entry(hash) {
            Entry::Vacant(v) => {
                v.insert(slot);
            }
            Entry::Occupied(_) => {
                let id = self.slots.get(slot).id.as_str().into();
                self.collided.insert(id, slot);
            }
        }
        slot
    }

    /// Stops tracking the session in `slot`, the one idle longest; it joins `ended`.
    fn untrack(&mut self, slot: u32, ended: &mut Ended) {
        let live = self.slots.remove_oldest(slot);
        let id = live.id.as_str();
        let hash = (self.hash_of)(id);
        if self.by_hash.get(&hash) == Some(&slot) {
            self.by_hash.remove(&hash);
        } else {
            self.collided.remove(id);
        }
        let runaway = self.runaway.remove(&slot);
        ended.push(id, session_of(&live, runaway, Calls::default()));
    }

    pub fn snapshot(&self) -> SessionsSnapshot {
        let mut live: Vec<(String, Session)> = self
            .slots
            .iter()
            .map(|(slot, l)| {
                let runaway = self.runaway.get(&slot).cloned();
                (
                    l.id.as_str().to_string(),
                    session_of(l, runaway, l.calls.clone()),
                )
            })
            .collect();
        live.sort_by(|a, b| a.0.cmp(&b.0));
        SessionsSnapshot {
            live,
            stats: self.stats,
        }
    }

    pub fn restore(&mut self, s: SessionsSnapshot) {
        self.slots.clear();
        self.by_hash.clear();
        self.collided.clear();
        self.runaway.clear();
        for (id, sess) in s.live {
            let hash = (self.hash_of)(&id);
            let mut live = Live::new(&id, sess.key, sess.first_seen, sess.last_seen);
            live.steps = u32::try_from(sess.steps).unwrap_or(u32::MAX);
            live.repeats = u32::try_from(sess.repeats).unwrap_or(u32::MAX);
            live.cost_nanos = sess.cost_nanos;
            live.wasted_nanos = sess.wasted_nanos;
            live.calls = sess.calls;
            let slot = self.insert(hash, live);
            if let Some(why) = sess.runaway {
                self.runaway.insert(slot, why);
            }
        }
        self.stats = s.stats;
    }
}

/// The public form of a session; an ended one no longer needs its calls.
fn session_of(l: &Live, runaway: Option<Box<str>>, calls: Calls) -> Session {
    Session {
        key: l.key,
        first_seen: l.first_seen,
        last_seen: l.last_seen(),
        steps: l.steps.into(),
        repeats: l.repeats.into(),
        cost_nanos: l.cost_nanos,
        wasted_nanos: l.wasted_nanos,
        runaway,
        calls,
    }
}

/// `[loops]`: runaway agent and queue loops, per `session_id`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoopConfig {
    /// A session with more steps than this is runaway.
    pub max_steps: u64,
    /// A session that calls one tool with the same `input_hash` this many times is runaway
    /// (2 to 65535).
    pub max_repeats: u32,
    /// A session ends when the watermark passes its last event by this much.
    #[serde(deserialize_with = "duration")]
    pub session_gap: Duration,
    /// Most sessions tracked per source partition; past it the one idle longest ends early
    /// (counted as evicted).
    pub max_sessions: usize,
}

impl Default for LoopConfig {
    fn default() -> Self {
        Self {
            max_steps: 50,
            max_repeats: 3,
            session_gap: Duration::from_secs(30 * 60),
            max_sessions: 100_000,
        }
    }
}

impl LoopConfig {
    pub fn validate(&self) -> Result<(), ProcessorError> {
        if !(2..=calls::MAX_COUNT).contains(&self.max_repeats)
            || self.max_steps == 0
            || self.max_sessions == 0
        {
            return Err(config_err!(
                "loops.max_repeats must be 2 to {}, loops.max_steps and loops.max_sessions at least 1",
                calls::MAX_COUNT
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn h(id: &str) -> u64 {
        session_hash(id)
    }

    fn sessions(max_sessions: usize) -> Sessions {
        Sessions::new(&LoopConfig {
            max_steps: 10,
            max_repeats: 3,
            session_gap: Duration::from_millis(100),
            max_sessions,
        })
    }

    #[test]
    fn the_third_identical_call_is_a_loop_and_repeats_are_wasted() {
        let mut s = sessions(10);
        let mut ended = Ended::default();
        let a = s.observe(
            "a",
            h("a"),
            0,
            1,
            Some("search"),
            Some("h1"),
            Some(5),
            &mut ended,
        );
        assert_eq!(a, Step::default());
        let b = s.observe(
            "a",
            h("a"),
            0,
            2,
            Some("search"),
            Some("h1"),
            Some(7),
            &mut ended,
        );
        assert_eq!((b.wasted_nanos, b.became_runaway), (7, false));
        let other = s.observe(
            "a",
            h("a"),
            0,
            3,
            Some("search"),
            Some("h2"),
            Some(1),
            &mut ended,
        );
        assert_eq!(other, Step::default());
        let c = s.observe(
            "a",
            h("a"),
            0,
            4,
            Some("search"),
            Some("h1"),
            Some(11),
            &mut ended,
        );
        assert_eq!((c.wasted_nanos, c.became_runaway), (11, true));
        let d = s.observe(
            "a",
            h("a"),
            0,
            5,
            Some("search"),
            Some("h1"),
            Some(1),
            &mut ended,
        );
        assert!(!d.became_runaway, "flagged once");
        s.end_idle(106, &mut ended);
        assert_eq!(ended.len(), 1);
        let (_, a) = ended.get(0);
        assert_eq!(
            (a.steps, a.repeats, a.cost_nanos, a.wasted_nanos),
            (5, 3, 25, 19)
        );
        assert!(a.runaway.as_deref().unwrap().contains("max_repeats 3"));
    }

    #[test]
    fn long_healthy_sessions_run_to_max_steps_and_old_ones_are_evicted() {
        let mut s = sessions(2);
        let mut ended = Ended::default();
        for i in 0..10 {
            let input = format!("h{i}");
            let st = s.observe(
                "long",
                h("long"),
                0,
                i,
                Some("t"),
                Some(&input),
                Some(1),
                &mut ended,
            );
            assert!(!st.became_runaway);
        }
        assert!(
            s.observe("long", h("long"), 0, 10, None, None, None, &mut ended)
                .became_runaway
        );
        s.observe("b", h("b"), 0, 20, None, None, None, &mut ended);
        s.observe("c", h("c"), 0, 30, None, None, None, &mut ended);
        assert_eq!(s.stats().evicted, 1);
        assert_eq!(ended.get(0).0, "long");
        let snap = serde_json::to_string(&s.snapshot()).unwrap();
        let mut back = sessions(2);
        back.restore(serde_json::from_str(&snap).unwrap());
        back.end_idle(i64::MAX, &mut ended);
        assert_eq!(ended.len(), 3);
    }

    #[test]
    fn sessions_whose_ids_share_a_hash_stay_apart() {
        let mut s = sessions(10);
        s.hash_of = |_| 7;
        let mut ended = Ended::default();
        for (t, id) in [(1, "x"), (2, "y"), (3, "z"), (200, "y"), (201, "z")] {
            s.observe(id, 7, 0, t, Some("t"), Some(id), Some(1), &mut ended);
        }
        // x ended (its gap passed) while y and z, in the same hash, went on.
        assert_eq!(ended.len(), 0, "sessions end only in end_idle");
        s.end_idle(150, &mut ended);
        let steps: Vec<(&str, u64)> = ended.iter().map(|(id, s)| (id, s.steps)).collect();
        assert_eq!(steps, [("x", 1)]);
        s.observe("x", 7, 0, 202, None, None, None, &mut ended);
        s.end_idle(i64::MAX, &mut ended);
        let mut steps: Vec<(&str, u64, u64)> = ended
            .iter()
            .map(|(id, s)| (id, s.steps, s.repeats))
            .collect();
        steps.sort();
        assert_eq!(steps, [("x", 1, 0), ("x", 1, 0), ("y", 2, 1), ("z", 2, 1)]);
        assert_eq!(s.len(), 0);
        assert!(s.by_hash.is_empty() && s.collided.is_empty());
    }

    #[test]
    fn many_distinct_calls_count_alike_across_a_checkpoint() {
        let mut s = sessions(10);
        let mut ended = Ended::default();
        // 20 distinct calls (past FEW_CALLS), each made twice: 20 repeats.
        for i in 0..40 {
            let input = format!("h{}", i % 20);
            s.observe(
                "a",
                h("a"),
                0,
                i,
                Some("t"),
                Some(&input),
                Some(1),
                &mut ended,
            );
        }
        let snap = serde_json::to_string(&s.snapshot()).unwrap();
        assert!(
            snap.contains(&format!("\"{}\":2", call_hash("t", "h7") & !0xffff)),
            "{snap}"
        );
        let mut back = sessions(10);
        back.restore(serde_json::from_str(&snap).unwrap());
        let third = back.observe(
            "a",
            h("a"),
            0,
            50,
            Some("t"),
            Some("h0"),
            Some(1),
            &mut ended,
        );
        assert_eq!(third.wasted_nanos, 1);
        back.end_idle(i64::MAX, &mut ended);
        assert_eq!((ended.get(0).1.steps, ended.get(0).1.repeats), (41, 21));
    }
}
