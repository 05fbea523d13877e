//! Where accepted records go: a Kafka topic (`inferwatch ingest`, acknowledged by the
//! brokers) or the in-process pipeline (`run`/`demo --listen`, taken by its source).

mod kafka;
mod local;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

pub use kafka::{KafkaOutlet, KafkaOutletConfig};
pub use local::{LocalQueue, LocalSource};

use super::records::Record;

/// Which stream a request feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Events,
    Feedback,
}

/// Why records were not taken: the reply is 503 with `Retry-After`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unavailable(pub String);

pub enum Outlet {
    Kafka(Arc<KafkaOutlet>),
    Local {
        events: Arc<LocalQueue>,
        feedback: Option<Arc<LocalQueue>>,
    },
}

impl Outlet {
    /// Hands `records` on; returns once Kafka acknowledged every one (or the pipeline's
    /// queue holds them). `Err`: not all were acknowledged, any may have been written.
    pub async fn send(
        &self,
        stream: Stream,
        records: Vec<Record>,
        taken: Taken,
    ) -> Result<(), Unavailable> {
        match self {
            Outlet::Kafka(k) => {
                let r = k.send(stream, records).await;
                drop(taken);
                r
            }
            Outlet::Local { events, feedback } => {
                let q = match stream {
                    Stream::Events => events,
                    Stream::Feedback => feedback
                        .as_ref()
                        .ok_or_else(|| Unavailable("this run has no feedback stream".into()))?,
                };
                q.push(records, taken);
                Ok(())
            }
        }
    }

    /// Whether `/v1/feedback` leads anywhere (Kafka needs a feedback topic).
    pub fn takes_feedback(&self) -> bool {
        match self {
            Outlet::Kafka(k) => k.takes_feedback(),
            Outlet::Local { feedback, .. } => feedback.is_some(),
        }
    }

    /// Over Kafka, feedback must carry its prediction's key.
    pub fn keys_feedback(&self) -> bool {
        matches!(self, Outlet::Kafka(_))
    }

    /// Why nothing can be sent right now, before a request's records are read.
    pub fn unavailable(&self) -> Option<Unavailable> {
        match self {
            Outlet::Kafka(k) => k.unavailable(),
            Outlet::Local { .. } => None,
        }
    }
}

/// The bound on events accepted but not yet acknowledged (or taken), all requests together.
#[derive(Debug)]
pub struct Budget {
    used: AtomicUsize,
    max: usize,
}

impl Budget {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            used: AtomicUsize::new(0),
            max,
        })
    }

    /// Takes room for `n` events, or `None` when that would pass the bound. A request larger
    /// than the whole bound is let through alone, so that it is not refused forever.
    pub fn try_take(self: &Arc<Self>, n: usize) -> Option<Taken> {
        let mut cur = self.used.load(Ordering::Relaxed);
        loop {
            if cur > 0 && cur + n > self.max {
                return None;
            }
            match self
                .used
                .compare_exchange_weak(cur, cur + n, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => {
                    return Some(Taken {
                        budget: self.clone(),
                        n,
                    })
                }
                Err(now) => cur = now,
            }
        }
    }

    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }
}

/// Room taken in the [`Budget`], given back when dropped.
#[derive(Debug)]
pub struct Taken {
    budget: Arc<Budget>,
    n: usize,
}

impl Taken {
    /// Gives back room for `n` of the events (the in-process source took them).
    pub fn release(&mut self, n: usize) {
        let n = n.min(self.n);
        self.n -= n;
        self.budget.used.fetch_sub(n, Ordering::AcqRel);
    }

    /// Splits off the room of one event (none left: an empty share).
    pub fn split_one(&mut self) -> Taken {
        let n = usize::from(self.n > 0);
        self.n -= n;
        Taken {
            budget: self.budget.clone(),
            n,
        }
    }

    pub fn len(&self) -> usize {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }
}

impl Drop for Taken {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.n, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_bounds_what_is_in_flight() {
        let b = Budget::new(10);
        let a = b.try_take(6).unwrap();
        assert!(b.try_take(5).is_none());
        let mut c = b.try_take(4).unwrap();
        assert_eq!(b.used(), 10);
        c.release(3);
        assert_eq!(b.used(), 7);
        drop(a);
        drop(c);
        assert_eq!(b.used(), 0);
        // Alone, a request larger than the bound passes.
        assert!(b.try_take(50).is_some());
    }
}
