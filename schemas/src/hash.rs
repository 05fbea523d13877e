//! FNV-1a, the one stable hash: the same in every run, build and Rust release (std's
//! `Hasher`s promise none of that), so it may name files, sit in checkpoints and pick
//! partitions.

const OFFSET_64: u64 = 0xcbf2_9ce4_8422_2325;
const PRIME_64: u64 = 0x0000_0100_0000_01b3;
const OFFSET_128: u128 = 0x6c62272e07bb014262b821756295c58d;
const PRIME_128: u128 = 0x0000000001000000000000000000013B;

/// 64-bit FNV-1a, fed piece by piece.
#[derive(Debug, Clone, Copy)]
pub struct Fnv64(u64);

impl Default for Fnv64 {
    fn default() -> Self {
        Self(OFFSET_64)
    }
}

// Inline across crates (no LTO): the file reader and the operator hash a name per event.
impl Fnv64 {
    #[inline]
    pub fn write(&mut self, bytes: &[u8]) -> &mut Self {
        for b in bytes {
            self.0 = (self.0 ^ *b as u64).wrapping_mul(PRIME_64);
        }
        self
    }

    #[inline]
    pub fn finish(&self) -> u64 {
        self.0
    }
}

/// 64-bit FNV-1a of `bytes`.
#[inline]
pub fn fnv64(bytes: &[u8]) -> u64 {
    Fnv64::default().write(bytes).finish()
}

/// 128-bit FNV-1a of `parts`, each followed by the separator 0x1f.
pub fn fnv128_parts(parts: &[&str]) -> u128 {
    let mut h = OFFSET_128;
    for p in parts {
        for b in p.bytes().chain(std::iter::once(0x1f)) {
            h = (h ^ b as u128).wrapping_mul(PRIME_128);
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_published_test_vectors() {
        // From the FNV reference (draft-eastlake-fnv): "" and "a" and "foobar".
        assert_eq!(fnv64(b""), 0xcbf29ce484222325);
        assert_eq!(fnv64(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv64(b"foobar"), 0x85944171f73967e8);
        let mut pieces = Fnv64::default();
        pieces.write(b"foo").write(b"bar");
        assert_eq!(pieces.finish(), fnv64(b"foobar"));
    }
}
