//! Rounding to integers, half away from zero, as `f64::round` then `as` would. Baseline
//! x86-64 has no rounding instruction, so `round` is a libm call (about 1 % of a run, at
//! several calls an event); these truncate and look at what is left, which is exact.

/// From here up every `f64` is an integer.
const INTEGRAL: f64 = 4_503_599_627_370_496.0; // 2^52

/// `x.round() as i64`.
#[inline]
pub fn round_i64(x: f64) -> i64 {
    if x.abs() < INTEGRAL {
        let t = x as i64;
        // Exact: x and its truncation are within one of each other and of one sign.
        let rest = x - t as f64;
        t + i64::from(rest >= 0.5) - i64::from(rest <= -0.5)
    } else {
        // Already integral, infinite (saturates) or NaN (0), as `as` does.
        x as i64
    }
}

/// `x.round() as u64`: negative values and NaN are 0.
#[inline]
pub fn round_u64(x: f64) -> u64 {
    if (0.0..INTEGRAL).contains(&x) {
        // Through i64, which holds every value here: baseline x86-64 converts between f64
        // and i64 in one instruction each, and between f64 and u64 in a branchy dozen.
        let t = x as i64;
        (t + i64::from(x - t as f64 >= 0.5)) as u64
    } else {
        x as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(x: f64) {
        assert_eq!(round_i64(x), x.round() as i64, "{x:e} ({:#x})", x.to_bits());
        assert_eq!(round_u64(x), x.round() as u64, "{x:e} ({:#x})", x.to_bits());
    }

    #[test]
    fn rounds_as_the_standard_library_does() {
        let below = |x: f64| f64::from_bits(x.to_bits() - 1);
        let edges = [
            0.0,
            -0.0,
            0.5,
            -0.5,
            below(0.5),
            -below(0.5),
            1.5,
            2.5,
            -2.5,
            below(1.5),
            INTEGRAL,
            below(INTEGRAL),
            below(INTEGRAL) - 0.5,
            -below(INTEGRAL),
            2.0 * INTEGRAL + 2.0,
            9.3e18,
            1.9e19,
            -9.3e18,
            f64::MAX,
            f64::MIN,
            f64::MIN_POSITIVE,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
        ];
        for x in edges {
            check(x);
        }
        // Values of every magnitude, and halves and their neighbours at each.
        let mut next = crate::test_rng(0x2545_f491_4f6c_dd1d);
        for _ in 0..1_000_000 {
            let rng = next(u64::MAX);
            let x = f64::from_bits(rng);
            check(x);
            let half = (rng >> 12) as f64 / 8.0 + 0.5;
            check(half);
            check(below(half));
            check(-half);
            // Dollar amounts to nano-dollars, as costs are counted.
            check((rng % 100_000_000) as f64 * 1e-8 * 1e9);
        }
    }
}
