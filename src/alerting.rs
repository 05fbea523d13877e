//! Alert delivery: notices go into the durable outbox (`<data_dir>/_outbox`), and one loop
//! per destination drains it — each Slack webhook, the `inference-alerts` topic (every
//! notice) and the `inference-control` topic (breaker transitions).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use inferwatch_schemas::{Notice, NoticeKind};
use inferwatch_sink::alert_topics::{spawn_topic_delivery, TopicConfig};
use inferwatch_sink::outbox::{Entry, SharedOutbox};
use inferwatch_sink::slack::{self, SlackConfig};

/// Kafka topics for notices.
#[derive(Debug, Clone)]
pub struct AlertTopics {
    pub brokers: String,
    /// Every notice, as JSON; "" for none.
    pub alerts: String,
    /// Circuit-breaker transitions, as JSON; "" for none.
    pub control: String,
    pub properties: Vec<(String, String)>,
}

/// Adds notices to the outbox, one entry per destination (cheap to clone; used by the sink
/// thread).
#[derive(Clone)]
pub struct Enqueuer {
    outbox: SharedOutbox,
    slack: Vec<String>,
    alerts: Option<String>,
    control: Option<String>,
}

impl std::fmt::Debug for Enqueuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Enqueuer")
            .field("slack", &self.slack.len())
            .field("alerts", &self.alerts)
            .field("control", &self.control)
            .finish()
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// 64-bit FNV-1a, hex: ids made from other ids.
fn fnv(parts: &[&str]) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for p in parts {
        for b in p.bytes().chain(std::iter::once(0x1f)) {
            h ^= b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
    }
    format!("{h:016x}")
}

impl Enqueuer {
    /// Makes the outbox entries of `notices` and adds them (fsynced); entries already known
    /// (a replay after a crash) are skipped. Returns how many were new.
    pub fn enqueue(&self, notices: &[Notice]) -> Result<usize> {
        if notices.is_empty() {
            return Ok(0);
        }
        let at_ms = now_ms();
        let mut entries = Vec::new();
        if !self.slack.is_empty() {
            // One message per service and window: alerts that fire together read together.
            let mut groups: BTreeMap<(i64, &str), Vec<Notice>> = BTreeMap::new();
            for n in notices {
                let service = n.tenant.as_deref().unwrap_or(&n.service);
                groups
                    .entry((n.window_end, service))
                    .or_default()
                    .push(n.clone());
            }
            for group in groups.values() {
                let ids: Vec<&str> = group.iter().map(|n| n.id.as_str()).collect();
                for (i, message) in slack::messages(group).into_iter().enumerate() {
                    for dest in &self.slack {
                        let mut parts = ids.clone();
                        let i = i.to_string();
                        parts.extend([dest.as_str(), i.as_str()]);
                        entries.push(Entry {
                            id: format!("slack-{}", fnv(&parts)),
                            dest: dest.clone(),
                            at_ms,
                            payload: message.clone(),
                        });
                    }
                }
            }
        }
        for n in notices {
            let json = serde_json::to_value(n)?;
            if let Some(dest) = &self.alerts {
                entries.push(Entry {
                    id: format!("{}:{dest}", n.id),
                    dest: dest.clone(),
                    at_ms,
                    payload: json.clone(),
                });
            }
            if let (Some(dest), NoticeKind::Breaker) = (&self.control, n.kind) {
                entries.push(Entry {
                    id: format!("{}:{dest}", n.id),
                    dest: dest.clone(),
                    at_ms,
                    payload: json,
                });
            }
        }
        Ok(self.outbox.add(entries)?)
    }
}

/// The outbox and its delivery loops.
pub struct AlertDelivery {
    enqueuer: Enqueuer,
    stop: Arc<AtomicBool>,
    loops: Vec<Loop>,
    dests: Vec<String>,
}

enum Loop {
    Slack(slack::SlackDelivery),
    Topic(JoinHandle<()>),
}

impl AlertDelivery {
    /// Opens the outbox under `data_dir` and starts a loop per destination. `None` when
    /// there is nowhere to deliver (the `alerts` table still records everything).
    pub fn start(
        data_dir: &Path,
        webhooks: &[SlackConfig],
        topics: Option<&AlertTopics>,
    ) -> Result<Option<Self>> {
        let topics = topics.filter(|t| !(t.alerts.is_empty() && t.control.is_empty()));
        if webhooks.is_empty() && topics.is_none() {
            return Ok(None);
        }
        let dir = data_dir.join("_outbox");
        let outbox = SharedOutbox::open(&dir)
            .with_context(|| format!("opening the alert outbox in {}", dir.display()))?;
        let stop = Arc::new(AtomicBool::new(false));
        let mut loops = Vec::new();
        let mut dests = Vec::new();
        let mut slack_dests = Vec::new();
        for cfg in webhooks {
            // Named by a hash of the URL: stable across restarts and reorderings, and no
            // secret on disk in the outbox.
            let dest = format!("slack-{}", &fnv(&[cfg.webhook_url.expose()])[..8]);
            let d = slack::spawn_slack(outbox.clone(), dest.clone(), cfg.clone(), stop.clone())?;
            loops.push(Loop::Slack(d));
            slack_dests.push(dest.clone());
            dests.push(dest);
        }
        let mut topic_dest = |topic: &str| -> Result<Option<String>> {
            let Some(t) = topics.filter(|_| !topic.is_empty()) else {
                return Ok(None);
            };
            let dest = format!("kafka-{topic}");
            let cfg = TopicConfig {
                brokers: t.brokers.clone(),
                topic: topic.to_string(),
                properties: t.properties.clone(),
            };
            let (h, _) = spawn_topic_delivery(outbox.clone(), dest.clone(), cfg, stop.clone())?;
            loops.push(Loop::Topic(h));
            dests.push(dest.clone());
            Ok(Some(dest))
        };
        let alerts = topic_dest(topics.map_or("", |t| t.alerts.as_str()))?;
        let control = topic_dest(topics.map_or("", |t| t.control.as_str()))?;
        let waiting = outbox.pending_total();
        if waiting > 0 {
            tracing::info!("alert outbox: {waiting} notices from an earlier run wait for delivery");
        }
        Ok(Some(Self {
            enqueuer: Enqueuer {
                outbox,
                slack: slack_dests,
                alerts,
                control,
            },
            stop,
            loops,
            dests,
        }))
    }

    pub fn enqueuer(&self) -> Enqueuer {
        self.enqueuer.clone()
    }

    /// Waits up to `wait` for the outbox to drain, then stops the loops. Returns how many
    /// notices are still waiting (they go out on the next start).
    pub fn finish(self, wait: Duration) -> usize {
        let deadline = Instant::now() + wait;
        let mut left = 0;
        for d in &self.dests {
            left += self.enqueuer.outbox.wait_drained(d, deadline);
        }
        self.stop.store(true, Ordering::Relaxed);
        for l in self.loops {
            match l {
                Loop::Slack(d) => {
                    d.join();
                }
                Loop::Topic(h) => {
                    let _ = h.join();
                }
            }
        }
        left
    }
}
