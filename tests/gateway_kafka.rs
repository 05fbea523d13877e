//! The HTTP gateway in front of a real Kafka-protocol broker (Tansu): what it acknowledged is
//! on the topic once across a broker stop, and past its in-flight bound it refuses whole
//! requests.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::broker::{create_topic, free_port, unique, Tansu};
use common::cli::{command, query};
use common::http::{get, post_batch, Listening};
use common::test_dir;

/// `inferwatch ingest` into `topic` with `[gateway]` settings `gateway` (TOML lines).
fn start_ingest(dir: &Path, brokers: &str, topic: &str, gateway: &str) -> Listening {
    let config = dir.join("ingest.toml");
    std::fs::write(&config, format!("[gateway]\n{gateway}")).unwrap();
    let config = config.to_str().unwrap();
    let args = [
        "ingest",
        "--brokers",
        brokers,
        "--topic",
        topic,
        "--config",
        config,
    ];
    Listening::start(&args, dir.join("ingest.log"))
}

/// The topic as the processor reads it, into `data`.
fn read_topic(brokers: &str, topic: &str, data: &Path) {
    let group = unique("g");
    let out = command()
        .args([
            "run",
            "--brokers",
            brokers,
            "--topic",
            topic,
            "--group",
            &group,
        ])
        .args([
            "--stop-when-idle",
            "3s",
            "--data-dir",
            data.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_acknowledged_event_is_on_the_topic_once_across_a_broker_stop() {
    if common::broker::external() {
        return; // the test stops and restarts its own broker
    }
    let dir = test_dir();
    let port = free_port();
    let db = dir.path().join("broker.db");
    let mut broker = Tansu::start(port, &db);
    let topic = unique("gateway");
    create_topic(&broker.addr, &topic, 4);
    let gw = start_ingest(
        dir.path(),
        &broker.addr,
        &topic,
        "delivery_timeout = \"3s\"\nretry_after = \"1s\"\n",
    );
    let url = format!("{}/v1/events", gw.url);
    let ready = get(&format!("{}/readyz", gw.url));
    assert_eq!(ready, "ready\n", "brokers up at start: ready at once");
    let (mut acked, mut refused) = (Vec::new(), Vec::new());
    let mut next = 0;
    let mut send = |acked: &mut Vec<String>, refused: &mut Vec<String>| {
        let (a, ids) = post_batch(&url, next, 100);
        next += 100;
        match a.status {
            200 => {
                assert_eq!(a.json()["accepted"], 100);
                acked.extend(ids);
            }
            503 => {
                assert_eq!(a.header("retry-after").as_deref(), Some("1"), "{a:?}");
                assert!(
                    String::from_utf8_lossy(&a.body).contains("send again"),
                    "{a:?}"
                );
                refused.extend(ids);
            }
            s => panic!("unexpected {s}: {}", String::from_utf8_lossy(&a.body)),
        }
        a.status
    };
    // Up: acknowledged.
    let started = Instant::now();
    while acked.len() < 2_000 {
        send(&mut acked, &mut refused);
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the gateway never acknowledged"
        );
    }
    assert!(refused.is_empty(), "503 while the broker was up");
    // Down: 503 with Retry-After, at once once the gateway knows.
    broker.kill();
    let down = Instant::now();
    while send(&mut acked, &mut refused) != 503 {
        assert!(
            down.elapsed() < Duration::from_secs(30),
            "no 503 with the broker down"
        );
    }
    let quick = Instant::now();
    for _ in 0..5 {
        assert_eq!(send(&mut acked, &mut refused), 503);
    }
    assert!(
        quick.elapsed() < Duration::from_secs(3),
        "503s should not wait for the timeout"
    );
    let readyz = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("{}/readyz", gw.url))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&readyz.stdout), "503");
    // Back: acknowledged again.
    let _broker = Tansu::start(port, &db);
    let back = Instant::now();
    while send(&mut acked, &mut refused) != 200 {
        assert!(
            back.elapsed() < Duration::from_secs(60),
            "the gateway never recovered"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    for _ in 0..10 {
        assert_eq!(send(&mut acked, &mut refused), 200);
    }
    gw.stop();

    // What is on the topic, read by the processor.
    let data = dir.path().join("data");
    read_topic(&_broker.addr, &topic, &data);
    let rows = query(
        &data,
        "SELECT event_id, count(*) AS n FROM events GROUP BY event_id",
    );
    let on_topic: BTreeMap<String, i64> = rows
        .iter()
        .map(|r| {
            (
                r["event_id"].as_str().unwrap().to_string(),
                r["n"].as_i64().unwrap(),
            )
        })
        .collect();
    for id in &acked {
        assert_eq!(
            on_topic.get(id),
            Some(&1),
            "acknowledged {id} must be on the topic once"
        );
    }
    for id in &refused {
        assert!(
            on_topic.get(id).is_none_or(|&n| n == 1),
            "{id} at most once"
        );
    }
    assert!(acked.len() >= 3_000);
    // Keyed service/model: each key's events in one partition.
    let parts = query(&data, "SELECT service, model, count(DISTINCT source_partition) AS p FROM events GROUP BY service, model");
    assert_eq!(parts.len(), 6);
    assert!(parts.iter().all(|r| r["p"] == 1), "{parts:?}");
}

#[test]
fn past_the_in_flight_bound_a_request_gets_429_and_nothing_of_it_is_written() {
    if common::broker::external() {
        return; // the test pauses its own broker
    }
    let dir = test_dir();
    let broker = Tansu::start(free_port(), &dir.path().join("broker.db"));
    let topic = unique("bound");
    create_topic(&broker.addr, &topic, 1);
    let gw = start_ingest(
        dir.path(),
        &broker.addr,
        &topic,
        "max_in_flight_events = 150\ndelivery_timeout = \"4s\"\nretry_after = \"1s\"\n",
    );
    let url = format!("{}/v1/events", gw.url);
    assert_eq!(post_batch(&url, 0, 100).0.status, 200);
    // A frozen broker: the next 100 wait for their acknowledgement...
    broker.pause();
    let waiting = {
        let url = url.clone();
        std::thread::spawn(move || post_batch(&url, 100, 100).0)
    };
    std::thread::sleep(Duration::from_millis(300));
    // ...so 100 more would pass the bound of 150: refused at once, nothing written.
    let (a, refused) = post_batch(&url, 200, 100);
    assert_eq!(a.status, 429, "{a:?}");
    assert_eq!(a.header("retry-after").as_deref(), Some("1"));
    assert!(
        String::from_utf8_lossy(&a.body).contains("max_in_flight_events"),
        "{a:?}"
    );
    broker.resume();
    let first = waiting.join().unwrap();
    assert!(matches!(first.status, 200 | 503), "{first:?}");
    gw.stop();
    let data = dir.path().join("data");
    read_topic(&broker.addr, &topic, &data);
    let ids: Vec<String> = query(&data, "SELECT event_id FROM events")
        .iter()
        .map(|r| r["event_id"].as_str().unwrap().to_string())
        .collect();
    assert!(
        refused.iter().all(|id| !ids.contains(id)),
        "a refused event was written"
    );
    assert!(ids.contains(&"ev-000000".to_string()));
}
