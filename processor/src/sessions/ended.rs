//! Sessions that ended, waiting to become `sessions` rows. Ids share one buffer and each
//! session is a plain row beside them, so ending a session allocates nothing and the rows
//! are put in order by sorting small keys, not the rows themselves.

use super::Session;

#[derive(Debug, Default)]
pub struct Ended {
    /// Every id, one after another; id `i` ends at `ends[i]`.
    ids: String,
    ends: Vec<usize>,
    sessions: Vec<Session>,
}

impl Ended {
    pub fn push(&mut self, id: &str, session: Session) {
        self.ids.push_str(id);
        self.ends.push(self.ids.len());
        self.sessions.push(session);
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// The `i`th session to end, with its id.
    #[inline]
    pub fn get(&self, i: usize) -> (&str, &Session) {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        (&self.ids[start..self.ends[i]], &self.sessions[i])
    }

    /// The sessions in the order they ended, with their ids.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &Session)> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }

    /// Indices of the sessions by (first seen, id), ties in the order they ended: the order
    /// of `sessions` rows.
    pub fn order(&self) -> Vec<u32> {
        // First by first seen alone (a pair of integers sorts fast), then each run of equal
        // times, which is short, by id.
        let mut by_time: Vec<(i64, u32)> = self
            .sessions
            .iter()
            .enumerate()
            .map(|(i, s)| (s.first_seen, i as u32))
            .collect();
        by_time.sort_unstable();
        let mut order: Vec<u32> = by_time.iter().map(|&(_, i)| i).collect();
        let mut start = 0;
        while start < by_time.len() {
            let t = by_time[start].0;
            let end = start + by_time[start..].partition_point(|&(u, _)| u == t);
            if end - start > 1 {
                order[start..end].sort_unstable_by(|&a, &b| (self.id(a), a).cmp(&(self.id(b), b)));
            }
            start = end;
        }
        order
    }

    fn id(&self, i: u32) -> &str {
        self.get(i as usize).0
    }

    pub fn clear(&mut self) {
        self.ids.clear();
        self.ends.clear();
        self.sessions.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sessions::calls::Calls;

    fn session(first_seen: i64, steps: u64) -> Session {
        Session {
            key: 0,
            first_seen,
            last_seen: first_seen,
            steps,
            repeats: 0,
            cost_nanos: 0,
            wasted_nanos: 0,
            runaway: None,
            calls: Calls::default(),
        }
    }

    #[test]
    fn order_is_a_stable_sort_by_first_seen_then_id() {
        let mut ended = Ended::default();
        let mut next = crate::test_rng(0x9e37_79b9_7f4a_7c15);
        // Few times and few ids: long runs of ties, and equal (time, id) pairs that only
        // the order they ended in tells apart (their steps differ).
        for steps in 0..5_000 {
            let id = match next(3) {
                0 => String::new(),
                1 => format!("s{}", next(20)),
                _ => format!("a-longer-id-{}", next(5)),
            };
            ended.push(&id, session(next(40) as i64 - 20, steps));
        }
        let mut expected: Vec<(String, u64)> = ended
            .iter()
            .map(|(id, s)| (id.to_string(), s.steps))
            .collect();
        expected.sort_by(|a, b| {
            let (sa, sb) = (ended.get(a.1 as usize).1, ended.get(b.1 as usize).1);
            (sa.first_seen, &a.0).cmp(&(sb.first_seen, &b.0))
        });
        let got: Vec<(String, u64)> = ended
            .order()
            .into_iter()
            .map(|i| {
                let (id, s) = ended.get(i as usize);
                (id.to_string(), s.steps)
            })
            .collect();
        assert_eq!(got, expected);
        ended.clear();
        assert!(ended.is_empty() && ended.order().is_empty());
    }
}
