//! Pricing events from the price table. Money is integer nano-dollars.
//!
//! A model's price is found by exact name, else by the most specific glob pattern (most
//! literal characters; `*` any run, `?` one character), then by date (the latest `from` at
//! or before the call) and by size (the highest tier the call's input tokens exceed).

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::error::{config_err, ProcessorError, Result};
use serde::Deserialize;

/// Per-token prices in pico-dollars, so list prices such as $0.075 / 1M stay exact.
#[derive(Debug, Clone, Copy, PartialEq)]
struct PicoPrice {
    input: i128,
    output: i128,
    cached: i128,
}

fn pico_per_token(per_million: f64) -> i128 {
    // $/1M tokens × 1e12 pico/$ / 1e6 tokens = pico-dollars per token.
    (per_million * 1e6).round() as i128
}

impl PicoPrice {
    fn new(input: f64, output: f64, cached: Option<f64>) -> Self {
        let input = pico_per_token(input);
        Self {
            input,
            output: pico_per_token(output),
            cached: cached.map_or(input, pico_per_token),
        }
    }
}

/// One dated price: from when, the base price, and tiers by input tokens (ascending).
#[derive(Debug, Clone)]
struct Dated {
    from_ms: i64,
    base: PicoPrice,
    tiers: Vec<(i64, PicoPrice)>,
}

/// A model's dated prices, oldest first.
type Schedule = Arc<[Dated]>;

/// Looks up a model's price and computes an event's cost.
#[derive(Debug, Default)]
pub struct PriceTable {
    exact: HashMap<String, Schedule>,
    /// Glob patterns, most specific first.
    patterns: Vec<(String, Schedule)>,
    /// Model name → schedule found for it (patterns are matched once per name).
    cache: RefCell<HashMap<String, Option<Schedule>>>,
}

/// Whether `name` matches the glob `pattern` (`*`: any run of characters, `?`: one).
pub(crate) fn glob(pattern: &[char], name: &[char]) -> bool {
    match pattern.split_first() {
        None => name.is_empty(),
        Some(('*', rest)) => (0..=name.len()).any(|i| glob(rest, &name[i..])),
        Some(('?', rest)) => !name.is_empty() && glob(rest, &name[1..]),
        Some((c, rest)) => name.first() == Some(c) && glob(rest, &name[1..]),
    }
}

fn is_pattern(s: &str) -> bool {
    s.contains(['*', '?'])
}

impl PriceTable {
    pub fn new(prices: &BTreeMap<String, Prices>) -> Result<Self> {
        let mut exact = HashMap::new();
        let mut patterns = Vec::new();
        for (name, p) in prices {
            let mut dated: Vec<Dated> = p
                .entries()
                .iter()
                .map(|e| {
                    let mut tiers: Vec<(i64, PicoPrice)> = e
                        .tiers
                        .iter()
                        .map(|t| {
                            let price = PicoPrice::new(
                                t.input_per_million,
                                t.output_per_million,
                                t.cached_input_per_million,
                            );
                            (t.above_input_tokens, price)
                        })
                        .collect();
                    tiers.sort_by_key(|t| t.0);
                    Ok(Dated {
                        from_ms: price_from_ms(e)?,
                        base: PicoPrice::new(
                            e.input_per_million,
                            e.output_per_million,
                            e.cached_input_per_million,
                        ),
                        tiers,
                    })
                })
                .collect::<Result<_>>()?;
            dated.sort_by_key(|d| d.from_ms);
            let schedule: Schedule = dated.into();
            if is_pattern(name) {
                patterns.push((name.clone(), schedule));
            } else {
                exact.insert(name.clone(), schedule);
            }
        }
        let literal = |p: &str| p.chars().filter(|c| !matches!(c, '*' | '?')).count();
        patterns.sort_by(|a, b| literal(&b.0).cmp(&literal(&a.0)).then(a.0.cmp(&b.0)));
        Ok(Self {
            exact,
            patterns,
            cache: RefCell::default(),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.patterns.is_empty()
    }

    fn schedule(&self, model: &str) -> Option<Schedule> {
        if let Some(s) = self.exact.get(model) {
            return Some(s.clone());
        }
        if let Some(found) = self.cache.borrow().get(model) {
            return found.clone();
        }
        let name: Vec<char> = model.chars().collect();
        let found = self
            .patterns
            .iter()
            .find(|(p, _)| glob(&p.chars().collect::<Vec<_>>(), &name))
            .map(|(_, s)| s.clone());
        let mut cache = self.cache.borrow_mut();
        if cache.len() < 100_000 {
            cache.insert(model.to_string(), found.clone());
        }
        found
    }

    /// Cost in nano-dollars of a call at `time_ms`, `None` when the model has no price then.
    /// Cached tokens are part of `tokens_in` and are charged at the cached price only.
    pub fn cost_nanos(
        &self,
        model: &str,
        time_ms: i64,
        tokens_in: i64,
        tokens_out: i64,
        tokens_cached: i64,
    ) -> Option<i64> {
        self.prices_of(model)?
            .cost_nanos(time_ms, tokens_in, tokens_out, tokens_cached)
    }

    /// A model's prices, for a caller that prices many calls of one model (the lookup
    /// hashes the name; this is done once).
    pub fn prices_of(&self, model: &str) -> Option<ModelPrices> {
        self.schedule(model).map(ModelPrices)
    }
}

/// One model's dated prices, found in a [`PriceTable`].
#[derive(Debug, Clone)]
pub struct ModelPrices(Schedule);

impl ModelPrices {
    /// As [`PriceTable::cost_nanos`], for this model.
    pub fn cost_nanos(
        &self,
        time_ms: i64,
        tokens_in: i64,
        tokens_out: i64,
        tokens_cached: i64,
    ) -> Option<i64> {
        let dated = self.0.iter().rev().find(|d| d.from_ms <= time_ms)?;
        let tokens_in = tokens_in.max(0);
        let p = dated
            .tiers
            .iter()
            .rev()
            .find(|(above, _)| tokens_in > *above)
            .map_or(dated.base, |(_, p)| *p);
        let cached = tokens_cached.clamp(0, tokens_in) as i128;
        let fresh = tokens_in as i128 - cached;
        let pico = fresh * p.input + cached * p.cached + tokens_out.max(0) as i128 * p.output;
        // Round half up to whole nano-dollars; in 64 bits when it fits (a 128-bit division
        // is a library call, and this runs for every priced event).
        let half_up = pico + 500;
        Some(match i64::try_from(half_up) {
            Ok(p) => p / 1000,
            Err(_) => (half_up / 1000) as i64,
        })
    }
}

/// A dollar amount from an event as nano-dollars.
pub fn usd_to_nanos(usd: f64) -> i64 {
    crate::round::round_i64(usd * 1e9)
}

/// One model's list prices, in US dollars per million tokens.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub input_per_million: f64,
    pub output_per_million: f64,
    /// Price of input tokens served from the prompt cache; defaults to the input price.
    pub cached_input_per_million: Option<f64>,
    /// First day (UTC, `2026-01-01`, or an RFC 3339 time) this price applies to calls; with
    /// several prices for one model, each call gets the latest one in effect at its time.
    pub from: Option<String>,
    /// Higher prices for long calls: the tier with the highest `above_input_tokens` below the
    /// call's `tokens_in` prices the whole call.
    #[serde(default)]
    pub tiers: Vec<Tier>,
}

/// A long-context price tier.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    /// Applies to calls with more input tokens than this.
    pub above_input_tokens: i64,
    pub input_per_million: f64,
    pub output_per_million: f64,
    pub cached_input_per_million: Option<f64>,
}

/// A model pattern's prices: one price, or a list of dated ones (`[[prices."gpt-4o"]]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Prices {
    One(Price),
    Dated(Vec<Price>),
}

impl Prices {
    pub fn entries(&self) -> &[Price] {
        match self {
            Prices::One(p) => std::slice::from_ref(p),
            Prices::Dated(v) => v,
        }
    }
}

/// A price's `from`, as epoch milliseconds (`i64::MIN` when it has none).
pub fn price_from_ms(p: &Price) -> Result<i64, ProcessorError> {
    let Some(f) = &p.from else {
        return Ok(i64::MIN);
    };
    let text = if f.len() == 10 {
        format!("{f}T00:00:00Z")
    } else {
        f.clone()
    };
    inferwatch_schemas::time::parse_rfc3339(&text)
        .ok_or_else(|| config_err!("prices: from = {f:?} is not a date like \"2026-01-01\""))
}

/// The price table shipped in `processor/prices.toml`.
pub fn builtin_prices() -> BTreeMap<String, Prices> {
    toml::from_str(include_str!("../prices.toml")).expect("processor/prices.toml is valid")
}

/// Every price finite and non-negative, and no two prices of a model from the same day.
pub fn validate_prices(prices: &BTreeMap<String, Prices>) -> Result<(), ProcessorError> {
    for (model, prices) in prices {
        let mut froms = std::collections::BTreeSet::new();
        for p in prices.entries() {
            let mut all = vec![
                Some(p.input_per_million),
                Some(p.output_per_million),
                p.cached_input_per_million,
            ];
            for t in &p.tiers {
                all.extend([
                    Some(t.input_per_million),
                    Some(t.output_per_million),
                    t.cached_input_per_million,
                ]);
            }
            if all.iter().flatten().any(|x| !x.is_finite() || *x < 0.0) {
                return Err(config_err!(
                    "prices.\"{model}\": prices must be finite and non-negative"
                ));
            }
            if !froms.insert(price_from_ms(p)?) {
                return Err(config_err!(
                    "prices.\"{model}\": two prices with the same `from`"
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(toml_text: &str) -> PriceTable {
        let prices: BTreeMap<String, Prices> = toml::from_str(toml_text).unwrap();
        PriceTable::new(&prices).unwrap()
    }

    const T: &str = r#"
        ["gpt-4o-mini"]
        input_per_million = 0.15
        output_per_million = 0.6
        cached_input_per_million = 0.075

        ["gpt-4o*"]
        input_per_million = 2.5
        output_per_million = 10.0

        ["gpt-*"]
        input_per_million = 1.0
        output_per_million = 1.0

        [["gemini-pro"]]
        from = "2026-01-01"
        input_per_million = 1.25
        output_per_million = 10.0
        tiers = [{ above_input_tokens = 200000, input_per_million = 2.5, output_per_million = 15.0 }]

        [["gemini-pro"]]
        from = "2026-03-01"
        input_per_million = 1.0
        output_per_million = 8.0
    "#;

    const JAN: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z
    const MAR: i64 = 1_772_323_200_000; // 2026-03-01T00:00:00Z

    #[test]
    fn prices_fresh_cached_and_output_tokens() {
        // 1,000 fresh × 150,000 pico + 1,000 cached × 75,000 pico + 500 out × 600,000 pico
        // = 525,000,000 pico = 525,000 nano-dollars ($0.000525).
        let t = table(T);
        assert_eq!(
            t.cost_nanos("gpt-4o-mini", JAN, 2000, 500, 1000),
            Some(525_000)
        );
        assert_eq!(t.cost_nanos("unknown", JAN, 2000, 500, 0), None);
    }

    #[test]
    fn exact_names_beat_patterns_and_specific_patterns_beat_general_ones() {
        let t = table(T);
        // gpt-4o-2024: "gpt-4o*" (6 literal characters) beats "gpt-*" (4).
        // 1,000 in × 2,500,000 pico + 100 out × 10,000,000 pico = 3,500,000 nano.
        assert_eq!(
            t.cost_nanos("gpt-4o-2024", JAN, 1000, 100, 0),
            Some(3_500_000)
        );
        // gpt-3.5: only "gpt-*": 1,100 tokens × 1,000,000 pico = 1,100,000 nano.
        assert_eq!(t.cost_nanos("gpt-3.5", JAN, 1000, 100, 0), Some(1_100_000));
        // The exact name wins over both patterns (and a cached repeat of the lookup agrees).
        for _ in 0..2 {
            assert_eq!(t.cost_nanos("gpt-4o-mini", JAN, 1000, 0, 0), Some(150_000));
        }
    }

    #[test]
    fn tiers_and_dates_pick_the_price_of_the_call() {
        let t = table(T);
        // Before any `from`: unpriced.
        assert_eq!(t.cost_nanos("gemini-pro", JAN - 1, 1000, 0, 0), None);
        // January, short call: 1,000 × 1,250,000 + 1,000 × 10,000,000 pico = 11,250,000 nano.
        assert_eq!(
            t.cost_nanos("gemini-pro", JAN, 1000, 1000, 0),
            Some(11_250_000)
        );
        // January, 200,000 input tokens is not above the tier: base price.
        assert_eq!(
            t.cost_nanos("gemini-pro", JAN, 200_000, 0, 0),
            Some(250_000_000)
        );
        // 200,001 tokens: the whole call at the tier's price: 200,001 × 2,500,000 pico
        // + 10 × 15,000,000 pico = 500,152,500 nano.
        assert_eq!(
            t.cost_nanos("gemini-pro", JAN, 200_001, 10, 0),
            Some(500_152_500)
        );
        // From March the new price, and it has no tiers.
        assert_eq!(
            t.cost_nanos("gemini-pro", MAR, 200_001, 10, 0),
            Some(200_081_000)
        );
        assert_eq!(
            t.cost_nanos("gemini-pro", MAR - 1, 1000, 1000, 0),
            Some(11_250_000)
        );
    }

    #[test]
    fn ten_million_tiny_costs_sum_exactly() {
        let t = table(T);
        // 3 input tokens of gpt-4o-mini: 450,000 pico = 450 nano-dollars each.
        let total: i64 = (0..10_000_000)
            .map(|_| t.cost_nanos("gpt-4o-mini", JAN, 3, 0, 0).unwrap())
            .sum();
        assert_eq!(total, 4_500_000_000);
        assert_eq!(total as f64 / 1e9, 4.5);
    }

    #[test]
    fn costs_past_64_bit_pico_dollars_round_as_below() {
        let t = table(T);
        // gpt-4o-mini output: 600,000 pico a token. 10^14 tokens are 6e19 pico, past
        // i64::MAX (9.2e18): the 128-bit path; 10^13 tokens stay in 64 bits.
        for tokens in [10_000_000_000_000i64, 100_000_000_000_000] {
            let want = ((tokens as i128 * 600_000 + 500) / 1000) as i64;
            assert_eq!(t.cost_nanos("gpt-4o-mini", JAN, 0, tokens, 0), Some(want));
        }
    }

    #[test]
    fn converts_event_dollars() {
        assert_eq!(usd_to_nanos(0.000_012_345), 12_345);
    }
}
