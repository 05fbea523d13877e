//! Object storage end to end, against a real S3-compatible server (SeaweedFS on free loopback
//! ports; `INFERWATCH_TEST_S3` for any other): tables, checkpoints and the outbox in a
//! bucket; exactly once across SIGKILLs and a server outage; clear errors for a wrong key or
//! a missing bucket; processors on many machines sharing one bucket and one group.

use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use inferwatch_sink::Store;

mod common;
use common::broker::unique;
use common::cli::*;
use common::runs::*;
use common::s3::{self, Seaweed};
use common::test_dir;

/// The shared server, with its credentials in every child's environment.
fn s3() -> &'static Seaweed {
    let s = s3::shared();
    child_env(s.env());
    s
}

/// Objects under `prefix` of the store at `url`.
fn objects(s3: &Seaweed, url: &str, prefix: &str) -> usize {
    Store::open(url, &s3.options())
        .and_then(|s| s.list(prefix))
        .map_or(0, |k| k.iter().filter(|k| k.ends_with(".parquet")).count())
}

const SMALL: &[&str] = &[
    "--count",
    "60000",
    "--rate",
    "1000",
    "--seed",
    "17",
    "--scenario",
    "malformed",
];

#[test]
fn a_file_replay_into_a_bucket_equals_the_local_run_and_other_engines_read_it() {
    let s3 = s3();
    let dir = test_dir();
    let reference = reference(dir.path(), SMALL);
    let input = dir.path().join("ref.ndjson");
    let url = s3.url(&unique("replay"));
    let remote = Path::new(&url);
    run(&input, remote, &["--window", "1m"]);
    assert_matches(&reference, remote);
    // A second replay replaces its files instead of adding to them.
    run(&input, remote, &["--window", "1m"]);
    assert_matches(&reference, remote);
    // pyarrow and DuckDB read the bucket as it is.
    let prefix = url.trim_start_matches(&format!("s3://{}/", s3.bucket));
    let out = std::process::Command::new("python3")
        .arg("tests/reference/check_s3.py")
        .args([&s3.endpoint, &s3.bucket, prefix])
        .envs(s3.env())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let counts: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(counts["events"], reference.valid);
    assert_eq!(counts["metrics"], reference.metrics.len() as i64);
    assert_eq!(counts["duckdb_events"], reference.valid);
    if std::env::var("INFERWATCH_TEST_S3").is_err() {
        // An analyst's read-only keys query the bucket; a processor cannot run on them.
        let reader = |args: &[&str]| {
            command()
                .args(args)
                .env("AWS_ACCESS_KEY_ID", s3::READER_KEY)
                .env("AWS_SECRET_ACCESS_KEY", s3::READER_SECRET)
                .output()
                .unwrap()
        };
        let out = reader(&[
            "query",
            "--data-dir",
            &url,
            "--format",
            "json",
            "SELECT count(*) AS n FROM events",
        ]);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            text.contains(&format!("\"n\":{}", reference.valid)),
            "{text}"
        );
        let source = format!("file:{}", input.display());
        let out = reader(&[
            "run",
            "--source",
            &source,
            "--data-dir",
            &s3.url("read-only"),
        ]);
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(
            !out.status.success(),
            "read-only keys cannot run a processor: {err}"
        );
        assert!(
            err.contains(&s3.bucket) && !err.contains(s3::READER_SECRET),
            "{err}"
        );
    }
}

#[test]
fn a_wrong_key_or_a_missing_bucket_is_a_clear_error_before_anything_is_read() {
    let s3 = s3();
    let dir = test_dir();
    let input = generate(dir.path(), "in.ndjson", &["--count", "100"]);
    let source = format!("file:{}", input.display());
    let wrong = "Wr0ng-Secret-Value-4242";
    let out = command()
        .args(["run", "--source", &source, "--data-dir", &s3.url("denied")])
        .env("AWS_SECRET_ACCESS_KEY", wrong)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "a wrong key must fail: {err}");
    assert!(err.contains(&s3.bucket), "names the bucket: {err}");
    assert!(!err.contains(wrong), "never the secret: {err}");
    assert!(!err.contains("events"), "nothing was read: {err}");

    let out = command()
        .args(["run", "--source", &source])
        .args(["--data-dir", "s3://no-such-bucket-inferwatch/x"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "a missing bucket must fail: {err}");
    assert!(err.contains("no-such-bucket-inferwatch"), "{err}");
    assert!(!err.contains(&s3.secret_key), "{err}");

    let out = inferwatch(&["run", "--source", &source, "--data-dir", "gs://bucket/x"]);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success() && err.contains("gs://"), "{err}");
    assert!(
        !Path::new("gs:").exists(),
        "no local folder named after the scheme"
    );
}

/// A config file for Kafka runs that checkpoint often, with a short session timeout so a
/// killed member's partitions move soon.
fn kafka_config(dir: &Path, batch_size: usize, interval: &str) -> std::path::PathBuf {
    let path = dir.join(format!("kafka-{batch_size}-{interval}.toml"));
    std::fs::write(
        &path,
        format!(
            "[source]\nbatch_size = {batch_size}\n[checkpoint]\ninterval = \"{interval}\"\n\
             [kafka.properties]\n\"session.timeout.ms\" = \"6000\"\n"
        ),
    )
    .unwrap();
    path
}

/// Runs `inferwatch run --brokers` into `url` until `files()` grows, then `delay_ms` more,
/// then SIGKILLs it.
fn run_and_kill(
    b: &str,
    topic: &str,
    url: &str,
    args: &[&str],
    delay_ms: u64,
    files: impl Fn() -> usize,
) {
    let mut child = spawn_run(b, topic, "s3-crash", Path::new(url), args);
    let before = files();
    let deadline = Instant::now() + Duration::from_secs(90);
    while files() <= before && Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(delay_ms));
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn a_kafka_run_into_a_bucket_keeps_each_event_once_across_two_sigkills() {
    let s3 = s3();
    let dir = test_dir();
    let (b, topic, reference) = traffic_topic_with("s3crash", dir.path(), SMALL);
    let url = s3.url(&unique("crash"));
    let config = kafka_config(dir.path(), 500, "300ms");
    let args = ["--window", "1m", "--config", config.to_str().unwrap()];
    let files = || objects(s3, &url, "events/");
    run_and_kill(b, &topic, &url, &args, 400, files);
    run_and_kill(b, &topic, &url, &args, 900, files);
    let mut all = vec!["--stop-when-idle", "8s"];
    all.extend_from_slice(&args);
    let mut child = spawn_run(b, &topic, "s3-crash", Path::new(&url), &all);
    wait_ok(&mut child, Duration::from_secs(240));
    assert_matches(&reference, Path::new(&url));
}

/// `inferwatch run --brokers` with `env` over the binary's own.
fn spawn_with_env(
    b: &str,
    topic: &str,
    url: &str,
    args: &[&str],
    env: &[(String, String)],
) -> (Child, std::path::PathBuf) {
    let log = log_path(Path::new(url));
    let mut cmd = command();
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    let child = spawn_run_with(cmd, b, topic, "outage", url, args, &log);
    (child, log)
}

#[test]
fn a_store_outage_of_ten_seconds_mid_run_loses_nothing_and_says_so_once() {
    s3();
    let mut own = Seaweed::start();
    let dir = test_dir();
    let (b, topic, reference) = traffic_topic_with("outage", dir.path(), SMALL);
    let url = own.url(&unique("outage"));
    let config = kafka_config(dir.path(), 500, "300ms");
    let args = [
        "--window",
        "1m",
        "--config",
        config.to_str().unwrap(),
        "--stop-when-idle",
        "8s",
    ];
    let (mut child, log) = spawn_with_env(b, &topic, &url, &args, &own.env());
    let deadline = Instant::now() + Duration::from_secs(90);
    while objects(&own, &url, "events/") == 0 {
        assert!(Instant::now() < deadline, "no files written");
        std::thread::sleep(Duration::from_millis(50));
    }
    own.stop();
    std::thread::sleep(Duration::from_secs(10));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the processor waits for the store"
    );
    own.resume();
    wait_ok(&mut child, Duration::from_secs(240));
    let text = std::fs::read_to_string(&log).unwrap();
    let retrying = text.matches("retrying until it answers").count();
    assert!(retrying >= 1, "the outage is logged: {text}");
    assert!(
        retrying <= 2,
        "once per outage, not once per retry: {retrying}\n{text}"
    );
    assert!(text.contains("reachable again"), "{text}");
    assert!(!text.contains(&own.secret_key));
    let remote = Path::new(&url);
    let env = own.env();
    let q = |sql: &str| -> i64 {
        let out = command()
            .args(["query", "--data-dir", &url, "--format", "json", sql])
            .envs(env.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap();
        let v: serde_json::Value =
            serde_json::from_slice(out.stdout.split(|&c| c == b'\n').next().unwrap()).unwrap();
        v[0].as_object()
            .unwrap()
            .values()
            .next()
            .unwrap()
            .as_i64()
            .unwrap()
    };
    assert_eq!(q("SELECT count(*) FROM events"), reference.valid);
    assert_eq!(
        q("SELECT count(DISTINCT event_id) FROM events"),
        reference.valid
    );
    assert_eq!(q("SELECT count(*) FROM dead_letter"), reference.dead);
    assert_eq!(
        q("SELECT count(*) FROM metrics"),
        reference.metrics.len() as i64
    );
    let _ = remote;
}

#[test]
fn three_processors_share_one_bucket_and_one_killed_is_taken_over() {
    let s3 = s3();
    let dir = test_dir();
    let (b, topic, reference) = traffic_topic("scale", dir.path());
    let url = s3.url(&unique("scale"));
    let config = kafka_config(dir.path(), 200, "500ms");
    let args = [
        "--window",
        "1m",
        "--config",
        config.to_str().unwrap(),
        // Longer than the broker takes to notice the dead member and move its partitions.
        "--stop-when-idle",
        "20s",
    ];
    // Each processor in its own empty working directory: nothing is shared but the bucket.
    let mut procs: Vec<Child> = (0..3)
        .map(|i| {
            let cwd = dir.path().join(format!("machine-{i}"));
            std::fs::create_dir_all(&cwd).unwrap();
            let mut cmd = command();
            cmd.current_dir(&cwd);
            spawn_run_with(cmd, b, &topic, "scale", &url, &args, &cwd.join("run.log"))
        })
        .collect();
    // The victim: a processor that holds partitions, once the group has written files.
    let log = |i: usize| {
        std::fs::read_to_string(dir.path().join(format!("machine-{i}/run.log"))).unwrap_or_default()
    };
    let holds = |text: &str| {
        text.lines()
            .rev()
            .find(|l| l.contains("assigned partitions"))
            .is_some_and(|l| l.contains("partitions [") && !l.contains("partitions []"))
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    let victim = loop {
        let found = (0..3).find(|&i| holds(&log(i)));
        if let Some(i) = found.filter(|_| objects(s3, &url, "events/") >= 4) {
            break i;
        }
        assert!(
            Instant::now() < deadline,
            "no processor got partitions and wrote files"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    procs[victim].kill().unwrap();
    procs[victim].wait().unwrap();
    let survivors: Vec<usize> = (0..3).filter(|&i| i != victim).collect();
    for &i in &survivors {
        let status = wait_exit(&mut procs[i], Duration::from_secs(300));
        assert!(status.success(), "processor {i}: {status}\n{}", log(i));
    }
    assert_matches(&reference, Path::new(&url));
    // The survivors took the dead one's partitions over from its checkpoints in the bucket.
    let logs: String = survivors.iter().map(|&i| log(i)).collect();
    assert!(logs.contains("resuming from checkpoint"), "{logs}");
    for i in 0..3 {
        let cwd = dir.path().join(format!("machine-{i}"));
        let left: Vec<_> = std::fs::read_dir(&cwd).unwrap().flatten().collect();
        assert_eq!(left.len(), 1, "no local state beside the log: {left:?}");
    }
}

#[test]
fn the_alert_outbox_in_a_bucket_survives_a_reopen_and_compacts_its_objects() {
    use inferwatch_sink::outbox::{Entry, Outbox};
    let s3 = s3();
    let store = Store::open(&s3.url(&unique("outbox")), &s3.options()).unwrap();
    let entry = |i: usize| Entry {
        id: format!("n{i}"),
        dest: "slack-x".into(),
        at_ms: inferwatch_schemas::time::now_ms(),
        payload: serde_json::json!({ "text": format!("notice {i}") }),
    };
    let mut ob = Outbox::open(&store).unwrap();
    // One object per append; past 64 of them the log folds into a new base.
    for i in 0..100 {
        assert_eq!(ob.add(vec![entry(i)]).unwrap(), 1);
    }
    for i in 0..40 {
        ob.done(&format!("n{i}"), "delivered").unwrap();
    }
    drop(ob);
    let objects = store.list("").unwrap();
    assert!(objects.len() < 70, "compacted: {objects:?}");
    let mut ob = Outbox::open(&store).unwrap();
    assert_eq!(ob.pending("slack-x"), 60);
    assert_eq!(ob.next("slack-x").unwrap().id, "n40");
    // Delivered ids are remembered: a replay adding them again adds nothing.
    assert_eq!(ob.add((0..40).map(entry).collect()).unwrap(), 0);
    ob.compact().unwrap();
    let ob = Outbox::open(&store).unwrap();
    assert_eq!(ob.pending("slack-x"), 60);
    assert_eq!(
        store.list("").unwrap().len(),
        1,
        "one base object after a compaction"
    );
}
