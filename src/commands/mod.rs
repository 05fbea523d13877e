//! One module per subcommand: each parses its flags into a config, calls the runtime and
//! prints. Shared here: the async runtime for queries, signals, and running a job with a
//! progress line.

pub mod demo;
pub mod generate;
pub mod query;
pub mod run;

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Result};
use inferwatch_runtime::jobs::Job;
use inferwatch_runtime::RunReport;

use crate::display;

pub fn tokio_runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// Sets the returned flag on Ctrl-C or SIGTERM, so a run stops cleanly: it writes what it
/// has and checkpoints before it exits.
fn stop_on_signal(rt: &tokio::runtime::Runtime) -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    rt.spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(t) => t,
                    Err(_) => {
                        let _ = ctrl_c.await;
                        flag.store(true, Ordering::Relaxed);
                        return;
                    }
                };
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        flag.store(true, Ordering::Relaxed);
    });
    stop
}

/// Runs `job` until its source ends or a signal, with a progress line on stderr.
fn run_job(job: Job, live: bool) -> Result<RunReport> {
    let rt = tokio_runtime()?;
    let stop = stop_on_signal(&rt);
    let tty = std::io::stderr().is_terminal();
    let line = std::cell::RefCell::new(display::ProgressLine::new(tty, live));
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
