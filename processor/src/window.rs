//! Window arithmetic and watermarks.
//!
//! Hopping windows are built from panes: a pane is `slide` long, a window is `size / slide`
//! consecutive panes, and each event updates exactly one pane. Tumbling windows are the case
//! `slide == size`. All boundaries are aligned to the Unix epoch.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::WindowConfig;

/// Window geometry in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct WindowSpec {
    pub size: i64,
    pub slide: i64,
    pub lateness: i64,
    pub out_of_orderness: i64,
}

impl WindowSpec {
    pub fn new(c: &WindowConfig) -> Self {
        let ms = |d: Duration| d.as_millis() as i64;
        Self {
            size: ms(c.size),
            slide: ms(c.slide.unwrap_or(c.size)),
            lateness: ms(c.allowed_lateness),
            out_of_orderness: ms(c.max_out_of_orderness),
        }
    }

    /// Start of the pane holding `ts`.
    pub fn pane(&self, ts: i64) -> i64 {
        ts.div_euclid(self.slide) * self.slide
    }

    /// Latest window start whose window may close at watermark `wm`: its end plus the allowed
    /// lateness is at or before the watermark.
    pub fn closable_through(&self, wm: i64) -> i64 {
        self.pane(wm.saturating_sub(self.size + self.lateness))
    }

    /// Start of the first (earliest) window that contains pane `p`.
    pub fn first_window_of(&self, p: i64) -> i64 {
        p - self.size + self.slide
    }
}

/// Identity of a source partition, e.g. (`file:traffic.ndjson`, 0) or (topic, 3).
pub type SourceId = (Arc<str>, i32);

#[derive(Debug, Clone, Copy)]
struct PartitionClock {
    max_event_time: i64,
    last_active: Instant,
}

/// Per-partition watermarks: each partition's is its newest event time minus the allowed
/// out-of-orderness; the processor's is the minimum over partitions that are not idle.
#[derive(Debug)]
pub struct Watermarks {
    out_of_orderness: i64,
    idle_timeout: Duration,
    parts: HashMap<SourceId, PartitionClock>,
}

impl Watermarks {
    pub fn new(out_of_orderness: i64, idle_timeout: Duration) -> Self {
        Self {
            out_of_orderness,
            idle_timeout,
            parts: HashMap::new(),
        }
    }

    /// The minimum watermark over active partitions other than `except`, or `None` if there
    /// are none (then `except` alone sets the pace).
    pub fn others(&self, except: &SourceId, now: Instant) -> Option<i64> {
        self.parts
            .iter()
            .filter(|(id, c)| {
                *id != except && now.duration_since(c.last_active) < self.idle_timeout
            })
            .map(|(_, c)| c.max_event_time - self.out_of_orderness)
            .min()
    }

    /// Records that `id` has shown events up to `max_event_time`.
    pub fn advance(&mut self, id: &SourceId, max_event_time: i64, now: Instant) {
        let c = self.parts.entry(id.clone()).or_insert(PartitionClock {
            max_event_time: i64::MIN / 2,
            last_active: now,
        });
        c.max_event_time = c.max_event_time.max(max_event_time);
        c.last_active = now;
    }

    /// The newest event time seen from `id`.
    pub fn max_event_time(&self, id: &SourceId) -> Option<i64> {
        self.parts.get(id).map(|c| c.max_event_time)
    }

    /// The processor's watermark: the minimum over active partitions. When every partition
    /// is idle, the furthest one sets it, so a quiet stream still closes its windows.
    pub fn current(&self, now: Instant) -> Option<i64> {
        let active = self
            .parts
            .values()
            .filter(|c| now.duration_since(c.last_active) < self.idle_timeout)
            .map(|c| c.max_event_time)
            .min();
        active
            .or_else(|| self.parts.values().map(|c| c.max_event_time).max())
            .map(|t| t - self.out_of_orderness)
    }

    pub fn out_of_orderness(&self) -> i64 {
        self.out_of_orderness
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(size: i64, slide: i64) -> WindowSpec {
        WindowSpec {
            size,
            slide,
            lateness: 0,
            out_of_orderness: 5,
        }
    }

    #[test]
    fn panes_align_to_epoch_including_negative_times() {
        let s = spec(60, 20);
        assert_eq!(s.pane(59), 40);
        assert_eq!(s.pane(60), 60);
        assert_eq!(s.pane(-1), -20);
        assert_eq!(s.first_window_of(60), 20);
    }

    #[test]
    fn windows_close_once_the_watermark_passes_their_end() {
        let s = spec(60, 20);
        // The window [0, 60) may close at watermark 60, not 59.
        assert_eq!(s.closable_through(60), 0);
        assert_eq!(s.closable_through(59), -20);
    }

    #[test]
    fn idle_partitions_stop_holding_back_the_watermark() {
        let t0 = Instant::now();
        let mut w = Watermarks::new(5, Duration::from_secs(30));
        let a: SourceId = ("t".into(), 0);
        let b: SourceId = ("t".into(), 1);
        w.advance(&a, 1000, t0);
        w.advance(&b, 100, t0);
        assert_eq!(w.current(t0), Some(95));
        w.advance(&a, 2000, t0 + Duration::from_secs(31));
        assert_eq!(w.current(t0 + Duration::from_secs(31)), Some(1995));
        assert_eq!(w.others(&a, t0 + Duration::from_secs(1)), Some(95));
        assert_eq!(w.others(&a, t0 + Duration::from_secs(31)), None);
    }
}
