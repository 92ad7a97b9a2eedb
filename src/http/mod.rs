//! The HTTP edge: routes and (de)serialisation only; every decision is made elsewhere.

mod admin;
mod pages;
mod partners;
mod pretty;
pub mod session;

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
    /// Signs and checks the web pages' sessions.
    pub sessions: Arc<session::Sessions>,
    pub max_body_bytes: usize,
    pub partner_names: Arc<Vec<String>>,
}

/// The whole service's router.
pub fn router(state: AppState) -> Router {
    let max_body_bytes = state.max_body_bytes;
    Router::new()
        .merge(partners::router())
        .nest("/api/v1", admin::router(state.clone()))
        .nest("/ui", pages::router(state.clone()))
        .route("/", get(|| async { axum::response::Redirect::to("/ui/diary") }))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(
            // The query string can carry a partner's token: spans name the path only.
            TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
                tracing::info_span!("request", method = %request.method(), path = %request.uri().path())
            }),
        )
        .with_state(state)
}

async fn ready(State(state): State<AppState>) -> (StatusCode, &'static str) {
    match state.gateway.store().ping().await {
        Ok(()) => (StatusCode::OK, "ready"),
        Err(error) => {
            tracing::warn!(error = %error, "store not reachable");
            (StatusCode::SERVICE_UNAVAILABLE, "store unreachable")
        }
    }
}
