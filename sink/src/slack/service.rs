//! The delivery loop for one webhook: takes the oldest pending outbox entry of its
//! destination, posts it, and marks it done only after Slack took it (or refused it for
//! good), so a notice is delivered once and in order, across restarts.
//!
//! * 2xx: delivered.
//! * 429: wait `Retry-After` (1 s when missing), retry the same message; no backoff growth.
//! * 5xx, 408, network errors and timeouts: exponential backoff with full jitter, retry the
//!   same message (order is kept: nothing behind it goes first).
//! * other 4xx (and 3xx): Slack will never take this message: marked `rejected: ...`.
//!
//! Requests to one webhook start at least `min_interval` apart. Each kind of failure is
//! logged once until a delivery succeeds, so an outage does not flood the log. The URL is
//! never logged: it is a credential.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::{Result, SinkError};
use crate::outbox::{Entry, SharedOutbox};

use super::config::SlackConfig;

/// Counts for the run's summary.
#[derive(Debug, Default)]
pub struct SlackStats {
    delivered: AtomicU64,
    retries: AtomicU64,
    rejected: AtomicU64,
}

impl SlackStats {
    /// Messages Slack took.
    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    /// Failed attempts that are retried (rate limits, server errors, network errors).
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    /// Messages Slack refused for good (marked `rejected` in the outbox).
    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }
}

/// A running delivery loop.
#[derive(Debug)]
pub struct SlackDelivery {
    handle: JoinHandle<()>,
    stats: Arc<SlackStats>,
}

impl SlackDelivery {
    pub fn stats(&self) -> Arc<SlackStats> {
        self.stats.clone()
    }

    /// Waits for the loop to return (after its `stop` flag is set).
    pub fn join(self) -> Arc<SlackStats> {
        if self.handle.join().is_err() {
            tracing::error!("slack: the delivery thread panicked");
        }
        self.stats
    }

    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }
}

/// How often an idle or waiting loop looks at its `stop` flag.
const TICK: Duration = Duration::from_millis(100);
/// `Retry-After` when the header is missing or unreadable.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);
/// A `Retry-After` is honoured up to this.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);
/// Bytes of a response body read (Slack answers `ok` or a short error code).
const MAX_BODY: u64 = 64 * 1024;

/// Starts delivering the outbox entries of `dest` to the webhook of `cfg` on a thread of its
/// own, until `stop` is set: the attempt in flight finishes, what is pending stays in the
/// outbox for the next run. Logs go to the caller's current `tracing` subscriber and span.
pub fn spawn_slack(
    outbox: SharedOutbox,
    dest: String,
    cfg: SlackConfig,
    stop: Arc<AtomicBool>,
) -> Result<SlackDelivery> {
    let stats = Arc::new(SlackStats::default());
    // The thread logs where the caller logs, within the caller's span.
    let dispatch = tracing::dispatcher::get_default(|d| d.clone());
    let span = tracing::Span::current();
    let handle = {
        let stats = stats.clone();
        std::thread::Builder::new()
            .name(format!("slack-{dest}"))
            .spawn(move || {
                tracing::dispatcher::with_default(&dispatch, || {
                    span.in_scope(|| Loop::new(outbox, dest, cfg, stop, stats).run())
                })
            })
            .map_err(|e| SinkError::Slack(format!("starting the delivery thread: {e}")))?
    };
    Ok(SlackDelivery { handle, stats })
}

/// Waits until nothing is pending for `dest` or `deadline` passes (at shutdown, before
/// setting `stop`); returns how many entries are still pending.
pub fn drain(outbox: &SharedOutbox, dest: &str, deadline: Instant) -> usize {
    outbox.wait_drained(dest, deadline)
}

/// What one attempt came to.
#[derive(Debug)]
enum Attempt {
    Delivered,
    RateLimited(Duration),
    /// Worth retrying; the kind (for logging once) and the details, URL scrubbed.
    Failed(String, String),
    /// Never worth retrying: status and the start of the body, URL scrubbed.
    Rejected(u16, String),
}

struct Loop {
    outbox: SharedOutbox,
    dest: String,
    cfg: SlackConfig,
    stop: Arc<AtomicBool>,
    stats: Arc<SlackStats>,
    agent: ureq::Agent,
    last_start: Option<Instant>,
    /// Failed attempts since the last success.
    failures: u64,
    /// Server or network failures in a row: the backoff exponent.
    streak: u32,
    logged: HashSet<String>,
}

impl Loop {
    fn new(
        outbox: SharedOutbox,
        dest: String,
        cfg: SlackConfig,
        stop: Arc<AtomicBool>,
        stats: Arc<SlackStats>,
    ) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(cfg.timeout))
            .max_redirects(0)
            .user_agent(concat!("inferwatch/", env!("CARGO_PKG_VERSION")))
            .build()
            .new_agent();
        Self {
            outbox,
            dest,
            cfg,
            stop,
            stats,
            agent,
            last_start: None,
            failures: 0,
            streak: 0,
            logged: HashSet::new(),
        }
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Sleeps `d`, waking early when stopped; false if stopped.
    fn sleep(&self, d: Duration) -> bool {
        let until = Instant::now() + d;
        loop {
            if self.stopping() {
                return false;
            }
            let now = Instant::now();
            if now >= until {
                return true;
            }
            std::thread::sleep((until - now).min(TICK));
        }
    }

    fn run(mut self) {
        tracing::debug!(
            "slack: delivering `{}` to {}",
            self.dest,
            self.cfg.webhook_url
        );
        while !self.stopping() {
            let Some(entry) = self.outbox.wait_next(&self.dest, TICK) else {
                continue;
            };
            if let Some(last) = self.last_start {
                let wait = self.cfg.min_interval.saturating_sub(last.elapsed());
                if !self.sleep(wait) {
                    self.outbox.not_sent(&entry.id);
                    break;
                }
            }
            self.last_start = Some(Instant::now());
            let attempt = self.post(&entry);
            if !self.settle(&entry, attempt) {
                break;
            }
        }
        let left = self.outbox.pending(&self.dest);
        if left > 0 {
            tracing::info!(
                "slack: stopping with {left} messages still to deliver; they stay in the outbox for the next run"
            );
        }
    }

    /// Acts on an attempt's outcome; false if the loop was stopped while waiting.
    fn settle(&mut self, entry: &Entry, attempt: Attempt) -> bool {
        match attempt {
            Attempt::Delivered => {
                if self.failures > 0 {
                    tracing::info!(
                        "slack: delivering again after {} failed attempts",
                        self.failures
                    );
                }
                self.failures = 0;
                self.streak = 0;
                self.logged.clear();
                self.stats.delivered.fetch_add(1, Ordering::Relaxed);
                self.mark(entry, "delivered")
            }
            Attempt::RateLimited(wait) => {
                // Not held while waiting: its log may move to another processor meanwhile.
                self.outbox.not_sent(&entry.id);
                self.failures += 1;
                self.stats.retries.fetch_add(1, Ordering::Relaxed);
                if self.logged.insert("429".into()) {
                    tracing::warn!(
                        "slack: rate limited by the webhook (429); waiting {wait:?} as it asks, \
                         then retrying (not logged again until a delivery succeeds)"
                    );
                }
                self.sleep(wait)
            }
            Attempt::Failed(kind, detail) => {
                self.outbox.not_sent(&entry.id);
                self.failures += 1;
                self.stats.retries.fetch_add(1, Ordering::Relaxed);
                let wait = self.backoff();
                self.streak = self.streak.saturating_add(1);
                if self.logged.insert(kind) {
                    tracing::warn!(
                        "slack: delivery failed ({detail}); retrying with backoff up to {:?} \
                         (failures of this kind are not logged again until a delivery succeeds)",
                        self.cfg.max_backoff
                    );
                }
                self.sleep(wait)
            }
            Attempt::Rejected(status, body) => {
                self.streak = 0;
                self.stats.rejected.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    "slack: the webhook rejected a message with {status} `{body}`; it is marked \
                     rejected in the outbox and will not be retried. Check the webhook URL in the \
                     config (403/404 `no_service`, `channel_not_found`, `invalid_token`: revoked \
                     or wrong webhook) or the payload (400 `invalid_payload`, `invalid_blocks`); \
                     id {}",
                    entry.id
                );
                self.mark(entry, &format!("rejected: {status} {body}"))
            }
        }
    }

    /// Full jitter: a uniform wait up to `initial_backoff · 2^streak`, capped.
    fn backoff(&self) -> Duration {
        let cap = self
            .cfg
            .initial_backoff
            .saturating_mul(1u32 << self.streak.min(30))
            .min(self.cfg.max_backoff);
        cap.mul_f64(fastrand::f64())
    }

    /// Records the outcome durably before the next message goes out; a failing disk is
    /// retried rather than posting the message again.
    fn mark(&mut self, entry: &Entry, outcome: &str) -> bool {
        let mut wait = self.cfg.initial_backoff.max(Duration::from_millis(100));
        loop {
            match self.outbox.done(&entry.id, outcome) {
                Ok(()) => return true,
                Err(e) => {
                    tracing::error!("slack: could not record a delivery in the outbox: {e}");
                    if !self.sleep(wait) {
                        return false;
                    }
                    wait = (wait * 2).min(self.cfg.max_backoff);
                }
            }
        }
    }

    fn post(&self, entry: &Entry) -> Attempt {
        let url = &self.cfg.webhook_url;
        let body = serde_json::to_vec(&entry.payload).expect("JSON values serialize");
        let res = self
            .agent
            .post(url.expose())
            .header("Content-Type", "application/json; charset=utf-8")
            .send(&body[..]);
        let mut resp = match res {
            Ok(r) => r,
            Err(e) => {
                let kind = match &e {
                    ureq::Error::Io(io) => format!("io {:?}", io.kind()),
                    ureq::Error::Timeout(_) => "timeout".into(),
                    other => format!("{:?}", std::mem::discriminant(other)),
                };
                return Attempt::Failed(kind, url.scrub(&e.to_string()));
            }
        };
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(|s| Duration::from_secs_f64(s).min(MAX_RETRY_AFTER));
        let text = resp
            .body_mut()
            .with_config()
            .limit(MAX_BODY)
            .lossy_utf8(true)
            .read_to_string()
            .unwrap_or_default();
        let text: String = url.scrub(text.trim()).chars().take(200).collect();
        match status {
            200..=299 => Attempt::Delivered,
            429 => Attempt::RateLimited(retry_after.unwrap_or(DEFAULT_RETRY_AFTER)),
            408 | 500..=599 => Attempt::Failed(
                format!("http {status}"),
                format!("the webhook answered {status} `{text}`"),
            ),
            _ => Attempt::Rejected(status, text),
        }
    }
}
