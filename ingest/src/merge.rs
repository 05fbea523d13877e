//! Two sources read as one: the demo's generated traffic and the events its gateway takes
//! (`demo --listen`). The second source's partitions are numbered after the first's, so
//! each keeps its own operators and offsets.

use inferwatch_schemas::RawBatch;

use crate::source::{Source, SourceError};

/// Where the second source's partitions start.
pub const SECOND_PARTITIONS_FROM: i32 = 1 << 16;

/// Reads `primary` and, between its batches, whatever `second` has right now (it must not
/// wait when empty). Ends when `primary` ends and `second` is drained: `at_primary_end` runs
/// first, to stop what feeds `second`.
pub struct Merged {
    primary: Box<dyn Source>,
    second: Box<dyn Source>,
    at_primary_end: Option<Box<dyn FnOnce() + Send>>,
    primary_done: bool,
}

impl Merged {
    pub fn new(
        primary: Box<dyn Source>,
        second: Box<dyn Source>,
        at_primary_end: Box<dyn FnOnce() + Send>,
    ) -> Self {
        Self {
            primary,
            second,
            at_primary_end: Some(at_primary_end),
            primary_done: false,
        }
    }

    fn read_second(&mut self, max: usize) -> Result<Option<RawBatch>, SourceError> {
        Ok(self.second.next_batch(max)?.map(|mut b| {
            b.partition += SECOND_PARTITIONS_FROM;
            b
        }))
    }
}

impl Source for Merged {
    fn name(&self) -> &str {
        self.primary.name()
    }

    fn next_batch(&mut self, max: usize) -> Result<Option<RawBatch>, SourceError> {
        if !self.primary_done {
            if let Some(b) = self.read_second(max)?.filter(|b| !b.is_empty()) {
                return Ok(Some(b));
            }
            match self.primary.next_batch(max)? {
                Some(b) => return Ok(Some(b)),
                None => {
                    self.primary_done = true;
                    if let Some(end) = self.at_primary_end.take() {
                        end();
                    }
                }
            }
        }
        // The primary ended: the rest of the second, then the end.
        match self.read_second(max)? {
            Some(b) if b.is_empty() => Ok(None),
            other => Ok(other),
        }
    }

    fn is_bounded(&self) -> bool {
        self.primary.is_bounded()
    }

    fn progress(&self) -> Option<(u64, u64)> {
        self.primary.progress()
    }

    fn close(&mut self) {
        self.primary.close();
        self.second.close();
    }
}
