//! Checkpoint files: one per source partition, `<data_dir>/_checkpoints/<source>/p<N>.ckpt`.
//!
//! A checkpoint says "every offset before `next_offset` is in durable files, and `state` is
//! the processor's open-window state right after them". It is written like a table file —
//! temporary name, fsync, rename, fsync of the directory — and only after the files it
//! covers are durable, so after a crash the pair (files, checkpoint) is always consistent.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{io_err, Result, SinkError};
use crate::file::persist;
use crate::partition::sanitize_component;

const MAGIC: &str = "inferwatch-checkpoint v1";

/// A partition's progress and processor state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The first offset not yet covered.
    pub next_offset: i64,
    /// Opaque processor state (the window operator's snapshot).
    pub state: Vec<u8>,
    /// The first offset of the co-partitioned feedback topic not yet joined, when the run
    /// reads feedback.
    pub feedback_offset: Option<i64>,
}

/// Where one source's checkpoints live.
#[derive(Debug, Clone)]
pub struct CheckpointStore {
    dir: PathBuf,
}

impl CheckpointStore {
    pub fn new(data_dir: &Path, source: &str) -> Self {
        Self {
            dir: data_dir
                .join("_checkpoints")
                .join(sanitize_component(source)),
        }
    }

    fn path(&self, partition: i32) -> PathBuf {
        self.dir.join(format!("p{partition:05}.ckpt"))
    }

    /// The partition's checkpoint, if one was written.
    pub fn load(&self, partition: i32) -> Result<Option<Checkpoint>> {
        let path = self.path(partition);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("reading", &path)(e)),
        };
        let bad = |why: &str| SinkError::Checkpoint {
            path: path.clone(),
            reason: why.to_string(),
        };
        let nl = bytes
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| bad("no header line"))?;
        let header = std::str::from_utf8(&bytes[..nl]).map_err(|_| bad("header is not UTF-8"))?;
        let mut fields = header
            .strip_prefix(MAGIC)
            .ok_or_else(|| bad("header does not start with `inferwatch-checkpoint v1`"))?
            .split_whitespace();
        let next_offset = fields
            .next()
            .and_then(|f| f.strip_prefix("next_offset="))
            .and_then(|n| n.parse::<i64>().ok())
            .ok_or_else(|| bad("header is not `inferwatch-checkpoint v1 next_offset=N`"))?;
        let feedback_offset = match fields.next() {
            None => None,
            Some(f) => Some(
                f.strip_prefix("feedback_offset=")
                    .and_then(|n| n.parse::<i64>().ok())
                    .ok_or_else(|| bad("unreadable feedback_offset in the header"))?,
            ),
        };
        Ok(Some(Checkpoint {
            next_offset,
            state: bytes[nl + 1..].to_vec(),
            feedback_offset,
        }))
    }

    /// Writes the partition's checkpoint atomically and durably.
    pub fn save(&self, partition: i32, ckpt: &Checkpoint) -> Result<()> {
        fs::create_dir_all(&self.dir).map_err(io_err("creating", &self.dir))?;
        let path = self.path(partition);
        let tmp = self.dir.join(format!(".p{partition:05}.ckpt.tmp"));
        let mut f = File::create(&tmp).map_err(io_err("creating", &tmp))?;
        let mut header = format!("{MAGIC} next_offset={}", ckpt.next_offset);
        if let Some(f) = ckpt.feedback_offset {
            header.push_str(&format!(" feedback_offset={f}"));
        }
        header.push('\n');
        f.write_all(header.as_bytes())
            .and_then(|_| f.write_all(&ckpt.state))
            .map_err(io_err("writing", &tmp))?;
        persist(f, &tmp, &path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_round_trip_and_missing_ones_are_none() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::new(dir.path(), "inference-events");
        assert_eq!(store.load(3).unwrap(), None);
        let c = Checkpoint {
            next_offset: 12_345,
            state: b"{\"x\":1}\n\0binary".to_vec(),
            feedback_offset: None,
        };
        store.save(3, &c).unwrap();
        assert_eq!(store.load(3).unwrap(), Some(c.clone()));
        let newer = Checkpoint {
            next_offset: 20_000,
            feedback_offset: Some(77),
            ..c
        };
        store.save(3, &newer).unwrap();
        assert_eq!(store.load(3).unwrap(), Some(newer));
        assert_eq!(store.load(4).unwrap(), None);
    }

    #[test]
    fn a_damaged_checkpoint_is_an_error_that_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::new(dir.path(), "t");
        fs::create_dir_all(dir.path().join("_checkpoints/t")).unwrap();
        fs::write(dir.path().join("_checkpoints/t/p00000.ckpt"), b"garbage").unwrap();
        let err = store.load(0).unwrap_err().to_string();
        assert!(err.contains("p00000.ckpt"), "{err}");
    }
}
