//! What the terminal shows: a progress line while running, summaries at the end. Everything
//! fits 100 columns.

use std::io::Write;
use std::time::Duration;

use anyhow::Result;
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{Float64Type, Int64Type, TimestampMillisecondType};

use crate::pipeline::{Progress, RunReport};

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

fn thousands(n: u64) -> String {
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

fn rate(n: u64, d: Duration) -> u64 {
    let s = d.as_secs_f64();
    if s > 0.0 {
        (n as f64 / s) as u64
    } else {
        0
    }
}

/// A progress line: redrawn in place on a terminal, a plain line every few seconds otherwise.
pub struct ProgressLine {
    tty: bool,
    live: bool,
    last_plain: Duration,
    drawn: bool,
}

impl ProgressLine {
    pub fn new(tty: bool, live: bool) -> Self {
        Self {
            tty,
            live,
            last_plain: Duration::ZERO,
            drawn: false,
        }
    }

    pub fn update(&mut self, p: &Progress) {
        let mut line = format!(
            "{:>6.1}s  events {:>11}  {:>9}/s  windows {:>5}  dead letters {:>7}  late {:>6}",
            p.elapsed.as_secs_f64(),
            thousands(p.events),
            thousands(rate(p.payloads, p.elapsed)),
            thousands(p.windows_closed),
            thousands(p.dead_letters),
            thousands(p.late_events),
        );
        if p.checkpoints > 0 {
            line.push_str(&format!(
                "  partitions {}  checkpoints {}",
                p.partitions,
                thousands(p.checkpoints)
            ));
        }
        if let (Some((done, total)), false) = (p.source_done, self.live) {
            if let Some(pct) = (done * 100).checked_div(total) {
                line.push_str(&format!("  {pct:>3}%"));
            }
        }
        if self.tty {
            eprint!("\r{line}");
            let _ = std::io::stderr().flush();
            self.drawn = true;
        } else if p.elapsed >= self.last_plain + Duration::from_secs(5) {
            self.last_plain = p.elapsed;
            eprintln!("{line}");
        }
    }

    pub fn done(&mut self) {
        if self.drawn {
            eprintln!();
        }
    }
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
}

fn fmt_opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("-".into(), |v| format!("{v:.digits$}"))
}

/// The end of the demo: the last window's rows and how to explore the rest.
pub fn demo_summary(r: &RunReport) -> Result<()> {
    run_summary(r);
    let mut out = std::io::stdout().lock();
    let Some(last) = r.recent_metrics.last() else {
        writeln!(
            out,
            "no window closed: run longer (--duration) or use a shorter --window"
        )?;
        return Ok(());
    };
    let starts = last.column(0).as_primitive::<TimestampMillisecondType>();
    let newest = (0..last.num_rows())
        .map(|i| starts.value(i))
        .max()
        .unwrap_or(0);
    let col = |name: &str| {
        last.column(last.schema().index_of(name).expect("built-in column"))
            .clone()
    };
    let service = col("service");
    let service = service.as_string::<i32>();
    let model = col("model");
    let model = model.as_string::<i32>();
    let requests = col("requests");
    let requests = requests.as_primitive::<Int64Type>();
    let f = |name: &str| col(name).as_primitive::<Float64Type>().clone();
    let (err, p50, p99, cost, quality, flagged) = (
        f("error_rate"),
        f("latency_p50_ms"),
        f("latency_p99_ms"),
        f("cost_usd"),
        f("quality_score_mean"),
        f("flagged_rate"),
    );
    let get =
        |a: &datafusion::arrow::array::Float64Array, i: usize| a.is_valid(i).then(|| a.value(i));
    writeln!(
        out,
        "\nlast window, starting {}:",
        inferwatch_schemas::time::format_rfc3339_ms(newest)
    )?;
    writeln!(
        out,
        "{:<20} {:<24} {:>8} {:>7} {:>9} {:>9} {:>10} {:>8} {:>8}",
        "service", "model", "requests", "err %", "p50 ms", "p99 ms", "cost $", "quality", "flag %"
    )?;
    for i in (0..last.num_rows()).filter(|&i| starts.value(i) == newest) {
        writeln!(
            out,
            "{:<20} {:<24} {:>8} {:>7} {:>9} {:>9} {:>10} {:>8} {:>8}",
            trim(service.value(i), 20),
            trim(model.value(i), 24),
            requests.value(i),
            fmt_opt(get(&err, i).map(|v| v * 100.0), 2),
            fmt_opt(get(&p50, i), 1),
            fmt_opt(get(&p99, i), 1),
            fmt_opt(get(&cost, i), 4),
            fmt_opt(get(&quality, i), 3),
            fmt_opt(get(&flagged, i).map(|v| v * 100.0), 2),
        )?;
    }
    let dir = r.data_dir.display();
    writeln!(
        out,
        "\nexplore what it wrote (tables: events, metrics, calibration_bins, dead_letter):"
    )?;
    writeln!(
        out,
        "  inferwatch query --data-dir {dir} \"SELECT service, model, sum(requests) AS requests, avg(error_rate) AS error_rate, max(latency_p99_ms) AS p99_ms FROM metrics GROUP BY service, model ORDER BY requests DESC\""
    )?;
    writeln!(
        out,
        "  (from a checkout: cargo run --release -- query --data-dir {dir} \"...\")"
    )?;
    Ok(())
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
