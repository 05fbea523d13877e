//! Rebalances: what the Kafka source calls when partitions arrive or leave.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use inferwatch_ingest::PartitionOwner;

use super::partitions::Shared;
use super::sink_thread::ToSink;

/// The rebalance side of [`Shared`], handed to the Kafka source.
pub(super) struct Owner(pub(super) Arc<Mutex<Shared>>);

impl PartitionOwner for Owner {
    fn assigned(&self, _topic: &str, partitions: &[i32]) -> Vec<(i32, Option<i64>)> {
        let mut s = self.0.lock().expect("not poisoned");
        let now = Instant::now();
        // Some coordinators send empty assignments every few seconds: they change nothing,
        // so they must not keep the idle clock from running out.
        if !partitions.is_empty() {
            s.rebalanced_at = now;
        }
        // A partition's state is replaced only once its worker is done with it.
        if let Err(e) = s.settle() {
            s.fatal.get_or_insert(e);
            return Vec::new();
        }
        let mut out = Vec::new();
        for &p in partitions {
            // Kafka gives it to this processor (again): claimed anew below.
            if let Err(e) = s.unfence(p) {
                s.fatal.get_or_insert(e);
                continue;
            }
            match s.assign(p, now) {
                Ok(from) => out.push((p, from)),
                Err(e) => {
                    s.fatal.get_or_insert(e);
                }
            }
        }
        out
    }

    fn assigned_while_leaving(&self, _topic: &str, ends: &[(i32, i64)]) {
        let mut s = self.0.lock().expect("not poisoned");
        for &(p, end) in ends {
            if let Err(e) = s.finish_late(p, end) {
                s.fatal.get_or_insert(e);
            }
        }
    }

    fn revoked(&self, _topic: &str, partitions: &[i32], lost: bool) -> Vec<(i32, i64)> {
        let mut s = self.0.lock().expect("not poisoned");
        s.rebalanced_at = Instant::now();
        if lost {
            // What the workers hold is written before the partitions' files are dropped,
            // as on one thread; nothing of theirs comes after the abort.
            if let Err(e) = s.settle() {
                s.fatal.get_or_insert(e);
            }
            for &p in partitions {
                s.forget_fence(p);
                s.parts.remove(&p);
                s.cursors.remove(&p);
                s.stop_following(p);
                if let Err(e) = s.send(ToSink::Abort { partition: p }) {
                    s.fatal.get_or_insert(e);
                }
            }
            return Vec::new();
        }
        for p in partitions {
            // Not here to take back; the fence stays so the sink still drops what was sent.
            s.fenced_since.remove(p);
        }
        let owned: Vec<i32> = partitions
            .iter()
            .copied()
            .filter(|p| s.parts.contains_key(p))
            .collect();
        match s.checkpoint_and_wait(&owned, true) {
            Ok(commits) => commits,
            Err(e) => {
                // Without a checkpoint the next owner replays from the previous one; this
                // process must not write that partition again, so the run stops.
                s.fatal
                    .get_or_insert(e.context("checkpointing revoked partitions"));
                Vec::new()
            }
        }
    }
}
