//! Loop safety: per `session_id`, steps, repeated (`tool`, `input_hash`) calls and cost.
//!
//! A session is tracked per source partition (events are keyed `service/model`, so a session
//! that spans models is tracked once per model). It is runaway when it takes more than
//! `max_steps` steps, or calls one tool with the same `input_hash` `max_repeats` times; every
//! call after the first of a (tool, input) is a repeat and its cost is wasted. A session
//! ends when the watermark passes its last event by `session_gap`; it then becomes a row of
//! the `sessions` table. At most `max_sessions` are tracked: past it the one idle longest
//! ends early and is counted as evicted.

use std::collections::BTreeSet;
use std::sync::Arc;

use inferwatch_schemas::hash::Fnv64;
use serde::{Deserialize, Serialize};

use std::time::Duration;

use crate::error::{config_err, ProcessorError};
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
    pub runaway: Option<String>,
    /// Hash of (tool, input_hash) → calls.
    calls: crate::FastMap<u64, u32>,
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

pub struct Sessions {
    max_steps: u64,
    max_repeats: u32,
    gap: i64,
    max_sessions: usize,
    live: crate::FastMap<Arc<str>, Session>,
    /// (last seen, id), to end idle sessions in order.
    idle: BTreeSet<(i64, Arc<str>)>,
    stats: SessionStats,
}

/// Checkpointed form.
#[derive(Serialize, Deserialize)]
pub struct SessionsSnapshot {
    live: Vec<(String, Session)>,
    stats: SessionStats,
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
            live: Default::default(),
            idle: BTreeSet::new(),
            stats: SessionStats::default(),
        }
    }

    pub fn stats(&self) -> SessionStats {
        self.stats
    }

    /// One event of session `id`.
    #[allow(clippy::too_many_arguments)]
    pub fn observe(
        &mut self,
        id: &str,
        key: u32,
        t: i64,
        tool: Option<&str>,
        input_hash: Option<&str>,
        cost_nanos: Option<i64>,
        ended: &mut Vec<(Arc<str>, Session)>,
    ) -> Step {
        if !self.live.contains_key(id) {
            while self.live.len() >= self.max_sessions {
                let Some((_, oldest)) = self.idle.pop_first() else {
                    break;
                };
                if let Some(s) = self.live.remove(&oldest) {
                    self.stats.evicted += 1;
                    ended.push((oldest, s));
                }
            }
            let id: Arc<str> = Arc::from(id);
            self.live.insert(
                id.clone(),
                Session {
                    key,
                    first_seen: t,
                    last_seen: t,
                    steps: 0,
                    repeats: 0,
                    cost_nanos: 0,
                    wasted_nanos: 0,
                    runaway: None,
                    calls: Default::default(),
                },
            );
            self.idle.insert((t, id));
            self.stats.tracked += 1;
        }
        let id = self
            .live
            .get_key_value(id)
            .map(|(k, _)| k.clone())
            .expect("inserted above");
        let s = self.live.get_mut(&id).expect("present");
        if t > s.last_seen {
            self.idle.remove(&(s.last_seen, id.clone()));
            self.idle.insert((t, id.clone()));
            s.last_seen = t;
        }
        s.first_seen = s.first_seen.min(t);
        s.steps += 1;
        let cost = cost_nanos.unwrap_or(0);
        s.cost_nanos += cost;
        let mut step = Step::default();
        if let (Some(tool), Some(input)) = (tool, input_hash) {
            let n = s.calls.entry(call_hash(tool, input)).or_default();
            *n += 1;
            if *n > 1 {
                s.repeats += 1;
                s.wasted_nanos += cost;
                step.wasted_nanos = cost;
            }
            if *n >= self.max_repeats && s.runaway.is_none() {
                s.runaway = Some(format!(
                    "{tool} called {n} times with the same input (max_repeats {})",
                    self.max_repeats
                ));
                step.became_runaway = true;
            }
        }
        if s.steps > self.max_steps && s.runaway.is_none() {
            s.runaway = Some(format!("{} steps (max_steps {})", s.steps, self.max_steps));
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
            if let Some(s) = self.live.remove(&id) {
                self.stats.ended += 1;
                ended.push((id, s));
            }
        }
    }

    pub fn snapshot(&self) -> SessionsSnapshot {
        let mut live: Vec<(String, Session)> = self
            .live
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        live.sort_by(|a, b| a.0.cmp(&b.0));
        SessionsSnapshot {
            live,
            stats: self.stats,
        }
    }

    pub fn restore(&mut self, s: SessionsSnapshot) {
        self.live.clear();
        self.idle.clear();
        for (id, sess) in s.live {
            let id: Arc<str> = Arc::from(id);
            self.idle.insert((sess.last_seen, id.clone()));
            self.live.insert(id, sess);
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
        let a = s.observe("a", 0, 1, Some("search"), Some("h1"), Some(5), &mut ended);
        assert_eq!(a, Step::default());
        let b = s.observe("a", 0, 2, Some("search"), Some("h1"), Some(7), &mut ended);
        assert_eq!((b.wasted_nanos, b.became_runaway), (7, false));
        let other = s.observe("a", 0, 3, Some("search"), Some("h2"), Some(1), &mut ended);
        assert_eq!(other, Step::default());
        let c = s.observe("a", 0, 4, Some("search"), Some("h1"), Some(11), &mut ended);
        assert_eq!((c.wasted_nanos, c.became_runaway), (11, true));
        let d = s.observe("a", 0, 5, Some("search"), Some("h1"), Some(1), &mut ended);
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
            let st = s.observe("long", 0, i, Some("t"), Some(&input), Some(1), &mut ended);
            assert!(!st.became_runaway);
        }
        assert!(
            s.observe("long", 0, 10, None, None, None, &mut ended)
                .became_runaway
        );
        s.observe("b", 0, 20, None, None, None, &mut ended);
        s.observe("c", 0, 30, None, None, None, &mut ended);
        assert_eq!(s.stats().evicted, 1);
        assert_eq!(&*ended[0].0, "long");
        let snap = serde_json::to_string(&s.snapshot()).unwrap();
        let mut back = sessions(2);
        back.restore(serde_json::from_str(&snap).unwrap());
        back.end_idle(i64::MAX, &mut ended);
        assert_eq!(ended.len(), 3);
    }
}
