//! Pricing: events without `cost_usd` get it from the price table (`cost_source` =
//! `table`); events that carry a cost keep it.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float64Array, RecordBatch, StringBuilder};
use arrow::datatypes::{Float64Type, Int64Type, TimestampMillisecondType};
use inferwatch_schemas::tables::events as col;
use inferwatch_schemas::validate::COST_SOURCE_TABLE;

use super::{Collector, Operator};
use crate::error::Result;
use crate::operator::opt;
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

    /// `events` with every missing cost the price table knows filled in.
    pub fn price(&self, events: RecordBatch) -> Result<RecordBatch> {
        let n = events.num_rows();
        let cost = events.column(col::COST_USD).as_primitive::<Float64Type>();
        if self.prices.is_empty() || cost.null_count() == 0 {
            return Ok(events);
        }
        let model = events.column(col::MODEL).as_string::<i32>();
        let tin = events.column(col::TOKENS_IN).as_primitive::<Int64Type>();
        let tout = events.column(col::TOKENS_OUT).as_primitive::<Int64Type>();
        let tcached = events
            .column(col::TOKENS_CACHED)
            .as_primitive::<Int64Type>();
        let source = events.column(col::COST_SOURCE).as_string::<i32>();
        let ts = events
            .column(col::TIMESTAMP)
            .as_primitive::<TimestampMillisecondType>();
        let get =
            |a: &arrow::array::Int64Array, i: usize| if a.is_valid(i) { a.value(i) } else { 0 };
        let mut usd = Vec::with_capacity(n);
        let mut src = StringBuilder::with_capacity(n, n * 5);
        // A batch holds few models: each is looked up once (up to a bound).
        let mut seen: Vec<(&str, Option<ModelPrices>)> = Vec::new();
        for i in 0..n {
            if cost.is_valid(i) {
                src.append_option(opt(source, i));
                usd.push(Some(cost.value(i)));
                continue;
            }
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
            src.append_option(nanos.map(|_| COST_SOURCE_TABLE));
            // Exact: nano-dollars below 2^52 survive the division and `usd_to_nanos`.
            usd.push(nanos.map(|c| c as f64 / 1e9));
        }
        let mut columns = events.columns().to_vec();
        columns[col::COST_USD] = Arc::new(Float64Array::from(usd)) as ArrayRef;
        columns[col::COST_SOURCE] = Arc::new(src.finish());
        Ok(RecordBatch::try_new(events.schema(), columns)?)
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
}
