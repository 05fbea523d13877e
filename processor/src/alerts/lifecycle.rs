//! One (rule, key) through ok → pending → firing → resolved.

use super::*;

impl Alerting {
    pub(super) fn step(
        &mut self,
        r: usize,
        key: AlertKey,
        input: Input,
        reading: Reading,
        start: i64,
        end: i64,
    ) {
        let rule = &self.rules[r];
        let input = match (input, rule.no_data) {
            (Input::NoData, NoData::Ok) => Input::Healthy,
            (Input::NoData, NoData::Alerting) => Input::Breach(rule.lowest()),
            (i, _) => i,
        };
        let id = (r, key);
        let before = self.states.get(&id).copied();
        let after = next_phase(before, input, rule.for_windows, end);
        let record = transition(before, after, input);
        let mut after = after;
        let mut renotify = false;
        let record = match (record, &mut after) {
            (Some(r), _) => Some(r),
            (
                None,
                Some(Phase::Firing {
                    severity,
                    notified_at,
                }),
            ) if self.renotify_ms > 0 && end - *notified_at >= self.renotify_ms => {
                renotify = true;
                Some(("firing", "firing", Some(*severity), true))
            }
            _ => None,
        };
        if let (Some((_, _, _, true)), Some(Phase::Firing { notified_at, .. })) =
            (record, &mut after)
        {
            *notified_at = end;
        }
        let (r, key) = id;
        match after {
            Some(p) => {
                self.states.insert((r, key.clone()), p);
            }
            None => {
                self.states.remove(&(r, key.clone()));
            }
        }
        if let Some((state, previous, severity, notified)) = record {
            let rule = &self.rules[r];
            let threshold = rule.threshold(severity);
            let summary = summary(rule, state, severity, reading.value, threshold, renotify);
            let t = Transition {
                kind: NoticeKind::Alert,
                rule: r,
                key,
                state,
                previous,
                severity,
                value: reading.value,
                threshold,
                samples: reading.samples,
                start,
                end,
                notified,
                renotify,
                summary,
            };
            self.record(t);
        }
    }
}

/// Where a (rule, key) goes from `before` on one window's `input` (`for_windows` breaching
/// windows in a row make it fire).
fn next_phase(before: Option<Phase>, input: Input, for_windows: u32, end: i64) -> Option<Phase> {
    match (before, input) {
        (_, Input::NoData) => before,
        (_, Input::Healthy) => None,
        (None, Input::Breach(sev)) | (Some(Phase::Pending { .. }), Input::Breach(sev)) => {
            let count = match before {
                Some(Phase::Pending { count }) => count + 1,
                _ => 1,
            };
            if count >= for_windows {
                Some(Phase::Firing {
                    severity: sev,
                    notified_at: end,
                })
            } else {
                Some(Phase::Pending { count })
            }
        }
        (Some(Phase::Firing { notified_at, .. }), Input::Breach(sev)) => Some(Phase::Firing {
            severity: sev,
            notified_at,
        }),
    }
}

/// The transition to record, if any: (state, previous state, severity, notified).
fn transition(
    before: Option<Phase>,
    after: Option<Phase>,
    input: Input,
) -> Option<(&'static str, &'static str, Option<Severity>, bool)> {
    match (before, after) {
        (None, Some(Phase::Pending { .. })) => {
            let level = match input {
                Input::Breach(sev) => Some(sev),
                _ => None,
            };
            Some(("pending", "ok", level, false))
        }
        (Some(Phase::Pending { .. }), None) => Some(("ok", "pending", None, false)),
        (prev, Some(Phase::Firing { severity, .. }))
            if !matches!(prev, Some(Phase::Firing { .. })) =>
        {
            let from = if prev.is_some() { "pending" } else { "ok" };
            Some(("firing", from, Some(severity), true))
        }
        (Some(Phase::Firing { severity: old, .. }), Some(Phase::Firing { severity, .. }))
            if old != severity =>
        {
            // Escalations are notified; a step down to warning is only recorded.
            Some(("firing", "firing", Some(severity), severity > old))
        }
        (Some(Phase::Firing { severity, .. }), None) => {
            Some(("resolved", "firing", Some(severity), true))
        }
        _ => None,
    }
}
