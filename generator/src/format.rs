//! Numbers, strings and timestamps written by hand with fixed decimals, so payloads are
//! byte-identical with every crate version.

pub(crate) const POW10: [u64; 10] = [
    1,
    10,
    100,
    1_000,
    10_000,
    100_000,
    1_000_000,
    10_000_000,
    100_000_000,
    1_000_000_000,
];

#[inline]
pub(crate) fn put_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

#[inline]
pub(crate) fn put_i64(out: &mut Vec<u8>, v: i64) {
    if v < 0 {
        out.push(b'-');
    }
    put_u64(out, v.unsigned_abs());
}

/// `x` with exactly `dec` decimals (dec <= 9), rounded half away from zero.
#[inline]
pub(crate) fn put_fixed(out: &mut Vec<u8>, x: f64, dec: usize) {
    let scale = POW10[dec];
    let neg = x < 0.0;
    let mut s = (x.abs() * scale as f64).round();
    if s.is_nan() || s >= 1e18 {
        s = 1e18; // also catches NaN; never reached with the distributions below
    }
    let s = s as u64;
    if neg && s != 0 {
        out.push(b'-');
    }
    put_u64(out, s / scale);
    if dec > 0 {
        out.push(b'.');
        let mut frac = s % scale;
        let mut buf = [b'0'; 9];
        for i in (0..dec).rev() {
            buf[i] = b'0' + (frac % 10) as u8;
            frac /= 10;
        }
        out.extend_from_slice(&buf[..dec]);
    }
}

#[inline]
pub(crate) fn put_hex16(out: &mut Vec<u8>, v: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 16];
    for (i, b) in buf.iter_mut().enumerate() {
        *b = HEX[((v >> (60 - 4 * i)) & 0xf) as usize];
    }
    out.extend_from_slice(&buf);
}

/// A JSON string; table strings never need escapes, but stay correct if one ever does.
#[inline]
pub(crate) fn put_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.extend_from_slice(s.as_bytes());
    } else {
        for c in s.chars() {
            match c {
                '"' => out.extend_from_slice(b"\\\""),
                '\\' => out.extend_from_slice(b"\\\\"),
                c if (c as u32) < 0x20 => {
                    out.extend_from_slice(b"\\u00");
                    const HEX: &[u8; 16] = b"0123456789abcdef";
                    out.push(HEX[(c as usize) >> 4]);
                    out.push(HEX[(c as usize) & 0xf]);
                }
                c => {
                    let mut b = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
                }
            }
        }
    }
    out.push(b'"');
}

/// `"2026-01-01T00:00:01.250Z"`, quotes included. Years outside 0..=9999 are clamped.
pub(crate) fn put_rfc3339(out: &mut Vec<u8>, ms: i64) {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000) as u32;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400) as u32;
    let (y, m, d) = inferwatch_schemas::time::civil_from_days(days);
    let y = y.clamp(0, 9999) as u32;
    let mut b = *b"\"0000-00-00T00:00:00.000Z\"";
    let mut two = |at: usize, v: u32| {
        b[at] = b'0' + (v / 10) as u8;
        b[at + 1] = b'0' + (v % 10) as u8;
    };
    two(1, y / 100);
    two(3, y % 100);
    two(6, m);
    two(9, d);
    two(12, sod / 3600);
    two(15, (sod / 60) % 60);
    two(18, sod % 60);
    b[21] = b'0' + (millis / 100) as u8;
    b[22] = b'0' + ((millis / 10) % 10) as u8;
    b[23] = b'0' + (millis % 10) as u8;
    out.extend_from_slice(&b);
}

pub(crate) fn decimal_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 10 {
        v /= 10;
        n += 1;
    }
    n
}
