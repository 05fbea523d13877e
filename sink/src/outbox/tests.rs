use super::*;
use serde_json::json;
use std::fs;
use std::time::{Duration, Instant};

fn entry(id: &str, dest: &str) -> Entry {
    Entry {
        id: id.into(),
        dest: dest.into(),
        at_ms: now_ms(),
        payload: json!({"text": format!("notice {id}"), "n": [1, 2.5, null]}),
    }
}

fn ids(ob: &Outbox, dest: &str) -> Vec<String> {
    // Drains a copy of the queue order without marking anything done.
    ob.queues
        .get(dest)
        .map(|q| q.values().map(|e| e.id.clone()).collect())
        .unwrap_or_default()
}

#[test]
fn add_done_and_reopen_keeps_only_the_pending_entries() {
    let dir = tempfile::tempdir().unwrap();
    let mut ob = Outbox::open(&Store::local(dir.path())).unwrap();
    assert_eq!(ob.next("slack"), None);
    let n = ob
        .add(vec![
            entry("a", "slack"),
            entry("b", "slack"),
            entry("k", "kafka"),
            entry("c", "slack"),
        ])
        .unwrap();
    assert_eq!(n, 4);
    assert_eq!(ob.next("slack").unwrap(), entry_like(&ob, "a"));
    assert_eq!(ob.pending("slack"), 3);
    assert_eq!(ob.pending("kafka"), 1);
    assert_eq!(ob.pending_total(), 4);
    ob.done("a", "delivered").unwrap();
    ob.done("k", "rejected: 400 invalid_payload").unwrap();
    ob.done("nope", "delivered").unwrap();
    assert_eq!(ob.next("slack").unwrap().id, "b");
    let payload = ob.next("slack").unwrap().payload;
    drop(ob);

    let mut ob = Outbox::open(&Store::local(dir.path())).unwrap();
    assert_eq!(ids(&ob, "slack"), ["b", "c"]);
    assert_eq!(ob.pending("kafka"), 0);
    assert_eq!(ob.pending_total(), 2);
    assert_eq!(ob.next("slack").unwrap().payload, payload);
    ob.done("b", "delivered").unwrap();
    drop(ob);
    let ob = Outbox::open(&Store::local(dir.path())).unwrap();
    assert_eq!(ob.next("slack").unwrap().id, "c");
}

fn entry_like(ob: &Outbox, id: &str) -> Entry {
    ob.queues
        .values()
        .flat_map(|q| q.values())
        .find(|e| e.id == id)
        .unwrap()
        .clone()
}

#[test]
fn known_ids_are_ignored_pending_or_done_and_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut ob = Outbox::open(&Store::local(dir.path())).unwrap();
    assert_eq!(
        ob.add(vec![entry("a", "slack"), entry("a", "slack")])
            .unwrap(),
        1
    );
    ob.add(vec![entry("b", "slack")]).unwrap();
    ob.done("a", "delivered").unwrap();
    assert_eq!(
        ob.add(vec![entry("a", "slack"), entry("b", "slack")])
            .unwrap(),
        0
    );
    drop(ob);
    let mut ob = Outbox::open(&Store::local(dir.path())).unwrap();
    let n = ob
        .add(vec![
            entry("a", "slack"),
            entry("b", "slack"),
            entry("c", "slack"),
        ])
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(ids(&ob, "slack"), ["b", "c"]);
}

#[test]
fn a_torn_tail_is_truncated_and_damage_in_the_middle_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join(LOG_FILE);
    let mut ob = Outbox::open(&Store::local(dir.path())).unwrap();
    ob.add(vec![entry("a", "slack")]).unwrap();
    ob.add(vec![entry("b", "slack")]).unwrap();
    drop(ob);
    let good = fs::read(&log).unwrap();

    // A crash in the middle of an append: half a record, no newline.
    let mut torn = good.clone();
    let mut rec = Vec::new();
    encode(
        &RecordOut::Add {
            id: "c",
            dest: "slack",
            at_ms: 1,
            payload: &json!({"x": 1}),
        },
        &mut rec,
    );
    torn.extend_from_slice(&rec[..rec.len() / 2]);
    fs::write(&log, &torn).unwrap();
    let mut ob = Outbox::open(&Store::local(dir.path())).unwrap();
    assert_eq!(ids(&ob, "slack"), ["a", "b"]);
    assert_eq!(fs::read(&log).unwrap(), good);
    // The log is appendable again after the cut.
    ob.add(vec![entry("c", "slack")]).unwrap();
    drop(ob);
    let ob = Outbox::open(&Store::local(dir.path())).unwrap();
    assert_eq!(ids(&ob, "slack"), ["a", "b", "c"]);
    drop(ob);

    // A complete last line with a bad checksum is a torn tail too.
    let good = fs::read(&log).unwrap();
    let mut bad_tail = good.clone();
    bad_tail.extend_from_slice(b"00000000 {\"op\":\"done\",\"id\":\"a\"}\n");
    fs::write(&log, &bad_tail).unwrap();
    let ob = Outbox::open(&Store::local(dir.path())).unwrap();
    assert_eq!(ids(&ob, "slack"), ["a", "b", "c"]);
    drop(ob);

    // Damage followed by intact records: an error naming the file.
    let text = String::from_utf8(fs::read(&log).unwrap()).unwrap();
    let first_nl = text.find('\n').unwrap();
    let damaged = format!("{}X{}", &text[..first_nl - 3], &text[first_nl - 2..]);
    fs::write(&log, damaged).unwrap();
    let err = Outbox::open(&Store::local(dir.path()))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("outbox.log") && err.contains("line 1"),
        "{err}"
    );
    assert!(err.contains("move the file away"), "{err}");
}

#[test]
fn compaction_keeps_pending_order_and_recent_done_ids() {
    let dir = tempfile::tempdir().unwrap();
    let mut ob = Outbox::open(&Store::local(dir.path())).unwrap();
    let old = Entry {
        at_ms: now_ms() - DONE_RETENTION_MS - 3_600_000,
        ..entry("old", "slack")
    };
    let mut batch = vec![old];
    for i in 0..50 {
        batch.push(entry(
            &format!("e{i:02}"),
            if i % 3 == 0 { "kafka" } else { "slack" },
        ));
    }
    ob.add(batch).unwrap();
    ob.done("old", "delivered").unwrap();
    for i in (0..50).step_by(2) {
        ob.done(&format!("e{i:02}"), "delivered").unwrap();
    }
    let before = ob.log_len();
    ob.compact().unwrap();
    assert!(ob.log_len() < before);
    let expect: Vec<String> = (0..50)
        .filter(|i| i % 2 == 1 && i % 3 != 0)
        .map(|i| format!("e{i:02}"))
        .collect();
    assert_eq!(ids(&ob, "slack"), expect);
    drop(ob);

    let mut ob = Outbox::open(&Store::local(dir.path())).unwrap();
    assert_eq!(ids(&ob, "slack"), expect);
    assert_eq!(ob.pending("kafka"), 8);
    // Recent done ids are still known; the one past the retention is forgotten.
    assert_eq!(
        ob.add(vec![entry("e00", "slack"), entry("e02", "kafka")])
            .unwrap(),
        0
    );
    assert_eq!(ob.add(vec![entry("old", "slack")]).unwrap(), 1);
    let text = fs::read_to_string(dir.path().join(LOG_FILE)).unwrap();
    assert!(text.contains(r#""op":"done","id":"e00","outcome":"delivered""#));
}

#[test]
fn the_log_is_compacted_when_it_grows_past_the_threshold() {
    let dir = tempfile::tempdir().unwrap();
    let mut ob = Outbox::open(&Store::local(dir.path())).unwrap();
    let big = "x".repeat(64 * 1024);
    let mut round = 0;
    // Add and deliver ~6 MiB: the log must stay bounded.
    for _ in 0..12 {
        let batch: Vec<Entry> = (0..8)
            .map(|i| {
                round += 1;
                Entry {
                    payload: json!({"text": big, "i": i}),
                    ..entry(&format!("r{round}"), "slack")
                }
            })
            .collect();
        ob.add(batch).unwrap();
        while let Some(e) = ob.next("slack") {
            ob.done(&e.id, "delivered").unwrap();
        }
    }
    assert!(
        ob.log_len() <= COMPACT_BYTES + 600 * 1024,
        "{}",
        ob.log_len()
    );
    assert_eq!(
        ob.log_len(),
        fs::metadata(dir.path().join(LOG_FILE)).unwrap().len()
    );
    drop(ob);
    let mut ob = Outbox::open(&Store::local(dir.path())).unwrap();
    assert_eq!(ob.pending_total(), 0);
    assert_eq!(ob.add(vec![entry("r1", "slack")]).unwrap(), 0);
}

#[test]
fn shared_outbox_wakes_waiters_and_reports_drains() {
    let dir = tempfile::tempdir().unwrap();
    let ob = SharedOutbox::open(&Store::local(dir.path())).unwrap();
    assert_eq!(ob.wait_next("slack", Duration::from_millis(20)), None);
    let waiter = {
        let ob = ob.clone();
        std::thread::spawn(move || ob.wait_next("slack", Duration::from_secs(10)))
    };
    std::thread::sleep(Duration::from_millis(50));
    ob.add(vec![entry("a", "slack")]).unwrap();
    assert_eq!(waiter.join().unwrap().unwrap().id, "a");
    assert_eq!(ob.pending("slack"), 1);
    let finisher = {
        let ob = ob.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            ob.done("a", "delivered").unwrap();
        })
    };
    let left = ob.wait_drained("slack", Instant::now() + Duration::from_secs(10));
    assert_eq!(left, 0);
    finisher.join().unwrap();
    ob.add(vec![entry("b", "slack")]).unwrap();
    let t = Instant::now();
    assert_eq!(
        ob.wait_drained("slack", Instant::now() + Duration::from_millis(50)),
        1
    );
    assert!(t.elapsed() >= Duration::from_millis(50));
    assert_eq!(ob.pending_total(), 1);
}
