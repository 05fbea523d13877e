//! The generator: sessions, events and their payloads, one model call at a time.

use crate::{catalogue::*, format::*, malformations::*, rng::*, scenario::*};

mod json;

/// Share of new support-bot sessions that loop after the onset of [`Scenario::RunawayLoop`].
pub(crate) const RUNAWAY_SHARE: f64 = 0.03;
/// Concurrent agent sessions per (service, model) pair.
pub(crate) const SLOTS: usize = 4;
/// A timed-out call is cut at this latency.
pub(crate) const TIMEOUT_MS: f64 = 30_000.0;

/// An agent run in progress in one slot.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Session {
    pub(crate) id: u64,
    pub(crate) len: u32,
    pub(crate) step: u32,
    /// First looping step, 0 for a normal session.
    pub(crate) loop_from: u32,
    pub(crate) loop_tool: u8,
    pub(crate) loop_hash: u64,
}

/// One sampled event, before it is written.
#[derive(Default)]
pub(crate) struct Event {
    pub(crate) pair: usize,
    pub(crate) ts_ms: i64,
    pub(crate) ts_epoch: bool,
    pub(crate) schema_version: bool,
    pub(crate) model_version: bool,
    pub(crate) route: bool,
    pub(crate) tenant: Option<u8>,
    /// Bit 0: region present, bit 1: client present; indexes below.
    pub(crate) attrs: u8,
    pub(crate) region: u8,
    pub(crate) client: u8,
    pub(crate) session: Option<(u64, u32)>,
    pub(crate) tool: Option<u8>,
    pub(crate) input_hash: u64,
    pub(crate) status: Status,
    pub(crate) status_explicit: bool,
    pub(crate) latency_ms: f64,
    pub(crate) tokens_in: i64,
    pub(crate) tokens_out: Option<i64>,
    pub(crate) tokens_cached: Option<i64>,
    pub(crate) cost_usd: Option<f64>,
    pub(crate) prediction: Option<u8>,
    pub(crate) confidence: Option<f64>,
    pub(crate) correct: Option<bool>,
    /// Whether the prediction was right, sent or not.
    pub(crate) truth: Option<bool>,
    pub(crate) quality: Option<f64>,
    pub(crate) flags: u8,
    pub(crate) approval: Option<u8>,
    pub(crate) output_chars: Option<i64>,
}

/// Deterministic generator of JSON inference events; see the module docs.
#[derive(Debug, Clone)]
pub struct Generator {
    cfg: GeneratorConfig,
    rng: Rng,
    produced: u64,
    malformed: u64,
    onset: u64,
    step_ms: f64,
    /// `ev-<seed hex>-`
    id_prefix: Vec<u8>,
    /// `sess-<seed hex>-`
    session_prefix: Vec<u8>,
    hash_key: u64,
    sessions: [Session; PAIRS.len() * SLOTS],
    next_session: u64,
    /// Feedback not yet handed out: (feedback time, event index, correct, pair).
    feedback: std::collections::VecDeque<(i64, u64, bool, usize)>,
}

impl Generator {
    /// # Panics
    /// If `rate` is not a positive finite number or `max_jitter_ms` is negative.
    pub fn new(cfg: GeneratorConfig) -> Self {
        assert!(
            cfg.rate.is_finite() && cfg.rate > 0.0,
            "generator rate must be a positive number of events per second, got {}",
            cfg.rate
        );
        assert!(
            cfg.max_jitter_ms >= 0,
            "generator max_jitter_ms must be non-negative, got {}",
            cfg.max_jitter_ms
        );
        let hex = format!("{:x}", cfg.seed);
        Self {
            rng: Rng::new(cfg.seed),
            produced: 0,
            malformed: 0,
            onset: cfg.total_events / 2,
            step_ms: 1000.0 / cfg.rate,
            id_prefix: format!("ev-{hex}-").into_bytes(),
            session_prefix: format!("sess-{hex}-").into_bytes(),
            hash_key: mix64(cfg.seed ^ 0x5EED_1A5F_0000_0001),
            sessions: [Session::default(); PAIRS.len() * SLOTS],
            next_session: 0,
            feedback: std::collections::VecDeque::new(),
            cfg,
        }
    }

    /// Appends exactly one payload (no trailing newline) to `out`; returns false once
    /// `total_events` payloads were produced.
    pub fn next_payload(&mut self, out: &mut Vec<u8>) -> bool {
        if self.produced >= self.cfg.total_events {
            return false;
        }
        let index = self.produced;
        self.produced += 1;
        let after = index >= self.onset && self.cfg.recover_at.is_none_or(|r| index < r);
        let sc = self.cfg.scenario;

        let mut bad = None;
        if after && sc == Scenario::Malformed && self.rng.chance(MALFORMED_SHARE) {
            bad = Some(MALFORMS[(self.malformed % MALFORMS.len() as u64) as usize]);
            self.malformed += 1;
        }
        match bad {
            Some(Malform::Empty) => return true,
            Some(Malform::NotJson) => {
                out.extend_from_slice(br#"{"event_id": "x", broken"#);
                return true;
            }
            _ => {}
        }
        let ev = self.sample(index, after);
        self.write(out, index, &ev, bad);
        if let (Some(delay), None, None, Some(truth), Some(_)) = (
            self.cfg.feedback_delay_ms,
            bad,
            ev.correct,
            ev.truth,
            ev.confidence,
        ) {
            self.feedback
                .push_back((ev.ts_ms + delay, index, truth, ev.pair));
        }
        true
    }

    /// Appends the next feedback event (no trailing newline) if one is due at `up_to_ms`
    /// (`None`: any); returns false when none is.
    pub fn next_feedback(&mut self, out: &mut Vec<u8>, up_to_ms: Option<i64>) -> bool {
        self.next_feedback_keyed(out, up_to_ms).is_some()
    }

    /// [`Generator::next_feedback`], returning the Kafka key of the prediction it labels
    /// (`service/model`), so feedback lands in the partition of its prediction.
    pub fn next_feedback_keyed(
        &mut self,
        out: &mut Vec<u8>,
        up_to_ms: Option<i64>,
    ) -> Option<String> {
        match self.feedback.front() {
            Some(&(ts, index, correct, pair)) if up_to_ms.is_none_or(|t| ts <= t) => {
                self.feedback.pop_front();
                out.extend_from_slice(b"{\"event_id\":\"");
                out.extend_from_slice(&self.id_prefix);
                put_u64(out, index);
                out.extend_from_slice(b"\",\"timestamp\":");
                put_i64(out, ts);
                out.extend_from_slice(if correct {
                    b",\"correct\":true,\"source\":\"generator\"}"
                } else {
                    b",\"correct\":false,\"source\":\"generator\"}"
                });
                let p = &PAIRS[pair];
                Some(format!(
                    "{}/{}",
                    SERVICES[p.service].name, MODELS[p.model as usize].name
                ))
            }
            _ => None,
        }
    }

    /// Base event time of the next event: feedback up to here is due.
    pub fn event_time(&self) -> i64 {
        self.base_ms(self.produced)
    }

    pub fn produced(&self) -> u64 {
        self.produced
    }

    /// How many payloads produced so far were deliberately malformed.
    pub fn malformed(&self) -> u64 {
        self.malformed
    }

    /// Base event time of event `index`, before jitter.
    pub(crate) fn base_ms(&self, index: u64) -> i64 {
        self.cfg.start_ms + (index as f64 * self.step_ms) as i64
    }

    /// Event `index`; `after`: past the scenario's onset. The draws come in a fixed order
    /// (envelope, session, outcome, usage, judgement, extras): the bytes of a seed depend
    /// on it.
    pub(crate) fn sample(&mut self, index: u64, after: bool) -> Event {
        let base_ms = self.base_ms(index);
        let mut ev = Event {
            pair: self.rng.pick(&PAIR_WEIGHTS),
            ..Event::default()
        };
        self.draw_envelope(&mut ev, base_ms);
        self.draw_session(&mut ev, after);
        draw_outcome(&mut self.rng, &mut ev);
        let tout_ratio = self.draw_usage(&mut ev, after);
        self.draw_latency_and_cost(&mut ev, tout_ratio);
        self.draw_judgement(&mut ev, after);
        self.draw_extras(&mut ev);
        ev
    }

    /// Event time and the optional envelope fields.
    fn draw_envelope(&mut self, ev: &mut Event, base_ms: i64) {
        let rng = &mut self.rng;
        let jitter = if self.cfg.max_jitter_ms > 0 {
            rng.below(self.cfg.max_jitter_ms as u64 + 1) as i64
        } else {
            0
        };
        ev.ts_ms = base_ms - jitter;
        ev.ts_epoch = rng.chance(0.10);
        ev.schema_version = rng.chance(0.5);
        ev.model_version = rng.chance(0.85);
        ev.route = rng.chance(0.9);
        ev.tenant = if rng.chance(0.9) {
            Some(rng.pick(&TENANT_WEIGHTS) as u8)
        } else {
            None
        };
        if rng.chance(0.2) {
            ev.attrs = 1;
            ev.region = rng.below(REGIONS.len() as u64) as u8;
            if rng.chance(0.5) {
                ev.attrs |= 2;
                ev.client = rng.below(CLIENTS.len() as u64) as u8;
            }
        }
    }

    /// Agent sessions: a slot of this pair continues its run or starts a new one (a
    /// runaway loop, past the onset of that scenario).
    fn draw_session(&mut self, ev: &mut Event, after: bool) {
        let p = &PAIRS[ev.pair];
        let svc = &SERVICES[p.service];
        if svc.tools.is_empty() {
            return;
        }
        let rng = &mut self.rng;
        let slot = ev.pair * SLOTS + rng.below(SLOTS as u64) as usize;
        let s = &mut self.sessions[slot];
        if s.step >= s.len {
            *s = Session {
                id: self.next_session,
                len: if rng.chance(0.92) {
                    1 + rng.below(8) as u32
                } else {
                    9 + rng.below(8) as u32
                },
                ..Session::default()
            };
            self.next_session += 1;
            if after
                && self.cfg.scenario.troubles(Trouble::RunawayLoop, p.service)
                && rng.chance(RUNAWAY_SHARE)
            {
                s.loop_from = 2;
                s.len = 1 + 20 + rng.below(20) as u32; // 20..=39 looping steps
                s.loop_tool = rng.below(2) as u8; // lookup_order or search_kb
                s.loop_hash = mix64(self.hash_key ^ s.id.wrapping_mul(0xA24B_AED4_963E_E407));
            }
        }
        s.step += 1;
        ev.session = Some((s.id, s.step));
        if s.loop_from != 0 && s.step >= s.loop_from {
            ev.tool = Some(s.loop_tool);
            ev.input_hash = s.loop_hash;
        } else {
            if rng.chance(0.75) {
                ev.tool = Some(rng.below(svc.tools.len() as u64) as u8);
            }
            ev.input_hash = mix64(
                self.hash_key
                    ^ s.id.wrapping_mul(0x9FB2_1C65_1E98_DF25)
                    ^ (s.step as u64).wrapping_mul(0xD6E8_FEB8_6659_FD93),
            );
        }
    }

    /// Tokens (a cost spike inflates checkout-assistant's prompts and completions); returns
    /// the completion's length against the pair's median, which latency follows.
    fn draw_usage(&mut self, ev: &mut Event, after: bool) -> f64 {
        let rng = &mut self.rng;
        let p = &PAIRS[ev.pair];
        let spike = after && self.cfg.scenario.troubles(Trouble::CostSpike, p.service);
        let mut tin = rng.lognormal(p.tokens_in_median, p.tokens_in_sigma);
        if spike {
            tin *= 4.0;
        }
        ev.tokens_in = (tin.round() as i64).max(1);
        let mut tout_ratio = 1.0;
        if p.tokens_out_median > 0.0 {
            let mut t = rng.lognormal(p.tokens_out_median, p.tokens_out_sigma);
            if spike {
                t *= 8.0;
            }
            tout_ratio = t / p.tokens_out_median;
            ev.tokens_out = match ev.status {
                Status::Ok | Status::Filtered => Some((t.round() as i64).max(1)),
                Status::Refused => Some(5 + rng.below(30) as i64),
                Status::Error | Status::Timeout => None,
            };
        }
        let model = &MODELS[p.model as usize];
        if model.prompt_cache && rng.chance(0.35) {
            ev.tokens_cached = Some((ev.tokens_in as f64 * 0.9 * rng.f64()) as i64);
        }
        tout_ratio
    }

    /// Latency: log-normal per model, longer completions take longer, rare slow path. Then
    /// the cost, sent by 30 % of callers.
    fn draw_latency_and_cost(&mut self, ev: &mut Event, tout_ratio: f64) {
        let rng = &mut self.rng;
        let model = &MODELS[PAIRS[ev.pair].model as usize];
        let mut latency = rng.lognormal(model.latency_median_ms, model.latency_sigma);
        latency *= 0.75 + 0.25 * tout_ratio;
        if rng.chance(0.01) {
            latency *= 3.0 + 5.0 * rng.f64();
        }
        ev.latency_ms = match ev.status {
            Status::Timeout => TIMEOUT_MS + rng.below(250) as f64 + rng.f64(),
            Status::Error => latency * 0.4,
            Status::Refused => latency * 0.3,
            _ => latency.min(TIMEOUT_MS),
        };
        if rng.chance(0.3) {
            let cached = ev.tokens_cached.unwrap_or(0);
            let fresh = ev.tokens_in - cached;
            let out = ev.tokens_out.unwrap_or(0);
            ev.cost_usd = Some(
                (fresh as f64 * model.price_in
                    + cached as f64 * model.price_cached
                    + out as f64 * model.price_out)
                    / 1e6,
            );
        }
    }

    /// Prediction, confidence, correctness, quality and guardrail flags: calibrated unless
    /// a scenario says otherwise.
    fn draw_judgement(&mut self, ev: &mut Event, after: bool) {
        let rng = &mut self.rng;
        let sc = self.cfg.scenario;
        let p = &PAIRS[ev.pair];
        let drift = after && sc.troubles(Trouble::Drift, p.service);
        let svc = &SERVICES[p.service];
        let model = &MODELS[p.model as usize];
        if p.tokens_out_median > 0.0 && ev.status == Status::Ok {
            let mix = if drift { svc.drift_mix } else { svc.steady_mix };
            ev.prediction = Some(rng.pick(mix) as u8);
            let overconfident = after && sc.troubles(Trouble::Miscalibration, p.service);
            let a = rng.avg3();
            let c = if overconfident {
                0.82 + 0.17 * a
            } else if drift {
                0.25 + 0.6 * a + model.confidence_offset
            } else {
                0.58 + 0.42 * a + model.confidence_offset
            };
            let c = c.clamp(0.0, 1.0);
            ev.confidence = Some(c);
            let p_right = if overconfident { 0.5 } else { c };
            let right = rng.chance(p_right);
            ev.truth = Some(right);
            if rng.chance(0.7) {
                ev.correct = Some(right);
            }
            if rng.chance(0.45) {
                let a = rng.avg3();
                let q = if drift {
                    0.42 + 0.4 * a
                } else {
                    0.62 + 0.36 * a
                };
                let q = if right { q + 0.02 } else { q - 0.15 };
                ev.quality = Some(q.clamp(0.0, 1.0));
            }
            let hallucination = if drift { 0.06 } else { 0.02 };
            if rng.chance(if right {
                hallucination * 0.3
            } else {
                hallucination * 4.0
            }) {
                ev.flags |= FLAG_HALLUCINATION;
            }
            if rng.chance(0.004) {
                ev.flags |= FLAG_PII;
            }
            if rng.chance(0.002) {
                ev.flags |= FLAG_POLICY;
            }
        }
        if ev.status == Status::Filtered {
            ev.flags |= FLAG_POLICY;
            if rng.chance(0.3) {
                ev.flags |= FLAG_PII;
            }
        }
    }

    /// Human approval (checkout-assistant) and the output's length in characters.
    fn draw_extras(&mut self, ev: &mut Event) {
        let rng = &mut self.rng;
        let p = &PAIRS[ev.pair];
        if p.service == CHECKOUT && ev.status == Status::Ok && rng.chance(0.25) {
            ev.approval = Some(rng.pick(&APPROVAL_WEIGHTS) as u8);
        }
        ev.output_chars = match ev.tokens_out {
            Some(t) if ev.status == Status::Ok && rng.chance(0.6) => {
                Some((t as f64 * (3.2 + 1.6 * rng.f64())) as i64)
            }
            _ => None,
        };
    }
}

/// The call's status: mostly ok, some errors, timeouts, refusals and filtered outputs; ok
/// is written explicitly by 80 % of callers.
fn draw_outcome(rng: &mut Rng, ev: &mut Event) {
    let u = rng.f64();
    ev.status = if u < 0.015 {
        Status::Error
    } else if u < 0.018 {
        Status::Timeout
    } else if u < 0.023 {
        Status::Refused
    } else if u < 0.025 {
        Status::Filtered
    } else {
        Status::Ok
    };
    ev.status_explicit = ev.status != Status::Ok || rng.chance(0.8);
}
