//! Room on disk for the exact `sessions` counts of open windows.
//!
//! A window's `sessions` column counts distinct session ids exactly, so its state grows with
//! the sessions it saw: 8 bytes per session per (window × key), whatever the rest of the
//! state does. Past a budget shared by every partition of the process, a partition writes
//! the sorted values of its sets out as runs and keeps in memory only what comes after; a
//! window's count merges its runs when it closes. Values stay exact.
//!
//! The processor does no I/O itself: the runtime hands it a [`SpillDir`] (files that vanish
//! when their last handle drops), and tests hand it one in memory.

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// A file runs are appended to and read back from.
pub trait SpillFile: Send + Sync + fmt::Debug {
    /// Appends `bytes`; returns the offset they start at.
    fn append(&self, bytes: &[u8]) -> io::Result<u64>;
    /// Fills `buf` from `offset` (bytes written before).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
}

/// Where spill files are made.
pub trait SpillDir: Send + Sync + fmt::Debug {
    /// A new empty file, removed once its last handle drops.
    fn create(&self) -> io::Result<Arc<dyn SpillFile>>;
}

/// The spill budget of one process and where it spills: shared by every partition's window
/// operator.
#[derive(Debug)]
pub struct Spill {
    dir: Box<dyn SpillDir>,
    /// Bytes of `sessions` sets all partitions together may hold in memory.
    limit: usize,
    /// What they hold, as each last reported.
    held: AtomicUsize,
    spilled: AtomicU64,
}

impl Spill {
    pub fn new(dir: Box<dyn SpillDir>, limit: usize) -> Arc<Self> {
        Arc::new(Self {
            dir,
            limit,
            held: AtomicUsize::new(0),
            spilled: AtomicU64::new(0),
        })
    }

    /// Bytes written to spill files so far.
    pub fn spilled_bytes(&self) -> u64 {
        self.spilled.load(Ordering::Relaxed)
    }

    /// A partition held `before` bytes and now holds `now`: whether all together are over
    /// the budget.
    pub(crate) fn report(&self, before: usize, now: usize) -> bool {
        let total = if now >= before {
            self.held.fetch_add(now - before, Ordering::Relaxed) + (now - before)
        } else {
            self.held.fetch_sub(before - now, Ordering::Relaxed) - (before - now)
        };
        total > self.limit
    }

    pub(crate) fn create(&self) -> io::Result<Arc<dyn SpillFile>> {
        self.dir.create()
    }

    pub(crate) fn wrote(&self, bytes: usize) {
        self.spilled.fetch_add(bytes as u64, Ordering::Relaxed);
    }
}

/// Spill files in memory: the processor's tests, and nowhere else (it saves nothing).
#[derive(Debug, Default)]
pub struct MemorySpillDir {
    /// Files created so far.
    pub created: AtomicUsize,
}

impl SpillDir for MemorySpillDir {
    fn create(&self) -> io::Result<Arc<dyn SpillFile>> {
        self.created.fetch_add(1, Ordering::Relaxed);
        Ok(Arc::new(MemoryFile::default()))
    }
}

#[derive(Debug, Default)]
struct MemoryFile(Mutex<Vec<u8>>);

impl SpillFile for MemoryFile {
    fn append(&self, bytes: &[u8]) -> io::Result<u64> {
        let mut data = self.0.lock().expect("not poisoned");
        let at = data.len() as u64;
        data.extend_from_slice(bytes);
        Ok(at)
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let data = self.0.lock().expect("not poisoned");
        let from = offset as usize;
        let part = data
            .get(from..from + buf.len())
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "past the end"))?;
        buf.copy_from_slice(part);
        Ok(())
    }
}
