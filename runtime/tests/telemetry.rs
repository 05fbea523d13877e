//! What `/metrics` says after a file replay equals what the replay wrote: events, dead
//! letters by reason class, windows, alert transitions, Parquet files and their bytes.

use std::path::Path;
use std::sync::atomic::AtomicBool;

use inferwatch_ingest::FileSource;
use inferwatch_runtime::jobs::Job;
use inferwatch_runtime::Config;

/// The value of `series` (name with labels, as rendered) in the text format.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no sample {series} in:\n{text}"))
}

/// (files, bytes) of the Parquet files under `dir`.
fn parquet_files(dir: &Path) -> (u64, u64) {
    let mut out = (0, 0);
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            let (f, b) = parquet_files(&path);
            out = (out.0 + f, out.1 + b);
        } else if path.extension().is_some_and(|e| e == "parquet") {
            out = (out.0 + 1, out.1 + entry.metadata().unwrap().len());
        }
    }
    out
}

#[test]
fn the_metrics_of_a_replay_equal_what_it_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let mut lines: Vec<String> = (0..180)
        .map(|s| {
            format!(
                r#"{{"event_id":"e{s}","timestamp":{},"service":"a","model":"m","latency_ms":5}}"#,
                1_767_225_600_000i64 + s * 1000
            )
        })
        .collect();
    lines.insert(10, "not json".into());
    lines.insert(50, "{\"event_id\": broken".into());
    lines.insert(90, "[1, 2]".into());
    lines.insert(120, r#"{"timestamp":1,"service":"a","model":"m"}"#.into());
    let input = dir.path().join("in.ndjson");
    std::fs::write(&input, lines.join("\n")).unwrap();

    let mut config = Config {
        data_dir: dir.path().join("data"),
        ..Config::default()
    };
    config.processor.alerts.rules =
        vec![toml::from_str("name = 'seen'\nmetric = 'requests'\nop = '>='\nwarning = 1").unwrap()];
    let source = FileSource::open(&input)
        .unwrap()
        .with_partitions(config.file_partitions(false));
    let job = Job::replay(&config, Box::new(source), None).unwrap();
    let telemetry = job.telemetry();
    let report = job.run(&AtomicBool::new(false), |_| {}, |_| {}).unwrap();
    let text = telemetry.render();

    assert_eq!(sample(&text, "inferwatch_events_received_total"), 184.0);
    assert_eq!(sample(&text, "inferwatch_events_processed_total"), 180.0);
    let dead = |class: &str| {
        sample(
            &text,
            &format!("inferwatch_events_dead_lettered_total{{reason=\"{class}\"}}"),
        )
    };
    assert_eq!(dead("invalid_json"), 2.0);
    assert_eq!(dead("not_an_object"), 1.0);
    assert_eq!(dead("missing_field"), 1.0);
    let windows = report.progress.windows_closed as f64;
    assert!(windows >= 3.0);
    assert_eq!(sample(&text, "inferwatch_windows_closed_total"), windows);
    // Every window closed at the end of the file.
    assert_eq!(sample(&text, "inferwatch_open_windows"), 0.0);
    assert!(
        sample(
            &text,
            "inferwatch_alert_transitions_total{kind=\"alert\",rule=\"seen\",state=\"firing\"}"
        ) >= 1.0
    );
    let (files, bytes) = parquet_files(&config.data_dir);
    assert_eq!(files, report.files_written);
    assert_eq!(
        sample(&text, "inferwatch_parquet_files_written_total"),
        files as f64
    );
    assert_eq!(
        sample(&text, "inferwatch_parquet_written_bytes_total"),
        bytes as f64
    );
    // A replay makes no checkpoints.
    assert_eq!(
        sample(&text, "inferwatch_checkpoint_duration_seconds_count"),
        0.0
    );
    assert!(telemetry.ready());
}
