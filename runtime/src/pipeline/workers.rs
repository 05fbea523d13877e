//! The pool of worker threads partitions run on. Each partition has its own queue of
//! batches; an idle worker takes the next partition that has work and is not being
//! processed, so a partition's batches run one at a time and in order while different
//! partitions run in parallel, and no worker idles while another has a backlog. The driver
//! waits for the pool to be idle ([`Workers::barrier`]) before it touches partitions itself
//! (checkpoints, rebalances, the feedback join, idle watermarks), so what a partition holds
//! never depends on how many workers there are.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use inferwatch_schemas::RawBatch;

use super::part::{Outlet, Part};
use crate::error::{Result, RuntimeError};
use crate::failed;

/// Batches queued per worker before the driver waits: enough to keep every worker busy,
/// few enough to bound memory.
const QUEUED_PER_WORKER: usize = 2;

/// While a worker idles because every queued batch belongs to a partition another worker
/// is running, the driver reads on, up to this many times the usual limit: one busy
/// partition's backlog must not hold the other workers idle.
const STARVED_FACTOR: usize = 4;

struct Job {
    part: Arc<Mutex<Part>>,
    raw: RawBatch,
    now: Instant,
}

#[derive(Default)]
struct Queue {
    /// Batches waiting, per partition, in arrival order.
    waiting: HashMap<i32, VecDeque<Job>>,
    /// Partitions with waiting batches that no worker is processing, oldest first.
    runnable: VecDeque<i32>,
    /// Partitions a worker is processing now.
    running: HashSet<i32>,
    /// Workers waiting for a runnable partition.
    idle: usize,
    /// Batches queued or being processed.
    pending: usize,
    /// The first error a worker met; the run stops with it.
    error: Option<RuntimeError>,
    stopping: bool,
    /// Time spent processing batches, summed over the workers.
    busy: Duration,
}

impl Queue {
    /// Whether the driver must wait before queuing another batch: at `limit` batches, or
    /// at [`STARVED_FACTOR`] times that while a worker idles with nothing it may run.
    fn full(&self, limit: usize) -> bool {
        let starved = self.idle > 0 && self.runnable.is_empty();
        self.pending >= limit * if starved { STARVED_FACTOR } else { 1 }
    }
}

struct Pool {
    queue: Mutex<Queue>,
    /// Signalled when work arrives, is done, or the pool stops.
    changed: Condvar,
}

pub(super) struct Workers {
    pool: Arc<Pool>,
    handles: Vec<JoinHandle<()>>,
    limit: usize,
    /// Time [`Workers::dispatch`] waited for room in the queue.
    waited: Duration,
}

impl Workers {
    pub(super) fn start(n: usize, outlet: &Outlet) -> Result<Self> {
        let pool = Arc::new(Pool {
            queue: Mutex::default(),
            changed: Condvar::new(),
        });
        let mut handles = Vec::with_capacity(n);
        for i in 0..n {
            let (out, pool) = (outlet.clone(), pool.clone());
            handles.push(
                std::thread::Builder::new()
                    .name(format!("inferwatch-worker-{i}"))
                    .spawn(move || work(&pool, &out))?,
            );
        }
        Ok(Self {
            pool,
            handles,
            limit: n * QUEUED_PER_WORKER,
            waited: Duration::ZERO,
        })
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.pool.queue.lock().expect("not poisoned")
    }

    /// Queues `raw` for its partition; waits while the pool holds its limit of batches.
    pub(super) fn dispatch(
        &mut self,
        part: Arc<Mutex<Part>>,
        raw: RawBatch,
        now: Instant,
    ) -> Result<()> {
        let mut q = self.pool.queue.lock().expect("not poisoned");
        if q.full(self.limit) {
            let started = Instant::now();
            while q.full(self.limit) && q.error.is_none() {
                q = self.pool.changed.wait(q).expect("not poisoned");
            }
            self.waited += started.elapsed();
        }
        if let Some(e) = q.error.take() {
            return Err(e);
        }
        let p = raw.partition;
        q.pending += 1;
        q.waiting
            .entry(p)
            .or_default()
            .push_back(Job { part, raw, now });
        if !q.running.contains(&p) && !q.runnable.contains(&p) {
            q.runnable.push_back(p);
        }
        self.pool.changed.notify_all();
        Ok(())
    }

    /// Waits until every batch dispatched so far is processed; the first error of any.
    pub(super) fn barrier(&self) -> Result<()> {
        let mut q = self.queue();
        while q.pending > 0 {
            q = self.pool.changed.wait(q).expect("not poisoned");
        }
        match q.error.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Finishes what is queued and stops the threads. Returns the time the workers spent
    /// processing and the time dispatching waited for them.
    pub(super) fn stop(self) -> Result<(Duration, Duration)> {
        let r = self.barrier();
        let busy = {
            let mut q = self.queue();
            q.stopping = true;
            q.busy
        };
        self.pool.changed.notify_all();
        for h in self.handles {
            let _ = h.join();
        }
        r.map(|()| (busy, self.waited))
    }
}

/// Takes the next runnable partition's oldest batch, processes it, and puts the partition
/// back in line if it has more; until the pool stops.
fn work(pool: &Pool, out: &Outlet) {
    let mut q = pool.queue.lock().expect("not poisoned");
    loop {
        let Some(p) = q.runnable.pop_front() else {
            if q.stopping {
                return;
            }
            // Counted before the lock is let go: a driver woken by the notice that this
            // worker's last batch was done sees it idle.
            q.idle += 1;
            q = pool.changed.wait(q).expect("not poisoned");
            q.idle -= 1;
            continue;
        };
        let job = q
            .waiting
            .get_mut(&p)
            .and_then(VecDeque::pop_front)
            .expect("a runnable partition has a batch");
        q.running.insert(p);
        drop(q);
        let run = || {
            let mut part = job.part.lock().map_err(|_| failed!("a worker panicked"))?;
            part.process(job.raw, job.now, out)
        };
        let started = Instant::now();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(run))
            .unwrap_or_else(|_| Err(failed!("a worker panicked")));
        let spent = started.elapsed();
        q = pool.queue.lock().expect("not poisoned");
        q.busy += spent;
        q.running.remove(&p);
        q.pending -= 1;
        if q.waiting.get(&p).is_some_and(|w| !w.is_empty()) {
            q.runnable.push_back(p);
        } else {
            q.waiting.remove(&p);
        }
        if let Err(e) = r {
            q.error.get_or_insert(e);
        }
        pool.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A backlog of one partition, which one worker runs, does not hold the driver while
    /// another worker idles; a backlog any idle worker could take does, and so does the
    /// starved bound.
    #[test]
    fn a_backlog_of_one_running_partition_lets_the_driver_read_on() {
        let limit = 4;
        let mut q = Queue {
            pending: limit,
            ..Queue::default()
        };
        q.running.insert(3);
        assert!(q.full(limit), "every worker busy");
        q.idle = 1;
        assert!(
            !q.full(limit),
            "a worker idles: partition 3's batches wait for its runner"
        );
        q.runnable.push_back(5);
        assert!(q.full(limit), "the idle worker has partition 5 to take");
        q.runnable.clear();
        q.pending = limit * STARVED_FACTOR;
        assert!(q.full(limit), "memory stays bounded");
    }
}
