//! Slack incoming-webhook payloads (Block Kit) for a group of notices.
//!
//! One call is one group (one service, one window): one message, or several when the group
//! needs more than Slack's 50 blocks. A message is a `header`, then per notice a `section`
//! (what, where, how much, when) and a `context` with the `inferwatch query` command that
//! shows the rows behind it. Groups past [`NOTICES_PER_MESSAGE`] are split into numbered
//! messages (`(2/5)` in the header) rather than summarised, so that no notice goes unseen.

use std::time::{Duration, UNIX_EPOCH};

pub use inferwatch_schemas::alert::fmt_num;
use inferwatch_schemas::{Notice, NoticeKind, Severity};
use serde_json::{json, Value};

/// Slack's limit of blocks per message.
pub const MAX_BLOCKS: usize = 50;
/// One header, then two blocks per notice.
pub const NOTICES_PER_MESSAGE: usize = (MAX_BLOCKS - 1) / 2;
/// Slack's limits, in characters.
pub const MAX_HEADER_CHARS: usize = 150;
pub const MAX_SECTION_CHARS: usize = 3000;
pub const MAX_CONTEXT_CHARS: usize = 2000;
/// The notification fallback (`text`) is kept within this.
pub const MAX_TEXT_CHARS: usize = 3000;

/// Labels (rule, key, metric) are cut to this many characters before escaping.
const LABEL_CHARS: usize = 150;
const SUMMARY_CHARS: usize = 500;

/// The Slack messages for one group of notices, in order; none for no notices.
pub fn messages(notices: &[Notice]) -> Vec<Value> {
    if notices.is_empty() {
        return Vec::new();
    }
    let title = title(notices);
    let parts = notices.len().div_ceil(NOTICES_PER_MESSAGE);
    notices
        .chunks(NOTICES_PER_MESSAGE)
        .enumerate()
        .map(|(i, chunk)| {
            let suffix = if parts > 1 {
                format!(" ({}/{parts})", i + 1)
            } else {
                String::new()
            };
            let header = format!(
                "{}{suffix}",
                truncate(&title, MAX_HEADER_CHARS - suffix.chars().count())
            );
            let mut blocks = vec![json!({
                "type": "header",
                "text": {"type": "plain_text", "text": header, "emoji": true},
            })];
            let mut text = escape(&header);
            for n in chunk {
                blocks.push(json!({
                    "type": "section",
                    "text": {"type": "mrkdwn", "text": section(n)},
                }));
                if !n.query.is_empty() {
                    let query = fit(&escape(&n.query), MAX_CONTEXT_CHARS - 2);
                    blocks.push(json!({
                        "type": "context",
                        "elements": [{"type": "mrkdwn", "text": format!("`{query}`")}],
                    }));
                }
                text.push_str("\n• ");
                text.push_str(&escape(&truncate(&fallback_line(n), 300)));
            }
            json!({"text": fit(&text, MAX_TEXT_CHARS), "blocks": blocks})
        })
        .collect()
}

fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

fn severity_emoji(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "🔴",
        Severity::Warning => "🟠",
        Severity::Info => "🔵",
    }
}

fn breaker_emoji(state: &str) -> &'static str {
    match state {
        "open" => "⛔",
        "half_open" => "🟡",
        "closed" => "✅",
        _ => "🔵",
    }
}

fn breaker_phrase(state: &str) -> String {
    match state {
        "open" => "circuit open".into(),
        "half_open" => "circuit half-open".into(),
        "closed" => "circuit closed".into(),
        other => format!("circuit {other}"),
    }
}

/// The header line: worst news first.
fn title(ns: &[Notice]) -> String {
    let mut services: Vec<&str> = ns.iter().map(|n| n.service.as_str()).collect();
    services.dedup();
    let service = if services.len() == 1 {
        truncate(services[0], 60)
    } else {
        format!("{} and others", truncate(services[0], 50))
    };
    let alerts: Vec<&Notice> = ns.iter().filter(|n| n.kind == NoticeKind::Alert).collect();
    let breakers: Vec<&Notice> = ns
        .iter()
        .filter(|n| n.kind == NoticeKind::Breaker)
        .collect();
    let mut parts = Vec::new();
    if !alerts.is_empty() {
        let firing: Vec<&&Notice> = alerts.iter().filter(|n| n.state == "firing").collect();
        let resolved = alerts.iter().filter(|n| n.state == "resolved").count();
        let other = alerts.len() - firing.len() - resolved;
        let mut s = if let Some(sev) = firing.iter().map(|n| n.severity).max() {
            let reminder = if firing.iter().all(|n| n.renotify) {
                " (reminder)"
            } else {
                ""
            };
            let mut s = format!(
                "{} {} firing{reminder}: {service} — {}",
                severity_emoji(sev),
                sev.as_str().to_uppercase(),
                plural(firing.len(), "alert")
            );
            if resolved > 0 {
                s.push_str(&format!(", {resolved} resolved"));
            }
            s
        } else if resolved > 0 {
            format!("✅ resolved: {service} — {}", plural(resolved, "alert"))
        } else {
            format!("🔵 {service} — {}", plural(other, "alert"))
        };
        if other > 0 && (!firing.is_empty() || resolved > 0) {
            s.push_str(&format!(", {other} other"));
        }
        parts.push(s);
    }
    if !breakers.is_empty() {
        let rank = |s: &str| match s {
            "open" => 0,
            "half_open" => 1,
            "closed" => 3,
            _ => 2,
        };
        let worst = breakers
            .iter()
            .map(|n| n.state.as_str())
            .min_by_key(|s| rank(s))
            .expect("not empty");
        let label = if breakers.len() == 1 {
            truncate(&breakers[0].key_label(), 100)
        } else {
            format!("{service} — {}", plural(breakers.len(), "breaker"))
        };
        parts.push(format!(
            "{} {}: {label}",
            breaker_emoji(worst),
            breaker_phrase(worst)
        ));
    }
    parts.join(" · ")
}

/// The section of one notice, in mrkdwn.
fn section(n: &Notice) -> String {
    let rule = escape(&truncate(&n.rule, LABEL_CHARS));
    let change = format!(
        "{} → {}",
        escape(&truncate(&n.previous, 30)),
        escape(&truncate(&n.state, 30))
    );
    let sev = n.severity.as_str().to_uppercase();
    let mut s = match n.kind {
        NoticeKind::Alert => {
            let emoji = if n.state == "resolved" {
                "✅"
            } else {
                severity_emoji(n.severity)
            };
            let mut s = format!("{emoji} *{sev}* · *{rule}* · {change}");
            if n.renotify {
                s.push_str(" · 🔁 _reminder: still firing_");
            }
            s
        }
        NoticeKind::Breaker => format!(
            "{} *{sev}* · circuit breaker *{rule}* · {change}",
            breaker_emoji(&n.state)
        ),
    };
    if !n.summary.is_empty() {
        s.push('\n');
        s.push_str(&escape(&truncate(&n.summary, SUMMARY_CHARS)));
    }
    s.push_str("\n*Key:* ");
    s.push_str(&escape(&truncate(&n.key_label(), LABEL_CHARS)));
    if !n.metric.is_empty() || n.value.is_some() {
        s.push_str(&format!(
            "\n*Value:* `{}` = {}",
            escape(&truncate(&n.metric, LABEL_CHARS)),
            n.value.map_or("n/a".to_string(), fmt_num)
        ));
        if let Some(t) = n.threshold {
            s.push_str(&format!(
                " (threshold {} {})",
                escape(&truncate(&n.op, 10)),
                fmt_num(t)
            ));
        }
        if let Some(samples) = n.samples {
            let what = match n.samples_column.as_str() {
                "" | "requests" => plural(samples as usize, "request"),
                column => format!("{column} {samples}"),
            };
            s.push_str(&format!(" · {what}"));
        }
    }
    s.push_str(&format!(
        "\n*Window:* {} – {} (UTC)",
        rfc3339(n.window_start),
        rfc3339(n.window_end)
    ));
    fit(&s, MAX_SECTION_CHARS)
}

/// One plain line per notice for the notification text.
fn fallback_line(n: &Notice) -> String {
    let mut s = format!(
        "{} {} {} — {}",
        n.severity.as_str(),
        truncate(&n.rule, 80),
        n.state,
        truncate(&n.key_label(), 80)
    );
    if let Some(v) = n.value {
        s.push_str(&format!(": {} = {}", truncate(&n.metric, 60), fmt_num(v)));
        if let Some(t) = n.threshold {
            s.push_str(&format!(" ({} {})", n.op, fmt_num(t)));
        }
    }
    if n.renotify {
        s.push_str(" (reminder)");
    }
    s
}

/// Escapes the three characters Slack's mrkdwn requires escaped.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// At most `max` characters (not bytes), ending in `…` when cut.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// [`truncate`] for escaped text: never cuts an `&amp;`-style entity in two.
fn fit(escaped: &str, max: usize) -> String {
    if escaped.chars().count() <= max {
        return escaped.to_string();
    }
    let mut out: String = escaped.chars().take(max.saturating_sub(1)).collect();
    if let Some(amp) = out.rfind('&') {
        if !out[amp..].contains(';') {
            out.truncate(amp);
        }
    }
    out.push('…');
    out
}

/// RFC 3339 in UTC to the second, e.g. `2024-05-01T10:05:00Z`.
pub fn rfc3339(ms: i64) -> String {
    // humantime covers years 1970 to 9999.
    let ms = ms.clamp(0, 253_402_300_799_000) as u64;
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}
