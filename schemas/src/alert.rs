//! What the processor's alert rules and circuit breakers tell the outside world: one
//! [`Notice`] per notified transition. The processor makes them, the sink delivers them
//! (Slack, the `inference-alerts` and `inference-control` topics) through its outbox.

use serde::{Deserialize, Serialize};

/// How bad it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// Whether a notice is about a rule or a circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NoticeKind {
    /// A rule's alert: `state` is `firing` or `resolved`.
    Alert,
    /// A (service, model) circuit breaker: `state` is `open`, `half_open` or `closed`.
    Breaker,
}

/// One notified transition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notice {
    /// Deterministic from (kind, rule, key, window, state): a replay after a crash makes the
    /// same id, so the outbox delivers it once.
    pub id: String,
    pub kind: NoticeKind,
    pub rule: String,
    /// `firing` / `resolved` (alerts), `open` / `half_open` / `closed` (breakers).
    pub state: String,
    pub previous: String,
    pub severity: Severity,
    /// A reminder for an alert still firing (the rule's re-notify interval passed).
    pub renotify: bool,
    pub service: String,
    pub model: Option<String>,
    pub model_version: Option<String>,
    pub route: Option<String>,
    pub tenant: Option<String>,
    /// The metric column the rule watches, its value in the window, the comparison and the
    /// threshold that was crossed (or, on resolve, the one that no longer is).
    pub metric: String,
    pub value: Option<f64>,
    pub op: String,
    pub threshold: Option<f64>,
    /// The value of the rule's `samples` column in the window (`requests`, or e.g. `labeled`
    /// for calibration rules), when the rule reads the metrics table.
    pub samples: Option<u64>,
    /// Which column `samples` counts.
    #[serde(default)]
    pub samples_column: String,
    /// Window of the transition, ms since the Unix epoch.
    pub window_start: i64,
    pub window_end: i64,
    /// `inferwatch query` command that shows the rows behind the notice.
    pub query: String,
    /// One line for people: what happened, in words.
    pub summary: String,
}

impl Notice {
    /// `service/model[/version][ route]` or `tenant t`: the key as people read it.
    pub fn key_label(&self) -> String {
        if let Some(t) = &self.tenant {
            return format!("tenant {t}");
        }
        let mut s = self.service.clone();
        for part in [&self.model, &self.model_version].into_iter().flatten() {
            s.push('/');
            s.push_str(part);
        }
        if let Some(r) = &self.route {
            s.push(' ');
            s.push_str(r);
        }
        s
    }
}

/// 128-bit FNV-1a of `parts` (each followed by a separator), hex: ids that are the same in
/// every run and build, for notices and the outbox entries made from them.
pub fn stable_id(parts: &[&str]) -> String {
    format!("{:032x}", crate::hash::fnv128_parts(parts))
}

/// Four significant digits; plain notation from 0.001 to a million, scientific outside:
/// how notices show values (terminal, Slack, the `summary` column).
pub fn fmt_num(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "∞" } else { "-∞" }.into();
    }
    if v == 0.0 {
        return "0".into();
    }
    let a = v.abs();
    if (1e-3..1e6).contains(&a) {
        let decimals = (3 - a.log10().floor() as i32).max(0) as usize;
        trim_zeros(format!("{v:.decimals$}"))
    } else {
        let s = format!("{v:.3e}");
        let (mantissa, exp) = s.split_once('e').expect("scientific notation");
        format!("{}e{exp}", trim_zeros(mantissa.to_string()))
    }
}

fn trim_zeros(s: String) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}
