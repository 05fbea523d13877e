//! The one inferwatch configuration file (TOML). Every key has a default that works; see
//! `config.example.toml` for all of them. Command-line flags override the file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Context, Result, RuntimeError};
use inferwatch_ingest::gateway::GatewayConfig;
use inferwatch_processor::ProcessorConfig;
use inferwatch_schemas::Limits;
use inferwatch_sink::{ParquetOptions, Store, StoreOptions};
use serde::Deserialize;

use inferwatch_schemas::time::deserialize_duration as duration;

/// `[source]`: how payloads are read.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SourceConfig {
    /// Payloads per micro-batch. Workers hold a few batches in flight (about 8 MB each, raw
    /// and decoded, at 8,192); 4,096 measured no smaller and 0.45 % more instructions.
    pub batch_size: usize,
    /// Largest accepted payload, in bytes; larger ones go to `dead_letter`.
    pub max_payload_bytes: usize,
    /// File replays: partitions the file is read as, keyed by `service` (1: one).
    pub file_partitions: u32,
}

impl Default for SourceConfig {
    fn default() -> Self {
        Self {
            batch_size: 8192,
            max_payload_bytes: 1 << 20,
            file_partitions: 16,
        }
    }
}

/// `[sink]`: how Parquet files are written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SinkConfig {
    /// Roll `events` / `dead_letter` files after this many rows.
    pub max_file_rows: usize,
    /// ...or after this much wall-clock time, whichever comes first (live sources).
    #[serde(deserialize_with = "duration")]
    pub roll_interval: Duration,
    /// zstd level, 1–22. 1 by default: on `events` it wrote files 0.3 % larger than 3 for
    /// 9 % less CPU a run, Parquet's encodings having taken most of what a higher level finds.
    pub zstd_level: i32,
    /// Rows per Parquet row group.
    pub row_group_rows: usize,
    /// Write the `events` table. Off: only metrics and dead letters are kept.
    pub write_events: bool,
}

impl Default for SinkConfig {
    fn default() -> Self {
        Self {
            max_file_rows: 1_000_000,
            roll_interval: Duration::from_secs(60),
            zstd_level: ParquetOptions::default().zstd_level,
            row_group_rows: ParquetOptions::default().row_group_rows,
            write_events: true,
        }
    }
}

impl SinkConfig {
    pub fn parquet(&self) -> ParquetOptions {
        ParquetOptions {
            zstd_level: self.zstd_level,
            row_group_rows: self.row_group_rows,
        }
    }
}

/// `[runtime]`: how the work is spread over threads, and what may go to disk.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// Threads that decode and aggregate: each source partition runs on one of them, one
    /// batch at a time, so results do not depend on this number. 0: one per core. 1: one
    /// thread does everything, writing Parquet too.
    pub threads: usize,
    /// MiB of memory for the exact `sessions` counts of open windows (8 bytes per distinct
    /// session per window and key), all partitions together. Past it their values move to
    /// files in `spill_dir` and are merged back when the window closes: values stay exact,
    /// memory stays flat however many sessions a window sees.
    pub sessions_memory_mb: usize,
    /// Where those files go. They are unlinked as soon as they are made, so they hold space
    /// only while open and a crash leaves nothing behind. "": `<data_dir>/_spill` for a
    /// local `data_dir`, the system's temporary directory for `s3://`.
    pub spill_dir: String,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            threads: 0,
            sessions_memory_mb: 16,
            spill_dir: String::new(),
        }
    }
}

impl RuntimeConfig {
    /// `threads`, with 0 resolved to the cores available.
    pub fn threads(&self) -> usize {
        match self.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }
}

/// `[http]`: the process's own health over HTTP, for Prometheus and orchestrators:
/// `/metrics` (Prometheus text format), `/livez`, `/readyz`. Off unless an address is given.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address to serve on, e.g. "127.0.0.1:9464"; "" serves nothing (flag: --http).
    pub listen: String,
    /// `/readyz` answers 200 once the partitions held are restored and none is more than
    /// this many messages behind its end (Kafka).
    pub ready_max_lag: u64,
    /// `/livez` answers 503 when the main loop has not turned for this long (stuck).
    #[serde(deserialize_with = "duration")]
    pub live_timeout: Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: String::new(),
            ready_max_lag: 10_000,
            live_timeout: Duration::from_secs(60),
        }
    }
}

/// `[checkpoint]`: how often partition progress is made durable (Kafka sources).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckpointConfig {
    /// Every this often, each partition's open files are completed and its offsets and
    /// window state written. Shorter: less to replay after a crash, more small files.
    #[serde(deserialize_with = "duration")]
    pub interval: Duration,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(10),
        }
    }
}

/// `[kafka]`: the broker connection for `inferwatch run --brokers` and `generate --brokers`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Bootstrap servers, `host:port[,host:port]`; empty means no Kafka (flag: --brokers).
    pub brokers: String,
    /// Consumer group; processors in one group split the partitions (flag: --group).
    pub group: String,
    /// Topic of inference events (flag: --topic).
    pub topic: String,
    /// Where dead letters are also published; "" turns it off.
    pub dead_letter_topic: String,
    /// Where closed-window metric rows are published as JSON; "" turns it off.
    pub metrics_topic: String,
    /// Feedback events (late labels), keyed like their predictions (`service/model`) with as
    /// many partitions as `topic`: partition p's feedback is joined by whoever owns events
    /// partition p, exactly once. "" (the default) reads no feedback.
    pub feedback_topic: String,
    /// Every alert notice (firing, resolved, reminders, breakers) as JSON, keyed
    /// `service/model`; "" turns it off.
    pub alerts_topic: String,
    /// Circuit-breaker transitions as JSON, keyed `service/model`, for services to fall back
    /// on; "" turns it off.
    pub control_topic: String,
    /// Extra librdkafka properties for every client, e.g. `"security.protocol" = "SASL_SSL"`.
    pub properties: inferwatch_schemas::ClientProperties,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: String::new(),
            group: "inferwatch".into(),
            topic: "inference-events".into(),
            dead_letter_topic: "inference-dead-letter".into(),
            metrics_topic: "inference-metrics".into(),
            feedback_topic: String::new(),
            alerts_topic: "inference-alerts".into(),
            control_topic: "inference-control".into(),
            properties: Default::default(),
        }
    }
}

/// `[slack]`: incoming webhooks that get alert notices.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SlackSection {
    /// Incoming-webhook URLs. Secrets: never printed or logged. `--slack-webhook` or the
    /// `INFERWATCH_SLACK_WEBHOOK` environment variable add one.
    pub webhooks: Vec<String>,
    /// At least this long between two messages to one webhook (Slack allows about 1/s).
    #[serde(deserialize_with = "duration")]
    pub min_interval: Duration,
    /// First wait after a 5xx or network error; doubles (with jitter) up to `max_backoff`.
    #[serde(deserialize_with = "duration")]
    pub initial_backoff: Duration,
    #[serde(deserialize_with = "duration")]
    pub max_backoff: Duration,
    /// How long one request may take.
    #[serde(deserialize_with = "duration")]
    pub timeout: Duration,
}

impl Default for SlackSection {
    fn default() -> Self {
        use inferwatch_sink::slack::SlackConfig as D;
        Self {
            webhooks: Vec::new(),
            min_interval: D::MIN_INTERVAL,
            initial_backoff: D::INITIAL_BACKOFF,
            max_backoff: D::MAX_BACKOFF,
            timeout: D::TIMEOUT,
        }
    }
}

impl std::fmt::Debug for SlackSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackSection")
            .field("webhooks", &format!("{} (redacted)", self.webhooks.len()))
            .field("min_interval", &self.min_interval)
            .finish_non_exhaustive()
    }
}

impl SlackSection {
    /// One delivery config per webhook.
    pub fn deliveries(&self) -> Result<Vec<inferwatch_sink::slack::SlackConfig>> {
        self.webhooks
            .iter()
            .map(|w| {
                let mut c = inferwatch_sink::slack::SlackConfig::new(w.clone())?;
                c.min_interval = self.min_interval;
                c.initial_backoff = self.initial_backoff;
                c.max_backoff = self.max_backoff;
                c.timeout = self.timeout;
                Ok(c)
            })
            .collect()
    }
}

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the Parquet tables, checkpoints and the alert outbox go: a local directory, or
    /// `s3://bucket/prefix` for processors on many machines.
    pub data_dir: PathBuf,
    pub storage: StoreOptions,
    pub source: SourceConfig,
    pub sink: SinkConfig,
    pub checkpoint: CheckpointConfig,
    pub runtime: RuntimeConfig,
    pub kafka: KafkaConfig,
    pub slack: SlackSection,
    pub http: HttpConfig,
    pub gateway: GatewayConfig,
    #[serde(flatten)]
    pub processor: ProcessorConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./inferwatch-data"),
            storage: StoreOptions::default(),
            source: SourceConfig::default(),
            sink: SinkConfig::default(),
            checkpoint: CheckpointConfig::default(),
            runtime: RuntimeConfig::default(),
            kafka: KafkaConfig::default(),
            slack: SlackSection::default(),
            http: HttpConfig::default(),
            gateway: GatewayConfig::default(),
            processor: ProcessorConfig::default(),
        }
    }
}

impl Config {
    /// Reads `path`, or the defaults when `None`.
    pub fn load(path: Option<&Path>) -> Result<Self> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("in config file {}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Self> {
        let config: Config =
            toml::from_str(text).map_err(|e| RuntimeError::Config(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// The partitions a file replay reads its file as: `[source] file_partitions`, except
    /// where splitting by service would change a result. Tenant budgets add up spend across
    /// services, and feedback from a file joins once every partition has passed its time
    /// (a partition still being gathered would not hold it back): those runs keep the
    /// file in one partition.
    pub fn file_partitions(&self, with_feedback: bool) -> u32 {
        if with_feedback || !self.processor.budgets.tenants.is_empty() {
            1
        } else {
            self.source.file_partitions
        }
    }

    /// The size limits every payload is validated against: the pipeline's decoder and the
    /// gateway's use the same.
    pub fn limits(&self) -> Limits {
        Limits {
            max_payload_bytes: self.source.max_payload_bytes,
            ..Limits::default()
        }
    }

    /// Opens `data_dir`; an object store is checked (bucket, credentials) before anything
    /// runs.
    pub fn open_store(&self) -> Result<Store> {
        open_store(&self.data_dir, &self.storage)
    }

    pub fn validate(&self) -> Result<()> {
        if self.source.file_partitions == 0 {
            return Err(RuntimeError::Config(
                "source.file_partitions must be at least 1".into(),
            ));
        }
        if self.source.batch_size == 0 {
            return Err(RuntimeError::Config(
                "source.batch_size must be at least 1".into(),
            ));
        }
        if !(1..=22).contains(&self.sink.zstd_level) {
            return Err(RuntimeError::Config(
                "sink.zstd_level must be between 1 and 22".into(),
            ));
        }
        if self.sink.max_file_rows == 0 || self.sink.row_group_rows == 0 {
            return Err(RuntimeError::Config(
                "sink.max_file_rows and sink.row_group_rows must be at least 1".into(),
            ));
        }
        if self.checkpoint.interval.is_zero() {
            return Err(RuntimeError::Config(
                "checkpoint.interval must be longer than 0s".into(),
            ));
        }
        if self.kafka.topic.is_empty() || self.kafka.group.is_empty() {
            return Err(RuntimeError::Config(
                "kafka.topic and kafka.group must not be empty".into(),
            ));
        }
        self.slack.deliveries().context("slack.webhooks")?;
        self.processor.validate()?;
        Ok(())
    }
}

/// Opens `data_dir` (a path or a URL) as a store to write.
pub fn open_store(data_dir: &Path, options: &StoreOptions) -> Result<Store> {
    Ok(Store::open(location(data_dir)?, options)?)
}

/// Opens `data_dir` as a store to read: read-only credentials do.
pub fn open_store_to_read(data_dir: &Path, options: &StoreOptions) -> Result<Store> {
    Ok(Store::open_to_read(location(data_dir)?, options)?)
}

fn location(data_dir: &Path) -> Result<&str> {
    data_dir
        .to_str()
        .with_context(|| format!("data_dir {} is not valid UTF-8", data_dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_config_parses_and_matches_the_defaults() {
        let text = include_str!("../../config.example.toml");
        let c = Config::parse(text).expect("config.example.toml is valid");
        let d = Config::default();
        assert_eq!(c.data_dir, d.data_dir);
        assert_eq!(c.source.batch_size, d.source.batch_size);
        assert_eq!(c.source.file_partitions, d.source.file_partitions);
        assert_eq!(c.runtime.threads, d.runtime.threads);
        assert_eq!(c.sink.max_file_rows, d.sink.max_file_rows);
        assert_eq!(c.processor.window.size, d.processor.window.size);
        assert_eq!(
            c.processor.window.max_out_of_orderness,
            d.processor.window.max_out_of_orderness
        );
        assert_eq!(c.processor.alerts.rules, d.processor.alerts.rules);
        assert_eq!(c.processor.alerts.renotify, d.processor.alerts.renotify);
        assert_eq!(c.kafka.alerts_topic, d.kafka.alerts_topic);
        assert_eq!(c.slack.min_interval, d.slack.min_interval);
        assert_eq!(c.kafka.properties, d.kafka.properties);
        assert_eq!(c.storage.endpoint, d.storage.endpoint);
        assert_eq!(c.storage.secret_access_key, d.storage.secret_access_key);
        assert_eq!(c.http.listen, d.http.listen);
        assert_eq!(c.http.ready_max_lag, d.http.ready_max_lag);
        assert_eq!(c.http.live_timeout, d.http.live_timeout);
        let (g, dg) = (&c.gateway, &d.gateway);
        assert_eq!(g.listen, dg.listen);
        assert_eq!(g.max_body_bytes, dg.max_body_bytes);
        assert_eq!(g.max_in_flight_events, dg.max_in_flight_events);
        assert_eq!(g.delivery_timeout, dg.delivery_timeout);
        assert_eq!(g.retry_after, dg.retry_after);
        assert!(g.tenants.is_empty());
        // The commented settings are real keys: uncommented, they parse.
        let uncommented: String = text
            .lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(rest) if rest.starts_with("\"s") || rest.starts_with("endpoint") => rest,
                Some(rest) if rest.starts_with("region") || rest.contains("_key") => rest,
                Some(rest) if rest.starts_with("[[gateway") || rest.starts_with("tenant =") => rest,
                Some(rest) if rest.starts_with("token_sha256") => rest,
                _ => l,
            })
            .collect::<Vec<_>>()
            .join("\n");
        let c = Config::parse(&uncommented).expect("uncommented settings parse");
        assert_eq!(
            c.kafka.properties.get("security.protocol"),
            Some("SASL_SSL")
        );
        assert_eq!(c.storage.endpoint.as_deref(), Some("http://minio:9000"));
        assert_eq!(c.gateway.tenants.len(), 1);
        assert_eq!(c.gateway.tenants[0].tenant, "acme");
        assert!(
            !format!("{c:?}").contains("sasl.password\": \"..."),
            "redacted"
        );
    }

    #[test]
    fn bad_configs_say_what_is_wrong() {
        let cases = [
            ("[window]\nsize = \"forever\"", "not a duration"),
            ("[window]\nsize = \"1m\"\nslide = \"7s\"", "must divide"),
            ("[windw]\nsize = \"1m\"", "unknown field"),
            ("[sink]\nzstd_level = 40", "zstd_level"),
            (
                "[[custom_metrics]]\nname = \"requests\"\nsql = \"count(*)\"",
                "already a column",
            ),
            (
                "[[custom_metrics]]\nname = \"Bad Name\"\nsql = \"count(*)\"",
                "lower-case",
            ),
        ];
        for (text, want) in cases {
            let err = format!("{:#}", Config::parse(text).unwrap_err());
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }
}
