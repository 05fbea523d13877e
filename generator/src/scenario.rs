//! Traffic scenarios: what changes at the onset of a run, and the generator's settings.

use std::fmt;
use std::str::FromStr;

/// What changes, if anything, at the onset of a generated run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    Steady,
    Drift,
    Miscalibration,
    CostSpike,
    RunawayLoop,
    Malformed,
    /// One trouble per service at once: the demo's default.
    Mixed,
}

/// A kind of trouble a scenario brings at its onset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trouble {
    Drift,
    Miscalibration,
    CostSpike,
    RunawayLoop,
}

impl Scenario {
    pub const ALL: [Scenario; 7] = [
        Scenario::Steady,
        Scenario::Drift,
        Scenario::Miscalibration,
        Scenario::CostSpike,
        Scenario::RunawayLoop,
        Scenario::Malformed,
        Scenario::Mixed,
    ];

    /// Whether this scenario brings `trouble` to service `service` (an index of the
    /// catalogue's services) after its onset.
    pub(crate) fn troubles(self, trouble: Trouble, service: usize) -> bool {
        use crate::catalogue::{CHECKOUT, FRAUD, SEARCH, SUPPORT};
        match (self, trouble) {
            (Scenario::Drift, Trouble::Drift) => true,
            (Scenario::Miscalibration, Trouble::Miscalibration)
            | (Scenario::RunawayLoop, Trouble::RunawayLoop) => service == SUPPORT,
            (Scenario::CostSpike, Trouble::CostSpike) => service == CHECKOUT,
            (Scenario::Mixed, Trouble::Miscalibration) => service == FRAUD,
            (Scenario::Mixed, Trouble::Drift) => service == SEARCH,
            (Scenario::Mixed, Trouble::CostSpike) => service == CHECKOUT,
            (Scenario::Mixed, Trouble::RunawayLoop) => service == SUPPORT,
            _ => false,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Steady => "steady",
            Scenario::Drift => "drift",
            Scenario::Miscalibration => "miscalibration",
            Scenario::CostSpike => "cost-spike",
            Scenario::RunawayLoop => "runaway-loop",
            Scenario::Malformed => "malformed",
            Scenario::Mixed => "mixed",
        }
    }

    /// One line, for `--help`.
    pub fn description(self) -> &'static str {
        match self {
            Scenario::Steady => {
                "stationary traffic: 4 services, 5 models, calibrated confidence, ~2% errors"
            }
            Scenario::Drift => {
                "after the onset confidence falls (mean ~0.80 -> ~0.55), quality drops and the prediction mix shifts, all services"
            }
            Scenario::Miscalibration => {
                "after the onset support-bot stays ~0.9 confident but is right only half the time"
            }
            Scenario::CostSpike => {
                "after the onset checkout-assistant sends 4x the input tokens and gets 8x the output tokens"
            }
            Scenario::RunawayLoop => {
                "after the onset some support-bot sessions repeat one tool call on the same input 20+ times"
            }
            Scenario::Malformed => {
                "after the onset ~5% of payloads are broken (bad JSON, empty, bad or missing fields, invalid UTF-8)"
            }
            Scenario::Mixed => {
                "after the onset fraud-screen is overconfident, search-rerank drifts, checkout-assistant's cost spikes, some support-bot sessions loop"
            }
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Scenario {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let want = s.trim();
        for sc in Scenario::ALL {
            let name = sc.name();
            let same = want.len() == name.len()
                && want
                    .bytes()
                    .zip(name.bytes())
                    .all(|(a, b)| a.to_ascii_lowercase() == b || (a == b'_' && b == b'-'));
            if same {
                return Ok(sc);
            }
        }
        let names: Vec<&str> = Scenario::ALL.iter().map(|s| s.name()).collect();
        Err(format!(
            "unknown scenario {s:?}; valid scenarios: {}",
            names.join(", ")
        ))
    }
}

/// Settings of a generated run.
#[derive(Debug, Clone)]
pub struct GeneratorConfig {
    pub seed: u64,
    /// Events per second of event time: the base timestamp advances `1000 / rate` ms per event.
    pub rate: f64,
    /// Event time of the first event, epoch milliseconds.
    pub start_ms: i64,
    /// Planned length of the run; scenarios switch on at `total_events / 2` (the onset).
    pub total_events: u64,
    pub scenario: Scenario,
    /// Each timestamp is the base time minus a uniform jitter in `[0, max_jitter_ms]`.
    pub max_jitter_ms: i64,
    /// When above 1, every event gets one of this many routes per (service, model): many keys,
    /// for memory benchmarks. 0 keeps the normal routes.
    pub route_spread: u32,
    /// When set, every prediction sent without `correct` gets a feedback event this many
    /// milliseconds after it (see [`Generator::next_feedback`]).
    pub feedback_delay_ms: Option<i64>,
    /// When set, the trouble ends at this event index and traffic is steady again (an
    /// incident that recovers, so a monitor should resolve what it raised).
    pub recover_at: Option<u64>,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        Self {
            seed: 42,
            rate: 1000.0,
            start_ms: 1_767_225_600_000, // 2026-01-01T00:00:00Z
            total_events: 100_000,
            scenario: Scenario::Steady,
            max_jitter_ms: 2000,
            route_spread: 0,
            feedback_delay_ms: None,
            recover_at: None,
        }
    }
}
