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

/// Calls by hash of (tool, input_hash), one word each (hash and count packed). Most
/// sessions make one or two distinct calls: those stay in place (0 marks a free place, as a
/// packed call counts at least 1), where a vector cost an allocation and a free per session
/// (a third of the sessions' instructions). More go to a vector; a session with many
/// distinct calls gets a map.
#[derive(Debug, Clone)]
pub(super) enum Calls {
    Two([u64; 2]),
    Few(Vec<u64>),
    Many(Box<FastMap<u64, u32>>),
}

/// Past this many distinct calls a session's calls go to a map.
const FEW_CALLS: usize = 16;

impl Default for Calls {
    fn default() -> Self {
        Calls::Two([0; 2])
    }
}

/// The part of a call hash that is kept.
fn key(h: u64) -> u64 {
    h & !COUNT_MASK
}

/// One more of the packed call `c`, saturating: its count now.
fn bump(c: &mut u64) -> u32 {
    if *c & COUNT_MASK < COUNT_MASK {
        *c += 1;
    }
    (*c & COUNT_MASK) as u32
}

impl Calls {
    /// One more call with hash `h`: how many there were of it, this one included (at most
    /// [`MAX_COUNT`]).
    pub(super) fn add(&mut self, h: u64) -> u32 {
        let h = key(h);
        match self {
            Calls::Two(two) => {
                for c in two.iter_mut() {
                    if *c == 0 {
                        *c = h | 1;
                        return 1;
                    }
                    if key(*c) == h {
                        return bump(c);
                    }
                }
                let mut v = Vec::with_capacity(4);
                v.extend_from_slice(two);
                v.push(h | 1);
                *self = Calls::Few(v);
                1
            }
            Calls::Few(v) => {
                if let Some(c) = v.iter_mut().find(|c| key(**c) == h) {
                    return bump(c);
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
                // Doubling (4, 8, 16): each grow is a copy, and sessions of up to 8 calls
                // are as common as shorter ones.
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
        let unpack = |&c: &u64| (key(c), (c & COUNT_MASK) as u32);
        match self {
            Calls::Two(two) => Box::new(two.iter().filter(|&&c| c != 0).map(unpack)),
            Calls::Few(v) => Box::new(v.iter().map(unpack)),
            Calls::Many(m) => Box::new(m.iter().map(|(&h, &n)| (h, n))),
        }
    }

    /// Heap bytes.
    pub(super) fn size(&self) -> usize {
        match self {
            Calls::Two(_) => 0,
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
        if merged.len() > FEW_CALLS {
            return Ok(Calls::Many(Box::new(merged)));
        }
        let mut v: Vec<u64> = merged
            .into_iter()
            .map(|(h, n)| h | u64::from(n.max(1)))
            .collect();
        v.sort_unstable();
        if v.len() <= 2 {
            v.resize(2, 0);
            Ok(Calls::Two([v[0], v[1]]))
        } else {
            v.shrink_to_fit();
            Ok(Calls::Few(v))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_match_a_map_in_place_in_a_vector_in_a_map_and_after_a_checkpoint() {
        // In place it must not grow a session's slot.
        assert_eq!(size_of::<Calls>(), size_of::<Vec<u64>>());
        for distinct in [1, 2, 3, FEW_CALLS, FEW_CALLS + 5] {
            let (mut calls, mut model) = (Calls::default(), FastMap::<u64, u32>::default());
            // Hash 0 too: a packed call is never 0, so it is not taken for a free place.
            let hashes: Vec<u64> = (0..distinct as u64).map(|i| i << 20).collect();
            for round in 0..3 {
                for (i, &h) in hashes.iter().enumerate().skip(round) {
                    let n = model.entry(h).or_default();
                    *n += 1;
                    assert_eq!(calls.add(h | i as u64), *n, "{distinct} calls, {i}");
                }
            }
            let mut got: Vec<(u64, u32)> = calls.iter().collect();
            got.sort_unstable();
            let mut want: Vec<(u64, u32)> = model.into_iter().collect();
            want.sort_unstable();
            assert_eq!(got, want);
            let json = serde_json::to_string(&calls).unwrap();
            let mut back: Calls = serde_json::from_str(&json).unwrap();
            let mut again: Vec<(u64, u32)> = back.iter().collect();
            again.sort_unstable();
            assert_eq!(again, want);
            let last = hashes[distinct - 1];
            let n = want.iter().find(|w| w.0 == last).unwrap().1;
            assert_eq!(back.add(last), n + 1, "{distinct} calls after a checkpoint");
        }
    }
}
