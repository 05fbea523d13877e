//! End-to-end tests of the `inferwatch` binary: generate → run → Parquet → query, checked
//! against independent computations (plain Python over the raw input, DuckDB and pyarrow
//! over the tables).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

mod common;
use common::cli::*;
use common::test_dir;

#[test]
fn tumbling_metrics_equal_an_independent_computation() {
    let dir = test_dir();
    // 2 s of jitter: out of order, within the 5 s bound.
    let input = generate(
        dir.path(),
        "in.ndjson",
        &["--count", "60000", "--rate", "400", "--seed", "7"],
    );
    let data = dir.path().join("data");
    run(&input, &data, &["--window", "1m"]);
    python_check(&input, &data, 60_000, 60_000);
}

#[test]
fn hopping_metrics_equal_an_independent_computation() {
    let dir = test_dir();
    let input = generate(
        dir.path(),
        "in.ndjson",
        &[
            "--count",
            "40000",
            "--rate",
            "300",
            "--seed",
            "11",
            "--scenario",
            "drift",
        ],
    );
    let data = dir.path().join("data");
    run(&input, &data, &["--window", "1m", "--slide", "20s"]);
    python_check(&input, &data, 60_000, 20_000);
}

#[test]
fn calibration_columns_match_scikit_learn_and_numpy() {
    let dir = test_dir();
    let input = generate(
        dir.path(),
        "in.ndjson",
        &[
            "--count",
            "40000",
            "--rate",
            "200",
            "--seed",
            "3",
            "--scenario",
            "miscalibration",
        ],
    );
    let data = dir.path().join("data");
    run(&input, &data, &["--window", "1m"]);
    calibration_check(&input, &data, 60_000);
    for (bins, binning) in [(7, "equal_width"), (10, "equal_mass"), (4, "equal_mass")] {
        let config = dir.path().join(format!("{bins}-{binning}.toml"));
        fs::write(
            &config,
            format!("[calibration]\nbins = {bins}\nbinning = \"{binning}\"\n"),
        )
        .unwrap();
        let data = dir.path().join(format!("{bins}-{binning}"));
        run(
            &input,
            &data,
            &["--window", "1m", "--config", config.to_str().unwrap()],
        );
        calibration_check_bins(&input, &data, 60_000, bins, binning);
    }
}

#[test]
fn drift_columns_match_scipy_and_numpy() {
    let dir = test_dir();
    let input = generate(
        dir.path(),
        "in.ndjson",
        &[
            "--count",
            "40000",
            "--rate",
            "60",
            "--seed",
            "5",
            "--scenario",
            "drift",
        ],
    );
    // Trailing reference of 3 windows.
    let config = dir.path().join("trailing.toml");
    fs::write(&config, "[drift]\nbaseline_windows = 3\nmin_samples = 40\n").unwrap();
    let data = dir.path().join("trailing");
    run(
        &input,
        &data,
        &["--window", "1m", "--config", config.to_str().unwrap()],
    );
    let out = drift_check(&input, &data, 60_000, 3, 40, None);
    for column in [
        "ks_confidence",
        "psi_quality_score",
        "ks_quality_score",
        "js_prediction",
    ] {
        assert!(
            out.contains(&format!("'{column}': ")),
            "{column} never checked: {out}"
        );
    }
    // The drift scenario moves every drift column after the onset.
    let moved = query(
        &data,
        "SELECT max(psi_confidence) AS psi, max(ks_confidence) AS ks, \
         max(js_prediction) AS js, min(psi_confidence) AS calm FROM metrics",
    );
    let get = |c: &str| moved[0][c].as_f64().unwrap();
    assert!(
        get("psi") > 0.5 && get("ks") > 0.3 && get("js") > 0.1,
        "{moved:?}"
    );
    assert!(get("calm") < 0.2, "{moved:?}");

    // Pinned reference: the first three minutes.
    let first = query(&data, "SELECT min(window_start) AS t FROM metrics")[0]["t"]
        .as_str()
        .unwrap()
        .to_string();
    let from = inferwatch_schemas::time::parse_rfc3339(&first).unwrap();
    let to = from + 180_000;
    let config = dir.path().join("pinned.toml");
    fs::write(
        &config,
        format!(
            "[drift]\nbaseline_from = \"{}\"\nbaseline_to = \"{}\"\nmin_samples = 40\n",
            inferwatch_schemas::time::format_rfc3339_ms(from),
            inferwatch_schemas::time::format_rfc3339_ms(to)
        ),
    )
    .unwrap();
    let data = dir.path().join("pinned");
    run(
        &input,
        &data,
        &["--window", "1m", "--config", config.to_str().unwrap()],
    );
    drift_check(&input, &data, 60_000, 0, 40, Some((from, to)));
    // Windows inside the pinned period have no drift values.
    assert!(count(&data, &format!(
        "SELECT count(*) FROM metrics WHERE window_start < to_timestamp_millis({to}) AND psi_confidence IS NOT NULL"
    )) == 0);
}

#[test]
fn feedback_ten_minutes_late_lands_in_the_latest_revision_and_unmatched_feedback_is_kept() {
    let dir = test_dir();
    let fb = dir.path().join("feedback.ndjson");
    let input = generate(
        dir.path(),
        "in.ndjson",
        &[
            "--count",
            "30000",
            "--rate",
            "40",
            "--seed",
            "9",
            "--scenario",
            "miscalibration",
            "--feedback-out",
            fb.to_str().unwrap(),
            "--feedback-delay",
            "10m",
        ],
    );
    let labels = lines(&fb);
    assert!(labels > 5000, "{labels} feedback events");
    // Feedback that joins nothing: an unknown id, a second label, and one that is not
    // feedback at all.
    let first_id = {
        let text = fs::read_to_string(&fb).unwrap();
        let v: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        v["event_id"].as_str().unwrap().to_string()
    };
    let mut text = fs::read_to_string(&fb).unwrap();
    text +=
        r#"{"event_id":"no-such-prediction","timestamp":"2026-01-01T00:30:00Z","correct":true}"#;
    text += "\n";
    text += &format!(
        r#"{{"event_id":"{first_id}","timestamp":"2026-01-01T00:30:00Z","correct":false}}"#
    );
    text += "\n{\"event_id\": 7}\n";
    let fb_all = dir.path().join("feedback-all.ndjson");
    fs::write(&fb_all, text).unwrap();

    let data = dir.path().join("data");
    let feedback = format!("file:{}", fb_all.display());
    let out = run(&input, &data, &["--window", "1m", "--feedback", &feedback]);
    assert!(
        out.contains(&format!(
            "feedback: {} received, {} joined",
            thousands(labels + 3),
            thousands(labels)
        )),
        "{out}"
    );
    // Every window's latest revision equals scikit-learn over inline and joined labels.
    calibration_check_with(&input, &data, 60_000, 10, "equal_width", Some(&fb));
    // Labels ten minutes late re-emitted windows that had closed, as revisions.
    assert!(count(&data, "SELECT count(*) FROM metrics WHERE revision > 0") > 10);
    // Every label counted once: inline ones plus each joined feedback.
    let inline = count(
        &data,
        "SELECT count(*) FROM events WHERE confidence IS NOT NULL AND correct IS NOT NULL",
    );
    assert_eq!(
        count(&data, "SELECT sum(labeled) FROM metrics_latest"),
        inline + labels
    );
    let unmatched = query(
        &data,
        "SELECT reason, event_id FROM feedback_unmatched ORDER BY reason",
    );
    assert_eq!(unmatched.len(), 2, "{unmatched:?}");
    assert_eq!(unmatched[0]["reason"], "duplicate");
    assert_eq!(unmatched[0]["event_id"], first_id.as_str());
    assert_eq!(unmatched[1]["reason"], "unknown");
    let dead = query(&data, "SELECT reason FROM dead_letter");
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(
        dead[0]["reason"].as_str().unwrap().starts_with("feedback:"),
        "{dead:?}"
    );

    // With a 5-minute horizon the same feedback comes too late: counted and kept as expired,
    // and no window changes.
    let config = dir.path().join("short.toml");
    fs::write(&config, "[feedback]\nlabel_horizon = \"5m\"\n").unwrap();
    let data = dir.path().join("expired");
    let feedback = format!("file:{}", fb.display());
    let out = run(
        &input,
        &data,
        &[
            "--window",
            "1m",
            "--feedback",
            &feedback,
            "--config",
            config.to_str().unwrap(),
        ],
    );
    assert!(
        out.contains(&format!(
            "0 joined (0 revised metric rows), 0 unknown, {} expired",
            thousands(labels)
        )),
        "{out}"
    );
    assert_eq!(
        count(
            &data,
            "SELECT count(*) FROM feedback_unmatched WHERE reason = 'expired'"
        ),
        labels
    );
    assert_eq!(
        count(&data, "SELECT count(*) FROM metrics WHERE revision > 0"),
        0
    );
}

#[test]
fn runaway_loops_are_caught_in_the_window_of_the_third_identical_call() {
    let dir = test_dir();
    let input = generate(
        dir.path(),
        "loop.ndjson",
        &[
            "--count",
            "60000",
            "--rate",
            "100",
            "--seed",
            "4",
            "--scenario",
            "runaway-loop",
        ],
    );
    let data = dir.path().join("data");
    run(&input, &data, &["--window", "1m"]);
    let out = sessions_check(&input, &data, 60_000, 50, 3);
    assert!(!out.contains("(0 runaway)"), "{out}");
    // Loops start at the onset (minute 5); healthy sessions of up to 16 steps never trip.
    assert_eq!(
        count(&data, "SELECT count(*) FROM metrics WHERE runaway_sessions > 0 AND window_start < to_timestamp_millis(1767225900000)"),
        0
    );
    assert!(
        count(
            &data,
            "SELECT count(*) FROM sessions WHERE runaway AND reason LIKE '%max_repeats 3%'"
        ) > 10
    );
    assert_eq!(
        count(
            &data,
            "SELECT count(*) FROM sessions WHERE NOT runaway AND repeats > 0"
        ),
        0
    );
    // With max_steps = 10 the long healthy sessions trip on steps instead.
    let config = dir.path().join("steps.toml");
    fs::write(&config, "[loops]\nmax_steps = 10\n").unwrap();
    let strict = dir.path().join("strict");
    run(
        &input,
        &strict,
        &["--window", "1m", "--config", config.to_str().unwrap()],
    );
    sessions_check(&input, &strict, 60_000, 10, 3);
    assert!(
        count(
            &strict,
            "SELECT count(*) FROM sessions WHERE reason LIKE '%max_steps 10%'"
        ) > 10
    );
}

#[test]
fn cost_zscores_match_numpy_and_the_spike_stands_out() {
    let dir = test_dir();
    let input = generate(
        dir.path(),
        "spike.ndjson",
        &[
            "--count",
            "60000",
            "--rate",
            "100",
            "--seed",
            "8",
            "--scenario",
            "cost-spike",
        ],
    );
    let config = dir.path().join("cost.toml");
    fs::write(&config, "[cost]\nbaseline_windows = 4\nmin_baseline = 3\n").unwrap();
    let data = dir.path().join("data");
    run(
        &input,
        &data,
        &["--window", "1m", "--config", config.to_str().unwrap()],
    );
    python_check(&input, &data, 60_000, 60_000);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new("python3")
        .arg(root.join("tests/reference/check_cost.py"))
        .args([data.to_str().unwrap(), "60000", "4", "3"])
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && text.contains("checked"), "{text}");
    // The onset (minute 5) is the window where checkout-assistant's cost jumps.
    let top = query(
        &data,
        "SELECT window_start FROM metrics WHERE service = 'checkout-assistant' ORDER BY cost_zscore DESC NULLS LAST LIMIT 1",
    );
    assert_eq!(top[0]["window_start"], "2026-01-01T00:05:00Z", "{top:?}");
    // The first windows have no baseline yet: null, not 0.
    assert!(count(&data, "SELECT count(*) FROM metrics WHERE window_start < to_timestamp_millis(1767225720000) AND cost_zscore IS NOT NULL") == 0);
}

#[test]
fn daily_budgets_add_up_per_service_and_tenant_and_reset_at_midnight() {
    let dir = test_dir();
    let ev = |id: &str, ts: &str, service: &str, tenant: &str, usd: f64| {
        format!(
            r#"{{"event_id":"{id}","timestamp":"{ts}","service":"{service}","model":"m","tenant":"{tenant}","cost_usd":{usd}}}"#
        )
    };
    let lines = [
        ev("a", "2026-01-01T00:10:00Z", "svc", "acme", 1.0),
        ev("b", "2026-01-01T00:15:00Z", "free", "acme", 3.0),
        ev("c", "2026-01-01T00:20:00Z", "svc", "other", 2.0),
        ev("d", "2026-01-01T01:30:00Z", "svc", "acme", 4.0),
        ev("e", "2026-01-02T00:05:00Z", "svc", "acme", 5.0),
        // A model with no price: counted as unpriced, its tokens still counted, no cost.
        r#"{"event_id":"f","timestamp":"2026-01-02T00:06:00Z","service":"svc","model":"no-such-model","tokens_in":100,"tokens_out":7}"#.to_string(),
    ];
    let input = dir.path().join("budget.ndjson");
    fs::write(&input, lines.join("\n") + "\n").unwrap();
    let config = dir.path().join("budgets.toml");
    fs::write(
        &config,
        "[budgets]\nservices = { svc = 10.0 }\ntenants = { acme = 5.0 }\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    run(
        &input,
        &data,
        &["--window", "1h", "--config", config.to_str().unwrap()],
    );
    // Spent since midnight through the window; burn = window cost per hour × 24 / budget.
    let rows = query(
        &data,
        "SELECT service, budget_spent_usd AS spent, budget_burn_rate AS burn FROM metrics ORDER BY window_start, service",
    );
    let got: Vec<(String, Option<f64>, Option<f64>)> = rows
        .iter()
        .map(|r| {
            (
                r["service"].as_str().unwrap().into(),
                r["spent"].as_f64(),
                r["burn"].as_f64(),
            )
        })
        .collect();
    let want = vec![
        ("free".to_string(), None, None),
        ("svc".to_string(), Some(3.0), Some(7.2)),
        ("svc".to_string(), Some(7.0), Some(9.6)),
        ("svc".to_string(), Some(5.0), Some(12.0)),
        ("svc".to_string(), Some(5.0), Some(12.0)),
    ];
    assert_eq!(got.len(), want.len(), "{got:?}");
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g.0, w.0);
        for (a, b) in [(g.1, w.1), (g.2, w.2)] {
            assert!(
                a.zip(b).is_none_or(|(a, b)| (a - b).abs() < 1e-12) && a.is_some() == b.is_some(),
                "{got:?}"
            );
        }
    }
    // The tenant's spend spans services (acme's $3 on "free" counts too).
    let tenant = query(
        &data,
        "SELECT spent_usd AS spent, window_cost_usd AS cost, burn_rate AS burn FROM budgets WHERE scope = 'tenant' ORDER BY window_start",
    );
    let t: Vec<(f64, f64, f64)> = tenant
        .iter()
        .map(|r| {
            (
                r["spent"].as_f64().unwrap(),
                r["cost"].as_f64().unwrap(),
                r["burn"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        t,
        vec![(4.0, 4.0, 19.2), (8.0, 4.0, 19.2), (5.0, 5.0, 24.0)]
    );
    assert_eq!(
        count(
            &data,
            "SELECT count(*) FROM budgets WHERE scope = 'service'"
        ),
        3
    );
}

/// One window per calibration edge case, written as NDJSON, checked by the same reference.
#[test]
fn calibration_edge_cases_match_scikit_learn_and_numpy() {
    let dir = test_dir();
    let t0: i64 = 1_767_225_600_000;
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut uniform = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut text = String::new();
    let mut push = |window: i64, i: i64, conf: Option<f64>, correct: Option<bool>| {
        let mut e = format!(
            r#"{{"event_id":"w{window}-{i}","timestamp":{},"service":"cal","model":"m""#,
            t0 + window * 60_000 + i * 100
        );
        if let Some(c) = conf {
            e += &format!(r#","confidence":{c:.6}"#);
        }
        if let Some(y) = correct {
            e += &format!(r#","correct":{y}"#);
        }
        text += &e;
        text += "}\n";
    };
    // Window after window, in event-time order (nothing late).
    for window in 0..9 {
        for i in 0..400 {
            let (u, v) = (uniform(), uniform());
            let (conf, correct) = match window {
                0 => (u, Some(v < u)),                                      // calibrated
                1 => (0.85 + 0.15 * u, Some(v < 0.5)),                      // over-confident
                2 => (0.5 * u, Some(v < 0.9)),                              // under-confident
                3 => (u, Some(v < 0.5)),                                    // random confidence
                4 => (u, Some(true)),  // all correct: auroc null
                5 => (u, Some(false)), // all wrong: auroc null
                6 => (0.3 + 0.1 * u.max(1e-6), Some(v < 0.35)), // one bin
                7 => (u, None),        // no labels: calibration null
                _ => (if i % 2 == 0 { 0.0 } else { 1.0 }, Some(i % 4 < 2)), // exactly 0 and 1
            };
            push(window, i, Some(conf), correct);
        }
    }
    let input = dir.path().join("cal.ndjson");
    fs::write(&input, text).unwrap();
    let data = dir.path().join("data");
    run(&input, &data, &["--window", "1m"]);
    calibration_check(&input, &data, 60_000);
    let config = dir.path().join("mass.toml");
    fs::write(&config, "[calibration]\nbinning = \"equal_mass\"\n").unwrap();
    let mass = dir.path().join("mass");
    run(
        &input,
        &mass,
        &["--window", "1m", "--config", config.to_str().unwrap()],
    );
    calibration_check_bins(&input, &mass, 60_000, 10, "equal_mass");
    // Nine windows, and null (not NaN) where the definition has no value.
    assert_eq!(count(&data, "SELECT count(*) FROM metrics"), 9);
    assert_eq!(
        count(&data, "SELECT count(*) FROM metrics WHERE auroc IS NULL"),
        3
    );
    assert_eq!(
        count(
            &data,
            "SELECT count(*) FROM metrics WHERE ece IS NULL AND labeled = 0"
        ),
        1
    );
    assert_eq!(
        count(
            &data,
            "SELECT count(*) FROM metrics WHERE isnan(ece) OR isnan(auroc) OR isnan(brier)"
        ),
        0
    );
}

fn event(id: &str, ts: i64, service: &str) -> String {
    format!(
        r#"{{"event_id":"{id}","timestamp":{ts},"service":"{service}","model":"m","latency_ms":12.5,"tokens_in":10,"tokens_out":5}}"#
    )
}

/// `provider` (who serves the model) is an `events` column: kept as sent, null when absent,
/// and a provider that is not a string is a dead letter naming the field. Spend groups by it:
/// priced events carry their price-table cost in `events`, next to costs sent with the event.
#[test]
fn provider_is_an_events_column() {
    let dir = test_dir();
    let t0: i64 = 1_767_225_600_000;
    let with = |id: &str, provider: &str| {
        event(id, t0, "svc").replace(
            "\"model\":\"m\"",
            &format!("\"model\":\"m\",\"provider\":{provider}"),
        )
    };
    // a and b are priced by the default price table (gpt-4o: $2.50 in, $10 out per million
    // tokens; 10 in, 5 out); c sends its own cost.
    let text = [
        with("a", "\"openai\"").replace("\"m\"", "\"gpt-4o\""),
        with("b", "\"openai\"").replace("\"m\"", "\"gpt-4o\""),
        with("c", "\"aws.bedrock\"").replace("\"tokens_in\"", "\"cost_usd\":0.25,\"tokens_in\""),
        event("d", t0, "svc"),
        with("e", "7"),
    ]
    .join("\n");
    let input = dir.path().join("providers.ndjson");
    fs::write(&input, text).unwrap();
    let data = dir.path().join("data");
    run(&input, &data, &["--window", "1m"]);
    let rows = query(
        &data,
        "SELECT coalesce(provider, '-') AS p, count(*) AS n FROM events GROUP BY 1 ORDER BY 1",
    );
    let got: Vec<(String, i64)> = rows
        .iter()
        .map(|r| {
            (
                r["p"].as_str().unwrap().to_string(),
                r["n"].as_i64().unwrap(),
            )
        })
        .collect();
    let want = [("-", 1), ("aws.bedrock", 1), ("openai", 2)].map(|(p, n)| (p.to_string(), n));
    assert_eq!(got, want);
    let reason = &query(&data, "SELECT reason FROM dead_letter")[0]["reason"];
    assert!(reason.as_str().unwrap().contains("provider"), "{reason}");
    let spend = query(
        &data,
        "SELECT provider, sum(cost_usd) AS usd FROM events WHERE provider IS NOT NULL \
         GROUP BY 1 ORDER BY 1",
    );
    let usd = |i: usize| spend[i]["usd"].as_f64().unwrap();
    assert_eq!(spend[0]["provider"], "aws.bedrock");
    assert!((usd(0) - 0.25).abs() < 1e-12, "{spend:?}");
    let priced = 2.0 * (10.0 * 2.5 + 5.0 * 10.0) / 1e6;
    assert_eq!(spend[1]["provider"], "openai");
    assert!((usd(1) - priced).abs() < 1e-12, "{spend:?}");
}

#[test]
fn late_events_are_counted_and_kept() {
    let dir = test_dir();
    let t0: i64 = 1_767_225_600_000;
    let mut text = String::new();
    for i in 0..600 {
        text += &event(&format!("on-time-{i}"), t0 + i * 1000, "svc");
        text.push('\n');
    }
    // Ten minutes behind the newest event: far past the 5 s bound, its window long closed.
    for i in 0..7 {
        text += &event(&format!("late-{i}"), t0 + i * 1000, "svc");
        text.push('\n');
    }
    text += "not json\n\n{\"event_id\": 5}\n";
    let input = dir.path().join("late.ndjson");
    fs::write(&input, &text).unwrap();
    let data = dir.path().join("data");
    run(&input, &data, &["--window", "1m"]);

    let d = &data;
    assert_eq!(count(d, "SELECT count(*) FROM events"), 607);
    assert_eq!(count(d, "SELECT count(*) FROM events WHERE late"), 7);
    assert_eq!(
        count(
            d,
            "SELECT count(*) FROM events WHERE late AND event_id LIKE 'late-%'"
        ),
        7
    );
    assert_eq!(count(d, "SELECT sum(late_events) FROM metrics"), 7);
    // Late events are not added to their (closed) window: it still holds 60 on-time events.
    assert_eq!(
        count(
            d,
            "SELECT requests FROM metrics WHERE window_start = to_timestamp_millis(1767225600000)"
        ),
        60
    );
    let dead = count(d, "SELECT count(*) FROM dead_letter");
    assert_eq!(dead, 3);
    assert_eq!(
        count(d, "SELECT count(*) FROM events") + dead,
        lines(&input)
    );
}

#[test]
fn malformed_payloads_go_to_dead_letter_with_reasons_and_raw_bytes() {
    let dir = test_dir();
    let input = generate(
        dir.path(),
        "bad.ndjson",
        &["--count", "30000", "--scenario", "malformed"],
    );
    let data = dir.path().join("data");
    let out = run(&input, &data, &[]);
    assert!(out.contains("dead letters"), "{out}");

    let raw = fs::read(&input).unwrap();
    let input_lines: Vec<&[u8]> = raw.split(|&b| b == b'\n').filter(|_| true).collect();
    let input_lines = &input_lines[..input_lines.len() - 1]; // after the final newline
    let valid: Vec<usize> = input_lines
        .iter()
        .enumerate()
        .filter(|(_, l)| {
            serde_json::from_slice::<Value>(l).is_ok_and(|v| {
                v.get("event_id")
                    .and_then(Value::as_str)
                    .is_some_and(|id| id.len() <= 128)
                    && v.get("confidence")
                        .and_then(Value::as_f64)
                        .is_none_or(|c| c <= 1.0)
                    && v.get("schema_version")
                        .and_then(Value::as_i64)
                        .is_none_or(|s| s == 1)
                    && v.get("tokens_in")
                        .and_then(Value::as_i64)
                        .is_none_or(|t| t >= 0)
                    && v.get("latency_ms").is_none_or(Value::is_number)
                    && v.get("timestamp").is_some_and(|t| {
                        t.is_number() || t.as_str().is_some_and(|s| s.ends_with('Z'))
                    })
            })
        })
        .map(|(i, _)| i)
        .collect();
    let bad = input_lines.len() - valid.len();
    assert!(
        bad > 500,
        "the scenario breaks a share of payloads, got {bad}"
    );

    let events = query(
        &data,
        "SELECT source_offset FROM events ORDER BY source_offset",
    );
    let offsets: Vec<usize> = events
        .iter()
        .map(|r| r["source_offset"].as_u64().unwrap() as usize)
        .collect();
    assert_eq!(offsets, valid, "every valid payload is an event, once");

    let dead = query(
        &data,
        "SELECT source_offset, reason, raw_len, raw FROM dead_letter ORDER BY source_offset",
    );
    assert_eq!(dead.len(), bad);
    for row in &dead {
        let off = row["source_offset"].as_u64().unwrap() as usize;
        let reason = row["reason"].as_str().unwrap();
        assert!(!reason.is_empty() && !valid.contains(&off), "{row:?}");
        assert_eq!(
            row["raw_len"].as_u64().unwrap() as usize,
            input_lines[off].len(),
            "{row:?}"
        );
        // Arrow's JSON writer prints binary as hex: the raw bytes are kept exactly.
        let hex: String = input_lines[off]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(row["raw"].as_str().unwrap(), hex, "raw bytes of line {off}");
    }
    let reasons: std::collections::BTreeSet<String> = dead
        .iter()
        .map(|r| {
            r["reason"]
                .as_str()
                .unwrap()
                .split(['(', ':'])
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    assert!(
        reasons.len() >= 8,
        "distinct reasons for distinct faults: {reasons:?}"
    );
}

fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(
                    p.strip_prefix(dir).unwrap().to_path_buf(),
                    fs::read(&p).unwrap(),
                );
            }
        }
    }
    out
}

#[test]
fn replaying_the_same_input_leaves_the_same_files() {
    let dir = test_dir();
    let input = generate(
        dir.path(),
        "in.ndjson",
        &["--count", "20000", "--scenario", "malformed"],
    );
    let data = dir.path().join("data");
    // Small files, so the replay has many to get right.
    let config = dir.path().join("c.toml");
    fs::write(
        &config,
        "[source]\nbatch_size = 1000\n[sink]\nmax_file_rows = 3000\n",
    )
    .unwrap();
    let c = config.to_str().unwrap();
    run(&input, &data, &["--config", c]);
    let first = snapshot(&data);
    run(&input, &data, &["--config", c]);
    let second = snapshot(&data);
    assert!(first.len() > 8, "{:?}", first.keys());
    assert_eq!(
        first.keys().collect::<Vec<_>>(),
        second.keys().collect::<Vec<_>>()
    );
    assert!(first == second, "file contents differ between replays");
    assert_eq!(
        count(&data, "SELECT count(*) FROM events")
            + count(&data, "SELECT count(*) FROM dead_letter"),
        lines(&input)
    );
}

#[test]
fn hostile_names_write_nothing_outside_the_data_dir() {
    let dir = test_dir();
    let mut text = String::new();
    let t0: i64 = 1_767_225_600_000;
    for (i, s) in [
        "../../x",
        "/etc/passwd",
        "..",
        "a/../../b",
        "C:\\x",
        "x\u{0}y",
    ]
    .iter()
    .enumerate()
    {
        let s = serde_json::to_string(s).unwrap();
        text += &format!(
            r#"{{"event_id":"e{i}","timestamp":{},"service":{s},"model":{s},"route":{s},"tenant":{s}}}"#,
            t0 + i as i64
        );
        text.push('\n');
    }
    let input = dir.path().join("../hostile.ndjson");
    let input = dir.path().join(input.file_name().unwrap());
    fs::write(&input, text).unwrap();
    let data = dir.path().join("data");
    run(&input, &data, &[]);
    let mut entries: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    entries.sort();
    assert_eq!(entries, ["data", "hostile.ndjson"]);
    assert_eq!(count(&data, "SELECT count(*) FROM events"), 6);
    for path in snapshot(&data).keys() {
        assert!(
            !path.components().any(|c| c.as_os_str() == ".."),
            "{path:?}"
        );
    }
}

#[test]
fn custom_metrics_are_columns_of_metrics() {
    let dir = test_dir();
    let input = generate(
        dir.path(),
        "in.ndjson",
        &["--count", "20000", "--rate", "200"],
    );
    let data = dir.path().join("data");
    let config = dir.path().join("c.toml");
    fs::write(
        &config,
        r#"
[[custom_metrics]]
name = "ok_share"
sql = "avg(CASE WHEN status = 'ok' THEN 1.0 ELSE 0.0 END)"

[[custom_metrics]]
name = "tokens_out_per_call"
sql = "sum(tokens_out) * 1.0 / count(*)"

[[custom_metrics]]
name = "slow_calls"
sql = "count(*) FILTER (WHERE latency_ms > 1000)"
"#,
    )
    .unwrap();
    run(
        &input,
        &data,
        &[
            "--config",
            config.to_str().unwrap(),
            "--window",
            "1m",
            "--slide",
            "30s",
        ],
    );
    let rows = query(
        &data,
        "SELECT requests, errors, refusals, tokens_out, ok_share, tokens_out_per_call, slow_calls FROM metrics",
    );
    assert!(rows.len() > 20);
    for r in &rows {
        let f = |k: &str| r[k].as_f64().unwrap();
        let ok = (f("requests") - f("errors") - f("refusals")) / f("requests");
        assert!((f("ok_share") - ok).abs() < 1e-12, "{r:?}");
        match r["tokens_out_per_call"].as_f64() {
            Some(v) => assert!((v - f("tokens_out") / f("requests")).abs() < 1e-9, "{r:?}"),
            // SQL's sum over only nulls is null: embedding calls have no output tokens.
            None => assert_eq!(f("tokens_out"), 0.0, "{r:?}"),
        }
        assert!(f("slow_calls") >= 0.0 && f("slow_calls") <= f("requests"));
    }
    // Cross-check one custom metric against SQL over the events table.
    let slow_total: f64 = rows.iter().map(|r| r["slow_calls"].as_f64().unwrap()).sum();
    let slow_events = count(&data, "SELECT count(*) FROM events WHERE latency_ms > 1000");
    // Hopping 1m/30s: every event is in two windows.
    assert_eq!(slow_total as i64, 2 * slow_events);
}

#[test]
fn query_formats() {
    let dir = test_dir();
    let input = generate(dir.path(), "in.ndjson", &["--count", "3000"]);
    let data = dir.path().join("data");
    run(&input, &data, &[]);
    let d = data.to_str().unwrap();
    let sql = "SELECT service, count(*) AS n FROM events GROUP BY service ORDER BY service";
    let json = query(&data, sql);
    assert_eq!(json.len(), 4);
    assert_eq!(
        json.iter().map(|r| r["n"].as_i64().unwrap()).sum::<i64>(),
        3000
    );
    let csv = ok(&["query", "--data-dir", d, "--format", "csv", sql]);
    assert!(csv.starts_with("service,n\n"), "{csv}");
    let table = ok(&["query", "--data-dir", d, sql]);
    assert!(table.contains("| service"), "{table}");
    // Partition columns are queryable.
    assert!(count(&data, "SELECT count(DISTINCT date) FROM events") >= 1);
    let bad = inferwatch(&["query", "--data-dir", d, "SELECT nope FROM events"]);
    assert!(!bad.status.success());
    // The valid columns are listed once, not once per level of DataFusion's error.
    let said = String::from_utf8_lossy(&bad.stderr);
    assert!(said.contains("No field named nope"), "{said}");
    assert_eq!(said.matches("events.event_id").count(), 1, "{said}");
    // A clean run writes no dead letters, yet every table answers, with its columns.
    for table in [
        "dead_letter",
        "feedback_unmatched",
        "alerts",
        "metrics_latest",
        "calibration_bins_latest",
    ] {
        let sql = format!("SELECT count(*) AS n FROM {table}");
        let n = count(&data, &sql);
        let sql = format!("SELECT count(*) FROM {table} WHERE date IS NOT NULL");
        assert_eq!(count(&data, &sql), n, "{table}");
    }
    assert_eq!(count(&data, "SELECT count(*) FROM dead_letter"), 0);
    assert_eq!(
        count(
            &data,
            "SELECT count(reason) FROM dead_letter WHERE raw_len > 0"
        ),
        0
    );
    let empty = inferwatch(&[
        "query",
        "--data-dir",
        dir.path().join("none").to_str().unwrap(),
        "SELECT 1",
    ]);
    assert!(String::from_utf8_lossy(&empty.stderr).contains("no tables"));
}

#[test]
fn generate_is_deterministic() {
    let dir = test_dir();
    let a = generate(
        dir.path(),
        "a.ndjson",
        &[
            "--count",
            "5000",
            "--seed",
            "3",
            "--scenario",
            "runaway-loop",
        ],
    );
    let b = generate(
        dir.path(),
        "b.ndjson",
        &[
            "--count",
            "5000",
            "--seed",
            "3",
            "--scenario",
            "runaway-loop",
        ],
    );
    let c = generate(
        dir.path(),
        "c.ndjson",
        &[
            "--count",
            "5000",
            "--seed",
            "4",
            "--scenario",
            "runaway-loop",
        ],
    );
    assert_eq!(fs::read(&a).unwrap(), fs::read(&b).unwrap());
    assert_ne!(fs::read(&a).unwrap(), fs::read(&c).unwrap());
    assert_eq!(lines(&a), 5000);
}

#[test]
fn errors_say_what_to_do() {
    let dir = test_dir();
    let out = inferwatch(&["run", "--source", "file:/no/such/file.ndjson"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("/no/such/file.ndjson"),
        "{err}"
    );
    let out = inferwatch(&["run", "--source", "kafka:x"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("file:PATH"));
    let config = dir.path().join("c.toml");
    fs::write(&config, "[window]\nsize = \"1m\"\nslide = \"7s\"\n").unwrap();
    let out = inferwatch(&[
        "run",
        "--source",
        "file:x",
        "--config",
        config.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("must divide") && err.contains("c.toml"),
        "{err}"
    );
    let out = inferwatch(&["generate", "--scenario", "nope", "--out", "x"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("steady"));
}

#[test]
fn demo_runs_the_whole_pipeline() {
    let dir = test_dir();
    let data = dir.path().join("demo");
    let out = ok(&[
        "demo",
        "--duration",
        "4s",
        "--rate",
        "500",
        "--window",
        "1s",
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    assert!(out.contains("last window"), "{out}");
    assert!(out.contains("inferwatch query --data-dir"), "{out}");
    // It ends with the report, and says where it is.
    let report = data.join("report.html");
    assert!(out.contains(&report.display().to_string()), "{out}");
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(html.contains("<svg class=\"reliability\""));
    assert_eq!(count(&data, "SELECT count(*) FROM events"), 2000);
    assert!(count(&data, "SELECT count(*) FROM metrics") > 4);
}

/// `ece`, `latency_quantile`, `psi`, ... in `inferwatch query` against scikit-learn, scipy and
/// numpy over the same `events` (tests/reference/check_functions.py).
#[test]
fn query_functions_match_scikit_learn_scipy_and_numpy() {
    let dir = test_dir();
    let input = generate(
        dir.path(),
        "in.ndjson",
        &[
            "--count",
            "30000",
            "--rate",
            "200",
            "--seed",
            "5",
            "--scenario",
            "drift",
        ],
    );
    let data = dir.path().join("data");
    run(&input, &data, &["--window", "1m"]);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new("python3")
        .arg(root.join("tests/reference/check_functions.py"))
        .arg(env!("CARGO_BIN_EXE_inferwatch"))
        .arg(&data)
        .output()
        .expect("python3 runs (./scripts/test.sh installs numpy, scipy, scikit-learn)");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "function check failed:\n{text}");
    assert!(text.contains("checked"), "{text}");
}

/// Every built-in column declared with an SQL form gives, over each tumbling window's
/// on-time `events` rows, the value the operator computed incrementally.
#[test]
fn declared_columns_equal_their_sql_over_events() {
    use inferwatch_processor::columns::{Value as Kind, COLUMNS};
    let dir = test_dir();
    let input = generate(
        dir.path(),
        "in.ndjson",
        &[
            "--count",
            "20000",
            "--rate",
            "150",
            "--seed",
            "9",
            "--scenario",
            "miscalibration",
        ],
    );
    let data = dir.path().join("data");
    run(&input, &data, &["--window", "1m"]);
    let declared: Vec<_> = COLUMNS.iter().filter(|c| c.sql.is_some()).collect();
    assert!(declared.len() >= 25, "{} columns have SQL", declared.len());
    let keys = "window_start, service, model, model_version, route";
    let exprs: Vec<String> = declared
        .iter()
        .map(|c| format!("{} AS {}", c.sql.unwrap(), c.name))
        .collect();
    let names: Vec<&str> = declared.iter().map(|c| c.name).collect();
    let from_events = query(
        &data,
        &format!(
            "SELECT date_bin(INTERVAL '1 minute', timestamp, TIMESTAMP '1970-01-01T00:00:00Z') \
             AS window_start, service, model, model_version, route, {} FROM events \
             WHERE NOT late GROUP BY {keys}",
            exprs.join(", ")
        ),
    );
    let from_metrics = query(
        &data,
        &format!("SELECT {keys}, {} FROM metrics", names.join(", ")),
    );
    let key = |r: &serde_json::Map<String, Value>| {
        keys.split(", ")
            .map(|k| r[k].to_string())
            .collect::<Vec<_>>()
            .join("|")
    };
    let metrics: BTreeMap<String, _> = from_metrics.iter().map(|r| (key(r), r)).collect();
    assert_eq!(
        from_events.len(),
        metrics.len(),
        "one metrics row per window x key"
    );
    assert!(metrics.len() > 20, "{} rows", metrics.len());
    for row in &from_events {
        let m = metrics
            .get(&key(row))
            .unwrap_or_else(|| panic!("no metrics row {}", key(row)));
        for c in &declared {
            let (want, got) = (&row[c.name], &m[c.name]);
            match c.value {
                Kind::Int(_) => assert_eq!(want.as_i64(), got.as_i64(), "{} {}", c.name, key(row)),
                Kind::Float(_) => match (want.as_f64(), got.as_f64()) {
                    (Some(a), Some(b)) => assert!(
                        (a - b).abs() <= 1e-9 * a.abs().max(1.0),
                        "{} {}: SQL {a} operator {b}",
                        c.name,
                        key(row)
                    ),
                    (a, b) => assert_eq!(a, b, "{} {}", c.name, key(row)),
                },
            }
        }
    }
}
