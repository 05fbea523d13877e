//! Window arithmetic.
//!
//! Hopping windows are built from panes: a pane is `slide` long, a window is `size / slide`
//! consecutive panes, and each event updates exactly one pane. Tumbling windows are the case
//! `slide == size`. All boundaries are aligned to the Unix epoch.

use std::time::Duration;

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
}
