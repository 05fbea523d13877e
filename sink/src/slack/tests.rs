//! Slack delivery against a real HTTP server on 127.0.0.1 with scripted answers, and the
//! payloads against Block Kit's rules and limits.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use inferwatch_schemas::{Notice, NoticeKind, Severity};
use serde_json::{json, Value};

use super::message::{fmt_num, rfc3339, truncate, MAX_BLOCKS};
use super::*;
use crate::outbox::{Entry, Outbox, SharedOutbox, LOG_FILE};

const PATH: &str = "/services/T000/B000/SECRETTOKEN";

// ---------------------------------------------------------------------------------------
// A scripted HTTP/1.1 server.

#[derive(Clone)]
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
}

fn reply(status: u16, body: &str) -> Reply {
    Reply {
        status,
        headers: Vec::new(),
        body: body.into(),
    }
}

/// One request as the server saw it.
#[derive(Clone, Debug)]
struct Seen {
    /// When its first byte arrived.
    start: Instant,
    /// When the answer was written.
    replied: Instant,
    path: String,
    body: String,
    status: u16,
}

struct Server {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    script: Mutex<VecDeque<Reply>>,
    then: Reply,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
}

impl Server {
    /// Answers with `script` in order, then with `then` for ever.
    fn start(script: Vec<Reply>, then: Reply) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}{PATH}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Shared {
            script: Mutex::new(script.into()),
            then,
            seen: seen.clone(),
            stop: stop.clone(),
        });
        let thread = std::thread::spawn(move || {
            let mut conns = Vec::new();
            while !shared.stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let shared = shared.clone();
                        conns.push(std::thread::spawn(move || serve(stream, &shared)));
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(2))
                    }
                    Err(e) => panic!("accept: {e}"),
                }
            }
            for c in conns {
                c.join().unwrap();
            }
        });
        Server {
            url,
            seen,
            stop,
            thread: Some(thread),
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Waits for at least `n` requests.
    fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Seen> {
        let until = Instant::now() + timeout;
        loop {
            let seen = self.seen();
            if seen.len() >= n || Instant::now() > until {
                return seen;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Serves keep-alive requests on one connection until the client closes it or the server
/// stops.
fn serve(mut stream: TcpStream, shared: &Shared) {
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let mut buf: Vec<u8> = Vec::new();
    let mut start = None;
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if let Some(h) = find(&buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..h]).to_string();
            let len = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().unwrap())
                })
                .unwrap_or(0);
            if buf.len() >= h + 4 + len {
                let body = String::from_utf8_lossy(&buf[h + 4..h + 4 + len]).to_string();
                buf.drain(..h + 4 + len);
                let path = head
                    .lines()
                    .next()
                    .unwrap()
                    .split(' ')
                    .nth(1)
                    .unwrap()
                    .to_string();
                let r = shared
                    .script
                    .lock()
                    .unwrap()
                    .pop_front()
                    .unwrap_or_else(|| shared.then.clone());
                let mut out = format!(
                    "HTTP/1.1 {} X\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n",
                    r.status,
                    r.body.len()
                );
                for (k, v) in &r.headers {
                    out.push_str(&format!("{k}: {v}\r\n"));
                }
                out.push_str("\r\n");
                out.push_str(&r.body);
                if stream.write_all(out.as_bytes()).is_err() {
                    return;
                }
                shared.seen.lock().unwrap().push(Seen {
                    start: start.take().unwrap(),
                    replied: Instant::now(),
                    path,
                    body,
                    status: r.status,
                });
                continue;
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => {
                if buf.is_empty() && start.is_none() {
                    start = Some(Instant::now());
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if shared.stop.load(Ordering::Relaxed) {
                    return;
                }
            }
            Err(_) => return,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Helpers.

fn cfg(url: &str) -> SlackConfig {
    let mut c = SlackConfig::new(url).unwrap();
    c.min_interval = Duration::from_millis(10);
    c.initial_backoff = Duration::from_millis(50);
    c.max_backoff = Duration::from_millis(400);
    c.timeout = Duration::from_secs(5);
    c
}

fn entry(id: &str) -> Entry {
    Entry {
        id: id.into(),
        dest: "slack".into(),
        at_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64,
        payload: json!({"text": id}),
    }
}

fn notice(i: usize) -> Notice {
    Notice {
        id: format!("notice-{i:03}"),
        kind: NoticeKind::Alert,
        rule: format!("rule-{i:03}"),
        state: "firing".into(),
        previous: "pending".into(),
        severity: Severity::Critical,
        renotify: false,
        service: "support-bot".into(),
        model: Some("gpt-4o".into()),
        model_version: None,
        route: Some("/chat".into()),
        tenant: None,
        metric: "latency_p95_ms".into(),
        value: Some(1234.5678),
        op: ">".into(),
        threshold: Some(1000.0),
        samples: Some(532),
        samples_column: "requests".into(),
        window_start: 1_714_557_600_000,
        window_end: 1_714_557_900_000,
        query: "inferwatch query --table metrics --service support-bot --from 2024-05-01T10:00:00Z"
            .into(),
        summary: "p95 latency 1235 ms > 1000 ms".into(),
    }
}

struct Run {
    outbox: SharedOutbox,
    stop: Arc<AtomicBool>,
    delivery: SlackDelivery,
}

fn run(outbox: &SharedOutbox, cfg: SlackConfig) -> Run {
    capture();
    let stop = Arc::new(AtomicBool::new(false));
    let delivery = spawn_slack(outbox.clone(), "slack".into(), cfg, stop.clone()).unwrap();
    Run {
        outbox: outbox.clone(),
        stop,
        delivery,
    }
}

impl Run {
    fn drain(&self, secs: u64) -> usize {
        drain(
            &self.outbox,
            "slack",
            Instant::now() + Duration::from_secs(secs),
        )
    }

    fn stop(self) -> Arc<SlackStats> {
        self.stop.store(true, Ordering::Relaxed);
        self.delivery.join()
    }
}

fn log_text(dir: &std::path::Path) -> String {
    std::fs::read_to_string(dir.join(LOG_FILE)).unwrap()
}

// ---------------------------------------------------------------------------------------
// Delivery.

#[test]
fn server_errors_are_retried_with_backoff_until_delivered() {
    let server = Server::start(vec![reply(500, "oops"); 5], reply(200, "ok"));
    let dir = tempfile::tempdir().unwrap();
    let outbox = SharedOutbox::open(&crate::store::Store::local(dir.path())).unwrap();
    outbox.add(vec![entry("only")]).unwrap();
    let r = run(&outbox, cfg(&server.url));
    assert_eq!(r.drain(30), 0);
    let stats = r.stop();
    let seen = server.seen();
    assert_eq!(seen.len(), 6, "{seen:?}");
    assert_eq!(
        seen.iter().map(|s| s.status).collect::<Vec<_>>(),
        [500, 500, 500, 500, 500, 200]
    );
    assert!(seen
        .iter()
        .all(|s| s.path == PATH && s.body == r#"{"text":"only"}"#));
    assert_eq!(
        (stats.delivered(), stats.retries(), stats.rejected()),
        (1, 5, 0)
    );
    drop(outbox);
    let reopened = Outbox::open(&crate::store::Store::local(dir.path())).unwrap();
    assert_eq!(reopened.pending_total(), 0);
    assert!(log_text(dir.path()).contains(r#""id":"only","outcome":"delivered""#));
}

#[test]
fn a_429_waits_for_retry_after_without_backoff_growth() {
    let mut limited = reply(429, "rate_limited");
    limited.headers.push(("Retry-After", "2".into()));
    let server = Server::start(vec![limited, reply(429, "rate_limited")], reply(200, "ok"));
    let dir = tempfile::tempdir().unwrap();
    let outbox = SharedOutbox::open(&crate::store::Store::local(dir.path())).unwrap();
    outbox.add(vec![entry("a")]).unwrap();
    let r = run(&outbox, cfg(&server.url));
    assert_eq!(r.drain(30), 0);
    let stats = r.stop();
    let seen = server.seen();
    assert_eq!(seen.len(), 3);
    let after_first = seen[1].start - seen[0].replied;
    assert!(after_first >= Duration::from_secs(2), "{after_first:?}");
    assert!(after_first < Duration::from_millis(2800), "{after_first:?}");
    // No header: one second.
    let after_second = seen[2].start - seen[1].replied;
    assert!(after_second >= Duration::from_secs(1), "{after_second:?}");
    assert!(
        after_second < Duration::from_millis(1800),
        "{after_second:?}"
    );
    assert_eq!((stats.delivered(), stats.retries()), (1, 2));
}

#[test]
fn requests_to_one_webhook_start_at_least_min_interval_apart() {
    let server = Server::start(Vec::new(), reply(200, "ok"));
    let dir = tempfile::tempdir().unwrap();
    let outbox = SharedOutbox::open(&crate::store::Store::local(dir.path())).unwrap();
    outbox
        .add(vec![entry("m1"), entry("m2"), entry("m3")])
        .unwrap();
    let mut c = cfg(&server.url);
    c.min_interval = Duration::from_secs(1);
    let r = run(&outbox, c);
    assert_eq!(r.drain(30), 0);
    r.stop();
    let seen = server.seen();
    assert_eq!(
        seen.iter().map(|s| s.body.as_str()).collect::<Vec<_>>(),
        [r#"{"text":"m1"}"#, r#"{"text":"m2"}"#, r#"{"text":"m3"}"#]
    );
    for w in seen.windows(2) {
        let gap = w[1].start - w[0].start;
        assert!(gap >= Duration::from_millis(950), "{gap:?}");
        assert!(gap < Duration::from_millis(1900), "{gap:?}");
    }
}

#[test]
fn a_rejected_message_is_marked_and_the_next_one_still_goes_out() {
    let server = Server::start(vec![reply(400, "invalid_payload")], reply(200, "ok"));
    let dir = tempfile::tempdir().unwrap();
    let outbox = SharedOutbox::open(&crate::store::Store::local(dir.path())).unwrap();
    outbox.add(vec![entry("bad"), entry("good")]).unwrap();
    let r = run(&outbox, cfg(&server.url));
    assert_eq!(r.drain(30), 0);
    let stats = r.stop();
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].body, r#"{"text":"good"}"#);
    assert_eq!(
        (stats.delivered(), stats.retries(), stats.rejected()),
        (1, 0, 1)
    );
    drop(outbox);
    let log = log_text(dir.path());
    assert!(
        log.contains(r#""id":"bad","outcome":"rejected: 400 invalid_payload""#),
        "{log}"
    );
    assert!(log.contains(r#""id":"good","outcome":"delivered""#));
}

#[test]
fn pending_messages_survive_a_restart_and_go_out_once() {
    let dir = tempfile::tempdir().unwrap();
    let entries: Vec<Entry> = (0..3)
        .map(|i| Entry {
            payload: messages(&[notice(i)]).remove(0),
            ..entry(&format!("notice-{i:03}"))
        })
        .collect();

    // Slack is down; the run stops before anything got through.
    {
        let down = Server::start(Vec::new(), reply(503, "down"));
        let outbox = SharedOutbox::open(&crate::store::Store::local(dir.path())).unwrap();
        assert_eq!(outbox.add(entries.clone()).unwrap(), 3);
        let r = run(&outbox, cfg(&down.url));
        let seen = down.wait_for(3, Duration::from_secs(20));
        let stats = r.stop();
        assert!(seen.len() >= 3);
        // Order is kept: only the oldest is retried.
        assert!(seen.iter().all(|s| s.body.contains("rule-000")));
        assert_eq!(stats.delivered(), 0);
        assert_eq!(outbox.pending("slack"), 3);
    }

    // The next run replays (re-adds the same ids) and Slack is back.
    let up = Server::start(Vec::new(), reply(200, "ok"));
    {
        let outbox = SharedOutbox::open(&crate::store::Store::local(dir.path())).unwrap();
        assert_eq!(outbox.pending("slack"), 3);
        assert_eq!(outbox.add(entries.clone()).unwrap(), 0);
        let r = run(&outbox, cfg(&up.url));
        assert_eq!(r.drain(30), 0);
        assert_eq!(r.stop().delivered(), 3);
    }
    let seen = up.seen();
    assert_eq!(seen.len(), 3);
    for (i, s) in seen.iter().enumerate() {
        let body: Value = serde_json::from_str(&s.body).unwrap();
        assert_eq!(body, entries[i].payload);
    }

    // A third run has nothing to send, even when the same notices are replayed again.
    let outbox = SharedOutbox::open(&crate::store::Store::local(dir.path())).unwrap();
    assert_eq!(outbox.pending_total(), 0);
    assert_eq!(outbox.add(entries).unwrap(), 0);
}

// ---------------------------------------------------------------------------------------
// The webhook URL is a secret.

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Everything every test here logs, at every level. Installed as the global subscriber
/// before any delivery starts (every delivery goes through [`run`]): a thread-local one
/// can miss events through `tracing`'s per-callsite interest cache when tests run in
/// parallel.
fn capture() -> &'static Capture {
    static CAPTURE: std::sync::OnceLock<Capture> = std::sync::OnceLock::new();
    CAPTURE.get_or_init(|| {
        let c = Capture::default();
        let writer = c.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        c
    })
}

fn captured() -> String {
    String::from_utf8(capture().0.lock().unwrap().clone()).unwrap()
}

#[test]
fn the_webhook_url_never_reaches_the_log() {
    capture();
    // Lines from this test (and its delivery threads) carry the span's name.
    let span = tracing::info_span!("url_secrecy_test");
    let _entered = span.enter();
    let dir = tempfile::tempdir().unwrap();
    let outbox = SharedOutbox::open(&crate::store::Store::local(dir.path())).unwrap();

    // Nothing listens: connection refused.
    let refused = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}{PATH}", l.local_addr().unwrap())
    };
    outbox.add(vec![entry("a")]).unwrap();
    let r = run(&outbox, cfg(&refused));
    std::thread::sleep(Duration::from_millis(400));
    let stats = r.stop();
    assert!(stats.retries() >= 2, "{}", stats.retries());

    // Errors, then a rejection whose body quotes the path, then success.
    let server = Server::start(
        vec![
            reply(500, &format!("internal error at {PATH}")),
            reply(500, "oops"),
            reply(404, &format!("no_service {PATH}")),
        ],
        reply(200, "ok"),
    );
    outbox.add(vec![entry("b")]).unwrap();
    let r = run(&outbox, cfg(&server.url));
    assert_eq!(r.drain(30), 0);
    let stats = r.stop();
    assert_eq!((stats.delivered(), stats.rejected()), (1, 1));

    // Config errors and debug output.
    let bad = SlackConfig::new(format!("ftp://hooks.example.com{PATH}")).unwrap_err();
    tracing::error!("{bad}");
    let good = cfg(&server.url);
    tracing::info!("{good:?} {}", good.webhook_url);
    assert_eq!(
        good.webhook_url.to_string(),
        format!(
            "http://{}/…(redacted)",
            server.url.split('/').nth(2).unwrap()
        )
    );

    let all = captured();
    let logged: String = all
        .lines()
        .filter(|l| l.contains("url_secrecy_test"))
        .map(|l| format!("{l}\n"))
        .collect();
    for needle in [
        "slack: delivery failed",
        "rejected",
        "delivering again after",
    ] {
        assert!(logged.contains(needle), "no `{needle}` in:\n{logged}");
    }
    // Every test here uses the same URL path: none may log it.
    for secret in ["SECRETTOKEN", "/services/T000", "B000"] {
        assert!(!all.contains(secret), "`{secret}` logged:\n{all}");
    }
    // The outbox keeps the rejection reason, scrubbed too.
    drop(outbox);
    let log = log_text(dir.path());
    assert!(log.contains("rejected: 404 no_service"), "{log}");
    assert!(!log.contains("SECRETTOKEN"), "{log}");
}

#[test]
fn secrets_show_only_scheme_and_host() {
    let s = Secret::new("https://hooks.slack.com/services/T1/B2/abcdefTOKEN");
    assert_eq!(s.to_string(), "https://hooks.slack.com/…(redacted)");
    assert_eq!(
        format!("{s:?}"),
        "Secret(https://hooks.slack.com/…(redacted))"
    );
    let s = Secret::new("https://user:pw@proxy.example/x/abcdefTOKEN?q=1");
    assert_eq!(s.to_string(), "https://proxy.example/…(redacted)");
    let scrubbed =
        s.scrub("GET https://user:pw@proxy.example/x/abcdefTOKEN?q=1 failed; abcdefTOKEN");
    assert!(
        !scrubbed.contains("TOKEN") && !scrubbed.contains("pw"),
        "{scrubbed}"
    );
    assert_eq!(Secret::new("garbage").to_string(), "(redacted webhook URL)");
    assert!(SlackConfig::new("hooks.slack.com/services/x").is_err());
    let c = SlackConfig::new("https://hooks.slack.com/services/x").unwrap();
    assert_eq!(c.min_interval, Duration::from_secs(1));
    assert_eq!(c.max_backoff, Duration::from_secs(300));
}

// ---------------------------------------------------------------------------------------
// Payloads.

fn chars(v: &Value) -> usize {
    v.as_str().expect("a string").chars().count()
}

/// Block Kit's rules for the blocks we make, and Slack's size limits.
fn assert_valid(msg: &Value) {
    let text = &msg["text"];
    assert!(
        chars(text) > 0 && chars(text) <= 3000,
        "text {}",
        chars(text)
    );
    assert_mrkdwn_escaped(text.as_str().unwrap());
    let blocks = msg["blocks"].as_array().expect("blocks");
    assert!(
        !blocks.is_empty() && blocks.len() <= MAX_BLOCKS,
        "{}",
        blocks.len()
    );
    for b in blocks {
        match b["type"].as_str().unwrap() {
            "header" => {
                assert_eq!(b["text"]["type"], "plain_text");
                let n = chars(&b["text"]["text"]);
                assert!(n > 0 && n <= 150, "header {n}");
            }
            "section" => {
                assert_eq!(b["text"]["type"], "mrkdwn");
                let n = chars(&b["text"]["text"]);
                assert!(n > 0 && n <= 3000, "section {n}");
                assert_mrkdwn_escaped(b["text"]["text"].as_str().unwrap());
            }
            "context" => {
                let els = b["elements"].as_array().unwrap();
                assert!(!els.is_empty() && els.len() <= 10);
                for e in els {
                    assert_eq!(e["type"], "mrkdwn");
                    let n = chars(&e["text"]);
                    assert!(n > 0 && n <= 2000, "context {n}");
                    assert_mrkdwn_escaped(e["text"].as_str().unwrap());
                }
            }
            "divider" => {}
            other => panic!("not a block type we make: {other}"),
        }
    }
}

/// No raw `<` or `>`, and every `&` starts one of the three entities.
fn assert_mrkdwn_escaped(s: &str) {
    assert!(!s.contains('<') && !s.contains('>'), "unescaped: {s}");
    for (i, _) in s.match_indices('&') {
        let rest = &s[i..];
        assert!(
            rest.starts_with("&amp;") || rest.starts_with("&lt;") || rest.starts_with("&gt;"),
            "bad entity at {i} in {s}"
        );
    }
}

fn sections(msg: &Value) -> Vec<String> {
    msg["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["type"] == "section")
        .map(|b| b["text"]["text"].as_str().unwrap().to_string())
        .collect()
}

fn header(msg: &Value) -> String {
    msg["blocks"][0]["text"]["text"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn a_firing_group_is_one_message_with_header_sections_and_queries() {
    let mut warn = notice(2);
    warn.severity = Severity::Warning;
    warn.renotify = true;
    warn.value = Some(0.012345);
    warn.threshold = Some(0.01);
    warn.op = "<".into();
    let msgs = messages(&[notice(1), warn]);
    assert_eq!(msgs.len(), 1);
    let m = &msgs[0];
    assert_valid(m);
    assert_eq!(header(m), "🔴 CRITICAL firing: support-bot — 2 alerts");
    let blocks = m["blocks"].as_array().unwrap();
    let kinds: Vec<&str> = blocks.iter().map(|b| b["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["header", "section", "context", "section", "context"]
    );
    let s = sections(m);
    assert!(
        s[0].contains("*CRITICAL*") && s[0].contains("*rule-001*"),
        "{}",
        s[0]
    );
    assert!(s[0].contains("support-bot/gpt-4o /chat"), "{}", s[0]);
    assert!(
        s[0].contains("`latency_p95_ms` = 1235 (threshold &gt; 1000) · 532 requests"),
        "{}",
        s[0]
    );
    assert!(
        s[0].contains("2024-05-01T10:00:00Z – 2024-05-01T10:05:00Z"),
        "{}",
        s[0]
    );
    assert!(!s[0].contains("reminder"));
    assert!(
        s[1].contains("reminder") && s[1].contains("*WARNING*"),
        "{}",
        s[1]
    );
    assert!(s[1].contains("= 0.01235 (threshold &lt; 0.01)"), "{}", s[1]);
    assert_eq!(
        blocks[2]["elements"][0]["text"],
        "`inferwatch query --table metrics --service support-bot --from 2024-05-01T10:00:00Z`"
    );
    let text = m["text"].as_str().unwrap();
    assert!(text.starts_with("🔴 CRITICAL firing: support-bot — 2 alerts\n• critical rule-001"));
}

#[test]
fn headers_for_resolved_alerts_and_breakers() {
    let mut r = notice(1);
    r.state = "resolved".into();
    r.previous = "firing".into();
    assert_eq!(
        header(&messages(&[r.clone()])[0]),
        "✅ resolved: support-bot — 1 alert"
    );
    let mut b = notice(3);
    b.kind = NoticeKind::Breaker;
    b.state = "open".into();
    b.previous = "closed".into();
    b.route = None;
    let m = &messages(std::slice::from_ref(&b))[0];
    assert_valid(m);
    assert_eq!(header(m), "⛔ circuit open: support-bot/gpt-4o");
    assert!(sections(m)[0].contains("circuit breaker *rule-003* · closed → open"));
    let mut reminder = notice(4);
    reminder.renotify = true;
    assert_eq!(
        header(&messages(&[reminder, r])[0]),
        "🔴 CRITICAL firing (reminder): support-bot — 1 alert, 1 resolved"
    );
    assert!(messages(&[]).is_empty());
}

#[test]
fn long_multibyte_labels_are_cut_within_slack_limits() {
    let long = |c: &str| c.repeat(5000);
    let mut n = notice(1);
    n.rule = long("é<&>");
    n.service = long("服");
    n.model = Some(long("🙂"));
    n.route = Some(long("/a&b"));
    n.metric = long("m");
    n.summary = long("<tag> & ");
    n.query = long("q&");
    n.previous = long("p");
    n.state = long("s");
    let msgs = messages(&[n.clone()]);
    assert_eq!(msgs.len(), 1);
    assert_valid(&msgs[0]);
    let h = header(&msgs[0]);
    assert!(h.chars().count() <= 150 && h.contains('…'), "{h}");
    let mut t = n;
    t.tenant = Some(long("t"));
    t.kind = NoticeKind::Breaker;
    assert_valid(&messages(&[t])[0]);
}

#[test]
fn a_group_of_120_is_split_into_numbered_messages_within_50_blocks() {
    let group: Vec<Notice> = (0..120).map(notice).collect();
    let msgs = messages(&group);
    assert_eq!(msgs.len(), 5);
    let mut rules = Vec::new();
    for (i, m) in msgs.iter().enumerate() {
        assert_valid(m);
        assert!(m["blocks"].as_array().unwrap().len() <= 50);
        assert_eq!(
            header(m),
            format!("🔴 CRITICAL firing: support-bot — 120 alerts ({}/5)", i + 1)
        );
        for s in sections(m) {
            let rule = s.split('*').nth(3).unwrap().to_string();
            rules.push(rule);
        }
    }
    let expect: Vec<String> = (0..120).map(|i| format!("rule-{i:03}")).collect();
    assert_eq!(rules, expect);
}

#[test]
fn numbers_times_and_truncation() {
    assert_eq!(fmt_num(1234.5678), "1235");
    assert_eq!(fmt_num(0.012345678), "0.01235");
    assert_eq!(fmt_num(1000.0), "1000");
    assert_eq!(fmt_num(0.5), "0.5");
    assert_eq!(fmt_num(-2.0), "-2");
    assert_eq!(fmt_num(0.0), "0");
    assert_eq!(fmt_num(123456.0), "123456");
    assert_eq!(fmt_num(12_345_678.0), "1.235e7");
    assert_eq!(fmt_num(0.000012345), "1.234e-5");
    assert_eq!(fmt_num(f64::INFINITY), "∞");
    assert_eq!(rfc3339(1_714_557_600_999), "2024-05-01T10:00:00Z");
    assert_eq!(rfc3339(-5), "1970-01-01T00:00:00Z");
    assert_eq!(truncate("héllo", 10), "héllo");
    assert_eq!(truncate("héllo", 3), "hé…");
    assert_eq!(truncate("🙂🙂🙂🙂", 2), "🙂…");
}
