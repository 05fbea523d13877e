//! HTTP clients for the gateway tests: a gateway process (`run`/`demo --listen`, `ingest`)
//! and curl to talk to it.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use super::broker::signal;
use super::cli::command;
use serde_json::Value;

/// A gateway process (`run --listen` or `ingest`) and the address it listens on.
pub struct Listening {
    child: Child,
    pub url: String,
    log: PathBuf,
}

impl Listening {
    /// Starts `inferwatch ARGS --listen 127.0.0.1:0` and reads the address from its banner.
    pub fn start(args: &[&str], log: PathBuf) -> Listening {
        let mut child = command()
            .args(args)
            .args(["--listen", "127.0.0.1:0"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("inferwatch starts");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut seen = String::new();
        let url = loop {
            let line = lines
                .next()
                .unwrap_or_else(|| panic!("no banner: {seen}"))
                .unwrap();
            seen.push_str(&line);
            seen.push('\n');
            if let Some(rest) = line.split("listening on http://").nth(1) {
                break format!(
                    "http://{}",
                    rest.split(':').take(2).collect::<Vec<_>>().join(":")
                );
            }
        };
        // The rest of the log goes to a file (a full pipe would block the process).
        let mut f = std::fs::File::create(&log).unwrap();
        f.write_all(seen.as_bytes()).unwrap();
        std::thread::spawn(move || {
            for l in lines.map_while(Result::ok) {
                let _ = writeln!(f, "{l}");
            }
        });
        Listening { child, url, log }
    }

    /// Waits for the process to end by itself, cleanly.
    pub fn wait(mut self) {
        let status = self.child.wait().unwrap();
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        assert!(status.success(), "{status}: {log}");
    }

    /// SIGINT, then waits for a clean exit.
    pub fn stop(mut self) {
        signal(self.child.id(), "INT");
        let status = self.child.wait().unwrap();
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        assert!(status.success(), "{status}: {log}");
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

/// An HTTP answer as curl saw it.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: String,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
}

/// `curl -X POST url --data-binary @body` with `headers`.
pub fn post(url: &str, headers: &[&str], body: &[u8]) -> Answer {
    let dir = tempfile::tempdir().unwrap();
    let (req, resp, head) = (
        dir.path().join("req"),
        dir.path().join("resp"),
        dir.path().join("head"),
    );
    std::fs::write(&req, body).unwrap();
    let mut c = Command::new("curl");
    c.args(["-s", "-X", "POST", "-o"])
        .arg(&resp)
        .arg("-D")
        .arg(&head);
    c.args(["-w", "%{http_code}", "--max-time", "30"]);
    for h in headers {
        c.args(["-H", h]);
    }
    c.arg("--data-binary")
        .arg(format!("@{}", req.display()))
        .arg(url);
    let out = c.output().expect("curl runs");
    Answer {
        status: String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0),
        headers: std::fs::read_to_string(&head).unwrap_or_default(),
        body: std::fs::read(&resp).unwrap_or_default(),
    }
}

pub fn get(url: &str) -> String {
    let out = Command::new("curl").args(["-s", url]).output().unwrap();
    String::from_utf8(out.stdout).unwrap()
}

/// Posts `n` events numbered from `first` in one NDJSON request.
pub fn post_batch(url: &str, first: usize, n: usize) -> (Answer, Vec<String>) {
    let ids: Vec<String> = (first..first + n).map(|i| format!("ev-{i:06}")).collect();
    let body: String = ids
        .iter()
        .enumerate()
        .map(|(k, id)| {
            let svc = ["search", "checkout", "support"][k % 3];
            format!(
                "{{\"event_id\":\"{id}\",\"timestamp\":{},\"service\":\"{svc}\",\"model\":\"m{}\"}}\n",
                1_767_225_600_000u64 + first as u64 * 10 + k as u64,
                k % 2
            )
        })
        .collect();
    (
        post(
            url,
            &["Content-Type: application/x-ndjson"],
            body.as_bytes(),
        ),
        ids,
    )
}
