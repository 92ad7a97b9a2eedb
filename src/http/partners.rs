//! The partner-facing contract routes (seed 000) and the one table from receipt to status.

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{OriginalUri, Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::Utc;
use serde_json::json;

use super::AppState;
use crate::domain::Reason;
use crate::gateway::{Inbound, Receipt, Route};

/// Seconds a partner is asked to wait before retrying a sale that is in flight ("~1 minute").
const RETRY_AFTER_SECONDS: &str = "60";

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/Sales/partners/{partner}/events/{event_type}",
            post(sales_event),
        )
        .route(
            "/partners/{partner}/webhooks/callback/{event_type}",
            get(callback_event).post(callback_event),
        )
}

async fn sales_event(
    state: State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    method: Method,
    uri: OriginalUri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    receive(state, Route::Sales, path, method, uri, headers, body).await
}

async fn callback_event(
    state: State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    method: Method,
    uri: OriginalUri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    receive(state, Route::Callback, path, method, uri, headers, body).await
}

async fn receive(
    State(state): State<AppState>,
    route: Route,
    path: Result<Path<(String, String)>, PathRejection>,
    method: Method,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Ok(Path((partner, event_type))) = path else {
        return answer(
            StatusCode::BAD_REQUEST,
            json!({ "error": "bad_path", "message": "path segments must be valid UTF-8" }),
        );
    };
    let mut inbound = Inbound {
        route,
        partner,
        event_type,
        method: method.to_string(),
        path: uri.path().to_owned(),
        query: uri.query().map(str::to_owned),
        headers,
        body: Bytes::new(),
        received_at: Utc::now(),
    };
    match body {
        Ok(body) => inbound.body = body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            let event_id = state
                .gateway
                .refuse_oversized(inbound, state.max_body_bytes)
                .await;
            return answer(
                StatusCode::PAYLOAD_TOO_LARGE,
                json!({ "error": Reason::BodyTooLarge.as_str(), "event_id": event_id, "limit_bytes": state.max_body_bytes }),
            );
        }
        Err(rejection) => {
            return answer(
                rejection.status(),
                json!({ "error": "unreadable_body", "message": rejection.body_text() }),
            );
        }
    }
    respond(state.gateway.receive(inbound).await)
}

fn answer(status: StatusCode, body: serde_json::Value) -> Response {
    (status, Json(body)).into_response()
}

/// The contract's status for each receipt.
fn respond(receipt: Receipt) -> Response {
    match receipt {
        Receipt::Accepted {
            event_id,
            outcome,
            reason,
            detail,
            ..
        } => answer(
            StatusCode::OK,
            json!({ "event_id": event_id, "outcome": outcome.as_str(), "reason": reason.map(Reason::as_str), "detail": detail }),
        ),
        Receipt::TestNotification { event_id } => answer(
            StatusCode::OK,
            json!({ "event_id": event_id, "outcome": "ignored", "reason": Reason::TestNotification.as_str() }),
        ),
        Receipt::Refused { event_id, reason } => answer(
            StatusCode::BAD_REQUEST,
            json!({ "error": reason.as_str(), "event_id": event_id }),
        ),
        Receipt::Busy { event_id } => {
            let mut response = answer(
                StatusCode::CONFLICT,
                json!({ "error": Reason::SaleInFlight.as_str(), "event_id": event_id, "retry_after_seconds": 60 }),
            );
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_static(RETRY_AFTER_SECONDS),
            );
            response
        }
        Receipt::RateLimited { retry_after } => {
            let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
            let seconds = seconds.max(1);
            let mut response = answer(
                StatusCode::TOO_MANY_REQUESTS,
                json!({ "error": Reason::RateLimited.as_str(), "retry_after_seconds": seconds }),
            );
            if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            response
        }
        Receipt::Failed { event_id, reason } => answer(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({ "error": reason.as_str(), "event_id": event_id }),
        ),
    }
}
