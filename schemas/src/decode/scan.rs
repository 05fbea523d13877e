//! A one-pass reader for the common event payload, exact wherever it answers.
//!
//! serde_json is general and pays for it per field and per byte. Most payloads are plain: an
//! object of known fields, strings without escapes, short numbers. This reader takes those
//! and hands over each field as serde_json reads it, bit for bit, to a [`Fields`] target:
//! the batch's columns (`row`), or in tests the struct serde_json builds, to compare them.
//! Anything it is not sure of
//! (an escape or a control character anywhere, a duplicate field, a negative number, a
//! number serde_json would compute another way, a nested value under an unknown field, any
//! syntax error) makes it answer false: the payload then goes to serde_json, which decides
//! and names the error. So it can only be slower than serde_json, never different.

use std::borrow::Cow;

use super::wire::{Attributes, Flags, Text, WireTime};

/// Reads `text` as one event object into `out`, each field as it comes; false when
/// serde_json must decide (`out` then holds a part of the payload, to be dropped).
pub(super) fn scan<'a, F: Fields<'a>>(text: &'a str, out: &mut F, order: &mut KeyOrder) -> bool {
    // Escapes and control characters are rare: a payload with any goes to serde_json, so
    // that strings below need only look for their closing quote.
    if !plain(text.as_bytes()) {
        return false;
    }
    let mut r = Reader { text, at: 0 };
    if r.event(out, order).is_none() {
        return false;
    }
    r.skip_ws().is_none()
}

/// The field names, in the order of [`Reader::value`]'s indices.
const KEYS: [&str; 27] = [
    "event_id",
    "timestamp",
    "service",
    "model",
    "model_version",
    "route",
    "tenant",
    "session_id",
    "status",
    "latency_ms",
    "tokens_in",
    "tokens_out",
    "tokens_cached",
    "cost_usd",
    "prediction",
    "confidence",
    "correct",
    "quality_score",
    "flags",
    "approval",
    "step",
    "tool",
    "input_hash",
    "output_chars",
    "attributes",
    "schema_version",
    "provider",
];

/// The index of each name in [`KEYS`].
pub(super) mod field {
    pub const EVENT_ID: u8 = 0;
    pub const TIMESTAMP: u8 = 1;
    pub const SERVICE: u8 = 2;
    pub const MODEL: u8 = 3;
    pub const MODEL_VERSION: u8 = 4;
    pub const ROUTE: u8 = 5;
    pub const TENANT: u8 = 6;
    pub const SESSION_ID: u8 = 7;
    pub const STATUS: u8 = 8;
    pub const LATENCY_MS: u8 = 9;
    pub const TOKENS_IN: u8 = 10;
    pub const TOKENS_OUT: u8 = 11;
    pub const TOKENS_CACHED: u8 = 12;
    pub const COST_USD: u8 = 13;
    pub const PREDICTION: u8 = 14;
    pub const CONFIDENCE: u8 = 15;
    pub const CORRECT: u8 = 16;
    pub const QUALITY_SCORE: u8 = 17;
    pub const FLAGS: u8 = 18;
    pub const APPROVAL: u8 = 19;
    pub const STEP: u8 = 20;
    pub const TOOL: u8 = 21;
    pub const INPUT_HASH: u8 = 22;
    pub const OUTPUT_CHARS: u8 = 23;
    pub const ATTRIBUTES: u8 = 24;
    pub const SCHEMA_VERSION: u8 = 25;
    pub const PROVIDER: u8 = 26;
}

/// Where the reader puts each field it reads, by its index in [`KEYS`] (each at most once,
/// `None` for an explicit `null`): the event struct, or a row of the batch's columns. A
/// `None` back makes the reader answer false.
pub(super) trait Fields<'a> {
    fn text(&mut self, key: u8, v: Option<&'a str>) -> Option<()>;
    fn float(&mut self, key: u8, v: Option<f64>) -> Option<()>;
    fn int(&mut self, key: u8, v: Option<i64>) -> Option<()>;
    fn boolean(&mut self, v: Option<bool>) -> Option<()>;
    fn time(&mut self, v: Option<WireTime<'a>>) -> Option<()>;
    fn flags(&mut self, v: Option<Flags<'a>>) -> Option<()>;
    fn attributes(&mut self, v: Option<Attributes<'a>>) -> Option<()>;
}

/// Each name of [`KEYS`] with its closing quote, as a little-endian word to compare 16
/// payload bytes against, the mask of its bytes, and its length.
const KEY_WORDS: [(u128, u128, usize); KEYS.len()] = {
    let mut out = [(0, 0, 0); KEYS.len()];
    let mut k = 0;
    while k < KEYS.len() {
        let name = KEYS[k].as_bytes();
        let (mut word, mut i) = (0u128, 0);
        while i < name.len() {
            word |= (name[i] as u128) << (8 * i);
            i += 1;
        }
        word |= (b'"' as u128) << (8 * i);
        let len = name.len() + 1;
        out[k] = (word, u128::MAX >> (8 * (16 - len)), len);
        k += 1;
    }
    out
};

/// Each name of [`KEYS`] as it starts a field in compact JSON, `"name":`, as a word to
/// compare 16 payload bytes against, its mask and its length: [`KEY_WORDS`] with a quote
/// before and a colon after; length 0 for the names too long for a word.
const FIELD_WORDS: [(u128, u128, usize); KEYS.len()] = {
    let mut out = [(0, 0, 0); KEYS.len()];
    let mut k = 0;
    while k < KEYS.len() {
        let (key, _, key_len) = KEY_WORDS[k];
        let len = key_len + 2;
        if len <= 16 {
            let word = b'"' as u128 | key << 8 | (b':' as u128) << (8 * (key_len + 1));
            out[k] = (word, u128::MAX >> (8 * (16 - len)), len);
        }
        k += 1;
    }
    out
};

/// For each byte, the keys of [`KEYS`] that start with it (bit `k` for key `k`).
const FIRST_BYTE: [u32; 256] = {
    let mut out = [0u32; 256];
    let mut k = 0;
    while k < KEYS.len() {
        out[KEYS[k].as_bytes()[0] as usize] |= 1 << k;
        k += 1;
    }
    out
};

/// No byte below 0x20 and no backslash. Written as a branch-free reduction over 64-byte
/// blocks so that the compiler vectorises it (four 16-byte compares a block on x86-64's
/// baseline), where a byte or word loop costs a payload's length in instructions.
pub(super) fn plain(bytes: &[u8]) -> bool {
    let odd = |c: u8| (c < 0x20) | (c == b'\\');
    let block_odd = |block: &[u8; 64]| block.iter().fold(false, |a, &c| a | odd(c));
    let (blocks, rest) = bytes.as_chunks::<64>();
    let mut any = false;
    for block in blocks {
        any |= block_odd(block);
    }
    // The last bytes padded with blanks, which pass, into one more block.
    let mut last = [b' '; 64];
    last[..rest.len()].copy_from_slice(rest);
    !(any | block_odd(&last))
}

/// An unknown field, or the start of the object, in [`KeyOrder`].
const OTHER: u8 = KEYS.len() as u8;

/// Which field came after which in the last payloads: a producer writes its fields in one
/// order, so the next key is usually known and is checked with one comparison.
#[derive(Debug, Clone, Default)]
pub(super) struct KeyOrder([u8; KEYS.len() + 1]);

fn key_index(key: &str) -> u8 {
    KEYS.iter()
        .position(|k| *k == key)
        .map_or(OTHER, |i| i as u8)
}

/// A number as serde_json's parser sees it (non-negative: negatives are left to it).
enum Number {
    Int(u64),
    Float(f64),
}

impl Number {
    /// As an `f64` field gets it: serde_json's visitors cast integers.
    fn to_f64(&self) -> f64 {
        match *self {
            Number::Int(n) => n as f64,
            Number::Float(f) => f,
        }
    }
}

/// The powers of ten that are exact in an f64; serde_json scales by the same values.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

struct Reader<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Reader<'a> {
    /// Skips spaces (the other JSON blanks are control characters, which [`scan`] leaves
    /// to serde_json) and returns the byte after them, not consumed; `None` at the end.
    /// Each byte is read once: a skip followed by a separate peek read it twice (a sixth of
    /// this reader's instructions in the profile).
    #[inline]
    fn skip_ws(&mut self) -> Option<u8> {
        let bytes = self.text.as_bytes();
        let mut c = *bytes.get(self.at)?;
        while c == b' ' {
            self.at += 1;
            c = *bytes.get(self.at)?;
        }
        Some(c)
    }

    /// The next byte after blanks, consumed.
    #[inline]
    fn next(&mut self) -> Option<u8> {
        let c = self.skip_ws()?;
        self.at += 1;
        Some(c)
    }

    fn literal(&mut self, rest: &[u8]) -> Option<()> {
        let tail = self.text.as_bytes().get(self.at..)?;
        if !tail.starts_with(rest) {
            return None;
        }
        self.at += rest.len();
        Some(())
    }

    fn event<F: Fields<'a>>(&mut self, out: &mut F, order: &mut KeyOrder) -> Option<()> {
        if self.next()? != b'{' {
            return None;
        }
        if self.skip_ws()? == b'}' {
            self.at += 1;
            return Some(());
        }
        let (mut seen, mut last) = (0u32, OTHER);
        loop {
            let guess = order.0[usize::from(last)];
            let key = match self.expected_key(guess) {
                Some(key) => key,
                None => {
                    if self.next()? != b'"' {
                        return None;
                    }
                    let key = self.key(guess)?;
                    if self.next()? != b':' {
                        return None;
                    }
                    key
                }
            };
            order.0[usize::from(last)] = key;
            last = key;
            if key == OTHER {
                // Unknown fields are ignored, as serde does; only scalars are skipped here.
                self.skip_scalar()?;
            } else {
                let bit = 1u32 << key;
                if seen & bit != 0 {
                    return None; // serde's derive rejects a duplicate field
                }
                seen |= bit;
                self.value(key, out)?;
            }
            match self.next()? {
                b',' => {}
                b'}' => return Some(()),
                _ => return None,
            }
        }
    }

    /// The common case of a key in one compare: `"guess":` right here, no blanks. `None`
    /// leaves the key to the general path.
    #[inline]
    fn expected_key(&mut self, guess: u8) -> Option<u8> {
        let (word, mask, len) = *FIELD_WORDS.get(usize::from(guess))?;
        let chunk = self.text.as_bytes().get(self.at..self.at + 16)?;
        let bytes = u128::from_le_bytes(chunk.try_into().expect("sixteen bytes"));
        (len > 0 && bytes & mask == word).then(|| {
            self.at += len;
            guess
        })
    }

    /// The items of an object or array whose opening byte was read, up to `close`, commas
    /// between, each starting with a string (`item` reads it from after its opening quote).
    fn items(&mut self, close: u8, mut item: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        if self.skip_ws()? == close {
            self.at += 1;
            return Some(());
        }
        loop {
            if self.next()? != b'"' {
                return None;
            }
            item(self)?;
            match self.next()? {
                b',' => {}
                c if c == close => return Some(()),
                _ => return None,
            }
        }
    }

    /// The index of the key whose opening quote was read; `guess` is tried first.
    fn key(&mut self, guess: u8) -> Option<u8> {
        let tail = &self.text.as_bytes()[self.at..];
        if let Some(chunk) = tail.get(..16) {
            let bytes = u128::from_le_bytes(chunk.try_into().expect("sixteen bytes"));
            let matches = |k: usize| {
                let (word, mask, len) = KEY_WORDS[k];
                (bytes & mask == word).then_some(len)
            };
            if let Some(len) = (guess != OTHER)
                .then(|| matches(usize::from(guess)))
                .flatten()
            {
                self.at += len;
                return Some(guess);
            }
            // The keys that start like this one (at most six share a first byte).
            let mut candidates = FIRST_BYTE[usize::from(chunk[0])];
            while candidates != 0 {
                let k = candidates.trailing_zeros() as usize;
                if let Some(len) = matches(k) {
                    self.at += len;
                    return Some(k as u8);
                }
                candidates &= candidates - 1;
            }
        }
        Some(key_index(self.string_body()?))
    }

    fn value<F: Fields<'a>>(&mut self, key: u8, out: &mut F) -> Option<()> {
        use field::*;
        match key {
            TIMESTAMP => out.time(self.time()?),
            LATENCY_MS | COST_USD | CONFIDENCE | QUALITY_SCORE => out.float(key, self.float()?),
            TOKENS_IN | TOKENS_OUT | TOKENS_CACHED | STEP | OUTPUT_CHARS | SCHEMA_VERSION => {
                out.int(key, self.int()?)
            }
            CORRECT => out.boolean(self.boolean()?),
            FLAGS => out.flags(self.flags()?),
            ATTRIBUTES => out.attributes(self.attributes()?),
            _ => out.text(key, self.text()?),
        }
    }

    /// The rest of a string whose opening quote was read (the payload has no escapes and no
    /// control characters: [`scan`] checked).
    fn string_body(&mut self) -> Option<&'a str> {
        let bytes = self.text.as_bytes();
        let start = self.at;
        let mut i = start;
        while let Some(chunk) = bytes.get(i..i + 16) {
            if let Some(q) = first_quote(chunk.try_into().expect("sixteen bytes")) {
                return self.string_end(start, i + q);
            }
            i += 16;
        }
        let end = i + bytes[i..].iter().position(|&c| c == b'"')?;
        self.string_end(start, end)
    }

    /// The string from `start`, just after its opening quote, to `end`, its closing quote.
    #[inline]
    fn string_end(&mut self, start: usize, end: usize) -> Option<&'a str> {
        self.at = end + 1;
        let b = self.text.as_bytes();
        debug_assert!(start <= end && b[start - 1] == b'"' && b[end] == b'"');
        // SAFETY: every caller consumed the opening quote at `start - 1`, and `end` holds the
        // first quote after it: both ends are next to an ASCII byte of UTF-8 text, so both
        // are character boundaries, and `start <= end < len`.
        Some(unsafe { self.text.get_unchecked(start..end) })
    }

    /// A non-negative JSON number whose first digit was read. Works on a local index and
    /// significand (kept in registers), written back once.
    fn number(&mut self, first: u8) -> Option<Number> {
        let bytes = self.text.as_bytes();
        let mut i = self.at;
        let mut sig = u64::from(first - b'0');
        let at = |i: usize| bytes.get(i).copied();
        if first == b'0' {
            if let Some(b'0'..=b'9') = at(i) {
                return None;
            }
        } else {
            digits(bytes, &mut i, &mut sig)?;
        }
        let mut exp: i32 = 0;
        let mut float = false;
        if at(i) == Some(b'.') {
            i += 1;
            float = true;
            let n = digits(bytes, &mut i, &mut sig)?;
            if n == 0 {
                return None;
            }
            exp = -i32::try_from(n).ok()?;
        }
        if let Some(b'e' | b'E') = at(i) {
            i += 1;
            float = true;
            let negative = at(i) == Some(b'-');
            if let Some(b'-' | b'+') = at(i) {
                i += 1;
            }
            let start = i;
            let mut e: i32 = 0;
            while let Some(c @ b'0'..=b'9') = at(i) {
                e = e.checked_mul(10)?.checked_add(i32::from(c - b'0'))?;
                i += 1;
            }
            if i == start {
                return None;
            }
            exp = if negative {
                exp.saturating_sub(e)
            } else {
                exp.saturating_add(e)
            };
        }
        self.at = i;
        if !float {
            return Some(Number::Int(sig));
        }
        // serde_json (without float_roundtrip): the significand as f64, scaled once.
        let pow = *POW10.get(exp.unsigned_abs() as usize)?;
        let f = sig as f64;
        Some(Number::Float(if exp >= 0 { f * pow } else { f / pow }))
    }

    /// `null` or a string.
    fn text(&mut self) -> Option<Option<&'a str>> {
        match self.next()? {
            b'"' => Some(Some(self.string_body()?)),
            b'n' => self.literal(b"ull").map(|_| None),
            _ => None,
        }
    }

    fn float(&mut self) -> Option<Option<f64>> {
        match self.next()? {
            c @ b'0'..=b'9' => Some(Some(self.number(c)?.to_f64())),
            b'n' => self.literal(b"ull").map(|_| None),
            _ => None,
        }
    }

    fn int(&mut self) -> Option<Option<i64>> {
        match self.next()? {
            c @ b'0'..=b'9' => match self.number(c)? {
                Number::Int(n) => i64::try_from(n).ok().map(Some),
                Number::Float(_) => None,
            },
            b'n' => self.literal(b"ull").map(|_| None),
            _ => None,
        }
    }

    fn boolean(&mut self) -> Option<Option<bool>> {
        match self.next()? {
            b't' => self.literal(b"rue").map(|_| Some(true)),
            b'f' => self.literal(b"alse").map(|_| Some(false)),
            b'n' => self.literal(b"ull").map(|_| None),
            _ => None,
        }
    }

    fn time(&mut self) -> Option<Option<WireTime<'a>>> {
        match self.next()? {
            b'"' => Some(Some(WireTime::Text(Text(Cow::Borrowed(
                self.string_body()?,
            ))))),
            c @ b'0'..=b'9' => Some(Some(WireTime::Millis(self.number(c)?.to_f64()))),
            b'n' => self.literal(b"ull").map(|_| None),
            _ => None,
        }
    }

    fn flags(&mut self) -> Option<Option<Flags<'a>>> {
        let items = self.strings(b'[', b']', |r| Some(Text(Cow::Borrowed(r.string_body()?))))?;
        Some(items.map(Flags))
    }

    fn attributes(&mut self) -> Option<Option<Attributes<'a>>> {
        let items = self.strings(b'{', b'}', |r| {
            let key = r.string_body()?;
            if r.next()? != b':' || r.next()? != b'"' {
                return None;
            }
            let value = r.string_body()?;
            Some((Text(Cow::Borrowed(key)), Text(Cow::Borrowed(value))))
        })?;
        Some(items.map(Attributes))
    }

    /// `null`, or the [`Reader::items`] of a list or object that `open` starts, collected.
    fn strings<T>(
        &mut self,
        open: u8,
        close: u8,
        mut item: impl FnMut(&mut Self) -> Option<T>,
    ) -> Option<Option<Vec<T>>> {
        match self.next()? {
            b'n' => return self.literal(b"ull").map(|_| None),
            c if c == open => {}
            _ => return None,
        }
        let mut out = Vec::new();
        self.items(close, |r| {
            out.push(item(r)?);
            Some(())
        })?;
        Some(Some(out))
    }

    /// The value of an unknown field, when it is a string, a number or a literal.
    fn skip_scalar(&mut self) -> Option<()> {
        match self.next()? {
            b'"' => self.string_body().map(|_| ()),
            c @ b'0'..=b'9' => self.number(c).map(|_| ()),
            b't' => self.literal(b"rue"),
            b'f' => self.literal(b"alse"),
            b'n' => self.literal(b"ull"),
            _ => None,
        }
    }
}

/// Reads the run of digits from `i` on into `sig`; how many there were, `None` when the
/// significand overflows (serde_json then decides).
#[inline]
fn digits(bytes: &[u8], i: &mut usize, sig: &mut u64) -> Option<usize> {
    let start = *i;
    while let Some(&c) = bytes.get(*i) {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            break;
        }
        *sig = sig.checked_mul(10)?.checked_add(u64::from(d))?;
        *i += 1;
    }
    Some(*i - start)
}

/// Where the first quote of 16 bytes is.
#[inline]
fn first_quote(chunk: &[u8; 16]) -> Option<usize> {
    let m = crate::bytes::mask(chunk, *b"\"");
    (m != 0).then(|| m.trailing_zeros() as usize)
}
