//! The object-store side of [`super::Store`]: an S3-compatible bucket through the
//! `object_store` crate, driven from the synchronous sink by a small runtime of its own, with
//! retries that outwait an outage and errors that never carry a secret.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjPath;
use object_store::{ClientOptions, ObjectStore, RetryConfig};

use super::StoreOptions;
use crate::error::{Result, SinkError};

pub(super) struct Remote {
    pub(super) store: Arc<dyn ObjectStore>,
    /// The prefix inside the bucket ("" for the bucket root).
    prefix: String,
    /// `s3://bucket/prefix`, for messages.
    pub(super) url: String,
    /// Drives the async client for the synchronous sink.
    pub(super) rt: Arc<tokio::runtime::Runtime>,
    /// True while calls are failing and being retried (one log line per outage).
    troubled: Arc<AtomicBool>,
    /// Secret values to keep out of error messages.
    secrets: Vec<String>,
}

impl Remote {
    pub(super) fn s3(rest: &str, o: &StoreOptions) -> Result<Self> {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(SinkError::Store(format!(
                "data_dir s3://{rest}: name a bucket, e.g. s3://my-bucket/inferwatch"
            )));
        }
        let mut b = AmazonS3Builder::from_env().with_bucket_name(bucket);
        if let Some(v) = &o.endpoint {
            b = b.with_endpoint(v);
        }
        if let Some(v) = &o.region {
            b = b.with_region(v);
        }
        if let Some(v) = &o.access_key_id {
            b = b.with_access_key_id(v);
        }
        if let Some(v) = &o.secret_access_key {
            b = b.with_secret_access_key(v);
        }
        let endpoint = o
            .endpoint
            .clone()
            .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok())
            .or_else(|| std::env::var("AWS_ENDPOINT").ok());
        let plain_http = endpoint
            .as_deref()
            .is_some_and(|e| e.starts_with("http://"));
        if o.region.is_none() && std::env::var_os("AWS_REGION").is_none() && endpoint.is_some() {
            // S3-compatible servers accept any region; the client needs one to sign.
            b = b.with_region("us-east-1");
        }
        // Our own loop retries without end while the server is away; the client's retries
        // only smooth single hiccups.
        b = b
            .with_retry(RetryConfig {
                max_retries: 2,
                retry_timeout: Duration::from_secs(10),
                ..RetryConfig::default()
            })
            .with_client_options(
                ClientOptions::new()
                    // A local MinIO or SeaweedFS speaks plain HTTP; AWS itself never does.
                    .with_allow_http(plain_http)
                    .with_connect_timeout(Duration::from_secs(5))
                    .with_timeout(Duration::from_secs(120)),
            );
        let url = format!("s3://{}", rest.trim_end_matches('/'));
        let secrets = [
            o.secret_access_key.clone(),
            std::env::var("AWS_SECRET_ACCESS_KEY").ok(),
        ]
        .into_iter()
        .flatten()
        .filter(|s| s.len() >= 4)
        .collect();
        let store = b
            .build()
            .map_err(|e| SinkError::Store(format!("{url}: {e}")))?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("inferwatch-store")
            .enable_all()
            .build()
            .map_err(|e| SinkError::Store(format!("{url}: starting the client: {e}")))?;
        Ok(Self {
            store: Arc::new(store),
            prefix: prefix.trim_matches('/').to_string(),
            url,
            rt: Arc::new(rt),
            troubled: Arc::new(AtomicBool::new(false)),
            secrets,
        })
    }

    pub(super) fn child(&self, key: &str) -> Remote {
        Remote {
            store: self.store.clone(),
            url: format!("{}/{}", self.url, key.trim_matches('/')),
            prefix: join(&self.prefix, key),
            rt: self.rt.clone(),
            troubled: self.troubled.clone(),
            secrets: self.secrets.clone(),
        }
    }

    pub(super) fn path(&self, key: &str) -> ObjPath {
        ObjPath::from(join(&self.prefix, key))
    }

    /// `location` relative to the prefix.
    pub(super) fn relative(&self, location: &str) -> Option<String> {
        if self.prefix.is_empty() {
            return Some(location.to_string());
        }
        location
            .strip_prefix(&self.prefix)
            .and_then(|r| r.strip_prefix('/'))
            .map(str::to_string)
    }

    fn scrub(&self, text: String) -> String {
        self.secrets
            .iter()
            .fold(text, |t, s| t.replace(s.as_str(), "(redacted)"))
    }

    /// An error that will not go away by retrying, as the caller should see it.
    pub(super) fn fatal(&self, what: &str, e: &object_store::Error) -> SinkError {
        use object_store::Error as E;
        let hint = match e {
            E::PermissionDenied { .. } | E::Unauthenticated { .. } => {
                " (check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY and the bucket policy)"
            }
            E::NotFound { .. } => " (does the bucket exist?)",
            _ => " (check the bucket name, AWS_ENDPOINT_URL and the credentials)",
        };
        SinkError::Store(self.scrub(format!("{what} {}: {e}{hint}", self.url)))
    }

    pub(super) fn retry<T, F, Fut>(&self, what: &'static str, key: &str, op: F) -> Result<T>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = object_store::Result<T>>,
    {
        self.retry_with(what, key, false, op)
    }

    /// Runs `op` until it succeeds or fails for a reason retrying cannot change. Missing
    /// objects come back as [`SinkError::Missing`], and existing ones (for conditional
    /// writes) as [`SinkError::Exists`].
    pub(super) fn retry_with<T, F, Fut>(
        &self,
        what: &'static str,
        key: &str,
        create: bool,
        op: F,
    ) -> Result<T>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = object_store::Result<T>>,
    {
        use object_store::Error as E;
        let mut wait = Duration::from_millis(200);
        loop {
            match self.rt.block_on(op()) {
                Ok(t) => {
                    if self.troubled.swap(false, Ordering::Relaxed) {
                        tracing::info!("object store {}: reachable again", self.url);
                    }
                    return Ok(t);
                }
                Err(E::NotFound { .. }) => return Err(SinkError::Missing(key.to_string())),
                Err(E::AlreadyExists { .. }) if create => {
                    return Err(SinkError::Exists(key.to_string()))
                }
                Err(E::Precondition { .. }) if create => {
                    return Err(SinkError::Exists(key.to_string()))
                }
                Err(
                    e @ (E::PermissionDenied { .. }
                    | E::Unauthenticated { .. }
                    | E::NotSupported { .. }
                    | E::NotImplemented { .. }
                    | E::InvalidPath { .. }
                    | E::UnknownConfigurationKey { .. }),
                ) => {
                    return Err(self.fatal(what, &e));
                }
                Err(e) => {
                    if !self.troubled.swap(true, Ordering::Relaxed) {
                        tracing::warn!(
                            "object store {}: {what} {key} failed: {}; retrying until it \
                             answers (nothing is lost meanwhile)",
                            self.url,
                            self.scrub(e.to_string())
                        );
                    }
                    std::thread::sleep(wait);
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

fn join(prefix: &str, key: &str) -> String {
    let key = key.trim_matches('/');
    match (prefix.is_empty(), key.is_empty()) {
        (true, _) => key.to_string(),
        (false, true) => prefix.to_string(),
        (false, false) => format!("{prefix}/{key}"),
    }
}
