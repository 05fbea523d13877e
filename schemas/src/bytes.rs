//! Byte masks of 16-byte blocks: the searches on the hot paths (the decoder's strings, the
//! file reader's partition key) run over spans too short for a library search to repay its
//! setup.

/// A 16-byte block loaded once, to take several masks of.
#[derive(Clone, Copy)]
pub struct Block {
    #[cfg(target_arch = "x86_64")]
    v: std::arch::x86_64::__m128i,
    #[cfg(not(target_arch = "x86_64"))]
    bytes: [u8; 16],
}

impl Block {
    #[cfg(target_arch = "x86_64")]
    #[inline]
    pub fn new(block: &[u8; 16]) -> Self {
        use std::arch::x86_64::_mm_set_epi64x;
        let (lo, hi) = block.split_at(8);
        let word = |b: &[u8]| i64::from_le_bytes(b.try_into().expect("eight bytes"));
        // SAFETY: SSE2 is part of the x86-64 baseline, so every CPU this runs on has it.
        Self {
            v: unsafe { _mm_set_epi64x(word(hi), word(lo)) },
        }
    }

    #[cfg(not(target_arch = "x86_64"))]
    #[inline]
    pub fn new(block: &[u8; 16]) -> Self {
        Self { bytes: *block }
    }

    /// Bit `i` set where byte `i` is one of `needles`: a compare each and one mask with
    /// SSE2, part of the x86-64 baseline.
    #[cfg(target_arch = "x86_64")]
    #[inline]
    pub fn mask<const N: usize>(self, needles: [u8; N]) -> u32 {
        use std::arch::x86_64::{
            _mm_cmpeq_epi8, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8, _mm_setzero_si128,
        };
        // SAFETY: as in `new`; these read only their arguments.
        unsafe {
            let mut hits = _mm_setzero_si128();
            for n in needles {
                hits = _mm_or_si128(hits, _mm_cmpeq_epi8(self.v, _mm_set1_epi8(n as i8)));
            }
            _mm_movemask_epi8(hits) as u32
        }
    }

    #[cfg(not(target_arch = "x86_64"))]
    #[inline]
    pub fn mask<const N: usize>(self, needles: [u8; N]) -> u32 {
        portable_mask(&self.bytes, needles)
    }

    /// Bit `i` set where byte `i` is not ASCII.
    #[cfg(target_arch = "x86_64")]
    #[inline]
    pub fn high(self) -> u32 {
        // SAFETY: as in `new`.
        unsafe { std::arch::x86_64::_mm_movemask_epi8(self.v) as u32 }
    }

    #[cfg(not(target_arch = "x86_64"))]
    #[inline]
    pub fn high(self) -> u32 {
        portable_high(&self.bytes)
    }
}

/// The byte loop [`Block::high`] stands for.
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
#[inline]
fn portable_high(block: &[u8; 16]) -> u32 {
    (0..16).fold(0, |m, i| m | (u32::from(block[i] >= 0x80) << i))
}

/// Bit `i` set where `block[i]` is one of `needles`.
#[inline]
pub fn mask<const N: usize>(block: &[u8; 16], needles: [u8; N]) -> u32 {
    Block::new(block).mask(needles)
}

/// The byte loop [`mask`] stands for: compiled and tested on every target.
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
#[inline]
fn portable_mask<const N: usize>(block: &[u8; 16], needles: [u8; N]) -> u32 {
    (0..16).fold(0, |m, i| m | (u32::from(needles.contains(&block[i])) << i))
}

/// Where the first of `needles` is from `from` on, a block at a time.
#[inline]
pub fn find<const N: usize>(bytes: &[u8], from: usize, needles: [u8; N]) -> Option<usize> {
    let mut i = from;
    while let Some(block) = bytes.get(i..i + 16) {
        let m = mask(block.try_into().expect("sixteen bytes"), needles);
        if m != 0 {
            return Some(i + m.trailing_zeros() as usize);
        }
        i += 16;
    }
    let rest = bytes.get(i..)?;
    rest.iter().position(|c| needles.contains(c)).map(|p| i + p)
}

/// `bytes` appended to `v`. Values are mostly short: up to 16 bytes they are copied in
/// overlapping pieces of fixed size, where `extend_from_slice` calls `memcpy` (the decoder's
/// texts: ten calls an event, 1.3 % of a run).
#[inline]
pub fn append(v: &mut Vec<u8>, bytes: &[u8]) {
    let n = bytes.len();
    if n > 16 {
        v.extend_from_slice(bytes);
        return;
    }
    v.reserve(n);
    let len = v.len();
    // SAFETY: `reserve` made room for `n` bytes past `len`. Every copy reads inside
    // `bytes` and writes inside `len..len + n` (the two pieces of a size overlap, so
    // together they write each of those bytes), and `set_len` then covers just those.
    unsafe {
        let (src, dst) = (bytes.as_ptr(), v.as_mut_ptr().add(len));
        let piece = |size: usize| {
            std::ptr::copy_nonoverlapping(src, dst, size);
            std::ptr::copy_nonoverlapping(src.add(n - size), dst.add(n - size), size);
        };
        match n {
            8.. => piece(8),
            4.. => piece(4),
            1.. => {
                *dst = *src;
                *dst.add(n / 2) = *src.add(n / 2);
                *dst.add(n - 1) = *src.add(n - 1);
            }
            0 => {}
        }
        v.set_len(len + n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_copies_every_length_as_extend_does() {
        let source: Vec<u8> = (0..40u8)
            .map(|b| b.wrapping_mul(37).wrapping_add(1))
            .collect();
        for start in 0..4 {
            for n in 0..=(source.len() - start) {
                let bytes = &source[start..start + n];
                // Onto an empty vector, and onto one with no spare room.
                for prefix in [vec![], vec![9u8; 3]] {
                    let mut ours = prefix.clone();
                    ours.shrink_to_fit();
                    append(&mut ours, bytes);
                    append(&mut ours, bytes);
                    let mut theirs = prefix.clone();
                    theirs.extend_from_slice(bytes);
                    theirs.extend_from_slice(bytes);
                    assert_eq!(ours, theirs, "{start} {n}");
                }
            }
        }
    }

    #[test]
    fn masks_and_finds_agree_with_byte_loops_at_every_position() {
        let (one, two, three) = (*b"\"", *b"\"\\", *b"{[\\");
        // Fill bytes next to and far from the needles, and 0x00 / 0xff.
        for fill in [b'a', b'!', b'#', b'Z', b'|', 0x00, 0xff] {
            for at in 0..16 {
                for also in at..16 {
                    let mut block = [fill; 16];
                    block[at] = b'"';
                    block[also] = if also % 2 == 0 { b'\\' } else { b'[' };
                    assert_eq!(mask(&block, one), portable_mask(&block, one));
                    assert_eq!(mask(&block, two), portable_mask(&block, two));
                    assert_eq!(mask(&block, three), portable_mask(&block, three));
                    let b = Block::new(&block);
                    assert_eq!(b.high(), portable_high(&block));
                    assert_eq!(b.mask(two), portable_mask(&block, two));
                }
            }
        }
        for len in 0..40 {
            for at in 0..len {
                let mut bytes = vec![b'x'; len];
                bytes[at] = b'\\';
                for from in 0..=len + 1 {
                    let want = (from..len).find(|&i| bytes[i] == b'\\');
                    assert_eq!(find(&bytes, from, *b"\"\\"), want, "{len} {at} {from}");
                }
            }
        }
    }
}
