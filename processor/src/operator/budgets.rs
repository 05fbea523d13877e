//! Daily budgets: spend per budgeted service and tenant, and the `budgets` rows.

use super::*;
use std::collections::BTreeMap;

use serde::Deserialize;

use crate::error::{config_err, ProcessorError};

pub(super) const DAY_MS: i64 = 86_400_000;

/// Daily budgets: spend per budgeted service and tenant since the start of the UTC day,
/// from closed panes, and the `budgets` rows of closed windows.
pub(super) struct Budgets {
    /// Budgets in nano-dollars.
    pub(super) services: HashMap<String, i64>,
    pub(super) tenant_ids: crate::FastMap<String, u32>,
    pub(super) tenants: Vec<(String, i64)>,
    /// (day, nano-dollars spent in that day's closed panes).
    pub(super) service_spend: HashMap<String, (i64, i64)>,
    pub(super) tenant_spend: HashMap<u32, (i64, i64)>,
    pub(super) rows: Vec<(i64, i64, &'static str, String, i64, i64, i64)>,
}

impl Budgets {
    pub(super) fn new(c: &BudgetConfig) -> Self {
        let nanos = |usd: &f64| usd_to_nanos(*usd);
        Self {
            services: c
                .services
                .iter()
                .map(|(k, v)| (k.clone(), nanos(v)))
                .collect(),
            tenant_ids: c
                .tenants
                .keys()
                .enumerate()
                .map(|(i, k)| (k.clone(), i as u32))
                .collect(),
            tenants: c
                .tenants
                .iter()
                .map(|(k, v)| (k.clone(), nanos(v)))
                .collect(),
            service_spend: HashMap::new(),
            tenant_spend: HashMap::new(),
            rows: Vec::new(),
        }
    }

    pub(super) fn add(slot: &mut (i64, i64), day: i64, nanos: i64) {
        if slot.0 < day {
            *slot = (day, 0);
        }
        if slot.0 == day {
            slot.1 += nanos;
        }
    }

    /// A closed pane's spend counts towards its day.
    pub(super) fn retire(&mut self, pane: i64, service: &str, state: &CoreState) {
        let day = pane.div_euclid(DAY_MS);
        if self.services.contains_key(service) {
            let slot = self
                .service_spend
                .entry(service.to_string())
                .or_insert((day, 0));
            Self::add(slot, day, state.cost_nanos);
        }
        for &(t, c) in &state.tenant_costs {
            Self::add(self.tenant_spend.entry(t).or_insert((day, 0)), day, c);
        }
    }

    pub(super) fn spent(slot: Option<&(i64, i64)>, day: i64) -> i64 {
        slot.filter(|s| s.0 == day).map_or(0, |s| s.1)
    }
}

impl WindowOperator {
    /// The `budgets` rows of the window [`start`, `end`) (its cost per budgeted service and
    /// tenant, summed over its `members`: (pane, key, group)); returns (spent today in USD,
    /// burn rate) per budgeted service for the window's `metrics` rows.
    pub(super) fn window_budgets(
        &mut self,
        start: i64,
        end: i64,
        members: &[(i64, u32, usize)],
    ) -> HashMap<String, (f64, f64)> {
        let day = start.div_euclid(DAY_MS);
        let mut service_cost: BTreeMap<&str, i64> = BTreeMap::new();
        let mut tenant_cost: BTreeMap<u32, i64> = BTreeMap::new();
        for &(_, k, g) in members {
            let st = self.groups.state(g);
            let service = self.keys.values[k as usize].service.as_str();
            if self.budgets.services.contains_key(service) {
                *service_cost.entry(service).or_default() += st.cost_nanos;
            }
            for &(t, c) in &st.tenant_costs {
                *tenant_cost.entry(t).or_default() += c;
            }
        }
        let size = self.spec.size;
        let burn =
            |cost: i64, budget: i64| cost as f64 / size as f64 * DAY_MS as f64 / budget as f64;
        let mut service_budget: HashMap<String, (f64, f64)> = HashMap::new();
        for (service, &cost) in &service_cost {
            let budget = self.budgets.services[*service];
            let spent = Budgets::spent(self.budgets.service_spend.get(*service), day) + cost;
            service_budget.insert(
                service.to_string(),
                (spent as f64 / 1e9, burn(cost, budget)),
            );
            let row = (
                start,
                end,
                "service",
                service.to_string(),
                budget,
                spent,
                cost,
            );
            self.budgets.rows.push(row);
        }
        for (&t, &cost) in &tenant_cost {
            let (name, budget) = self.budgets.tenants[t as usize].clone();
            let spent = Budgets::spent(self.budgets.tenant_spend.get(&t), day) + cost;
            self.budgets
                .rows
                .push((start, end, "tenant", name, budget, spent, cost));
        }
        service_budget
    }

    /// `budgets` rows of the windows closed since the last call.
    pub fn take_budget_rows(&mut self) -> Result<Option<RecordBatch>> {
        if self.budgets.rows.is_empty() {
            return Ok(None);
        }
        let rows = std::mem::take(&mut self.budgets.rows);
        let ts = |v: Vec<i64>| {
            Arc::new(arrow::array::TimestampMillisecondArray::from(v).with_timezone("UTC"))
                as ArrayRef
        };
        let usd = |v: Vec<f64>| Arc::new(Float64Array::from(v)) as ArrayRef;
        let text = |v: Vec<&str>| Arc::new(StringArray::from(v)) as ArrayRef;
        let size = self.spec.size as f64;
        let columns = vec![
            ts(rows.iter().map(|r| r.0).collect()),
            ts(rows.iter().map(|r| r.1).collect()),
            text(rows.iter().map(|r| r.2).collect()),
            text(rows.iter().map(|r| r.3.as_str()).collect()),
            usd(rows.iter().map(|r| r.4 as f64 / 1e9).collect()),
            usd(rows.iter().map(|r| r.5 as f64 / 1e9).collect()),
            usd(rows.iter().map(|r| r.6 as f64 / 1e9).collect()),
            usd(rows
                .iter()
                .map(|r| r.6 as f64 / size * DAY_MS as f64 / r.4 as f64)
                .collect()),
        ];
        Ok(Some(RecordBatch::try_new(
            inferwatch_schemas::tables::budgets_schema(),
            columns,
        )?))
    }
}

/// `[budgets]`: daily budgets in US dollars (UTC days).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BudgetConfig {
    /// Service name → daily budget.
    pub services: BTreeMap<String, f64>,
    /// Tenant → daily budget.
    pub tenants: BTreeMap<String, f64>,
}

impl BudgetConfig {
    pub fn validate(&self) -> Result<(), ProcessorError> {
        for (scope, map) in [("services", &self.services), ("tenants", &self.tenants)] {
            if let Some((name, b)) = map.iter().find(|(_, b)| !(b.is_finite() && **b > 0.0)) {
                return Err(config_err!(
                    "budgets.{scope}.\"{name}\" = {b}: a daily budget is a positive number of dollars"
                ));
            }
        }
        Ok(())
    }
}
