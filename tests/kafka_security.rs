//! Kafka as managed clusters run it, against real parts: TLS through a terminator (stunnel)
//! with a CA made by the test, SASL settings and the broker's refusal, topics compressed with
//! every codec by a second, pure-Python client (kafka-python, not librdkafka), and a batch
//! no client can decompress — reported with its position, never skipped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::broker::{create_topic, create_topic_with, free_port, unique, Tansu};
use common::cli::*;
use common::runs::*;
use common::test_dir;

fn sh(dir: &Path, script: &str) {
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, and a certificate for 127.0.0.1 signed by it, made with openssl in `dir`; a second,
/// unrelated CA as `other-ca.pem`.
fn make_certificates(dir: &Path) {
    sh(
        dir,
        "set -e
         openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 \
           -subj /CN=inferwatch-test-ca 2>/dev/null
         openssl req -x509 -newkey rsa:2048 -nodes -keyout other-ca.key -out other-ca.pem \
           -days 2 -subj /CN=somebody-else 2>/dev/null
         openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr \
           -subj /CN=127.0.0.1 2>/dev/null
         printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' > san.cnf
         openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
           -out server.pem -days 2 -extfile san.cnf 2>/dev/null",
    );
}

/// Tansu on a plain port behind stunnel, which terminates TLS on the port Tansu advertises.
struct TlsBroker {
    addr: String,
    _tansu: Tansu,
    stunnel: Child,
}

impl Drop for TlsBroker {
    fn drop(&mut self) {
        let _ = self.stunnel.kill();
        let _ = self.stunnel.wait();
    }
}

fn tls_broker(dir: &Path) -> TlsBroker {
    make_certificates(dir);
    let (plain, tls) = (free_port(), free_port());
    let tansu = Tansu::start_behind(plain, tls, &dir.join("tls-broker/broker.db"));
    let conf = dir.join("stunnel.conf");
    std::fs::write(
        &conf,
        format!(
            "foreground = yes\npid =\n[kafka]\naccept = 127.0.0.1:{tls}\n\
             connect = 127.0.0.1:{plain}\ncert = {}\nkey = {}\n",
            dir.join("server.pem").display(),
            dir.join("server.key").display()
        ),
    )
    .unwrap();
    let stunnel = Command::new("stunnel4")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("stunnel.log")).unwrap())
        .spawn()
        .expect("stunnel4 runs (./scripts/test.sh installs it)");
    let addr = format!("127.0.0.1:{tls}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(&addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "stunnel did not listen on {addr}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    TlsBroker {
        addr,
        _tansu: tansu,
        stunnel,
    }
}

fn config_file(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap();
    path
}

fn run_once(brokers: &str, topic: &str, data: &Path, config: &Path, idle: &str) -> Output {
    command()
        .args([
            "run",
            "--brokers",
            brokers,
            "--topic",
            topic,
            "--group",
            &unique("g"),
        ])
        .args(["--data-dir", data.to_str().unwrap(), "--window", "1m"])
        .args([
            "--config",
            config.to_str().unwrap(),
            "--stop-when-idle",
            idle,
        ])
        .output()
        .unwrap()
}

fn parquet_files(dir: &Path) -> usize {
    fn walk(p: &Path, n: &mut usize) {
        for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
            let path = e.path();
            if path.is_dir() {
                walk(&path, n);
            } else if path.extension().is_some_and(|x| x == "parquet") {
                *n += 1;
            }
        }
    }
    let mut n = 0;
    walk(dir, &mut n);
    n
}

#[test]
fn tls_with_the_right_ca_reads_everything_and_a_wrong_ca_fails_clearly() {
    let dir = test_dir();
    let broker = tls_broker(dir.path());
    let ca = dir.path().join("ca.pem");
    let tls = config_file(
        dir.path(),
        "tls.toml",
        &format!(
            "[kafka.properties]\n\"security.protocol\" = \"SSL\"\n\"ssl.ca.location\" = \"{}\"\n",
            ca.display()
        ),
    );
    let topic = unique("tls");
    create_topic_with(
        &broker.addr,
        &topic,
        2,
        &[
            ("security.protocol", "SSL"),
            ("ssl.ca.location", ca.to_str().unwrap()),
        ],
    );
    // The generator's producer takes the same settings from the config file.
    ok(&[
        "generate",
        "--config",
        tls.to_str().unwrap(),
        "--brokers",
        &broker.addr,
        "--topic",
        &topic,
        "--count",
        "5000",
        "--seed",
        "3",
    ]);
    let data = dir.path().join("tls-data");
    let out = run_once(&broker.addr, &topic, &data, &tls, "4s");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        count(&data, "SELECT count(DISTINCT event_id) FROM events"),
        5000
    );

    let wrong = config_file(
        dir.path(),
        "wrong.toml",
        &format!(
            "[kafka.properties]\n\"security.protocol\" = \"SSL\"\n\"ssl.ca.location\" = \"{}\"\n",
            dir.path().join("other-ca.pem").display()
        ),
    );
    let data = dir.path().join("wrong-data");
    let out = run_once(&broker.addr, &topic, &data, &wrong, "2s");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a wrong CA must fail: {err}");
    assert!(
        err.contains("certificate verify failed") && err.contains("ssl.ca.location"),
        "{err}"
    );
    assert_eq!(parquet_files(&data), 0, "nothing written");
}

fn sasl_config(dir: &Path, mechanism: &str, user: &str, password: &str) -> PathBuf {
    config_file(
        dir,
        &format!("sasl-{mechanism}-{user}.toml"),
        &format!(
            "[kafka.properties]\n\"security.protocol\" = \"SASL_PLAINTEXT\"\n\
             \"sasl.mechanism\" = \"{mechanism}\"\n\"sasl.username\" = \"{user}\"\n\
             \"sasl.password\" = \"{password}\"\n"
        ),
    )
}

#[test]
fn sasl_scram_reads_everything_and_a_wrong_password_is_refused_clearly() {
    let dir = test_dir();
    let port = free_port();
    let db = dir.path().join("sasl-broker/broker.db");
    let secret = "pa55-W0rd-never-shown";
    // Users are made while the broker is open; then it restarts requiring SCRAM.
    let mut open = Tansu::start(port, &db);
    open.create_user("iw512", secret, "scram512");
    open.create_user("iw256", secret, "scram256");
    open.kill();
    let broker = Tansu::start_authenticating(port, &db);
    for (user, mechanism) in [("iw512", "SCRAM-SHA-512"), ("iw256", "SCRAM-SHA-256")] {
        let cfg = sasl_config(dir.path(), mechanism, user, secret);
        let topic = unique("sasl");
        let props = [
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanism", mechanism),
            ("sasl.username", user),
            ("sasl.password", secret),
        ];
        create_topic_with(&broker.addr, &topic, 2, &props);
        ok(&[
            "generate",
            "--config",
            cfg.to_str().unwrap(),
            "--brokers",
            &broker.addr,
            "--topic",
            &topic,
            "--count",
            "2000",
            "--seed",
            "9",
        ]);
        let data = dir.path().join(format!("data-{mechanism}"));
        let out = run_once(&broker.addr, &topic, &data, &cfg, "4s");
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(out.status.success(), "{mechanism}: {err}");
        assert!(!err.contains(secret), "{mechanism}: {err}");
        assert_eq!(
            count(&data, "SELECT count(DISTINCT event_id) FROM events"),
            2000
        );

        // The wrong password: the brokers' refusal, clearly, and never the password.
        let wrong = "Wr0ng-pa55-not-shown";
        let cfg = sasl_config(dir.path(), mechanism, user, wrong);
        let data = dir.path().join(format!("wrong-{mechanism}"));
        let out = run_once(&broker.addr, &topic, &data, &cfg, "2s");
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(
            !out.status.success(),
            "{mechanism}: a wrong password must fail: {err}"
        );
        assert!(err.contains("never got a partition"), "{mechanism}: {err}");
        assert!(
            err.contains("Authentication") || err.contains("SASL"),
            "{mechanism}: {err}"
        );
        assert!(
            !err.contains(wrong) && !err.contains(secret),
            "{mechanism}: {err}"
        );
        assert_eq!(parquet_files(&data), 0);
    }
}

/// Produces `file` to `topic` with kafka-python and `codec`.
fn produce_python(brokers: &str, topic: &str, file: &Path, codec: &str, extra: &[&str]) -> String {
    let out = Command::new("python3")
        .arg("tests/reference/produce_codecs.py")
        .args([brokers, topic, file.to_str().unwrap(), codec])
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kafka-python ({codec}): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn topics_compressed_with_every_codec_by_another_client_are_read_exactly_once() {
    let dir = test_dir();
    let tansu = Tansu::start_memory(free_port());
    let args = ["--count", "5000", "--seed", "11", "--scenario", "malformed"];
    let reference = reference(dir.path(), &args);
    let input = dir.path().join("ref.ndjson");
    let quick = config_file(dir.path(), "quick.toml", "[source]\nbatch_size = 1000\n");
    for codec in ["gzip", "snappy", "lz4", "zstd"] {
        let topic = unique(codec);
        create_topic(&tansu.addr, &topic, 2);
        produce_python(&tansu.addr, &topic, &input, codec, &[]);
        let data = dir.path().join(format!("{codec}-data"));
        let out = run_once(&tansu.addr, &topic, &data, &quick, "4s");
        assert!(
            out.status.success(),
            "{codec}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (n, distinct) = event_ids(&data);
        assert_eq!((n, distinct), (reference.valid, reference.valid), "{codec}");
        assert_eq!(
            count(&data, "SELECT count(*) FROM dead_letter"),
            reference.dead,
            "{codec}"
        );
    }
}

#[test]
fn a_batch_no_client_can_decompress_stops_the_partition_with_its_position() {
    let dir = test_dir();
    let tansu = Tansu::start_memory(free_port());
    let input = generate(dir.path(), "in.ndjson", &["--count", "4000", "--seed", "5"]);
    let topic = unique("corrupt");
    create_topic(&tansu.addr, &topic, 1);
    produce_python(
        &tansu.addr,
        &topic,
        &input,
        "gzip",
        &["--corrupt-after", "3000"],
    );
    let data = dir.path().join("data");
    let quick = config_file(dir.path(), "quick.toml", "[source]\nbatch_size = 500\n");
    let group = unique("g");
    let run = || {
        command()
            .args([
                "run",
                "--brokers",
                &tansu.addr,
                "--topic",
                &topic,
                "--group",
                &group,
            ])
            .args(["--data-dir", data.to_str().unwrap(), "--window", "1m"])
            .args([
                "--config",
                quick.to_str().unwrap(),
                "--stop-when-idle",
                "4s",
            ])
            .output()
            .unwrap()
    };
    for attempt in 0..2 {
        let out = run();
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(
            !out.status.success(),
            "attempt {attempt}: must not end well: {err}"
        );
        assert!(
            err.contains(&topic) && err.contains("partition 0") && err.contains("offset 3000"),
            "attempt {attempt}: names topic, partition and offset: {err}"
        );
        assert!(err.contains("without skipping"), "{err}");
        // Everything before the batch is there once; nothing after it.
        assert_eq!(event_ids(&data), (3000, 3000), "attempt {attempt}");
    }
}
