//! The gateway's own counters, served at its `/metrics` in the Prometheus text format.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// The three ingest routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Route {
    Events,
    Feedback,
    Traces,
}

impl Route {
    pub fn as_str(self) -> &'static str {
        match self {
            Route::Events => "/v1/events",
            Route::Feedback => "/v1/feedback",
            Route::Traces => "/v1/traces",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

const ROUTES: [Route; 3] = [Route::Events, Route::Feedback, Route::Traces];

#[derive(Default)]
pub struct Stats {
    requests: Mutex<BTreeMap<(Route, u16), u64>>,
    accepted: [AtomicU64; 3],
    rejected: [AtomicU64; 3],
    spans_skipped: AtomicU64,
}

impl Stats {
    pub fn request(&self, route: Route, status: u16) {
        *self
            .requests
            .lock()
            .expect("not poisoned")
            .entry((route, status))
            .or_default() += 1;
    }

    pub fn items(&self, route: Route, accepted: usize, rejected: usize) {
        self.accepted[route.index()].fetch_add(accepted as u64, Ordering::Relaxed);
        self.rejected[route.index()].fetch_add(rejected as u64, Ordering::Relaxed);
    }

    pub fn spans_skipped(&self, n: u64) {
        self.spans_skipped.fetch_add(n, Ordering::Relaxed);
    }

    /// The text format; `in_flight` is the budget in use.
    pub fn render(&self, in_flight: usize, kafka_reachable: Option<bool>) -> String {
        let mut out = String::new();
        let requests = self.requests.lock().expect("not poisoned").clone();
        header(
            &mut out,
            "inferwatch_gateway_requests_total",
            "counter",
            "Requests answered, by route and HTTP status.",
        );
        for ((route, code), n) in requests {
            let _ = writeln!(
                out,
                "inferwatch_gateway_requests_total{{route=\"{}\",code=\"{code}\"}} {n}",
                route.as_str()
            );
        }
        for (name, help, values) in [
            (
                "inferwatch_gateway_items_accepted_total",
                "Events, feedback and spans taken (acknowledged by Kafka, or queued in process).",
                &self.accepted,
            ),
            (
                "inferwatch_gateway_items_rejected_total",
                "Items refused by validation, named in the reply.",
                &self.rejected,
            ),
        ] {
            header(&mut out, name, "counter", help);
            for r in ROUTES {
                let v = values[r.index()].load(Ordering::Relaxed);
                let _ = writeln!(out, "{name}{{route=\"{}\"}} {v}", r.as_str());
            }
        }
        header(
            &mut out,
            "inferwatch_gateway_spans_skipped_total",
            "counter",
            "Spans without gen_ai.operation.name: counted, not events, not errors.",
        );
        let _ = writeln!(
            out,
            "inferwatch_gateway_spans_skipped_total {}",
            self.spans_skipped.load(Ordering::Relaxed)
        );
        header(&mut out, "inferwatch_gateway_in_flight_events", "gauge",
            "Events accepted and not yet acknowledged or taken (bounded by gateway.max_in_flight_events).");
        let _ = writeln!(out, "inferwatch_gateway_in_flight_events {in_flight}");
        if let Some(up) = kafka_reachable {
            header(
                &mut out,
                "inferwatch_gateway_kafka_reachable",
                "gauge",
                "1 while the brokers answer; requests get 503 otherwise.",
            );
            let _ = writeln!(out, "inferwatch_gateway_kafka_reachable {}", u8::from(up));
        }
        out
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}
