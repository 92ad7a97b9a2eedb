//! The partner-facing contract routes (seed 000) and the one table from receipt to status.

use axum::Json;
use axum::Router;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Extension;
use axum::body::{Body, Bytes};
use axum::extract::rejection::PathRejection;
use axum::extract::{ConnectInfo, OriginalUri, Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::Utc;
use serde_json::json;

use super::AppState;
use crate::config::ConnectionLimits;
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
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let request = Request {
        method,
        uri,
        peer,
        headers,
        body,
    };
    receive(state, Route::Sales, path, request).await
}

async fn callback_event(
    state: State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    method: Method,
    uri: OriginalUri,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let request = Request {
        method,
        uri,
        peer,
        headers,
        body,
    };
    receive(state, Route::Callback, path, request).await
}

/// A partner's request as the route received it, body still unread.
struct Request {
    method: Method,
    uri: OriginalUri,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: Body,
}

async fn receive(
    State(state): State<AppState>,
    route: Route,
    path: Result<Path<(String, String)>, PathRejection>,
    request: Request,
) -> Response {
    let Ok(Path((partner, event_type))) = path else {
        return answer(
            StatusCode::BAD_REQUEST,
            json!({ "error": "bad_path", "message": "path segments must be valid UTF-8" }),
        );
    };
    let OriginalUri(uri) = request.uri;
    let client = super::serve::client_address(
        request.peer.map(|Extension(ConnectInfo(peer))| peer),
        &request.headers,
        state.client_ip_header.as_ref(),
    );
    let mut inbound = Inbound {
        route,
        partner,
        event_type,
        method: request.method.to_string(),
        path: uri.path().to_owned(),
        query: uri.query().map(str::to_owned),
        headers: request.headers,
        body: Bytes::new(),
        body_bytes: None,
        received_at: Utc::now(),
        client,
    };
    match read_body(
        request.body,
        &inbound.headers,
        state.max_body_bytes,
        state.connections,
    )
    .await
    {
        Ok(body) => inbound.body = body,
        Err(Unread::TooLarge { declared }) => {
            inbound.body_bytes = declared;
            let event_id = state
                .gateway
                .refuse_oversized(inbound, state.max_body_bytes)
                .await;
            return answer(
                StatusCode::PAYLOAD_TOO_LARGE,
                json!({ "error": Reason::BodyTooLarge.as_str(), "event_id": event_id, "limit_bytes": state.max_body_bytes }),
            );
        }
        Err(Unread::TooSlow) => {
            return answer(
                StatusCode::REQUEST_TIMEOUT,
                json!({ "error": "body_timeout", "message": "the body did not arrive in time" }),
            );
        }
        Err(Unread::Broken(message)) => {
            return answer(
                StatusCode::BAD_REQUEST,
                json!({ "error": "unreadable_body", "message": message }),
            );
        }
    }
    respond(state.gateway.receive(inbound).await)
}

/// Why a body was not read.
enum Unread {
    /// Over the limit (by its `Content-Length`, when it declared one): refused whole.
    TooLarge { declared: Option<usize> },
    /// It arrived slower than the minimum rate allows, or paused too long.
    TooSlow,
    /// The connection broke or the framing was wrong.
    Broken(String),
}

/// Reads a body of at most `limit` bytes, arriving at the minimum average rate after a
/// grace (`connections.body_read_timeout` plus the expected length at
/// `body_min_bytes_per_second`); each pause is bounded by the serve loop's body timeout.
async fn read_body(
    body: Body,
    headers: &HeaderMap,
    limit: usize,
    connections: ConnectionLimits,
) -> Result<Bytes, Unread> {
    use http_body_util::BodyExt as _;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(Unread::TooLarge { declared });
    }
    let expected = declared.unwrap_or(limit);
    let at_min_rate =
        Duration::from_secs_f64(expected as f64 / f64::from(connections.body_min_bytes_per_second));
    let deadline = connections.body_read_timeout.saturating_add(at_min_rate);
    let limited = http_body_util::Limited::new(body, limit);
    match tokio::time::timeout(deadline, limited.collect()).await {
        Err(_) => Err(Unread::TooSlow),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(error)) => {
            if error.is::<http_body_util::LengthLimitError>() {
                Err(Unread::TooLarge { declared })
            } else if is_timeout(error.as_ref()) {
                Err(Unread::TooSlow)
            } else {
                Err(Unread::Broken(error.to_string()))
            }
        }
    }
}

/// Whether a body error is (or wraps) a body timeout.
fn is_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(error) = cause {
        if error.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        cause = error.source();
    }
    false
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
