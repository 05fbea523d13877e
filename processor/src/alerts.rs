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

    fn read(&self, table: Table, batch: &RecordBatch, out: &mut Readings) -> Result<()> {
        let starts = batch.column(0).as_primitive::<TimestampMillisecondType>();
        let ends = batch.column(1).as_primitive::<TimestampMillisecondType>();
        let text = |name: &str| -> Option<&StringArray> {
            batch
                .column_by_name(name)
                .and_then(|c| c.as_any().downcast_ref::<StringArray>())
        };
        let opt = |a: Option<&StringArray>, i: usize| {
            a.filter(|a| a.is_valid(i)).map(|a| a.value(i).to_string())
        };
        let keys: Vec<AlertKey> = match table {
            Table::Metrics => {
                let (s, m, v, r) = (
                    text("service"),
                    text("model"),
                    text("model_version"),
                    text("route"),
                );
                (0..batch.num_rows())
                    .map(|i| AlertKey {
                        service: opt(s, i).unwrap_or_default(),
                        model: opt(m, i),
                        model_version: opt(v, i),
                        route: opt(r, i),
                        tenant: None,
                    })
                    .collect()
            }
            Table::Budgets => {
                let (scope, name) = (text("scope"), text("name"));
                (0..batch.num_rows())
                    .map(|i| {
                        let n = opt(name, i).unwrap_or_default();
                        let tenant = opt(scope, i).as_deref() == Some("tenant");
                        AlertKey {
                            service: if tenant { String::new() } else { n.clone() },
                            model: None,
                            model_version: None,
                            route: None,
                            tenant: tenant.then_some(n),
                        }
                    })
                    .collect()
            }
        };
        let mut columns: HashMap<String, Float64Array> = HashMap::new();
        let mut column = |name: &str| -> Result<()> {
            if !columns.contains_key(name) {
                if let Some(c) = batch.column_by_name(name) {
                    let f = cast(c, &DataType::Float64)?;
                    columns.insert(
                        name.to_string(),
                        f.as_primitive::<arrow::datatypes::Float64Type>().clone(),
                    );
                }
            }
            Ok(())
        };
        for rule in self.rules.iter().filter(|r| r.table == table) {
            column(&rule.metric)?;
            if let Some(s) = &rule.samples {
                column(s)?;
            }
        }
        for (i, key) in keys.into_iter().enumerate() {
            let readings = out.entry((starts.value(i), ends.value(i))).or_default();
            for (r, rule) in self.rules.iter().enumerate() {
                if rule.table != table || !rule.matches(&key) {
                    continue;
                }
                let get = |name: &str| {
                    columns
                        .get(name)
                        .filter(|c| c.is_valid(i))
                        .map(|c| c.value(i))
                        .filter(|v| v.is_finite())
                };
                readings.push((
                    r,
                    key.clone(),
                    Reading {
                        value: get(&rule.metric),
                        samples: rule.samples.as_deref().and_then(get).map(|s| s as u64),
                    },
                ));
            }
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

    fn step(
        &mut self,
        r: usize,
        key: AlertKey,
        input: Input,
        reading: Reading,
        start: i64,
        end: i64,
    ) {
        let rule = &self.rules[r];
        let input = match (input, rule.no_data) {
            (Input::NoData, NoData::Ok) => Input::Healthy,
            (Input::NoData, NoData::Alerting) => Input::Breach(rule.lowest()),
            (i, _) => i,
        };
        let id = (r, key);
        let before = self.states.get(&id).copied();
        let after = match (before, input) {
            (_, Input::NoData) => before,
            (_, Input::Healthy) => None,
            (None, Input::Breach(sev)) | (Some(Phase::Pending { .. }), Input::Breach(sev)) => {
                let count = match before {
                    Some(Phase::Pending { count }) => count + 1,
                    _ => 1,
                };
                if count >= rule.for_windows {
                    Some(Phase::Firing {
                        severity: sev,
                        notified_at: end,
                    })
                } else {
                    Some(Phase::Pending { count })
                }
            }
            (Some(Phase::Firing { notified_at, .. }), Input::Breach(sev)) => Some(Phase::Firing {
                severity: sev,
                notified_at,
            }),
        };
        // What to record: (state, previous, severity, notified, renotify).
        let record = match (before, after) {
            (None, Some(Phase::Pending { .. })) => {
                let level = match input {
                    Input::Breach(sev) => Some(sev),
                    _ => None,
                };
                Some(("pending", "ok", level, false))
            }
            (Some(Phase::Pending { .. }), None) => Some(("ok", "pending", None, false)),
            (prev, Some(Phase::Firing { severity, .. }))
                if !matches!(prev, Some(Phase::Firing { .. })) =>
            {
                let from = if prev.is_some() { "pending" } else { "ok" };
                Some(("firing", from, Some(severity), true))
            }
            (Some(Phase::Firing { severity: old, .. }), Some(Phase::Firing { severity, .. }))
                if old != severity =>
            {
                // Escalations are notified; a step down to warning is only recorded.
                Some(("firing", "firing", Some(severity), severity > old))
            }
            (Some(Phase::Firing { severity, .. }), None) => {
                Some(("resolved", "firing", Some(severity), true))
            }
            _ => None,
        };
        let mut after = after;
        let mut renotify = false;
        let record = match (record, &mut after) {
            (Some(r), _) => Some(r),
            (
                None,
                Some(Phase::Firing {
                    severity,
                    notified_at,
                }),
            ) if self.renotify_ms > 0 && end - *notified_at >= self.renotify_ms => {
                renotify = true;
                Some(("firing", "firing", Some(*severity), true))
            }
            _ => None,
        };
        if let (Some((_, _, _, true)), Some(Phase::Firing { notified_at, .. })) =
            (record, &mut after)
        {
            *notified_at = end;
        }
        let (r, key) = id;
        match after {
            Some(p) => {
                self.states.insert((r, key.clone()), p);
            }
            None => {
                self.states.remove(&(r, key.clone()));
            }
        }
        if let Some((state, previous, severity, notified)) = record {
            let rule = &self.rules[r];
            let threshold = rule.threshold(severity);
            let summary = summary(rule, state, severity, reading.value, threshold, renotify);
            let t = Transition {
                kind: NoticeKind::Alert,
                rule: r,
                key,
                state,
                previous,
                severity,
                value: reading.value,
                threshold,
                samples: reading.samples,
                start,
                end,
                notified,
                renotify,
                summary,
            };
            self.record(t);
        }
    }

    fn breakers(
        &mut self,
        start: i64,
        end: i64,
        pairs: BTreeMap<Pair, (bool, bool, Option<String>)>,
    ) {
        if !self.rules.iter().any(|r| r.breaks) {
            return;
        }
        // Pairs whose break rule fired in this window open their breaker.
        let mut firing: BTreeMap<Pair, usize> = BTreeMap::new();
        for ((r, key), phase) in &self.states {
            if self.rules[*r].breaks && matches!(phase, Phase::Firing { .. }) {
                let pair = (key.service.clone(), key.model.clone().unwrap_or_default());
                let e = firing.entry(pair).or_insert(*r);
                *e = (*e).min(*r);
            }
        }
        let mut all: BTreeSet<Pair> = self.breakers.keys().cloned().collect();
        all.extend(firing.keys().cloned());
        for pair in all {
            let (breached, observed, breach_rule) = pairs.get(&pair).cloned().unwrap_or_default();
            let current = self.breakers.get(&pair).cloned();
            let next = match &current {
                None => firing.get(&pair).map(|&r| {
                    (
                        BreakerState::Open { since: end },
                        self.rules[r].name.clone(),
                    )
                }),
                Some((BreakerState::Open { since }, why)) => {
                    if end - since >= self.cooldown_ms {
                        Some((BreakerState::HalfOpen { healthy: 0 }, why.clone()))
                    } else {
                        current.clone()
                    }
                }
                Some((BreakerState::HalfOpen { healthy }, why)) => {
                    if breached {
                        let why = breach_rule.clone().unwrap_or_else(|| why.clone());
                        Some((BreakerState::Open { since: end }, why))
                    } else if observed {
                        let healthy = healthy + 1;
                        if healthy >= self.recovery_windows {
                            None
                        } else {
                            Some((BreakerState::HalfOpen { healthy }, why.clone()))
                        }
                    } else {
                        current.clone()
                    }
                }
            };
            let name = |s: &Option<(BreakerState, String)>| match s {
                None => "closed",
                Some((BreakerState::Open { .. }, _)) => "open",
                Some((BreakerState::HalfOpen { .. }, _)) => "half_open",
            };
            let (from, to) = (name(&current), name(&next));
            match &next {
                Some(n) => self.breakers.insert(pair.clone(), n.clone()),
                None => self.breakers.remove(&pair),
            };
            if from == to {
                continue;
            }
            let why = next
                .as_ref()
                .or(current.as_ref())
                .map(|(_, w)| w.clone())
                .unwrap_or_default();
            let r = self.rules.iter().position(|r| r.name == why).unwrap_or(0);
            let severity = match to {
                "open" => Severity::Critical,
                "half_open" => Severity::Warning,
                _ => Severity::Info,
            };
            let summary = match to {
                "open" => format!(
                    "circuit open: {why} fired; callers of {}/{} should fall back",
                    pair.0, pair.1
                ),
                "half_open" => format!(
                    "circuit half-open after the cooldown: probing {}/{} for {} healthy windows",
                    pair.0, pair.1, self.recovery_windows
                ),
                _ => format!(
                    "circuit closed: {}/{} healthy for {} windows",
                    pair.0, pair.1, self.recovery_windows
                ),
            };
            let t = Transition {
                kind: NoticeKind::Breaker,
                rule: r,
                key: AlertKey {
                    service: pair.0.clone(),
                    model: Some(pair.1.clone()),
                    model_version: None,
                    route: None,
                    tenant: None,
                },
                state: to,
                previous: from,
                severity: Some(severity),
                value: None,
                threshold: None,
                samples: None,
                start,
                end,
                notified: true,
                renotify: false,
                summary,
            };
            self.record(t);
        }
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

#[derive(Default)]
struct Rows {
    len: usize,
    start: TimestampMillisecondBuilder,
    end: TimestampMillisecondBuilder,
    kind: StringBuilder,
    rule: StringBuilder,
    state: StringBuilder,
    previous: StringBuilder,
    severity: StringBuilder,
    service: StringBuilder,
    model: StringBuilder,
    model_version: StringBuilder,
    route: StringBuilder,
    tenant: StringBuilder,
    metric: StringBuilder,
    value: Float64Builder,
    op: StringBuilder,
    threshold: Float64Builder,
    samples: Int64Builder,
    notified: BooleanBuilder,
    renotify: BooleanBuilder,
    id: StringBuilder,
    summary: StringBuilder,
}

impl Rows {
    fn push(&mut self, t: &Transition, rule: &Rule, id: Option<&str>) {
        self.len += 1;
        self.start.append_value(t.start);
        self.end.append_value(t.end);
        self.kind.append_value(match t.kind {
            NoticeKind::Alert => "alert",
            NoticeKind::Breaker => "breaker",
        });
        self.rule.append_value(&rule.name);
        self.state.append_value(t.state);
        self.previous.append_value(t.previous);
        self.severity.append_option(t.severity.map(|s| s.as_str()));
        self.service
            .append_option(Some(t.key.service.as_str()).filter(|s| !s.is_empty()));
        self.model.append_option(t.key.model.as_deref());
        self.model_version
            .append_option(t.key.model_version.as_deref());
        self.route.append_option(t.key.route.as_deref());
        self.tenant.append_option(t.key.tenant.as_deref());
        self.metric.append_value(&rule.metric);
        self.value.append_option(t.value);
        self.op.append_value(rule.op.as_str());
        self.threshold.append_option(t.threshold);
        self.samples.append_option(t.samples.map(|s| s as i64));
        self.notified.append_value(t.notified);
        self.renotify.append_value(t.renotify);
        self.id.append_option(id);
        self.summary.append_value(&t.summary);
    }

    fn finish(mut self) -> Result<RecordBatch> {
        let schema: SchemaRef = alerts_schema();
        let utc = Some(Arc::from("UTC"));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.start.finish().with_timezone_opt(utc.clone())),
            Arc::new(self.end.finish().with_timezone_opt(utc)),
            Arc::new(self.kind.finish()),
            Arc::new(self.rule.finish()),
            Arc::new(self.state.finish()),
            Arc::new(self.previous.finish()),
            Arc::new(self.severity.finish()),
            Arc::new(self.service.finish()),
            Arc::new(self.model.finish()),
            Arc::new(self.model_version.finish()),
            Arc::new(self.route.finish()),
            Arc::new(self.tenant.finish()),
            Arc::new(self.metric.finish()),
            Arc::new(self.value.finish()),
            Arc::new(self.op.finish()),
            Arc::new(self.threshold.finish()),
            Arc::new(self.samples.finish()),
            Arc::new(self.notified.finish()),
            Arc::new(self.renotify.finish()),
            Arc::new(self.id.finish()),
            Arc::new(self.summary.finish()),
        ];
        Ok(RecordBatch::try_new(schema, columns)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::RuleConfig;
    use arrow::array::{Float64Array, StringArray, TimestampMillisecondArray, UInt64Array};
    use arrow::datatypes::Field;
    use std::time::Duration;

    const W: i64 = 60_000;

    fn schema() -> Schema {
        let cfg = crate::ProcessorConfig::default();
        crate::WindowOperator::new(&cfg)
            .unwrap()
            .metrics_schema()
            .as_ref()
            .clone()
    }

    fn engine(rules: &str, cooldown_windows: u64, recovery: u32) -> Alerting {
        #[derive(serde::Deserialize)]
        struct F {
            rules: Vec<RuleConfig>,
        }
        let f: F = toml::from_str(rules).unwrap();
        let cfg = AlertsConfig {
            renotify: Duration::from_secs(600),
            breaker_cooldown: Duration::from_millis(cooldown_windows * W as u64),
            breaker_recovery_windows: recovery,
            rules: f.rules,
            query_command: "inferwatch query --data-dir d".into(),
        };
        Alerting::new(&cfg, &schema(), W).unwrap()
    }

    /// (service, ece, labeled)
    type Row<'a> = (&'a str, Option<f64>, u64);

    /// Metrics rows of window `w` (its index).
    fn window(w: i64, rows: &[Row]) -> RecordBatch {
        let ts = |v: i64| {
            Arc::new(TimestampMillisecondArray::from(vec![v; rows.len()]).with_timezone("UTC"))
                as ArrayRef
        };
        let s = |f: &dyn Fn(&Row) -> Option<String>| {
            Arc::new(StringArray::from(rows.iter().map(f).collect::<Vec<_>>())) as ArrayRef
        };
        let mut fields = inferwatch_schemas::tables::metrics_key_fields();
        fields.extend([
            Field::new("requests", DataType::UInt64, true),
            Field::new("labeled", DataType::UInt64, true),
            Field::new("ece", DataType::Float64, true),
        ]);
        RecordBatch::try_new(
            Arc::new(Schema::new(fields)),
            vec![
                ts(w * W),
                ts((w + 1) * W),
                s(&|r| Some(r.0.to_string())),
                s(&|_| Some("m".into())),
                s(&|_| None),
                s(&|_| None),
                Arc::new(UInt64Array::from(vec![1000u64; rows.len()])),
                Arc::new(UInt64Array::from(
                    rows.iter().map(|r| r.2).collect::<Vec<_>>(),
                )),
                Arc::new(Float64Array::from(
                    rows.iter().map(|r| r.1).collect::<Vec<_>>(),
                )),
            ],
        )
        .unwrap()
    }

    const ECE: &str = r#"
        [[rules]]
        name = "ece"
        metric = "ece"
        op = ">"
        warning = 0.1
        critical = 0.2
        for = 2
        samples = "labeled"
        min_samples = 100
    "#;

    /// Runs `values` (one per window, for service "a") and returns (states of all rows,
    /// notices as "state/severity").
    fn run(a: &mut Alerting, from: i64, values: &[Option<f64>]) -> (Vec<String>, Vec<String>) {
        let mut states = Vec::new();
        let mut notices = Vec::new();
        for (i, v) in values.iter().enumerate() {
            let b = window(from + i as i64, &[("a", *v, 500)]);
            a.evaluate(Some(&b), None).unwrap();
            if let Some(out) = a.take().unwrap() {
                let st = out.rows.column_by_name("state").unwrap().as_string::<i32>();
                states.extend((0..st.len()).map(|j| format!("{i}:{}", st.value(j))));
                notices.extend(out.notices.iter().map(|n| {
                    format!(
                        "{i}:{}/{}{}",
                        n.state,
                        n.severity.as_str(),
                        if n.renotify { "+" } else { "" }
                    )
                }));
            }
        }
        (states, notices)
    }

    #[test]
    fn fires_once_then_resolves_once() {
        let mut a = engine(ECE, 5, 3);
        let v = [0.02, 0.3, 0.35, 0.4, 0.3, 0.03, 0.02].map(Some);
        let (states, notices) = run(&mut a, 0, &v);
        assert_eq!(states, ["1:pending", "2:firing", "5:resolved"]);
        assert_eq!(notices, ["2:firing/critical", "5:resolved/critical"]);
    }

    #[test]
    fn flapping_within_for_fires_nothing() {
        let mut a = engine(ECE, 5, 3);
        let v = [0.3, 0.02, 0.3, 0.02, 0.3, 0.02].map(Some);
        let (states, notices) = run(&mut a, 0, &v);
        assert!(notices.is_empty(), "{notices:?}");
        assert_eq!(states.len(), 6, "pending/ok rows are kept: {states:?}");
    }

    #[test]
    fn no_data_and_too_few_samples_keep_the_state() {
        let mut a = engine(ECE, 5, 3);
        // Null, then a breach over too few labels (counts as no data), then two breaches.
        let b = window(1, &[("a", Some(0.5), 10)]);
        run(&mut a, 0, &[None]);
        a.evaluate(Some(&b), None).unwrap();
        assert!(a.take().unwrap().is_none());
        let (_, notices) = run(&mut a, 2, &[Some(0.15), None, Some(0.15)]);
        assert_eq!(
            notices,
            ["2:firing/warning"],
            "the null window kept `pending`"
        );
    }

    #[test]
    fn escalation_is_notified_step_down_recorded_and_reminders_follow_renotify() {
        let mut a = engine(ECE, 5, 3);
        let mut v = vec![Some(0.15), Some(0.15), Some(0.25), Some(0.15)];
        v.extend(std::iter::repeat_n(Some(0.15), 12));
        let (states, notices) = run(&mut a, 0, &v);
        assert_eq!(
            states[..4],
            ["0:pending", "1:firing", "2:firing", "3:firing"]
        );
        // renotify = 10 windows after the last notice (window 2's escalation).
        assert_eq!(
            notices,
            [
                "1:firing/warning",
                "2:firing/critical",
                "12:firing/warning+"
            ]
        );
    }

    #[test]
    fn missing_rows_follow_the_no_data_policy() {
        let rules = ECE.replace("min_samples = 100", "min_samples = 100\nno_data = \"ok\"");
        let mut a = engine(&rules, 5, 3);
        run(&mut a, 0, &[Some(0.3), Some(0.3)]);
        // Window 2 has only service "b": "a" has no row, which counts as ok → resolved.
        a.evaluate(Some(&window(2, &[("b", Some(0.01), 500)])), None)
            .unwrap();
        let out = a.take().unwrap().unwrap();
        assert_eq!(out.notices.len(), 1);
        assert_eq!(out.notices[0].state, "resolved");
        assert_eq!(out.notices[0].value, None);
    }

    #[test]
    fn breaker_opens_half_opens_and_closes_in_order() {
        let rules = ECE.replace("for = 2", "for = 1\naction = \"break\"");
        let mut a = engine(&rules, 2, 2);
        let v = [0.02, 0.3, 0.3, 0.3, 0.3, 0.02, 0.02, 0.02, 0.3].map(Some);
        let mut transitions = Vec::new();
        for (i, x) in v.iter().enumerate() {
            a.evaluate(Some(&window(i as i64, &[("a", *x, 500)])), None)
                .unwrap();
            if let Some(out) = a.take().unwrap() {
                for n in out.notices.iter().filter(|n| n.kind == NoticeKind::Breaker) {
                    transitions.push(format!("{i}:{}->{}", n.previous, n.state));
                    assert_eq!(n.model.as_deref(), Some("m"));
                }
            }
        }
        // Open at 1; half-open at 3 (cooldown 2 windows); breach → open at 4; half-open at
        // 6; closed after 2 healthy windows (7, 8?) — window 8 breaches, but 7 was the 1st
        // healthy one only, so it opens again at 8.
        assert_eq!(
            transitions,
            [
                "1:closed->open",
                "3:open->half_open",
                "4:half_open->open",
                "6:open->half_open",
                "8:half_open->open"
            ]
        );
        let mut b = engine(&rules, 2, 2);
        let v = [0.3, 0.02, 0.02, 0.02, 0.02].map(Some);
        let (_, notices) = run(&mut b, 0, &v);
        assert_eq!(
            notices,
            [
                "0:firing/critical",
                "0:open/critical",
                "1:resolved/critical",
                "2:half_open/warning",
                "4:closed/info"
            ]
        );
    }

    #[test]
    fn a_restored_snapshot_continues_like_an_uninterrupted_run() {
        let rules = ECE.replace("for = 2", "for = 2\naction = \"break\"");
        let v = [0.02, 0.3, 0.3, 0.3, 0.02, 0.3, 0.02, 0.02, 0.02, 0.02].map(Some);
        let mut whole = engine(&rules, 2, 2);
        let (s_all, n_all) = run(&mut whole, 0, &v);
        for cut in 1..v.len() {
            let mut first = engine(&rules, 2, 2);
            let (mut s, mut n) = run(&mut first, 0, &v[..cut]);
            let snap = serde_json::to_string(&first.snapshot()).unwrap();
            let mut second = engine(&rules, 2, 2);
            second.restore(serde_json::from_str(&snap).unwrap());
            let (s2, n2) = run(&mut second, cut as i64, &v[cut..]);
            let shift = |x: Vec<String>| {
                x.into_iter().map(|t| {
                    let (i, rest) = t.split_once(':').unwrap();
                    format!("{}:{rest}", i.parse::<usize>().unwrap() + cut)
                })
            };
            s.extend(shift(s2));
            n.extend(shift(n2));
            assert_eq!((&s, &n), (&s_all, &n_all), "cut at {cut}");
        }
    }

    #[test]
    fn notices_carry_ids_queries_and_matchers_apply() {
        let rules = ECE.replace("for = 2", "for = 1\nmatch = { service = \"a*\" }");
        let mut a = engine(&rules, 2, 2);
        let b = window(0, &[("a'1", Some(0.3), 500), ("b", Some(0.3), 500)]);
        a.evaluate(Some(&b), None).unwrap();
        let out = a.take().unwrap().unwrap();
        assert_eq!(out.notices.len(), 1, "b does not match a*");
        let n = &out.notices[0];
        assert_eq!(n.id.len(), 32);
        assert!(
            n.query
                .starts_with("inferwatch query --data-dir d \"SELECT"),
            "{}",
            n.query
        );
        assert!(n.query.contains("service = 'a''1'"), "{}", n.query);
        let mut again = engine(&rules, 2, 2);
        again.evaluate(Some(&b), None).unwrap();
        assert_eq!(
            again.take().unwrap().unwrap().notices[0].id,
            n.id,
            "ids are stable"
        );
        assert_eq!(fmt_num(0.123456), "0.1235");
        assert_eq!(fmt_num(12345.6), "12346");
        assert_eq!(fmt_num(2.0), "2");
    }
}
