//! `Sessions` against a plain model of its rules (a map of sessions, the idle one found by
//! a scan) on random events: the same steps, the same sessions ended, in the same order.

use std::collections::HashMap;
use std::time::Duration;

use super::*;

fn h(id: &str) -> u64 {
    session_hash(id)
}

#[derive(Debug, Clone, Default)]
struct Model {
    first: i64,
    last: i64,
    steps: u64,
    repeats: u64,
    cost: i64,
    wasted: i64,
    runaway: bool,
    calls: HashMap<u64, u32>,
}

struct Reference {
    c: LoopConfig,
    live: HashMap<String, Model>,
    ended: Vec<(String, Model)>,
}

impl Reference {
    fn pop_oldest(&mut self) -> Option<(String, Model)> {
        let id = self
            .live
            .iter()
            .min_by(|a, b| (a.1.last, a.0).cmp(&(b.1.last, b.0)))?
            .0
            .clone();
        let m = self.live.remove(&id)?;
        Some((id, m))
    }

    fn observe(&mut self, id: &str, t: i64, call: Option<(&str, &str)>, cost: i64) -> Step {
        if !self.live.contains_key(id) {
            while self.live.len() >= self.c.max_sessions {
                let e = self.pop_oldest().expect("full");
                self.ended.push(e);
            }
            let m = Model {
                first: t,
                last: t,
                ..Model::default()
            };
            self.live.insert(id.to_string(), m);
        }
        let (max_steps, max_repeats) = (self.c.max_steps, self.c.max_repeats);
        let s = self.live.get_mut(id).expect("tracked");
        s.first = s.first.min(t);
        s.last = s.last.max(t);
        s.steps += 1;
        s.cost += cost;
        let mut step = Step::default();
        if let Some((tool, input)) = call {
            let n = s.calls.entry(call_hash(tool, input) >> 16).or_default();
            *n += 1;
            if *n > 1 {
                s.repeats += 1;
                s.wasted += cost;
                step.wasted_nanos = cost;
            }
            if *n >= max_repeats && !s.runaway {
                s.runaway = true;
                step.became_runaway = true;
            }
        }
        if s.steps > max_steps && !s.runaway {
            s.runaway = true;
            step.became_runaway = true;
        }
        step
    }

    fn end_idle(&mut self, wm: i64) {
        let gap = self.c.session_gap.as_millis() as i64;
        while let Some((_, m)) = self
            .live
            .iter()
            .min_by(|a, b| (a.1.last, a.0).cmp(&(b.1.last, b.0)))
        {
            if m.last.saturating_add(gap) >= wm {
                break;
            }
            let e = self.pop_oldest().expect("exists");
            self.ended.push(e);
        }
    }
}

/// The sessions of `ended` from the `from`th on.
fn owned(ended: &Ended, from: usize) -> Vec<(String, Session)> {
    ended
        .iter()
        .skip(from)
        .map(|(id, s)| (id.to_string(), s.clone()))
        .collect()
}

fn same(ours: &[(String, Session)], model: &[(String, Model)]) {
    assert_eq!(ours.len(), model.len());
    for ((id, s), (mid, m)) in ours.iter().zip(model) {
        assert_eq!(id, mid);
        let got = (s.first_seen, s.last_seen, s.steps, s.repeats);
        assert_eq!(got, (m.first, m.last, m.steps, m.repeats), "{id}");
        assert_eq!((s.cost_nanos, s.wasted_nanos), (m.cost, m.wasted), "{id}");
        assert_eq!(s.runaway.is_some(), m.runaway, "{id}");
    }
}

#[test]
fn sessions_follow_the_model_through_evictions_gaps_and_checkpoints() {
    let c = LoopConfig {
        max_steps: 12,
        max_repeats: 3,
        session_gap: Duration::from_millis(40),
        max_sessions: 25,
    };
    let mut next = crate::test_rng(0x2545_f491_4f6c_dd1d);
    let mut ours = Sessions::new(&c);
    let mut model = Reference {
        c: c.clone(),
        live: HashMap::new(),
        ended: Vec::new(),
    };
    let mut ended = Ended::default();
    let mut t = 0;
    let mut checked = 0;
    for i in 0..60_000 {
        // Time mostly moves on, sometimes steps back (out-of-order events), and pauses
        // now and then: every session then ends past its gap.
        t = (t + next(4) as i64 - 1).max(0);
        if i % 1000 == 999 {
            t += 100;
        }
        // A moving population of about 30 sessions; long ids go to the heap.
        let n = i / 100 + next(30);
        let id = match n % 10 {
            0 => format!("a-long-session-identifier-{n}"),
            _ => format!("s{n}"),
        };
        let input = format!("{}", next(6));
        let call = (next(4) > 0).then_some(("tool", input.as_str()));
        let cost = next(100) as i64;
        let (tool, input) = (call.map(|c| c.0), call.map(|c| c.1));
        let a = ours.observe(&id, h(&id), 0, t, tool, input, Some(cost), &mut ended);
        let b = model.observe(&id, t, call, cost);
        assert_eq!(a, b, "event {i} of {id}");
        if next(20) == 0 {
            ours.end_idle(t - 5, &mut ended);
            model.end_idle(t - 5);
        }
        if i % 10_000 == 9_999 {
            // A checkpoint round trip keeps every session and the order they end in.
            let snap = serde_json::to_string(&ours.snapshot()).unwrap();
            ours = Sessions::new(&c);
            ours.restore(serde_json::from_str(&snap).unwrap());
        }
        assert_eq!(ended.len(), model.ended.len(), "event {i}");
        same(&owned(&ended, checked), &model.ended[checked..]);
        checked = ended.len();
    }
    // The end of the input ends every session at once, in no particular order.
    ours.end_idle(i64::MAX, &mut ended);
    model.end_idle(i64::MAX);
    let mut ours_ended = owned(&ended, 0);
    ours_ended[checked..].sort_by(|a, b| a.0.cmp(&b.0));
    model.ended[checked..].sort_by(|a, b| a.0.cmp(&b.0));
    same(&ours_ended, &model.ended);
    let stats = ours.stats();
    assert!(stats.evicted > 5000 && stats.ended > 500, "{stats:?}");
    assert!(ours.is_empty() && ours.by_hash.is_empty() && ours.runaway.is_empty());
}

#[test]
fn a_tracked_session_with_four_calls_costs_under_190_bytes() {
    let mut s = Sessions::new(&LoopConfig::default());
    let mut ended = Ended::default();
    for i in 0..20_000 {
        let id = format!("sess-{i:x}-{}", i % 7);
        for c in 0..4 {
            let input = format!("{c:016x}");
            s.observe(
                &id,
                h(&id),
                0,
                i,
                Some("search"),
                Some(&input),
                None,
                &mut ended,
            );
        }
    }
    assert_eq!(s.len(), 20_000);
    let each = s.size() / s.len();
    assert!(each < 190, "{each} bytes per session, {} in all", s.size());
}
