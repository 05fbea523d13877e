//! Alert delivery: notices go into the durable outbox, and one loop per destination drains it
//! — each Slack webhook, the `inference-alerts` topic (every notice) and the
//! `inference-control` topic (breaker transitions).
//!
//! The outbox is one log per source partition, `<data_dir>/_outbox/<source>/p<N>/`: a
//! partition's notices are made by whichever processor owns it, so its log moves with it
//! like its checkpoint, and a replay by the next owner finds the ids already there.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::{Context, Result};
use inferwatch_schemas::alert::stable_id;
use inferwatch_schemas::time::now_ms;
use inferwatch_schemas::{Notice, NoticeKind};
use inferwatch_sink::alert_topics::{spawn_topic_delivery, TopicConfig};
use inferwatch_sink::outbox::{Entry, SharedOutbox};
use inferwatch_sink::slack::{self, SlackConfig};
use inferwatch_sink::Store;

/// Kafka topics for notices.
#[derive(Debug, Clone)]
pub struct AlertTopics {
    pub brokers: String,
    /// Every notice, as JSON; "" for none.
    pub alerts: String,
    /// Circuit-breaker transitions, as JSON; "" for none.
    pub control: String,
    pub properties: inferwatch_schemas::ClientProperties,
}

/// Adds notices to the outbox, one entry per destination (cheap to clone; used by the sink
/// thread).
#[derive(Clone)]
pub struct Enqueuer {
    outbox: SharedOutbox,
    /// `<data_dir>/_outbox/<source>`
    dir: Store,
    slack: Vec<String>,
    alerts: Option<String>,
    control: Option<String>,
    /// Every destination.
    dests: Vec<String>,
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

fn log_name(partition: i32) -> String {
    format!("p{partition:05}")
}

impl Enqueuer {
    /// Opens `partition`'s log (when it arrives): what it holds pending goes out.
    pub fn open(&self, partition: i32) -> Result<()> {
        let name = log_name(partition);
        self.outbox
            .open_log(&name, &self.dir.child(&name))
            .with_context(|| format!("opening the alert outbox of partition {partition}"))
    }

    /// Waits up to `wait` until every destination has nothing pending in the open logs;
    /// returns how many notices still wait.
    pub fn drain(&self, wait: Duration) -> usize {
        let pending = self.outbox.pending_total();
        if pending == 0 {
            return 0;
        }
        if !wait.is_zero() {
            eprintln!(
                "alerts: delivering {pending} notices (waiting up to {}s)",
                wait.as_secs()
            );
        }
        let deadline = Instant::now() + wait;
        self.dests
            .iter()
            .map(|d| self.outbox.wait_drained(d, deadline))
            .sum()
    }

    /// Closes `partition`'s log (it leaves this processor) once nothing of it is in flight.
    pub fn release(&self, partition: i32) {
        self.outbox.release(&log_name(partition));
    }

    /// Makes the outbox entries of `partition`'s `notices` and adds them (fsynced); entries
    /// already known (a replay after a crash) are skipped. Returns how many were new.
    pub fn enqueue(&self, partition: i32, notices: &[Notice]) -> Result<usize> {
        if notices.is_empty() {
            return Ok(0);
        }
        self.open(partition)?;
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
                            id: format!("slack-{}", stable_id(&parts)),
                            dest: dest.clone(),
                            at_ms,
                            payload: message.clone(),
                        });
                    }
                }
            }
        }
        for n in notices {
            let json = serde_json::to_value(n)
                .map_err(|e| crate::failed!("encoding alert notice {}: {e}", n.id))?;
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
        Ok(self.outbox.add_to(&log_name(partition), entries)?)
    }
}

/// The outbox and its delivery loops.
pub struct AlertDelivery {
    enqueuer: Enqueuer,
    stop: Arc<AtomicBool>,
    loops: Vec<Loop>,
}

enum Loop {
    Slack(slack::SlackDelivery),
    Topic(JoinHandle<()>),
}

impl AlertDelivery {
    /// Opens the outbox under `data_dir` and starts a loop per destination. `None` when
    /// there is nowhere to deliver (the `alerts` table still records everything).
    pub fn start(
        data_dir: &Store,
        source: &str,
        webhooks: &[SlackConfig],
        topics: Option<&AlertTopics>,
    ) -> Result<Option<Self>> {
        let topics = topics.filter(|t| !(t.alerts.is_empty() && t.control.is_empty()));
        if webhooks.is_empty() && topics.is_none() {
            return Ok(None);
        }
        let dir = data_dir.child(&format!(
            "_outbox/{}",
            inferwatch_sink::sanitize_component(source)
        ));
        let outbox = SharedOutbox::empty();
        let stop = Arc::new(AtomicBool::new(false));
        let mut loops = Vec::new();
        let mut dests = Vec::new();
        let mut slack_dests = Vec::new();
        for cfg in webhooks {
            // Named by a hash of the URL: stable across restarts and reorderings, and no
            // secret on disk in the outbox.
            let dest = format!("slack-{}", &stable_id(&[cfg.webhook_url.expose()])[..8]);
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
            let h = spawn_topic_delivery(outbox.clone(), dest.clone(), cfg, stop.clone())?;
            loops.push(Loop::Topic(h));
            dests.push(dest.clone());
            Ok(Some(dest))
        };
        let alerts = topic_dest(topics.map_or("", |t| t.alerts.as_str()))?;
        let control = topic_dest(topics.map_or("", |t| t.control.as_str()))?;
        Ok(Some(Self {
            enqueuer: Enqueuer {
                outbox,
                dir,
                dests,
                slack: slack_dests,
                alerts,
                control,
            },
            stop,
            loops,
        }))
    }

    pub fn enqueuer(&self) -> Enqueuer {
        self.enqueuer.clone()
    }

    /// The outbox and the Slack loops' counts, for the process's metrics.
    pub fn watch(&self) -> crate::telemetry::DeliveryWatch {
        let slack = self
            .loops
            .iter()
            .filter_map(|l| match l {
                Loop::Slack(d) => Some(d.stats()),
                Loop::Topic(_) => None,
            })
            .collect();
        crate::telemetry::DeliveryWatch {
            outbox: self.enqueuer.outbox.clone(),
            slack,
        }
    }

    /// Waits up to `wait` for the outbox to drain, then stops the loops. Returns how many
    /// notices are still waiting (they go out on the next start).
    pub fn finish(self, wait: Duration) -> usize {
        let left = self.enqueuer.drain(wait);
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
