use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, RecordBatch, StringArray, UInt32Array,
};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::datasource::MemTable;
use datafusion::logical_expr::{EmitTo, GroupsAccumulator};
use datafusion::prelude::SessionContext;

use super::*;

/// A deterministic sample: (group, confidence, correct, latency_ms, value in [0,1], category,
/// is_reference).
struct Sample {
    group: Vec<u32>,
    conf: Vec<Option<f64>>,
    correct: Vec<Option<bool>>,
    latency: Vec<Option<f64>>,
    value: Vec<f64>,
    category: Vec<&'static str>,
    is_ref: Vec<bool>,
}

fn sample(n: usize) -> Sample {
    let mut x: u64 = 0x9e3779b97f4a7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 11) as f64 / (1u64 << 53) as f64
    };
    let cats = ["cat", "dog", "eel", "fox"];
    let mut s = Sample {
        group: vec![],
        conf: vec![],
        correct: vec![],
        latency: vec![],
        value: vec![],
        category: vec![],
        is_ref: vec![],
    };
    for i in 0..n {
        let c = next();
        let hit = next() < c * 0.9;
        s.group.push((i % 3) as u32);
        s.conf.push((i % 17 != 0).then_some(c));
        s.correct.push((i % 13 != 0).then_some(hit));
        s.latency
            .push((i % 11 != 0).then(|| 5.0 + 500.0 * next() * next()));
        let r = i % 2 == 0;
        s.value.push(if r { next() } else { next().powf(1.5) });
        s.category
            .push(cats[((next() * if r { 4.0 } else { 2.5 }) as usize).min(3)]);
        s.is_ref.push(r);
    }
    s
}

/// DataFusion runs queries on Tokio.
fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

fn batch(s: &Sample) -> RecordBatch {
    let schema = Schema::new(vec![
        Field::new("g", DataType::UInt32, false),
        Field::new("confidence", DataType::Float64, true),
        Field::new("correct", DataType::Boolean, true),
        Field::new("latency_ms", DataType::Float64, true),
        Field::new("value", DataType::Float64, false),
        Field::new("category", DataType::Utf8, false),
        Field::new("is_ref", DataType::Boolean, false),
    ]);
    let cols: Vec<ArrayRef> = vec![
        Arc::new(UInt32Array::from(s.group.clone())),
        Arc::new(Float64Array::from(s.conf.clone())),
        Arc::new(BooleanArray::from(s.correct.clone())),
        Arc::new(Float64Array::from(s.latency.clone())),
        Arc::new(Float64Array::from(s.value.clone())),
        Arc::new(StringArray::from(s.category.clone())),
        Arc::new(BooleanArray::from(s.is_ref.clone())),
    ];
    RecordBatch::try_new(Arc::new(schema), cols).unwrap()
}

/// ECE with 10 equal-width bins, written out plainly.
fn naive_ece(pairs: &[(f64, bool)]) -> f64 {
    let mut bins = vec![(0usize, 0.0f64, 0usize); 10];
    for &(c, y) in pairs {
        let b = (((c * 10.0).ceil() as usize).max(1) - 1).min(9);
        bins[b].0 += 1;
        bins[b].1 += c;
        bins[b].2 += y as usize;
    }
    let n = pairs.len() as f64;
    bins.iter()
        .filter(|b| b.0 > 0)
        .map(|&(k, s, h)| k as f64 / n * (h as f64 / k as f64 - s / k as f64).abs())
        .sum()
}

/// AUROC by counting pairs, ties (same 1/10000 bucket) as one half.
fn naive_auroc(pairs: &[(f64, bool)]) -> f64 {
    let r = |c: f64| (c * RANK_STEPS).round() as i64;
    let (mut sum, mut n) = (0.0, 0.0);
    for &(a, ya) in pairs.iter().filter(|p| p.1) {
        for &(b, _) in pairs.iter().filter(|p| !p.1) {
            let _ = ya;
            sum += match r(a).cmp(&r(b)) {
                std::cmp::Ordering::Greater => 1.0,
                std::cmp::Ordering::Equal => 0.5,
                std::cmp::Ordering::Less => 0.0,
            };
            n += 1.0;
        }
    }
    sum / n
}

fn labeled(s: &Sample, g: u32) -> Vec<(f64, bool)> {
    (0..s.group.len())
        .filter(|&i| s.group[i] == g)
        .filter_map(|i| Some((s.conf[i]?, s.correct[i]?)))
        .collect()
}

fn col_f64(b: &RecordBatch, i: usize) -> Vec<f64> {
    b.column(i)
        .as_primitive::<arrow::datatypes::Float64Type>()
        .values()
        .to_vec()
}

#[test]
fn sql_values_match_plain_formulas() {
    let s = sample(3000);
    let b = batch(&s);
    let ctx = SessionContext::new();
    register(&ctx, FunctionParams::default());
    let table = MemTable::try_new(b.schema(), vec![vec![b]]).unwrap();
    ctx.register_table("t", Arc::new(table)).unwrap();
    let sql = "SELECT g, ece(confidence, correct), mce(confidence, correct), \
               brier(confidence, correct), auroc(confidence, correct), \
               latency_quantile(latency_ms, 0.99), ks(value, is_ref) \
               FROM t GROUP BY g ORDER BY g";
    let out = rt()
        .block_on(async { ctx.sql(sql).await?.collect().await })
        .unwrap();
    let out = arrow::compute::concat_batches(&out[0].schema(), &out).unwrap();
    assert_eq!(out.num_rows(), 3);
    for g in 0..3u32 {
        let pairs = labeled(&s, g);
        let row = g as usize;
        let ece = col_f64(&out, 1)[row];
        assert!((ece - naive_ece(&pairs)).abs() < 1e-12, "ece {ece}");
        let brier: f64 = pairs
            .iter()
            .map(|&(c, y)| (c - y as u8 as f64).powi(2))
            .sum::<f64>()
            / pairs.len() as f64;
        assert!((col_f64(&out, 3)[row] - brier).abs() < 1e-12);
        assert!((col_f64(&out, 4)[row] - naive_auroc(&pairs)).abs() < 1e-12);
        assert!(col_f64(&out, 2)[row] >= ece);
        let mut lat: Vec<f64> = (0..s.group.len())
            .filter(|&i| s.group[i] == g)
            .filter_map(|i| s.latency[i])
            .collect();
        lat.sort_by(f64::total_cmp);
        let exact = lat[((lat.len() as f64 * 0.99).ceil() as usize).min(lat.len()) - 1];
        let p99 = col_f64(&out, 5)[row];
        assert!(
            (p99 - exact).abs() <= exact * 1e-3 + 1e-3,
            "p99 {p99} vs {exact}"
        );
        let ks = col_f64(&out, 6)[row];
        assert!(ks > 0.05 && ks < 1.0, "ks {ks}");
    }
}

/// Every function: one accumulator fed row by row, a groups accumulator fed the batch, and
/// states split in two and merged back give the same bits.
#[test]
fn accumulators_agree_bit_for_bit() {
    let s = sample(2000);
    let b = batch(&s);
    let ctx = SessionContext::new();
    register(&ctx, FunctionParams::default());
    let table = MemTable::try_new(b.schema(), vec![vec![b.clone()]]).unwrap();
    ctx.register_table("t", Arc::new(table)).unwrap();
    let calls = [
        "ece(confidence, correct)",
        "mce(confidence, correct)",
        "brier(confidence, correct)",
        "auroc(confidence, correct)",
        "reliability(confidence, correct)",
        "latency_quantile(latency_ms, 0.5)",
        "cost_quantile(latency_ms, 0.95)",
        "psi(value, is_ref)",
        "ks(value, is_ref)",
        "js(category, is_ref)",
    ];
    for call in calls {
        // DataFusion's own plan: repartitioned groups, partial and final states.
        let grouped = format!("SELECT g, {call} AS v FROM t GROUP BY g ORDER BY g");
        let single = format!("SELECT {call} AS v FROM t WHERE g = 1");
        let run = |sql: String| {
            let out = rt()
                .block_on(async { ctx.sql(&sql).await?.collect().await })
                .unwrap();
            arrow::compute::concat_batches(&out[0].schema(), &out).unwrap()
        };
        let grouped = run(grouped);
        let single = run(single);
        let v = grouped.column_by_name("v").unwrap();
        assert_eq!(v.len(), 3, "{call}");
        assert_eq!(
            v.slice(1, 1).to_data(),
            single.column(0).to_data(),
            "{call}: group 1 of a grouped query equals the filtered one"
        );
    }
}

/// States leave a groups accumulator and come back without losing a bit, and merging
/// through the encoded states equals merging the states themselves.
#[test]
fn states_round_trip_exactly() {
    let s = sample(1500);
    let b = batch(&s);
    let f = CalibrationFn::new(CalibrationValue::Ece, FunctionParams::default().bins);
    let args: Vec<ArrayRef> = vec![b.column(1).clone(), b.column(2).clone()];
    let groups: Vec<usize> = s.group.iter().map(|&g| g as usize).collect();
    let halves = [(0, 700), (700, 1500)];
    let mut merged = Groups::new(f);
    let mut direct = vec![Calibration::default(); 3];
    for (lo, hi) in halves {
        let mut part = Groups::new(f);
        let a: Vec<ArrayRef> = args.iter().map(|c| c.slice(lo, hi - lo)).collect();
        part.update_batch(&a, &groups[lo..hi], None, 3).unwrap();
        for (d, p) in direct.iter_mut().zip(&part.states) {
            f.merge(d, p);
        }
        let state = part.state(EmitTo::All).unwrap();
        merged.merge_batch(&state, &[0, 1, 2], 3).unwrap();
    }
    let mut restored = Groups::new(f);
    restored
        .merge_batch(&merged.state(EmitTo::All).unwrap(), &[0, 1, 2], 3)
        .unwrap();
    let a = restored.evaluate(EmitTo::All).unwrap();
    let want: Vec<f64> = direct
        .iter()
        .map(|c| c.ece_mce(FunctionParams::default().bins).unwrap().0)
        .collect();
    assert_eq!(
        a.as_primitive::<arrow::datatypes::Float64Type>()
            .values()
            .to_vec(),
        want
    );
    for (d, r) in direct.iter().zip(&restored.states) {
        assert_eq!(d.brier_sum.to_bits(), r.brier_sum.to_bits());
    }
}

#[test]
fn a_quantile_needs_a_literal_between_0_and_1() {
    let ctx = SessionContext::new();
    register(&ctx, FunctionParams::default());
    let s = sample(10);
    let b = batch(&s);
    let table = MemTable::try_new(b.schema(), vec![vec![b]]).unwrap();
    ctx.register_table("t", Arc::new(table)).unwrap();
    let sql = "SELECT latency_quantile(latency_ms, 1) AS a, latency_quantile(latency_ms, 1.0) AS b FROM t";
    let out = rt()
        .block_on(async { ctx.sql(sql).await?.collect().await })
        .unwrap();
    assert_eq!(out[0].column(0).to_data(), out[0].column(1).to_data());
    for q in ["1.5", "value"] {
        let sql = format!("SELECT latency_quantile(latency_ms, {q}) FROM t");
        let err = rt()
            .block_on(async { ctx.sql(&sql).await?.collect().await })
            .unwrap_err()
            .to_string();
        assert!(err.contains("a number from 0 to 1"), "{err}");
    }
}
