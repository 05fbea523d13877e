//! Outbox logs shared between the thread that adds notices and the delivery loops: one log
//! per source partition, each with one writer at a time.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::{Entry, Known, Outbox};
use std::path::PathBuf;

use crate::error::{Result, SinkError};
use crate::store::Store;

/// Outbox logs — one per source partition, which move with the partition between
/// processors — shared between the thread that adds notices and the delivery loops.
///
/// A partition's notices are made only by the processor that owns the partition, so each
/// log has one writer at a time; [`SharedOutbox::release`] hands a log back (when its
/// partition leaves this processor) once no entry of it is being sent. The delivery loops
/// see one queue per destination: the oldest pending entry over every open log.
#[derive(Clone)]
pub struct SharedOutbox {
    inner: Arc<(Mutex<Logs>, Condvar)>,
}

/// The open logs by name, and which log each entry being sent came from.
#[derive(Debug, Default)]
pub struct Logs {
    open: BTreeMap<String, Outbox>,
    sending: HashMap<String, String>,
}

impl Logs {
    fn owner(&self, id: &str) -> Option<&str> {
        self.sending.get(id).map(String::as_str).or_else(|| {
            self.open
                .iter()
                .find(|(_, o)| matches!(o.ids.get(id), Some(Known::Pending(..))))
                .map(|(n, _)| n.as_str())
        })
    }

    /// The oldest pending entry of `dest` over every log (each log in its own order).
    fn next(&self, dest: &str) -> Option<(&str, Entry)> {
        self.open
            .iter()
            .filter_map(|(n, o)| o.next(dest).map(|e| (n.as_str(), e)))
            .min_by_key(|(n, e)| (e.at_ms, *n))
    }
}

impl std::fmt::Debug for SharedOutbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.lock().fmt(f)
    }
}

/// The name of the log a single-log outbox uses.
const DEFAULT_LOG: &str = "";

impl SharedOutbox {
    /// No log open yet: see [`SharedOutbox::open_log`].
    pub fn empty() -> Self {
        Self {
            inner: Arc::new((Mutex::new(Logs::default()), Condvar::new())),
        }
    }

    /// One log, for callers with one writer.
    pub fn new(outbox: Outbox) -> Self {
        let s = Self::empty();
        s.lock().open.insert(DEFAULT_LOG.to_string(), outbox);
        s
    }

    /// [`Outbox::open`] as the only log.
    pub fn open(store: &Store) -> Result<Self> {
        Outbox::open(store).map(Self::new)
    }

    /// Opens the log in `store` under `name`, unless it is open; wakes the delivery loops
    /// for what it holds pending.
    pub fn open_log(&self, name: &str, store: &Store) -> Result<()> {
        if self.lock().open.contains_key(name) {
            return Ok(());
        }
        let outbox = Outbox::open(store)?;
        self.lock().open.entry(name.to_string()).or_insert(outbox);
        self.inner.1.notify_all();
        Ok(())
    }

    /// Closes log `name` once no entry of it is being sent, and what it holds pending stays
    /// on disk for whoever opens it next. It waits at most `RELEASE_WAIT`, so a slow
    /// destination cannot stall a rebalance: past it, a send still in flight may be repeated
    /// by the next owner.
    pub fn release(&self, name: &str) {
        const RELEASE_WAIT: Duration = Duration::from_secs(1);
        let closed = self.wait_until(Instant::now() + RELEASE_WAIT, |g| {
            let busy = g.sending.values().any(|n| n == name);
            (!busy).then(|| g.open.remove(name))
        });
        if closed.is_none() {
            self.lock().open.remove(name);
        }
    }

    fn lock(&self) -> MutexGuard<'_, Logs> {
        // Every change is written before memory is updated, so the state stays usable.
        self.inner.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds to the only (first) log, waking the delivery loops.
    pub fn add(&self, entries: Vec<Entry>) -> Result<usize> {
        let name = self.lock().open.keys().next().cloned().unwrap_or_default();
        self.add_to(&name, entries)
    }

    /// [`Outbox::add`] to log `name` (open), waking the delivery loops.
    pub fn add_to(&self, name: &str, entries: Vec<Entry>) -> Result<usize> {
        let n = {
            let mut g = self.lock();
            let Some(o) = g.open.get_mut(name) else {
                return Err(SinkError::Outbox {
                    path: PathBuf::from(name),
                    reason: "the outbox log is not open".into(),
                });
            };
            o.add(entries)?
        };
        if n > 0 {
            self.inner.1.notify_all();
        }
        Ok(n)
    }

    /// The oldest pending entry for `dest`, waiting up to `timeout` for one.
    pub fn wait_next(&self, dest: &str, timeout: Duration) -> Option<Entry> {
        self.wait_next_from(dest, timeout).map(|(_, e)| e)
    }

    /// [`SharedOutbox::wait_next`] with the name of the entry's log. The entry counts as
    /// being sent until [`SharedOutbox::done`] or [`SharedOutbox::not_sent`].
    pub fn wait_next_from(&self, dest: &str, timeout: Duration) -> Option<(String, Entry)> {
        self.wait_until(Instant::now() + timeout, |g| {
            let (name, e) = g.next(dest)?;
            let name = name.to_string();
            g.sending.insert(e.id.clone(), name.clone());
            Some((name, e))
        })
    }

    /// Runs `ready` under the lock until it returns something or `deadline` passes, waking
    /// whenever the logs change.
    fn wait_until<T>(
        &self,
        deadline: Instant,
        mut ready: impl FnMut(&mut Logs) -> Option<T>,
    ) -> Option<T> {
        let mut g = self.lock();
        loop {
            if let Some(t) = ready(&mut g) {
                return Some(t);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            g = self
                .inner
                .1
                .wait_timeout(g, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// The entry taken by `wait_next` was not sent (it will be taken again).
    pub fn not_sent(&self, id: &str) {
        self.lock().sending.remove(id);
        self.inner.1.notify_all();
    }

    /// [`Outbox::done`] in the entry's log, waking anyone waiting for a drain or a release.
    pub fn done(&self, id: &str, outcome: &str) -> Result<()> {
        let r = {
            let mut g = self.lock();
            let r = match g.owner(id).map(str::to_string) {
                Some(name) => match g.open.get_mut(&name) {
                    Some(o) => o.done(id, outcome),
                    None => Ok(()),
                },
                None => Ok(()),
            };
            g.sending.remove(id);
            r
        };
        self.inner.1.notify_all();
        r
    }

    pub fn pending(&self, dest: &str) -> usize {
        self.lock().open.values().map(|o| o.pending(dest)).sum()
    }

    pub fn pending_total(&self) -> usize {
        self.lock().open.values().map(|o| o.pending_total()).sum()
    }

    /// Pending entries of `dest` in log `name`, oldest first.
    pub fn pending_entries_in(&self, name: &str, dest: &str) -> Vec<Entry> {
        self.lock()
            .open
            .get(name)
            .map(|o| o.pending_entries(dest))
            .unwrap_or_default()
    }

    /// Waits until nothing is pending for `dest` or `deadline` passes; returns how many
    /// entries are still pending.
    pub fn wait_drained(&self, dest: &str, deadline: Instant) -> usize {
        let pending = |g: &mut Logs| g.open.values().map(|o| o.pending(dest)).sum::<usize>();
        self.wait_until(deadline, |g| (pending(g) == 0).then_some(0))
            .unwrap_or_else(|| pending(&mut self.lock()))
    }
}
