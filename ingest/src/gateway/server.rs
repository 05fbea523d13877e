//! The routes: `POST /v1/events`, `/v1/feedback`, `/v1/traces`, and the gateway's own
//! `/metrics`, `/livez`, `/readyz`. Each ingest request is checked in the same order —
//! token, outlet, content type, size, encoding, items, budget — so the first thing wrong is
//! the one named.

use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use inferwatch_schemas::{EventDecoder, Limits, Reject};

use super::auth::Tenants;
use super::body::{self, BodyError};
use super::config::GatewayConfig;
use super::otlp::{self, Encoding};
use super::outlet::{Budget, Outlet, Stream};
use super::records::{self, Checked};
use super::stats::{Route, Stats};
use super::GatewayError;

/// The gateway: its settings, who may send, and where records go.
pub struct Gateway {
    config: GatewayConfig,
    tenants: Tenants,
    outlet: Outlet,
    budget: Arc<Budget>,
    limits: Limits,
    decoders: Mutex<Vec<EventDecoder>>,
    stats: Stats,
}

impl Gateway {
    pub fn new(
        config: GatewayConfig,
        limits: Limits,
        outlet: Outlet,
    ) -> Result<Arc<Self>, GatewayError> {
        Ok(Arc::new(Self {
            tenants: Tenants::new(&config.tenants)?,
            budget: Budget::new(config.max_in_flight_events),
            config,
            outlet,
            limits,
            decoders: Mutex::new(Vec::new()),
            stats: Stats::default(),
        }))
    }

    /// The routes, ready for `axum::serve`.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/v1/events", post(events))
            .route("/v1/feedback", post(feedback))
            .route("/v1/traces", post(traces))
            .route("/metrics", get(metrics))
            .route("/livez", get(|| async { "ok\n" }))
            .route("/readyz", get(readyz))
            .with_state(self.clone())
    }

    /// Answers on `listener` until `shutdown` completes, then finishes the requests in flight.
    pub async fn serve(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown)
            .await
    }

    fn retry_after(&self) -> HeaderValue {
        let secs = self.config.retry_after.as_secs().max(1);
        HeaderValue::from_str(&secs.to_string()).expect("digits are a header value")
    }

    fn check(
        &self,
        route: Route,
        body: &[u8],
        items: &[(usize, usize)],
        tenant: Option<&str>,
    ) -> Checked {
        match route {
            Route::Feedback => {
                records::feedback(&self.limits, body, items, self.outlet.keys_feedback())
            }
            Route::Events | Route::Traces => {
                let mut d = self
                    .decoders
                    .lock()
                    .expect("not poisoned")
                    .pop()
                    .unwrap_or_else(|| EventDecoder::new(self.limits.clone()));
                let c = records::events(&mut d, body, items, tenant);
                self.decoders.lock().expect("not poisoned").push(d);
                c
            }
        }
    }
}

/// A refusal before any item was read: its status, reason and whether to retry later.
struct Refused {
    status: StatusCode,
    reason: String,
}

impl Refused {
    fn new(status: StatusCode, reason: impl Into<String>) -> Self {
        Self {
            status,
            reason: reason.into(),
        }
    }
}

impl From<BodyError> for Refused {
    fn from(e: BodyError) -> Self {
        match e {
            BodyError::TooLarge { limit } => Refused::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body is over {limit} bytes (gateway.max_body_bytes, after decompression): send smaller batches"),
            ),
            BodyError::Unsupported(m) => Refused::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, m),
            BodyError::Malformed(m) => Refused::new(StatusCode::BAD_REQUEST, m),
        }
    }
}

fn header_str(h: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// Token, outlet, then the body read within the limit and decompressed.
async fn admit(
    g: &Gateway,
    h: &HeaderMap,
    body: Body,
) -> Result<(Option<Arc<str>>, Vec<u8>), Refused> {
    let tenant = g
        .tenants
        .authorize(h.get(header::AUTHORIZATION).map(HeaderValue::as_bytes))
        .map_err(|r| Refused::new(StatusCode::UNAUTHORIZED, r.reason()))?;
    if let Some(u) = g.outlet.unavailable() {
        return Err(Refused::new(StatusCode::SERVICE_UNAVAILABLE, u.0));
    }
    let limit = g.config.max_body_bytes;
    let too_large = || Refused::from(BodyError::TooLarge { limit });
    if header_str(h, header::CONTENT_LENGTH)
        .and_then(|l| l.parse::<usize>().ok())
        .is_some_and(|l| l > limit)
    {
        return Err(too_large());
    }
    let bytes: Bytes = match Limited::new(body, limit).collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => return Err(too_large()),
        Err(e) => {
            return Err(Refused::new(
                StatusCode::BAD_REQUEST,
                format!("reading the body: {e}"),
            ))
        }
    };
    let plain = body::decode(header_str(h, header::CONTENT_ENCODING), &bytes, limit)?;
    Ok((tenant, plain))
}

async fn events(State(g): State<Arc<Gateway>>, h: HeaderMap, body: Body) -> Response {
    json_route(&g, Route::Events, h, body).await
}

async fn feedback(State(g): State<Arc<Gateway>>, h: HeaderMap, body: Body) -> Response {
    json_route(&g, Route::Feedback, h, body).await
}

async fn json_route(g: &Gateway, route: Route, h: HeaderMap, body: Body) -> Response {
    if route == Route::Feedback && !g.outlet.takes_feedback() {
        let why = "this gateway takes no feedback: `inferwatch ingest` needs --feedback-topic T \
                   ([kafka] feedback_topic); `run --listen` takes it, `demo --listen` does not";
        return refuse_json(g, route, Refused::new(StatusCode::NOT_FOUND, why));
    }
    let framing = body::framing(header_str(&h, header::CONTENT_TYPE));
    let read = async {
        let (tenant, plain) = admit(g, &h, body).await?;
        let items = body::split(&plain, framing.clone()?)?;
        Ok::<_, Refused>(g.check(route, &plain, &items, tenant.as_deref()))
    };
    let checked = match read.await {
        Ok(c) => c,
        Err(r) => return refuse_json(g, route, r),
    };
    let (accepted, rejects) = (checked.records.len(), checked.rejects);
    if let Err(r) = deliver(g, route, checked.records).await {
        return refuse_json(g, route, r);
    }
    g.stats.items(route, accepted, rejects.len());
    let status = if accepted == 0 && !rejects.is_empty() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    g.stats.request(route, status.as_u16());
    let errors: Vec<_> = rejects
        .iter()
        .map(|Reject { index, reason }| ItemError {
            index: *index,
            reason,
        })
        .collect();
    let reply = Reply {
        accepted,
        rejected: rejects.len(),
        errors,
    };
    let reply = serde_json::to_string(&reply).expect("a reply serialises");
    (status, [(header::CONTENT_TYPE, "application/json")], reply).into_response()
}

/// The reply to `/v1/events` and `/v1/feedback`: what was taken, and each rejected item's
/// index in the body (array element or non-blank line, from 0) with its reason.
#[derive(serde::Serialize)]
struct Reply<'a> {
    accepted: usize,
    rejected: usize,
    errors: Vec<ItemError<'a>>,
}

#[derive(serde::Serialize)]
struct ItemError<'a> {
    index: usize,
    reason: &'a str,
}

/// Takes room in the budget (429 when there is none) and hands the records on (503 when the
/// outlet does not take them).
async fn deliver(g: &Gateway, route: Route, records: Vec<records::Record>) -> Result<(), Refused> {
    if records.is_empty() {
        return Ok(());
    }
    let Some(taken) = g.budget.try_take(records.len()) else {
        return Err(Refused::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!("{} events are in flight (gateway.max_in_flight_events): nothing was written, send again after Retry-After", g.budget.used()),
        ));
    };
    let stream = if route == Route::Feedback {
        Stream::Feedback
    } else {
        Stream::Events
    };
    g.outlet
        .send(stream, records, taken)
        .await
        .map_err(|u| Refused::new(StatusCode::SERVICE_UNAVAILABLE, u.0))
}

fn with_retry(g: &Gateway, status: StatusCode, mut r: Response) -> Response {
    if matches!(
        status,
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
    ) {
        r.headers_mut().insert(header::RETRY_AFTER, g.retry_after());
    }
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    r
}

fn refuse_json(g: &Gateway, route: Route, r: Refused) -> Response {
    g.stats.request(route, r.status.as_u16());
    let body = serde_json::json!({ "error": r.reason }).to_string();
    with_retry(
        g,
        r.status,
        (r.status, [(header::CONTENT_TYPE, "application/json")], body).into_response(),
    )
}

async fn traces(State(g): State<Arc<Gateway>>, h: HeaderMap, body: Body) -> Response {
    let enc = match Encoding::from_content_type(header_str(&h, header::CONTENT_TYPE)) {
        Ok(e) => e,
        Err(e) => return refuse_otlp(&g, Encoding::Json, e.into()),
    };
    let read = async {
        let (tenant, plain) = admit(&g, &h, body).await?;
        let req = otlp::decode(&plain, enc)?;
        let spans = otlp::spans(&req, &g.limits);
        let checked = g.check(
            Route::Traces,
            &spans.ndjson,
            &spans.items,
            tenant.as_deref(),
        );
        Ok::<_, Refused>((spans, checked))
    };
    let (mut spans, checked) = match read.await {
        Ok(x) => x,
        Err(r) => return refuse_otlp(&g, enc, r),
    };
    for Reject { index, reason } in &checked.rejects {
        spans
            .rejected
            .push(format!("span {}: {reason}", spans.span_ids[*index]));
    }
    let accepted = checked.records.len();
    if let Err(r) = deliver(&g, Route::Traces, checked.records).await {
        return refuse_otlp(&g, enc, r);
    }
    g.stats.items(Route::Traces, accepted, spans.rejected.len());
    g.stats.spans_skipped(spans.skipped);
    g.stats.request(Route::Traces, 200);
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, enc.content_type())],
        otlp::reply(enc, &spans.rejected),
    )
        .into_response()
}

fn refuse_otlp(g: &Gateway, enc: Encoding, r: Refused) -> Response {
    g.stats.request(Route::Traces, r.status.as_u16());
    let code = match r.status {
        StatusCode::UNAUTHORIZED => 16,
        StatusCode::TOO_MANY_REQUESTS => 8,
        StatusCode::SERVICE_UNAVAILABLE => 14,
        _ => 3,
    };
    let body = otlp::error_body(enc, code, &r.reason);
    with_retry(
        g,
        r.status,
        (r.status, [(header::CONTENT_TYPE, enc.content_type())], body).into_response(),
    )
}

async fn metrics(State(g): State<Arc<Gateway>>) -> Response {
    let reachable = matches!(g.outlet, Outlet::Kafka(_)).then(|| g.outlet.unavailable().is_none());
    let text = g.stats.render(g.budget.used(), reachable);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

async fn readyz(State(g): State<Arc<Gateway>>) -> Response {
    match g.outlet.unavailable() {
        None => (StatusCode::OK, "ready\n").into_response(),
        Some(u) => (StatusCode::SERVICE_UNAVAILABLE, format!("{}\n", u.0)).into_response(),
    }
}
