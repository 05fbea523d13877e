//! Where everything the processor writes lives: a local directory (the default) or a prefix
//! in an S3-compatible bucket (`s3://bucket/prefix`), behind one small interface of whole
//! objects addressed by relative `/`-separated keys such as `metrics/date=…/hour=…/w….parquet`.
//!
//! Every write is atomic: readers see the old object or the whole new one. On local disk
//! that is a temporary name, fsync, rename and an fsync of the directory; an object PUT is
//! atomic by itself. [`Store::put_new`] is the conditional write checkpoints are committed
//! with: it fails when the key exists (`link(2)` locally, `If-None-Match: *` on S3), so two
//! processors that both believe they own a partition cannot both commit.
//!
//! Object-store calls are retried while the server is unreachable or failing (a log line
//! when trouble starts and one when it ends), so a store outage stalls the pipeline instead
//! of failing it; answers that will not change (denied, not found) return at once.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use crate::error::{io_err, Result, SinkError};

mod local;
mod remote;

pub(crate) use local::create_tmp;
use local::{list_local, sync_dir, write_all};
use remote::Remote;

/// A local directory or an object-store prefix. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    backend: Arc<Backend>,
    /// Objects finished through [`Store::create`] (the Parquet files) and their bytes,
    /// counted over every clone of this store.
    finished: Arc<[AtomicU64; 2]>,
}

enum Backend {
    Local(PathBuf),
    Object(Remote),
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Store({})", self.display())
    }
}

/// `[storage]`: the object store behind `data_dir = "s3://bucket/prefix"`. Every key falls
/// back to the standard AWS environment variable, the better place for the keys.
#[derive(Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreOptions {
    /// S3 endpoint of a non-AWS store, e.g. `http://minio:9000` (env `AWS_ENDPOINT_URL`).
    pub endpoint: Option<String>,
    /// Region (env `AWS_REGION`; `us-east-1` when an endpoint is set and no region is).
    pub region: Option<String>,
    /// Access key id (env `AWS_ACCESS_KEY_ID`).
    pub access_key_id: Option<String>,
    /// Secret access key (env `AWS_SECRET_ACCESS_KEY`). A secret: never printed or logged.
    pub secret_access_key: Option<String>,
}

impl std::fmt::Debug for StoreOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreOptions")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "(redacted)"),
            )
            .finish()
    }
}

/// The schemes a `data_dir` may use in this build.
pub const SUPPORTED: &str = "a local path, file://PATH or s3://BUCKET/PREFIX";

impl Store {
    /// A local directory.
    pub fn local(dir: impl Into<PathBuf>) -> Self {
        Self {
            backend: Arc::new(Backend::Local(dir.into())),
            finished: Arc::default(),
        }
    }

    /// Opens `location`: a local path, `file://PATH` or `s3://bucket/prefix`. An object
    /// store is checked before anything is read: the bucket must exist, the credentials
    /// must allow listing and writing, and the server must honour conditional writes.
    pub fn open(location: &str, options: &StoreOptions) -> Result<Self> {
        Self::open_checked(location, options, true)
    }

    /// [`Store::open`] for readers (`inferwatch query`): the bucket must exist and be
    /// listable; nothing is written, so read-only credentials do.
    pub fn open_to_read(location: &str, options: &StoreOptions) -> Result<Self> {
        Self::open_checked(location, options, false)
    }

    fn open_checked(location: &str, options: &StoreOptions, writer: bool) -> Result<Self> {
        match location.split_once("://") {
            None => Ok(Self::local(location)),
            Some(("file", path)) => Ok(Self::local(path)),
            Some(("s3" | "s3a", rest)) => {
                let store = Self {
                    backend: Arc::new(Backend::Object(Remote::s3(rest, options)?)),
                    finished: Arc::default(),
                };
                match writer {
                    true => store.check()?,
                    false => store.check_listing()?,
                }
                Ok(store)
            }
            Some((scheme, _)) => Err(SinkError::Store(format!(
                "data_dir {location:?}: the scheme {scheme}:// is not supported by this build \
                 (use {SUPPORTED})"
            ))),
        }
    }

    /// `s3://bucket/prefix` or the local directory, for messages.
    pub fn display(&self) -> String {
        match &*self.backend {
            Backend::Local(p) => p.display().to_string(),
            Backend::Object(r) => r.url.clone(),
        }
    }

    /// The directory, when the store is local disk.
    pub fn local_dir(&self) -> Option<&Path> {
        match &*self.backend {
            Backend::Local(p) => Some(p),
            Backend::Object(_) => None,
        }
    }

    /// The object store and the URL of its root, for query engines to register.
    pub fn object_store(&self) -> Option<(Arc<dyn ObjectStore>, String)> {
        match &*self.backend {
            Backend::Local(_) => None,
            Backend::Object(r) => Some((r.store.clone(), r.url.clone())),
        }
    }

    /// A store rooted at `key` inside this one.
    pub fn child(&self, key: &str) -> Store {
        match &*self.backend {
            Backend::Local(p) => Store::local(p.join(key)),
            Backend::Object(r) => Store {
                backend: Arc::new(Backend::Object(r.child(key))),
                finished: Arc::default(),
            },
        }
    }

    /// Writes `bytes` as `key`, replacing any object of that name, atomically and durably.
    pub fn put(&self, key: &str, bytes: Vec<u8>) -> Result<()> {
        match &*self.backend {
            Backend::Local(root) => {
                let path = root.join(key);
                let (tmp, file) = create_tmp(&path)?;
                write_all(file, &tmp, &bytes).and_then(|f| crate::file::persist(f, &tmp, &path))
            }
            Backend::Object(r) => {
                let payload = PutPayload::from(bytes);
                r.retry("writing", key, || {
                    let (s, p, payload) = (r.store.clone(), r.path(key), payload.clone());
                    async move { s.put(&p, payload).await.map(|_| ()) }
                })
            }
        }
    }

    /// Writes `bytes` as `key` only if no object of that name exists: `Ok(false)` when one
    /// does (someone else wrote it first).
    pub fn put_new(&self, key: &str, bytes: Vec<u8>) -> Result<bool> {
        match &*self.backend {
            Backend::Local(root) => {
                let path = root.join(key);
                let (tmp, file) = create_tmp(&path)?;
                let file = write_all(file, &tmp, &bytes)?;
                file.sync_all().map_err(io_err("syncing", &tmp))?;
                // link(2) fails if the name exists: the local form of If-None-Match.
                let linked = fs::hard_link(&tmp, &path);
                let _ = fs::remove_file(&tmp);
                match linked {
                    Ok(()) => {
                        sync_dir(&path)?;
                        Ok(true)
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
                    Err(e) => Err(io_err("creating", &path)(e)),
                }
            }
            Backend::Object(r) => {
                let payload = PutPayload::from(bytes.clone());
                let opts = || PutOptions::from(PutMode::Create);
                let res = r.retry_with("writing", key, true, || {
                    let (s, p, payload) = (r.store.clone(), r.path(key), payload.clone());
                    async move { s.put_opts(&p, payload, opts()).await.map(|_| ()) }
                });
                match res {
                    Ok(()) => Ok(true),
                    // A retried write (ours, or the client's own) may find its first attempt,
                    // whose answer was lost: the same bytes there are this write.
                    Err(SinkError::Exists(_)) => {
                        Ok(self.get(key)?.is_some_and(|there| there == bytes))
                    }
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// The object `key`, or `None` when there is none.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        match &*self.backend {
            Backend::Local(root) => {
                let path = root.join(key);
                match fs::read(&path) {
                    Ok(b) => Ok(Some(b)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(io_err("reading", &path)(e)),
                }
            }
            Backend::Object(r) => {
                let res = r.retry("reading", key, || {
                    let (s, p) = (r.store.clone(), r.path(key));
                    async move { s.get(&p).await?.bytes().await.map(|b| b.to_vec()) }
                });
                match res {
                    Ok(b) => Ok(Some(b)),
                    Err(SinkError::Missing(_)) => Ok(None),
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// Every object under `prefix` (a key ending in `/`, or "" for all), as keys relative
    /// to the store, sorted. Hidden temporary files of local disk are included: callers
    /// that clean up look for them.
    pub fn list(&self, prefix: &str) -> Result<Vec<String>> {
        match &*self.backend {
            Backend::Local(root) => list_local(root, prefix),
            Backend::Object(r) => {
                let mut keys: Vec<String> = r
                    .retry("listing", prefix, || {
                        let (s, p) = (r.store.clone(), r.path(prefix.trim_end_matches('/')));
                        async move {
                            s.list(Some(&p))
                                .map_ok(|m| m.location)
                                .try_collect::<Vec<ObjPath>>()
                                .await
                        }
                    })?
                    .into_iter()
                    .filter_map(|loc: ObjPath| r.relative(loc.as_ref()))
                    .collect();
                keys.sort();
                Ok(keys)
            }
        }
    }

    /// Deletes `key`; an object that is not there is no error.
    pub fn delete(&self, key: &str) -> Result<()> {
        match &*self.backend {
            Backend::Local(root) => {
                let path = root.join(key);
                match fs::remove_file(&path) {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    Err(e) => Err(io_err("removing", &path)(e)),
                }
            }
            Backend::Object(r) => {
                match r.retry("deleting", key, || {
                    let (s, p) = (r.store.clone(), r.path(key));
                    async move { s.delete(&p).await }
                }) {
                    Ok(()) | Err(SinkError::Missing(_)) => Ok(()),
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// The check [`Store::open_to_read`] runs: the prefix can be listed.
    fn check_listing(&self) -> Result<()> {
        let Backend::Object(r) = &*self.backend else {
            return Ok(());
        };
        let (s, p) = (r.store.clone(), r.path(""));
        r.rt.block_on(async move { s.list_with_delimiter(Some(&p)).await.map(|_| ()) })
            .map_err(|e| r.fatal("cannot read", &e))
    }

    /// The check [`Store::open`] runs: list, write, and a conditional write that must fail.
    fn check(&self) -> Result<()> {
        let Backend::Object(r) = &*self.backend else {
            return Ok(());
        };
        let probe = format!(
            "_inferwatch/probe-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        );
        let once = || {
            let (s, p) = (r.store.clone(), r.path(&probe));
            r.rt.block_on(async move {
                s.list_with_delimiter(Some(&p)).await?;
                let opts = PutOptions::from(PutMode::Create);
                s.put_opts(&p, PutPayload::from_static(b"probe"), opts)
                    .await
                    .map(|_| ())
            })
        };
        once().map_err(|e| r.fatal("cannot use", &e))?;
        let second = once();
        let _ = r.rt.block_on({
            let (s, p) = (r.store.clone(), r.path(&probe));
            async move { s.delete(&p).await }
        });
        use object_store::Error as E;
        match second {
            Err(E::AlreadyExists { .. } | E::Precondition { .. }) => Ok(()),
            Err(e) => Err(r.fatal("cannot use", &e)),
            Ok(()) => Err(SinkError::Store(format!(
                "{}: the server ignores conditional writes (If-None-Match: *), so two \
                 processors could both commit a partition's checkpoint; use a store that \
                 supports them (AWS S3, MinIO, SeaweedFS, R2)",
                r.url
            ))),
        }
    }
}

/// An object being written piece by piece (a Parquet file growing batch by batch): a hidden
/// temporary file on local disk, memory for an object store. [`Store::finish`] puts it in
/// place under its final key, atomically.
pub struct NewObject {
    kind: NewKind,
    /// Bytes written so far: the object's size once finished.
    written: u64,
}

enum NewKind {
    File { file: File, tmp: PathBuf },
    Memory(Vec<u8>),
}

impl Write for NewObject {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = match &mut self.kind {
            NewKind::File { file, .. } => file.write(buf)?,
            NewKind::Memory(v) => v.write(buf)?,
        };
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match &mut self.kind {
            NewKind::File { file, .. } => file.flush(),
            NewKind::Memory(_) => Ok(()),
        }
    }
}

impl Store {
    /// Starts an object that will be named `key` (or a sibling of it) when finished.
    pub fn create(&self, key: &str) -> Result<NewObject> {
        let kind = match &*self.backend {
            Backend::Local(root) => {
                let (tmp, file) = create_tmp(&root.join(key))?;
                NewKind::File { file, tmp }
            }
            Backend::Object(_) => NewKind::Memory(Vec::new()),
        };
        Ok(NewObject { kind, written: 0 })
    }

    /// Makes `obj` durable as `key`, which must be in the directory it was created for.
    pub fn finish(&self, obj: NewObject, key: &str) -> Result<()> {
        let size = obj.written;
        match (obj.kind, &*self.backend) {
            (NewKind::File { file, tmp }, Backend::Local(root)) => {
                crate::file::persist(file, &tmp, &root.join(key))?
            }
            (NewKind::Memory(buf), _) => self.put(key, buf)?,
            (NewKind::File { .. }, Backend::Object(_)) => unreachable!("made by this store"),
        }
        self.finished[0].fetch_add(1, Ordering::Relaxed);
        self.finished[1].fetch_add(size, Ordering::Relaxed);
        Ok(())
    }

    /// Objects finished through [`Store::create`] (the Parquet files) and their bytes,
    /// over this store and its clones.
    pub fn finished(&self) -> (u64, u64) {
        let [files, bytes] = &*self.finished;
        (files.load(Ordering::Relaxed), bytes.load(Ordering::Relaxed))
    }

    /// Removes what an unfinished object left behind (the caller then drops it).
    pub fn discard(&self, obj: &NewObject) -> Result<()> {
        if let NewKind::File { tmp, .. } = &obj.kind {
            match fs::remove_file(tmp) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("removing", tmp)(e)),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_store_writes_lists_and_refuses_a_second_create() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::local(dir.path());
        s.put("t/date=x/a.parquet", b"one".to_vec()).unwrap();
        assert!(s.put_new("c/p1/0001.ckpt", b"c1".to_vec()).unwrap());
        assert!(!s.put_new("c/p1/0001.ckpt", b"c2".to_vec()).unwrap());
        assert_eq!(s.get("c/p1/0001.ckpt").unwrap().unwrap(), b"c1");
        assert_eq!(s.get("nope").unwrap(), None);
        assert_eq!(s.list("t/").unwrap(), vec!["t/date=x/a.parquet"]);
        assert_eq!(s.list("").unwrap().len(), 2);
        s.delete("t/date=x/a.parquet").unwrap();
        s.delete("t/date=x/a.parquet").unwrap();
        assert!(s.list("t/").unwrap().is_empty());
        assert_eq!(s.child("c").list("").unwrap(), vec!["p1/0001.ckpt"]);
    }

    #[test]
    fn unsupported_schemes_are_refused_by_name() {
        let err = Store::open("gs://bucket/x", &StoreOptions::default()).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("gs://") && text.contains("s3://"), "{text}");
        assert!(Store::open("s3:///x", &StoreOptions::default()).is_err());
    }
}
