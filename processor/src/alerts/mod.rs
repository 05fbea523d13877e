//! Alert lifecycle and circuit breakers, driven by closed windows.
//!
//! Per (rule, key): ok → pending (breaching, fewer than `for` windows in a row) → firing →
//! resolved (back to ok). Only firing, escalation to critical, reminders after `renotify`
//! and resolve are notified; every transition is a row of the `alerts` table.
//!
//! Per (service, model) with `break` rules: closed → open (a break rule fires) → half-open
//! (`breaker_cooldown` later) → closed (`breaker_recovery_windows` healthy windows), or open
//! again (a break rule breaches while half-open).
//!
//! Everything runs on event time — window ends — so a replay from a checkpoint makes the
//! same transitions with the same notice ids, and the outbox delivers each once.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanBuilder, Float64Array, Float64Builder, Int64Builder,
    RecordBatch, StringArray, StringBuilder, TimestampMillisecondBuilder,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Schema, SchemaRef, TimestampMillisecondType};
use inferwatch_schemas::alert::{fmt_num, stable_id};
use inferwatch_schemas::tables::{alerts_schema, budgets_schema};
use inferwatch_schemas::time::format_rfc3339_ms;
use inferwatch_schemas::{Notice, NoticeKind, Severity};
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::rules::AlertsConfig;
use crate::rules::{compile, AlertKey, NoData, Rule, Table};

/// Where a (rule, key) stands; `ok` is not stored.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
enum Phase {
    Pending {
        count: u32,
    },
    Firing {
        severity: Severity,
        /// Window end of the last notice (firing, escalation or reminder).
        notified_at: i64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum BreakerState {
    Open { since: i64 },
    HalfOpen { healthy: u32 },
}

/// What one window says about one (rule, key).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Input {
    Breach(Severity),
    Healthy,
    NoData,
}

/// A breaker's key.
type Pair = (String, String);

/// Per closed window (start, end), in time order: what it says about each (rule, key).
type Readings = BTreeMap<(i64, i64), Vec<(usize, AlertKey, Reading)>>;

/// The checkpointed part of [`Alerting`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AlertSnapshot {
    states: Vec<(String, AlertKey, Phase)>,
    breakers: Vec<(Pair, BreakerState, String)>,
}

/// One closed window's reading of one (rule, key).
struct Reading {
    value: Option<f64>,
    samples: Option<u64>,
}

/// Transitions since the last [`Alerting::take`]: rows of `alerts` and the notices to send.
pub struct AlertOutput {
    pub rows: RecordBatch,
    pub notices: Vec<Notice>,
}

pub struct Alerting {
    rules: Vec<Rule>,
    renotify_ms: i64,
    cooldown_ms: i64,
    recovery_windows: u32,
    query_command: String,
    window_ms: i64,
    states: HashMap<(usize, AlertKey), Phase>,
    /// Open and half-open breakers (closed ones are not stored), with the rule that opened.
    breakers: BTreeMap<Pair, (BreakerState, String)>,
    rows: Rows,
    notices: Vec<Notice>,
}

impl Alerting {
    /// Checks the rules against this processor's `metrics` schema.
    pub fn new(cfg: &AlertsConfig, metrics: &Schema, window_ms: i64) -> Result<Self> {
        Ok(Self {
            rules: compile(cfg, metrics, &budgets_schema())?,
            renotify_ms: cfg.renotify.as_millis() as i64,
            cooldown_ms: cfg.breaker_cooldown.as_millis() as i64,
            recovery_windows: cfg.breaker_recovery_windows,
            query_command: cfg.query_command.clone(),
            window_ms,
            states: HashMap::new(),
            breakers: BTreeMap::new(),
            rows: Rows::default(),
            notices: Vec::new(),
        })
    }

    /// Runs the rules over closed windows: `metrics` and `budgets` rows of the same windows.
    pub fn evaluate(
        &mut self,
        metrics: Option<&RecordBatch>,
        budgets: Option<&RecordBatch>,
    ) -> Result<()> {
        if self.rules.is_empty() {
            return Ok(());
        }
        // (window, rule, key) → reading, windows in time order.
        let mut windows = Readings::new();
        for (table, batch) in [(Table::Metrics, metrics), (Table::Budgets, budgets)] {
            if let Some(b) = batch.filter(|b| b.num_rows() > 0) {
                self.read(table, b, &mut windows)?;
            }
        }
        for ((start, end), readings) in windows {
            self.window(start, end, readings);
        }
        Ok(())
    }

    fn window(&mut self, start: i64, end: i64, readings: Vec<(usize, AlertKey, Reading)>) {
        let mut seen: HashSet<(usize, AlertKey)> = HashSet::new();
        // Per (service, model) with break rules: (any break rule breached, any observed).
        let mut pairs: BTreeMap<Pair, (bool, bool, Option<String>)> = BTreeMap::new();
        for (r, key, reading) in readings {
            let rule = &self.rules[r];
            let enough =
                rule.min_samples == 0 || reading.samples.is_some_and(|s| s >= rule.min_samples);
            let input = match reading.value {
                Some(v) if enough => rule.level(v).map_or(Input::Healthy, Input::Breach),
                _ => Input::NoData,
            };
            if rule.breaks {
                let p = pairs
                    .entry((key.service.clone(), key.model.clone().unwrap_or_default()))
                    .or_default();
                p.0 |= matches!(input, Input::Breach(_));
                p.1 |= input != Input::NoData;
                if matches!(input, Input::Breach(_)) && p.2.is_none() {
                    p.2 = Some(rule.name.clone());
                }
            }
            seen.insert((r, key.clone()));
            self.step(r, key, input, reading, start, end);
        }
        // Keys that were alerting but have no row in this window.
        let missing: Vec<(usize, AlertKey)> = self
            .states
            .keys()
            .filter(|k| !seen.contains(*k))
            .cloned()
            .collect();
        for (r, key) in missing {
            let none = Reading {
                value: None,
                samples: None,
            };
            self.step(r, key, Input::NoData, none, start, end);
        }
        self.breakers(start, end, pairs);
    }

    fn record(&mut self, t: Transition) {
        let rule = &self.rules[t.rule];
        let id = t.notified.then(|| {
            stable_id(&[
                match t.kind {
                    NoticeKind::Alert => "alert",
                    NoticeKind::Breaker => "breaker",
                },
                &rule.name,
                &format!("{:?}", t.key),
                &t.end.to_string(),
                t.state,
                if t.renotify { "again" } else { "" },
            ])
        });
        self.rows.push(&t, rule, id.as_deref());
        if let Some(id) = id {
            let notice = Notice {
                id,
                kind: t.kind,
                rule: rule.name.clone(),
                state: t.state.to_string(),
                previous: t.previous.to_string(),
                severity: t.severity.unwrap_or(Severity::Info),
                renotify: t.renotify,
                service: t.key.service.clone(),
                model: t.key.model.clone(),
                model_version: t.key.model_version.clone(),
                route: t.key.route.clone(),
                tenant: t.key.tenant.clone(),
                metric: rule.metric.clone(),
                value: t.value,
                op: rule.op.as_str().to_string(),
                threshold: t.threshold,
                samples: t.samples,
                samples_column: rule.samples.clone().unwrap_or_default(),
                window_start: t.start,
                window_end: t.end,
                query: self.query(rule, &t.key, t.end),
                summary: t.summary.clone(),
            };
            self.notices.push(notice);
        }
    }

    /// The `inferwatch query` command showing the rows behind a notice: the rule's metric
    /// for the key over the last 10 windows.
    fn query(&self, rule: &Rule, key: &AlertKey, end: i64) -> String {
        let lit = |s: &str| format!("'{}'", s.replace('\'', "''"));
        let from = format_rfc3339_ms(end - 10 * self.window_ms);
        let to = format_rfc3339_ms(end);
        let sql = match rule.table {
            Table::Metrics => {
                let mut filter = format!("service = {}", lit(&key.service));
                if let Some(m) = &key.model {
                    filter.push_str(&format!(" AND model = {}", lit(m)));
                }
                let samples = rule.samples.as_deref().unwrap_or("requests");
                format!(
                    "SELECT window_end, model_version, route, {samples}, {} FROM metrics_latest \
                     WHERE {filter} AND window_end > TIMESTAMP '{from}' AND window_end <= \
                     TIMESTAMP '{to}' ORDER BY window_end, model_version, route",
                    rule.metric
                )
            }
            Table::Budgets => {
                let (scope, name) = match &key.tenant {
                    Some(t) => ("tenant", t.as_str()),
                    None => ("service", key.service.as_str()),
                };
                format!(
                    "SELECT window_end, name, {} FROM budgets WHERE scope = '{scope}' AND name = {} \
                     AND window_end > TIMESTAMP '{from}' AND window_end <= TIMESTAMP '{to}' \
                     ORDER BY window_end",
                    rule.metric,
                    lit(name)
                )
            }
        };
        // Double-quoted for a POSIX shell.
        let quoted = sql
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('$', "\\$")
            .replace('`', "\\`");
        format!("{} \"{quoted}\"", self.query_command)
    }

    /// Rows and notices of the transitions since the last call.
    pub fn take(&mut self) -> Result<Option<AlertOutput>> {
        if self.rows.len == 0 {
            return Ok(None);
        }
        let rows = std::mem::take(&mut self.rows).finish()?;
        Ok(Some(AlertOutput {
            rows,
            notices: std::mem::take(&mut self.notices),
        }))
    }

    pub fn snapshot(&self) -> AlertSnapshot {
        let mut states: Vec<(String, AlertKey, Phase)> = self
            .states
            .iter()
            .map(|((r, k), p)| (self.rules[*r].name.clone(), k.clone(), *p))
            .collect();
        states.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        AlertSnapshot {
            states,
            breakers: self
                .breakers
                .iter()
                .map(|(p, (s, w))| (p.clone(), *s, w.clone()))
                .collect(),
        }
    }

    /// Restores a snapshot; state of rules no longer configured is dropped.
    pub fn restore(&mut self, snap: AlertSnapshot) {
        self.states.clear();
        for (name, key, phase) in snap.states {
            if let Some(r) = self.rules.iter().position(|r| r.name == name) {
                self.states.insert((r, key), phase);
            }
        }
        self.breakers = snap
            .breakers
            .into_iter()
            .map(|(p, s, w)| (p, (s, w)))
            .collect();
    }
}

struct Transition {
    kind: NoticeKind,
    rule: usize,
    key: AlertKey,
    state: &'static str,
    previous: &'static str,
    severity: Option<Severity>,
    value: Option<f64>,
    threshold: Option<f64>,
    samples: Option<u64>,
    start: i64,
    end: i64,
    notified: bool,
    renotify: bool,
    summary: String,
}

fn summary(
    rule: &Rule,
    state: &str,
    severity: Option<Severity>,
    value: Option<f64>,
    threshold: Option<f64>,
    renotify: bool,
) -> String {
    let v = value.map_or("no data".to_string(), fmt_num);
    let t = threshold.map_or("-".to_string(), fmt_num);
    let sev = severity.map_or("", |s| s.as_str());
    match state {
        "firing" if renotify => {
            format!("still {sev}: {} {v} {} {t}", rule.metric, rule.op.as_str())
        }
        "firing" => format!(
            "{sev}: {} {v} {} {t} for {} window{}",
            rule.metric,
            rule.op.as_str(),
            rule.for_windows,
            if rule.for_windows == 1 { "" } else { "s" }
        ),
        "resolved" => format!("resolved: {} {v}, back within {t}", rule.metric),
        "pending" => format!("pending: {} {v} {} {t}", rule.metric, rule.op.as_str()),
        _ => format!("ok: {} {v}", rule.metric),
    }
}

mod breakers;
mod lifecycle;
mod read;
mod rows;

use rows::Rows;

#[cfg(test)]
mod tests;
