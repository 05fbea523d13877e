//! Pricing events from the price table. Money is integer nano-dollars.

use std::collections::HashMap;

use crate::config::Price;

/// Per-token prices in pico-dollars, so list prices such as $0.075 / 1M stay exact.
#[derive(Debug, Clone, Copy)]
struct PicoPrice {
    input: i128,
    output: i128,
    cached: i128,
}

fn pico_per_token(per_million: f64) -> i128 {
    // $/1M tokens × 1e12 pico/$ / 1e6 tokens = pico-dollars per token.
    (per_million * 1e6).round() as i128
}

/// Looks up a model's price and computes an event's cost.
#[derive(Debug, Clone, Default)]
pub struct PriceTable {
    models: HashMap<String, PicoPrice>,
}

impl PriceTable {
    pub fn new<'a>(prices: impl IntoIterator<Item = (&'a String, &'a Price)>) -> Self {
        let models = prices
            .into_iter()
            .map(|(m, p)| {
                let input = pico_per_token(p.input_per_million);
                let price = PicoPrice {
                    input,
                    output: pico_per_token(p.output_per_million),
                    cached: p.cached_input_per_million.map_or(input, pico_per_token),
                };
                (m.clone(), price)
            })
            .collect();
        Self { models }
    }

    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
    }

    /// Cost in nano-dollars of a call, `None` when the model has no price. Cached tokens are
    /// part of `tokens_in` and are charged at the cached price only.
    pub fn cost_nanos(
        &self,
        model: &str,
        tokens_in: i64,
        tokens_out: i64,
        tokens_cached: i64,
    ) -> Option<i64> {
        let p = self.models.get(model)?;
        let cached = tokens_cached.clamp(0, tokens_in.max(0)) as i128;
        let fresh = tokens_in.max(0) as i128 - cached;
        let pico = fresh * p.input + cached * p.cached + tokens_out.max(0) as i128 * p.output;
        // Round half up to whole nano-dollars.
        Some(((pico + 500) / 1000) as i64)
    }
}

/// A dollar amount from an event as nano-dollars.
pub fn usd_to_nanos(usd: f64) -> i64 {
    (usd * 1e9).round() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> PriceTable {
        let mut m = std::collections::BTreeMap::new();
        m.insert(
            "gpt-4o-mini".to_string(),
            Price {
                input_per_million: 0.15,
                output_per_million: 0.6,
                cached_input_per_million: Some(0.075),
            },
        );
        PriceTable::new(&m)
    }

    #[test]
    fn prices_fresh_cached_and_output_tokens() {
        // 1000 fresh × 150 pico + 1000 cached × 75 pico + 500 out × 600 pico
        // (150_000, 75_000 and 600_000 pico per token) = 525_000 nano-dollars ($0.000525).
        assert_eq!(
            table().cost_nanos("gpt-4o-mini", 2000, 500, 1000),
            Some(525_000)
        );
        assert_eq!(table().cost_nanos("unknown", 2000, 500, 0), None);
    }

    #[test]
    fn converts_event_dollars() {
        assert_eq!(usd_to_nanos(0.000_012_345), 12_345);
    }
}
