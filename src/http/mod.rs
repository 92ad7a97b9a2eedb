//! The HTTP edge: routes and (de)serialisation only; every decision is made elsewhere.

mod access;
mod admin;
mod body;
mod events;
mod input;
pub mod openapi;
mod pages;
mod partner_scripts;
mod partner_settings;
mod partners;
mod platform;
mod pretty;
pub mod serve;
pub mod session;
mod users;
mod webhooks;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{Request, StatusCode};
use axum::routing::get;
use secrecy::SecretString;
use tower_http::trace::TraceLayer;

use crate::gateway::Gateway;

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    pub gateway: Arc<Gateway>,
    pub admin_token: Arc<SecretString>,
    /// How long raw payloads and personal data are kept (`retention_days`).
    pub retention: Option<std::time::Duration>,
    /// Operators' accounts, tokens, sessions and the audit trail.
    pub operators: Arc<dyn crate::store::operators::Operators>,
    /// Whether the pages' session cookie is `Secure` (`public_url` is HTTPS).
    pub secure_cookies: bool,
    /// Bounds the password hashing a node does at once.
    pub passwords: Arc<crate::accounts::PasswordWork>,
    pub max_body_bytes: usize,
    /// The database's partners: reloading them, sealing their secrets.
    pub partner_sync: Arc<crate::gateway::registry::PartnerSync>,
    /// Deadlines on connections and bodies.
    pub connections: crate::config::ConnectionLimits,
    /// Where the client's address comes from behind a proxy (`client_ip_header`).
    pub client_ip_header: Option<http::HeaderName>,
    /// How long `/readyz` waits for its probe write.
    pub readiness_timeout: std::time::Duration,
    /// The address ranges webhook subscriptions may not reach (`[webhooks]`).
    pub webhook_ranges: Arc<crate::webhooks::target::Ranges>,
}

/// The whole service's router.
pub fn router(state: AppState) -> Router {
    let max_body_bytes = state.max_body_bytes;
    Router::new()
        .merge(partners::router())
        .nest(
            "/api/v1",
            admin::router(state.clone()).layer(axum::middleware::from_fn_with_state(
                state.clone(),
                body::paced,
            )),
        )
        .nest(
            "/ui",
            pages::router(state.clone()).layer(axum::middleware::from_fn_with_state(
                state.clone(),
                body::paced,
            )),
        )
        .route("/", get(|| async { axum::response::Redirect::to("/ui/diary") }))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .fallback(partners::fallback)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(axum::middleware::from_fn(measure))
        .layer(
            // The query string can carry a partner's token: spans name the path only.
            TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
                tracing::info_span!("request", method = %request.method(), path = %request.uri().path())
            }),
        )
        .with_state(state)
}

/// Records each request's latency under its route's pattern (never the raw path).
async fn measure(
    request: Request<axum::body::Body>,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    // A label from a fixed set: a made-up method would add a series per request.
    let method = match *request.method() {
        axum::http::Method::GET
        | axum::http::Method::POST
        | axum::http::Method::PUT
        | axum::http::Method::PATCH
        | axum::http::Method::DELETE
        | axum::http::Method::HEAD
        | axum::http::Method::OPTIONS => request.method().as_str().to_owned(),
        _ => "other".to_owned(),
    };
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    metrics::histogram!(crate::telemetry::REQUEST_SECONDS, "route" => route, "method" => method,
        "status" => response.status().as_u16().to_string())
    .record(started.elapsed().as_secs_f64());
    response
}

/// The metrics in Prometheus's text format; the unmatched-sales and webhook-backlog gauges
/// are read now.
async fn metrics(State(state): State<AppState>) -> axum::response::Response {
    use axum::response::IntoResponse;
    let Some(handle) = crate::telemetry::metrics() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "metrics are off").into_response();
    };
    match state.gateway.store().unmatched_sales().await {
        Ok(unmatched) => {
            metrics::gauge!(crate::telemetry::UNMATCHED).set(unmatched as f64);
        }
        Err(error) => tracing::warn!(error = %error, "unmatched sales not counted"),
    }
    match state.gateway.store().webhook_backlog().await {
        Ok(backlog) => {
            use crate::telemetry::{WEBHOOK_BACKLOG, WEBHOOK_DISABLED, WEBHOOK_OLDEST};
            metrics::gauge!(WEBHOOK_BACKLOG).set(backlog.pending as f64);
            metrics::gauge!(WEBHOOK_DISABLED).set(backlog.disabled as f64);
            let age = backlog.oldest_pending.map_or(0.0, |oldest| {
                (chrono::Utc::now() - oldest).num_milliseconds().max(0) as f64 / 1000.0
            });
            metrics::gauge!(WEBHOOK_OLDEST).set(age);
        }
        Err(error) => tracing::warn!(error = %error, "webhook backlog not counted"),
    }
    match state.gateway.store().silences().await {
        Ok(silences) => {
            for (partner, venue, silent) in silences {
                metrics::gauge!(crate::telemetry::PARTNER_SILENT,
                    "partner" => partner, "venue" => venue.to_string())
                .set(if silent { 1.0 } else { 0.0 });
            }
        }
        Err(error) => tracing::warn!(error = %error, "partner silences not read"),
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        handle.render(),
    )
        .into_response()
}

/// 200 only when a write can commit now (see `Store::ready`): a load balancer or
/// supervisor must never send deliveries to a node that would answer them 500.
async fn ready(State(state): State<AppState>) -> (StatusCode, String) {
    match state.gateway.store().ready(state.readiness_timeout).await {
        Ok(()) => (StatusCode::OK, "ready".to_owned()),
        Err(error) => {
            tracing::warn!(error = %error, "not ready");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {error}"),
            )
        }
    }
}
