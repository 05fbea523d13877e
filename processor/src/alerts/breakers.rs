//! Circuit breakers per (service, model): closed → open → half-open → closed.

use super::*;

impl Alerting {
    pub(super) fn breakers(
        &mut self,
        start: i64,
        end: i64,
        pairs: BTreeMap<Pair, (bool, bool, Option<String>)>,
    ) {
        if !self.rules.iter().any(|r| r.breaks) {
            return;
        }
        // Pairs whose break rule fired in this window open their breaker.
        let mut firing: BTreeMap<Pair, usize> = BTreeMap::new();
        for ((r, key), phase) in &self.states {
            if self.rules[*r].breaks && matches!(phase, Phase::Firing { .. }) {
                let pair = (key.service.clone(), key.model.clone().unwrap_or_default());
                let e = firing.entry(pair).or_insert(*r);
                *e = (*e).min(*r);
            }
        }
        let mut all: BTreeSet<Pair> = self.breakers.keys().cloned().collect();
        all.extend(firing.keys().cloned());
        for pair in all {
            let current = self.breakers.get(&pair).cloned();
            let reading = pairs.get(&pair).cloned().unwrap_or_default();
            let next = self.next_breaker(&current, firing.get(&pair).copied(), end, reading);
            let name = |s: &Option<(BreakerState, String)>| match s {
                None => "closed",
                Some((BreakerState::Open { .. }, _)) => "open",
                Some((BreakerState::HalfOpen { .. }, _)) => "half_open",
            };
            let (from, to) = (name(&current), name(&next));
            match &next {
                Some(n) => self.breakers.insert(pair.clone(), n.clone()),
                None => self.breakers.remove(&pair),
            };
            if from == to {
                continue;
            }
            self.record_breaker(
                pair,
                from,
                to,
                next.as_ref().or(current.as_ref()),
                start,
                end,
            );
        }
    }

    /// A breaker's next state: `current`, the rule that fired for its pair in this window
    /// (`firing`), and what the window said (breached, observed, the breaching rule).
    fn next_breaker(
        &self,
        current: &Option<(BreakerState, String)>,
        firing: Option<usize>,
        end: i64,
        reading: (bool, bool, Option<String>),
    ) -> Option<(BreakerState, String)> {
        let (breached, observed, breach_rule) = reading;
        match current {
            None => firing.map(|r| {
                (
                    BreakerState::Open { since: end },
                    self.rules[r].name.clone(),
                )
            }),
            Some((BreakerState::Open { since }, why)) => {
                if end - since >= self.cooldown_ms {
                    Some((BreakerState::HalfOpen { healthy: 0 }, why.clone()))
                } else {
                    current.clone()
                }
            }
            Some((BreakerState::HalfOpen { healthy }, why)) => {
                if breached {
                    let why = breach_rule.clone().unwrap_or_else(|| why.clone());
                    Some((BreakerState::Open { since: end }, why))
                } else if observed {
                    let healthy = healthy + 1;
                    if healthy >= self.recovery_windows {
                        None
                    } else {
                        Some((BreakerState::HalfOpen { healthy }, why.clone()))
                    }
                } else {
                    current.clone()
                }
            }
        }
    }

    /// Records a breaker going `from` → `to`, for the rule named in `state`.
    fn record_breaker(
        &mut self,
        pair: Pair,
        from: &'static str,
        to: &'static str,
        state: Option<&(BreakerState, String)>,
        start: i64,
        end: i64,
    ) {
        let why = state.map(|(_, w)| w.clone()).unwrap_or_default();
        let r = self.rules.iter().position(|r| r.name == why).unwrap_or(0);
        let severity = match to {
            "open" => Severity::Critical,
            "half_open" => Severity::Warning,
            _ => Severity::Info,
        };
        let summary = match to {
            "open" => format!(
                "circuit open: {why} fired; callers of {}/{} should fall back",
                pair.0, pair.1
            ),
            "half_open" => format!(
                "circuit half-open after the cooldown: probing {}/{} for {} healthy windows",
                pair.0, pair.1, self.recovery_windows
            ),
            _ => format!(
                "circuit closed: {}/{} healthy for {} windows",
                pair.0, pair.1, self.recovery_windows
            ),
        };
        let t = Transition {
            kind: NoticeKind::Breaker,
            rule: r,
            key: AlertKey {
                service: pair.0.clone(),
                model: Some(pair.1.clone()),
                model_version: None,
                route: None,
                tenant: None,
            },
            state: to,
            previous: from,
            severity: Some(severity),
            value: None,
            threshold: None,
            samples: None,
            start,
            end,
            notified: true,
            renotify: false,
            summary,
        };
        self.record(t);
    }
}
