//! Alerts end to end through the `inferwatch` binary, with a real local HTTP server standing
//! in for Slack: lifecycle (one firing, one resolve; flapping inside `for` stays quiet),
//! delivery through retries, 429 and a Slack outage across a crash, payload format, and the
//! webhook URL kept out of every log.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;
use common::broker::free_port;
use common::cli::*;
use common::slack::{Reply, SlackServer, OK, SECRET};
use common::test_dir;

/// The ECE rule on one key of support-bot (the one the `miscalibration` scenario breaks).
const ECE_RULE: &str = r#"
[[alerts.rules]]
name = "ece-support"
metric = "ece"
op = ">"
warning = 0.1
critical = 0.2
for = 2
samples = "labeled"
min_samples = 100
match = { service = "support-bot", model = "gpt-4o-mini", model_version = "2024-07-18", route = "/v1/support/chat" }
"#;

fn config(dir: &Path, body: &str, slack: Option<&str>) -> PathBuf {
    let mut text = String::from(
        "[slack]\nmin_interval = \"100ms\"\ninitial_backoff = \"50ms\"\nmax_backoff = \"400ms\"\n",
    );
    if let Some(url) = slack {
        text.push_str(&format!("webhooks = [\"{url}\"]\n"));
    }
    text.push_str("[alerts]\nrenotify = \"1h\"\n");
    text.push_str(body);
    let path = dir.join(format!(
        "config-{}.toml",
        fs::read_dir(dir).unwrap().count()
    ));
    fs::write(&path, text).unwrap();
    path
}

/// Ten minutes of traffic, support-bot overconfident from minute 5 to 7.5.
fn incident(dir: &Path) -> PathBuf {
    generate(
        dir,
        "incident.ndjson",
        &[
            "--count",
            "600000",
            "--rate",
            "1000",
            "--scenario",
            "miscalibration",
            "--recover-at",
            "0.75",
        ],
    )
}

/// Header text of a Slack message.
fn header(msg: &Value) -> String {
    msg["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["type"] == "header")
        .map(|b| b["text"]["text"].as_str().unwrap().to_string())
        .unwrap_or_default()
}

/// Every mrkdwn text of a message.
fn texts(msg: &Value) -> String {
    let mut out = String::new();
    for b in msg["blocks"].as_array().unwrap() {
        if let Some(t) = b["text"]["text"].as_str() {
            out.push_str(t);
            out.push('\n');
        }
        for e in b["elements"].as_array().into_iter().flatten() {
            out.push_str(e["text"].as_str().unwrap_or(""));
            out.push('\n');
        }
    }
    out
}

/// Checks a message against Slack's incoming-webhook format and limits.
fn assert_slack_format(msg: &Value) {
    let text = msg["text"].as_str().expect("top-level fallback text");
    assert!(!text.is_empty() && text.chars().count() <= 3000);
    let blocks = msg["blocks"].as_array().expect("blocks");
    assert!(
        !blocks.is_empty() && blocks.len() <= 50,
        "{} blocks",
        blocks.len()
    );
    for b in blocks {
        match b["type"].as_str().unwrap() {
            "header" => {
                assert_eq!(b["text"]["type"], "plain_text");
                assert!(b["text"]["text"].as_str().unwrap().chars().count() <= 150);
            }
            "section" => {
                assert_eq!(b["text"]["type"], "mrkdwn");
                assert!(b["text"]["text"].as_str().unwrap().chars().count() <= 3000);
            }
            "context" => {
                for e in b["elements"].as_array().unwrap() {
                    assert_eq!(e["type"], "mrkdwn");
                    assert!(e["text"].as_str().unwrap().chars().count() <= 2000);
                }
            }
            "divider" => {}
            other => panic!("unexpected block type {other}"),
        }
    }
}

/// The SQL of the `inferwatch query` command a message carries.
fn query_sql(msg: &Value) -> String {
    let all = texts(msg);
    let at = all.find("inferwatch query").expect("a query command");
    let cmd = &all[at..];
    let start = cmd.find('"').unwrap() + 1;
    let end = cmd[start..]
        .find("\"`")
        .or_else(|| cmd[start..].rfind('"'))
        .unwrap()
        + start;
    cmd[start..end]
        .replace("\\\"", "\"")
        .replace("&gt;", ">")
        .replace("&lt;", "<")
        .replace("&amp;", "&")
}

#[test]
fn an_ece_incident_fires_one_critical_alert_then_one_resolve() {
    let dir = test_dir();
    let input = incident(dir.path());
    let slack = SlackServer::start(0, vec![], OK);
    let data = dir.path().join("data");
    let cfg = config(dir.path(), ECE_RULE, Some(&slack.url()));
    let out = run(&input, &data, &["--config", cfg.to_str().unwrap()]);
    assert!(
        !out.contains(SECRET),
        "the webhook URL reached the output:\n{out}"
    );

    let got = slack.wait_delivered(2, Duration::from_secs(10));
    assert_eq!(got.len(), 2, "one firing, one resolve: {got:#?}");
    let (fire, resolve) = (got[0].json(), got[1].json());
    for m in [&fire, &resolve] {
        assert_slack_format(m);
    }
    let h = header(&fire).to_lowercase();
    assert!(h.contains("critical") && h.contains("firing"), "{h}");
    assert!(header(&resolve).to_lowercase().contains("resolved"));
    assert!(texts(&fire).contains("ece-support"));
    assert!(texts(&fire).contains("support-bot"));

    // The table: pending → firing (critical, notified) → resolved (notified), nothing else
    // notified.
    let rows = query(
        &data,
        "SELECT state, severity, value, threshold, notified, CAST(window_end AS BIGINT) AS w \
         FROM alerts WHERE rule = 'ece-support' ORDER BY window_end",
    );
    let notified: Vec<_> = rows
        .iter()
        .filter(|r| r["notified"] == true)
        .map(|r| {
            (
                r["state"].as_str().unwrap(),
                r["severity"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(notified.len(), 2, "{notified:?}");
    assert_eq!(notified[0], ("firing", "critical"));
    // The resolve carries the severity it left (critical, or warning after a step down).
    assert_eq!(notified[1].0, "resolved");
    assert_eq!(rows[0]["state"], "pending", "`for = 2`: pending first");
    let fired = rows.iter().find(|r| r["state"] == "firing").unwrap();
    assert!(fired["value"].as_f64().unwrap() > 0.2);

    // The value is the metrics row's ECE, and the message's query command shows it.
    let sql = query_sql(&fire);
    let shown = query(&data, &sql);
    assert!(
        !shown.is_empty(),
        "the query in the message returns rows: {sql}"
    );
    let ece_in_metrics = count_f64(
        &data,
        &format!(
            "SELECT ece FROM metrics_latest WHERE service = 'support-bot' AND model = 'gpt-4o-mini' \
             AND model_version = '2024-07-18' AND route = '/v1/support/chat' \
             AND CAST(window_end AS BIGINT) = {}",
            fired["w"]
        ),
    );
    assert!((ece_in_metrics - fired["value"].as_f64().unwrap()).abs() < 1e-12);
    assert!(
        shown
            .iter()
            .any(|r| r["ece"].as_f64() == Some(ece_in_metrics)),
        "{shown:?}"
    );
}

fn count_f64(data: &Path, sql: &str) -> f64 {
    query(data, sql)[0]
        .values()
        .next()
        .unwrap()
        .as_f64()
        .unwrap()
}

#[test]
fn a_metric_flapping_within_for_fires_nothing() {
    let dir = test_dir();
    let input = generate(
        dir.path(),
        "steady.ndjson",
        &["--count", "600000", "--rate", "1000"],
    );
    // Steady traffic has ~2 % errors per window: this threshold is crossed and uncrossed
    // from window to window, never `for` windows in a row.
    let rule = r#"
[[alerts.rules]]
name = "flappy"
metric = "error_rate"
op = ">"
warning = 0.02
for = 4
min_samples = 50
match = { service = "support-bot", model = "gpt-4o-mini", model_version = "2024-07-18" }
"#;
    let slack = SlackServer::start(0, vec![], OK);
    let data = dir.path().join("data");
    let cfg = config(dir.path(), rule, Some(&slack.url()));
    run(&input, &data, &["--config", cfg.to_str().unwrap()]);
    let states = query(
        &data,
        "SELECT state, count(*) AS n FROM alerts WHERE rule = 'flappy' GROUP BY state ORDER BY state",
    );
    let n = |s: &str| {
        states
            .iter()
            .find(|r| r["state"] == s)
            .map_or(0, |r| r["n"].as_i64().unwrap())
    };
    assert!(
        n("pending") >= 2 && n("ok") >= 2,
        "it does flap: {states:?}"
    );
    assert_eq!(n("firing"), 0, "{states:?}");
    assert!(slack.requests().is_empty(), "nothing was sent");
}

#[test]
fn slack_errors_are_retried_and_429_waits_for_retry_after() {
    let dir = test_dir();
    let input = incident(dir.path());
    let fail = |status| Reply {
        status,
        retry_after: None,
    };
    let mut script = vec![fail(500); 5];
    script.push(Reply {
        status: 429,
        retry_after: Some(2),
    });
    let slack = SlackServer::start(0, script, OK);
    let data = dir.path().join("data");
    let cfg = config(dir.path(), ECE_RULE, Some(&slack.url()));
    run(&input, &data, &["--config", cfg.to_str().unwrap()]);
    let delivered = slack.wait_delivered(2, Duration::from_secs(15));
    let all = slack.requests();
    assert_eq!(delivered.len(), 2, "each message delivered once: {all:#?}");
    assert_ne!(delivered[0].body, delivered[1].body);
    assert_eq!(all.len(), 8, "5 × 500, 1 × 429, then the two messages");
    assert!(
        all[..6].iter().all(|r| r.body == delivered[0].body),
        "the first message is retried, in order"
    );
    let waited = all[6].at - all[5].at;
    assert!(
        waited >= Duration::from_secs(2),
        "429 Retry-After: 2 waited {waited:?}"
    );
}

/// Runs `inferwatch run` over `input` in the background; stderr to `log`.
fn spawn_file_run(input: &Path, data: &Path, cfg: &Path, log: &Path) -> std::process::Child {
    Command::new(bin())
        .args(["run", "--source", &format!("file:{}", input.display())])
        .args(["--data-dir", data.to_str().unwrap()])
        .args(["--config", cfg.to_str().unwrap()])
        .env("INFERWATCH_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

/// Adds in the outbox logs (one per source partition, under `_outbox/<source>/p<N>/`).
fn outbox_adds(data: &Path) -> usize {
    fn walk(p: &Path, n: &mut usize) {
        for e in fs::read_dir(p).into_iter().flatten().flatten() {
            let path = e.path();
            if path.is_dir() {
                walk(&path, n);
            } else if path.file_name().is_some_and(|f| f == "outbox.log") {
                *n += fs::read_to_string(&path)
                    .unwrap_or_default()
                    .lines()
                    .filter(|l| l.contains("\"op\":\"add\""))
                    .count();
            }
        }
    }
    let mut n = 0;
    walk(&data.join("_outbox"), &mut n);
    n
}

#[test]
fn alerts_raised_while_slack_is_down_survive_a_kill_and_go_out_once() {
    let dir = test_dir();
    let input = incident(dir.path());

    // Reference: an uninterrupted run with Slack up, default rules.
    let up = SlackServer::start(0, vec![], OK);
    let ref_data = dir.path().join("reference");
    let cfg = config(dir.path(), "", Some(&up.url()));
    run(&input, &ref_data, &["--config", cfg.to_str().unwrap()]);
    // The run waits for the outbox to drain before it exits.
    let data = dir.path().join("data");
    // Messages name the data dir in their query command: compare them without it.
    let strip = |body: String| {
        body.replace(ref_data.to_str().unwrap(), "DATA")
            .replace(data.to_str().unwrap(), "DATA")
    };
    let mut reference: Vec<String> = up.delivered().into_iter().map(|r| strip(r.body)).collect();
    reference.sort();
    assert!(reference.len() >= 3, "{} messages", reference.len());
    for b in &reference {
        assert_slack_format(&serde_json::from_str(b).unwrap());
    }

    // Slack down (nothing listens on the port): the run raises every alert, then is killed
    // while it waits for Slack.
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/services/T000/B000/{SECRET}");
    let cfg = config(dir.path(), "", Some(&url));
    let log = dir.path().join("down.log");
    let mut child = spawn_file_run(&input, &data, &cfg, &log);
    let deadline = Instant::now() + Duration::from_secs(60);
    while outbox_adds(&data) < reference.len() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        outbox_adds(&data),
        reference.len(),
        "every message waits in the outbox"
    );
    let text = fs::read_to_string(&log).unwrap();
    assert!(text.contains("slack"), "the outage is logged:\n{text}");
    assert!(
        !text.contains(SECRET),
        "the webhook URL reached the log:\n{text}"
    );

    // Restart with Slack up on the same URL: the replay raises the same alerts again (known
    // to the outbox), and what waited goes out, once.
    let slack = SlackServer::start(port, vec![], OK);
    let out = run(&input, &data, &["--config", cfg.to_str().unwrap()]);
    assert!(!out.contains(SECRET));
    std::thread::sleep(Duration::from_millis(500));
    let mut got: Vec<String> = slack
        .delivered()
        .into_iter()
        .map(|r| strip(r.body))
        .collect();
    got.sort();
    assert_eq!(got.len(), reference.len(), "each message exactly once");
    assert!(
        got == reference,
        "the same messages as the uninterrupted run"
    );

    // A third run delivers nothing new.
    run(&input, &data, &["--config", cfg.to_str().unwrap()]);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(slack.delivered().len(), reference.len());
}

#[test]
fn long_labels_stay_within_slack_limits() {
    let dir = test_dir();
    // Labels at the 256-byte limit (multi-byte characters in the route), 30 routes: one
    // window raises 30 alerts for one service, more than one Slack message holds.
    let mut lines = String::new();
    for i in 0..3000 {
        let route = format!("/{}{}-{:02}", "ü".repeat(60), "r".repeat(120), i % 30);
        let ts = 1_767_225_600_000i64 + i * 15;
        lines.push_str(
            &serde_json::json!({
                "event_id": format!("e{i}"),
                "timestamp": ts,
                "service": "svc",
                "model": "m".repeat(250),
                "route": route,
                "latency_ms": 10.0,
                "status": "ok",
                "confidence": 0.99,
                "correct": false
            })
            .to_string(),
        );
        lines.push('\n');
    }
    let input = dir.path().join("long.ndjson");
    fs::write(&input, lines).unwrap();
    let rule = r#"
[[alerts.rules]]
name = "ece-any"
metric = "ece"
op = ">"
critical = 0.5
samples = "labeled"
"#;
    let slack = SlackServer::start(0, vec![], OK);
    let data = dir.path().join("data");
    let cfg = config(dir.path(), rule, Some(&slack.url()));
    run(&input, &data, &["--config", cfg.to_str().unwrap()]);
    let got = slack.wait_delivered(2, Duration::from_secs(5));
    assert_eq!(got.len(), 2, "30 alerts: a message of 24 and one of 6");
    for r in &got {
        assert_slack_format(&r.json());
    }
    let alerts: BTreeMap<String, i64> = query(
        &data,
        "SELECT state, count(*) AS n FROM alerts GROUP BY state",
    )
    .into_iter()
    .map(|r| {
        (
            r["state"].as_str().unwrap().to_string(),
            r["n"].as_i64().unwrap(),
        )
    })
    .collect();
    assert_eq!(alerts.get("firing").copied(), Some(30), "{alerts:?}");
    let sections: usize = got
        .iter()
        .map(|r| {
            r.json()["blocks"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|b| b["type"] == "section")
                .count()
        })
        .sum();
    assert_eq!(sections, 30, "every alert is in a message");
}

#[test]
fn bad_rules_stop_the_start_with_a_clear_error() {
    let dir = test_dir();
    let input = generate(dir.path(), "few.ndjson", &["--count", "100"]);
    let data = dir.path().join("data");
    for (rule, want) in [
        (
            "name='a'\nmetric='eec'\nop='>'\nwarning=1",
            "did you mean \"ece\"",
        ),
        ("name='a'\nmetric='ece'\nop='=>'\nwarning=1", "op \"=>\""),
        (
            "name='a'\nmetric='ece'\nop='>'\nwarning=1\naction='page'",
            "action \"page\"",
        ),
    ] {
        let cfg = config(dir.path(), &format!("[[alerts.rules]]\n{rule}\n"), None);
        let out = inferwatch(&[
            "run",
            "--source",
            &format!("file:{}", input.display()),
            "--data-dir",
            data.to_str().unwrap(),
            "--config",
            cfg.to_str().unwrap(),
        ]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(want) && err.contains("alerts.rules[0]"),
            "{err}"
        );
    }
    // A bad webhook URL is refused without printing it.
    let cfg = config(dir.path(), "", Some("ftp://example.com/SECRETPATH"));
    let out = inferwatch(&[
        "run",
        "--source",
        "file:/dev/null",
        "--config",
        cfg.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("slack"), "{err}");
    assert!(!err.contains("SECRETPATH"), "{err}");
}
