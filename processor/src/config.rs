//! Processor configuration: the `[window]`, `[prices]` and `[[custom_metrics]]` sections of
//! the inferwatch TOML file. Every key has a default that works.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::error::{config_err, ProcessorError};

use inferwatch_schemas::time::deserialize_duration as duration;
use inferwatch_schemas::time::deserialize_opt_duration as opt_duration;

/// `[window]`: event-time windows and watermarks.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WindowConfig {
    /// Window length. Windows are aligned to the Unix epoch.
    #[serde(deserialize_with = "duration")]
    pub size: Duration,
    /// Hop between window starts; absent or equal to `size` means tumbling windows. Must
    /// divide `size`.
    #[serde(deserialize_with = "opt_duration")]
    pub slide: Option<Duration>,
    /// How far behind the newest event an event may arrive and still be on time: the
    /// watermark is the newest event time minus this.
    #[serde(deserialize_with = "duration")]
    pub max_out_of_orderness: Duration,
    /// Extra time a window stays open after the watermark passes its end.
    #[serde(deserialize_with = "duration")]
    pub allowed_lateness: Duration,
    /// A source partition with no events for this long (processing time) stops holding back
    /// the watermark.
    #[serde(deserialize_with = "duration")]
    pub idle_timeout: Duration,
}

impl Default for WindowConfig {
    fn default() -> Self {
        Self {
            size: Duration::from_secs(60),
            slide: None,
            max_out_of_orderness: Duration::from_secs(5),
            allowed_lateness: Duration::ZERO,
            idle_timeout: Duration::from_secs(30),
        }
    }
}

/// One model's list prices, in US dollars per million tokens.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub input_per_million: f64,
    pub output_per_million: f64,
    /// Price of input tokens served from the prompt cache; defaults to the input price.
    pub cached_input_per_million: Option<f64>,
    /// First day (UTC, `2026-01-01`, or an RFC 3339 time) this price applies to calls; with
    /// several prices for one model, each call gets the latest one in effect at its time.
    pub from: Option<String>,
    /// Higher prices for long calls: the tier with the highest `above_input_tokens` below the
    /// call's `tokens_in` prices the whole call.
    #[serde(default)]
    pub tiers: Vec<Tier>,
}

/// A long-context price tier.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    /// Applies to calls with more input tokens than this.
    pub above_input_tokens: i64,
    pub input_per_million: f64,
    pub output_per_million: f64,
    pub cached_input_per_million: Option<f64>,
}

/// A model pattern's prices: one price, or a list of dated ones (`[[prices."gpt-4o"]]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Prices {
    One(Price),
    Dated(Vec<Price>),
}

impl Prices {
    pub fn entries(&self) -> &[Price] {
        match self {
            Prices::One(p) => std::slice::from_ref(p),
            Prices::Dated(v) => v,
        }
    }
}

/// A price's `from`, as epoch milliseconds (`i64::MIN` when it has none).
pub fn price_from_ms(p: &Price) -> Result<i64, ProcessorError> {
    let Some(f) = &p.from else {
        return Ok(i64::MIN);
    };
    let text = if f.len() == 10 {
        format!("{f}T00:00:00Z")
    } else {
        f.clone()
    };
    inferwatch_schemas::time::parse_rfc3339(&text)
        .ok_or_else(|| config_err!("prices: from = {f:?} is not a date like \"2026-01-01\""))
}

/// `[[custom_metrics]]`: an SQL aggregate over the `events` columns that becomes a column of
/// `metrics`, e.g. `avg(CASE WHEN status = 'ok' THEN 1.0 ELSE 0.0 END)`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomMetric {
    /// Column name in `metrics`: lower-case letters, digits and `_`.
    pub name: String,
    /// One SQL aggregate expression (DataFusion dialect).
    pub sql: String,
}

/// How reliability bins are formed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Binning {
    /// Bin b of B holds confidences in (b/B, (b+1)/B]; 0 is in bin 0.
    EqualWidth,
    /// Bins hold about n/B labeled events each: confidences are ranked at 0.0001
    /// resolution and a group of equal (rounded) confidences goes to bin
    /// `min(B-1, B·below/n)`, `below` being the number of labeled events with a smaller one.
    EqualMass,
}

/// `[calibration]`: reliability bins behind `ece`, `mce` and the `calibration_bins` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CalibrationConfig {
    /// Number of reliability bins, 1 to 100.
    pub bins: usize,
    /// `equal_width` or `equal_mass`.
    pub binning: Binning,
}

impl Default for CalibrationConfig {
    fn default() -> Self {
        Self {
            bins: 10,
            binning: Binning::EqualWidth,
        }
    }
}

/// `[drift]`: the reference that `psi_*`, `ks_*` and `js_prediction` compare a window with.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DriftConfig {
    /// Trailing reference: the events of the `baseline_windows` window lengths right before
    /// the window (for tumbling windows, the previous `baseline_windows` windows).
    pub baseline_windows: u32,
    /// Pinned reference instead: events in [`baseline_from`, `baseline_to`) (RFC 3339). Both
    /// or neither. Windows that start before `baseline_to` get no drift values.
    pub baseline_from: Option<String>,
    pub baseline_to: Option<String>,
    /// A drift value is null when the window or the reference has fewer values than this.
    pub min_samples: u64,
}

impl Default for DriftConfig {
    fn default() -> Self {
        Self {
            baseline_windows: 60,
            baseline_from: None,
            baseline_to: None,
            min_samples: 100,
        }
    }
}

/// `[feedback]`: joining late labels to their predictions.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FeedbackConfig {
    /// Feedback is joined to a prediction until the watermark passes the prediction's event
    /// time plus this; later feedback is counted as expired.
    #[serde(deserialize_with = "duration")]
    pub label_horizon: Duration,
    /// Most predictions waiting for feedback per processor. Past it the oldest prediction
    /// stops waiting (counted in `feedback_evicted`); its feedback then counts as unknown.
    pub max_pending: usize,
    /// Feedback with only a `score` counts as correct when `score >= score_threshold`.
    pub score_threshold: f64,
}

impl Default for FeedbackConfig {
    fn default() -> Self {
        Self {
            label_horizon: Duration::from_secs(3600),
            max_pending: 1_000_000,
            score_threshold: 0.5,
        }
    }
}

/// `[cost]`: cost anomalies against the key's own recent windows.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CostConfig {
    /// `cost_zscore` and `cost_robust_z` compare a window's cost per request with the key's
    /// windows that started in the `baseline_windows` window lengths before it.
    pub baseline_windows: u32,
    /// Both are null until the baseline holds this many windows.
    pub min_baseline: u32,
}

impl Default for CostConfig {
    fn default() -> Self {
        Self {
            baseline_windows: 60,
            min_baseline: 10,
        }
    }
}

/// `[budgets]`: daily budgets in US dollars (UTC days).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BudgetConfig {
    /// Service name → daily budget.
    pub services: BTreeMap<String, f64>,
    /// Tenant → daily budget.
    pub tenants: BTreeMap<String, f64>,
}

/// `[loops]`: runaway agent and queue loops, per `session_id`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoopConfig {
    /// A session with more steps than this is runaway.
    pub max_steps: u64,
    /// A session that calls one tool with the same `input_hash` this many times is runaway.
    pub max_repeats: u32,
    /// A session ends when the watermark passes its last event by this much.
    #[serde(deserialize_with = "duration")]
    pub session_gap: Duration,
    /// Most sessions tracked per source partition; past it the one idle longest ends early
    /// (counted as evicted).
    pub max_sessions: usize,
}

impl Default for LoopConfig {
    fn default() -> Self {
        Self {
            max_steps: 50,
            max_repeats: 3,
            session_gap: Duration::from_secs(30 * 60),
            max_sessions: 100_000,
        }
    }
}

/// Everything the processor needs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProcessorConfig {
    pub window: WindowConfig,
    pub calibration: CalibrationConfig,
    pub drift: DriftConfig,
    pub feedback: FeedbackConfig,
    pub loops: LoopConfig,
    pub cost: CostConfig,
    pub budgets: BudgetConfig,
    /// Model name or glob pattern (`*`, `?`) → price(s). An exact name beats any pattern;
    /// among patterns the one with the most literal characters wins. Events that carry
    /// `cost_usd` keep their own cost. A `[prices]` table in the config replaces the built-in
    /// one (`processor/prices.toml`).
    pub prices: BTreeMap<String, Prices>,
    pub custom_metrics: Vec<CustomMetric>,
    pub alerts: AlertsConfig,
}

impl Default for ProcessorConfig {
    fn default() -> Self {
        Self {
            window: WindowConfig::default(),
            calibration: CalibrationConfig::default(),
            drift: DriftConfig::default(),
            feedback: FeedbackConfig::default(),
            loops: LoopConfig::default(),
            cost: CostConfig::default(),
            budgets: BudgetConfig::default(),
            prices: builtin_prices(),
            custom_metrics: Vec::new(),
            alerts: AlertsConfig::default(),
        }
    }
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

/// The price table shipped in `processor/prices.toml`.
pub fn builtin_prices() -> BTreeMap<String, Prices> {
    toml::from_str(include_str!("../prices.toml")).expect("processor/prices.toml is valid")
}

impl DriftConfig {
    /// The pinned baseline period in epoch milliseconds, if one is set.
    pub fn pinned(&self) -> Result<Option<(i64, i64)>, ProcessorError> {
        let parse = |key: &str, v: &str| {
            inferwatch_schemas::time::parse_rfc3339(v).ok_or_else(|| {
                config_err!(
                    "drift.{key} = {v:?} is not an RFC 3339 time like \"2026-01-01T00:00:00Z\""
                )
            })
        };
        match (&self.baseline_from, &self.baseline_to) {
            (None, None) => Ok(None),
            (Some(f), Some(t)) => {
                let (f, t) = (parse("baseline_from", f)?, parse("baseline_to", t)?);
                if f >= t {
                    return Err(config_err!("drift.baseline_from must be before drift.baseline_to"));
                }
                Ok(Some((f, t)))
            }
            _ => Err(config_err!(
                "set both drift.baseline_from and drift.baseline_to for a pinned baseline, or neither for a trailing one"
            )),
        }
    }
}

impl ProcessorConfig {
    /// Checks what serde cannot: window arithmetic, prices, metric names.
    pub fn validate(&self) -> Result<(), ProcessorError> {
        let w = &self.window;
        let size = w.size.as_millis();
        let slide = w.slide.unwrap_or(w.size).as_millis();
        if size == 0 || slide == 0 {
            return Err(config_err!(
                "window.size and window.slide must be at least 1ms"
            ));
        }
        if slide > size || !size.is_multiple_of(slide) {
            return Err(config_err!(
                "window.slide ({}) must divide window.size ({}), e.g. size = \"1m\", slide = \"30s\"",
                humantime::format_duration(w.slide.unwrap_or(w.size)),
                humantime::format_duration(w.size)
            ));
        }
        if size / slide > 1440 {
            return Err(config_err!(
                "window.size / window.slide is {}; keep it at most 1440 (each event is counted in that many windows)",
                size / slide
            ));
        }
        if !(1..=100).contains(&self.calibration.bins) {
            return Err(config_err!(
                "calibration.bins is {}; use 1 to 100 (10 is usual)",
                self.calibration.bins
            ));
        }
        if self.drift.baseline_windows == 0 {
            return Err(config_err!("drift.baseline_windows must be at least 1"));
        }
        self.drift.pinned()?;
        if self.cost.baseline_windows == 0 || self.cost.min_baseline < 2 {
            return Err(config_err!(
                "cost.baseline_windows must be at least 1 and cost.min_baseline at least 2"
            ));
        }
        for (scope, map) in [
            ("services", &self.budgets.services),
            ("tenants", &self.budgets.tenants),
        ] {
            if let Some((name, b)) = map.iter().find(|(_, b)| !(b.is_finite() && **b > 0.0)) {
                return Err(config_err!(
                    "budgets.{scope}.\"{name}\" = {b}: a daily budget is a positive number of dollars"
                ));
            }
        }
        let l = &self.loops;
        if l.max_repeats < 2 || l.max_steps == 0 || l.max_sessions == 0 {
            return Err(config_err!(
                "loops.max_repeats must be at least 2, loops.max_steps and loops.max_sessions at least 1"
            ));
        }
        let f = &self.feedback;
        if f.max_pending == 0 || !(0.0..=1.0).contains(&f.score_threshold) {
            return Err(config_err!(
                "feedback.max_pending must be at least 1 and feedback.score_threshold in [0, 1]"
            ));
        }
        for (model, prices) in &self.prices {
            let mut froms = std::collections::BTreeSet::new();
            for p in prices.entries() {
                let mut all = vec![
                    Some(p.input_per_million),
                    Some(p.output_per_million),
                    p.cached_input_per_million,
                ];
                for t in &p.tiers {
                    all.extend([
                        Some(t.input_per_million),
                        Some(t.output_per_million),
                        t.cached_input_per_million,
                    ]);
                }
                if all.iter().flatten().any(|x| !x.is_finite() || *x < 0.0) {
                    return Err(config_err!(
                        "prices.\"{model}\": prices must be finite and non-negative"
                    ));
                }
                if !froms.insert(price_from_ms(p)?) {
                    return Err(config_err!(
                        "prices.\"{model}\": two prices with the same `from`"
                    ));
                }
            }
        }
        if self.alerts.breaker_recovery_windows == 0 {
            return Err(config_err!(
                "alerts.breaker_recovery_windows must be at least 1"
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for m in &self.custom_metrics {
            let ok = !m.name.is_empty()
                && m.name
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_lowercase())
                && m.name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !ok {
                return Err(config_err!(
                    "custom_metrics: name {:?} must start with a lower-case letter and hold only a-z, 0-9 and _",
                    m.name
                ));
            }
            if crate::metrics::BUILTIN_COLUMNS.contains(&m.name.as_str()) || !seen.insert(&m.name) {
                return Err(config_err!(
                    "custom_metrics: the name {:?} is already a column of `metrics`",
                    m.name
                ));
            }
        }
        Ok(())
    }
}
