//! A real Kafka-protocol broker for integration tests: Tansu on a free loopback port, one per
//! test binary, stopped when the test process exits. `INFERWATCH_TEST_BROKERS=host:port`
//! points the tests at any other Kafka instead.

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;

/// A free loopback port (bound and released; good enough for tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A Tansu broker process; killed on drop and when the test process dies.
pub struct Tansu {
    pub addr: String,
    child: Child,
}

impl Tansu {
    /// Starts Tansu on `port`, storing topics and group offsets in the SQLite file `db`
    /// (they survive a restart). Tansu 0.6's `memory://` engine is not used: a fetch from an
    /// offset inside a record batch skips to the next batch there, which loses messages on
    /// every resume from a checkpoint; its SQLite engine fetches exactly.
    pub fn start(port: u16, db: &Path) -> Tansu {
        Self::start_with(port, db, false)
    }

    /// As [`Tansu::start`]; `cleanup` removes the database's directory when the test
    /// process ends.
    fn start_with(port: u16, db: &Path, cleanup: bool) -> Tansu {
        // Tansu reads `sqlite://NAME` relative to its working directory.
        let dir = db.parent().expect("the database file is in a directory");
        let storage = format!("sqlite://{}", db.file_name().unwrap().to_string_lossy());
        Self::spawn(port, port, &storage, dir, cleanup, &[])
    }

    /// [`Tansu::start`] requiring SASL (SCRAM) authentication of every client. Users are
    /// made with [`Tansu::create_user`] while the broker still runs without it.
    pub fn start_authenticating(port: u16, db: &Path) -> Tansu {
        let dir = db.parent().expect("the database file is in a directory");
        let storage = format!("sqlite://{}", db.file_name().unwrap().to_string_lossy());
        Self::spawn(port, port, &storage, dir, false, &["--authentication"])
    }

    /// A SCRAM user (`mechanism` `scram256` or `scram512`) in this broker's storage.
    pub fn create_user(&self, name: &str, password: &str, mechanism: &str) {
        let out = Command::new("tansu")
            .args([
                "user",
                "create",
                "--broker",
                &format!("tcp://{}", self.addr),
            ])
            .args(["--mechanism", mechanism, name, password])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tansu user create: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Tansu with its in-memory engine, which serves every codec's batches as produced (its
    /// SQLite engine cannot serve snappy). Fine for a fresh group reading from the start;
    /// a fetch from inside a batch skips to the next one, so no resumes mid-batch.
    pub fn start_memory(port: u16) -> Tansu {
        let dir = tempfile::tempdir().unwrap().keep();
        Self::spawn(port, port, "memory://tansu/", &dir, true, &[])
    }

    /// Listens on `port` and tells clients to connect to `advertised` (a TLS terminator in
    /// front of it, say).
    pub fn start_behind(port: u16, advertised: u16, db: &Path) -> Tansu {
        let dir = db.parent().expect("the database file is in a directory");
        let storage = format!("sqlite://{}", db.file_name().unwrap().to_string_lossy());
        Self::spawn(port, advertised, &storage, dir, false, &[])
    }

    fn spawn(
        port: u16,
        advertised: u16,
        storage: &str,
        dir: &Path,
        cleanup: bool,
        extra: &[&str],
    ) -> Tansu {
        let url = format!("tcp://127.0.0.1:{port}");
        let adv = format!("tcp://127.0.0.1:{advertised}");
        let log = std::env::temp_dir().join(format!("inferwatch-tansu-{port}.log"));
        std::fs::create_dir_all(dir).unwrap();
        let child = Command::new("tansu")
            .current_dir(dir)
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &adv])
            .args(["--storage-engine", storage])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).map(Stdio::from).unwrap_or_else(|_| Stdio::null()))
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start the Tansu broker ({e}); ./scripts/test.sh installs it with cargo install, or set INFERWATCH_TEST_BROKERS=host:port")
            });
        // A watchdog ends the broker when this test process ends, however it ends.
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "while kill -0 {} 2>/dev/null; do sleep 1; done; kill {} 2>/dev/null; {}",
                std::process::id(),
                child.id(),
                if cleanup {
                    format!("sleep 1; rm -rf '{}'", dir.display())
                } else {
                    String::new()
                }
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let addr = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(&addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "Tansu did not listen on {addr} within 30 s; see {}",
                log.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Tansu { addr, child }
    }

    /// Freezes the broker (SIGSTOP): connections stay open and requests go unanswered, as
    /// with a broker starved of CPU or stuck in a long pause.
    pub fn pause(&self) {
        signal(self.child.id(), "STOP");
    }

    /// Lets a paused broker run again (SIGCONT).
    pub fn resume(&self) {
        signal(self.child.id(), "CONT");
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        self.kill();
    }
}

/// True when the tests run against a broker they did not start.
pub fn external() -> bool {
    std::env::var("INFERWATCH_TEST_BROKERS").is_ok_and(|b| !b.is_empty())
}

/// The shared broker of this test binary.
pub fn brokers() -> &'static str {
    static BROKER: OnceLock<(String, Option<Tansu>)> = OnceLock::new();
    &BROKER
        .get_or_init(|| match std::env::var("INFERWATCH_TEST_BROKERS") {
            Ok(b) if !b.is_empty() => (b, None),
            _ => {
                let dir = tempfile::tempdir().unwrap().keep();
                let t = Tansu::start_with(free_port(), &dir.join("broker.db"), true);
                (t.addr.clone(), Some(t))
            }
        })
        .0
}

/// Creates `topic` with `partitions` partitions (replication 1).
pub fn create_topic(brokers: &str, topic: &str, partitions: i32) {
    create_topic_with(brokers, topic, partitions, &[]);
}

/// [`create_topic`] with extra client properties (TLS settings).
pub fn create_topic_with(brokers: &str, topic: &str, partitions: i32, props: &[(&str, &str)]) {
    let mut cc = ClientConfig::new();
    cc.set("bootstrap.servers", brokers);
    for (k, v) in props {
        cc.set(*k, *v);
    }
    let admin: AdminClient<DefaultClientContext> = cc.create().expect("admin client");
    let t = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(20)));
    let res = futures::executor::block_on(admin.create_topics([&t], &opts)).expect("create_topics");
    for r in res {
        if let Err((name, code)) = r {
            if code != rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists {
                panic!("creating topic {name}: {code}");
            }
        }
    }
}

/// A unique name per test and run, so tests share one broker without meeting.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Sends `SIG<name>` to process `pid`.
pub fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -{name} {pid} failed");
}
