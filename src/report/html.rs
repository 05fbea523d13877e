//! The report page: one self-contained HTML file (inline CSS and SVG, no script, nothing
//! fetched), readable in light and dark mode and printable.

use std::fmt::Write as _;

use super::data::{Key, Point, ReportData};
use super::svg::{lines, reliability, timeline, Series};

const STYLE: &str = "
:root{--fg:#1d2330;--muted:#5f6b7a;--bg:#fff;--card:#f6f7f9;--line:#d5d9e0;--a:#2f6fdd;--b:#d9480f;--c:#2b8a3e;--bad:#c92a2a;--warn:#e67700}
@media (prefers-color-scheme:dark){:root{--fg:#e3e7ee;--muted:#9aa5b4;--bg:#14171c;--card:#1c2028;--line:#343a46;--a:#6ea1ff;--b:#ff8a4c;--c:#5fd17a;--bad:#ff6b6b;--warn:#ffb44c}}
body{font:14px/1.45 system-ui,sans-serif;color:var(--fg);background:var(--bg);margin:24px auto;max-width:1100px;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid var(--line)}h3{font-size:15px;margin:0 0 6px}
.muted{color:var(--muted)}table{border-collapse:collapse;margin:8px 0}td,th{padding:3px 10px;border-bottom:1px solid var(--line);text-align:left}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}.worse{color:var(--bad);font-weight:600}.recovered{color:var(--warn)}
.card{background:var(--card);border-radius:8px;padding:12px;margin:12px 0;break-inside:avoid}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(300px,1fr));gap:10px}
figure{margin:0}figcaption{font-size:12px;color:var(--muted)}
svg{width:100%;height:auto;overflow:visible}svg.reliability{max-width:260px}
svg text{fill:var(--muted);font-size:9px}svg text.count{font-size:7px;fill:var(--fg)}svg text.label{font-size:10px;fill:var(--fg)}
.axis,.frame{stroke:var(--line);fill:none}.guide{stroke:var(--muted);stroke-dasharray:3 3;fill:none}
polyline{fill:none;stroke-width:1.6}.s1{stroke:var(--a);fill:var(--a)}.s2{stroke:var(--b);fill:var(--b)}.s3{stroke:var(--c);fill:var(--c)}
polyline.s1,polyline.s2,polyline.s3{fill:none}
rect.bar{fill:var(--a);opacity:.8}.mark{stroke:var(--b);stroke-width:2}
rect.alert{fill:var(--warn)}rect.breaker{fill:var(--bad)}
.legend{font-size:11px;color:var(--muted)}.key::before{content:'';display:inline-block;width:10px;height:3px;margin:0 4px 3px 8px;background:currentColor}
.key.s1{color:var(--a)}.key.s2{color:var(--b)}.key.s3{color:var(--c)}
@media print{body{margin:0;max-width:none}.card{border:1px solid #ccc}}
summary{cursor:pointer;color:var(--muted);margin:6px 0}
";

/// The whole page.
pub fn page(d: &ReportData, data_dir: &str, generated: &str) -> String {
    let mut out = String::with_capacity(64 * 1024);
    let _ = write!(
        out,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <meta name=\"color-scheme\" content=\"light dark\">\
         <title>inferwatch report</title><style>{STYLE}</style></head><body>\
         <h1>inferwatch report</h1><p class=\"muted\">{} — windows of {} from {} to {} ({} metric rows, {} service/model pairs), generated {}</p>",
        escape(data_dir),
        humantime::format_duration(std::time::Duration::from_millis(d.window_ms.max(0) as u64)),
        time(d.from_ms),
        time(d.to_ms),
        d.metric_rows,
        d.keys.len(),
        escape(generated),
    );
    changes(&mut out, d);
    alerts(&mut out, d);
    let span = (d.from_ms, d.to_ms);
    let mut service = "";
    for key in &d.keys {
        if key.service != service {
            service = &key.service;
            let _ = write!(out, "<h2 id=\"service-{0}\">{0}</h2>", escape(service));
            burn(&mut out, d, service, span);
        }
        key_card(&mut out, key, span);
    }
    dead_letters(&mut out, d);
    out.push_str("</body></html>\n");
    out
}

/// What changed from the first window to the last, per service and model, and the worst
/// window between them (trouble that came and went): the metrics that moved most, worse
/// first. Windows with under half the key's median requests (a run's partial first and
/// last windows) are left out: they move on noise.
fn changes(out: &mut String, d: &ReportData) {
    let mut rows = Vec::new();
    for k in &d.keys {
        let full = full_windows(&k.points);
        for m in METRICS {
            // A metric may start late (drift needs its baseline first).
            let values: Vec<(i64, f64)> = full
                .iter()
                .filter_map(|p| Some((p.t, (m.get)(p)?)))
                .collect();
            let (Some(&(_, a)), Some(&(last_t, b))) = (values.first(), values.last()) else {
                continue;
            };
            if values.len() < 2 {
                continue;
            }
            let badness = |v: f64| if m.higher_is_worse { v - a } else { a - v };
            let worst = values
                .iter()
                .copied()
                .max_by(|x, y| badness(x.1).total_cmp(&badness(y.1)))
                .unwrap_or((last_t, b));
            let moved = |v: f64| {
                let delta = v - a;
                delta.abs() >= m.min_delta && (a == 0.0 || (delta / a).abs() >= 0.2)
            };
            let worse_peak = moved(worst.1) && badness(worst.1) > 0.0;
            if !(moved(b) || worse_peak) {
                continue;
            }
            // Relative moves rank: a p99 doubling and an ECE doubling weigh alike.
            let score = badness(worst.1).max(badness(b)) / a.abs().max(m.min_delta);
            rows.push((badness(b) > 0.0, score, k, m, a, worst, b));
        }
    }
    out.push_str("<h2>What changed</h2>");
    if rows.is_empty() {
        out.push_str("<p>No metric moved notably between the first and the last window.</p>");
        return;
    }
    rows.sort_by(|x, y| y.1.total_cmp(&x.1));
    out.push_str("<p class=\"muted\">Per service and model: the first full window, the worst one after it, the last; biggest moves first, worse in red.</p>\
        <table class=\"changes\"><tr><th>service</th><th>model</th><th>metric</th><th class=\"num\">first</th><th class=\"num\">worst</th><th>at</th><th class=\"num\">last</th></tr>");
    for (worse_now, _, k, m, a, (wt, w), b) in rows.iter().take(30) {
        let _ = write!(
            out,
            "<tr class=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td><td class=\"num\">{}</td></tr>",
            if *worse_now { "worse" } else { "recovered" },
            escape(&k.service),
            escape(&k.model),
            m.name,
            fmt_num(*a),
            fmt_num(*w),
            hhmm(*wt),
            fmt_num(*b)
        );
    }
    out.push_str("</table>");
}

/// The windows of a key holding at least half its median requests.
fn full_windows(points: &[Point]) -> Vec<&Point> {
    let mut requests: Vec<f64> = points.iter().map(|p| p.requests).collect();
    requests.sort_by(f64::total_cmp);
    let median = requests.get(requests.len() / 2).copied().unwrap_or(0.0);
    points
        .iter()
        .filter(|p| p.requests >= median / 2.0)
        .collect()
}

/// A metric of the "what changed" table: how to read it and what counts as a move.
struct Metric {
    name: &'static str,
    get: fn(&Point) -> Option<f64>,
    min_delta: f64,
    higher_is_worse: bool,
}

const METRICS: [Metric; 8] = [
    metric("error rate", |p| p.error_rate, 0.01, true),
    metric("latency p99 ms", |p| p.p99, 50.0, true),
    metric("ECE", |p| p.ece, 0.03, true),
    metric("AUROC", |p| p.auroc, 0.05, false),
    metric("PSI (confidence)", |p| p.psi, 0.1, true),
    metric("JS (prediction)", |p| p.js, 0.05, true),
    metric("cost per 1k requests $", |p| p.cost_per_1k, 0.5, true),
    metric("runaway sessions", |p| p.runaway, 1.0, true),
];

const fn metric(
    name: &'static str,
    get: fn(&Point) -> Option<f64>,
    min_delta: f64,
    higher_is_worse: bool,
) -> Metric {
    Metric {
        name,
        get,
        min_delta,
        higher_is_worse,
    }
}

fn alerts(out: &mut String, d: &ReportData) {
    out.push_str("<h2>Alerts</h2>");
    if d.transitions.is_empty() {
        out.push_str("<p>No alert or breaker changed state in these windows.</p>");
        return;
    }
    out.push_str(&timeline(&d.transitions, (d.from_ms, d.to_ms)));
    let _ = write!(
        out,
        "<details><summary>{} transitions</summary>",
        d.transitions.len()
    );
    out.push_str("<table class=\"transitions\"><tr><th>window end</th><th>rule</th><th>state</th><th>severity</th><th>key</th><th>summary</th></tr>");
    for t in d.transitions.iter().take(200) {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            time(t.t),
            escape(&t.rule),
            escape(&t.state),
            escape(&t.severity),
            escape(&t.key),
            escape(&t.summary)
        );
    }
    out.push_str("</table></details>");
    if d.transitions.len() > 200 {
        let _ = write!(
            out,
            "<p class=\"muted\">…and {} more in the alerts table.</p>",
            d.transitions.len() - 200
        );
    }
}

fn burn(out: &mut String, d: &ReportData, service: &str, span: (i64, i64)) {
    let Some(points) = d.burn.get(&format!("service {service}")) else {
        return;
    };
    let series = [Series {
        name: "burn rate (1 = on budget)",
        class: "s2",
        points: points.iter().map(|&(t, r)| (t, Some(r))).collect(),
    }];
    let _ = write!(
        out,
        "<div class=\"grid\">{}</div>",
        lines("Budget burn", &series, span, 1.0, Some(1.0))
    );
}

/// One service and model: its reliability diagram and its metrics over time.
fn key_card(out: &mut String, k: &Key, span: (i64, i64)) {
    let requests: f64 = k.points.iter().map(|p| p.requests).sum();
    let _ = write!(
        out,
        "<div class=\"card\" data-service=\"{}\" data-model=\"{}\"><h3>{} · {}</h3><p class=\"muted\">{} requests in {} windows</p><div class=\"grid\">",
        escape(&k.service),
        escape(&k.model),
        escape(&k.service),
        escape(&k.model),
        requests as i64,
        k.points.len()
    );
    if !k.bins.is_empty() {
        let n: i64 = k.bins.iter().map(|b| b.count).sum();
        let _ = write!(
            out,
            "<figure><figcaption>Reliability ({n} labeled predictions; bar = accuracy, mark = mean confidence)</figcaption>{}</figure>",
            reliability(&k.service, &k.model, &k.bins)
        );
    }
    for c in key_charts(k, span) {
        out.push_str(&c);
    }
    out.push_str("</div></div>");
}

/// One key's metrics over time: a line chart per family.
fn key_charts(k: &Key, span: (i64, i64)) -> [String; 6] {
    let s = |name, class, get: fn(&Point) -> Option<f64>| Series {
        name,
        class,
        points: k.points.iter().map(|p| (p.t, get(p))).collect(),
    };
    [
        lines(
            "Calibration",
            &[
                s("ECE", "s1", |p| p.ece),
                s("overconfidence", "s2", |p| p.overconfidence),
                s("AUROC", "s3", |p| p.auroc),
            ],
            span,
            0.1,
            None,
        ),
        lines(
            "Drift",
            &[
                s("PSI confidence", "s1", |p| p.psi),
                s("JS prediction", "s2", |p| p.js),
            ],
            span,
            0.1,
            Some(0.2),
        ),
        lines(
            "Error rate",
            &[s("errors / requests", "s2", |p| p.error_rate)],
            span,
            0.05,
            None,
        ),
        lines(
            "Latency ms",
            &[s("p50", "s1", |p| p.p50), s("p99", "s2", |p| p.p99)],
            span,
            1.0,
            None,
        ),
        lines(
            "Cost per 1k requests, $",
            &[s("$/1k", "s1", |p| p.cost_per_1k)],
            span,
            0.01,
            None,
        ),
        lines(
            "Runaway sessions and wasted $",
            &[
                s("runaway sessions", "s2", |p| p.runaway),
                s("wasted $", "s1", |p| p.wasted),
            ],
            span,
            1.0,
            None,
        ),
    ]
}

fn dead_letters(out: &mut String, d: &ReportData) {
    out.push_str("<h2>Dead letters</h2>");
    if d.dead.is_empty() {
        out.push_str("<p>None: every payload in these windows was a valid event.</p>");
        return;
    }
    out.push_str("<table class=\"dead\"><tr><th>reason</th><th class=\"num\">payloads</th><th>for example</th></tr>");
    for (class, n, example) in &d.dead {
        let _ = write!(
            out,
            "<tr><td>{}</td><td class=\"num\">{n}</td><td>{}</td></tr>",
            escape(class),
            escape(example)
        );
    }
    out.push_str("</table>");
}

/// Text for HTML: `&`, `<`, `>` and quotes escaped.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A number in at most four significant digits.
pub fn fmt_num(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if a >= 1000.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 0.01 {
        format!("{v:.3}")
    } else {
        format!("{v:.2e}")
    }
}

/// `HH:MM:SS` (UTC) of an epoch-ms time, for axis ends.
pub fn hhmm(ms: i64) -> String {
    let t = inferwatch_schemas::time::format_rfc3339_ms(ms);
    t.get(11..19).unwrap_or(&t).to_string()
}

/// A time as `YYYY-MM-DD HH:MM:SS` UTC.
fn time(ms: i64) -> String {
    let t = inferwatch_schemas::time::format_rfc3339_ms(ms);
    format!(
        "{} {} UTC",
        t.get(..10).unwrap_or(&t),
        t.get(11..19).unwrap_or("")
    )
}
