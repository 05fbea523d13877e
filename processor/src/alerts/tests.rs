use super::*;
use crate::rules::RuleConfig;
use arrow::array::{Float64Array, StringArray, TimestampMillisecondArray, UInt64Array};
use arrow::datatypes::Field;
use std::time::Duration;

const W: i64 = 60_000;

fn schema() -> Schema {
    let cfg = crate::ProcessorConfig::default();
    crate::WindowOperator::new(&cfg)
        .unwrap()
        .metrics_schema()
        .as_ref()
        .clone()
}

fn engine(rules: &str, cooldown_windows: u64, recovery: u32) -> Alerting {
    #[derive(serde::Deserialize)]
    struct F {
        rules: Vec<RuleConfig>,
    }
    let f: F = toml::from_str(rules).unwrap();
    let cfg = AlertsConfig {
        renotify: Duration::from_secs(600),
        breaker_cooldown: Duration::from_millis(cooldown_windows * W as u64),
        breaker_recovery_windows: recovery,
        rules: f.rules,
        query_command: "inferwatch query --data-dir d".into(),
    };
    Alerting::new(&cfg, &schema(), W).unwrap()
}

/// (service, ece, labeled)
type Row<'a> = (&'a str, Option<f64>, u64);

/// Metrics rows of window `w` (its index).
fn window(w: i64, rows: &[Row]) -> RecordBatch {
    let ts = |v: i64| {
        Arc::new(TimestampMillisecondArray::from(vec![v; rows.len()]).with_timezone("UTC"))
            as ArrayRef
    };
    let s = |f: &dyn Fn(&Row) -> Option<String>| {
        Arc::new(StringArray::from(rows.iter().map(f).collect::<Vec<_>>())) as ArrayRef
    };
    let mut fields = inferwatch_schemas::tables::metrics_key_fields();
    fields.extend([
        Field::new("requests", DataType::UInt64, true),
        Field::new("labeled", DataType::UInt64, true),
        Field::new("ece", DataType::Float64, true),
    ]);
    RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        vec![
            ts(w * W),
            ts((w + 1) * W),
            s(&|r| Some(r.0.to_string())),
            s(&|_| Some("m".into())),
            s(&|_| None),
            s(&|_| None),
            Arc::new(UInt64Array::from(vec![1000u64; rows.len()])),
            Arc::new(UInt64Array::from(
                rows.iter().map(|r| r.2).collect::<Vec<_>>(),
            )),
            Arc::new(Float64Array::from(
                rows.iter().map(|r| r.1).collect::<Vec<_>>(),
            )),
        ],
    )
    .unwrap()
}

const ECE: &str = r#"
    [[rules]]
    name = "ece"
    metric = "ece"
    op = ">"
    warning = 0.1
    critical = 0.2
    for = 2
    samples = "labeled"
    min_samples = 100
"#;

/// Runs `values` (one per window, for service "a") and returns (states of all rows,
/// notices as "state/severity").
fn run(a: &mut Alerting, from: i64, values: &[Option<f64>]) -> (Vec<String>, Vec<String>) {
    let mut states = Vec::new();
    let mut notices = Vec::new();
    for (i, v) in values.iter().enumerate() {
        let b = window(from + i as i64, &[("a", *v, 500)]);
        a.evaluate(Some(&b), None).unwrap();
        if let Some(out) = a.take().unwrap() {
            let st = out.rows.column_by_name("state").unwrap().as_string::<i32>();
            states.extend((0..st.len()).map(|j| format!("{i}:{}", st.value(j))));
            notices.extend(out.notices.iter().map(|n| {
                format!(
                    "{i}:{}/{}{}",
                    n.state,
                    n.severity.as_str(),
                    if n.renotify { "+" } else { "" }
                )
            }));
        }
    }
    (states, notices)
}

#[test]
fn fires_once_then_resolves_once() {
    let mut a = engine(ECE, 5, 3);
    let v = [0.02, 0.3, 0.35, 0.4, 0.3, 0.03, 0.02].map(Some);
    let (states, notices) = run(&mut a, 0, &v);
    assert_eq!(states, ["1:pending", "2:firing", "5:resolved"]);
    assert_eq!(notices, ["2:firing/critical", "5:resolved/critical"]);
}

#[test]
fn flapping_within_for_fires_nothing() {
    let mut a = engine(ECE, 5, 3);
    let v = [0.3, 0.02, 0.3, 0.02, 0.3, 0.02].map(Some);
    let (states, notices) = run(&mut a, 0, &v);
    assert!(notices.is_empty(), "{notices:?}");
    assert_eq!(states.len(), 6, "pending/ok rows are kept: {states:?}");
}

#[test]
fn no_data_and_too_few_samples_keep_the_state() {
    let mut a = engine(ECE, 5, 3);
    // Null, then a breach over too few labels (counts as no data), then two breaches.
    let b = window(1, &[("a", Some(0.5), 10)]);
    run(&mut a, 0, &[None]);
    a.evaluate(Some(&b), None).unwrap();
    assert!(a.take().unwrap().is_none());
    let (_, notices) = run(&mut a, 2, &[Some(0.15), None, Some(0.15)]);
    assert_eq!(
        notices,
        ["2:firing/warning"],
        "the null window kept `pending`"
    );
}

#[test]
fn escalation_is_notified_step_down_recorded_and_reminders_follow_renotify() {
    let mut a = engine(ECE, 5, 3);
    let mut v = vec![Some(0.15), Some(0.15), Some(0.25), Some(0.15)];
    v.extend(std::iter::repeat_n(Some(0.15), 12));
    let (states, notices) = run(&mut a, 0, &v);
    assert_eq!(
        states[..4],
        ["0:pending", "1:firing", "2:firing", "3:firing"]
    );
    // renotify = 10 windows after the last notice (window 2's escalation).
    assert_eq!(
        notices,
        [
            "1:firing/warning",
            "2:firing/critical",
            "12:firing/warning+"
        ]
    );
}

#[test]
fn missing_rows_follow_the_no_data_policy() {
    let rules = ECE.replace("min_samples = 100", "min_samples = 100\nno_data = \"ok\"");
    let mut a = engine(&rules, 5, 3);
    run(&mut a, 0, &[Some(0.3), Some(0.3)]);
    // Window 2 has only service "b": "a" has no row, which counts as ok → resolved.
    a.evaluate(Some(&window(2, &[("b", Some(0.01), 500)])), None)
        .unwrap();
    let out = a.take().unwrap().unwrap();
    assert_eq!(out.notices.len(), 1);
    assert_eq!(out.notices[0].state, "resolved");
    assert_eq!(out.notices[0].value, None);
}

#[test]
fn breaker_opens_half_opens_and_closes_in_order() {
    let rules = ECE.replace("for = 2", "for = 1\naction = \"break\"");
    let mut a = engine(&rules, 2, 2);
    let v = [0.02, 0.3, 0.3, 0.3, 0.3, 0.02, 0.02, 0.02, 0.3].map(Some);
    let mut transitions = Vec::new();
    for (i, x) in v.iter().enumerate() {
        a.evaluate(Some(&window(i as i64, &[("a", *x, 500)])), None)
            .unwrap();
        if let Some(out) = a.take().unwrap() {
            for n in out.notices.iter().filter(|n| n.kind == NoticeKind::Breaker) {
                transitions.push(format!("{i}:{}->{}", n.previous, n.state));
                assert_eq!(n.model.as_deref(), Some("m"));
            }
        }
    }
    // Open at 1; half-open at 3 (cooldown 2 windows); breach → open at 4; half-open at
    // 6; closed after 2 healthy windows (7, 8?) — window 8 breaches, but 7 was the 1st
    // healthy one only, so it opens again at 8.
    assert_eq!(
        transitions,
        [
            "1:closed->open",
            "3:open->half_open",
            "4:half_open->open",
            "6:open->half_open",
            "8:half_open->open"
        ]
    );
    let mut b = engine(&rules, 2, 2);
    let v = [0.3, 0.02, 0.02, 0.02, 0.02].map(Some);
    let (_, notices) = run(&mut b, 0, &v);
    assert_eq!(
        notices,
        [
            "0:firing/critical",
            "0:open/critical",
            "1:resolved/critical",
            "2:half_open/warning",
            "4:closed/info"
        ]
    );
}

#[test]
fn a_restored_snapshot_continues_like_an_uninterrupted_run() {
    let rules = ECE.replace("for = 2", "for = 2\naction = \"break\"");
    let v = [0.02, 0.3, 0.3, 0.3, 0.02, 0.3, 0.02, 0.02, 0.02, 0.02].map(Some);
    let mut whole = engine(&rules, 2, 2);
    let (s_all, n_all) = run(&mut whole, 0, &v);
    for cut in 1..v.len() {
        let mut first = engine(&rules, 2, 2);
        let (mut s, mut n) = run(&mut first, 0, &v[..cut]);
        let snap = serde_json::to_string(&first.snapshot()).unwrap();
        let mut second = engine(&rules, 2, 2);
        second.restore(serde_json::from_str(&snap).unwrap());
        let (s2, n2) = run(&mut second, cut as i64, &v[cut..]);
        let shift = |x: Vec<String>| {
            x.into_iter().map(|t| {
                let (i, rest) = t.split_once(':').unwrap();
                format!("{}:{rest}", i.parse::<usize>().unwrap() + cut)
            })
        };
        s.extend(shift(s2));
        n.extend(shift(n2));
        assert_eq!((&s, &n), (&s_all, &n_all), "cut at {cut}");
    }
}

#[test]
fn notices_carry_ids_queries_and_matchers_apply() {
    let rules = ECE.replace("for = 2", "for = 1\nmatch = { service = \"a*\" }");
    let mut a = engine(&rules, 2, 2);
    let b = window(0, &[("a'1", Some(0.3), 500), ("b", Some(0.3), 500)]);
    a.evaluate(Some(&b), None).unwrap();
    let out = a.take().unwrap().unwrap();
    assert_eq!(out.notices.len(), 1, "b does not match a*");
    let n = &out.notices[0];
    assert_eq!(n.id.len(), 32);
    assert!(
        n.query
            .starts_with("inferwatch query --data-dir d \"SELECT"),
        "{}",
        n.query
    );
    assert!(n.query.contains("service = 'a''1'"), "{}", n.query);
    let mut again = engine(&rules, 2, 2);
    again.evaluate(Some(&b), None).unwrap();
    assert_eq!(
        again.take().unwrap().unwrap().notices[0].id,
        n.id,
        "ids are stable"
    );
    assert_eq!(fmt_num(0.123456), "0.1235");
    assert_eq!(fmt_num(12345.6), "12346");
    assert_eq!(fmt_num(2.0), "2");
}
