//! Serving the HTTP gateway (`inferwatch_ingest::gateway`) on a runtime of its own: for
//! `inferwatch ingest` (into Kafka) and for `run --listen` (into the in-process pipeline).

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::{Context, Result};
use inferwatch_ingest::gateway::{Gateway, Outlet};
use inferwatch_runtime::Config;
use tokio::sync::oneshot;

/// A gateway answering on its own threads until [`Served::shutdown`].
pub struct Served {
    pub addr: SocketAddr,
    shutdown: oneshot::Sender<()>,
    thread: JoinHandle<std::io::Result<()>>,
}

/// Binds `addr` and serves `gateway` there. The gateway is built by `make` inside the
/// runtime, so that its Kafka client's timers run on it.
pub fn serve(addr: &str, make: impl FnOnce() -> Result<Arc<Gateway>>) -> Result<Served> {
    let rt = crate::commands::tokio_runtime()?;
    let listener = rt
        .block_on(tokio::net::TcpListener::bind(addr))
        .with_context(|| {
            format!(
                "--listen {addr}: cannot listen there (give a free host:port, e.g. 127.0.0.1:4318)"
            )
        })?;
    let bound = listener.local_addr()?;
    let gateway = {
        let _context = rt.enter();
        make()?
    };
    let (shutdown, stopped) = oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("inferwatch-gateway".into())
        .spawn(move || {
            let served = rt.block_on(gateway.clone().serve(listener, async move {
                let _ = stopped.await;
            }));
            // Dropped here, inside no request: a Kafka outlet flushes what it holds.
            drop(gateway);
            served
        })?;
    Ok(Served {
        addr: bound,
        shutdown,
        thread,
    })
}

impl Served {
    /// Stops accepting connections, answers the requests in flight, then returns.
    pub fn shutdown(self) -> Result<()> {
        let _ = self.shutdown.send(());
        match self.thread.join() {
            Ok(r) => Ok(r.context("serving the gateway")?),
            Err(_) => anyhow::bail!("the gateway thread panicked"),
        }
    }
}

/// [`serve`] for `run`/`demo --listen`: the gateway of `config` into `outlet` (in process).
pub fn serve_in_process(addr: &str, config: &Config, outlet: Outlet) -> Result<Served> {
    serve(addr, || {
        let limits = config.limits();
        Ok(Gateway::new(config.gateway.clone(), limits, outlet)?)
    })
}

/// What a listening process prints once.
pub fn banner(addr: SocketAddr, into: &str) -> String {
    format!(
        "listening on http://{addr}: POST /v1/events, /v1/feedback (JSON, NDJSON), /v1/traces \
         (OTLP/HTTP); GET /metrics; {into}"
    )
}
