//! Reading request bodies at a minimum rate, for every route: partners' deliveries read
//! theirs in `partners`, the admin API's and the pages' are read by [`paced`] before their
//! handlers run, so no route can be held open by a body trickled a byte at a time.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::config::ConnectionLimits;

/// Why a body was not read.
pub(super) enum Unread {
    /// Over the limit (by its `Content-Length`, when it declared one): refused whole.
    TooLarge { declared: Option<usize> },
    /// It arrived slower than the minimum rate allows, or paused too long.
    TooSlow,
    /// The connection broke or the framing was wrong.
    Broken(String),
}

/// Reads a body of at most `limit` bytes at a minimum average rate: after a grace
/// (`connections.body_read_timeout`), every second must have brought at least
/// `body_min_bytes_per_second` bytes on average, counted on the bytes actually received (a
/// declared `Content-Length` buys no time); each single pause is bounded by the serve
/// loop's body timeout too.
pub(super) async fn read_body(
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
    let started = tokio::time::Instant::now();
    let rate = f64::from(connections.body_min_bytes_per_second);
    let mut limited = std::pin::pin!(http_body_util::Limited::new(body, limit));
    let mut received = bytes::BytesMut::new();
    loop {
        let earned = Duration::from_secs_f64(received.len() as f64 / rate);
        let deadline = started + connections.body_read_timeout.saturating_add(earned);
        match tokio::time::timeout_at(deadline, limited.as_mut().frame()).await {
            Err(_) => return Err(Unread::TooSlow),
            Ok(None) => return Ok(received.freeze()),
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    received.extend_from_slice(&data);
                }
            }
            Ok(Some(Err(error))) => {
                return Err(if error.is::<http_body_util::LengthLimitError>() {
                    Unread::TooLarge { declared }
                } else if is_timeout(error.as_ref()) {
                    Unread::TooSlow
                } else {
                    Unread::Broken(error.to_string())
                });
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

/// Middleware: reads the whole body under [`read_body`]'s limits before the handler runs;
/// answers 413, 408 or 400 itself when it cannot.
pub(super) async fn paced(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let limit = super::platform::body_limit(parts.uri.path(), state.max_body_bytes);
    match read_body(body, &parts.headers, limit, state.connections).await {
        Ok(bytes) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Err(Unread::TooLarge { .. }) => refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the body is over {limit} bytes"),
        ),
        Err(Unread::TooSlow) => refuse(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            "the body did not arrive in time".to_owned(),
        ),
        Err(Unread::Broken(message)) => refuse(StatusCode::BAD_REQUEST, "bad_request", message),
    }
}

/// An answer in the admin API's error shape (`crate::error::ErrorBody`).
fn refuse(status: StatusCode, error: &'static str, message: String) -> Response {
    (
        status,
        axum::Json(crate::error::ErrorBody { error, message }),
    )
        .into_response()
}
