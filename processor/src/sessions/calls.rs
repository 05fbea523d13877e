//! A session's calls, counted by hash of (tool, input_hash).

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::FastMap;

/// Calls by hash of (tool, input_hash). Most sessions make a few: a short vector, grown one
/// slot at a time at first, costs a fraction of a hash map's smallest table; a session with
/// many distinct calls gets a map.
#[derive(Debug, Clone)]
pub(super) enum Calls {
    Few(Vec<(u64, u32)>),
    Many(Box<FastMap<u64, u32>>),
}

/// Past this many distinct calls a session's calls go to a map.
const FEW_CALLS: usize = 16;

impl Default for Calls {
    fn default() -> Self {
        Calls::Few(Vec::new())
    }
}

impl Calls {
    /// One more call with hash `h`: how many there were of it, this one included.
    pub(super) fn add(&mut self, h: u64) -> u32 {
        match self {
            Calls::Few(v) => {
                if let Some((_, n)) = v.iter_mut().find(|(k, _)| *k == h) {
                    *n += 1;
                    return *n;
                }
                if v.len() == FEW_CALLS {
                    let mut map: FastMap<u64, u32> = v.iter().copied().collect();
                    map.insert(h, 1);
                    *self = Calls::Many(Box::new(map));
                    return 1;
                }
                if v.len() == v.capacity() {
                    v.reserve_exact(v.len().max(1));
                }
                v.push((h, 1));
                1
            }
            Calls::Many(m) => {
                let n = m.entry(h).or_default();
                *n += 1;
                *n
            }
        }
    }

    fn iter(&self) -> Box<dyn Iterator<Item = (u64, u32)> + '_> {
        match self {
            Calls::Few(v) => Box::new(v.iter().copied()),
            Calls::Many(m) => Box::new(m.iter().map(|(&h, &n)| (h, n))),
        }
    }
}

// Checkpoints hold a map of hash to calls (the form of older checkpoints too).
impl Serialize for Calls {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for Calls {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let map = FastMap::<u64, u32>::deserialize(d)?;
        if map.len() <= FEW_CALLS {
            let mut v: Vec<(u64, u32)> = map.into_iter().collect();
            v.shrink_to_fit();
            Ok(Calls::Few(v))
        } else {
            Ok(Calls::Many(Box::new(map)))
        }
    }
}
