//! Kafka end to end, against a real Kafka-protocol broker (Tansu, started on a free loopback
//! port; `INFERWATCH_TEST_BROKERS=host:port` for any other Kafka): exactly-once into Parquet
//! across crashes and rebalances, garbage on the topic, a broker that comes and goes (`kafka_outages`).
//!
//! The reference for every Kafka run is `inferwatch run --source file:` over the same
//! generated events: same `event_id`s exactly once, same dead letters, same `metrics` rows.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use rdkafka::message::{Headers, Message};
use serde_json::Value;

mod common;
use common::broker::{brokers, create_topic, unique};
use common::cli::*;
use common::runs::*;
use common::test_dir;

#[test]
fn kafka_run_writes_each_event_once_and_matches_the_file_run() {
    let dir = test_dir();
    let (b, topic, reference) = traffic_topic("events", dir.path());
    assert!(
        reference.dead > 1000,
        "the malformed scenario has bad payloads"
    );
    let data = dir.path().join("kafka-data");
    consume_all(b, &topic, &unique("g"), &data, &[]);
    assert_matches(&reference, &data);
    // Every partition has a checkpoint, and the group's committed offsets follow them.
    let ckpts = std::fs::read_dir(data.join("_checkpoints").join(&topic))
        .unwrap()
        .count();
    assert_eq!(ckpts, PARTITIONS as usize);
}

/// How many checkpoint generations with a position exist under `data`
/// (`_checkpoints/<source>/p<N>/g<G>.ckpt`; a claim of a partition without one is not
/// counted).
fn checkpoints_written(data: &Path) -> usize {
    let Ok(dirs) = std::fs::read_dir(data.join("_checkpoints")) else {
        return 0;
    };
    dirs.flatten()
        .filter_map(|d| std::fs::read_dir(d.path()).ok())
        .flat_map(|d| d.flatten())
        .filter_map(|p| std::fs::read_dir(p.path()).ok())
        .flat_map(|d| d.flatten())
        .filter(|f| f.file_name().to_string_lossy().ends_with(".ckpt"))
        .filter(|f| {
            std::fs::read(f.path()).is_ok_and(|b| b.starts_with(b"inferwatch-checkpoint v1 next"))
        })
        .count()
}

#[test]
fn sigkill_at_three_points_loses_and_duplicates_nothing() {
    let tmp = test_dir();
    let root = tmp.path().to_path_buf();
    if std::env::var("INFERWATCH_TEST_KEEP").is_ok() {
        eprintln!("keeping {}", root.display());
        std::mem::forget(tmp);
    }
    let dir = root.as_path();
    let (b, topic, reference) = traffic_topic("crash", dir);
    let data = dir.join("kafka-data");
    std::fs::create_dir_all(&data).unwrap();
    // Small batches and frequent checkpoints: kills land between, during and after them.
    let config = dir.join("crash.toml");
    // A short session timeout: a killed member's partitions move on sooner.
    std::fs::write(
        &config,
        "[source]\nbatch_size = 500\n[checkpoint]\ninterval = \"300ms\"\n[kafka.properties]\n\"session.timeout.ms\" = \"6000\"\n",
    )
    .unwrap();
    let group = unique("g");
    let cfg = ["--config", config.to_str().unwrap(), "--window", "1m"];
    for (round, delay_ms) in [(0, 150u64), (1, 700), (2, 1300)] {
        run_and_kill(b, &topic, &group, &data, &cfg, delay_ms);
        assert!(
            checkpoints_written(&data) > 0,
            "round {round} checkpointed before the kill"
        );
    }
    let mut args = vec!["--stop-when-idle", "8s"];
    args.extend_from_slice(&cfg);
    let mut last = spawn_run(b, &topic, &group, &data, &args);
    wait_ok(&mut last, Duration::from_secs(240));
    assert_matches(&reference, &data);
}

/// Starts a processor, waits until it has written files of its own, lets it run `delay_ms`
/// more, and kills it without warning (SIGKILL).
fn run_and_kill(b: &str, topic: &str, group: &str, data: &Path, args: &[&str], delay_ms: u64) {
    let mut child = spawn_run(b, topic, group, data, args);
    let before = events_files(data);
    let deadline = Instant::now() + Duration::from_secs(60);
    while events_files(data) <= before && Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(delay_ms));
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Completed `events` files (any partition).
fn events_files(data: &Path) -> usize {
    fn walk(p: &Path, n: &mut usize) {
        if let Ok(rd) = std::fs::read_dir(p) {
            for e in rd.flatten() {
                let path = e.path();
                if path.is_dir() {
                    walk(&path, n);
                } else if path.extension().is_some_and(|x| x == "parquet") {
                    *n += 1;
                }
            }
        }
    }
    let mut n = 0;
    walk(&data.join("events"), &mut n);
    n
}

#[test]
fn processors_in_one_group_split_partitions_and_a_joiner_rebalances_cleanly() {
    let dir = test_dir();
    let (b, topic, reference) = traffic_topic("group", dir.path());
    let data = dir.path().join("kafka-data");
    std::fs::create_dir_all(&data).unwrap();
    let config = dir.path().join("slow.toml");
    std::fs::write(
        &config,
        "[source]\nbatch_size = 200\n[checkpoint]\ninterval = \"500ms\"\n",
    )
    .unwrap();
    let group = unique("g");
    let args = [
        "--config",
        config.to_str().unwrap(),
        "--window",
        "1m",
        "--stop-when-idle",
        "10s",
    ];
    let mut first = spawn_run(b, &topic, &group, &data, &args);
    let mut second = spawn_run(b, &topic, &group, &data, &args);
    // The third joins once the first two have written something: mid-stream.
    let deadline = Instant::now() + Duration::from_secs(60);
    while events_files(&data) == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut third = spawn_run(b, &topic, &group, &data, &args);
    let limit = Duration::from_secs(240);
    wait_all_ok(
        &mut [&mut first, &mut second, &mut third],
        dir.path(),
        limit,
    );
    assert_matches(&reference, &data);
    // More than one processor did work: the logs show assignments to several of them.
    let logs: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect();
    let assigned = logs
        .iter()
        .filter(|l| l.contains("assigned partitions ["))
        .count();
    assert!(
        assigned >= 2,
        "at least two processors got partitions: {logs:#?}"
    );
}

#[test]
fn garbage_on_the_topic_never_stops_the_consumer_and_goes_to_dead_letters() {
    let dir = test_dir();
    let b = brokers();
    let topic = unique("garbage");
    let dead_topic = format!("{topic}-dead");
    create_topic(b, &topic, 1);
    create_topic(b, &dead_topic, 1);
    let producer = inferwatch_ingest::EventProducer::new(b, &topic).unwrap();
    let t0 = 1_767_225_600_000i64;
    let mut valid = 0;
    // Four times the 1 MiB payload limit. (Tansu 0.6 stores a 5 MiB record but never
    // returns it from a fetch, which stalls the partition for every consumer; 4 MiB it serves.)
    let huge = vec![b'x'; 4 << 20];
    let garbage: Vec<(&str, Vec<u8>)> = vec![
        ("not json", b"hello, world".to_vec()),
        ("empty", Vec::new()),
        ("4 MiB", huge),
        ("invalid UTF-8", b"{\"event_id\":\"\xff\xfe\"}".to_vec()),
        (
            "wrong types",
            br#"{"event_id":1,"timestamp":"x","service":[],"model":{}}"#.to_vec(),
        ),
    ];
    for i in 0..300i64 {
        let mut ev = inferwatch_schemas::InferenceEvent::new(
            &format!("ok-{i}"),
            t0 + i * 100,
            "svc",
            "gpt-4o-mini",
        );
        ev.latency_ms = Some(100.0 + i as f64);
        producer.send(&ev).unwrap();
        valid += 1;
        if i % 60 == 30 {
            let (_, bytes) = &garbage[(i / 60) as usize];
            producer.send_raw(None, bytes).unwrap();
        }
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("out.toml");
    std::fs::write(
        &config,
        format!("[kafka]\ndead_letter_topic = \"{dead_topic}\"\nmetrics_topic = \"\"\n"),
    )
    .unwrap();
    consume_all(
        b,
        &topic,
        &unique("g"),
        &data,
        &["--config", config.to_str().unwrap()],
    );
    assert_eq!(event_ids(&data), (valid, valid));
    let reasons: Vec<String> = query(
        &data,
        "SELECT reason FROM dead_letter ORDER BY source_offset",
    )
    .into_iter()
    .map(|r| r["reason"].as_str().unwrap().to_string())
    .collect();
    assert_eq!(reasons.len(), garbage.len(), "{reasons:?}");
    for r in &reasons {
        assert!(r.len() > 10, "a readable reason: {r}");
    }
    assert!(reasons.iter().any(|r| r.contains("UTF-8")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("bytes")), "{reasons:?}");
    // The raw bytes are kept, the 4 MiB one included.
    let lens: Vec<i64> = query(
        &data,
        "SELECT raw_len FROM dead_letter ORDER BY source_offset",
    )
    .into_iter()
    .map(|r| r["raw_len"].as_i64().unwrap())
    .collect();
    assert!(lens.contains(&(4 << 20)), "{lens:?}");

    // The dead-letter topic has the same payloads, with the reason in a header.
    let consumer = check_consumer(b, &dead_topic);
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.len() < garbage.len() && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            let reason = m
                .headers()
                .and_then(|h| {
                    h.iter()
                        .find(|h| h.key == "reason")
                        .and_then(|h| h.value.map(|v| v.to_vec()))
                })
                .map(|v| String::from_utf8(v).unwrap());
            seen.push((reason, m.payload().map_or(0, |p| p.len())));
        }
    }
    assert_eq!(
        seen.len(),
        garbage.len(),
        "every dead letter is on the topic: {seen:?}"
    );
    assert!(seen.iter().all(|(r, _)| r.is_some()));
}

#[test]
fn the_producer_library_keys_events_by_service_and_model() {
    let b = brokers();
    let topic = unique("keys");
    create_topic(b, &topic, PARTITIONS);
    let producer = inferwatch_ingest::EventProducer::new(b, &topic).unwrap();
    for i in 0..40 {
        let svc = format!("svc-{}", i % 4);
        let ev = inferwatch_schemas::InferenceEvent::new(
            &format!("k-{i}"),
            1_767_225_600_000 + i,
            &svc,
            "m",
        );
        producer.send(&ev).unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    let consumer = check_consumer(b, &topic);
    let mut by_key: std::collections::BTreeMap<String, BTreeSet<i32>> = Default::default();
    let mut n = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while n < 40 && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            let key = String::from_utf8(m.key().unwrap().to_vec()).unwrap();
            let v: Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
            assert_eq!(key, format!("{}/m", v["service"].as_str().unwrap()));
            by_key.entry(key).or_default().insert(m.partition());
            n += 1;
        }
    }
    assert_eq!(n, 40);
    assert_eq!(by_key.len(), 4);
    assert!(
        by_key.values().all(|p| p.len() == 1),
        "a key stays in one partition: {by_key:?}"
    );
}

#[test]
fn feedback_topic_joins_each_label_once_across_sigkills() {
    let tmp = test_dir();
    let dir = tmp.path();
    let b = brokers();
    let (topic, feedback_topic) = (unique("pred"), unique("feedback"));
    create_topic(b, &topic, PARTITIONS);
    create_topic(b, &feedback_topic, PARTITIONS);
    let args = [
        "--count",
        "40000",
        "--rate",
        "100",
        "--seed",
        "13",
        "--scenario",
        "miscalibration",
        "--feedback-delay",
        "2m",
    ];
    let mut produce_args = args.to_vec();
    produce_args.extend(["--feedback-topic", &feedback_topic]);
    produce(b, &topic, &produce_args);
    // The same events and feedback as files, for the reference check.
    let fb = dir.join("feedback.ndjson");
    let mut file_args = args.to_vec();
    file_args.extend(["--feedback-out", fb.to_str().unwrap()]);
    let input = generate(dir, "in.ndjson", &file_args);
    let labels = lines(&fb);
    assert!(labels > 8000, "{labels} feedback events");

    let data = dir.join("kafka-data");
    std::fs::create_dir_all(&data).unwrap();
    let config = dir.join("crash.toml");
    std::fs::write(
        &config,
        "[source]\nbatch_size = 500\n[checkpoint]\ninterval = \"300ms\"\n[kafka.properties]\n\"session.timeout.ms\" = \"6000\"\n",
    )
    .unwrap();
    let group = unique("g");
    let cfg = [
        "--config",
        config.to_str().unwrap(),
        "--window",
        "1m",
        "--feedback-topic",
        &feedback_topic,
    ];
    for delay_ms in [400u64, 1200] {
        run_and_kill(b, &topic, &group, &data, &cfg, delay_ms);
    }
    let mut args = vec!["--stop-when-idle", "8s"];
    args.extend_from_slice(&cfg);
    let mut last = spawn_run(b, &topic, &group, &data, &args);
    wait_ok(&mut last, Duration::from_secs(240));

    // Each label joined exactly once: the latest revision of every window equals
    // scikit-learn over inline and joined labels, and the label count adds up.
    calibration_check_with(&input, &data, 60_000, 10, "equal_width", Some(&fb));
    let inline = count(
        &data,
        "SELECT count(*) FROM events WHERE confidence IS NOT NULL AND correct IS NOT NULL",
    );
    assert_eq!(
        count(&data, "SELECT sum(labeled) FROM metrics_latest"),
        inline + labels
    );
    assert!(count(&data, "SELECT count(*) FROM metrics WHERE revision > 0") > 0);
    assert!(
        !data.join("feedback_unmatched").exists()
            || count(&data, "SELECT count(*) FROM feedback_unmatched") == 0,
        "no feedback went unmatched"
    );
    // Checkpoints carry the feedback position.
    let ckpt = latest_checkpoint(&data, &topic, 0);
    let header = String::from_utf8_lossy(&ckpt[..ckpt.iter().position(|&c| c == b'\n').unwrap()])
        .to_string();
    assert!(header.contains("feedback_offset="), "{header}");
}

/// Every message of `topic` from the start, until it has been quiet for 5 s.
fn read_topic(brokers: &str, topic: &str) -> Vec<Value> {
    let consumer = check_consumer(brokers, topic);
    let mut out = Vec::new();
    let mut last = Instant::now();
    while last.elapsed() < Duration::from_secs(5) {
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            let m = m.expect("consume");
            out.push(serde_json::from_slice(m.payload().unwrap()).expect("JSON notice"));
            last = Instant::now();
        }
    }
    out
}

#[test]
fn alerts_and_breaker_transitions_reach_their_topics_once_and_in_order_across_sigkills() {
    let tmp = test_dir();
    let dir = tmp.path();
    let b = brokers();
    let (topic, alerts, control) = (unique("ev"), unique("alerts"), unique("control"));
    create_topic(b, &topic, PARTITIONS);
    create_topic(b, &alerts, 3);
    create_topic(b, &control, 3);
    // Ten minutes; support-bot overconfident from minute 5 to 7.
    let args = [
        "--count",
        "60000",
        "--rate",
        "100",
        "--seed",
        "5",
        "--scenario",
        "miscalibration",
        "--recover-at",
        "0.7",
    ];
    produce(b, &topic, &args);
    let input = generate(dir, "in.ndjson", &args);
    let rules = r#"
[alerts]
breaker_cooldown = "1m"
breaker_recovery_windows = 2
[[alerts.rules]]
name = "ece"
metric = "ece"
op = ">"
critical = 0.2
samples = "labeled"
min_samples = 30
action = "break"
match = { service = "support-bot" }
"#;
    let config = dir.join("alerts.toml");
    std::fs::write(
        &config,
        format!(
            "[source]\nbatch_size = 500\n[checkpoint]\ninterval = \"300ms\"\n\
             [kafka]\nalerts_topic = \"{alerts}\"\ncontrol_topic = \"{control}\"\n\
             [kafka.properties]\n\"session.timeout.ms\" = \"6000\"\n{rules}"
        ),
    )
    .unwrap();
    let cfg = ["--config", config.to_str().unwrap(), "--window", "1m"];

    // The file run says which transitions there are.
    let ref_data = dir.join("ref-data");
    run(&input, &ref_data, &cfg);
    let notified = |data: &Path| -> Vec<String> {
        query(
            data,
            "SELECT id FROM alerts WHERE notified ORDER BY window_end, kind, service, model, model_version, route, state",
        )
        .into_iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
    };
    let expected = notified(&ref_data);

    let data = dir.join("kafka-data");
    std::fs::create_dir_all(&data).unwrap();
    let group = unique("g");
    for delay_ms in [300u64, 1500] {
        run_and_kill(b, &topic, &group, &data, &cfg, delay_ms);
    }
    let mut args = vec!["--stop-when-idle", "8s"];
    args.extend_from_slice(&cfg);
    let mut last = spawn_run(b, &topic, &group, &data, &args);
    wait_ok(&mut last, Duration::from_secs(240));

    let mut got_table = notified(&data);
    got_table.sort();
    let mut want = expected.clone();
    want.sort();
    assert_eq!(
        got_table, want,
        "the same notified transitions as the file run"
    );

    // inference-alerts: every notice once.
    let on_alerts = read_topic(b, &alerts);
    let mut ids: Vec<String> = on_alerts
        .iter()
        .map(|n| n["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    let dupes: Vec<_> = ids
        .windows(2)
        .filter(|w| w[0] == w[1])
        .map(|w| &w[0])
        .collect();
    let missing: Vec<_> = want.iter().filter(|i| !ids.contains(i)).collect();
    let extra: Vec<_> = ids.iter().filter(|i| !want.contains(i)).collect();
    let logs = || -> String {
        std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
            .map(|e| std::fs::read_to_string(e.path()).unwrap())
            .flat_map(|t| {
                t.lines()
                    .filter(|l| l.contains("alert") || l.contains("outbox") || l.contains("kafka-"))
                    .map(String::from)
                    .collect::<Vec<_>>()
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(
        dupes.is_empty() && missing.is_empty() && extra.is_empty(),
        "each notice exactly once on {alerts}: duplicates {dupes:?}, missing {missing:?}, extra {extra:?} ({} vs {})\n{}",
        ids.len(),
        want.len(),
        logs()
    );

    // inference-control: per breaker, a chain of transitions in window order, matching the
    // table, through open → half_open → closed at least once.
    let on_control = read_topic(b, &control);
    assert!(on_control.iter().all(|n| n["kind"] == "breaker"));
    let mut chains: std::collections::BTreeMap<String, Vec<&Value>> = Default::default();
    for n in &on_control {
        let key = format!(
            "{}/{}",
            n["service"].as_str().unwrap(),
            n["model"].as_str().unwrap()
        );
        chains.entry(key).or_default().push(n);
    }
    assert!(!chains.is_empty(), "breakers moved");
    let mut full_cycle = false;
    for (key, chain) in &chains {
        let mut state = "closed";
        let mut at = i64::MIN;
        let mut states = Vec::new();
        for n in chain {
            assert_eq!(
                n["previous"], state,
                "{key}: transitions out of order: {chain:?}"
            );
            let w = n["window_end"].as_i64().unwrap();
            assert!(w > at, "{key}: window order");
            at = w;
            state = n["state"].as_str().unwrap();
            states.push(state);
        }
        full_cycle |= states
            .windows(3)
            .any(|w| w == ["open", "half_open", "closed"]);
        let (svc, model) = key.split_once('/').unwrap();
        let table: Vec<String> = query(
            &data,
            &format!(
                "SELECT state FROM alerts WHERE kind = 'breaker' AND service = '{svc}' AND model = '{model}' ORDER BY window_end"
            ),
        )
        .into_iter()
        .map(|r| r["state"].as_str().unwrap().to_string())
        .collect();
        assert_eq!(table, states, "{key}: topic and table agree");
    }
    assert!(
        full_cycle,
        "a breaker opened, half-opened and closed: {chains:?}"
    );
}
