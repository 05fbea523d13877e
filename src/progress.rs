//! Progress while a command runs: a bar with rate and ETA on a terminal, plain lines every
//! few seconds otherwise (logs, CI), so that neither fills a log with redraws nor leaves a
//! person staring at a still screen.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use inferwatch_runtime::Progress;

use crate::display::{rate, thousands};

/// How often a plain line is printed when stderr is not a terminal.
const PLAIN_EVERY: Duration = Duration::from_secs(5);

/// What the bar is drawn on.
enum Draw {
    Terminal(ProgressBar),
    Plain { last: Option<Duration> },
}

/// Progress of a pipeline run: counters, and the share of a bounded source read.
pub struct RunProgress {
    draw: Draw,
    /// The bar counts what the source counts (bytes of a file, events of the generator).
    bounded: bool,
}

impl RunProgress {
    pub fn new(tty: bool) -> Self {
        let draw = if tty {
            Draw::Terminal(ProgressBar::with_draw_target(
                None,
                ProgressDrawTarget::stderr_with_hz(4),
            ))
        } else {
            Draw::Plain { last: None }
        };
        let mut p = Self {
            draw,
            bounded: false,
        };
        p.restyle(false);
        p
    }

    fn restyle(&mut self, bounded: bool) {
        self.bounded = bounded;
        let Draw::Terminal(bar) = &self.draw else {
            return;
        };
        // `wide_msg` is cut to the terminal's width: the line never wraps.
        let template = if bounded {
            "{spinner} [{bar:16}] {percent:>3}% ETA {eta:<4} {wide_msg}"
        } else {
            "{spinner} {wide_msg}"
        };
        let style = ProgressStyle::with_template(template)
            .expect("a valid template")
            .progress_chars("=> ");
        bar.set_style(style);
    }

    pub fn update(&mut self, p: &Progress) {
        let counters = counters(p);
        match &mut self.draw {
            Draw::Terminal(bar) => {
                if let Some((done, total)) = p.source_done.filter(|&(_, t)| t > 0) {
                    if !self.bounded {
                        self.restyle(true);
                    }
                    let Draw::Terminal(bar) = &self.draw else {
                        unreachable!("a terminal stays one");
                    };
                    bar.set_length(total);
                    bar.set_position(done);
                    bar.set_message(counters);
                } else {
                    bar.set_message(counters);
                    bar.tick();
                }
            }
            Draw::Plain { last } => {
                if last.is_some_and(|l| p.elapsed < l + PLAIN_EVERY) {
                    return;
                }
                *last = Some(p.elapsed);
                eprintln!("{}", plain_line(p, &counters));
            }
        }
    }

    /// Prints a line above the bar.
    pub fn print(&mut self, text: &str) {
        match &self.draw {
            Draw::Terminal(bar) => bar.println(text),
            Draw::Plain { .. } => eprintln!("{text}"),
        }
    }

    /// Clears the bar: the summary follows.
    pub fn done(&mut self) {
        if let Draw::Terminal(bar) = &self.draw {
            bar.finish_and_clear();
        }
    }
}

/// The counters a person watches: events, rate, windows, dead letters, late events, and
/// checkpoints when the run makes them.
fn counters(p: &Progress) -> String {
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
    line
}

/// A plain line: the counters, and the share done with an ETA when the source has a size.
fn plain_line(p: &Progress, counters: &str) -> String {
    match p.source_done.filter(|&(d, t)| t > 0 && d > 0) {
        Some((done, total)) => format!(
            "{counters}  {:>3}%  ETA {}",
            done * 100 / total,
            eta(p.elapsed, done, total)
        ),
        None => counters.to_string(),
    }
}

/// The time left at the rate so far, to the second.
fn eta(elapsed: Duration, done: u64, total: u64) -> String {
    let left = elapsed.as_secs_f64() * (total.saturating_sub(done)) as f64 / done as f64;
    humantime::format_duration(Duration::from_secs(left.round() as u64)).to_string()
}

/// A count toward a known total (`generate`): a bar on a terminal, a line every few seconds
/// otherwise.
pub struct CountProgress {
    draw: Draw,
    started: std::time::Instant,
    total: u64,
}

impl CountProgress {
    pub fn new(tty: bool, total: u64, unit: &'static str) -> Self {
        let draw = if tty {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            let template = format!(
                "[{{bar:24}}] {{percent:>3}}% {{human_pos}}/{{human_len}} {unit}, {{msg}}, ETA {{eta}}"
            );
            bar.set_style(
                ProgressStyle::with_template(&template)
                    .expect("a valid template")
                    .progress_chars("=> "),
            );
            Draw::Terminal(bar)
        } else {
            Draw::Plain { last: None }
        };
        Self {
            draw,
            started: std::time::Instant::now(),
            total,
        }
    }

    pub fn update(&mut self, done: u64) {
        match &mut self.draw {
            Draw::Terminal(bar) => {
                bar.set_position(done);
                let per_second = rate(done, self.started.elapsed());
                bar.set_message(format!("{}/s", thousands(per_second)));
            }
            Draw::Plain { last } => {
                let elapsed = self.started.elapsed();
                if last.is_some_and(|l| elapsed < l + PLAIN_EVERY) || done == 0 {
                    return;
                }
                *last = Some(elapsed);
                eprintln!(
                    "  {} / {} ({}%), {}/s, ETA {}",
                    thousands(done),
                    thousands(self.total),
                    done * 100 / self.total.max(1),
                    thousands(rate(done, elapsed)),
                    eta(elapsed, done, self.total)
                );
            }
        }
    }

    pub fn done(&mut self) {
        if let Draw::Terminal(bar) = &self.draw {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_line_tells_the_share_and_the_time_left() {
        let p = Progress {
            elapsed: Duration::from_secs(10),
            source_done: Some((250, 1000)),
            ..Progress::default()
        };
        let line = plain_line(&p, "counters");
        assert_eq!(line, "counters   25%  ETA 30s");
        let unknown = Progress {
            source_done: None,
            ..p
        };
        assert_eq!(plain_line(&unknown, "counters"), "counters");
    }
}
