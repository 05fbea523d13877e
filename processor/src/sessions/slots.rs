//! Tracked sessions by slot, and the order they went idle in: a binary min-heap of
//! (time, slot) by (time, id). An event only moves its session's last-seen time on; the
//! heap catches up when that session reaches the top (its time there is never later than
//! the true one, so the top, once current, is the session idle longest). Sessions leave
//! only from the top, so the heap needs no record of where each one sits. A session costs
//! its slot (96 bytes; slots come in chunks of [`CHUNK`]), 16 bytes of heap, and its calls;
//! an id longer than [`SHORT_ID`] bytes one more allocation.

use super::calls::Calls;

/// Ids up to this long are kept in the slot itself.
const SHORT_ID: usize = 22;

/// A session id: in place when short (most are), else on the heap.
#[derive(Debug, Clone)]
pub(super) enum SessionId {
    Short { len: u8, bytes: [u8; SHORT_ID] },
    Long(Box<str>),
}

impl SessionId {
    pub(super) fn new(id: &str) -> Self {
        if id.len() <= SHORT_ID {
            let mut bytes = [0; SHORT_ID];
            bytes[..id.len()].copy_from_slice(id.as_bytes());
            SessionId::Short {
                len: id.len() as u8,
                bytes,
            }
        } else {
            SessionId::Long(id.into())
        }
    }

    pub(super) fn as_bytes(&self) -> &[u8] {
        match self {
            SessionId::Short { len, bytes } => &bytes[..*len as usize],
            SessionId::Long(s) => s.as_bytes(),
        }
    }

    pub(super) fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).expect("made from a str")
    }

    fn heap_bytes(&self) -> usize {
        match self {
            SessionId::Short { .. } => 0,
            SessionId::Long(s) => s.len(),
        }
    }
}

/// One tracked session.
#[derive(Debug)]
pub(super) struct Live {
    pub(super) id: SessionId,
    pub(super) first_seen: i64,
    /// Changed only by [`Slots::touch`]: its heap time may lag behind.
    last_seen: i64,
    pub(super) cost_nanos: i64,
    pub(super) wasted_nanos: i64,
    pub(super) steps: u32,
    pub(super) repeats: u32,
    pub(super) key: u32,
    pub(super) calls: Calls,
}

impl Live {
    pub(super) fn new(id: &str, key: u32, first_seen: i64, last_seen: i64) -> Self {
        Self {
            id: SessionId::new(id),
            first_seen,
            last_seen,
            cost_nanos: 0,
            wasted_nanos: 0,
            steps: 0,
            repeats: 0,
            key,
            calls: Calls::default(),
        }
    }

    pub(super) fn last_seen(&self) -> i64 {
        self.last_seen
    }
}

/// Slots per chunk: the slots grow a chunk at a time, not by doubling.
const CHUNK: usize = 1024;

#[derive(Default)]
pub(super) struct Slots {
    chunks: Vec<Box<[Option<Live>]>>,
    /// Slots in use or free; past it, the last chunk is unused.
    used: usize,
    free: Vec<u32>,
    /// (last seen when last placed, slot).
    heap: Vec<(i64, u32)>,
}

impl Slots {
    pub(super) fn len(&self) -> usize {
        self.heap.len()
    }

    fn at(&mut self, slot: u32) -> &mut Option<Live> {
        let slot = slot as usize;
        &mut self.chunks[slot / CHUNK][slot % CHUNK]
    }

    pub(super) fn get(&self, slot: u32) -> &Live {
        let slot = slot as usize;
        self.chunks[slot / CHUNK][slot % CHUNK]
            .as_ref()
            .expect("indexed slots are tracked")
    }

    pub(super) fn get_mut(&mut self, slot: u32) -> &mut Live {
        self.at(slot).as_mut().expect("indexed slots are tracked")
    }

    /// Tracks `live`; returns its slot.
    pub(super) fn insert(&mut self, live: Live) -> u32 {
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                if self.used == self.chunks.len() * CHUNK {
                    self.chunks.push((0..CHUNK).map(|_| None).collect());
                }
                self.used += 1;
                (self.used - 1) as u32
            }
        };
        let t = live.last_seen;
        *self.at(slot) = Some(live);
        self.heap.push((t, slot));
        self.sift_up(self.heap.len() - 1, (t, slot));
        slot
    }

    /// The session was seen at `t`, after its last event.
    pub(super) fn touch(&mut self, slot: u32, t: i64) {
        let live = self.get_mut(slot);
        debug_assert!(t > live.last_seen);
        live.last_seen = t;
    }

    /// The session idle longest (ties: the smallest id).
    pub(super) fn oldest(&mut self) -> Option<u32> {
        self.oldest_before(i64::MAX)
    }

    /// The session idle longest, if its last event came before `t`. The heap catches up
    /// only as far as that takes: with every time there at or past `t`, nothing moves.
    pub(super) fn oldest_before(&mut self, t: i64) -> Option<u32> {
        loop {
            let &(at, slot) = self.heap.first()?;
            if at >= t {
                return None;
            }
            let last = self.get(slot).last_seen;
            if last == at {
                return Some(slot);
            }
            self.replace_top((last, slot));
        }
    }

    /// Stops tracking the session at the top of the heap, which [`Self::oldest_before`]
    /// returned as `slot`.
    pub(super) fn remove_oldest(&mut self, slot: u32) -> Live {
        debug_assert_eq!(self.heap.first().map(|e| e.1), Some(slot));
        let last = self.heap.pop().expect("the oldest is tracked");
        if !self.heap.is_empty() {
            self.replace_top(last);
        }
        self.free.push(slot);
        self.at(slot).take().expect("indexed slots are tracked")
    }

    /// Each tracked session with its slot.
    pub(super) fn iter(&self) -> impl Iterator<Item = (u32, &Live)> {
        self.chunks
            .iter()
            .flat_map(|c| c.iter())
            .enumerate()
            .filter_map(|(i, l)| l.as_ref().map(|l| (i as u32, l)))
    }

    /// Stops tracking every session; hands out each with its slot, in slot order.
    pub(super) fn drain(&mut self) -> impl Iterator<Item = (u32, Live)> + '_ {
        self.free.clear();
        self.heap.clear();
        self.used = 0;
        std::mem::take(&mut self.chunks)
            .into_iter()
            .flat_map(|c| c.into_vec())
            .enumerate()
            .filter_map(|(i, l)| l.map(|l| (i as u32, l)))
    }

    pub(super) fn clear(&mut self) {
        self.chunks.clear();
        self.used = 0;
        self.free.clear();
        self.heap.clear();
    }

    /// Heap bytes.
    pub(super) fn size(&self) -> usize {
        let own = self.chunks.len() * CHUNK * std::mem::size_of::<Option<Live>>()
            + self.free.capacity() * 4
            + self.heap.capacity() * std::mem::size_of::<(i64, u32)>();
        let each: usize = self
            .iter()
            .map(|(_, l)| l.calls.size() + l.id.heap_bytes())
            .sum();
        own + each
    }

    /// Whether heap entry `a` comes before `b`: by time, then id (ids of tracked sessions
    /// differ, so the order is total and the heap's shape cannot change which ends first).
    fn before(&self, a: (i64, u32), b: (i64, u32)) -> bool {
        a.0 < b.0 || (a.0 == b.0 && self.get(a.1).id.as_bytes() < self.get(b.1).id.as_bytes())
    }

    /// Moves `entry`, at the end of the heap as place `pos`, up to where it belongs.
    fn sift_up(&mut self, mut pos: usize, entry: (i64, u32)) {
        while pos > 0 {
            let parent = (pos - 1) / 2;
            if !self.before(entry, self.heap[parent]) {
                break;
            }
            self.heap[pos] = self.heap[parent];
            pos = parent;
        }
        self.heap[pos] = entry;
    }

    /// Puts `entry` in the top's place. It belongs near the bottom (a later time than the
    /// top's, or the heap's last leaf): the hole goes down the smaller children to a leaf,
    /// one comparison a level, and `entry` moves up from there the little it has to.
    fn replace_top(&mut self, entry: (i64, u32)) {
        let n = self.heap.len();
        let mut hole = 0;
        loop {
            let left = 2 * hole + 1;
            if left >= n {
                break;
            }
            let right = left + 1;
            let child = if right < n && self.before(self.heap[right], self.heap[left]) {
                right
            } else {
                left
            };
            self.heap[hole] = self.heap[child];
            hole = child;
        }
        self.sift_up(hole, entry);
    }
}
