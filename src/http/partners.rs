//! The partner-facing contract routes (seed 000) and the one table from receipt to status.

use axum::Json;
use axum::Router;
use std::net::SocketAddr;

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
use super::body::{Unread, read_body};
use crate::domain::Reason;
use crate::gateway::{Inbound, Receipt, Route};

/// Seconds a partner is asked to wait before retrying a sale that is in flight ("~1 minute").
const RETRY_AFTER_SECONDS: &str = "60";

/// The two contract routes, as written in the contract.
const SALES_PATH: &str = "/Sales/partners/{partner}/events/{event_type}";
const CALLBACK_PATH: &str = "/partners/{partner}/webhooks/callback/{event_type}";

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route(
            SALES_PATH,
            post(sales_event)
                .head(probe_route)
                .options(probe_route)
                .fallback(wrong_method),
        )
        .route(
            CALLBACK_PATH,
            get(callback_event)
                .post(callback_event)
                .head(probe_route)
                .options(probe_route)
                .fallback(wrong_method),
        )
}

/// Any other method on a contract route: recorded and answered 405 with `Allow`.
async fn wrong_method(
    state: State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    request: Request,
) -> Response {
    let OriginalUri(uri) = &request.uri;
    let route = match PartnerPath::parse(uri.path()) {
        Some(PartnerPath::Route { route, .. }) => route,
        _ => Route::Callback,
    };
    let (partner, event_type) = path.map(|Path(p)| p).unwrap_or_default();
    refuse_method(state, route, partner, event_type, request).await
}

async fn refuse_method(
    state: State<AppState>,
    route: Route,
    partner: String,
    event_type: String,
    request: Request,
) -> Response {
    let State(state) = state;
    match inbound(&state, route, partner, event_type, request).await {
        Ok(inbound) => with_allow(respond(state.gateway.refuse_method(inbound).await), route),
        Err(response) => response,
    }
}

/// The methods a contract route takes.
fn allowed_methods(route: Route) -> &'static str {
    match route {
        Route::Sales => "POST, HEAD, OPTIONS",
        Route::Callback => "GET, POST, HEAD, OPTIONS",
    }
}

fn with_allow(mut response: Response, route: Route) -> Response {
    response.headers_mut().insert(
        header::ALLOW,
        HeaderValue::from_static(allowed_methods(route)),
    );
    response
}

async fn sales_event(
    state: State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    request: Request,
) -> Response {
    match segments(path, &request) {
        Some((partner, event_type)) => {
            receive(state, Route::Sales, partner, event_type, request).await
        }
        None => bad_path(),
    }
}

async fn callback_event(
    state: State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    request: Request,
) -> Response {
    match segments(path, &request) {
        Some((partner, event_type)) => {
            receive(state, Route::Callback, partner, event_type, request).await
        }
        None => bad_path(),
    }
}

/// A contract route's partner name and event type. A segment that is not UTF-8 once
/// percent-decoded (`order%FF`, a partner's encoding bug) is read with U+FFFD for its bad
/// bytes, as a NUL is stored, so the delivery is processed or refused and recorded like
/// any other instead of answered without a trace (found by the outside attack on issue 15).
fn segments(
    path: Result<Path<(String, String)>, PathRejection>,
    request: &Request,
) -> Option<(String, String)> {
    match path {
        Ok(Path(segments)) => Some(segments),
        Err(_) => match PartnerPath::parse(request.uri.path()) {
            Some(PartnerPath::Route {
                partner,
                event_type,
                ..
            }) => Some((partner, event_type)),
            _ => None,
        },
    }
}

fn bad_path() -> Response {
    answer(
        StatusCode::BAD_REQUEST,
        json!({ "error": "bad_path", "message": "path segments must be valid UTF-8" }),
    )
}

/// `HEAD` and `OPTIONS` on a partner route: a sender checking the URL. Answered without
/// side effects: no handler runs, nothing is fetched or stored. 200 (204 for `OPTIONS`,
/// with `Allow`) for a configured partner, 404 for another name.
async fn probe_route(
    State(state): State<AppState>,
    method: Method,
    path: Result<Path<(String, String)>, PathRejection>,
    OriginalUri(uri): OriginalUri,
) -> Response {
    let partner = path.map(|Path((partner, _))| partner).unwrap_or_default();
    let route = match PartnerPath::parse(uri.path()) {
        Some(PartnerPath::Route { route, .. }) => route,
        _ => Route::Callback,
    };
    probe(&state, &method, &partner, route)
}

fn probe(state: &AppState, method: &Method, partner: &str, route: Route) -> Response {
    let allow = allowed_methods(route);
    let known = state.gateway.has_partner(partner);
    let status = match (known, *method == Method::OPTIONS) {
        (false, _) => StatusCode::NOT_FOUND,
        (true, true) => StatusCode::NO_CONTENT,
        (true, false) => StatusCode::OK,
    };
    let mut response = status.into_response();
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

/// A path under the partner prefixes, read leniently: the fixed segments in any case
/// (`/sales/...`), a trailing or doubled slash ignored.
#[derive(Debug, PartialEq, Eq)]
enum PartnerPath {
    /// One of the two contract routes.
    Route {
        route: Route,
        partner: String,
        event_type: String,
    },
    /// Under a partner prefix, but no route: recorded (for the partner it names, if any).
    Unknown { route: Route, partner: String },
}

impl PartnerPath {
    fn parse(path: &str) -> Option<PartnerPath> {
        let segments: Vec<String> = path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(|s| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8_lossy()
                    .into_owned()
            })
            .collect();
        let is = |i: usize, word: &str| {
            segments
                .get(i)
                .is_some_and(|s| s.eq_ignore_ascii_case(word))
        };
        let at = |i: usize| segments.get(i).cloned().unwrap_or_default();
        if is(0, "sales") && is(1, "partners") {
            if segments.len() == 5 && is(3, "events") {
                return Some(PartnerPath::Route {
                    route: Route::Sales,
                    partner: at(2),
                    event_type: at(4),
                });
            }
            return Some(PartnerPath::Unknown {
                route: Route::Sales,
                partner: at(2),
            });
        }
        if is(0, "partners") {
            if segments.len() == 5 && is(2, "webhooks") && is(3, "callback") {
                return Some(PartnerPath::Route {
                    route: Route::Callback,
                    partner: at(1),
                    event_type: at(4),
                });
            }
            return Some(PartnerPath::Unknown {
                route: Route::Callback,
                partner: at(1),
            });
        }
        None
    }
}

/// Every request no route took. A partner route written a little differently (a trailing
/// slash, `/sales/` for `/Sales/`) reaches its route; anything else under the partner
/// prefixes is recorded as a refused delivery (`unknown_route`, within the limits on
/// refusals) so partner health shows it; the rest is a plain 404.
pub(super) async fn fallback(state: State<AppState>, request: Request) -> Response {
    let OriginalUri(uri) = &request.uri;
    match PartnerPath::parse(uri.path()) {
        Some(PartnerPath::Route {
            route,
            partner,
            event_type,
        }) => {
            let method = &request.method;
            if *method == Method::HEAD || *method == Method::OPTIONS {
                return probe(&state, method, &partner, route);
            }
            let allowed =
                *method == Method::POST || (route == Route::Callback && *method == Method::GET);
            if !allowed {
                return refuse_method(state, route, partner, event_type, request).await;
            }
            receive(state, route, partner, event_type, request).await
        }
        Some(PartnerPath::Unknown { route, partner }) => {
            let mut inbound = match inbound(&state, route, partner, String::new(), request).await {
                Ok(inbound) => inbound,
                Err(response) => return response,
            };
            inbound.event_type = inbound.path.clone();
            respond(state.gateway.refuse_unknown_route(inbound).await)
        }
        None => answer(StatusCode::NOT_FOUND, json!({ "error": "not_found" })),
    }
}

/// A partner's request as the route received it, body still unread.
pub(super) struct Request {
    method: Method,
    uri: OriginalUri,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: Body,
}

impl<S: Send + Sync> axum::extract::FromRequest<S> for Request {
    type Rejection = std::convert::Infallible;

    async fn from_request(request: axum::extract::Request, _: &S) -> Result<Self, Self::Rejection> {
        let (parts, body) = request.into_parts();
        let uri = parts
            .extensions
            .get::<OriginalUri>()
            .cloned()
            .unwrap_or_else(|| OriginalUri(parts.uri.clone()));
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .cloned()
            .map(Extension);
        Ok(Request {
            method: parts.method,
            uri,
            peer,
            headers: parts.headers,
            body,
        })
    }
}

async fn receive(
    State(state): State<AppState>,
    route: Route,
    partner: String,
    event_type: String,
    request: Request,
) -> Response {
    match inbound(&state, route, partner, event_type, request).await {
        Ok(inbound) => respond(state.gateway.receive(inbound).await),
        Err(response) => response,
    }
}

/// The delivery as the gateway takes it, its body read within the limits; or the answer to
/// a body that could not be read (413 over the limit, recorded; 408 too slow; 400 broken).
async fn inbound(
    state: &AppState,
    route: Route,
    partner: String,
    event_type: String,
    request: Request,
) -> Result<Inbound, Response> {
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
        Ok(body) => {
            inbound.body = body;
            Ok(inbound)
        }
        Err(Unread::TooLarge { declared }) => {
            inbound.body_bytes = declared;
            let event_id = state
                .gateway
                .refuse_oversized(inbound, state.max_body_bytes)
                .await;
            Err(answer(
                StatusCode::PAYLOAD_TOO_LARGE,
                json!({ "error": Reason::BodyTooLarge.as_str(), "event_id": event_id, "limit_bytes": state.max_body_bytes }),
            ))
        }
        Err(Unread::TooSlow) => Err(answer(
            StatusCode::REQUEST_TIMEOUT,
            json!({ "error": "body_timeout", "message": "the body did not arrive in time" }),
        )),
        Err(Unread::Broken(message)) => Err(answer(
            StatusCode::BAD_REQUEST,
            json!({ "error": "unreadable_body", "message": message }),
        )),
    }
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
        Receipt::Refused {
            event_id,
            reason: Reason::UnknownRoute,
        } => answer(
            StatusCode::NOT_FOUND,
            json!({ "error": Reason::UnknownRoute.as_str(), "event_id": event_id,
                    "message": "no partner route at this path; the delivery is recorded" }),
        ),
        Receipt::Refused {
            event_id,
            reason: Reason::MethodNotAllowed,
        } => answer(
            StatusCode::METHOD_NOT_ALLOWED,
            json!({ "error": Reason::MethodNotAllowed.as_str(), "event_id": event_id,
                    "message": "this route does not take that method; the delivery is recorded" }),
        ),
        Receipt::Refused { event_id, reason } => answer(
            StatusCode::BAD_REQUEST,
            json!({ "error": reason.as_str(), "event_id": event_id }),
        ),
        Receipt::Busy { event_id, reason } => {
            let mut response = answer(
                StatusCode::CONFLICT,
                json!({ "error": reason.as_str(), "event_id": event_id, "retry_after_seconds": 60 }),
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
        Receipt::TooLarge { event_id, limit } => answer(
            StatusCode::PAYLOAD_TOO_LARGE,
            json!({ "error": Reason::BodyTooLarge.as_str(), "event_id": event_id, "limit_bytes": limit }),
        ),
        Receipt::Unsupported { event_id, reason } => answer(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            json!({ "error": reason.as_str(), "event_id": event_id }),
        ),
        Receipt::Held { retry_after } => {
            let seconds = retry_after.as_secs().max(1);
            let mut response = answer(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({ "error": Reason::PartnerUnavailable.as_str(), "retry_after_seconds": seconds }),
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
