//! The in-process outlet: accepted records wait in a queue that a [`LocalSource`] hands to
//! the pipeline, keyed into partitions by `service/model` like Kafka would.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use inferwatch_schemas::hash::fnv64;
use inferwatch_schemas::RawBatch;

use super::Taken;
use crate::gateway::records::Record;
use crate::source::{Source, SourceError};

/// Records accepted over HTTP, waiting for the pipeline.
pub struct LocalQueue {
    state: Mutex<State>,
    ready: Condvar,
}

struct State {
    /// Per partition: payloads in arrival order, each with its share of the budget.
    parts: Vec<VecDeque<(Vec<u8>, Taken)>>,
    next: usize,
    /// No more records come: the source ends once it has handed on what is queued.
    closed: bool,
}

impl LocalQueue {
    pub fn new(partitions: usize) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                parts: (0..partitions.max(1)).map(|_| VecDeque::new()).collect(),
                next: 0,
                closed: false,
            }),
            ready: Condvar::new(),
        })
    }

    /// Queues `records`; their budget is given back as the source takes them.
    pub fn push(&self, records: Vec<Record>, mut taken: Taken) {
        let mut s = self.state.lock().expect("not poisoned");
        let n = s.parts.len() as u64;
        for r in records {
            let p = (fnv64(r.key.as_bytes()) % n) as usize;
            // One event's share: split off so that each payload gives back its own.
            let share = taken.split_one();
            s.parts[p].push_back((r.payload, share));
        }
        drop(s);
        self.ready.notify_one();
    }

    /// Ends the stream: the source hands on what is queued, then ends (the gateway stopped).
    pub fn close(&self) {
        self.state.lock().expect("not poisoned").closed = true;
        self.ready.notify_all();
    }

    /// Up to `max` payloads of one partition (round robin), waiting up to `wait` for any.
    fn take(&self, max: usize, wait: Duration) -> Take {
        let mut s = self.state.lock().expect("not poisoned");
        if s.parts.iter().all(VecDeque::is_empty) {
            if s.closed {
                return Take::Ended;
            }
            if !wait.is_zero() {
                s = self.ready.wait_timeout(s, wait).expect("not poisoned").0;
            }
        }
        let n = s.parts.len();
        let start = s.next;
        for k in 0..n {
            let p = (start + k) % n;
            if !s.parts[p].is_empty() {
                s.next = (p + 1) % n;
                let take = max.min(s.parts[p].len());
                // Dropping each share gives its room back to the budget.
                let out = s.parts[p].drain(..take).map(|(b, _)| b).collect();
                return Take::Some(p, out);
            }
        }
        Take::Nothing
    }
}

/// What [`LocalQueue::take`] found.
enum Take {
    /// A partition and its payloads.
    Some(usize, Vec<Vec<u8>>),
    /// Nothing queued just now.
    Nothing,
    /// Closed, and nothing left.
    Ended,
}

/// The pipeline's side of a [`LocalQueue`]: a source that runs until the queue is closed,
/// whose offsets count the payloads of each partition from 0 in this process.
pub struct LocalSource {
    name: String,
    queue: Arc<LocalQueue>,
    offsets: Vec<i64>,
    source: Arc<str>,
    wait: Duration,
}

impl LocalSource {
    pub fn new(name: &str, queue: Arc<LocalQueue>) -> Self {
        let n = queue.state.lock().expect("not poisoned").parts.len();
        Self {
            name: name.to_string(),
            queue,
            offsets: vec![0; n],
            source: Arc::from(name),
            wait: Duration::from_millis(50),
        }
    }

    /// How long `next_batch` waits when nothing is queued (50 ms). A feedback source, polled
    /// between event batches, must not wait: zero.
    pub fn with_wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }
}

impl Source for LocalSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn next_batch(&mut self, max: usize) -> Result<Option<RawBatch>, SourceError> {
        let (p, payloads) = match self.queue.take(max, self.wait) {
            Take::Ended => return Ok(None),
            Take::Nothing => return Ok(Some(RawBatch::new(self.source.clone(), 0))),
            Take::Some(p, payloads) => (p, payloads),
        };
        let bytes = payloads.iter().map(Vec::len).sum();
        let mut raw = RawBatch::with_capacity(self.source.clone(), p as i32, payloads.len(), bytes);
        for payload in payloads {
            raw.push(&payload, self.offsets[p]);
            self.offsets[p] += 1;
        }
        Ok(Some(raw))
    }

    fn is_bounded(&self) -> bool {
        false
    }
}
