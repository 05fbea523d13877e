//! Pricing: events without `cost_usd` get it from the price table (`cost_source` =
//! `table`); events that carry a cost keep it.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{
    Array, AsArray, BooleanBufferBuilder, Float64Array, Int64Array, RecordBatch, StringArray,
};
use arrow::buffer::{BooleanBuffer, NullBuffer, OffsetBuffer};
use arrow::datatypes::{Float64Type, Int64Type, TimestampMillisecondType};
use inferwatch_schemas::bytes::append;
use inferwatch_schemas::tables::events as col;
use inferwatch_schemas::validate::COST_SOURCE_TABLE;

use super::{Collector, Operator};
use crate::error::Result;
use crate::price::{ModelPrices, PriceTable, Prices};

pub struct Pricing {
    prices: PriceTable,
}

impl Pricing {
    pub fn new(config: &BTreeMap<String, Prices>) -> Result<Self> {
        Ok(Self {
            prices: PriceTable::new(config)?,
        })
    }

    /// `events` with every missing cost the price table knows filled in. Only the rows
    /// without a cost are visited to price; the rest keep their values as one copy.
    pub fn price(&self, events: RecordBatch) -> Result<RecordBatch> {
        let n = events.num_rows();
        let cost = events.column(col::COST_USD).as_primitive::<Float64Type>();
        let Some(nulls) = cost
            .nulls()
            .filter(|m| m.null_count() > 0 && !self.prices.is_empty())
        else {
            return Ok(events);
        };
        // Set where the event carried its own cost.
        let costed = nulls.inner();
        let model = events.column(col::MODEL).as_string::<i32>();
        let tin = events.column(col::TOKENS_IN).as_primitive::<Int64Type>();
        let tout = events.column(col::TOKENS_OUT).as_primitive::<Int64Type>();
        let tcached = events
            .column(col::TOKENS_CACHED)
            .as_primitive::<Int64Type>();
        let ts = events
            .column(col::TIMESTAMP)
            .as_primitive::<TimestampMillisecondType>();
        let get = |a: &Int64Array, i: usize| if a.is_valid(i) { a.value(i) } else { 0 };
        let mut usd = cost.values().to_vec();
        let mut priced = BooleanBufferBuilder::new(n);
        priced.append_n(n, false);
        // A batch holds few models: each is looked up once (up to a bound).
        let mut seen: Vec<(&str, Option<ModelPrices>)> = Vec::new();
        for i in (!costed).set_indices() {
            let m = model.value(i);
            let k = match seen.iter().position(|(name, _)| *name == m) {
                Some(k) => k,
                None => {
                    let prices = self.prices.prices_of(m);
                    if seen.len() == MODELS_SEEN {
                        seen.pop();
                    }
                    seen.push((m, prices));
                    seen.len() - 1
                }
            };
            let nanos = seen[k].1.as_ref().and_then(|p| {
                p.cost_nanos(ts.value(i), get(tin, i), get(tout, i), get(tcached, i))
            });
            if let Some(c) = nanos {
                // Exact: nano-dollars below 2^52 survive the division and `usd_to_nanos`.
                usd[i] = c as f64 / 1e9;
                priced.set_bit(i, true);
            }
        }
        let priced = priced.finish();
        let source = events.column(col::COST_SOURCE).as_string::<i32>();
        let valid = NullBuffer::new(costed | &priced);
        let mut columns = events.columns().to_vec();
        columns[col::COST_USD] = Arc::new(Float64Array::new(usd.into(), Some(valid)));
        columns[col::COST_SOURCE] = Arc::new(cost_sources(source, costed, &priced));
        Ok(RecordBatch::try_new(events.schema(), columns)?)
    }
}

/// The cost sources after pricing: `table` in the `priced` rows, the row's own source
/// where the event carried a cost (`costed`), null elsewhere.
fn cost_sources(
    source: &StringArray,
    costed: &BooleanBuffer,
    priced: &BooleanBuffer,
) -> StringArray {
    let n = source.len();
    let kept = match source.nulls() {
        Some(nulls) => nulls.inner() & costed,
        None => costed.clone(),
    };
    let mut offsets = Vec::with_capacity(n + 1);
    let mut bytes = Vec::with_capacity(n * COST_SOURCE_TABLE.len());
    offsets.push(0i32);
    for i in 0..n {
        if priced.value(i) {
            append(&mut bytes, COST_SOURCE_TABLE.as_bytes());
        } else if kept.value(i) {
            append(&mut bytes, source.value(i).as_bytes());
        }
        offsets.push(i32::try_from(bytes.len()).expect("a batch's cost sources fit in i32"));
    }
    let valid = NullBuffer::new(&kept | priced);
    // SAFETY: the offsets grow from 0 to `bytes.len()`, and each row's bytes are a whole
    // `&str` (the table's word or the row's own source), so every value is valid UTF-8.
    unsafe {
        StringArray::new_unchecked(
            OffsetBuffer::new_unchecked(offsets.into()),
            bytes.into(),
            Some(valid),
        )
    }
}

/// How many models a batch remembers the prices of.
const MODELS_SEEN: usize = 32;

impl Operator for Pricing {
    fn name(&self) -> &'static str {
        "pricing"
    }

    fn process_batch(&mut self, batch: RecordBatch, _out: &mut Collector) -> Result<RecordBatch> {
        self.price(batch)
    }
}

#[cfg(test)]
mod tests {
    use inferwatch_schemas::decode::EventDecoder;
    use inferwatch_schemas::raw::RawBatch;

    use super::*;
    use crate::operator::opt;

    /// Rows with a cost keep it and its source; rows without get the table's cost and
    /// `table`, or stay null for a model the table does not know.
    #[test]
    fn missing_costs_come_from_the_table_and_say_so() {
        let prices: BTreeMap<String, Prices> = toml::from_str(
            "[\"gpt-4o-mini\"]\ninput_per_million = 0.15\noutput_per_million = 0.6\n",
        )
        .unwrap();
        let rows = [
            r#"{"event_id":"a","timestamp":1,"service":"s","model":"gpt-4o-mini","cost_usd":0.5}"#,
            r#"{"event_id":"b","timestamp":1,"service":"s","model":"gpt-4o-mini","tokens_in":1000,"tokens_out":500}"#,
            r#"{"event_id":"c","timestamp":1,"service":"s","model":"other","tokens_in":1000}"#,
            r#"{"event_id":"d","timestamp":1,"service":"s","model":"gpt-4o-mini"}"#,
        ];
        let mut raw = RawBatch::new(Arc::from("t"), 0);
        for (i, r) in rows.iter().enumerate() {
            raw.push(r.as_bytes(), i as i64);
        }
        let events = EventDecoder::default().decode(&raw).events;
        let priced = Pricing::new(&prices).unwrap().price(events).unwrap();
        let cost = priced.column(col::COST_USD).as_primitive::<Float64Type>();
        let source = priced.column(col::COST_SOURCE).as_string::<i32>();
        // 1,000 × $0.15 + 500 × $0.60 per million tokens = $0.00045.
        let want_cost = [Some(0.5), Some(0.00045), None, Some(0.0)];
        let want_source = [Some("event"), Some("table"), None, Some("table")];
        for i in 0..rows.len() {
            assert_eq!(
                cost.is_valid(i).then(|| cost.value(i)),
                want_cost[i],
                "row {i}"
            );
            assert_eq!(opt(source, i), want_source[i], "row {i}");
        }
        assert_eq!(source.null_count(), 1);
    }

    /// A batch of many models (more than a batch remembers), with and without costs, tokens
    /// and prices, priced as the table prices each row on its own.
    #[test]
    fn a_batch_is_priced_row_by_row_as_the_table_says() {
        let mut config = String::new();
        for m in 0..40 {
            config += &format!(
                "[\"m{m}\"]\ninput_per_million = {}\noutput_per_million = {}\n",
                0.1 + m as f64,
                0.3 * m as f64
            );
        }
        let prices: BTreeMap<String, Prices> = toml::from_str(&config).unwrap();
        let table = PriceTable::new(&prices).unwrap();
        let mut raw = RawBatch::new(Arc::from("t"), 0);
        let mut state = 7u64;
        let mut next = |m: u64| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) % m
        };
        for i in 0..3000 {
            let model = next(45); // m40..m44 have no price
            let cost = match next(3) {
                0 => format!(r#","cost_usd":{}.25"#, next(9)),
                _ => String::new(),
            };
            let tokens = match next(4) {
                0 => String::new(),
                _ => format!(r#","tokens_in":{},"tokens_out":{}"#, next(5000), next(900)),
            };
            let line = format!(
                r#"{{"event_id":"e{i}","timestamp":{i},"service":"s","model":"m{model}"{cost}{tokens}}}"#
            );
            raw.push(line.as_bytes(), i);
        }
        let events = EventDecoder::default().decode(&raw).events;
        let priced = Pricing::new(&prices)
            .unwrap()
            .price(events.clone())
            .unwrap();
        let before = events.column(col::COST_USD).as_primitive::<Float64Type>();
        let cost = priced.column(col::COST_USD).as_primitive::<Float64Type>();
        let source = priced.column(col::COST_SOURCE).as_string::<i32>();
        let model = events.column(col::MODEL).as_string::<i32>();
        let int = |c: usize, i: usize| {
            let a = events.column(c).as_primitive::<Int64Type>();
            if a.is_valid(i) {
                a.value(i)
            } else {
                0
            }
        };
        let (mut from_table, mut unknown) = (0, 0);
        for i in 0..events.num_rows() {
            let (want_cost, want_source) = if before.is_valid(i) {
                (Some(before.value(i)), Some("event"))
            } else {
                let nanos = table.cost_nanos(
                    model.value(i),
                    i as i64,
                    int(col::TOKENS_IN, i),
                    int(col::TOKENS_OUT, i),
                    int(col::TOKENS_CACHED, i),
                );
                from_table += usize::from(nanos.is_some());
                unknown += usize::from(nanos.is_none());
                (nanos.map(|c| c as f64 / 1e9), nanos.map(|_| "table"))
            };
            let got = cost.is_valid(i).then(|| cost.value(i));
            assert_eq!(got, want_cost, "row {i}");
            assert_eq!(opt(source, i), want_source, "row {i}");
        }
        assert!(from_table > 1000 && unknown > 50, "{from_table} {unknown}");
    }
}
