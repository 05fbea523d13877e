//! Kafka outages: a broker that is down, goes away mid-run, or stops answering while
//! messages wait. A run that was asked to read everything waits for the broker and never
//! stops early as if it had caught up.

use std::path::Path;
use std::time::{Duration, Instant};

mod common;
use common::broker::{create_topic, external, free_port, signal, unique, Tansu};
use common::runs::*;
use common::test_dir;

#[test]
fn a_broker_that_is_down_at_start_and_mid_run_is_waited_for() {
    if external() {
        eprintln!(
            "skipped: needs a broker of its own to stop and start (INFERWATCH_TEST_BROKERS is set)"
        );
        return;
    }
    let dir = test_dir();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let db = dir.path().join("broker.db");
    let topic = "inference-events";
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let config = dir.path().join("c.toml");
    // A session that outlives the broker's restart under load. When the client's session
    // expired while the broker was away, Tansu 0.6 kept the group forming around the old
    // member as its leader, which no longer existed, and never assigned the partitions
    // again (seen in its database: state `Forming`, leader not among the members).
    std::fs::write(
        &config,
        "[checkpoint]\ninterval = \"500ms\"\n[kafka.properties]\n\"session.timeout.ms\" = \"30000\"\n",
    )
    .unwrap();
    let group = unique("g");
    // The processor starts first, with no broker there.
    let mut child = spawn_run(
        &addr,
        topic,
        &group,
        &data,
        &[
            "--config",
            config.to_str().unwrap(),
            "--window",
            "1m",
            "--stop-when-idle",
            "25s",
        ],
    );
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        child.try_wait().unwrap().is_none(),
        "it waits instead of exiting"
    );
    let mut broker = Tansu::start(port, &db);
    create_topic(&addr, topic, 2);
    let half = ["--count", "20000", "--rate", "500", "--seed", "5"];
    produce(&addr, topic, &half);
    // Let it consume some, then take the broker away for a while.
    std::thread::sleep(Duration::from_secs(4));
    broker.kill();
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        child.try_wait().unwrap().is_none(),
        "it keeps waiting while the broker is gone"
    );
    let _broker = Tansu::start(port, &db);
    let rest = [
        "--count",
        "20000",
        "--rate",
        "500",
        "--seed",
        "6",
        "--start",
        "2026-01-01T01:00:00Z",
    ];
    produce(&addr, topic, &rest);
    wait_ok(&mut child, Duration::from_secs(240));
    assert_eq!(event_ids(&data), (40_000, 40_000));
    let log = run_logs(&data);
    let retrying = log.lines().filter(|l| l.contains("retrying")).count();
    assert!(
        retrying >= 1,
        "a clear log line says it is retrying:\n{log}"
    );
    assert!(
        retrying <= 12,
        "one line per kind of trouble, not one per retry ({retrying}):\n{log}"
    );
}

/// The logs of the runs on `data` (written beside it).
fn run_logs(data: &Path) -> String {
    std::fs::read_dir(data.parent().unwrap())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect()
}

/// The offset after the last one `data`'s latest checkpoint of `partition` covers; `None`
/// before the first (or while its directory is still empty).
fn checkpointed(data: &Path, topic: &str, partition: i32) -> Option<i64> {
    let ckpt = newest_checkpoint(data, topic, partition)?;
    let header = String::from_utf8_lossy(&ckpt[..ckpt.len().min(200)]).into_owned();
    let next = header
        .split_whitespace()
        .find_map(|w| w.strip_prefix("next_offset="))?;
    next.parse().ok()
}

#[test]
fn a_broker_that_stops_answering_while_messages_wait_is_waited_for() {
    if external() {
        eprintln!("skipped: needs a broker of its own to pause (INFERWATCH_TEST_BROKERS is set)");
        return;
    }
    let dir = test_dir();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let broker = Tansu::start(port, &dir.path().join("broker.db"));
    let topic = "inference-events";
    create_topic(&addr, topic, 1);
    produce(&addr, topic, &["--count", "2000", "--seed", "7"]);
    let data = dir.path().join("data");
    let config = dir.path().join("c.toml");
    // The broker's pause must not expire the group session (see the test above).
    std::fs::write(
        &config,
        "[checkpoint]\ninterval = \"300ms\"\n[kafka.properties]\n\"session.timeout.ms\" = \"30000\"\n",
    )
    .unwrap();
    let args = ["--config", config.to_str().unwrap(), "--window", "1m"];
    let idle = ["--stop-when-idle", "3s"];
    let mut child = spawn_run(
        &addr,
        topic,
        &unique("g"),
        &data,
        &[&args[..], &idle].concat(),
    );
    let deadline = Instant::now() + Duration::from_secs(90);
    while checkpointed(&data, topic, 0) != Some(2000) {
        assert!(
            Instant::now() < deadline,
            "the first 2000 events were not checkpointed"
        );
        assert!(child.try_wait().unwrap().is_none(), "it exited early");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Messages arrive while the processor sleeps; an answer to a fetch it sent before it
    // slept comes first (empty), so that none of them reaches it before the broker freezes.
    signal(child.id(), "STOP");
    std::thread::sleep(Duration::from_secs(1));
    let rest = [
        "--count",
        "2000",
        "--seed",
        "8",
        "--start",
        "2026-01-01T01:00:00Z",
    ];
    produce(&addr, topic, &rest);
    // Quiet for longer than --stop-when-idle, the processor asks how far behind it is: the
    // frozen broker does not answer (the client gives up after 5 s).
    broker.pause();
    std::thread::sleep(Duration::from_secs(1));
    signal(child.id(), "CONT");
    std::thread::sleep(Duration::from_secs(10));
    assert!(
        child.try_wait().unwrap().is_none(),
        "it waits for the silent broker instead of stopping as if caught up"
    );
    broker.resume();
    wait_ok(&mut child, Duration::from_secs(120));
    assert_eq!(event_ids(&data), (4000, 4000));
    let log = run_logs(&data);
    assert!(
        log.contains("may be unread messages"),
        "the log says why it waits:\n{log}"
    );
}
