//! A session's calls, counted by hash of (tool, input_hash).

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::FastMap;

/// The low bits of a packed call: its count. A call hash keeps its upper 48 bits (two
/// distinct calls of one session collide with odds of about 2^-48 per pair).
const COUNT_BITS: u32 = 16;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;

/// The most a call is counted: `loops.max_repeats` is at most this, so a saturated count
/// has already flagged its session.
pub(super) const MAX_COUNT: u32 = COUNT_MASK as u32;

/// Calls by hash of (tool, input_hash). Most sessions make a few: one word each (hash and
/// count packed), in a vector grown two at a time; a session with many distinct calls gets
/// a map.
#[derive(Debug, Clone)]
pub(super) enum Calls {
    Few(Vec<u64>),
    Many(Box<FastMap<u64, u32>>),
}

/// Past this many distinct calls a session's calls go to a map.
const FEW_CALLS: usize = 16;

impl Default for Calls {
    fn default() -> Self {
        Calls::Few(Vec::new())
    }
}

/// The part of a call hash that is kept.
fn key(h: u64) -> u64 {
    h & !COUNT_MASK
}

impl Calls {
    /// One more call with hash `h`: how many there were of it, this one included (at most
    /// [`MAX_COUNT`]).
    pub(super) fn add(&mut self, h: u64) -> u32 {
        let h = key(h);
        match self {
            Calls::Few(v) => {
                if let Some(c) = v.iter_mut().find(|c| key(**c) == h) {
                    if *c & COUNT_MASK < COUNT_MASK {
                        *c += 1;
                    }
                    return (*c & COUNT_MASK) as u32;
                }
                if v.len() == FEW_CALLS {
                    let mut map: FastMap<u64, u32> = v
                        .iter()
                        .map(|&c| (key(c), (c & COUNT_MASK) as u32))
                        .collect();
                    map.insert(h, 1);
                    *self = Calls::Many(Box::new(map));
                    return 1;
                }
                if v.len() == v.capacity() {
                    v.reserve_exact(2);
                }
                v.push(h | 1);
                1
            }
            Calls::Many(m) => {
                let n = m.entry(h).or_default();
                *n = (*n + 1).min(MAX_COUNT);
                *n
            }
        }
    }

    /// (hash, count) of each distinct call.
    fn iter(&self) -> Box<dyn Iterator<Item = (u64, u32)> + '_> {
        match self {
            Calls::Few(v) => Box::new(v.iter().map(|&c| (key(c), (c & COUNT_MASK) as u32))),
            Calls::Many(m) => Box::new(m.iter().map(|(&h, &n)| (h, n))),
        }
    }

    /// Heap bytes.
    pub(super) fn size(&self) -> usize {
        match self {
            Calls::Few(v) => v.capacity() * 8,
            Calls::Many(m) => m.capacity() * 13 + 64,
        }
    }
}

// Checkpoints hold a map of hash to calls (the form of older checkpoints too, whose full
// 64-bit hashes lose their low bits on restore).
impl Serialize for Calls {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for Calls {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let map = FastMap::<u64, u32>::deserialize(d)?;
        let mut merged: FastMap<u64, u32> = FastMap::default();
        for (h, n) in map {
            let c = merged.entry(key(h)).or_default();
            *c = (*c + n).min(MAX_COUNT);
        }
        if merged.len() <= FEW_CALLS {
            let mut v: Vec<u64> = merged
                .into_iter()
                .map(|(h, n)| h | u64::from(n.max(1)))
                .collect();
            v.sort_unstable();
            v.shrink_to_fit();
            Ok(Calls::Few(v))
        } else {
            Ok(Calls::Many(Box::new(merged)))
        }
    }
}
