//! Tracked sessions by slot, and the order they went idle in: a binary min-heap of
//! (time, slot) by (time, id), each slot knowing its place in it. An event only moves its
//! session's last-seen time on; the heap catches up when that session reaches the top
//! (its time there is never later than the true one, so the top, once current, is the
//! session idle longest). A session costs its slot (96 bytes; slots come in chunks of
//! [`CHUNK`]), 16 bytes of heap, and its calls; an id longer than [`SHORT_ID`] bytes one
//! more allocation.

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
    /// Its place in the heap.
    pos: u32,
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
            pos: 0,
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
    pub(super) fn insert(&mut self, mut live: Live) -> u32 {
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
        live.pos = self.heap.len() as u32;
        let t = live.last_seen;
        *self.at(slot) = Some(live);
        self.heap.push((t, slot));
        self.sift_up(self.heap.len() - 1);
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
            self.heap[0].0 = last;
            self.sift_down(0);
        }
    }

    /// Stops tracking the session in `slot`.
    pub(super) fn remove(&mut self, slot: u32) -> Live {
        let pos = self.get(slot).pos as usize;
        let last = self.heap.len() - 1;
        self.heap.swap(pos, last);
        self.heap.pop();
        if pos < last {
            self.set_pos(pos);
            self.sift_down(pos);
            self.sift_up(pos);
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

    /// Whether heap place `a` comes before `b`: by time, then id.
    fn before(&self, a: usize, b: usize) -> bool {
        let ((ta, sa), (tb, sb)) = (self.heap[a], self.heap[b]);
        ta < tb || (ta == tb && self.get(sa).id.as_bytes() < self.get(sb).id.as_bytes())
    }

    fn set_pos(&mut self, pos: usize) {
        let slot = self.heap[pos].1;
        self.get_mut(slot).pos = pos as u32;
    }

    fn sift_up(&mut self, mut pos: usize) {
        while pos > 0 {
            let parent = (pos - 1) / 2;
            if !self.before(pos, parent) {
                break;
            }
            self.heap.swap(pos, parent);
            self.set_pos(pos);
            pos = parent;
        }
        self.set_pos(pos);
    }

    fn sift_down(&mut self, mut pos: usize) {
        let n = self.heap.len();
        loop {
            let (l, r) = (2 * pos + 1, 2 * pos + 2);
            let mut first = pos;
            if l < n && self.before(l, first) {
                first = l;
            }
            if r < n && self.before(r, first) {
                first = r;
            }
            if first == pos {
                break;
            }
            self.heap.swap(pos, first);
            self.set_pos(pos);
            pos = first;
        }
        self.set_pos(pos);
    }
}
