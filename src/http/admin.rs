//! The admin API (`/api/v1`): JSON, behind `Authorization: Bearer <admin token>`.

use std::str::FromStr;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::AppState;
use crate::domain::{BookingStatus, Customer};
use crate::error::ApiError;
use crate::store::{
    BookingChanges, EventFilter, NewBooking, NewLocation, NewVenue, ReplayFilter, SaleFilter,
    TolerancesRecord, VenueChanges,
};

const DEFAULT_PAGE: i64 = 100;

pub(super) fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/venues", get(venues).post(create_venue))
        .route("/health", get(health))
        .route("/venues/{id}", get(venue).patch(update_venue))
        .route("/venues/{id}/bookings", post(create_booking))
        .route("/venues/{id}/diary", get(diary))
        .route("/venues/{id}/sales", get(venue_sales))
        .route("/bookings/{id}", get(booking).patch(update_booking))
        .route("/bookings/{id}/cancel", post(cancel_booking))
        .route("/guests/{id}", get(guest))
        .route("/sales", get(sales))
        .route("/sales/{id}", get(sale))
        .route("/sales/{id}/suggestions", get(suggestions))
        .route("/sales/{id}/match", post(match_sale))
        .route("/sales/{id}/unmatch", post(unmatch_sale))
        .route("/events", get(events))
        .route("/events/replay", post(replay))
        .route("/events/{id}", get(event))
        .route("/events/{id}/replay", post(replay_one))
        .route_layer(middleware::from_fn_with_state(state, require_admin))
}

/// Lets the request through only with the admin bearer token (compared in constant time).
async fn require_admin(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    let expected = Sha256::digest(state.admin_token.expose_secret().as_bytes());
    let authorised = presented
        .is_some_and(|token| bool::from(Sha256::digest(token.as_bytes()).ct_eq(&expected)));
    if !authorised {
        return ApiError::Unauthorized.into_response();
    }
    next.run(request).await
}

/// The JSON answer for something looked up by id, or 404 naming `what`.
fn found<T>(value: Option<T>, what: &'static str) -> Result<Json<T>, ApiError> {
    value.map(Json).ok_or(ApiError::NotFound(what))
}

fn body<T>(json: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    json.map(|Json(value)| value)
        .map_err(|rejection| match rejection {
            JsonRejection::JsonDataError(e) => ApiError::Unprocessable(e.body_text()),
            other => ApiError::BadRequest(other.body_text()),
        })
}

fn query<T>(query: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    query
        .map(|Query(value)| value)
        .map_err(|rejection| ApiError::BadRequest(rejection.body_text()))
}

/// An `{id}` path segment, or why it is not one.
type IdPath = Result<Path<i64>, PathRejection>;

fn id(path: IdPath) -> Result<i64, ApiError> {
    path.map(|Path(id)| id)
        .map_err(|_| ApiError::BadRequest("the id in the path must be an integer".to_owned()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VenueInput {
    name: String,
    timezone: String,
    currency: Option<String>,
    #[serde(default)]
    locations: Vec<LocationInput>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LocationInput {
    partner: String,
    location_id: String,
    #[serde(default = "enabled_by_default")]
    enabled: bool,
}

fn enabled_by_default() -> bool {
    true
}

fn valid_timezone(timezone: &str) -> Result<(), ApiError> {
    chrono_tz::Tz::from_str(timezone).map(|_| ()).map_err(|_| {
        ApiError::Unprocessable(format!(
            "timezone {timezone:?} is not an IANA time zone such as Europe/London"
        ))
    })
}

async fn create_venue(
    State(state): State<AppState>,
    input: Result<Json<VenueInput>, JsonRejection>,
) -> Result<(StatusCode, impl IntoResponse), ApiError> {
    let input = body(input)?;
    if input.name.trim().is_empty() {
        return Err(ApiError::Unprocessable("name must not be empty".into()));
    }
    valid_timezone(&input.timezone)?;
    for location in &input.locations {
        if !state.partner_names.contains(&location.partner) {
            return Err(ApiError::Unprocessable(format!(
                "partner {:?} is not configured; configured partners: {}",
                location.partner,
                state.partner_names.join(", ")
            )));
        }
        if location.location_id.trim().is_empty() {
            return Err(ApiError::Unprocessable(
                "location_id must not be empty".into(),
            ));
        }
    }
    let venue = NewVenue {
        name: input.name,
        timezone: input.timezone,
        currency: input.currency.map(|c| c.to_uppercase()),
        locations: input
            .locations
            .into_iter()
            .map(|l| NewLocation {
                partner: l.partner,
                location_id: l.location_id,
                enabled: l.enabled,
            })
            .collect(),
    };
    let venue = state.gateway.store().create_venue(venue).await?;
    Ok((StatusCode::CREATED, Json(venue)))
}

async fn venues(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(state.gateway.store().venues().await?))
}

/// How each partner's events fared per venue in the last hour and day.
async fn health(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(state.gateway.store().health(Utc::now()).await?))
}

async fn venue(State(state): State<AppState>, path: IdPath) -> Result<impl IntoResponse, ApiError> {
    let venue = state.gateway.store().venue(id(path)?).await?;
    found(venue, "venue")
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VenueSettingsInput {
    name: Option<String>,
    timezone: Option<String>,
    currency: Option<String>,
    tolerances: Option<TolerancesInput>,
    table_aliases: Option<std::collections::BTreeMap<String, String>>,
    walk_ins: Option<bool>,
    sku_tables: Option<std::collections::BTreeMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TolerancesInput {
    before_start_minutes: i64,
    after_end_minutes: i64,
}

async fn update_venue(
    State(state): State<AppState>,
    path: IdPath,
    input: Result<Json<VenueSettingsInput>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let id = id(path)?;
    let input = body(input)?;
    if let Some(timezone) = &input.timezone {
        valid_timezone(timezone)?;
    }
    if let Some(t) = &input.tolerances {
        if !(0..=24 * 60).contains(&t.before_start_minutes)
            || !(0..=24 * 60).contains(&t.after_end_minutes)
        {
            return Err(ApiError::Unprocessable(
                "tolerances must be between 0 and 1440 minutes".into(),
            ));
        }
    }
    let changes = VenueChanges {
        name: input.name.filter(|n| !n.trim().is_empty()),
        timezone: input.timezone,
        currency: input.currency.map(|c| c.to_uppercase()),
        tolerances: input.tolerances.map(|t| TolerancesRecord {
            before_start_minutes: t.before_start_minutes,
            after_end_minutes: t.after_end_minutes,
        }),
        table_aliases: input.table_aliases,
        walk_ins: input.walk_ins,
        sku_tables: input.sku_tables,
    };
    let store = state.gateway.store();
    store.update_venue(id, changes).await?;
    found(store.venue(id).await?, "venue")
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DiaryQuery {
    date: chrono::NaiveDate,
}

async fn diary(
    State(state): State<AppState>,
    path: IdPath,
    params: Result<Query<DiaryQuery>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let id = id(path)?;
    let params = query(params)?;
    Ok(Json(state.gateway.store().diary(id, params.date).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VenueSalesQuery {
    unmatched: Option<bool>,
    partner: Option<String>,
    limit: Option<i64>,
}

async fn venue_sales(
    State(state): State<AppState>,
    path: IdPath,
    params: Result<Query<VenueSalesQuery>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let venue_id = id(path)?;
    let params = query(params)?;
    let store = state.gateway.store();
    store
        .venue(venue_id)
        .await?
        .ok_or(ApiError::NotFound("venue"))?;
    let filter = SaleFilter {
        partner: params.partner,
        external_id: None,
        venue_id: Some(venue_id),
        unmatched: params.unmatched,
        limit: params.limit.unwrap_or(DEFAULT_PAGE),
    };
    Ok(Json(store.sales(&filter).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BookingInput {
    reference: Option<String>,
    start: DateTime<Utc>,
    #[serde(default = "default_duration")]
    duration_minutes: i64,
    #[serde(default)]
    covers: i64,
    #[serde(default)]
    tables: Vec<String>,
    status: Option<String>,
    #[serde(default)]
    customer: CustomerInput,
}

fn default_duration() -> i64 {
    90
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CustomerInput {
    name: Option<String>,
    email: Option<String>,
    phone: Option<String>,
}

async fn create_booking(
    State(state): State<AppState>,
    path: IdPath,
    input: Result<Json<BookingInput>, JsonRejection>,
) -> Result<(StatusCode, impl IntoResponse), ApiError> {
    let venue_id = id(path)?;
    let input = body(input)?;
    if !(1..=24 * 60).contains(&input.duration_minutes) {
        return Err(ApiError::Unprocessable(
            "duration_minutes must be between 1 and 1440".into(),
        ));
    }
    if input.covers < 0 {
        return Err(ApiError::Unprocessable(
            "covers must not be negative".into(),
        ));
    }
    let status = match input.status.as_deref() {
        None => BookingStatus::Confirmed,
        Some(status) => status
            .parse()
            .map_err(|e: crate::domain::booking::UnknownStatus| {
                ApiError::Unprocessable(e.to_string())
            })?,
    };
    let booking = NewBooking {
        reference: input.reference.filter(|r| !r.trim().is_empty()),
        start: input.start,
        duration_minutes: input.duration_minutes,
        covers: input.covers,
        tables: input.tables,
        status,
        customer: Customer {
            name: input.customer.name,
            email: input.customer.email,
            phone: input.customer.phone,
        },
    };
    let store = state.gateway.store();
    let id = store.create_booking(venue_id, booking).await?;
    let view = store
        .booking(id)
        .await?
        .ok_or(ApiError::NotFound("booking"))?;
    Ok((StatusCode::CREATED, Json(view)))
}

fn parse_status(status: &str) -> Result<BookingStatus, ApiError> {
    status
        .parse()
        .map_err(|e: crate::domain::booking::UnknownStatus| ApiError::Unprocessable(e.to_string()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BookingChangesInput {
    reference: Option<String>,
    start: Option<DateTime<Utc>>,
    duration_minutes: Option<i64>,
    covers: Option<i64>,
    tables: Option<Vec<String>>,
    status: Option<String>,
    customer: Option<CustomerInput>,
}

async fn update_booking(
    State(state): State<AppState>,
    path: IdPath,
    input: Result<Json<BookingChangesInput>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let id = id(path)?;
    let input = body(input)?;
    if input
        .duration_minutes
        .is_some_and(|d| !(1..=24 * 60).contains(&d))
    {
        return Err(ApiError::Unprocessable(
            "duration_minutes must be between 1 and 1440".into(),
        ));
    }
    if input.covers.is_some_and(|c| c < 0) {
        return Err(ApiError::Unprocessable(
            "covers must not be negative".into(),
        ));
    }
    let changes = BookingChanges {
        reference: input.reference.filter(|r| !r.trim().is_empty()),
        start: input.start,
        duration_minutes: input.duration_minutes,
        covers: input.covers,
        tables: input.tables,
        status: input.status.as_deref().map(parse_status).transpose()?,
        customer: input.customer.map(|c| Customer {
            name: c.name,
            email: c.email,
            phone: c.phone,
        }),
    };
    let store = state.gateway.store();
    store.update_booking(id, changes).await?;
    found(store.booking(id).await?, "booking")
}

async fn cancel_booking(
    State(state): State<AppState>,
    path: IdPath,
) -> Result<impl IntoResponse, ApiError> {
    let id = id(path)?;
    let store = state.gateway.store();
    let changes = BookingChanges {
        status: Some(BookingStatus::Cancelled),
        ..BookingChanges::default()
    };
    store.update_booking(id, changes).await?;
    found(store.booking(id).await?, "booking")
}

async fn guest(State(state): State<AppState>, path: IdPath) -> Result<impl IntoResponse, ApiError> {
    let guest = state.gateway.store().guest(id(path)?).await?;
    found(guest, "guest")
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MatchInput {
    booking_id: i64,
}

async fn match_sale(
    State(state): State<AppState>,
    path: IdPath,
    input: Result<Json<MatchInput>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let id = id(path)?;
    let input = body(input)?;
    let store = state.gateway.store();
    store.match_sale(id, input.booking_id).await?;
    found(store.sale(id).await?, "sale")
}

async fn unmatch_sale(
    State(state): State<AppState>,
    path: IdPath,
) -> Result<impl IntoResponse, ApiError> {
    let id = id(path)?;
    let store = state.gateway.store();
    store.unmatch_sale(id).await?;
    found(store.sale(id).await?, "sale")
}

async fn booking(
    State(state): State<AppState>,
    path: IdPath,
) -> Result<impl IntoResponse, ApiError> {
    let booking = state.gateway.store().booking(id(path)?).await?;
    found(booking, "booking")
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SalesQuery {
    partner: Option<String>,
    external_id: Option<String>,
    venue: Option<i64>,
    unmatched: Option<bool>,
    limit: Option<i64>,
}

async fn sales(
    State(state): State<AppState>,
    params: Result<Query<SalesQuery>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let params = query(params)?;
    let filter = SaleFilter {
        partner: params.partner,
        external_id: params.external_id,
        venue_id: params.venue,
        unmatched: params.unmatched,
        limit: params.limit.unwrap_or(DEFAULT_PAGE),
    };
    Ok(Json(state.gateway.store().sales(&filter).await?))
}

/// Suggestions offered for an unmatched or ambiguous sale, at most this many.
const SUGGESTIONS: usize = 5;

async fn suggestions(
    State(state): State<AppState>,
    path: IdPath,
) -> Result<impl IntoResponse, ApiError> {
    let suggestions = state
        .gateway
        .store()
        .suggestions(id(path)?, SUGGESTIONS)
        .await?;
    found(suggestions, "sale")
}

async fn sale(State(state): State<AppState>, path: IdPath) -> Result<impl IntoResponse, ApiError> {
    let sale = state.gateway.store().sale(id(path)?).await?;
    found(sale, "sale")
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsQuery {
    partner: Option<String>,
    outcome: Option<String>,
    reason: Option<String>,
    before: Option<i64>,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    limit: Option<i64>,
}

async fn events(
    State(state): State<AppState>,
    params: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let params = query(params)?;
    if let Some(outcome) = &params.outcome {
        if crate::domain::Outcome::parse(outcome).is_none() {
            return Err(ApiError::BadRequest(format!(
                "outcome {outcome:?} is not one of processed, ignored, rejected, failed, pending"
            )));
        }
    }
    let filter = EventFilter {
        partner: params.partner,
        outcome: params.outcome,
        reason: params.reason,
        before_id: params.before,
        from: params.from,
        to: params.to,
        limit: params.limit.unwrap_or(DEFAULT_PAGE),
    };
    Ok(Json(state.gateway.store().events(&filter).await?))
}

async fn event(State(state): State<AppState>, path: IdPath) -> Result<impl IntoResponse, ApiError> {
    let event = state.gateway.store().event(id(path)?).await?;
    found(event, "event")
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ReplayInput {
    partner: Option<String>,
    outcome: Option<String>,
    reason: Option<String>,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
}

/// Replays the stored events of a filter through the current handlers, synchronously.
async fn replay(
    State(state): State<AppState>,
    input: Result<Json<ReplayInput>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let input = body(input)?;
    if let Some(outcome) = &input.outcome {
        if crate::domain::Outcome::parse(outcome).is_none() {
            return Err(ApiError::Unprocessable(format!(
                "outcome {outcome:?} is not an outcome"
            )));
        }
    }
    let filter = ReplayFilter {
        event_id: None,
        partner: input.partner,
        outcome: input.outcome,
        reason: input.reason,
        from: input.from,
        to: input.to,
    };
    Ok(Json(state.gateway.replay(&filter, || {}).await?))
}

async fn replay_one(
    State(state): State<AppState>,
    path: IdPath,
) -> Result<impl IntoResponse, ApiError> {
    let id = id(path)?;
    let store = state.gateway.store();
    let event = store.event(id).await?.ok_or(ApiError::NotFound("event"))?;
    if event.summary.outcome == "rejected" {
        return Err(ApiError::Conflict(
            "a rejected event failed authentication and is never replayed".into(),
        ));
    }
    let filter = ReplayFilter {
        event_id: Some(id),
        ..ReplayFilter::default()
    };
    let summary = state.gateway.replay(&filter, || {}).await?;
    let event = store.event(id).await?.ok_or(ApiError::NotFound("event"))?;
    Ok(Json(
        serde_json::json!({ "summary": summary, "event": event.summary }),
    ))
}
