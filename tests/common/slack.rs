//! A real local HTTP server standing in for Slack's incoming webhooks: it answers from a
//! script (status, Retry-After), then with a default status, and records every request.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

/// One scripted answer.
#[derive(Debug, Clone, Copy)]
pub struct Reply {
    pub status: u16,
    pub retry_after: Option<u32>,
}

pub const OK: Reply = Reply {
    status: 200,
    retry_after: None,
};

/// A request as received, with the status it got.
#[derive(Debug, Clone)]
pub struct Request {
    pub at: Instant,
    pub path: String,
    pub body: String,
    pub status: u16,
}

impl Request {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

pub struct SlackServer {
    pub port: u16,
    requests: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl SlackServer {
    /// Listens on `port` (0: any free one), answering `script` in order, then `then`.
    pub fn start(port: u16, script: Vec<Reply>, then: Reply) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind the Slack stand-in");
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, s) = (requests.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut script = script.into_iter();
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let reply = script.next().unwrap_or(then);
                        if let Some(req) = serve(stream, reply) {
                            r.lock().unwrap().push(req);
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Self {
            port,
            requests,
            stop,
            thread: Some(thread),
        }
    }

    /// The webhook URL; the path carries a token that must never reach a log.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/services/T000/B000/{SECRET}", self.port)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    /// Requests answered 2xx: the messages Slack would show.
    pub fn delivered(&self) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| (200..300).contains(&r.status))
            .collect()
    }

    /// Waits until `n` messages were delivered or `limit` passes.
    pub fn wait_delivered(&self, n: usize, limit: Duration) -> Vec<Request> {
        let until = Instant::now() + limit;
        loop {
            let d = self.delivered();
            if d.len() >= n || Instant::now() >= until {
                return d;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for SlackServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub const SECRET: &str = "XyZsEcReTtOkEn123";

fn serve(stream: TcpStream, reply: Reply) -> Option<Request> {
    stream.set_nonblocking(false).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let at = Instant::now();
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
    let mut length = 0usize;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).ok()? == 0 || h == "\r\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    let text = if reply.status == 200 { "ok" } else { "error" };
    let mut head = format!(
        "HTTP/1.1 {} X\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n",
        reply.status,
        text.len()
    );
    if let Some(s) = reply.retry_after {
        head.push_str(&format!("Retry-After: {s}\r\n"));
    }
    head.push_str("\r\n");
    let mut w = stream;
    w.write_all(head.as_bytes()).ok()?;
    w.write_all(text.as_bytes()).ok()?;
    w.flush().ok()?;
    Some(Request {
        at,
        path,
        body: String::from_utf8_lossy(&body).into_owned(),
        status: reply.status,
    })
}
