//! What the terminal shows at the end of a command: summaries and alert lines. They fit
//! the terminal (100 columns when it cannot tell).

use std::io::Write;
use std::time::Duration;

use anyhow::Result;
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type};

use inferwatch_runtime::RunReport;

/// Peak resident memory of this process in bytes (Linux), for run summaries and the bench.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// CPU time (user + system) this process has used, from /proc (Linux; ticks are 1/100 s).
pub fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub fn rate(n: u64, d: Duration) -> u64 {
    let s = d.as_secs_f64();
    if s > 0.0 {
        (n as f64 / s) as u64
    } else {
        0
    }
}

/// One alert notice as a terminal line: severity, state, rule, key, value vs threshold,
/// window end (UTC time of day); at most ~110 columns.
pub fn notice_line(n: &inferwatch_schemas::Notice) -> String {
    use inferwatch_schemas::{NoticeKind, Severity};
    let mark = match (n.kind, n.state.as_str(), n.severity) {
        (_, "resolved" | "closed", _) => "OK  ",
        (NoticeKind::Breaker, "half_open", _) => "HALF",
        (NoticeKind::Breaker, _, _) => "STOP",
        (_, _, Severity::Critical) => "CRIT",
        (_, _, Severity::Warning) => "WARN",
        _ => "INFO",
    };
    let what = match n.kind {
        NoticeKind::Alert if n.renotify => "still firing".to_string(),
        NoticeKind::Alert => n.state.clone(),
        NoticeKind::Breaker => format!("breaker {}", n.state.replace('_', "-")),
    };
    let value = match (n.kind, n.value) {
        (NoticeKind::Breaker, _) => String::new(),
        (_, Some(v)) => format!(
            "{} {} {} {}",
            n.metric,
            inferwatch_schemas::alert::fmt_num(v),
            if n.state == "resolved" {
                "vs"
            } else {
                n.op.as_str()
            },
            n.threshold
                .map_or("-".into(), inferwatch_schemas::alert::fmt_num)
        ),
        (_, None) => format!("{} no data", n.metric),
    };
    let time = inferwatch_schemas::time::format_rfc3339_ms(n.window_end);
    let time = time.get(11..19).unwrap_or(&time);
    // The key goes last: it is the part that may be cut to fit.
    let mut line = format!(
        "  {mark} {time} {what:<14} {:<16} {value:<30} {}",
        n.rule,
        n.key_label()
    );
    if line.chars().count() > 110 {
        line = line.chars().take(109).collect::<String>() + "…";
    }
    line.trim_end().to_string()
}

/// The end of `inferwatch run`: totals, speed and memory.
pub fn run_summary(r: &RunReport) {
    let p = &r.progress;
    eprintln!(
        "processed {} payloads in {:.2}s: {}/s, {}/s per CPU-second, peak memory {} MB",
        thousands(p.payloads),
        p.elapsed.as_secs_f64(),
        thousands(rate(p.payloads, p.elapsed)),
        cpu_seconds().map_or("?".into(), |c| thousands(rate(
            p.payloads,
            Duration::from_secs_f64(c.max(0.01))
        ))),
        peak_rss_bytes().map_or("?".into(), |b| (b / (1 << 20)).to_string()),
    );
    eprintln!(
        "  {} events, {} dead letters, {} late, {} windows, {} metric rows, {} files",
        thousands(p.events),
        thousands(p.dead_letters),
        thousands(p.late_events),
        thousands(p.windows_closed),
        thousands(p.metric_rows),
        r.files_written,
    );
    time_summary(r);
    if p.checkpoints > 0 {
        let share = |d: Duration| 100.0 * d.as_secs_f64() / p.elapsed.as_secs_f64().max(1e-9);
        eprintln!(
            "  {} checkpoints: {:.2}s writing them ({:.1}% of the run), {:.2}s waited on ({:.1}%)",
            thousands(p.checkpoints),
            r.checkpoint_time.as_secs_f64(),
            share(r.checkpoint_time),
            r.checkpoint_wait.as_secs_f64(),
            share(r.checkpoint_wait),
        );
    }
    if let Some(f) = &p.feedback {
        feedback_summary(f);
    }
    if p.sessions_evicted > 0 {
        eprintln!(
            "  {} sessions ended early past loops.max_sessions; raise it to track more at once",
            thousands(p.sessions_evicted)
        );
    }
    if r.spilled_bytes > 0 {
        eprintln!(
            "  {:.1} MiB of session counts spilled to disk past runtime.sessions_memory_mb",
            r.spilled_bytes as f64 / (1 << 20) as f64
        );
    }
}

/// Where the time went: tells a run the source limits (a broker, a disk) from one the
/// processing limits.
fn time_summary(r: &RunReport) {
    let t = &r.time;
    let wall = r.progress.elapsed.as_secs_f64().max(1e-9);
    let share = |d: Duration| 100.0 * d.as_secs_f64() / wall;
    if t.workers == 0 {
        eprintln!(
            "  time: reading the source {:.1}s ({:.0}%), processing {:.1}s ({:.0}%)",
            t.source.as_secs_f64(),
            share(t.source),
            t.processing.as_secs_f64(),
            share(t.processing),
        );
    } else {
        eprintln!(
            "  time: reading the source {:.1}s ({:.0}%), {} workers {:.0}% busy, {:.1}s waiting for them",
            t.source.as_secs_f64(),
            share(t.source),
            t.workers,
            share(t.processing) / t.workers as f64,
            t.waiting_for_workers.as_secs_f64(),
        );
    }
}

fn fmt_opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("-".into(), |v| format!("{v:.digits$}"))
}

/// The end of the demo: per service, the first half of the run against its last window,
/// read back from the Parquet tables, and how to explore the rest.
pub fn demo_summary(r: &RunReport, rt: &tokio::runtime::Runtime) -> Result<()> {
    run_summary(r);
    let mut out = std::io::stdout().lock();
    if r.progress.windows_closed == 0 {
        writeln!(
            out,
            "no window closed: run longer (--duration) or use a shorter --window"
        )?;
        return Ok(());
    }
    let Some((first, last)) = window_span(r, rt)? else {
        return Ok(());
    };
    let middle = first + (last - first) / 2;
    let sql = format!(
        "SELECT service, CASE WHEN CAST(window_start AS BIGINT) = {last} THEN 'last' ELSE 'before' END AS period,
           sum(requests) AS events,
           sum(errors) * 100.0 / sum(requests) AS err_pct,
           avg(latency_p99_ms) AS p99_ms,
           sum(cost_usd) * 1000.0 / sum(requests) AS usd_per_1k,
           avg(quality_score_mean) AS quality,
           sum(ece * labeled) / sum(CASE WHEN ece IS NULL THEN 0 ELSE labeled END) AS ece,
           sum(overconfidence * labeled) / sum(CASE WHEN ece IS NULL THEN 0 ELSE labeled END) AS overconf,
           avg(auroc) AS auroc,
           avg(psi_confidence) AS psi,
           avg(js_prediction) AS js,
           sum(runaway_sessions) AS loops
         FROM metrics_latest
         WHERE CAST(window_start AS BIGINT) = {last} OR CAST(window_start AS BIGINT) < {middle}
         GROUP BY 1, 2 ORDER BY 1, 2"
    );
    let rows = rt.block_on(crate::commands::query::run(&r.store, &sql))?;
    writeln!(
        out,
        "\nper service: the first half of the run ('before') and the last window, starting {}",
        inferwatch_schemas::time::format_rfc3339_ms(last)
    )?;
    service_rows(&mut out, &rows)?;
    writeln!(
        out,
        "(ece/ovconf: label-weighted means over keys; psi = psi_confidence, js = js_prediction: means over keys;\n loops = runaway_sessions; - = too few events)"
    )?;
    alerts_summary(&mut out, r, rt)?;
    explore_hints(&mut out, &r.store.display().to_string())
}

/// The first window's start and the last complete window's start in `metrics`.
fn window_span(r: &RunReport, rt: &tokio::runtime::Runtime) -> Result<Option<(i64, i64)>> {
    let span = rt.block_on(crate::commands::query::run(
        &r.store,
        "SELECT CAST(min(window_start) AS BIGINT) AS first, CAST(max(window_start) AS BIGINT) AS last FROM metrics",
    ))?;
    let ints = |name: &str| -> Option<i64> {
        let b = span.first()?;
        let a = b.column_by_name(name)?.as_primitive::<Int64Type>();
        a.is_valid(0).then(|| a.value(0))
    };
    let (Some(first), Some(last)) = (ints("first"), ints("last")) else {
        return Ok(None);
    };
    // The last window of a stopped run is cut short: show the one before it, if any.
    let size = r.window_size_ms;
    let last = if last - size > first {
        last - size
    } else {
        last
    };
    Ok(Some((first, last)))
}

/// The service column is as wide as its longest name, cut only where the terminal cannot
/// hold it beside the other columns (84 wide with the space before them).
fn service_width(rows: &[datafusion::arrow::array::RecordBatch]) -> usize {
    let longest = rows
        .iter()
        .filter_map(|b| b.column_by_name("service"))
        .filter_map(|c| {
            let c = datafusion::arrow::compute::cast(c, &DataType::Utf8).ok()?;
            let c = c.as_string::<i32>();
            c.iter().flatten().map(|s| s.chars().count()).max()
        })
        .max()
        .unwrap_or(0);
    longest.clamp(7, terminal_width().saturating_sub(84).max(16))
}

/// The per-service table of the demo summary, one row per (service, period).
fn service_rows(
    out: &mut impl Write,
    rows: &[datafusion::arrow::array::RecordBatch],
) -> Result<()> {
    let width = service_width(rows);
    // One layout for the header and the rows.
    macro_rules! line {
        ($($cell:expr),* $(,)?) => {
            writeln!(
                out,
                "{:<width$} {:<6} {:>8} {:>6} {:>8} {:>7} {:>5} {:>5} {:>6} {:>5} {:>5} {:>5} {:>5}",
                $($cell),*
            )
        };
    }
    line!(
        "service", "period", "events", "err %", "p99 ms", "$/1k", "qual", "ece", "ovconf", "auroc",
        "psi", "js", "loops"
    )?;
    for b in rows {
        // Parquet strings may come back as Utf8View: cast, so either reads.
        let text = |name: &str| -> Result<datafusion::arrow::array::StringArray> {
            let c = b.column_by_name(name).expect("selected");
            let c =
                datafusion::arrow::compute::cast(c, &datafusion::arrow::datatypes::DataType::Utf8)?;
            Ok(c.as_string::<i32>().clone())
        };
        let (service, period) = (text("service")?, text("period")?);
        let int = |name: &str| {
            b.column_by_name(name)
                .expect("selected")
                .as_primitive::<Int64Type>()
                .clone()
        };
        let (events, loops) = (int("events"), int("loops"));
        let f = |name: &str| {
            b.column_by_name(name)
                .expect("selected")
                .as_primitive::<Float64Type>()
                .clone()
        };
        let cols: Vec<_> = [
            "err_pct",
            "p99_ms",
            "usd_per_1k",
            "quality",
            "ece",
            "overconf",
            "auroc",
            "psi",
            "js",
        ]
        .iter()
        .map(|c| f(c))
        .collect();
        let v = |c: usize, i: usize, d: usize| {
            let a = &cols[c];
            fmt_opt(a.is_valid(i).then(|| a.value(i)), d)
        };
        for i in 0..b.num_rows() {
            line!(
                trim(service.value(i), width),
                period.value(i),
                thousands(events.value(i) as u64),
                v(0, i, 2),
                v(1, i, 0),
                v(2, i, 3),
                v(3, i, 2),
                v(4, i, 3),
                v(5, i, 3),
                v(6, i, 2),
                v(7, i, 2),
                v(8, i, 2),
                loops.value(i),
            )?;
        }
    }
    Ok(())
}

/// How to explore what the demo wrote.
fn explore_hints(out: &mut impl Write, dir: &str) -> Result<()> {
    writeln!(
        out,
        "\nexplore what it wrote (tables: events, metrics, metrics_latest, calibration_bins, alerts,\ndead_letter, feedback_unmatched, sessions, budgets):"
    )?;
    writeln!(
        out,
        "  inferwatch query --data-dir {dir} \"SELECT window_start, service, model, route, ece, auroc, psi_confidence, revision FROM metrics_latest ORDER BY window_start DESC LIMIT 20\""
    )?;
    writeln!(
        out,
        "  inferwatch query --data-dir {dir} \"SELECT window_end, rule, state, severity, service, model, summary FROM alerts WHERE notified ORDER BY window_end\""
    )?;
    writeln!(
        out,
        "  (from a checkout: cargo run --release -- query --data-dir {dir} \"...\")"
    )?;
    Ok(())
}

/// What became of the feedback events.
pub fn feedback_summary(f: &inferwatch_runtime::FeedbackCounts) {
    eprintln!(
        "  feedback: {} received, {} joined ({} revised metric rows), {} unknown, {} expired, {} duplicate, {} unusable, {} invalid",
        thousands(f.received),
        thousands(f.joined),
        thousands(f.revised_rows),
        thousands(f.unknown),
        thousands(f.expired),
        thousands(f.duplicate),
        thousands(f.unusable),
        thousands(f.invalid),
    );
    if f.evicted > 0 {
        eprintln!(
            "  {} predictions stopped waiting for feedback past feedback.max_pending; raise it if their labels matter",
            thousands(f.evicted)
        );
    }
}

/// Columns of the terminal the summary is printed on; unbounded when it is not one (a
/// file or a pipe cuts nothing).
fn terminal_width() -> usize {
    console::Term::stdout()
        .size_checked()
        .map_or(usize::MAX, |(_, w)| usize::from(w))
}

fn trim(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

/// Per rule: notified transitions of the run (the `alerts` table).
fn alerts_summary(
    out: &mut impl std::io::Write,
    r: &RunReport,
    rt: &tokio::runtime::Runtime,
) -> anyhow::Result<()> {
    let sql = "SELECT rule, kind, \
        sum(CASE WHEN state = 'firing' AND NOT renotify THEN 1 ELSE 0 END) AS fired, \
        sum(CASE WHEN state = 'resolved' THEN 1 ELSE 0 END) AS resolved, \
        sum(CASE WHEN state = 'open' THEN 1 ELSE 0 END) AS opened, \
        sum(CASE WHEN state = 'closed' THEN 1 ELSE 0 END) AS closed, \
        count(DISTINCT concat(service, '/', model)) AS keys \
        FROM alerts WHERE notified GROUP BY 1, 2 ORDER BY 2, 1";
    let Ok(rows) = rt.block_on(crate::commands::query::run(&r.store, sql)) else {
        writeln!(
            out,
            "\nalerts: none (the default scenario, mixed, raises and resolves some)"
        )?;
        return Ok(());
    };
    if rows.iter().all(|b| b.num_rows() == 0) {
        writeln!(
            out,
            "\nalerts: none notified (try the default scenario, mixed, or --scenario miscalibration --recover-at 0.8)"
        )?;
        return Ok(());
    }
    writeln!(
        out,
        "\nalerts notified in this run (rule: transitions over service/model keys)"
    )?;
    for b in &rows {
        let text = |name: &str| -> anyhow::Result<datafusion::arrow::array::StringArray> {
            let c = b.column_by_name(name).expect("selected");
            let c =
                datafusion::arrow::compute::cast(c, &datafusion::arrow::datatypes::DataType::Utf8)?;
            Ok(c.as_string::<i32>().clone())
        };
        let int = |name: &str| -> anyhow::Result<Vec<i64>> {
            let c = b.column_by_name(name).expect("selected");
            let c = datafusion::arrow::compute::cast(
                c,
                &datafusion::arrow::datatypes::DataType::Int64,
            )?;
            Ok(c.as_primitive::<Int64Type>().values().to_vec())
        };
        let (rule, kind) = (text("rule")?, text("kind")?);
        let (fired, resolved, opened, closed, keys) = (
            int("fired")?,
            int("resolved")?,
            int("opened")?,
            int("closed")?,
            int("keys")?,
        );
        for i in 0..b.num_rows() {
            let what = if kind.value(i) == "breaker" {
                format!("breaker opened {}, closed {}", opened[i], closed[i])
            } else {
                format!("fired {}, resolved {}", fired[i], resolved[i])
            };
            writeln!(
                out,
                "  {:<18} {what:<28} on {} keys",
                rule.value(i),
                keys[i]
            )?;
        }
    }
    Ok(())
}
