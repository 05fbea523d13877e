//! Deterministic synthetic inference traffic: one JSON event per model call.
//!
//! The generator simulates four services calling five models, with agent sessions, errors,
//! out-of-order timestamps and optional fields present at realistic rates. A [`Scenario`]
//! switches on one kind of trouble at the onset (`total_events / 2`) and keeps it on, so
//! that a monitor fed with the output should see a clean "before" and a changed "after".
//! Before the onset every scenario produces the same bytes as [`Scenario::Steady`].
//!
//! Output depends only on the [`GeneratorConfig`]: the PRNG (xoshiro256** seeded with
//! SplitMix64), the exponential, logarithm and normal quantile are implemented here with
//! plain IEEE arithmetic (no platform `libm`), and numbers are formatted by hand with fixed
//! decimals, so the same config gives byte-identical payloads on every platform and with
//! every crate version.

use std::fmt;
use std::str::FromStr;

/// What changes, if anything, at the onset of a generated run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    Steady,
    Drift,
    Miscalibration,
    CostSpike,
    RunawayLoop,
    Malformed,
}

impl Scenario {
    pub const ALL: [Scenario; 6] = [
        Scenario::Steady,
        Scenario::Drift,
        Scenario::Miscalibration,
        Scenario::CostSpike,
        Scenario::RunawayLoop,
        Scenario::Malformed,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Steady => "steady",
            Scenario::Drift => "drift",
            Scenario::Miscalibration => "miscalibration",
            Scenario::CostSpike => "cost-spike",
            Scenario::RunawayLoop => "runaway-loop",
            Scenario::Malformed => "malformed",
        }
    }

    /// One line, for `--help`.
    pub fn description(self) -> &'static str {
        match self {
            Scenario::Steady => {
                "stationary traffic: 4 services, 5 models, calibrated confidence, ~2% errors"
            }
            Scenario::Drift => {
                "after the onset confidence falls (mean ~0.80 -> ~0.55), quality drops and the prediction mix shifts, all services"
            }
            Scenario::Miscalibration => {
                "after the onset support-bot stays ~0.9 confident but is right only half the time"
            }
            Scenario::CostSpike => {
                "after the onset checkout-assistant sends 4x the input tokens and gets 8x the output tokens"
            }
            Scenario::RunawayLoop => {
                "after the onset some support-bot sessions repeat one tool call on the same input 20+ times"
            }
            Scenario::Malformed => {
                "after the onset ~5% of payloads are broken (bad JSON, empty, bad or missing fields, invalid UTF-8)"
            }
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Scenario {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let want = s.trim();
        for sc in Scenario::ALL {
            let name = sc.name();
            let same = want.len() == name.len()
                && want
                    .bytes()
                    .zip(name.bytes())
                    .all(|(a, b)| a.to_ascii_lowercase() == b || (a == b'_' && b == b'-'));
            if same {
                return Ok(sc);
            }
        }
        let names: Vec<&str> = Scenario::ALL.iter().map(|s| s.name()).collect();
        Err(format!(
            "unknown scenario {s:?}; valid scenarios: {}",
            names.join(", ")
        ))
    }
}

/// Settings of a generated run.
#[derive(Debug, Clone)]
pub struct GeneratorConfig {
    pub seed: u64,
    /// Events per second of event time: the base timestamp advances `1000 / rate` ms per event.
    pub rate: f64,
    /// Event time of the first event, epoch milliseconds.
    pub start_ms: i64,
    /// Planned length of the run; scenarios switch on at `total_events / 2` (the onset).
    pub total_events: u64,
    pub scenario: Scenario,
    /// Each timestamp is the base time minus a uniform jitter in `[0, max_jitter_ms]`.
    pub max_jitter_ms: i64,
    /// When above 1, every event gets one of this many routes per (service, model): many keys,
    /// for memory benchmarks. 0 keeps the normal routes.
    pub route_spread: u32,
    /// When set, every prediction sent without `correct` gets a feedback event this many
    /// milliseconds after it (see [`Generator::next_feedback`]).
    pub feedback_delay_ms: Option<i64>,
    /// When set, the trouble ends at this event index and traffic is steady again (an
    /// incident that recovers, so a monitor should resolve what it raised).
    pub recover_at: Option<u64>,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        Self {
            seed: 42,
            rate: 1000.0,
            start_ms: 1_767_225_600_000, // 2026-01-01T00:00:00Z
            total_events: 100_000,
            scenario: Scenario::Steady,
            max_jitter_ms: 2000,
            route_spread: 0,
            feedback_delay_ms: None,
            recover_at: None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Deterministic numerics
// ---------------------------------------------------------------------------------------------

#[inline]
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    mix64(*state)
}

/// The SplitMix64 finalizer: a good 64-bit hash of one word.
#[inline]
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

const TWO_POW_M53: f64 = 1.0 / (1u64 << 53) as f64;

/// xoshiro256**, seeded through SplitMix64.
#[derive(Debug, Clone)]
struct Rng {
    s: [u64; 4],
}

impl Rng {
    fn new(seed: u64) -> Self {
        let mut sm = seed;
        let mut s = [0u64; 4];
        for x in &mut s {
            *x = splitmix64(&mut sm);
        }
        Self { s }
    }

    #[inline]
    fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1).
    #[inline]
    fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * TWO_POW_M53
    }

    #[inline]
    fn chance(&mut self, p: f64) -> bool {
        self.f64() < p
    }

    /// Uniform in `0..n` (n > 0), by multiply-high.
    #[inline]
    fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// Standard normal, by the inverse CDF of one uniform in (0, 1).
    #[inline]
    fn normal(&mut self) -> f64 {
        let u = ((self.next_u64() >> 11) as f64 + 0.5) * TWO_POW_M53;
        norm_quantile(u)
    }

    /// Log-normal with the given median and log-space standard deviation.
    #[inline]
    fn lognormal(&mut self, median: f64, sigma: f64) -> f64 {
        median * exp_det(sigma * self.normal())
    }

    /// Mean of three uniforms (Irwin–Hall, bell-shaped on [0, 1], mean 0.5) from one draw.
    #[inline]
    fn avg3(&mut self) -> f64 {
        const M: u64 = (1 << 21) - 1;
        let x = self.next_u64();
        let sum = (x & M) + ((x >> 21) & M) + ((x >> 42) & M);
        sum as f64 / (3.0 * (1u64 << 21) as f64)
    }

    /// Index drawn with the given integer weights.
    #[inline]
    fn pick(&mut self, weights: &[u16]) -> usize {
        let total: u64 = weights.iter().map(|&w| w as u64).sum();
        let mut r = self.below(total);
        for (i, &w) in weights.iter().enumerate() {
            if r < w as u64 {
                return i;
            }
            r -= w as u64;
        }
        weights.len() - 1
    }
}

/// ln 2 split in a high part with trailing zero bits and the rest (fdlibm).
const LN2_HI: f64 = f64::from_bits(0x3FE6_2E42_FEE0_0000);
const LN2_LO: f64 = f64::from_bits(0x3DEA_39EF_3579_3C76);
const LN2: f64 = std::f64::consts::LN_2;

/// e^x with only IEEE +, −, ×, ÷ (no platform libm), relative error ~1e-15 on |x| < 700.
fn exp_det(x: f64) -> f64 {
    if x > 700.0 {
        return f64::MAX;
    }
    if x < -700.0 {
        return 0.0;
    }
    let k = (x * std::f64::consts::LOG2_E).round();
    let r = (x - k * LN2_HI) - k * LN2_LO;
    // Taylor series of e^r for |r| <= ln2/2, Horner form, degree 13.
    let mut p = 1.0 / 6_227_020_800.0;
    for d in [
        479_001_600.0,
        39_916_800.0,
        3_628_800.0,
        362_880.0,
        40_320.0,
        5_040.0,
        720.0,
        120.0,
        24.0,
        6.0,
        2.0,
        1.0,
        1.0,
    ] {
        p = p * r + 1.0 / d;
    }
    let scale = f64::from_bits(((k as i64 + 1023) as u64) << 52);
    p * scale
}

/// Natural logarithm of a positive normal number with only IEEE arithmetic.
fn ln_det(x: f64) -> f64 {
    debug_assert!(x > 0.0 && x.is_normal());
    let bits = x.to_bits();
    let mut e = ((bits >> 52) & 0x7ff) as i64 - 1023;
    let mut m = f64::from_bits((bits & 0x000F_FFFF_FFFF_FFFF) | (1023u64 << 52));
    if m > std::f64::consts::SQRT_2 {
        m *= 0.5;
        e += 1;
    }
    // ln m = 2 atanh(s), s = (m-1)/(m+1), |s| <= 0.1716.
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let mut p = 1.0 / 21.0;
    for d in [19.0, 17.0, 15.0, 13.0, 11.0, 9.0, 7.0, 5.0, 3.0, 1.0] {
        p = p * s2 + 1.0 / d;
    }
    e as f64 * LN2 + 2.0 * s * p
}

/// Standard normal quantile (Acklam's rational approximation, relative error < 1.2e-9).
fn norm_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    const P_LOW: f64 = 0.02425;
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < P_LOW {
        tail((-2.0 * ln_det(p)).sqrt())
    } else if p > 1.0 - P_LOW {
        -tail((-2.0 * ln_det(1.0 - p)).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

// ---------------------------------------------------------------------------------------------
// Formatting straight into the output buffer
// ---------------------------------------------------------------------------------------------

const POW10: [u64; 10] = [
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
fn put_u64(out: &mut Vec<u8>, mut v: u64) {
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
fn put_i64(out: &mut Vec<u8>, v: i64) {
    if v < 0 {
        out.push(b'-');
    }
    put_u64(out, v.unsigned_abs());
}

/// `x` with exactly `dec` decimals (dec <= 9), rounded half away from zero.
#[inline]
fn put_fixed(out: &mut Vec<u8>, x: f64, dec: usize) {
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
fn put_hex16(out: &mut Vec<u8>, v: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 16];
    for (i, b) in buf.iter_mut().enumerate() {
        *b = HEX[((v >> (60 - 4 * i)) & 0xf) as usize];
    }
    out.extend_from_slice(&buf);
}

/// A JSON string; table strings never need escapes, but stay correct if one ever does.
#[inline]
fn put_str(out: &mut Vec<u8>, s: &str) {
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

/// (year, month, day) for days since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// `"2026-01-01T00:00:01.250Z"`, quotes included. Years outside 0..=9999 are clamped.
fn put_rfc3339(out: &mut Vec<u8>, ms: i64) {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000) as u32;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400) as u32;
    let (y, m, d) = civil_from_days(days);
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

// ---------------------------------------------------------------------------------------------
// The simulated fleet
// ---------------------------------------------------------------------------------------------

struct Service {
    name: &'static str,
    categories: &'static [&'static str],
    /// Prediction mix before / after a drift onset.
    steady_mix: &'static [u16],
    drift_mix: &'static [u16],
    /// Agent services run multi-step sessions with tools; empty for single-call services.
    tools: &'static [&'static str],
}

const CHECKOUT: usize = 0;
const SUPPORT: usize = 1;

const SERVICES: [Service; 4] = [
    Service {
        name: "checkout-assistant",
        categories: &["recommend", "add_to_cart", "answer_question", "escalate"],
        steady_mix: &[40, 25, 30, 5],
        drift_mix: &[20, 10, 45, 25],
        tools: &[
            "search_catalog",
            "get_cart",
            "check_inventory",
            "apply_coupon",
            "create_order",
        ],
    },
    Service {
        name: "support-bot",
        categories: &["billing", "technical", "account", "shipping", "other"],
        steady_mix: &[30, 25, 20, 20, 5],
        drift_mix: &[15, 20, 15, 15, 35],
        tools: &[
            "lookup_order",
            "search_kb",
            "get_customer",
            "create_ticket",
            "issue_refund",
        ],
    },
    Service {
        name: "search-rerank",
        categories: &["relevant", "partially_relevant", "irrelevant"],
        steady_mix: &[55, 30, 15],
        drift_mix: &[30, 30, 40],
        tools: &[],
    },
    Service {
        name: "fraud-screen",
        categories: &["legit", "review", "fraud"],
        steady_mix: &[90, 8, 2],
        drift_mix: &[70, 20, 10],
        tools: &[],
    },
];

struct Model {
    name: &'static str,
    version: &'static str,
    latency_median_ms: f64,
    latency_sigma: f64,
    /// List prices, US dollars per million tokens: input, cached input, output.
    price_in: f64,
    price_cached: f64,
    price_out: f64,
    prompt_cache: bool,
    /// Offset of this model's mean confidence.
    confidence_offset: f64,
}

const MODELS: [Model; 5] = [
    Model {
        name: "gpt-4o",
        version: "2024-11-20",
        latency_median_ms: 650.0,
        latency_sigma: 0.55,
        price_in: 2.50,
        price_cached: 1.25,
        price_out: 10.00,
        prompt_cache: true,
        confidence_offset: 0.03,
    },
    Model {
        name: "gpt-4o-mini",
        version: "2024-07-18",
        latency_median_ms: 280.0,
        latency_sigma: 0.5,
        price_in: 0.15,
        price_cached: 0.075,
        price_out: 0.60,
        prompt_cache: true,
        confidence_offset: -0.02,
    },
    Model {
        name: "claude-sonnet-4",
        version: "20250514",
        latency_median_ms: 900.0,
        latency_sigma: 0.6,
        price_in: 3.00,
        price_cached: 0.30,
        price_out: 15.00,
        prompt_cache: true,
        confidence_offset: 0.02,
    },
    Model {
        name: "llama-3.1-70b",
        version: "instruct-2024-07-23",
        latency_median_ms: 420.0,
        latency_sigma: 0.65,
        price_in: 0.88,
        price_cached: 0.88,
        price_out: 0.88,
        prompt_cache: false,
        confidence_offset: -0.03,
    },
    Model {
        name: "text-embedding-3-small",
        version: "1",
        latency_median_ms: 80.0,
        latency_sigma: 0.4,
        price_in: 0.02,
        price_cached: 0.02,
        price_out: 0.0,
        prompt_cache: false,
        confidence_offset: 0.0,
    },
];

const GPT4O: u8 = 0;
const MINI: u8 = 1;
const CLAUDE: u8 = 2;
const LLAMA: u8 = 3;
const EMBED: u8 = 4;

/// One (service, model) combination as it appears in traffic.
struct Pair {
    service: usize,
    model: u8,
    route: &'static str,
    tokens_in_median: f64,
    tokens_in_sigma: f64,
    /// 0 for calls without output tokens (embeddings), which also make no prediction.
    tokens_out_median: f64,
    tokens_out_sigma: f64,
}

const fn pair(
    service: usize,
    model: u8,
    route: &'static str,
    tin: (f64, f64),
    tout: (f64, f64),
) -> Pair {
    Pair {
        service,
        model,
        route,
        tokens_in_median: tin.0,
        tokens_in_sigma: tin.1,
        tokens_out_median: tout.0,
        tokens_out_sigma: tout.1,
    }
}

const PAIRS: [Pair; 10] = [
    pair(CHECKOUT, GPT4O, "/v1/chat", (1200.0, 0.7), (180.0, 0.7)),
    pair(CHECKOUT, MINI, "/v1/chat", (1200.0, 0.7), (180.0, 0.7)),
    pair(CHECKOUT, CLAUDE, "/v1/chat", (1200.0, 0.7), (180.0, 0.7)),
    pair(
        SUPPORT,
        CLAUDE,
        "/v1/support/chat",
        (900.0, 0.8),
        (250.0, 0.8),
    ),
    pair(
        SUPPORT,
        MINI,
        "/v1/support/chat",
        (900.0, 0.8),
        (250.0, 0.8),
    ),
    pair(
        SUPPORT,
        LLAMA,
        "/v1/support/chat",
        (900.0, 0.8),
        (250.0, 0.8),
    ),
    pair(2, EMBED, "/v1/embed", (40.0, 0.6), (0.0, 0.0)),
    pair(2, LLAMA, "/v1/rank", (2000.0, 0.5), (40.0, 0.3)),
    pair(3, MINI, "/v1/classify", (600.0, 0.4), (8.0, 0.3)),
    pair(3, LLAMA, "/v1/classify", (600.0, 0.4), (8.0, 0.3)),
];

/// Share of traffic per pair, per mille: checkout 30%, support 35%, search 18%, fraud 17%.
const PAIR_WEIGHTS: [u16; 10] = [120, 130, 50, 150, 120, 80, 120, 60, 120, 50];

const TENANTS: [&str; 8] = [
    "acme",
    "globex",
    "initech",
    "umbrella",
    "hooli",
    "stark-industries",
    "wayne-enterprises",
    "tyrell",
];
const TENANT_WEIGHTS: [u16; 8] = [30, 20, 15, 10, 10, 7, 5, 3];
const REGIONS: [&str; 3] = ["us-east-1", "eu-west-1", "ap-southeast-2"];
const CLIENTS: [&str; 3] = ["web", "ios", "android"];
const APPROVALS: [&str; 3] = ["approved", "rejected", "pending"];
const APPROVAL_WEIGHTS: [u16; 3] = [88, 8, 4];

const FLAG_HALLUCINATION: u8 = 1;
const FLAG_PII: u8 = 2;
const FLAG_POLICY: u8 = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Ok,
    Error,
    Timeout,
    Refused,
    Filtered,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Error => "error",
            Status::Timeout => "timeout",
            Status::Refused => "refused",
            Status::Filtered => "filtered",
        }
    }
}

/// The kinds of broken payload of [`Scenario::Malformed`], produced in this order, cyclically.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Malform {
    NotJson,
    Empty,
    MissingEventId,
    BadTimestamp,
    ConfidenceOutOfRange,
    NegativeTokens,
    WrongType,
    OversizedEventId,
    UnknownSchemaVersion,
    JsonArray,
    InvalidUtf8,
}

const MALFORMS: [Malform; 11] = [
    Malform::NotJson,
    Malform::Empty,
    Malform::MissingEventId,
    Malform::BadTimestamp,
    Malform::ConfidenceOutOfRange,
    Malform::NegativeTokens,
    Malform::WrongType,
    Malform::OversizedEventId,
    Malform::UnknownSchemaVersion,
    Malform::JsonArray,
    Malform::InvalidUtf8,
];

/// Share of broken payloads after the onset of [`Scenario::Malformed`].
const MALFORMED_SHARE: f64 = 0.05;
/// Share of new support-bot sessions that loop after the onset of [`Scenario::RunawayLoop`].
const RUNAWAY_SHARE: f64 = 0.03;
/// Concurrent agent sessions per (service, model) pair.
const SLOTS: usize = 4;
/// A timed-out call is cut at this latency.
const TIMEOUT_MS: f64 = 30_000.0;

/// An agent run in progress in one slot.
#[derive(Debug, Clone, Copy, Default)]
struct Session {
    id: u64,
    len: u32,
    step: u32,
    /// First looping step, 0 for a normal session.
    loop_from: u32,
    loop_tool: u8,
    loop_hash: u64,
}

/// One sampled event, before it is written.
struct Event {
    pair: usize,
    ts_ms: i64,
    ts_epoch: bool,
    schema_version: bool,
    model_version: bool,
    route: bool,
    tenant: Option<u8>,
    /// Bit 0: region present, bit 1: client present; indexes below.
    attrs: u8,
    region: u8,
    client: u8,
    session: Option<(u64, u32)>,
    tool: Option<u8>,
    input_hash: u64,
    status: Status,
    status_explicit: bool,
    latency_ms: f64,
    tokens_in: i64,
    tokens_out: Option<i64>,
    tokens_cached: Option<i64>,
    cost_usd: Option<f64>,
    prediction: Option<u8>,
    confidence: Option<f64>,
    correct: Option<bool>,
    /// Whether the prediction was right, sent or not.
    truth: Option<bool>,
    quality: Option<f64>,
    flags: u8,
    approval: Option<u8>,
    output_chars: Option<i64>,
}

/// Deterministic generator of JSON inference events; see the module docs.
#[derive(Debug, Clone)]
pub struct Generator {
    cfg: GeneratorConfig,
    rng: Rng,
    produced: u64,
    malformed: u64,
    onset: u64,
    step_ms: f64,
    /// `ev-<seed hex>-`
    id_prefix: Vec<u8>,
    /// `sess-<seed hex>-`
    session_prefix: Vec<u8>,
    hash_key: u64,
    sessions: [Session; PAIRS.len() * SLOTS],
    next_session: u64,
    /// Feedback not yet handed out: (feedback time, event index, correct, pair).
    feedback: std::collections::VecDeque<(i64, u64, bool, usize)>,
}

impl Generator {
    /// # Panics
    /// If `rate` is not a positive finite number or `max_jitter_ms` is negative.
    pub fn new(cfg: GeneratorConfig) -> Self {
        assert!(
            cfg.rate.is_finite() && cfg.rate > 0.0,
            "generator rate must be a positive number of events per second, got {}",
            cfg.rate
        );
        assert!(
            cfg.max_jitter_ms >= 0,
            "generator max_jitter_ms must be non-negative, got {}",
            cfg.max_jitter_ms
        );
        let hex = format!("{:x}", cfg.seed);
        Self {
            rng: Rng::new(cfg.seed),
            produced: 0,
            malformed: 0,
            onset: cfg.total_events / 2,
            step_ms: 1000.0 / cfg.rate,
            id_prefix: format!("ev-{hex}-").into_bytes(),
            session_prefix: format!("sess-{hex}-").into_bytes(),
            hash_key: mix64(cfg.seed ^ 0x5EED_1A5F_0000_0001),
            sessions: [Session::default(); PAIRS.len() * SLOTS],
            next_session: 0,
            feedback: std::collections::VecDeque::new(),
            cfg,
        }
    }

    /// Appends exactly one payload (no trailing newline) to `out`; returns false once
    /// `total_events` payloads were produced.
    pub fn next_payload(&mut self, out: &mut Vec<u8>) -> bool {
        if self.produced >= self.cfg.total_events {
            return false;
        }
        let index = self.produced;
        self.produced += 1;
        let after = index >= self.onset && self.cfg.recover_at.is_none_or(|r| index < r);
        let sc = self.cfg.scenario;

        let mut bad = None;
        if after && sc == Scenario::Malformed && self.rng.chance(MALFORMED_SHARE) {
            bad = Some(MALFORMS[(self.malformed % MALFORMS.len() as u64) as usize]);
            self.malformed += 1;
        }
        match bad {
            Some(Malform::Empty) => return true,
            Some(Malform::NotJson) => {
                out.extend_from_slice(br#"{"event_id": "x", broken"#);
                return true;
            }
            _ => {}
        }
        let ev = self.sample(index, after);
        self.write(out, index, &ev, bad);
        if let (Some(delay), None, None, Some(truth), Some(_)) = (
            self.cfg.feedback_delay_ms,
            bad,
            ev.correct,
            ev.truth,
            ev.confidence,
        ) {
            self.feedback
                .push_back((ev.ts_ms + delay, index, truth, ev.pair));
        }
        true
    }

    /// Appends the next feedback event (no trailing newline) if one is due at `up_to_ms`
    /// (`None`: any); returns false when none is.
    pub fn next_feedback(&mut self, out: &mut Vec<u8>, up_to_ms: Option<i64>) -> bool {
        self.next_feedback_keyed(out, up_to_ms).is_some()
    }

    /// [`Generator::next_feedback`], returning the Kafka key of the prediction it labels
    /// (`service/model`), so feedback lands in the partition of its prediction.
    pub fn next_feedback_keyed(
        &mut self,
        out: &mut Vec<u8>,
        up_to_ms: Option<i64>,
    ) -> Option<String> {
        match self.feedback.front() {
            Some(&(ts, index, correct, pair)) if up_to_ms.is_none_or(|t| ts <= t) => {
                self.feedback.pop_front();
                out.extend_from_slice(b"{\"event_id\":\"");
                out.extend_from_slice(&self.id_prefix);
                put_u64(out, index);
                out.extend_from_slice(b"\",\"timestamp\":");
                put_i64(out, ts);
                out.extend_from_slice(if correct {
                    b",\"correct\":true,\"source\":\"generator\"}"
                } else {
                    b",\"correct\":false,\"source\":\"generator\"}"
                });
                let p = &PAIRS[pair];
                Some(format!(
                    "{}/{}",
                    SERVICES[p.service].name, MODELS[p.model as usize].name
                ))
            }
            _ => None,
        }
    }

    /// Base event time of the next event: feedback up to here is due.
    pub fn event_time(&self) -> i64 {
        self.base_ms(self.produced)
    }

    pub fn produced(&self) -> u64 {
        self.produced
    }

    /// How many payloads produced so far were deliberately malformed.
    pub fn malformed(&self) -> u64 {
        self.malformed
    }

    /// Base event time of event `index`, before jitter.
    fn base_ms(&self, index: u64) -> i64 {
        self.cfg.start_ms + (index as f64 * self.step_ms) as i64
    }

    fn sample(&mut self, index: u64, after: bool) -> Event {
        let sc = self.cfg.scenario;
        let drift = after && sc == Scenario::Drift;
        let base_ms = self.base_ms(index);
        let rng = &mut self.rng;

        let pair_ix = rng.pick(&PAIR_WEIGHTS);
        let p = &PAIRS[pair_ix];
        let svc = &SERVICES[p.service];
        let model = &MODELS[p.model as usize];

        // Event time.
        let jitter = if self.cfg.max_jitter_ms > 0 {
            rng.below(self.cfg.max_jitter_ms as u64 + 1) as i64
        } else {
            0
        };
        let ts_ms = base_ms - jitter;
        let ts_epoch = rng.chance(0.10);

        // Envelope fields.
        let schema_version = rng.chance(0.5);
        let model_version = rng.chance(0.85);
        let route = rng.chance(0.9);
        let tenant = if rng.chance(0.9) {
            Some(rng.pick(&TENANT_WEIGHTS) as u8)
        } else {
            None
        };
        let (mut attrs, mut region, mut client) = (0u8, 0u8, 0u8);
        if rng.chance(0.2) {
            attrs = 1;
            region = rng.below(REGIONS.len() as u64) as u8;
            if rng.chance(0.5) {
                attrs |= 2;
                client = rng.below(CLIENTS.len() as u64) as u8;
            }
        }

        // Agent sessions: a slot of this pair continues its run or starts a new one.
        let mut session = None;
        let mut tool = None;
        let mut input_hash = 0;
        if !svc.tools.is_empty() {
            let slot = pair_ix * SLOTS + rng.below(SLOTS as u64) as usize;
            let s = &mut self.sessions[slot];
            if s.step >= s.len {
                *s = Session {
                    id: self.next_session,
                    len: if rng.chance(0.92) {
                        1 + rng.below(8) as u32
                    } else {
                        9 + rng.below(8) as u32
                    },
                    ..Session::default()
                };
                self.next_session += 1;
                if after
                    && sc == Scenario::RunawayLoop
                    && p.service == SUPPORT
                    && rng.chance(RUNAWAY_SHARE)
                {
                    s.loop_from = 2;
                    s.len = 1 + 20 + rng.below(20) as u32; // 20..=39 looping steps
                    s.loop_tool = rng.below(2) as u8; // lookup_order or search_kb
                    s.loop_hash = mix64(self.hash_key ^ s.id.wrapping_mul(0xA24B_AED4_963E_E407));
                }
            }
            s.step += 1;
            session = Some((s.id, s.step));
            if s.loop_from != 0 && s.step >= s.loop_from {
                tool = Some(s.loop_tool);
                input_hash = s.loop_hash;
            } else {
                if rng.chance(0.75) {
                    tool = Some(rng.below(svc.tools.len() as u64) as u8);
                }
                input_hash = mix64(
                    self.hash_key
                        ^ s.id.wrapping_mul(0x9FB2_1C65_1E98_DF25)
                        ^ (s.step as u64).wrapping_mul(0xD6E8_FEB8_6659_FD93),
                );
            }
        }

        // Outcome.
        let u = rng.f64();
        let status = if u < 0.015 {
            Status::Error
        } else if u < 0.018 {
            Status::Timeout
        } else if u < 0.023 {
            Status::Refused
        } else if u < 0.025 {
            Status::Filtered
        } else {
            Status::Ok
        };
        let status_explicit = status != Status::Ok || rng.chance(0.8);

        // Tokens; a cost spike inflates checkout-assistant's prompts and completions.
        let spike = after && sc == Scenario::CostSpike && p.service == CHECKOUT;
        let mut tin = rng.lognormal(p.tokens_in_median, p.tokens_in_sigma);
        if spike {
            tin *= 4.0;
        }
        let tokens_in = (tin.round() as i64).max(1);
        let predicts = p.tokens_out_median > 0.0;
        let mut tout_ratio = 1.0;
        let tokens_out = if predicts {
            let mut t = rng.lognormal(p.tokens_out_median, p.tokens_out_sigma);
            if spike {
                t *= 8.0;
            }
            tout_ratio = t / p.tokens_out_median;
            match status {
                Status::Ok | Status::Filtered => Some((t.round() as i64).max(1)),
                Status::Refused => Some(5 + rng.below(30) as i64),
                Status::Error | Status::Timeout => None,
            }
        } else {
            None
        };
        let tokens_cached = if model.prompt_cache && rng.chance(0.35) {
            Some((tokens_in as f64 * 0.9 * rng.f64()) as i64)
        } else {
            None
        };

        // Latency: log-normal per model, longer completions take longer, rare slow path.
        let mut latency = rng.lognormal(model.latency_median_ms, model.latency_sigma);
        latency *= 0.75 + 0.25 * tout_ratio;
        if rng.chance(0.01) {
            latency *= 3.0 + 5.0 * rng.f64();
        }
        latency = match status {
            Status::Timeout => TIMEOUT_MS + rng.below(250) as f64 + rng.f64(),
            Status::Error => latency * 0.4,
            Status::Refused => latency * 0.3,
            _ => latency.min(TIMEOUT_MS),
        };

        let cost_usd = if rng.chance(0.3) {
            let cached = tokens_cached.unwrap_or(0);
            let fresh = tokens_in - cached;
            let out = tokens_out.unwrap_or(0);
            Some(
                (fresh as f64 * model.price_in
                    + cached as f64 * model.price_cached
                    + out as f64 * model.price_out)
                    / 1e6,
            )
        } else {
            None
        };

        // Prediction, confidence and correctness: calibrated unless a scenario says otherwise.
        let (mut prediction, mut confidence, mut correct, mut quality) = (None, None, None, None);
        let mut truth = None;
        let mut flags = 0u8;
        if predicts && status == Status::Ok {
            let mix = if drift { svc.drift_mix } else { svc.steady_mix };
            prediction = Some(rng.pick(mix) as u8);
            let overconfident = after && sc == Scenario::Miscalibration && p.service == SUPPORT;
            let a = rng.avg3();
            let c = if overconfident {
                0.82 + 0.17 * a
            } else if drift {
                0.25 + 0.6 * a + model.confidence_offset
            } else {
                0.58 + 0.42 * a + model.confidence_offset
            };
            let c = c.clamp(0.0, 1.0);
            confidence = Some(c);
            let p_right = if overconfident { 0.5 } else { c };
            let right = rng.chance(p_right);
            truth = Some(right);
            if rng.chance(0.7) {
                correct = Some(right);
            }
            if rng.chance(0.45) {
                let a = rng.avg3();
                let q = if drift {
                    0.42 + 0.4 * a
                } else {
                    0.62 + 0.36 * a
                };
                let q = if right { q + 0.02 } else { q - 0.15 };
                quality = Some(q.clamp(0.0, 1.0));
            }
            let hallucination = if drift { 0.06 } else { 0.02 };
            if rng.chance(if right {
                hallucination * 0.3
            } else {
                hallucination * 4.0
            }) {
                flags |= FLAG_HALLUCINATION;
            }
            if rng.chance(0.004) {
                flags |= FLAG_PII;
            }
            if rng.chance(0.002) {
                flags |= FLAG_POLICY;
            }
        }
        if status == Status::Filtered {
            flags |= FLAG_POLICY;
            if rng.chance(0.3) {
                flags |= FLAG_PII;
            }
        }

        let approval = if p.service == CHECKOUT && status == Status::Ok && rng.chance(0.25) {
            Some(rng.pick(&APPROVAL_WEIGHTS) as u8)
        } else {
            None
        };
        let output_chars = match tokens_out {
            Some(t) if status == Status::Ok && rng.chance(0.6) => {
                Some((t as f64 * (3.2 + 1.6 * rng.f64())) as i64)
            }
            _ => None,
        };

        Event {
            pair: pair_ix,
            ts_ms,
            ts_epoch,
            schema_version,
            model_version,
            route,
            tenant,
            attrs,
            region,
            client,
            session,
            tool,
            input_hash,
            status,
            status_explicit,
            latency_ms: latency,
            tokens_in,
            tokens_out,
            tokens_cached,
            cost_usd,
            prediction,
            confidence,
            correct,
            truth,
            quality,
            flags,
            approval,
            output_chars,
        }
    }

    fn write(&self, out: &mut Vec<u8>, index: u64, ev: &Event, bad: Option<Malform>) {
        let p = &PAIRS[ev.pair];
        let svc = &SERVICES[p.service];
        let model = &MODELS[p.model as usize];

        if bad == Some(Malform::JsonArray) {
            out.push(b'[');
        }
        out.push(b'{');
        if bad != Some(Malform::MissingEventId) {
            out.extend_from_slice(b"\"event_id\":\"");
            out.extend_from_slice(&self.id_prefix);
            put_u64(out, index);
            if bad == Some(Malform::OversizedEventId) {
                out.push(b'-');
                let len = self.id_prefix.len() + 1 + decimal_len(index);
                out.resize(out.len() + 300 - len.min(300), b'x');
            }
            out.extend_from_slice(b"\",");
        }
        out.extend_from_slice(b"\"timestamp\":");
        if bad == Some(Malform::BadTimestamp) {
            out.extend_from_slice(b"\"yesterday\"");
        } else if ev.ts_epoch {
            put_i64(out, ev.ts_ms);
        } else {
            put_rfc3339(out, ev.ts_ms);
        }
        if bad == Some(Malform::UnknownSchemaVersion) {
            out.extend_from_slice(b",\"schema_version\":99");
        } else if ev.schema_version {
            out.extend_from_slice(b",\"schema_version\":1");
        }
        out.extend_from_slice(b",\"service\":");
        put_str(out, svc.name);
        out.extend_from_slice(b",\"model\":");
        put_str(out, model.name);
        if ev.model_version {
            out.extend_from_slice(b",\"model_version\":");
            put_str(out, model.version);
        }
        if self.cfg.route_spread > 1 {
            // Many keys for memory benchmarks: every event gets one of `route_spread` routes.
            out.extend_from_slice(b",\"route\":\"");
            out.extend_from_slice(p.route.as_bytes());
            out.push(b'/');
            put_u64(
                out,
                index.wrapping_mul(0x9E37_79B9_7F4A_7C15) % self.cfg.route_spread as u64,
            );
            out.push(b'"');
        } else if ev.route {
            out.extend_from_slice(b",\"route\":");
            put_str(out, p.route);
        }
        if bad == Some(Malform::InvalidUtf8) {
            // "acme" followed by a lone continuation byte and an invalid lead byte.
            out.extend_from_slice(b",\"tenant\":\"acme\x80\xff\"");
        } else if let Some(t) = ev.tenant {
            out.extend_from_slice(b",\"tenant\":");
            put_str(out, TENANTS[t as usize]);
        }
        if let Some((id, step)) = ev.session {
            out.extend_from_slice(b",\"session_id\":\"");
            out.extend_from_slice(&self.session_prefix);
            put_u64(out, id);
            out.extend_from_slice(b"\",\"step\":");
            put_u64(out, step as u64);
            if let Some(t) = ev.tool {
                out.extend_from_slice(b",\"tool\":");
                put_str(out, svc.tools[t as usize]);
            }
            out.extend_from_slice(b",\"input_hash\":\"");
            put_hex16(out, ev.input_hash);
            out.push(b'"');
        }
        if ev.status_explicit {
            out.extend_from_slice(b",\"status\":");
            put_str(out, ev.status.as_str());
        }
        if bad == Some(Malform::WrongType) {
            out.extend_from_slice(b",\"latency_ms\":\"fast\"");
        } else {
            out.extend_from_slice(b",\"latency_ms\":");
            put_fixed(out, ev.latency_ms, 3);
        }
        out.extend_from_slice(b",\"tokens_in\":");
        if bad == Some(Malform::NegativeTokens) {
            out.extend_from_slice(b"-5");
        } else {
            put_i64(out, ev.tokens_in);
        }
        if let Some(t) = ev.tokens_out {
            out.extend_from_slice(b",\"tokens_out\":");
            put_i64(out, t);
        }
        if let Some(t) = ev.tokens_cached {
            out.extend_from_slice(b",\"tokens_cached\":");
            put_i64(out, t);
        }
        if let Some(c) = ev.cost_usd {
            out.extend_from_slice(b",\"cost_usd\":");
            put_fixed(out, c, 8);
        }
        if let Some(k) = ev.prediction {
            out.extend_from_slice(b",\"prediction\":");
            put_str(out, svc.categories[k as usize]);
        }
        if bad == Some(Malform::ConfidenceOutOfRange) {
            out.extend_from_slice(b",\"confidence\":1.7");
        } else if let Some(c) = ev.confidence {
            out.extend_from_slice(b",\"confidence\":");
            put_fixed(out, c, 4);
        }
        if let Some(c) = ev.correct {
            out.extend_from_slice(if c {
                b",\"correct\":true"
            } else {
                b",\"correct\":false"
            });
        }
        if let Some(q) = ev.quality {
            out.extend_from_slice(b",\"quality_score\":");
            put_fixed(out, q, 3);
        }
        if ev.flags != 0 {
            out.extend_from_slice(b",\"flags\":[");
            let mut first = true;
            for (bit, name) in [
                (FLAG_HALLUCINATION, "hallucination"),
                (FLAG_PII, "pii"),
                (FLAG_POLICY, "policy"),
            ] {
                if ev.flags & bit != 0 {
                    if !first {
                        out.push(b',');
                    }
                    first = false;
                    put_str(out, name);
                }
            }
            out.push(b']');
        }
        if let Some(a) = ev.approval {
            out.extend_from_slice(b",\"approval\":");
            put_str(out, APPROVALS[a as usize]);
        }
        if let Some(c) = ev.output_chars {
            out.extend_from_slice(b",\"output_chars\":");
            put_i64(out, c);
        }
        if ev.attrs != 0 {
            out.extend_from_slice(b",\"attributes\":{\"region\":");
            put_str(out, REGIONS[ev.region as usize]);
            if ev.attrs & 2 != 0 {
                out.extend_from_slice(b",\"client\":");
                put_str(out, CLIENTS[ev.client as usize]);
            }
            out.push(b'}');
        }
        out.push(b'}');
        if bad == Some(Malform::JsonArray) {
            out.push(b']');
        }
    }
}

fn decimal_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 10 {
        v /= 10;
        n += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Map, Value};
    use std::collections::{BTreeMap, BTreeSet};

    fn cfg(scenario: Scenario, total: u64) -> GeneratorConfig {
        GeneratorConfig {
            scenario,
            total_events: total,
            ..GeneratorConfig::default()
        }
    }

    /// Every payload of a run, in order.
    fn run(c: GeneratorConfig) -> (Vec<Vec<u8>>, Generator) {
        let mut g = Generator::new(c);
        let mut all = Vec::new();
        let mut out = Vec::new();
        while g.next_payload(&mut out) {
            all.push(out.clone());
            out.clear();
        }
        (all, g)
    }

    fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
        let y = if m <= 2 { y - 1 } else { y };
        let era = if y >= 0 { y } else { y - 399 } / 400;
        let yoe = y - era * 400;
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    /// Strict parser for the one RFC 3339 shape the generator writes.
    fn parse_ts(s: &str) -> Option<i64> {
        let b = s.as_bytes();
        if b.len() != 24 || &b[4..5] != b"-" || b[10] != b'T' || b[19] != b'.' || b[23] != b'Z' {
            return None;
        }
        let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
        let (y, mo, d) = (n(0..4)?, n(5..7)?, n(8..10)?);
        let (h, mi, se, ms) = (n(11..13)?, n(14..16)?, n(17..19)?, n(20..23)?);
        if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 59 {
            return None;
        }
        Some(((days_from_civil(y, mo, d) * 24 + h) * 60 + mi) * 60_000 + se * 1000 + ms)
    }

    /// A valid event, or why the payload is not one (rules of the event schema).
    fn check(payload: &[u8]) -> Result<(Map<String, Value>, i64), &'static str> {
        if payload.is_empty() {
            return Err("empty");
        }
        let text = std::str::from_utf8(payload).map_err(|_| "utf8")?;
        let v: Value = serde_json::from_str(text).map_err(|_| "syntax")?;
        let Value::Object(m) = v else {
            return Err("not an object");
        };
        if let Some(sv) = m.get("schema_version") {
            if sv.as_i64() != Some(1) {
                return Err("schema_version");
            }
        }
        let id = m.get("event_id").ok_or("missing event_id")?;
        let id = id.as_str().ok_or("event_id type")?;
        if id.is_empty() || id.len() > 128 {
            return Err("event_id length");
        }
        let ts = match m.get("timestamp").ok_or("missing timestamp")? {
            Value::String(s) => parse_ts(s).ok_or("timestamp")?,
            Value::Number(n) => n.as_i64().ok_or("timestamp")?,
            _ => return Err("timestamp"),
        };
        for k in ["service", "model"] {
            if m.get(k)
                .is_none_or(|v| v.as_str().is_none_or(str::is_empty))
            {
                return Err("service/model");
            }
        }
        for k in [
            "model_version",
            "route",
            "tenant",
            "session_id",
            "prediction",
            "tool",
            "input_hash",
        ] {
            if m.get(k).is_some_and(|v| !v.is_string()) {
                return Err("text field type");
            }
        }
        if let Some(s) = m.get("status") {
            let ok = ["ok", "error", "timeout", "refused", "filtered"];
            if !s.as_str().is_some_and(|s| ok.contains(&s)) {
                return Err("status");
            }
        }
        if let Some(l) = m.get("latency_ms") {
            if !l.as_f64().is_some_and(|x| x >= 0.0) {
                return Err("latency_ms");
            }
        }
        for k in ["tokens_in", "tokens_out", "tokens_cached", "output_chars"] {
            if let Some(t) = m.get(k) {
                if t.as_i64().is_none_or(|x| x < 0) {
                    return Err("tokens");
                }
            }
        }
        if let (Some(c), Some(i)) = (m.get("tokens_cached"), m.get("tokens_in")) {
            if c.as_i64() > i.as_i64() {
                return Err("tokens_cached > tokens_in");
            }
        }
        if let Some(s) = m.get("step") {
            if s.as_i64().is_none_or(|x| x < 1) {
                return Err("step");
            }
        }
        if let Some(c) = m.get("cost_usd") {
            if !c.as_f64().is_some_and(|x| x >= 0.0) {
                return Err("cost_usd");
            }
        }
        for k in ["confidence", "quality_score"] {
            if let Some(c) = m.get(k) {
                if !c.as_f64().is_some_and(|x| (0.0..=1.0).contains(&x)) {
                    return Err("unit interval");
                }
            }
        }
        if m.get("correct").is_some_and(|c| !c.is_boolean()) {
            return Err("correct");
        }
        if let Some(f) = m.get("flags") {
            let ok = ["hallucination", "pii", "policy"];
            let f = f.as_array().ok_or("flags")?;
            if f.is_empty()
                || !f
                    .iter()
                    .all(|x| x.as_str().is_some_and(|s| ok.contains(&s)))
            {
                return Err("flags");
            }
        }
        if let Some(a) = m.get("approval") {
            if !a.as_str().is_some_and(|s| APPROVALS.contains(&s)) {
                return Err("approval");
            }
        }
        if let Some(a) = m.get("attributes") {
            let a = a.as_object().ok_or("attributes")?;
            if a.is_empty() || !a.values().all(|v| v.is_string()) {
                return Err("attributes");
            }
        }
        Ok((m, ts))
    }

    fn index_of(m: &Map<String, Value>) -> u64 {
        let id = m["event_id"].as_str().unwrap();
        id.rsplit('-').next().unwrap().parse().unwrap()
    }

    fn s<'a>(m: &'a Map<String, Value>, k: &str) -> Option<&'a str> {
        m.get(k).and_then(Value::as_str)
    }

    fn f(m: &Map<String, Value>, k: &str) -> Option<f64> {
        m.get(k).and_then(Value::as_f64)
    }

    /// Mean of `k` over the events of `service` (any service if None) before / after onset.
    fn mean_split(
        events: &[(Map<String, Value>, i64)],
        onset: u64,
        service: Option<&str>,
        k: impl Fn(&Map<String, Value>) -> Option<f64>,
    ) -> (f64, f64) {
        let mut acc = [(0.0, 0u64); 2];
        for (m, _) in events {
            if service.is_some_and(|sv| s(m, "service") != Some(sv)) {
                continue;
            }
            if let Some(x) = k(m) {
                let a = &mut acc[(index_of(m) >= onset) as usize];
                a.0 += x;
                a.1 += 1;
            }
        }
        assert!(acc[0].1 > 100 && acc[1].1 > 100, "too few samples: {acc:?}");
        (acc[0].0 / acc[0].1 as f64, acc[1].0 / acc[1].1 as f64)
    }

    fn valid_events(c: GeneratorConfig) -> Vec<(Map<String, Value>, i64)> {
        let (all, g) = run(c);
        let events: Vec<_> = all.iter().filter_map(|p| check(p).ok()).collect();
        assert_eq!(events.len() as u64 + g.malformed(), g.produced());
        events
    }

    #[test]
    fn same_config_same_bytes_other_seed_other_bytes() {
        for sc in Scenario::ALL {
            let (a, ga) = run(cfg(sc, 20_000));
            let (b, gb) = run(cfg(sc, 20_000));
            assert_eq!(a, b, "{sc}");
            assert_eq!(ga.malformed(), gb.malformed());
            let (c, _) = run(GeneratorConfig {
                seed: 43,
                ..cfg(sc, 20_000)
            });
            assert_ne!(a, c, "{sc}");
            assert_eq!(a.len(), c.len());
        }
    }

    #[test]
    fn stops_after_total_events() {
        let mut g = Generator::new(cfg(Scenario::Malformed, 1000));
        let mut out = Vec::new();
        let mut n = 0;
        while g.next_payload(&mut out) {
            n += 1;
        }
        assert_eq!(n, 1000);
        assert_eq!(g.produced(), 1000);
        let len = out.len();
        assert!(!g.next_payload(&mut out));
        assert_eq!(out.len(), len, "nothing appended after the end");
        assert_eq!(g.produced(), 1000);
        assert!(!Generator::new(cfg(Scenario::Steady, 0)).next_payload(&mut out));
    }

    #[test]
    fn scenarios_equal_steady_before_onset() {
        let (steady, _) = run(cfg(Scenario::Steady, 20_000));
        for sc in Scenario::ALL {
            let (other, _) = run(cfg(sc, 20_000));
            assert_eq!(steady[..10_000], other[..10_000], "{sc}");
            if sc != Scenario::Steady {
                assert_ne!(steady[10_000..], other[10_000..], "{sc}");
            }
        }
    }

    #[test]
    fn scenario_names_round_trip() {
        for sc in Scenario::ALL {
            assert_eq!(sc.name().parse::<Scenario>(), Ok(sc));
            assert_eq!(sc.name().to_uppercase().parse::<Scenario>(), Ok(sc));
            assert!(!sc.description().is_empty() && !sc.description().contains('\n'));
        }
        assert_eq!("cost_spike".parse::<Scenario>(), Ok(Scenario::CostSpike));
        let err = "chaos".parse::<Scenario>().unwrap_err();
        for sc in Scenario::ALL {
            assert!(err.contains(sc.name()), "{err}");
        }
    }

    #[test]
    fn every_payload_is_a_valid_event_with_bounded_jitter() {
        let c = GeneratorConfig {
            seed: 7,
            rate: 800.0,
            ..cfg(Scenario::Steady, 50_000)
        };
        let (all, g) = run(c.clone());
        assert_eq!(g.malformed(), 0);
        let mut ids = BTreeSet::new();
        let mut epoch = 0;
        let (mut with_cost, mut with_correct, mut with_status, mut flagged) = (0, 0, 0, 0);
        let mut statuses = BTreeMap::new();
        let mut pairs = BTreeSet::new();
        let (mut min_dev, mut max_dev) = (i64::MAX, i64::MIN);
        for (i, p) in all.iter().enumerate() {
            assert!(!p.contains(&b'\n'));
            let (m, ts) = check(p).unwrap_or_else(|e| {
                panic!("payload {i} invalid ({e}): {}", String::from_utf8_lossy(p))
            });
            assert!(ids.insert(s(&m, "event_id").unwrap().to_string()));
            assert_eq!(index_of(&m), i as u64);
            // Base time: start + i * 1000/rate ms, timestamps at most max_jitter_ms before it.
            let base = c.start_ms + (i as f64 * 1000.0 / c.rate).floor() as i64;
            let dev = ts - base;
            assert!(
                (-c.max_jitter_ms..=0).contains(&dev),
                "event {i}: {ts} vs base {base}"
            );
            assert!(ts >= c.start_ms - c.max_jitter_ms);
            min_dev = min_dev.min(dev);
            max_dev = max_dev.max(dev);
            epoch += m["timestamp"].is_number() as u32;
            with_cost += m.contains_key("cost_usd") as u32;
            with_correct += m.contains_key("correct") as u32;
            with_status += m.contains_key("status") as u32;
            flagged += m.contains_key("flags") as u32;
            *statuses
                .entry(s(&m, "status").unwrap_or("ok").to_string())
                .or_insert(0u32) += 1;
            pairs.insert((
                s(&m, "service").unwrap().to_string(),
                s(&m, "model").unwrap().to_string(),
            ));
        }
        let n = all.len() as f64;
        let share = |x: u32| x as f64 / n;
        assert!((0.08..0.12).contains(&share(epoch)), "epoch ms {epoch}");
        assert!((0.27..0.33).contains(&share(with_cost)), "cost {with_cost}");
        assert!((0.55..0.65).contains(&share(with_correct)));
        assert!(share(with_status) < 0.9, "status is sometimes omitted");
        assert!(share(flagged) < 0.1, "flags are usually absent");
        assert!(
            (0.01..0.02).contains(&share(statuses["error"])),
            "{statuses:?}"
        );
        assert!((0.001..0.006).contains(&share(statuses["timeout"])));
        assert!((0.003..0.008).contains(&share(statuses["refused"])));
        assert_eq!(pairs.len(), PAIRS.len());
        assert!(min_dev < -1900 && max_dev > -100, "jitter spans the range");
    }

    #[test]
    fn zero_jitter_is_in_order() {
        let c = GeneratorConfig {
            max_jitter_ms: 0,
            rate: 333.0,
            ..cfg(Scenario::Drift, 5_000)
        };
        let ts: Vec<i64> = valid_events(c).into_iter().map(|e| e.1).collect();
        assert!(ts.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn steady_is_calibrated_and_stationary() {
        let ev = valid_events(cfg(Scenario::Steady, 60_000));
        let onset = 30_000;
        let (c0, c1) = mean_split(&ev, onset, None, |m| f(m, "confidence"));
        assert!(
            (0.75..0.85).contains(&c0) && (c0 - c1).abs() < 0.01,
            "{c0} {c1}"
        );
        let (a0, a1) = mean_split(&ev, onset, None, |m| {
            m.get("correct").map(|c| c.as_bool().unwrap() as u8 as f64)
        });
        assert!(
            (a0 - c0).abs() < 0.02 && (a1 - c1).abs() < 0.02,
            "calibrated"
        );
        // Calibrated per bin too: accuracy tracks confidence.
        let mut bins = [(0.0, 0.0, 0u32); 2];
        for (m, _) in &ev {
            if let (Some(c), Some(ok)) = (f(m, "confidence"), m.get("correct")) {
                let b = &mut bins[(c > 0.85) as usize];
                b.0 += c;
                b.1 += ok.as_bool().unwrap() as u8 as f64;
                b.2 += 1;
            }
        }
        for (c, a, n) in bins {
            assert!(n > 1000 && (c - a).abs() / (n as f64) < 0.02, "{c} {a} {n}");
        }
        let max_repeat = repeats(&ev, 0).values().copied().max().unwrap();
        assert_eq!(max_repeat, 1, "no tool call repeats in steady traffic");
    }

    #[test]
    fn drift_shifts_confidence_quality_and_mix() {
        let ev = valid_events(cfg(Scenario::Drift, 60_000));
        let onset = 30_000;
        for svc in SERVICES.iter().map(|s| s.name) {
            let (c0, c1) = mean_split(&ev, onset, Some(svc), |m| f(m, "confidence"));
            assert!(c0 > 0.75 && c1 < 0.62, "{svc}: {c0} -> {c1}");
        }
        let (c0, c1) = mean_split(&ev, onset, None, |m| f(m, "confidence"));
        assert!(c0 - c1 > 0.2, "{c0} -> {c1}");
        let (q0, q1) = mean_split(&ev, onset, None, |m| f(m, "quality_score"));
        assert!(q0 - q1 > 0.15, "quality {q0} -> {q1}");
        let (o0, o1) = mean_split(&ev, onset, Some("support-bot"), |m| {
            s(m, "prediction").map(|p| (p == "other") as u8 as f64)
        });
        assert!(
            o0 < 0.08 && o1 > 0.3,
            "support-bot 'other' share {o0} -> {o1}"
        );
        let (f0, f1) = mean_split(&ev, onset, Some("fraud-screen"), |m| {
            s(m, "prediction").map(|p| (p == "legit") as u8 as f64)
        });
        assert!(f0 - f1 > 0.15, "fraud-screen 'legit' share {f0} -> {f1}");
    }

    #[test]
    fn miscalibration_makes_support_bot_overconfident() {
        let ev = valid_events(cfg(Scenario::Miscalibration, 60_000));
        let onset = 30_000;
        let sb = Some("support-bot");
        let (c0, c1) = mean_split(&ev, onset, sb, |m| f(m, "confidence"));
        let (a0, a1) = mean_split(&ev, onset, sb, |m| {
            m.get("correct").map(|c| c.as_bool().unwrap() as u8 as f64)
        });
        assert!((a0 - c0).abs() < 0.03, "calibrated before: {c0} vs {a0}");
        assert!(c1 > 0.85, "still confident: {c1}");
        assert!((0.45..0.55).contains(&a1), "accuracy after onset {a1}");
        // Other services stay calibrated.
        let (_, other_c) = mean_split(&ev, onset, Some("fraud-screen"), |m| f(m, "confidence"));
        let (_, other_a) = mean_split(&ev, onset, Some("fraud-screen"), |m| {
            m.get("correct").map(|c| c.as_bool().unwrap() as u8 as f64)
        });
        assert!((other_c - other_a).abs() < 0.04, "{other_c} vs {other_a}");
    }

    #[test]
    fn cost_spike_inflates_checkout_tokens_and_cost() {
        let ev = valid_events(cfg(Scenario::CostSpike, 60_000));
        let onset = 30_000;
        let ck = Some("checkout-assistant");
        let tok = |k: &'static str| move |m: &Map<String, Value>| f(m, k);
        let (o0, o1) = mean_split(&ev, onset, ck, tok("tokens_out"));
        let (i0, i1) = mean_split(&ev, onset, ck, tok("tokens_in"));
        let (d0, d1) = mean_split(&ev, onset, ck, tok("cost_usd"));
        assert!(o1 / o0 > 6.0 && o1 / o0 < 10.0, "tokens_out {o0} -> {o1}");
        assert!(i1 / i0 > 3.0 && i1 / i0 < 5.0, "tokens_in {i0} -> {i1}");
        assert!(d1 / d0 > 4.0, "cost {d0} -> {d1}");
        let (s0, s1) = mean_split(&ev, onset, Some("support-bot"), tok("tokens_out"));
        assert!(
            (s1 / s0 - 1.0).abs() < 0.15,
            "support-bot unchanged {s0} -> {s1}"
        );
        for (m, _) in &ev {
            if let (Some(c), Some(i)) = (m.get("tokens_cached"), m.get("tokens_in")) {
                assert!(c.as_i64() <= i.as_i64());
            }
        }
    }

    /// Counts of (session_id, tool, input_hash) among session events with index >= from.
    fn repeats(
        ev: &[(Map<String, Value>, i64)],
        from: u64,
    ) -> BTreeMap<(String, String, String), u32> {
        let mut n = BTreeMap::new();
        for (m, _) in ev {
            if index_of(m) < from {
                continue;
            }
            if let (Some(sid), Some(t), Some(h)) =
                (s(m, "session_id"), s(m, "tool"), s(m, "input_hash"))
            {
                *n.entry((sid.into(), t.into(), h.into())).or_insert(0) += 1;
            }
        }
        n
    }

    #[test]
    fn runaway_loop_repeats_tool_calls_in_support_bot() {
        let ev = valid_events(cfg(Scenario::RunawayLoop, 60_000));
        let onset = 30_000;
        let before: Vec<_> = ev
            .iter()
            .filter(|e| index_of(&e.0) < onset)
            .cloned()
            .collect();
        assert_eq!(repeats(&before, 0).values().max(), Some(&1));
        let after = repeats(&ev, onset);
        let loops: Vec<_> = after.iter().filter(|(_, &c)| c >= 3).collect();
        assert!(loops.len() >= 5, "{} looping sessions", loops.len());
        assert!(loops.iter().any(|(_, &c)| c >= 20));
        for ((sid, tool, hash), _) in &loops {
            // The looping calls are support-bot calls at consecutive steps.
            let mut steps: Vec<i64> = ev
                .iter()
                .filter(|(m, _)| {
                    s(m, "session_id") == Some(sid)
                        && s(m, "tool") == Some(tool)
                        && s(m, "input_hash") == Some(hash)
                })
                .map(|(m, _)| {
                    assert_eq!(s(m, "service"), Some("support-bot"));
                    m["step"].as_i64().unwrap()
                })
                .collect();
            steps.sort_unstable();
            assert!(steps.windows(2).all(|w| w[1] == w[0] + 1), "{steps:?}");
        }
        // Sessions in general: steps 1..k without gaps, usually k <= 8.
        let mut max_step: BTreeMap<String, i64> = BTreeMap::new();
        for (m, _) in &before {
            if let Some(sid) = s(m, "session_id") {
                let st = max_step.entry(sid.into()).or_insert(0);
                *st = (*st).max(m["step"].as_i64().unwrap());
            }
        }
        let short = max_step.values().filter(|&&k| k <= 8).count();
        assert!(short as f64 / max_step.len() as f64 > 0.85);
    }

    #[test]
    fn malformed_payloads_are_counted_and_cover_every_kind() {
        let total = 60_000;
        let (all, g) = run(cfg(Scenario::Malformed, total));
        let onset = (total / 2) as usize;
        let mut reasons = BTreeSet::new();
        let mut bad_after = 0u64;
        for (i, p) in all.iter().enumerate() {
            assert!(!p.contains(&b'\n'), "payload {i} has a newline");
            if let Err(e) = check(p) {
                assert!(i >= onset, "malformed payload {i} before the onset");
                if e == "event_id length" {
                    let v: Value = serde_json::from_slice(p).unwrap();
                    assert_eq!(v["event_id"].as_str().unwrap().len(), 300);
                }
                bad_after += 1;
                reasons.insert(e);
            }
        }
        assert_eq!(bad_after, g.malformed());
        let share = bad_after as f64 / (total as usize - onset) as f64;
        assert!((0.04..=0.06).contains(&share), "share {share}");
        let expected: BTreeSet<&str> = [
            "syntax",
            "empty",
            "missing event_id",
            "timestamp",
            "unit interval",
            "tokens",
            "latency_ms",
            "event_id length",
            "schema_version",
            "not an object",
            "utf8",
        ]
        .into();
        assert_eq!(reasons, expected);
        for sc in Scenario::ALL {
            if sc != Scenario::Malformed {
                let (all, g) = run(cfg(sc, 20_000));
                assert_eq!(g.malformed(), 0);
                assert!(all.iter().all(|p| check(p).is_ok()), "{sc}");
            }
        }
    }

    #[test]
    fn numerics_match_std() {
        for i in 1..2000 {
            let x = (i as f64 - 1000.0) / 97.0;
            let rel = (exp_det(x) - x.exp()).abs() / x.exp();
            assert!(rel < 1e-14, "exp({x})");
            let y = i as f64 * 0.37 + 1e-9 * i as f64;
            assert!((ln_det(y) - y.ln()).abs() < 1e-14 * y.ln().abs().max(1.0));
        }
        assert!((norm_quantile(0.975) - 1.959_963_985).abs() < 1e-8);
        assert!((norm_quantile(0.001) + 3.090_232_306).abs() < 1e-8);
        let mut out = Vec::new();
        put_fixed(&mut out, 0.00012345, 8);
        out.push(b' ');
        put_fixed(&mut out, 812.3456, 3);
        out.push(b' ');
        put_rfc3339(&mut out, 1_767_225_601_250);
        out.push(b' ');
        put_i64(&mut out, -1234);
        put_str(&mut out, "a\"b\\\n");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "0.00012345 812.346 \"2026-01-01T00:00:01.250Z\" -1234\"a\\\"b\\\\\\u000a\""
        );
    }
}
