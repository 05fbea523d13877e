//! The operator on generated batches: snapshots, late labels, windows.

use super::*;
use crate::config::CustomMetric;
use arrow::util::pretty::pretty_format_batches;
use inferwatch_schemas::{EventDecoder, Limits, RawBatch};

/// Events over ~3 minutes for three keys, out of order within 2 s, with latencies, costs
/// and qualities that exercise every state field.
fn events(range: std::ops::Range<i64>) -> RecordBatch {
    let mut raw = RawBatch::new(Arc::from("t"), 0);
    for i in range {
        let ts = 1_767_225_600_000 + i * 150 - (i * 7919 % 2000);
        let json = format!(
            r#"{{"event_id":"e{i}","timestamp":{ts},"service":"s{}","model":"m","latency_ms":{},"tokens_in":{},"tokens_out":5,"quality_score":{},"status":"{}","cost_usd":{}}}"#,
            i % 3,
            (i * 37 % 1000) as f64 / 3.0,
            i % 50,
            (i % 10) as f64 / 10.0,
            if i % 13 == 0 { "error" } else { "ok" },
            (i % 7) as f64 * 0.0001,
        );
        raw.push(json.as_bytes(), i);
    }
    EventDecoder::new(Limits::default()).decode(&raw).events
}

fn config() -> ProcessorConfig {
    let mut c = ProcessorConfig::default();
    c.window.size = std::time::Duration::from_secs(60);
    c.window.slide = Some(std::time::Duration::from_secs(20));
    c.custom_metrics = vec![
        CustomMetric {
            name: "slow_share".into(),
            sql: "avg(CASE WHEN latency_ms > 100 THEN 1.0 ELSE 0.0 END)".into(),
        },
        CustomMetric {
            name: "distinct_tokens".into(),
            sql: "count(DISTINCT tokens_in)".into(),
        },
    ];
    c
}

fn rows(batches: &[RecordBatch]) -> String {
    pretty_format_batches(batches).unwrap().to_string()
}

#[test]
fn a_restored_snapshot_continues_exactly_where_it_left_off() {
    let mut whole = WindowOperator::new(&config()).unwrap();
    let mut expected = Vec::new();
    expected.extend(whole.aggregate(events(0..1200)).unwrap().metrics);
    expected.extend(whole.finish().unwrap());

    let mut first = WindowOperator::new(&config()).unwrap();
    let mut got = Vec::new();
    got.extend(first.aggregate(events(0..700)).unwrap().metrics);
    let snap = first.snapshot().unwrap();
    // The snapshot leaves the operator usable.
    assert_eq!(first.snapshot().unwrap(), snap);
    let mut second = WindowOperator::new(&config()).unwrap();
    second.restore(&snap).unwrap();
    got.extend(second.aggregate(events(700..1200)).unwrap().metrics);
    got.extend(second.finish().unwrap());
    assert!(expected.iter().map(|b| b.num_rows()).sum::<usize>() > 20);
    assert_eq!(rows(&got), rows(&expected));
    assert_eq!(second.stats(), whole.stats());
}

/// Predictions without labels for 3 minutes, then traffic with inline labels up to
/// minute `until`; prediction i has confidence (i % 10)/10 + 0.05.
fn predictions(until: i64) -> RecordBatch {
    let t0 = 1_767_225_600_000i64;
    let mut raw = RawBatch::new(Arc::from("t"), 0);
    for i in 0..180 {
        let json = format!(
            r#"{{"event_id":"p{i}","timestamp":{},"service":"s","model":"m","confidence":{}}}"#,
            t0 + i * 1000,
            (i % 10) as f64 / 10.0 + 0.05
        );
        raw.push(json.as_bytes(), i);
    }
    for j in 0..until * 6 {
        let json = format!(
            r#"{{"event_id":"q{j}","timestamp":{},"service":"s","model":"m","confidence":0.5,"correct":true}}"#,
            t0 + 180_000 + j * 10_000
        );
        raw.push(json.as_bytes(), 180 + j);
    }
    EventDecoder::new(Limits::default()).decode(&raw).events
}

fn feedback(i: i64, delay_ms: i64) -> Feedback {
    Feedback {
        event_id: format!("p{i}"),
        timestamp: 1_767_225_600_000 + i * 1000 + delay_ms,
        correct: Some(i % 3 == 0),
        label: None,
        score: None,
        source: None,
        partition: 0,
        offset: i,
    }
}

#[test]
fn feedback_ten_minutes_late_lands_in_the_latest_revision_of_its_window() {
    let mut c = ProcessorConfig::default();
    c.window.size = std::time::Duration::from_secs(60);
    let mut op = WindowOperator::new(&c).unwrap();
    op.expect_feedback(&c.feedback);
    let first = op.aggregate(predictions(12)).unwrap().metrics.unwrap();
    // The first window went out without labels.
    assert_eq!(
        first
            .column_by_name("labeled")
            .unwrap()
            .as_primitive::<Int64Type>()
            .value(0),
        0
    );
    for i in 0..60 {
        op.join_feedback(&feedback(i, 600_000)).unwrap();
    }
    let r = op.take_revisions(true).unwrap().unwrap();
    assert_eq!(r.seq, 1);
    assert_eq!(r.metrics.num_rows(), 1);
    let get = |name: &str| r.metrics.column_by_name(name).unwrap().clone();
    assert_eq!(get("revision").as_primitive::<Int64Type>().value(0), 1);
    assert_eq!(get("labeled").as_primitive::<Int64Type>().value(0), 60);
    assert_eq!(get("late_labels").as_primitive::<Int64Type>().value(0), 60);
    assert_eq!(get("requests").as_primitive::<Int64Type>().value(0), 60);
    let acc = get("accuracy").as_primitive::<Float64Type>().value(0);
    assert!((acc - 20.0 / 60.0).abs() < 1e-12, "{acc}");
    // Reliability bins of the revision: ten bins of six, tagged with the revision.
    let bins = r.calibration_bins.unwrap();
    assert_eq!(bins.num_rows(), 10);
    // Nothing changed since: no new revision. A duplicate changes nothing.
    assert!(op.take_revisions(true).unwrap().is_none());
    assert_eq!(
        op.join_feedback(&feedback(0, 700_000)),
        Err(Unmatched::Duplicate)
    );
    // Past the horizon: expired, and no revision.
    assert_eq!(
        op.join_feedback(&feedback(61, 3_600_001)),
        Err(Unmatched::Expired)
    );
    assert_eq!(op.join_feedback(&feedback(999, 0)), Err(Unmatched::Unknown));
    // A label for window 2, checkpointed and restored: the revision continues from there.
    op.join_feedback(&feedback(130, 600_000)).unwrap();
    let snap = op.snapshot().unwrap();
    let mut back = WindowOperator::new(&c).unwrap();
    back.expect_feedback(&c.feedback);
    back.restore(&snap).unwrap();
    let r = back.take_revisions(true).unwrap().unwrap();
    assert_eq!(r.seq, 2);
    let rev = r
        .metrics
        .column_by_name("revision")
        .unwrap()
        .as_primitive::<Int64Type>()
        .value(0);
    let labeled = r
        .metrics
        .column_by_name("labeled")
        .unwrap()
        .as_primitive::<Int64Type>()
        .value(0);
    assert_eq!((rev, labeled), (1, 1));
    let s = back.label_stats();
    assert_eq!((s.joined, s.duplicate, s.expired), (61, 1, 1));
}

#[test]
fn a_snapshot_does_not_fit_other_windows() {
    let mut op = WindowOperator::new(&config()).unwrap();
    op.aggregate(events(0..100)).unwrap();
    let snap = op.snapshot().unwrap();
    let mut other = config();
    other.window.slide = None;
    let err = WindowOperator::new(&other)
        .unwrap()
        .restore(&snap)
        .unwrap_err();
    assert!(err.to_string().contains("[window]"), "{err}");
}

/// What one open (window × key) costs: one key with 20,000 events in one window, every
/// built-in metric fed (latencies over four decades, costs, labelled confidences,
/// qualities, 2,000 sessions, five predictions).
#[test]
fn an_open_window_and_key_with_20_000_events_costs_under_100_kilobytes() {
    let mut c = ProcessorConfig::default();
    c.window.size = std::time::Duration::from_secs(3600);
    let mut op = WindowOperator::new(&c).unwrap();
    let mut raw = RawBatch::new(Arc::from("t"), 0);
    for i in 0..20_000i64 {
        let json = format!(
            r#"{{"event_id":"e{i}","timestamp":{},"service":"s","model":"m","session_id":"x{}","latency_ms":{:.3},"cost_usd":{:.6},"confidence":{:.4},"correct":{},"quality_score":{:.3},"prediction":"p{}","tokens_in":{},"tokens_out":7}}"#,
            1_767_225_600_000 + i * 100,
            i % 2000,
            10f64.powf((i * 7919 % 4000) as f64 / 1000.0),
            (i * 31 % 1000) as f64 * 1e-5,
            (i * 13 % 100) as f64 / 100.0 + 0.005,
            i * 17 % 10 < 7,
            (i * 7 % 1000) as f64 / 1000.0,
            i % 5,
            i % 3000,
        );
        raw.push(json.as_bytes(), i);
    }
    let batch = EventDecoder::new(Limits::default()).decode(&raw).events;
    assert_eq!(batch.num_rows(), 20_000);
    op.aggregate(batch).unwrap();
    assert_eq!(op.groups.capacity(), 1, "one (window × key)");
    let bytes = op.state_bytes();
    eprintln!("one open (window × key), 20,000 events: {bytes} bytes");
    // 89 KB when written: latency and cost histograms 29 + 20 KB (16-bit blocks), drift
    // buckets 20 KB, 2,000 session hashes 18 KB, calibration 2 KB.
    assert!((10_000..100_000).contains(&bytes), "{bytes} bytes");
}
