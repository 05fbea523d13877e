//! The chain on generated batches: tables by name, checkpoints as operator lists, and the
//! checkpoints written before operators were chained.

use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::util::pretty::pretty_format_batches;
use inferwatch_schemas::{EventDecoder, Limits, RawBatch};

use super::*;

/// ~4 minutes of calls to two keys; one errs often (the default error-rate rule fires), and
/// half carry no cost (the price table prices them).
fn events(range: std::ops::Range<i64>) -> RecordBatch {
    let mut raw = RawBatch::new(Arc::from("t"), 0);
    for i in range {
        let ts = 1_767_225_600_000 + i * 200 - (i * 7919 % 1500);
        let cost = if i % 2 == 0 {
            ",\"cost_usd\":0.002".to_string()
        } else {
            String::new()
        };
        let json = format!(
            r#"{{"event_id":"e{i}","timestamp":{ts},"service":"s{}","model":"gpt-4o","latency_ms":{},"tokens_in":100,"tokens_out":20,"status":"{}"{cost}}}"#,
            i % 2,
            (i * 37 % 1000) as f64,
            if i % 2 == 1 && i % 5 == 0 {
                "error"
            } else {
                "ok"
            },
        );
        raw.push(json.as_bytes(), i);
    }
    EventDecoder::new(Limits::default()).decode(&raw).events
}

/// Every table's rows, in emission order, as text.
fn tables(out: &mut Collector) -> Vec<String> {
    let show = |b: &RecordBatch| {
        pretty_format_batches(std::slice::from_ref(b))
            .unwrap()
            .to_string()
    };
    out.drain()
        .map(|e| match e {
            Emitted::Events(b) => format!("events {}", show(&b)),
            Emitted::Metrics(b) => format!("metrics {}", show(&b)),
            Emitted::Budgets(b) => format!("budgets {}", show(&b)),
            Emitted::CalibrationBins(b) => format!("bins {}", show(&b)),
            Emitted::Sessions(s) => format!("sessions {} {}", s.at, show(&s.batch)),
            Emitted::Alerts(a) => format!("alerts {} {}", a.notices.len(), show(&a.rows)),
            Emitted::Revisions(r) => format!("revisions {}", show(&r.metrics)),
        })
        .collect()
}

fn run(chain: &mut Chain, range: std::ops::Range<i64>, end: bool) -> Vec<String> {
    let mut out = Collector::default();
    chain.process_batch(events(range), &mut out).unwrap();
    if end {
        chain.handle_watermark(Watermark::End, &mut out).unwrap();
    }
    tables(&mut out)
}

#[test]
fn a_chain_restored_from_its_checkpoint_continues_exactly() {
    let config = ProcessorConfig::default();
    let mut whole = Chain::new(&config).unwrap();
    let mut expected = run(&mut whole, 0..700, false);
    expected.extend(run(&mut whole, 700..1200, true));
    assert!(
        expected.iter().any(|t| t.starts_with("alerts")),
        "an alert fired"
    );
    assert!(
        expected.iter().any(|t| t.contains("table")),
        "the price table priced"
    );

    let mut first = Chain::new(&config).unwrap();
    let mut got = run(&mut first, 0..700, false);
    let snap = first.snapshot().unwrap();
    let mut second = Chain::new(&config).unwrap();
    second.restore(&snap).unwrap();
    got.extend(run(&mut second, 700..1200, true));
    assert_eq!(got, expected);
}

/// Before chaining, a checkpoint was the window operator's state with the alert states
/// inside; it restores both.
#[test]
fn a_checkpoint_from_before_the_chain_restores() {
    let config = ProcessorConfig::default();
    let mut chain = Chain::new(&config).unwrap();
    run(&mut chain, 0..700, false);
    let snap = chain.snapshot().unwrap();
    let parsed: ChainSnapshot = serde_json::from_slice(&snap).unwrap();
    let state = |name: &str| {
        let hex = &parsed.operators.iter().find(|(n, _)| n == name).unwrap().1;
        let bytes = crate::operator::unhex(hex).unwrap();
        serde_json::from_slice::<serde_json::Value>(&bytes).unwrap()
    };
    let mut unchained = state("window");
    let alerts = state("alerts");
    assert!(alerts["states"].as_array().is_some_and(|s| !s.is_empty()));
    unchained["alerts"] = alerts;
    let old = serde_json::to_vec(&unchained).unwrap();

    let mut restored = Chain::new(&config).unwrap();
    restored.restore(&old).unwrap();
    let mut again = Chain::new(&config).unwrap();
    again.restore(&snap).unwrap();
    assert_eq!(
        run(&mut restored, 700..1200, true),
        run(&mut again, 700..1200, true)
    );
}

#[test]
fn a_checkpoint_of_an_unknown_operator_is_refused() {
    let config = ProcessorConfig::default();
    let snap = br#"{"chain":1,"operators":[["dedupe","00"]]}"#;
    let err = Chain::new(&config).unwrap().restore(snap).unwrap_err();
    assert!(err.to_string().contains("`dedupe`"), "{err}");
}

/// One call per session, many sessions, all in one window.
fn one_call_sessions(range: std::ops::Range<i64>) -> RecordBatch {
    let mut raw = RawBatch::new(Arc::from("t"), 0);
    for i in range {
        let json = format!(
            r#"{{"event_id":"e{i}","timestamp":{},"service":"s","model":"m","latency_ms":5,"status":"ok","session_id":"sess-{i}"}}"#,
            1_767_225_600_000 + i
        );
        raw.push(json.as_bytes(), i);
    }
    EventDecoder::new(Limits::default()).decode(&raw).events
}

#[test]
fn sessions_ending_within_a_long_window_are_handed_out_before_it_closes_each_once() {
    let mut config = ProcessorConfig::default();
    config.window.size = std::time::Duration::from_secs(3600);
    config.window.slide = None;
    // Past 10 sessions the one idle longest ends early: every call ends a session.
    config.loops.max_sessions = 10;
    let mut chain = Chain::new(&config).unwrap();
    let total = crate::operator::SESSION_ROWS_PER_FILE as i64 * 5 / 2;
    let (mut ids, mut names, mut before_close) = (Vec::new(), Vec::new(), 0);
    let mut out = Collector::default();
    let mut take = |out: &mut Collector, closed: bool| {
        for e in out.drain() {
            if let Emitted::Sessions(s) = e {
                names.push(s.at);
                if !closed {
                    before_close += s.batch.num_rows();
                }
                let id = s.batch.column(0).as_string::<i32>();
                ids.extend((0..id.len()).map(|i| id.value(i).to_string()));
            }
        }
    };
    for start in (0..total).step_by(5_000) {
        chain
            .process_batch(
                one_call_sessions(start..(start + 5_000).min(total)),
                &mut out,
            )
            .unwrap();
        take(&mut out, false);
    }
    chain.handle_watermark(Watermark::End, &mut out).unwrap();
    take(&mut out, true);
    let per_file = crate::operator::SESSION_ROWS_PER_FILE;
    assert!(
        before_close >= 2 * per_file && total as usize - before_close < per_file + 5_000,
        "two files' worth were handed out before the window closed: {before_close}"
    );
    assert!(
        names.windows(2).all(|w| w[0] < w[1]),
        "file names increase: {names:?}"
    );
    ids.sort();
    let n = ids.len();
    ids.dedup();
    assert_eq!(
        (n, ids.len()),
        (total as usize, total as usize),
        "each session once"
    );
}

/// Calls of ~5,000 sessions over two keys and ~6 minutes (thousands per pane and key, so
/// sets are big enough to spill), sessions coming back across panes, some events out of
/// order.
fn session_events(range: std::ops::Range<i64>) -> RecordBatch {
    let mut raw = RawBatch::new(Arc::from("t"), 0);
    for i in range {
        let ts = 1_767_225_600_000 + i * 10 - (i * 7919 % 4000);
        let json = format!(
            r#"{{"event_id":"e{i}","timestamp":{ts},"service":"s{}","model":"m","latency_ms":5,"status":"ok","session_id":"sess-{}"}}"#,
            i % 2,
            (i * 31 + i / 500) % 5_000,
        );
        raw.push(json.as_bytes(), i);
    }
    EventDecoder::new(Limits::default()).decode(&raw).events
}

#[test]
fn spilled_session_counts_are_the_counts_kept_in_memory() {
    use crate::spill::{MemorySpillDir, Spill};
    let mut config = ProcessorConfig::default();
    config.window.size = std::time::Duration::from_secs(180);
    config.window.slide = Some(std::time::Duration::from_secs(60));
    let run = |chain: &mut Chain, range: std::ops::Range<i64>, end: bool| {
        let mut out = Collector::default();
        for start in range.clone().step_by(1_000) {
            let batch = session_events(start..(start + 1_000).min(range.end));
            chain.process_batch(batch, &mut out).unwrap();
        }
        if end {
            chain.handle_watermark(Watermark::End, &mut out).unwrap();
        }
        tables(&mut out)
    };
    let mut memory = Chain::new(&config).unwrap();
    let mut expected = run(&mut memory, 0..18_000, false);
    expected.extend(run(&mut memory, 18_000..36_000, true));
    assert!(expected.iter().any(|t| t.starts_with("metrics")));

    // A budget of nothing: every batch spills every set big enough.
    let dir = Arc::new(MemorySpillDir::default());
    let spill = Spill::new(Box::new(SharedDir(dir.clone())), 0);
    let mut first = Chain::new(&config).unwrap().with_spill(Some(spill.clone()));
    let mut got = run(&mut first, 0..18_000, false);
    let snap = first.snapshot().unwrap();
    let spilled_before_restore = spill.spilled_bytes();
    assert!(spilled_before_restore > 0, "the budget of 0 spilled");
    drop(first);
    let mut second = Chain::new(&config).unwrap().with_spill(Some(spill.clone()));
    second.restore(&snap).unwrap();
    got.extend(run(&mut second, 18_000..36_000, true));
    assert!(spill.spilled_bytes() > spilled_before_restore);
    assert!(dir.created.load(std::sync::atomic::Ordering::Relaxed) > 2);
    assert_eq!(got, expected);
}

/// Lends one memory directory to several spills, so the test can count its files.
#[derive(Debug)]
struct SharedDir(Arc<crate::spill::MemorySpillDir>);

impl crate::spill::SpillDir for SharedDir {
    fn create(&self) -> std::io::Result<Arc<dyn crate::spill::SpillFile>> {
        self.0.create()
    }
}
