//! `--http ADDR`: the process's own health for Prometheus and orchestrators. `/metrics` in
//! the Prometheus text format, `/livez` (the main loop turns), `/readyz` (partitions
//! restored and caught up). A few small GET responses a scrape interval apart need no
//! framework: one thread answers them, one connection at a time, each closed after its
//! answer, and a client that stalls is dropped after a timeout.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use inferwatch_runtime::Telemetry;

/// The content type of the Prometheus text exposition format.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// How long a client may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Binds `addr` and answers on a thread of its own until the process ends. Returns the
/// address bound (port 0 picks a free one).
pub fn serve(addr: &str, telemetry: Arc<Telemetry>, live_timeout: Duration) -> Result<SocketAddr> {
    let listener = TcpListener::bind(addr).with_context(|| {
        format!("--http {addr}: cannot listen there (give a free host:port, e.g. 127.0.0.1:9464)")
    })?;
    let bound = listener.local_addr()?;
    std::thread::Builder::new()
        .name("inferwatch-http".into())
        .spawn(move || {
            for conn in listener.incoming().flatten() {
                // A client that goes away mid-answer is its own problem, not the run's.
                let _ = answer(conn, &telemetry, live_timeout);
            }
        })?;
    Ok(bound)
}

/// Reads one request and writes its response.
fn answer(conn: TcpStream, telemetry: &Telemetry, live_timeout: Duration) -> std::io::Result<()> {
    conn.set_read_timeout(Some(READ_TIMEOUT))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    // The headers: read to the blank line, unused.
    let mut line = String::new();
    while reader.read_line(&mut line)? > 2 {
        line.clear();
    }
    let mut words = request.split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (status, content_type, body) = route(method, path, telemetry, live_timeout);
    let mut out = conn;
    write!(
        out,
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    if method != "HEAD" {
        out.write_all(body.as_bytes())?;
    }
    out.flush()
}

/// The response to `method path`: status line, content type, body.
fn route(
    method: &str,
    path: &str,
    telemetry: &Telemetry,
    live_timeout: Duration,
) -> (&'static str, &'static str, String) {
    const TEXT: &str = "text/plain; charset=utf-8";
    if method != "GET" && method != "HEAD" {
        return ("405 Method Not Allowed", TEXT, "only GET\n".into());
    }
    match path {
        "/metrics" => ("200 OK", PROMETHEUS_TEXT, telemetry.render()),
        "/livez" => {
            let quiet = telemetry.since_heartbeat();
            if quiet <= live_timeout {
                ("200 OK", TEXT, "ok\n".into())
            } else {
                let body = format!(
                    "stuck: the main loop has not turned for {}s (http.live_timeout {}s)\n",
                    quiet.as_secs(),
                    live_timeout.as_secs()
                );
                ("503 Service Unavailable", TEXT, body)
            }
        }
        "/readyz" if telemetry.ready() => ("200 OK", TEXT, "ready\n".into()),
        "/readyz" => (
            "503 Service Unavailable",
            TEXT,
            "not ready: partitions are being restored or are behind by more than http.ready_max_lag\n"
                .into(),
        ),
        _ => (
            "404 Not Found",
            TEXT,
            "not found: /metrics, /livez and /readyz are served here\n".into(),
        ),
    }
}
