//! Running inferwatch as operators do: its metrics scraped by a real Prometheus, health
//! endpoints, and stops by signal (one: a clean stop that a restart resumes; two: an
//! immediate exit that still leaves a data dir a restart resumes from).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::broker::{free_port, signal};
use common::cli::*;
use common::runs::*;
use common::test_dir;
use serde_json::Value;

/// `GET path` from `addr`: (status code, body).
fn get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, body.to_string()))
}

/// One sample of `name` in a `/metrics` body (the line without labels, or with `labels`).
fn sample(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Waits until `f` says yes, polling every 200 ms, failing with `what` after `limit`.
fn wait_for(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "{what} within {limit:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A Prometheus server scraping `target` every second; killed on drop.
struct Prometheus {
    addr: String,
    child: Child,
}

impl Prometheus {
    fn start(dir: &Path, target: &str) -> Prometheus {
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: inferwatch\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
            .spawn()
            .expect("prometheus (Debian package) is installed by scripts/test.sh");
        Prometheus { addr, child }
    }

    /// The value of an instant query with one series, if it has one now.
    fn value(&self, query: &str) -> Option<f64> {
        let (code, body) = get(&self.addr, &format!("/api/v1/query?query={query}"))?;
        if code != 200 {
            return None;
        }
        let v: Value = serde_json::from_str(&body).ok()?;
        v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Passes `text` through `promtool check metrics`; its complaints, if any.
fn promtool_complaints(text: &str) -> String {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool comes with prometheus");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        said.trim().to_string()
    } else {
        format!("exit {}: {said}", out.status)
    }
}

/// Prometheus scrapes a Kafka run: its counters equal the tables' rows, the text passes
/// promtool, the run is live and ready once caught up (empty partitions included); SIGTERM then stops it cleanly with
/// its windows open in the checkpoints, and a restart gives the file run's tables.
#[test]
fn prometheus_counts_what_the_tables_hold_and_sigterm_resumes() {
    let dir = test_dir();
    let args = [
        "--count",
        "20000",
        "--rate",
        "500",
        "--seed",
        "5",
        "--scenario",
        "malformed",
    ];
    // More partitions than keys: some stay empty, and an empty partition is caught up.
    let (b, topic) = (common::broker::brokers(), common::broker::unique("prom"));
    common::broker::create_topic(b, &topic, 16);
    produce(b, &topic, &args);
    let reference = reference(dir.path(), &args);
    let data = dir.path().join("data");
    let http = format!("127.0.0.1:{}", free_port());
    let group = common::broker::unique("prom");
    // Checkpoints every second, so their histogram fills while the test watches.
    let config = dir.path().join("run.toml");
    std::fs::write(&config, "[checkpoint]\ninterval = \"1s\"\n").unwrap();
    let mut run = spawn_run(
        b,
        &topic,
        &group,
        &data,
        &[
            "--window",
            "1m",
            "--http",
            &http,
            "--config",
            config.to_str().unwrap(),
        ],
    );
    let prom = Prometheus::start(dir.path(), &http);
    let total = (reference.valid + reference.dead) as f64;
    wait_for(Duration::from_secs(120), "every event consumed", || {
        get(&http, "/metrics")
            .and_then(|(_, body)| sample(&body, "inferwatch_events_received_total"))
            == Some(total)
    });
    assert_eq!(get(&http, "/livez").unwrap().0, 200);
    wait_for(Duration::from_secs(30), "/readyz says ready", || {
        get(&http, "/readyz").is_some_and(|(c, _)| c == 200)
    });
    // Ready: every partition's lag is known (the client's statistics come every 2 s).
    let (code, body) = get(&http, "/metrics").unwrap();
    assert_eq!(code, 200);
    assert_eq!(promtool_complaints(&body), "", "{body}");
    assert!(body.contains("inferwatch_build_info{version=\""), "{body}");
    assert!(
        body.contains("inferwatch_consumer_lag_messages{partition=\""),
        "{body}"
    );
    assert_eq!(get(&http, "/nope").unwrap().0, 404);
    wait_for(Duration::from_secs(30), "checkpoints timed", || {
        get(&http, "/metrics")
            .and_then(|(_, body)| sample(&body, "inferwatch_checkpoint_duration_seconds_count"))
            .is_some_and(|n| n >= 1.0)
    });
    wait_for(
        Duration::from_secs(60),
        "Prometheus scraped the totals",
        || {
            prom.value("inferwatch_events_processed_total") == Some(reference.valid as f64)
                && prom.value("sum(inferwatch_events_dead_lettered_total)")
                    == Some(reference.dead as f64)
        },
    );
    signal(run.id(), "TERM");
    wait_ok(&mut run, Duration::from_secs(60));
    // Stopped, not ended: the events are written, their windows wait in the checkpoints.
    assert_eq!(event_ids(&data), (reference.valid, reference.valid));
    assert_eq!(
        count(&data, "SELECT count(*) FROM dead_letter"),
        reference.dead
    );
    consume_all(b, &topic, &group, &data, &[]);
    assert_matches(&reference, &data);
}

/// A signal in the middle of consuming stops cleanly; two signals exit at once. Either
/// way a restart gives every event once and the file run's metrics.
#[test]
fn one_or_two_signals_mid_run_leave_a_resumable_data_dir() {
    let dir = test_dir();
    let (b, topic, reference) = traffic_topic("stop", dir.path());
    let total = (reference.valid + reference.dead) as f64;
    let data = dir.path().join("data");
    let group = common::broker::unique("stop");
    for (signals, share) in [(1, 0.25), (2, 0.6)] {
        let http = format!("127.0.0.1:{}", free_port());
        let mut run = spawn_run(
            b,
            &topic,
            &group,
            &data,
            &["--window", "1m", "--http", &http],
        );
        wait_for(Duration::from_secs(120), "part of the topic read", || {
            get(&http, "/metrics")
                .and_then(|(_, body)| sample(&body, "inferwatch_events_received_total"))
                .is_some_and(|n| n >= share * total)
        });
        signal(run.id(), "TERM");
        if signals == 2 {
            std::thread::sleep(Duration::from_millis(50));
            signal(run.id(), "TERM");
            let status = wait_exit(&mut run, Duration::from_secs(60));
            assert_eq!(status.code(), Some(130), "exits at once, saying so");
        } else {
            wait_ok(&mut run, Duration::from_secs(60));
        }
    }
    consume_all(b, &topic, &group, &data, &[]);
    assert_matches(&reference, &data);
}

/// SIGINT in the middle of a file replay, then the replay again: the tables equal one
/// uninterrupted replay's (nothing the interrupted run left behind survives or doubles).
#[test]
fn sigint_mid_replay_then_a_rerun_equals_one_replay() {
    let dir = test_dir();
    let input = generate(
        dir.path(),
        "in.ndjson",
        &[
            "--count",
            "600000",
            "--scenario",
            "malformed",
            "--seed",
            "9",
        ],
    );
    let whole = dir.path().join("whole");
    run(&input, &whole, &["--window", "1m", "--threads", "1"]);
    let data = dir.path().join("data");
    let http = format!("127.0.0.1:{}", free_port());
    let mut child = command()
        .args(["run", "--source", &format!("file:{}", input.display())])
        .args(["--data-dir", data.to_str().unwrap(), "--window", "1m"])
        .args(["--threads", "1", "--http", &http])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(Duration::from_secs(60), "part of the file read", || {
        get(&http, "/metrics")
            .and_then(|(_, body)| sample(&body, "inferwatch_events_received_total"))
            .is_some_and(|n| n >= 50_000.0)
    });
    signal(child.id(), "INT");
    wait_ok(&mut child, Duration::from_secs(60));
    let partial = count(&data, "SELECT count(*) FROM events");
    assert!(
        partial < 600_000,
        "stopped before the end ({partial} events)"
    );
    run(&input, &data, &["--window", "1m"]);
    let rows = |d: &Path| metric_rows(d);
    assert_eq!(rows(&data), rows(&whole));
    assert_eq!(event_ids(&data), event_ids(&whole));
    let dead = "SELECT count(*) FROM dead_letter";
    assert_eq!(count(&data, dead), count(&whole, dead));
}
