//! The processor's part of the inferwatch TOML file: one field per section. Each section's
//! type, defaults and validation live with the code that uses it (`window`, `price`,
//! `custom`, `metrics`, `drift`, `labels`, `sessions`, `operator`'s budgets, `rules`);
//! they are re-exported here. Every key has a default that works.

use std::collections::BTreeMap;

use serde::Deserialize;

pub use crate::custom::{validate_custom, CustomMetric};
pub use crate::drift::DriftConfig;
pub use crate::error::ProcessorError;
pub use crate::labels::FeedbackConfig;
pub use crate::metrics::{Binning, CalibrationConfig, CostConfig};
pub use crate::operator::BudgetConfig;
pub use crate::price::{builtin_prices, price_from_ms, validate_prices, Price, Prices, Tier};
pub use crate::rules::{builtin_rules, AlertsConfig, RuleConfig};
pub use crate::sessions::LoopConfig;
pub use crate::window::WindowConfig;

/// Everything the processor needs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProcessorConfig {
    pub window: WindowConfig,
    pub calibration: CalibrationConfig,
    pub drift: DriftConfig,
    pub feedback: FeedbackConfig,
    pub loops: LoopConfig,
    pub cost: CostConfig,
    pub budgets: BudgetConfig,
    /// Model name or glob pattern (`*`, `?`) → price(s). An exact name beats any pattern;
    /// among patterns the one with the most literal characters wins. Events that carry
    /// `cost_usd` keep their own cost. A `[prices]` table in the config replaces the built-in
    /// one (`processor/prices.toml`).
    pub prices: BTreeMap<String, Prices>,
    pub custom_metrics: Vec<CustomMetric>,
    pub alerts: AlertsConfig,
}

impl Default for ProcessorConfig {
    fn default() -> Self {
        Self {
            window: WindowConfig::default(),
            calibration: CalibrationConfig::default(),
            drift: DriftConfig::default(),
            feedback: FeedbackConfig::default(),
            loops: LoopConfig::default(),
            cost: CostConfig::default(),
            budgets: BudgetConfig::default(),
            prices: builtin_prices(),
            custom_metrics: Vec::new(),
            alerts: AlertsConfig::default(),
        }
    }
}

impl ProcessorConfig {
    /// Checks what serde cannot, section by section; each section's module owns its rules.
    pub fn validate(&self) -> Result<(), ProcessorError> {
        self.window.validate()?;
        self.calibration.validate()?;
        self.drift.validate()?;
        self.cost.validate()?;
        self.budgets.validate()?;
        self.loops.validate()?;
        self.feedback.validate()?;
        validate_prices(&self.prices)?;
        self.alerts.validate()?;
        validate_custom(&self.custom_metrics, &crate::columns::names())
    }
}
