//! Window arithmetic.
//!
//! Hopping windows are built from panes: a pane is `slide` long, a window is `size / slide`
//! consecutive panes, and each event updates exactly one pane. Tumbling windows are the case
//! `slide == size`. All boundaries are aligned to the Unix epoch.

use std::time::Duration;

use serde::Deserialize;

use crate::error::{config_err, ProcessorError};
use inferwatch_schemas::time::deserialize_duration as duration;
use inferwatch_schemas::time::deserialize_opt_duration as opt_duration;

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

/// `[window]`: event-time windows and watermarks.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WindowConfig {
    /// Window length. Windows are aligned to the Unix epoch.
    #[serde(deserialize_with = "duration")]
    pub size: Duration,
    /// Hop between window starts; absent or equal to `size` means tumbling windows. Must
    /// divide `size`.
    #[serde(deserialize_with = "opt_duration")]
    pub slide: Option<Duration>,
    /// How far behind the newest event an event may arrive and still be on time: the
    /// watermark is the newest event time minus this.
    #[serde(deserialize_with = "duration")]
    pub max_out_of_orderness: Duration,
    /// Extra time a window stays open after the watermark passes its end.
    #[serde(deserialize_with = "duration")]
    pub allowed_lateness: Duration,
    /// A source partition with no events for this long (processing time) stops holding back
    /// the watermark.
    #[serde(deserialize_with = "duration")]
    pub idle_timeout: Duration,
}

impl Default for WindowConfig {
    fn default() -> Self {
        Self {
            size: Duration::from_secs(60),
            slide: None,
            max_out_of_orderness: Duration::from_secs(5),
            allowed_lateness: Duration::ZERO,
            idle_timeout: Duration::from_secs(30),
        }
    }
}

impl WindowConfig {
    /// Window arithmetic: the slide divides the size, at most 1440 panes a window.
    pub fn validate(&self) -> Result<(), ProcessorError> {
        let size = self.size.as_millis();
        let slide = self.slide.unwrap_or(self.size).as_millis();
        if size == 0 || slide == 0 {
            return Err(config_err!(
                "window.size and window.slide must be at least 1ms"
            ));
        }
        if slide > size || !size.is_multiple_of(slide) {
            return Err(config_err!(
                "window.slide ({}) must divide window.size ({}), e.g. size = \"1m\", slide = \"30s\"",
                humantime::format_duration(self.slide.unwrap_or(self.size)),
                humantime::format_duration(self.size)
            ));
        }
        if size / slide > 1440 {
            return Err(config_err!(
                "window.size / window.slide is {}; keep it at most 1440 (each event is counted in that many windows)",
                size / slide
            ));
        }
        Ok(())
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
