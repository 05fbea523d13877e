//! What the report shows, read from the tables with SQL: per service and model a time
//! series over windows and the reliability bins, the budgets' burn, the alert transitions
//! and the dead letters by reason.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Result;
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type};
use inferwatch_sink::Store;

use crate::commands::query;

/// Which part of the tables the report covers.
pub struct Scope {
    /// Windows starting at most this long before the newest window's end.
    pub since: Option<Duration>,
    pub service: Option<String>,
}

/// One window of one (service, model), over its versions and routes.
#[derive(Debug, Clone, Default)]
pub struct Point {
    pub t: i64,
    pub requests: f64,
    pub error_rate: Option<f64>,
    pub p50: Option<f64>,
    pub p99: Option<f64>,
    pub ece: Option<f64>,
    pub auroc: Option<f64>,
    pub overconfidence: Option<f64>,
    pub psi: Option<f64>,
    pub js: Option<f64>,
    pub cost_per_1k: Option<f64>,
    pub runaway: Option<f64>,
    pub wasted: Option<f64>,
}

/// A reliability bin over the report's windows.
#[derive(Debug, Clone)]
pub struct Bin {
    pub bin: i64,
    pub lower: f64,
    pub upper: f64,
    pub count: i64,
    pub confidence: f64,
    pub accuracy: f64,
}

/// One (service, model).
#[derive(Debug, Default)]
pub struct Key {
    pub service: String,
    pub model: String,
    pub points: Vec<Point>,
    pub bins: Vec<Bin>,
}

/// An alert or breaker transition.
#[derive(Debug, Clone)]
pub struct Transition {
    pub t: i64,
    pub kind: String,
    pub rule: String,
    pub state: String,
    pub severity: String,
    pub key: String,
    pub summary: String,
}

/// Everything the report shows.
#[derive(Debug, Default)]
pub struct ReportData {
    pub from_ms: i64,
    pub to_ms: i64,
    pub window_ms: i64,
    pub metric_rows: i64,
    pub keys: Vec<Key>,
    /// Per budgeted service or tenant: (window end, burn rate).
    pub burn: BTreeMap<String, Vec<(i64, f64)>>,
    pub transitions: Vec<Transition>,
    /// Per reason class: payloads and one reason as an example.
    pub dead: Vec<(String, i64, String)>,
}

/// Reads what `scope` covers; `None` when `metrics` has no window there.
pub fn read(
    rt: &tokio::runtime::Runtime,
    store: &Store,
    scope: &Scope,
) -> Result<Option<ReportData>> {
    let q = |sql: String| rt.block_on(query::run(store, &sql));
    let span = q(format!(
        "SELECT CAST(min(window_start) AS BIGINT) AS lo, CAST(max(window_end) AS BIGINT) AS hi, \
         CAST(max(window_end) AS BIGINT) - CAST(max(window_start) AS BIGINT) AS size \
         FROM metrics_latest {}",
        service_filter(scope, "WHERE")
    ))?;
    let (Some(lo), Some(hi)) = (int(&span, "lo", 0), int(&span, "hi", 0)) else {
        return Ok(None);
    };
    let size = int(&span, "size", 0).unwrap_or(0);
    let from_ms = match scope.since {
        Some(d) => (hi - d.as_millis() as i64).max(lo),
        None => lo,
    };
    let mut data = ReportData {
        from_ms,
        to_ms: hi,
        window_ms: size,
        ..ReportData::default()
    };
    let filter = format!(
        "WHERE CAST(window_start AS BIGINT) >= {from_ms} {}",
        service_filter(scope, "AND")
    );
    data.keys = keys(&q(series_sql(&filter))?, &q(bins_sql(&filter))?);
    data.metric_rows = int(
        &q(format!("SELECT count(*) AS n FROM metrics_latest {filter}"))?,
        "n",
        0,
    )
    .unwrap_or(0);
    data.burn = burn(&q(format!(
        "SELECT scope || ' ' || name AS who, CAST(window_end AS BIGINT) AS t, burn_rate \
         FROM budgets WHERE CAST(window_start AS BIGINT) >= {from_ms} ORDER BY who, t"
    ))?);
    data.transitions = transitions(&q(format!(
        "SELECT CAST(window_end AS BIGINT) AS t, kind, rule, state, coalesce(severity, '') AS severity, \
         coalesce(service, '') || '/' || coalesce(model, tenant, '') AS key, summary FROM alerts \
         {filter} AND NOT renotify AND state IN ('firing', 'resolved', 'open', 'half_open', 'closed') \
         ORDER BY t, rule, key"
    ))?);
    data.dead = dead(&q(format!(
        "SELECT reason, count(*) AS n FROM dead_letter \
         WHERE CAST(stream_time AS BIGINT) >= {from_ms} GROUP BY reason"
    ))?);
    Ok(Some(data))
}

fn service_filter(scope: &Scope, word: &str) -> String {
    match &scope.service {
        Some(s) => format!("{word} service = '{}'", s.replace('\'', "''")),
        None => String::new(),
    }
}

/// Per (service, model, window): the metrics over versions and routes, weighted by what
/// each is a share of (requests, labeled events).
fn series_sql(filter: &str) -> String {
    let labeled = |m: &str| {
        format!(
            "sum({m} * labeled) / nullif(sum(CASE WHEN {m} IS NULL THEN 0 ELSE labeled END), 0) AS {m}"
        )
    };
    format!(
        "SELECT service, model, CAST(window_start AS BIGINT) AS t, \
         CAST(sum(requests) AS DOUBLE) AS requests, \
         sum(errors) / nullif(CAST(sum(requests) AS DOUBLE), 0) AS error_rate, \
         sum(latency_p50_ms * requests) / nullif(sum(CASE WHEN latency_p50_ms IS NULL THEN 0 ELSE requests END), 0) AS p50, \
         sum(latency_p99_ms * requests) / nullif(sum(CASE WHEN latency_p99_ms IS NULL THEN 0 ELSE requests END), 0) AS p99, \
         {}, {}, {}, avg(psi_confidence) AS psi, avg(js_prediction) AS js, \
         1000 * sum(cost_usd) / nullif(CAST(sum(requests) AS DOUBLE), 0) AS cost_per_1k, \
         CAST(sum(runaway_sessions) AS DOUBLE) AS runaway, sum(wasted_cost_usd) AS wasted \
         FROM metrics_latest {filter} GROUP BY service, model, window_start \
         ORDER BY service, model, t",
        labeled("ece"),
        labeled("auroc"),
        labeled("overconfidence"),
    )
}

/// Per (service, model, bin) over the report's windows: the bins of a reliability diagram.
fn bins_sql(filter: &str) -> String {
    format!(
        "SELECT service, model, CAST(bin AS BIGINT) AS bin, min(lower) AS lower, max(upper) AS upper, \
         CAST(sum(count) AS BIGINT) AS count, \
         sum(mean_confidence * count) / sum(count) AS confidence, \
         sum(accuracy * count) / sum(count) AS accuracy \
         FROM calibration_bins_latest {filter} GROUP BY service, model, bin \
         HAVING sum(count) > 0 ORDER BY service, model, bin"
    )
}

fn keys(series: &[RecordBatch], bins: &[RecordBatch]) -> Vec<Key> {
    let mut keys: BTreeMap<(String, String), Key> = BTreeMap::new();
    for b in series {
        let (service, model) = (strings(b, "service"), strings(b, "model"));
        let f = |name: &str| floats(b, name);
        let (req, err, p50, p99) = (f("requests"), f("error_rate"), f("p50"), f("p99"));
        let (ece, auroc, over, psi, js) =
            (f("ece"), f("auroc"), f("overconfidence"), f("psi"), f("js"));
        let (cost, runaway, wasted) = (f("cost_per_1k"), f("runaway"), f("wasted"));
        let t = ints(b, "t");
        for i in 0..b.num_rows() {
            let key = keys
                .entry((service[i].clone(), model[i].clone()))
                .or_insert_with(|| Key {
                    service: service[i].clone(),
                    model: model[i].clone(),
                    ..Key::default()
                });
            key.points.push(Point {
                t: t[i].unwrap_or(0),
                requests: req[i].unwrap_or(0.0),
                error_rate: err[i],
                p50: p50[i],
                p99: p99[i],
                ece: ece[i],
                auroc: auroc[i],
                overconfidence: over[i],
                psi: psi[i],
                js: js[i],
                cost_per_1k: cost[i],
                runaway: runaway[i],
                wasted: wasted[i],
            });
        }
    }
    for b in bins {
        let (service, model) = (strings(b, "service"), strings(b, "model"));
        let (bin, count) = (ints(b, "bin"), ints(b, "count"));
        let (lower, upper) = (floats(b, "lower"), floats(b, "upper"));
        let (conf, acc) = (floats(b, "confidence"), floats(b, "accuracy"));
        for i in 0..b.num_rows() {
            if let Some(key) = keys.get_mut(&(service[i].clone(), model[i].clone())) {
                key.bins.push(Bin {
                    bin: bin[i].unwrap_or(0),
                    lower: lower[i].unwrap_or(0.0),
                    upper: upper[i].unwrap_or(0.0),
                    count: count[i].unwrap_or(0),
                    confidence: conf[i].unwrap_or(0.0),
                    accuracy: acc[i].unwrap_or(0.0),
                });
            }
        }
    }
    keys.into_values().collect()
}

fn burn(rows: &[RecordBatch]) -> BTreeMap<String, Vec<(i64, f64)>> {
    let mut out: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
    for b in rows {
        let (who, t, rate) = (strings(b, "who"), ints(b, "t"), floats(b, "burn_rate"));
        for i in 0..b.num_rows() {
            if let (Some(t), Some(r)) = (t[i], rate[i]) {
                out.entry(who[i].clone()).or_default().push((t, r));
            }
        }
    }
    out
}

fn transitions(rows: &[RecordBatch]) -> Vec<Transition> {
    let mut out = Vec::new();
    for b in rows {
        let s = |n: &str| strings(b, n);
        let (kind, rule, state, severity, key, summary) = (
            s("kind"),
            s("rule"),
            s("state"),
            s("severity"),
            s("key"),
            s("summary"),
        );
        let t = ints(b, "t");
        for i in 0..b.num_rows() {
            out.push(Transition {
                t: t[i].unwrap_or(0),
                kind: kind[i].clone(),
                rule: rule[i].clone(),
                state: state[i].clone(),
                severity: severity[i].clone(),
                key: key[i].trim_end_matches('/').to_string(),
                summary: summary[i].clone(),
            });
        }
    }
    out
}

fn dead(rows: &[RecordBatch]) -> Vec<(String, i64, String)> {
    let mut classes: BTreeMap<&'static str, (i64, String)> = BTreeMap::new();
    for b in rows {
        let (reason, n) = (strings(b, "reason"), ints(b, "n"));
        for i in 0..b.num_rows() {
            let class = inferwatch_schemas::dead_letter::reason_class(&reason[i]);
            let e = classes.entry(class).or_insert((0, reason[i].clone()));
            e.0 += n[i].unwrap_or(0);
        }
    }
    let mut out: Vec<_> = classes
        .into_iter()
        .map(|(c, (n, example))| (c.to_string(), n, example))
        .collect();
    out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    out
}

fn column(b: &RecordBatch, name: &str, to: &DataType) -> std::sync::Arc<dyn Array> {
    let c = b.column_by_name(name).expect("selected");
    datafusion::arrow::compute::cast(c, to).expect("a castable column")
}

fn strings(b: &RecordBatch, name: &str) -> Vec<String> {
    let c = column(b, name, &DataType::Utf8);
    c.as_string::<i32>()
        .iter()
        .map(|v| v.unwrap_or_default().to_string())
        .collect()
}

fn floats(b: &RecordBatch, name: &str) -> Vec<Option<f64>> {
    let c = column(b, name, &DataType::Float64);
    c.as_primitive::<Float64Type>()
        .iter()
        .map(|v| v.filter(|x| x.is_finite()))
        .collect()
}

fn ints(b: &RecordBatch, name: &str) -> Vec<Option<i64>> {
    let c = column(b, name, &DataType::Int64);
    c.as_primitive::<Int64Type>().iter().collect()
}

fn int(rows: &[RecordBatch], name: &str, row: usize) -> Option<i64> {
    let b = rows.iter().find(|b| b.num_rows() > row)?;
    ints(b, name)[row]
}
