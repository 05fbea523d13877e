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
use std::collections::BTreeSet;
use std::sync::Arc;

use inferwatch_schemas::hash::Fnv64;
use serde::{Deserialize, Serialize};

use std::time::Duration;

use crate::error::{config_err, ProcessorError};
use crate::FastMap;

mod calls;
use calls::Calls;
use inferwatch_schemas::time::deserialize_duration as duration;

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

impl Session {
    fn new(key: u32, t: i64) -> Self {
        Self {
            key,
            first_seen: t,
            last_seen: t,
            steps: 0,
            repeats: 0,
            cost_nanos: 0,
            wasted_nanos: 0,
            runaway: None,
            calls: Calls::default(),
        }
    }
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

/// The sessions of one partition. Each tracked session costs about 280 bytes: its slot
/// (~120), its id and its calls (one small allocation each), and an entry in each of the
/// hash index and the idle order.
pub struct Sessions {
    max_steps: u64,
    max_repeats: u32,
    gap: i64,
    max_sessions: usize,
    /// Tracked sessions by slot; the slots of ended ones are reused (`free`).
    slots: Vec<Option<Tracked>>,
    free: Vec<u32>,
    /// Slot by hash of the session id. An id whose hash another tracked id already has is
    /// found by the id itself in `collided` (with 64-bit hashes, in practice never).
    by_hash: FastMap<u64, u32>,
    collided: FastMap<Box<str>, u32>,
    /// [`session_hash`]; tests give every id one hash to exercise `collided`.
    hash_of: fn(&str) -> u64,
    /// (last seen, id), to end idle sessions in order (ties by id, as checkpoints restore).
    idle: BTreeSet<(i64, Arc<str>)>,
    stats: SessionStats,
}

struct Tracked {
    id: Arc<str>,
    session: Session,
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
            slots: Vec::new(),
            free: Vec::new(),
            by_hash: Default::default(),
            collided: Default::default(),
            hash_of: session_hash,
            idle: BTreeSet::new(),
            stats: SessionStats::default(),
        }
    }

    pub fn stats(&self) -> SessionStats {
        self.stats
    }

    /// How many sessions are tracked.
    pub fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
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
        ended: &mut Vec<(Arc<str>, Session)>,
    ) -> Step {
        debug_assert_eq!(hash, (self.hash_of)(id));
        let slot = match self.find(id, hash) {
            Some(slot) => slot,
            None => self.track(id, hash, key, t, ended),
        };
        let tracked = self.slots[slot as usize]
            .as_mut()
            .expect("found slots are tracked");
        let s = &mut tracked.session;
        if t > s.last_seen {
            self.idle.remove(&(s.last_seen, tracked.id.clone()));
            self.idle.insert((t, tracked.id.clone()));
            s.last_seen = t;
        }
        s.first_seen = s.first_seen.min(t);
        s.steps += 1;
        let cost = cost_nanos.unwrap_or(0);
        s.cost_nanos += cost;
        let mut step = Step::default();
        if let (Some(tool), Some(input)) = (tool, input_hash) {
            let n = s.calls.add(call_hash(tool, input));
            if n > 1 {
                s.repeats += 1;
                s.wasted_nanos += cost;
                step.wasted_nanos = cost;
            }
            if n >= self.max_repeats && s.runaway.is_none() {
                s.runaway = Some(
                    format!(
                        "{tool} called {n} times with the same input (max_repeats {})",
                        self.max_repeats
                    )
                    .into(),
                );
                step.became_runaway = true;
            }
        }
        if s.steps > self.max_steps && s.runaway.is_none() {
            s.runaway = Some(format!("{} steps (max_steps {})", s.steps, self.max_steps).into());
            step.became_runaway = true;
        }
        step
    }

    /// Ends the sessions idle for `session_gap` at watermark `wm` (all with `wm = i64::MAX`).
    pub fn end_idle(&mut self, wm: i64, ended: &mut Vec<(Arc<str>, Session)>) {
        while let Some((last, _)) = self.idle.first() {
            if last.saturating_add(self.gap) >= wm {
                break;
            }
            let (_, id) = self.idle.pop_first().expect("first exists");
            self.stats.ended += 1;
            ended.push(self.untrack(&id));
        }
    }

    fn find(&self, id: &str, hash: u64) -> Option<u32> {
        match self.by_hash.get(&hash) {
            Some(&slot) if self.tracked(slot).id.as_ref() == id => Some(slot),
            _ if self.collided.is_empty() => None,
            _ => self.collided.get(id).copied(),
        }
    }

    fn tracked(&self, slot: u32) -> &Tracked {
        self.slots[slot as usize]
            .as_ref()
            .expect("indexed slots are tracked")
    }

    /// Starts tracking session `id` first seen at `t`, ending the one idle longest first
    /// when `max_sessions` are tracked. Returns its slot.
    fn track(
        &mut self,
        id: &str,
        hash: u64,
        key: u32,
        t: i64,
        ended: &mut Vec<(Arc<str>, Session)>,
    ) -> u32 {
        while self.len() >= self.max_sessions {
            let Some((_, oldest)) = self.idle.pop_first() else {
                break;
            };
            self.stats.evicted += 1;
            ended.push(self.untrack(&oldest));
        }
        self.stats.tracked += 1;
        let id: Arc<str> = Arc::from(id);
        self.idle.insert((t, id.clone()));
        self.insert(id, hash, Session::new(key, t))
    }

    fn insert(&mut self, id: Arc<str>, hash: u64, session: Session) -> u32 {
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.slots.push(None);
                (self.slots.len() - 1) as u32
            }
        };
        match self.by_hash.entry(hash) {
            Entry::Vacant(v) => {
                v.insert(slot);
            }
            Entry::Occupied(_) => {
                self.collided.insert(Box::from(&*id), slot);
            }
        }
        self.slots[slot as usize] = Some(Tracked { id, session });
        slot
    }

    /// Stops tracking session `id` (its idle entry is already gone).
    fn untrack(&mut self, id: &str) -> (Arc<str>, Session) {
        let hash = (self.hash_of)(id);
        let slot = self.find(id, hash).expect("idle sessions are tracked");
        let t = self.slots[slot as usize]
            .take()
            .expect("found slots are tracked");
        if self.by_hash.get(&hash) == Some(&slot) {
            self.by_hash.remove(&hash);
        } else {
            self.collided.remove(id);
        }
        self.free.push(slot);
        (t.id, t.session)
    }

    pub fn snapshot(&self) -> SessionsSnapshot {
        let mut live: Vec<(String, Session)> = self
            .slots
            .iter()
            .flatten()
            .map(|t| (t.id.to_string(), t.session.clone()))
            .collect();
        live.sort_by(|a, b| a.0.cmp(&b.0));
        SessionsSnapshot {
            live,
            stats: self.stats,
        }
    }

    pub fn restore(&mut self, s: SessionsSnapshot) {
        self.slots.clear();
        self.free.clear();
        self.by_hash.clear();
        self.collided.clear();
        self.idle.clear();
        for (id, sess) in s.live {
            let hash = (self.hash_of)(&id);
            let id: Arc<str> = Arc::from(id);
            self.idle.insert((sess.last_seen, id.clone()));
            self.insert(id, hash, sess);
        }
        self.stats = s.stats;
    }
}

/// `[loops]`: runaway agent and queue loops, per `session_id`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoopConfig {
    /// A session with more steps than this is runaway.
    pub max_steps: u64,
    /// A session that calls one tool with the same `input_hash` this many times is runaway.
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
        if self.max_repeats < 2 || self.max_steps == 0 || self.max_sessions == 0 {
            return Err(config_err!(
                "loops.max_repeats must be at least 2, loops.max_steps and loops.max_sessions at least 1"
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
        let mut ended = Vec::new();
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
        let (_, a) = &ended[0];
        assert_eq!(
            (a.steps, a.repeats, a.cost_nanos, a.wasted_nanos),
            (5, 3, 25, 19)
        );
        assert!(a.runaway.as_deref().unwrap().contains("max_repeats 3"));
    }

    #[test]
    fn long_healthy_sessions_run_to_max_steps_and_old_ones_are_evicted() {
        let mut s = sessions(2);
        let mut ended = Vec::new();
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
        assert_eq!(&*ended[0].0, "long");
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
        let mut ended = Vec::new();
        for (t, id) in [(1, "x"), (2, "y"), (3, "z"), (200, "y"), (201, "z")] {
            s.observe(id, 7, 0, t, Some("t"), Some(id), Some(1), &mut ended);
        }
        // x ended (its gap passed) while y and z, in the same hash, went on.
        assert_eq!(ended.len(), 0, "sessions end only in end_idle");
        s.end_idle(150, &mut ended);
        let steps: Vec<(&str, u64)> = ended.iter().map(|(id, s)| (&**id, s.steps)).collect();
        assert_eq!(steps, [("x", 1)]);
        s.observe("x", 7, 0, 202, None, None, None, &mut ended);
        s.end_idle(i64::MAX, &mut ended);
        let mut steps: Vec<(&str, u64, u64)> = ended
            .iter()
            .map(|(id, s)| (&**id, s.steps, s.repeats))
            .collect();
        steps.sort();
        assert_eq!(steps, [("x", 1, 0), ("x", 1, 0), ("y", 2, 1), ("z", 2, 1)]);
        assert_eq!(s.len(), 0);
        assert!(s.by_hash.is_empty() && s.collided.is_empty());
    }

    #[test]
    fn many_distinct_calls_count_alike_across_a_checkpoint() {
        let mut s = sessions(10);
        let mut ended = Vec::new();
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
            snap.contains(&format!("\"{}\":2", call_hash("t", "h7"))),
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
        assert_eq!((ended[0].1.steps, ended[0].1.repeats), (41, 21));
    }
}
