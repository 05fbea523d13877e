//! The number of threads never changes a result: file replays of every scenario, with and
//! without late feedback, give the same rows in every table with `--threads 1` (one thread
//! does everything) and with a pool of workers. Nor does the memory budget: `sessions`
//! counts spilled to disk are the counts kept in memory.

use std::path::Path;

use serde_json::Value;

mod common;
use common::cli::*;
use common::test_dir;

/// Every row of `table`, every column but the Hive partition columns, as sorted JSON lines.
/// A table nothing was written to is not there to query: no rows.
fn rows(data: &Path, table: &str) -> Vec<String> {
    let probe = inferwatch(&[
        "query",
        "--data-dir",
        data.to_str().unwrap(),
        &format!("SELECT count(*) FROM {table}"),
    ]);
    if !probe.status.success() {
        let err = String::from_utf8_lossy(&probe.stderr);
        assert!(err.contains("not found"), "{table}: {err}");
        return Vec::new();
    }
    let mut rows: Vec<String> = query(data, &format!("SELECT * FROM {table}"))
        .into_iter()
        .map(|mut r| {
            r.remove("date");
            r.remove("hour");
            Value::Object(r).to_string()
        })
        .collect();
    rows.sort();
    rows
}

fn assert_same_tables(a: &Path, b: &Path, what: &str) {
    for table in [
        "metrics",
        "calibration_bins",
        "sessions",
        "alerts",
        "dead_letter",
    ] {
        let (x, y) = (rows(a, table), rows(b, table));
        assert_eq!(x.len(), y.len(), "{what}: {table} row counts");
        for (r, s) in x.iter().zip(&y) {
            assert_eq!(r, s, "{what}: {table} rows differ");
        }
    }
    let events = "SELECT count(*) AS n, count(DISTINCT event_id) AS d, \
                  sum(CASE WHEN late THEN 1 ELSE 0 END) AS late, \
                  sum(CAST(round(cost_usd * 1e9) AS BIGINT)) AS nano_usd \
                  FROM events";
    assert_eq!(query(a, events), query(b, events), "{what}: events");
}

#[test]
fn every_scenario_gives_the_same_rows_on_one_thread_and_on_a_pool() {
    let dir = test_dir();
    let scenarios = [
        "steady",
        "drift",
        "miscalibration",
        "cost-spike",
        "runaway-loop",
        "malformed",
    ];
    for scenario in scenarios {
        let args = [
            "--count",
            "60000",
            "--rate",
            "200",
            "--seed",
            "17",
            "--scenario",
            scenario,
            "--recover-at",
            "0.8",
        ];
        let input = generate(dir.path(), &format!("{scenario}.ndjson"), &args);
        let one = dir.path().join(format!("{scenario}-1"));
        let pool = dir.path().join(format!("{scenario}-3"));
        run(&input, &one, &["--window", "1m", "--threads", "1"]);
        run(&input, &pool, &["--window", "1m", "--threads", "3"]);
        assert!(
            count(&one, "SELECT count(*) FROM metrics") > 100,
            "{scenario}"
        );
        assert_same_tables(&one, &pool, scenario);
    }
}

#[test]
fn late_feedback_joins_alike_on_one_thread_and_on_a_pool() {
    let dir = test_dir();
    let input = dir.path().join("predictions.ndjson");
    let feedback = dir.path().join("feedback.ndjson");
    ok(&[
        "generate",
        "--count",
        "40000",
        "--rate",
        "100",
        "--seed",
        "5",
        "--scenario",
        "miscalibration",
        "--out",
        input.to_str().unwrap(),
        "--feedback-out",
        feedback.to_str().unwrap(),
        "--feedback-delay",
        "3m",
    ]);
    let fb = format!("file:{}", feedback.display());
    let one = dir.path().join("one");
    let pool = dir.path().join("pool");
    for (data, threads) in [(&one, "1"), (&pool, "2")] {
        run(
            &input,
            data,
            &["--window", "1m", "--feedback", &fb, "--threads", threads],
        );
    }
    assert!(count(&one, "SELECT count(*) FROM metrics WHERE revision > 0") > 0);
    assert_same_tables(&one, &pool, "with feedback");
    assert_eq!(
        rows(&one, "feedback_unmatched"),
        rows(&pool, "feedback_unmatched")
    );
}

#[test]
fn sessions_counts_spilled_to_disk_equal_those_kept_in_memory() {
    let dir = test_dir();
    // Thousands of sessions per key in one 10-minute window: sets big enough to spill.
    let args = ["--count", "150000", "--rate", "1500", "--seed", "23"];
    let input = generate(dir.path(), "sessions.ndjson", &args);
    let spill = dir.path().join("spill");
    let config = dir.path().join("spill.toml");
    std::fs::write(
        &config,
        format!(
            "[runtime]\nsessions_memory_mb = 0\nspill_dir = {:?}\n",
            spill.to_str().unwrap()
        ),
    )
    .unwrap();
    let (memory, spilled) = (dir.path().join("memory"), dir.path().join("spilled"));
    run(&input, &memory, &["--window", "10m", "--threads", "1"]);
    let out = run(
        &input,
        &spilled,
        &["--window", "10m", "--config", config.to_str().unwrap()],
    );
    assert!(out.contains("of session counts spilled to disk"), "{out}");
    let sessions = "SELECT max(sessions) AS m FROM metrics";
    assert!(count(&memory, sessions) > 2_000, "sets big enough to spill");
    assert_same_tables(&memory, &spilled, "spilled");
    let left: Vec<_> = std::fs::read_dir(&spill).unwrap().collect();
    assert!(left.is_empty(), "spill files leave no names: {left:?}");
    assert!(!memory.join("_spill").read_dir().unwrap().any(|_| true));
}
