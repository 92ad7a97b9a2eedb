//! The admin API (`/api/v1`): JSON, behind `Authorization: Bearer <admin token>`.

use std::str::FromStr;

use axum::extract::rejection::{JsonRejection, QueryRejection};
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
use crate::store::{EventFilter, NewBooking, NewLocation, NewVenue, SaleFilter};

const DEFAULT_PAGE: i64 = 100;

pub(super) fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/venues", post(create_venue))
        .route("/venues/{id}", get(venue))
        .route("/venues/{id}/bookings", post(create_booking))
        .route("/bookings/{id}", get(booking))
        .route("/sales", get(sales))
        .route("/sales/{id}", get(sale))
        .route("/events", get(events))
        .route("/events/{id}", get(event))
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

fn id(path: Result<Path<i64>, axum::extract::rejection::PathRejection>) -> Result<i64, ApiError> {
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

async fn create_venue(
    State(state): State<AppState>,
    input: Result<Json<VenueInput>, JsonRejection>,
) -> Result<(StatusCode, impl IntoResponse), ApiError> {
    let input = body(input)?;
    if input.name.trim().is_empty() {
        return Err(ApiError::Unprocessable("name must not be empty".into()));
    }
    if chrono_tz::Tz::from_str(&input.timezone).is_err() {
        return Err(ApiError::Unprocessable(format!(
            "timezone {:?} is not an IANA time zone such as Europe/London",
            input.timezone
        )));
    }
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

async fn venue(
    State(state): State<AppState>,
    path: Result<Path<i64>, axum::extract::rejection::PathRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let venue = state.gateway.store().venue(id(path)?).await?;
    venue.map(Json).ok_or(ApiError::NotFound("venue"))
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
    path: Result<Path<i64>, axum::extract::rejection::PathRejection>,
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

async fn booking(
    State(state): State<AppState>,
    path: Result<Path<i64>, axum::extract::rejection::PathRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let booking = state.gateway.store().booking(id(path)?).await?;
    booking.map(Json).ok_or(ApiError::NotFound("booking"))
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

async fn sale(
    State(state): State<AppState>,
    path: Result<Path<i64>, axum::extract::rejection::PathRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let sale = state.gateway.store().sale(id(path)?).await?;
    sale.map(Json).ok_or(ApiError::NotFound("sale"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsQuery {
    partner: Option<String>,
    outcome: Option<String>,
    reason: Option<String>,
    before: Option<i64>,
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
        limit: params.limit.unwrap_or(DEFAULT_PAGE),
    };
    Ok(Json(state.gateway.store().events(&filter).await?))
}

async fn event(
    State(state): State<AppState>,
    path: Result<Path<i64>, axum::extract::rejection::PathRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let event = state.gateway.store().event(id(path)?).await?;
    event.map(Json).ok_or(ApiError::NotFound("event"))
}
