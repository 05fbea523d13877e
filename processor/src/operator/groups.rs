//! The open (pane, key) groups of a partition. Every group has an index into one arena of
//! built-in states, and the custom metrics' groups accumulators use the same indices, so a
//! micro-batch updates each aggregate function in one call with the group of every row.

use std::collections::BTreeMap;

use crate::metrics::CoreState;
use crate::spill::Spill;

/// Fewer values in memory than this are not worth a run of their own: what stays in memory
/// past the budget is at most this many values (8 KiB) per open (pane × key).
const MIN_SPILL: usize = 1024;

#[derive(Default)]
pub(super) struct Groups {
    /// Pane start → key → group.
    panes: BTreeMap<i64, crate::FastMap<u32, usize>>,
    /// Group → built-in state; freed groups hold a default state until reused.
    states: Vec<CoreState>,
    free: Vec<usize>,
    /// By key id, the pane of its last lookup and that group: a key's events mostly fall
    /// in one pane at a time, so most lookups skip both maps. `i64::MIN`: none (no pane
    /// starts there: event times are bounded below by `MIN_EVENT_MS`).
    recent: Vec<(i64, usize)>,
}

impl Groups {
    /// The group of (pane, key), created on first use.
    pub(super) fn group(&mut self, pane: i64, key: u32) -> usize {
        let k = key as usize;
        match self.recent.get(k) {
            Some(&(p, g)) if p == pane => return g,
            Some(_) => {}
            None => self.recent.resize(k + 1, (i64::MIN, 0)),
        }
        let keys = self.panes.entry(pane).or_default();
        let g = match keys.get(&key) {
            Some(&g) => g,
            None => {
                let g = match self.free.pop() {
                    Some(g) => g,
                    None => {
                        self.states.push(CoreState::default());
                        self.states.len() - 1
                    }
                };
                keys.insert(key, g);
                g
            }
        };
        self.recent[k] = (pane, g);
        g
    }

    pub(super) fn get_mut(&mut self, pane: i64, key: u32) -> Option<&mut CoreState> {
        let g = *self.panes.get(&pane)?.get(&key)?;
        Some(&mut self.states[g])
    }

    pub(super) fn state(&self, group: usize) -> &CoreState {
        &self.states[group]
    }

    pub(super) fn state_mut(&mut self, group: usize) -> &mut CoreState {
        &mut self.states[group]
    }

    /// Every group's state, by group index.
    pub(super) fn states_mut(&mut self) -> &mut [CoreState] {
        &mut self.states
    }

    /// Panes with open groups.
    pub(super) fn open_panes(&self) -> usize {
        self.panes.len()
    }

    /// Bytes of every state (free ones too: they keep their allocations until reused) and
    /// of the index to them.
    pub(super) fn state_bytes(&self) -> usize {
        let index: usize = self
            .panes
            .values()
            .map(|keys| keys.capacity() * (size_of::<(u32, usize)>() + 1))
            .sum();
        let recent = self.recent.capacity() * size_of::<(i64, usize)>();
        self.states.iter().map(CoreState::size).sum::<usize>() + index + recent
    }

    /// Bytes the `sessions` sets of the groups hold in memory.
    pub(super) fn sessions_bytes(&self) -> usize {
        self.states.iter().map(|s| s.sessions_in_memory().1).sum()
    }

    /// Moves the `sessions` values the open groups hold in memory to spill files, one new
    /// file per pane (it goes when the pane's groups do); returns the bytes written.
    pub(super) fn spill_sessions(&mut self, spill: &Spill) -> std::io::Result<usize> {
        let mut written = 0;
        for keys in self.panes.values() {
            let mut file = None;
            for &g in keys.values() {
                let state = &mut self.states[g];
                if state.sessions_in_memory().0 < MIN_SPILL {
                    continue;
                }
                let f = match &file {
                    Some(f) => f,
                    None => file.insert(spill.create()?),
                };
                written += state.spill_sessions(f)?;
            }
        }
        Ok(written)
    }

    /// Number of group indices in use or free: the `total_num_groups` of accumulators.
    pub(super) fn capacity(&self) -> usize {
        self.states.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.panes.is_empty()
    }

    /// Starts of the open panes in `range`, in time order.
    pub(super) fn pane_starts(
        &self,
        range: impl std::ops::RangeBounds<i64>,
    ) -> impl Iterator<Item = i64> + '_ {
        self.panes.range(range).map(|(p, _)| *p)
    }

    pub(super) fn last_pane(&self) -> Option<i64> {
        self.panes.keys().next_back().copied()
    }

    /// (pane, key, group) of every group of the panes in `range`, panes in time order.
    pub(super) fn in_panes(
        &self,
        range: impl std::ops::RangeBounds<i64>,
    ) -> impl Iterator<Item = (i64, u32, usize)> + '_ {
        self.panes
            .range(range)
            .flat_map(|(p, keys)| keys.iter().map(move |(k, g)| (*p, *k, *g)))
    }

    /// Closes the panes at or before `through`: their groups are freed for reuse.
    pub(super) fn drop_through(&mut self, through: i64) {
        let kept = self.panes.split_off(&(through + 1));
        for keys in std::mem::replace(&mut self.panes, kept).into_values() {
            for g in keys.into_values() {
                self.states[g] = CoreState::default();
                self.free.push(g);
            }
        }
        self.recent.clear();
    }

    /// Group indices of every open group, ascending.
    pub(super) fn live(&self) -> Vec<usize> {
        let mut live: Vec<usize> = self
            .panes
            .values()
            .flat_map(|k| k.values().copied())
            .collect();
        live.sort_unstable();
        live
    }
}
