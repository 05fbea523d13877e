//! Alert rules, checked against the tables they read when the processor starts: a rule that
//! names an unknown column or a bad operator stops the start with a message saying which.

use arrow::datatypes::{DataType, Schema};
use inferwatch_schemas::Severity;
use serde::{Deserialize, Serialize};

use crate::price::glob;
use std::collections::BTreeMap;
use std::time::Duration;

use crate::error::{config_err, ProcessorError, Result};
use inferwatch_schemas::time::deserialize_duration as duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Gt,
    Ge,
    Lt,
    Le,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Lt => "<",
            Op::Le => "<=",
        }
    }

    fn holds(self, v: f64, t: f64) -> bool {
        match self {
            Op::Gt => v > t,
            Op::Ge => v >= t,
            Op::Lt => v < t,
            Op::Le => v <= t,
        }
    }

    /// Whether `a` is a stricter threshold than `b` (further into the alerting side).
    fn stricter(self, a: f64, b: f64) -> bool {
        match self {
            Op::Gt | Op::Ge => a >= b,
            Op::Lt | Op::Le => a <= b,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    Metrics,
    Budgets,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoData {
    Keep,
    Ok,
    Alerting,
}

/// The labels of one alerting key: a `metrics` row's key, or a `budgets` row's scope.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AlertKey {
    /// Empty on tenant budget rows.
    pub service: String,
    pub model: Option<String>,
    pub model_version: Option<String>,
    pub route: Option<String>,
    pub tenant: Option<String>,
}

/// The labels a rule may match on.
pub const LABELS: &[&str] = &["service", "model", "model_version", "route", "tenant"];

impl AlertKey {
    fn label(&self, name: &str) -> Option<&str> {
        match name {
            "service" => Some(self.service.as_str()).filter(|s| !s.is_empty()),
            "model" => self.model.as_deref(),
            "model_version" => self.model_version.as_deref(),
            "route" => self.route.as_deref(),
            "tenant" => self.tenant.as_deref(),
            _ => None,
        }
    }
}

/// A checked rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub metric: String,
    pub op: Op,
    pub warning: Option<f64>,
    pub critical: Option<f64>,
    pub for_windows: u32,
    pub min_samples: u64,
    /// Column counted against `min_samples` (none for `budgets`).
    pub samples: Option<String>,
    pub table: Table,
    matchers: Vec<(String, Vec<char>)>,
    /// Drives the (service, model) circuit breaker.
    pub breaks: bool,
    pub no_data: NoData,
}

impl Rule {
    /// The severity `value` reaches, if any.
    pub fn level(&self, value: f64) -> Option<Severity> {
        if self.critical.is_some_and(|t| self.op.holds(value, t)) {
            Some(Severity::Critical)
        } else if self.warning.is_some_and(|t| self.op.holds(value, t)) {
            Some(Severity::Warning)
        } else {
            None
        }
    }

    /// The threshold of `severity` (the lowest one the rule has for anything else).
    pub fn threshold(&self, severity: Option<Severity>) -> Option<f64> {
        match severity {
            Some(Severity::Critical) => self.critical,
            _ => self.warning.or(self.critical),
        }
    }

    /// The lowest severity the rule raises.
    pub fn lowest(&self) -> Severity {
        if self.warning.is_some() {
            Severity::Warning
        } else {
            Severity::Critical
        }
    }

    pub fn matches(&self, key: &AlertKey) -> bool {
        self.matchers.iter().all(|(label, pattern)| {
            key.label(label)
                .is_some_and(|v| glob(pattern, &v.chars().collect::<Vec<_>>()))
        })
    }
}

fn numeric(dt: &DataType) -> bool {
    dt.is_numeric()
}

/// Checks and compiles the rules of `cfg` against the `metrics` schema of this processor
/// (built-in and custom metric columns) and the `budgets` schema.
pub fn compile(cfg: &AlertsConfig, metrics: &Schema, budgets: &Schema) -> Result<Vec<Rule>> {
    let mut names = std::collections::BTreeSet::new();
    cfg.rules
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let rule = compile_one(r, metrics, budgets)
                .map_err(|why| config_err!("alerts.rules[{i}] ({:?}): {why}", r.name))?;
            if !names.insert(rule.name.clone()) {
                return Err(config_err!(
                    "alerts.rules[{i}]: the name {:?} is used twice; rule names must be unique",
                    r.name
                ));
            }
            Ok(rule)
        })
        .collect()
}

fn compile_one(r: &RuleConfig, metrics: &Schema, budgets: &Schema) -> Result<Rule, String> {
    if r.name.trim().is_empty() {
        return Err("`name` is empty".into());
    }
    let (table, schema, table_name) = match r.table.as_deref() {
        None | Some("metrics") => (Table::Metrics, metrics, "metrics"),
        Some("budgets") => (Table::Budgets, budgets, "budgets"),
        Some(t) => return Err(format!("table {t:?} is not `metrics` or `budgets`")),
    };
    let columns: Vec<&str> = schema
        .fields()
        .iter()
        .filter(|f| numeric(f.data_type()))
        .map(|f| f.name().as_str())
        .collect();
    let check_column = |what: &str, name: &str| -> Result<(), String> {
        if columns.contains(&name) {
            return Ok(());
        }
        let hint = closest(name, &columns)
            .map(|c| format!("; did you mean {c:?}?"))
            .unwrap_or_default();
        Err(format!(
            "{what} {name:?} is not a numeric column of `{table_name}`{hint}"
        ))
    };
    check_column("metric", &r.metric)?;
    let samples = match (table, &r.samples) {
        (Table::Metrics, s) => Some(s.clone().unwrap_or_else(|| "requests".into())),
        (Table::Budgets, None) => None,
        (Table::Budgets, Some(_)) => {
            return Err("`samples` does not apply to `budgets` rules".into());
        }
    };
    if let Some(s) = &samples {
        check_column("samples", s)?;
    }
    let op = thresholds(r)?;
    if r.for_windows == 0 {
        return Err("`for` counts windows and must be at least 1".into());
    }
    let matchers = matchers(r, table, table_name)?;
    let breaks = match r.action.as_deref() {
        None | Some("notify") => false,
        Some("break") if table == Table::Metrics => true,
        Some("break") => {
            return Err("`break` needs a metrics rule: breakers are per (service, model)".into())
        }
        Some(a) => return Err(format!("action {a:?} is not `notify` or `break`")),
    };
    let no_data = match r.no_data.as_deref() {
        None | Some("keep") => NoData::Keep,
        Some("ok") => NoData::Ok,
        Some("alerting") => NoData::Alerting,
        Some(p) => return Err(format!("no_data {p:?} is not `keep`, `ok` or `alerting`")),
    };
    Ok(Rule {
        name: r.name.clone(),
        metric: r.metric.clone(),
        op,
        warning: r.warning,
        critical: r.critical,
        for_windows: r.for_windows,
        min_samples: r.min_samples,
        samples,
        table,
        matchers,
        breaks,
        no_data,
    })
}

/// The comparison and thresholds of a rule: one at least, finite, critical beyond warning.
fn thresholds(r: &RuleConfig) -> Result<Op, String> {
    let op = match r.op.trim() {
        ">" => Op::Gt,
        ">=" => Op::Ge,
        "<" => Op::Lt,
        "<=" => Op::Le,
        other => {
            return Err(format!(
                "op {other:?} is not one of \">\", \">=\", \"<\", \"<=\""
            ))
        }
    };
    if r.warning.is_none() && r.critical.is_none() {
        return Err("set `warning`, `critical` or both".into());
    }
    if [r.warning, r.critical]
        .iter()
        .flatten()
        .any(|t| !t.is_finite())
    {
        return Err("thresholds must be finite numbers".into());
    }
    if let (Some(w), Some(c)) = (r.warning, r.critical) {
        if !op.stricter(c, w) {
            return Err(format!(
                "critical {c} is less severe than warning {w} for `{}`",
                op.as_str()
            ));
        }
    }
    Ok(op)
}

/// The rule's label matchers, each for a label the rule's table has.
fn matchers(
    r: &RuleConfig,
    table: Table,
    table_name: &str,
) -> Result<Vec<(String, Vec<char>)>, String> {
    let mut matchers = Vec::new();
    for (label, pattern) in &r.matchers {
        if !LABELS.contains(&label.as_str()) {
            return Err(format!(
                "match key {label:?} is not one of {}",
                LABELS.join(", ")
            ));
        }
        let fits = match table {
            Table::Metrics => label != "tenant",
            Table::Budgets => label == "service" || label == "tenant",
        };
        if !fits {
            return Err(format!(
                "rows of `{table_name}` have no {label:?} label (metrics rows: service, model, \
                 model_version, route; budgets rows: service or tenant)"
            ));
        }
        matchers.push((label.clone(), pattern.chars().collect()));
    }
    Ok(matchers)
}

/// The column name nearest to a misspelt one, when it is near enough to be the one meant.
fn closest<'a>(name: &str, columns: &[&'a str]) -> Option<&'a str> {
    fn distance(a: &str, b: &str) -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut row: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut prev = row[0];
            row[0] = i + 1;
            for (j, &cb) in b.iter().enumerate() {
                let cur = row[j + 1];
                row[j + 1] = (prev + usize::from(ca != cb)).min(row[j] + 1).min(cur + 1);
                prev = cur;
            }
        }
        row[b.len()]
    }
    columns
        .iter()
        .map(|c| (distance(name, c), *c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 4))
        .min()
        .map(|(_, c)| c)
}

/// `[alerts]`: rules evaluated on every closed window, and circuit breakers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// While an alert keeps firing, notify again after this much event time.
    #[serde(deserialize_with = "duration")]
    pub renotify: Duration,
    /// A breaker that opened waits this long (event time) before it lets traffic probe it.
    #[serde(deserialize_with = "duration")]
    pub breaker_cooldown: Duration,
    /// Healthy windows in a row that close a half-open breaker.
    pub breaker_recovery_windows: u32,
    /// The rules. Leaving the key out keeps the built-in rules (`processor/rules.toml`, the
    /// same as `config.example.toml`); `rules = []` turns alerting off.
    pub rules: Vec<RuleConfig>,
    /// `inferwatch query ...` prefix of the command each notice carries; set by the binary.
    #[serde(skip)]
    pub query_command: String,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            renotify: Duration::from_secs(4 * 3600),
            breaker_cooldown: Duration::from_secs(300),
            breaker_recovery_windows: 3,
            rules: builtin_rules(),
            query_command: "inferwatch query".into(),
        }
    }
}

/// The rules shipped in `processor/rules.toml`.
pub fn builtin_rules() -> Vec<RuleConfig> {
    #[derive(Deserialize)]
    struct File {
        rules: Vec<RuleConfig>,
    }
    let f: File =
        toml::from_str(include_str!("../rules.toml")).expect("processor/rules.toml is valid");
    f.rules
}

/// One `[[alerts.rules]]` entry.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Unique name, shown in every notice.
    pub name: String,
    /// A numeric column of `metrics` (or of `budgets` with `table = "budgets"`).
    pub metric: String,
    /// `>`, `>=`, `<`, `<=`: the value alerts when `value <op> threshold`.
    pub op: String,
    /// Threshold of a warning; at least one of `warning`, `critical` is needed.
    pub warning: Option<f64>,
    /// Threshold of a critical alert.
    pub critical: Option<f64>,
    /// Consecutive breaching windows before the alert fires (1 = at once).
    #[serde(rename = "for", default = "one")]
    pub for_windows: u32,
    /// Windows whose `samples` column is below this say nothing (no data).
    #[serde(default)]
    pub min_samples: u64,
    /// The column `min_samples` counts: `requests` (default), or e.g. `labeled` for
    /// calibration rules.
    #[serde(default)]
    pub samples: Option<String>,
    /// `metrics` (default) or `budgets` (daily budget rows of services and tenants).
    #[serde(default)]
    pub table: Option<String>,
    /// Label matchers: key → glob (`*`, `?`) on service, model, model_version, route, tenant.
    #[serde(default, rename = "match")]
    pub matchers: BTreeMap<String, String>,
    /// `notify` (default), or `break`: also drives the (service, model) circuit breaker.
    #[serde(default)]
    pub action: Option<String>,
    /// A window without a value (no row, a null, too few samples): `keep` the state
    /// (default), count it as `ok`, or as `alerting` (at the rule's lowest severity).
    #[serde(default)]
    pub no_data: Option<String>,
}

fn one() -> u32 {
    1
}

impl AlertsConfig {
    pub fn validate(&self) -> Result<(), ProcessorError> {
        if self.breaker_recovery_windows == 0 {
            return Err(config_err!(
                "alerts.breaker_recovery_windows must be at least 1"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use inferwatch_schemas::tables::budgets_schema;

    fn metrics() -> Schema {
        let cfg = crate::ProcessorConfig::default();
        let op = crate::WindowOperator::new(&crate::ProcessorConfig {
            alerts: AlertsConfig {
                rules: vec![],
                ..cfg.alerts.clone()
            },
            ..cfg
        })
        .unwrap();
        op.metrics_schema().as_ref().clone()
    }

    fn rule(toml_text: &str) -> RuleConfig {
        toml::from_str(toml_text).unwrap()
    }

    fn check(r: RuleConfig) -> Result<Vec<Rule>> {
        compile(
            &AlertsConfig {
                rules: vec![r],
                ..AlertsConfig::default()
            },
            &metrics(),
            &budgets_schema(),
        )
    }

    #[test]
    fn builtin_rules_compile() {
        let rules = compile(&AlertsConfig::default(), &metrics(), &budgets_schema()).unwrap();
        assert!(rules.len() >= 9);
        assert!(rules.iter().any(|r| r.breaks));
    }

    #[test]
    fn bad_rules_say_what_is_wrong() {
        let e = check(rule("name='a'\nmetric='eec'\nop='>'\nwarning=0.1")).unwrap_err();
        assert!(e.to_string().contains("did you mean \"ece\""), "{e}");
        let e = check(rule("name='a'\nmetric='service'\nop='>'\nwarning=0.1")).unwrap_err();
        assert!(e.to_string().contains("not a numeric column"), "{e}");
        let e = check(rule("name='a'\nmetric='ece'\nop='=>'\nwarning=0.1")).unwrap_err();
        assert!(e.to_string().contains("op \"=>\""), "{e}");
        let e = check(rule("name='a'\nmetric='ece'\nop='>'")).unwrap_err();
        assert!(e.to_string().contains("warning"), "{e}");
        let e = check(rule(
            "name='a'\nmetric='ece'\nop='>'\nwarning=0.3\ncritical=0.2",
        ))
        .unwrap_err();
        assert!(e.to_string().contains("less severe"), "{e}");
        let e = check(rule(
            "name='a'\nmetric='ece'\nop='>'\nwarning=0.3\nmatch={tenant='x'}",
        ))
        .unwrap_err();
        assert!(e.to_string().contains("no \"tenant\" label"), "{e}");
        let e = check(rule(
            "name='a'\nmetric='burn_rate'\ntable='budgets'\nop='>'\nwarning=1\naction='break'",
        ))
        .unwrap_err();
        assert!(e.to_string().contains("break"), "{e}");
        let e = check(rule("name='a'\nmetric='ece'\nop='>'\nwarning=0.3\nfor=0")).unwrap_err();
        assert!(e.to_string().contains("at least 1"), "{e}");
        assert!(
            toml::from_str::<RuleConfig>("name='a'\nmetric='ece'\nop='>'\nwarnig=0.3").is_err()
        );
    }

    #[test]
    fn levels_and_matchers() {
        let r = &check(rule(
            "name='a'\nmetric='auroc'\nop='<'\nwarning=0.7\ncritical=0.6\nmatch={service='support-*'}",
        ))
        .unwrap()[0];
        assert_eq!(r.level(0.75), None);
        assert_eq!(r.level(0.7), None);
        assert_eq!(r.level(0.65), Some(Severity::Warning));
        assert_eq!(r.level(0.5), Some(Severity::Critical));
        let key = |s: &str| AlertKey {
            service: s.into(),
            model: Some("m".into()),
            model_version: None,
            route: None,
            tenant: None,
        };
        assert!(r.matches(&key("support-bot")));
        assert!(!r.matches(&key("fraud-screen")));
        let r = &check(rule(
            "name='a'\nmetric='burn_rate'\ntable='budgets'\nop='>'\nwarning=1\nmatch={tenant='acme'}",
        ))
        .unwrap()[0];
        let t = AlertKey {
            service: String::new(),
            model: None,
            model_version: None,
            route: None,
            tenant: Some("acme".into()),
        };
        assert!(r.matches(&t));
        assert!(!r.matches(&key("acme")));
    }
}
