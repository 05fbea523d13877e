//! Kafka runs of the `inferwatch` binary and the file run they must match: the shared part
//! of the Kafka, production and scale-out tests.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde_json::Value;

use super::broker::{brokers, create_topic, unique};
use super::cli::*;

pub const PARTITIONS: i32 = 4;

/// Where a run's log goes: beside a local data dir, in the temp dir for a bucket.
pub fn log_path(data: &Path) -> PathBuf {
    let name = format!("{}.log", unique("run"));
    match data.to_str().is_some_and(|d| d.contains("://")) {
        true => std::env::temp_dir().join(name),
        false => data.with_extension(name),
    }
}

/// Produces the generator's traffic to `topic` with `inferwatch generate --brokers`.
pub fn produce(brokers: &str, topic: &str, args: &[&str]) {
    let mut all = vec!["generate", "--brokers", brokers, "--topic", topic];
    all.extend_from_slice(args);
    ok(&all);
}

/// `inferwatch run --brokers` as a child process, logging to a file beside `data`.
pub fn spawn_run(brokers: &str, topic: &str, group: &str, data: &Path, extra: &[&str]) -> Child {
    let log = log_path(data);
    let data = data.to_str().unwrap();
    spawn_run_with(command(), brokers, topic, group, data, extra, &log)
}

/// [`spawn_run`] from a prepared command (extra environment, another working directory),
/// logging to `log`.
pub fn spawn_run_with(
    mut cmd: Command,
    brokers: &str,
    topic: &str,
    group: &str,
    data: &str,
    extra: &[&str],
    log: &Path,
) -> Child {
    cmd.args([
        "run",
        "--brokers",
        brokers,
        "--topic",
        topic,
        "--group",
        group,
    ])
    .args(["--data-dir", data])
    .args(extra)
    .env("INFERWATCH_LOG", "info")
    .stdout(Stdio::null())
    .stderr(std::fs::File::create(log).unwrap())
    .spawn()
    .expect("inferwatch runs")
}

/// Waits for a child run to exit within `limit` (it is killed past it).
pub fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("inferwatch run did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits for a child run to exit 0 within `limit`.
pub fn wait_ok(child: &mut Child, limit: Duration) {
    let status = wait_exit(child, limit);
    assert!(status.success(), "inferwatch run exited with {status}");
}

/// Waits for every child run to exit 0 within `limit`; if one did not, the failure shows the
/// last lines of every run log (`*.log`) in `logs`.
pub fn wait_all_ok(children: &mut [&mut Child], logs: &Path, limit: Duration) {
    let statuses: Vec<_> = children.iter_mut().map(|c| wait_exit(c, limit)).collect();
    if statuses.iter().all(|s| s.success()) {
        return;
    }
    let mut tails = String::new();
    for e in std::fs::read_dir(logs).unwrap().flatten() {
        if e.file_name().to_string_lossy().ends_with(".log") {
            let text = std::fs::read_to_string(e.path()).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(25)..].join("\n");
            tails += &format!("\n--- {}:\n{tail}", e.file_name().to_string_lossy());
        }
    }
    panic!("inferwatch runs exited with {statuses:?}{tails}");
}

/// Runs the Kafka processor until the topic has been quiet for a few seconds.
pub fn consume_all(brokers: &str, topic: &str, group: &str, data: &Path, extra: &[&str]) {
    let mut args = vec!["--stop-when-idle", "8s", "--window", "1m"];
    args.extend_from_slice(extra);
    let mut child = spawn_run(brokers, topic, group, data, &args);
    wait_ok(&mut child, Duration::from_secs(240));
}

/// The metric rows of a data dir, as sorted JSON lines (every column).
pub fn metric_rows(data: &Path) -> Vec<String> {
    let rows = query(
        data,
        "SELECT * EXCLUDE (date, hour) FROM metrics ORDER BY window_start, service, model, model_version, route",
    );
    rows.into_iter()
        .map(|r| Value::Object(r).to_string())
        .collect()
}

pub fn event_ids(data: &Path) -> (i64, i64) {
    let r = &query(
        data,
        "SELECT count(*) AS n, count(DISTINCT event_id) AS d FROM events",
    )[0];
    (r["n"].as_i64().unwrap(), r["d"].as_i64().unwrap())
}

/// What differs when the row counts do: late events on each side (a window closed early
/// makes late events), and the window × key rows only one side has.
fn row_diagnosis(got: &[String], reference: &Reference, data: &Path) -> String {
    let late = |d: &Path| count(d, "SELECT count(*) FROM events WHERE late");
    let key = |row: &String| {
        let v: Value = serde_json::from_str(row).unwrap();
        ["window_start", "service", "model", "model_version", "route"]
            .iter()
            .map(|k| v[*k].to_string())
            .collect::<Vec<_>>()
            .join(" ")
    };
    let ours: BTreeSet<String> = got.iter().map(key).collect();
    let theirs: BTreeSet<String> = reference.metrics.iter().map(key).collect();
    let only = |a: &BTreeSet<String>, b: &BTreeSet<String>| {
        a.difference(b).take(8).cloned().collect::<Vec<_>>()
    };
    format!(
        "late events: {} here, {} in the file run; rows only in the file run: {:?}; only here: {:?}",
        late(data),
        late(&reference.data),
        only(&theirs, &ours),
        only(&ours, &theirs)
    )
}

/// The file run every Kafka run must match.
pub struct Reference {
    pub data: PathBuf,
    pub valid: i64,
    pub dead: i64,
    pub metrics: Vec<String>,
}

pub fn reference(dir: &Path, args: &[&str]) -> Reference {
    let input = generate(dir, "ref.ndjson", args);
    let data = dir.join("ref-data");
    // One thread: every Kafka run (on a pool of workers, with SIGKILLs and rebalances)
    // must give exactly its rows.
    run(&input, &data, &["--window", "1m", "--threads", "1"]);
    let valid = count(&data, "SELECT count(*) FROM events");
    let dead = count(&data, "SELECT count(*) FROM dead_letter");
    assert_eq!(valid + dead, lines(&input));
    Reference {
        metrics: metric_rows(&data),
        data,
        valid,
        dead,
    }
}

pub fn assert_matches(reference: &Reference, data: &Path) {
    let (n, distinct) = event_ids(data);
    assert_eq!(
        distinct, reference.valid,
        "every valid event_id is in events"
    );
    assert_eq!(n, reference.valid, "and only once");
    let ids = |d: &Path| -> BTreeSet<String> {
        query(d, "SELECT DISTINCT event_id FROM events")
            .into_iter()
            .map(|r| r["event_id"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(
        ids(data) == ids(&reference.data),
        "the same event_ids as the file run"
    );
    assert_eq!(
        count(data, "SELECT count(*) FROM dead_letter"),
        reference.dead,
        "each bad payload once"
    );
    let got = metric_rows(data);
    assert_eq!(
        got.len(),
        reference.metrics.len(),
        "as many metric rows as the file run; {}",
        row_diagnosis(&got, reference, data)
    );
    for (g, r) in got.iter().zip(&reference.metrics) {
        assert_eq!(g, r, "metric rows differ");
    }
}

pub const TRAFFIC: &[&str] = &[
    "--count",
    "200000",
    "--rate",
    "2000",
    "--seed",
    "31",
    "--scenario",
    "malformed",
];

/// A fresh topic holding `TRAFFIC`, and the file run of the same events.
pub fn traffic_topic(prefix: &str, dir: &Path) -> (&'static str, String, Reference) {
    traffic_topic_with(prefix, dir, TRAFFIC)
}

/// A fresh topic holding the generator's traffic for `args`, and its file run.
pub fn traffic_topic_with(
    prefix: &str,
    dir: &Path,
    args: &[&str],
) -> (&'static str, String, Reference) {
    let b = brokers();
    let topic = unique(prefix);
    create_topic(b, &topic, PARTITIONS);
    produce(b, &topic, args);
    (b, topic, reference(dir, args))
}

/// A plain consumer of `topic` from the start, for checking what inferwatch produced.
pub fn check_consumer(brokers: &str, topic: &str) -> BaseConsumer {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique("check"))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    consumer
}

/// The latest checkpoint generation of `partition` of `source` under `data`.
pub fn latest_checkpoint(data: &Path, source: &str, partition: i32) -> Vec<u8> {
    newest_checkpoint(data, source, partition).expect("a checkpoint")
}

/// [`latest_checkpoint`], `None` before the first one is written.
pub fn newest_checkpoint(data: &Path, source: &str, partition: i32) -> Option<Vec<u8>> {
    let dir = data
        .join("_checkpoints")
        .join(source)
        .join(format!("p{partition:05}"));
    let mut gens: Vec<_> = std::fs::read_dir(&dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "ckpt"))
        .collect();
    gens.sort();
    std::fs::read(gens.last()?).ok()
}
