//! One module per subcommand: each parses its flags into a config, calls the runtime and
//! prints. Shared here: the async runtime for queries, signals, and running a job with a
//! progress line.

pub mod demo;
pub mod generate;
pub mod ingest;
pub mod query;
pub mod report;
pub mod run;

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Result};
use inferwatch_runtime::config::HttpConfig;
use inferwatch_runtime::jobs::Job;
use inferwatch_runtime::RunReport;

use crate::display;
use crate::progress::RunProgress;

pub fn tokio_runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// What the first Ctrl-C or SIGTERM does to a run.
pub enum OnSignal {
    /// Stop cleanly: stop reading, complete files, checkpoint open windows (without closing
    /// them early) and drain the outbox for a moment before exiting.
    Stop,
    /// Stop the input instead (the gateway of `run --listen`): the source then ends once
    /// the pipeline has taken everything, and every window closes and is written.
    EndInput(Box<dyn FnOnce() + Send>),
}

/// Acts on the first Ctrl-C or SIGTERM and exits at once on a second one: every file is
/// written under a temporary name and renamed when complete, and checkpoints are written
/// whole or not at all, so what is on disk stays consistent and a restart resumes.
fn on_signals(
    rt: &tokio::runtime::Runtime,
    stopping: &'static str,
    first: impl FnOnce() + Send + 'static,
) -> Result<()> {
    // Listening starts here, before the run: a signal from now on is caught, and a second
    // one is not lost while the first is handled.
    let mut signals = {
        let _context = rt.enter();
        Signals::new()?
    };
    rt.spawn(async move {
        signals.next().await;
        eprintln!("\n{stopping} (signal again to exit at once)");
        first();
        signals.next().await;
        eprintln!("exiting at once; a restart resumes from the last checkpoint");
        std::process::exit(130);
    });
    Ok(())
}

/// SIGTERM and SIGINT (Ctrl-C elsewhere), listened to from creation on.
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Self {
                term: signal(SignalKind::terminate())?,
                int: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    /// The next signal.
    async fn next(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Runs `job` until its source ends or a signal, with progress on stderr, serving its
/// health over HTTP when `http.listen` is set.
fn run_job(job: Job, http: &HttpConfig, on_signal: OnSignal) -> Result<RunReport> {
    let rt = tokio_runtime()?;
    let stop = Arc::new(AtomicBool::new(false));
    match on_signal {
        OnSignal::Stop => {
            let flag = stop.clone();
            on_signals(
                &rt,
                "stopping: completing files and checkpoints",
                move || flag.store(true, Ordering::Relaxed),
            )?
        }
        OnSignal::EndInput(end) => on_signals(
            &rt,
            "stopping: no more requests; processing and writing what was accepted",
            end,
        )?,
    }
    if !http.listen.is_empty() {
        let addr = crate::http::serve(&http.listen, job.telemetry(), http.live_timeout)?;
        eprintln!("serving http://{addr}/metrics, /livez and /readyz");
    }
    let tty = std::io::stderr().is_terminal();
    let line = std::cell::RefCell::new(RunProgress::new(tty));
    let report = job.run(
        &stop,
        |p| line.borrow_mut().update(p),
        |n| line.borrow_mut().print(&display::notice_line(n)),
    );
    line.borrow_mut().done();
    let report = report?;
    if report.notices_waiting > 0 {
        eprintln!(
            "alerts: {} notices wait in the outbox; they are delivered on the next start",
            report.notices_waiting
        );
    }
    Ok(report)
}

/// `--rate` must be a positive, finite number of events per second.
fn check_rate(rate: f64) -> Result<()> {
    if !(rate > 0.0 && rate.is_finite()) {
        bail!("--rate must be a positive number of events per second");
    }
    Ok(())
}

/// `--recover-at SHARE` as an event index.
fn recover_point(share: Option<f64>, total: u64) -> Result<Option<u64>> {
    match share {
        None => Ok(None),
        Some(s) if s > 0.5 && s <= 1.0 => Ok(Some((s * total as f64) as u64)),
        Some(s) => {
            bail!("--recover-at {s}: give a share of the run after the onset (0.5), e.g. 0.75")
        }
    }
}
