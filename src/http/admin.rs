//! The admin API (`/api/v1`): JSON, behind `Authorization: Bearer <token>`: the
//! configuration's admin token or a user's personal token, limited to what the user's role
//! may do and the venues it sees (`http::access`).

use std::str::FromStr;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Extension, Query, State};
use axum::http::StatusCode;
use axum::middleware;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::AppState;
use super::access::{allowed, authenticate, require, visible};
use super::input::{
    IdPath, body, found, id, identifier, query, table_name, valid_currency, valid_tables,
    valid_time,
};
use crate::domain::access::{Actor, Permission};
use crate::domain::{BookingStatus, Customer};
use crate::error::{ApiError, ErrorBody};
use crate::store::{
    BookingChanges, NewBooking, NewLocation, NewVenue, SaleFilter, TolerancesRecord, VenueChanges,
};
use crate::store::{
    BookingView, DiaryView, GuestView, HealthRecord, PurgeSummary, SaleDetail, SaleRecord,
    SuggestionRecord, VenueRecord,
};

const DEFAULT_PAGE: i64 = 100;

pub(super) fn router(state: AppState) -> Router<AppState> {
    // Every role, each handler limiting what it reads and writes to the actor's venues.
    let venues = Router::new()
        .route("/venues", get(venues).post(create_venue))
        .route("/venues/{id}", get(venue).patch(update_venue))
        .route(
            "/venues/{id}/bookings",
            get(super::platform::bookings).post(create_booking),
        )
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
        .route("/events", get(super::events::events))
        .route("/events/{id}", get(super::events::event))
        .merge(super::users::own_router());
    let integrate = Router::new()
        .route("/health", get(health))
        .route(
            "/venues/{id}/bookings/by-reference/{reference}",
            axum::routing::put(super::platform::put_booking),
        )
        .route(
            "/venues/{id}/bookings:sync",
            post(super::platform::sync_bookings).layer(axum::extract::DefaultBodyLimit::max(
                super::platform::SYNC_BODY_BYTES,
            )),
        )
        .route("/changes", get(super::platform::changes))
        .merge(super::webhooks::router())
        .route("/events/replay", post(super::events::replay))
        .route("/events/{id}/replay", post(super::events::replay_one))
        .merge(super::partner_settings::router())
        .merge(super::partner_scripts::router())
        .route_layer(middleware::from_fn(require(Permission::Integrate)));
    let administer = Router::new()
        .route("/retention/purge", post(purge))
        .merge(super::users::router())
        .route_layer(middleware::from_fn(require(Permission::Administer)));
    Router::new()
        .merge(venues)
        .merge(integrate)
        .merge(administer)
        .route_layer(middleware::from_fn_with_state(state, authenticate))
        // Documentation, not data: readable without a token.
        .route("/openapi.json", get(super::openapi::serve))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct VenueInput {
    #[schema(min_length = 1)]
    name: String,
    timezone: String,
    currency: Option<String>,
    #[serde(default)]
    locations: Vec<LocationInput>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct LocationInput {
    partner: String,
    location_id: String,
    #[serde(default = "enabled_by_default")]
    enabled: bool,
}

fn enabled_by_default() -> bool {
    true
}

/// The longest venue name kept, in characters: it is shown in every venue list.
const MAX_VENUE_NAME: usize = 200;

pub(super) fn valid_name(name: &str) -> Result<(), ApiError> {
    if name.trim().is_empty() {
        return Err(ApiError::Unprocessable("name must not be empty".into()));
    }
    if name.chars().count() > MAX_VENUE_NAME {
        return Err(ApiError::Unprocessable(format!(
            "name must be at most {MAX_VENUE_NAME} characters"
        )));
    }
    Ok(())
}

pub(super) fn valid_timezone(timezone: &str) -> Result<(), ApiError> {
    chrono_tz::Tz::from_str(timezone).map(|_| ()).map_err(|_| {
        ApiError::Unprocessable(format!(
            "timezone {timezone:?} is not an IANA time zone such as Europe/London"
        ))
    })
}

#[utoipa::path(post, path = "/api/v1/venues", tag = "venues", request_body = VenueInput, responses((status = 201, description = "Created", body = VenueRecord), (status = 409, description = "A location already belongs to another venue", body = ErrorBody), (status = 422, description = "Invalid venue", body = ErrorBody)), security(("admin" = [])))]
pub(super) async fn create_venue(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    input: Result<Json<VenueInput>, JsonRejection>,
) -> Result<(StatusCode, impl IntoResponse), ApiError> {
    allowed(&actor, Permission::ManageVenues)?;
    let input = body(input)?;
    valid_name(&input.name)?;
    valid_timezone(&input.timezone)?;
    for location in &input.locations {
        known_partner(&state, &location.partner)?;
        if location.location_id.trim().is_empty() {
            return Err(ApiError::Unprocessable(
                "location_id must not be empty".into(),
            ));
        }
        identifier(&location.location_id, "location_id")?;
    }
    let venue = NewVenue {
        name: input.name,
        timezone: input.timezone,
        currency: valid_currency(input.currency)?,
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
    let venue = state.gateway.store().create_venue(venue, actor).await?;
    Ok((StatusCode::CREATED, Json(venue)))
}

#[utoipa::path(get, path = "/api/v1/venues", tag = "venues", responses((status = 200, description = "Every venue, by name", body = Vec<VenueRecord>)), security(("admin" = [])))]
pub(super) async fn venues(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
) -> Result<impl IntoResponse, ApiError> {
    let mut venues = state.gateway.store().venues().await?;
    venues.retain(|venue| actor.sees(venue.id));
    Ok(Json(venues))
}

/// How each partner's events fared per venue in the last hour and day.
#[utoipa::path(get, path = "/api/v1/health", tag = "events", responses((status = 200, description = "Per partner and venue: events by outcome in the last hour and day, problems, match rate", body = Vec<HealthRecord>)), security(("admin" = [])))]
pub(super) async fn health(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(state.gateway.store().health(Utc::now()).await?))
}

#[utoipa::path(get, path = "/api/v1/venues/{id}", tag = "venues", params(("id" = i64, Path, description = "Venue id")), responses((status = 200, description = "The venue", body = VenueRecord), (status = 404, description = "No such venue", body = ErrorBody)), security(("admin" = [])))]
pub(super) async fn venue(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    path: IdPath,
) -> Result<impl IntoResponse, ApiError> {
    let id = id(path)?;
    visible(&actor, id, "venue")?;
    let venue = state.gateway.store().venue(id).await?;
    found(venue, "venue")
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct VenueSettingsInput {
    #[schema(min_length = 1)]
    pub(super) name: Option<String>,
    pub(super) timezone: Option<String>,
    pub(super) currency: Option<String>,
    pub(super) tolerances: Option<TolerancesInput>,
    pub(super) table_aliases: Option<std::collections::BTreeMap<String, String>>,
    pub(super) walk_ins: Option<bool>,
    pub(super) sku_tables: Option<std::collections::BTreeMap<String, String>>,
    /// What per-cover spend divides by: the booked covers (`booking`) or the covers the
    /// POS counted on the booking's checks (`pos`).
    #[schema(value_type = Option<String>, example = "pos")]
    pub(super) covers_source: Option<CoversSourceInput>,
}

/// `booking` or `pos`.
#[derive(Deserialize, utoipa::ToSchema, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub(super) enum CoversSourceInput {
    Booking,
    Pos,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct TolerancesInput {
    #[schema(minimum = 0, maximum = 1440)]
    pub(super) before_start_minutes: i64,
    #[schema(minimum = 0, maximum = 1440)]
    pub(super) after_end_minutes: i64,
}

#[utoipa::path(patch, path = "/api/v1/venues/{id}", tag = "venues", params(("id" = i64, Path, description = "Venue id")), request_body = VenueSettingsInput, responses((status = 200, description = "The venue as changed", body = VenueRecord), (status = 404, description = "No such venue", body = ErrorBody), (status = 422, description = "Invalid settings", body = ErrorBody)), security(("admin" = [])))]
pub(super) async fn update_venue(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    path: IdPath,
    input: Result<Json<VenueSettingsInput>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let id = id(path)?;
    visible(&actor, id, "venue")?;
    allowed(&actor, Permission::VenueSettings)?;
    let changes = venue_changes(body(input)?)?;
    let store = state.gateway.store();
    store.update_venue(id, changes, actor).await?;
    found(store.venue(id).await?, "venue")
}

/// A venue's settings as given, checked: the API's `PATCH` and the venue page's form.
///
/// # Errors
/// [`ApiError::Unprocessable`] naming the setting out of bounds.
pub(super) fn venue_changes(input: VenueSettingsInput) -> Result<VenueChanges, ApiError> {
    input.name.as_deref().map(valid_name).transpose()?;
    if let Some(timezone) = &input.timezone {
        valid_timezone(timezone)?;
    }
    if let Some(t) = &input.tolerances
        && (!(0..=24 * 60).contains(&t.before_start_minutes)
            || !(0..=24 * 60).contains(&t.after_end_minutes))
    {
        return Err(ApiError::Unprocessable(
            "tolerances must be between 0 and 1440 minutes".into(),
        ));
    }
    // Aliases and SKU tables name the diary's tables: held to a table's bounds, or a check
    // or booking mapped through them would carry a name the diary cannot store (found by
    // the outside attack on issue 15).
    for (alias, table) in input.table_aliases.iter().flatten() {
        table_name(alias, "table_aliases")?;
        table_name(table, "table_aliases")?;
    }
    for table in input.sku_tables.iter().flat_map(|skus| skus.values()) {
        table_name(table, "sku_tables")?;
    }
    let changes = VenueChanges {
        name: input.name,
        timezone: input.timezone,
        currency: valid_currency(input.currency)?,
        tolerances: input.tolerances.map(|t| TolerancesRecord {
            before_start_minutes: t.before_start_minutes,
            after_end_minutes: t.after_end_minutes,
        }),
        table_aliases: input.table_aliases,
        walk_ins: input.walk_ins,
        sku_tables: input.sku_tables,
        covers_source: input.covers_source.map(|source| match source {
            CoversSourceInput::Booking => crate::domain::venue::CoversSource::Booking,
            CoversSourceInput::Pos => crate::domain::venue::CoversSource::Pos,
        }),
    };
    Ok(changes)
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct DiaryQuery {
    date: chrono::NaiveDate,
}

#[utoipa::path(get, path = "/api/v1/venues/{id}/diary", tag = "diary", params(("id" = i64, Path, description = "Venue id"), DiaryQuery), responses((status = 200, description = "The bookings of that local day with their sales, spend and the day's totals", body = DiaryView), (status = 400, description = "A date outside 1970 to 2199", body = ErrorBody), (status = 404, description = "No such venue", body = ErrorBody)), security(("admin" = [])))]
pub(super) async fn diary(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    path: IdPath,
    params: Result<Query<DiaryQuery>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let id = id(path)?;
    visible(&actor, id, "venue")?;
    let params = query(params)?;
    let midnight = params.date.and_time(chrono::NaiveTime::MIN);
    crate::domain::time::bounded(midnight.and_utc(), "date")
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    Ok(Json(state.gateway.store().diary(id, params.date).await?))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct VenueSalesQuery {
    unmatched: Option<bool>,
    partner: Option<String>,
    /// The next page: sales with an id below this one (the last id of the previous page).
    before: Option<i64>,
    /// At most this many (default 100, at most 1000).
    limit: Option<i64>,
}

#[utoipa::path(get, path = "/api/v1/venues/{id}/sales", tag = "sales", params(("id" = i64, Path, description = "Venue id"), VenueSalesQuery), responses((status = 200, description = "The venue's sales, newest first", body = Vec<SaleRecord>), (status = 404, description = "No such venue", body = ErrorBody)), security(("admin" = [])))]
pub(super) async fn venue_sales(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    path: IdPath,
    params: Result<Query<VenueSalesQuery>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let venue_id = id(path)?;
    visible(&actor, venue_id, "venue")?;
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
        before_id: params.before,
        limit: params.limit.unwrap_or(DEFAULT_PAGE),
        venue_limit: None,
    };
    Ok(Json(store.sales(&filter).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct BookingInput {
    reference: Option<String>,
    start: DateTime<Utc>,
    #[serde(default = "default_duration")]
    #[schema(minimum = 1, maximum = 1440)]
    duration_minutes: i64,
    #[serde(default)]
    #[schema(minimum = 0, maximum = 10000)]
    covers: i64,
    #[serde(default)]
    tables: Vec<String>,
    #[schema(
        pattern = "^(enquiry|provisional|confirmed|arrived|seated|paid|completed|cancelled|no_show)$"
    )]
    status: Option<String>,
    #[serde(default)]
    customer: CustomerInput,
}

pub(super) fn default_duration() -> i64 {
    90
}

/// The most covers one booking can have: far above any real party, far below a number
/// whose sums over a diary could overflow.
const MAX_COVERS: i64 = 10_000;

/// A booking's length: a minute to a day.
pub(super) fn valid_duration(minutes: i64) -> Result<(), ApiError> {
    if (1..=24 * 60).contains(&minutes) {
        Ok(())
    } else {
        Err(ApiError::Unprocessable(
            "duration_minutes must be between 1 and 1440".into(),
        ))
    }
}

/// A new booking's time, length, covers and tables within their bounds; its start, checked.
pub(super) fn booking_fields(
    start: DateTime<Utc>,
    duration_minutes: i64,
    covers: i64,
    tables: &[String],
) -> Result<DateTime<Utc>, ApiError> {
    valid_duration(duration_minutes)?;
    valid_covers(covers)?;
    let start = valid_time(start, "start")?;
    valid_tables(tables)?;
    Ok(start)
}

pub(super) fn valid_covers(covers: i64) -> Result<(), ApiError> {
    if (0..=MAX_COVERS).contains(&covers) {
        Ok(())
    } else {
        Err(ApiError::Unprocessable(format!(
            "covers must be between 0 and {MAX_COVERS}"
        )))
    }
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CustomerInput {
    pub(super) name: Option<String>,
    pub(super) email: Option<String>,
    pub(super) phone: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/venues/{id}/bookings", tag = "diary", params(("id" = i64, Path, description = "Venue id")), request_body = BookingInput, responses((status = 201, description = "Created; waiting sales that belong to it are matched at once", body = BookingView), (status = 404, description = "No such venue", body = ErrorBody), (status = 409, description = "The reference is taken", body = ErrorBody), (status = 422, description = "Invalid booking", body = ErrorBody)), security(("admin" = [])))]
pub(super) async fn create_booking(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    path: IdPath,
    input: Result<Json<BookingInput>, JsonRejection>,
) -> Result<(StatusCode, impl IntoResponse), ApiError> {
    let venue_id = id(path)?;
    visible(&actor, venue_id, "venue")?;
    allowed(&actor, Permission::WriteDiary)?;
    let input = body(input)?;
    let start = booking_fields(
        input.start,
        input.duration_minutes,
        input.covers,
        &input.tables,
    )?;
    input
        .reference
        .as_deref()
        .map(|r| identifier(r, "reference"))
        .transpose()?;
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
        start,
        duration_minutes: input.duration_minutes,
        covers: input.covers,
        tables: input.tables,
        status,
        customer: Customer {
            name: input.customer.name,
            email: input.customer.email,
            phone: input.customer.phone,
        },
        source: "admin",
    };
    let store = state.gateway.store();
    let id = store.create_booking(venue_id, booking, actor).await?;
    let view = store
        .booking(id)
        .await?
        .ok_or(ApiError::NotFound("booking"))?;
    Ok((StatusCode::CREATED, Json(view)))
}

pub(super) fn parse_status(status: &str) -> Result<BookingStatus, ApiError> {
    status
        .parse()
        .map_err(|e: crate::domain::booking::UnknownStatus| ApiError::Unprocessable(e.to_string()))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct BookingChangesInput {
    reference: Option<String>,
    start: Option<DateTime<Utc>>,
    #[schema(minimum = 1, maximum = 1440)]
    duration_minutes: Option<i64>,
    #[schema(minimum = 0, maximum = 10000)]
    covers: Option<i64>,
    tables: Option<Vec<String>>,
    #[schema(
        pattern = "^(enquiry|provisional|confirmed|arrived|seated|paid|completed|cancelled|no_show)$"
    )]
    status: Option<String>,
    customer: Option<CustomerInput>,
}

#[utoipa::path(patch, path = "/api/v1/bookings/{id}", tag = "diary", params(("id" = i64, Path, description = "Booking id")), request_body = BookingChangesInput, responses((status = 200, description = "The booking as changed", body = BookingView), (status = 404, description = "No such booking", body = ErrorBody), (status = 409, description = "The reference is taken", body = ErrorBody), (status = 422, description = "Invalid change", body = ErrorBody)), security(("admin" = [])))]
pub(super) async fn update_booking(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    path: IdPath,
    input: Result<Json<BookingChangesInput>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let id = id(path)?;
    diary_writable(&state, &actor, Writable::Booking(id)).await?;
    let input = body(input)?;
    input.duration_minutes.map(valid_duration).transpose()?;
    input.covers.map(valid_covers).transpose()?;
    let start = input.start.map(|t| valid_time(t, "start")).transpose()?;
    input.tables.as_deref().map(valid_tables).transpose()?;
    input
        .reference
        .as_deref()
        .map(|r| identifier(r, "reference"))
        .transpose()?;
    let changes = BookingChanges {
        reference: input.reference.filter(|r| !r.trim().is_empty()),
        start,
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
    store.update_booking(id, changes, actor).await?;
    found(store.booking(id).await?, "booking")
}

#[utoipa::path(post, path = "/api/v1/bookings/{id}/cancel", tag = "diary", params(("id" = i64, Path, description = "Booking id")), responses((status = 200, description = "The booking, cancelled", body = BookingView), (status = 404, description = "No such booking", body = ErrorBody)), security(("admin" = [])))]
pub(super) async fn cancel_booking(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    path: IdPath,
) -> Result<impl IntoResponse, ApiError> {
    let id = id(path)?;
    diary_writable(&state, &actor, Writable::Booking(id)).await?;
    let store = state.gateway.store();
    let changes = BookingChanges {
        status: Some(BookingStatus::Cancelled),
        ..BookingChanges::default()
    };
    store.update_booking(id, changes, actor).await?;
    found(store.booking(id).await?, "booking")
}

#[utoipa::path(get, path = "/api/v1/guests/{id}", tag = "diary", params(("id" = i64, Path, description = "Guest id")), responses((status = 200, description = "The guest profile", body = GuestView), (status = 404, description = "No such guest", body = ErrorBody)), security(("admin" = [])))]
pub(super) async fn guest(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    path: IdPath,
) -> Result<impl IntoResponse, ApiError> {
    let guest = state.gateway.store().guest(id(path)?).await?;
    found(guest.filter(|guest| actor.sees(guest.venue_id)), "guest")
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct MatchInput {
    booking_id: i64,
}

#[utoipa::path(post, path = "/api/v1/sales/{id}/match", tag = "sales", params(("id" = i64, Path, description = "Sale id")), request_body = MatchInput, responses((status = 200, description = "The sale, matched by hand (never overridden)", body = SaleDetail), (status = 404, description = "No such sale or booking", body = ErrorBody), (status = 409, description = "The booking is at another venue", body = ErrorBody)), security(("admin" = [])))]
pub(super) async fn match_sale(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    path: IdPath,
    input: Result<Json<MatchInput>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let id = id(path)?;
    let input = body(input)?;
    diary_writable(&state, &actor, Writable::Sale(id)).await?;
    // The booking too: a venue manager must not learn another venue's booking ids from a
    // 409 where a missing one answers 404.
    diary_writable(&state, &actor, Writable::Booking(input.booking_id)).await?;
    let store = state.gateway.store();
    store.match_sale(id, input.booking_id, actor).await?;
    found(store.sale(id).await?, "sale")
}

#[utoipa::path(post, path = "/api/v1/sales/{id}/unmatch", tag = "sales", params(("id" = i64, Path, description = "Sale id")), responses((status = 200, description = "The sale, unmatched by hand (never matched again automatically)", body = SaleDetail), (status = 404, description = "No such sale", body = ErrorBody)), security(("admin" = [])))]
pub(super) async fn unmatch_sale(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    path: IdPath,
) -> Result<impl IntoResponse, ApiError> {
    let id = id(path)?;
    diary_writable(&state, &actor, Writable::Sale(id)).await?;
    let store = state.gateway.store();
    store.unmatch_sale(id, actor).await?;
    found(store.sale(id).await?, "sale")
}

#[utoipa::path(get, path = "/api/v1/bookings/{id}", tag = "diary", params(("id" = i64, Path, description = "Booking id")), responses((status = 200, description = "The booking with its sales, spend and transitions", body = BookingView), (status = 404, description = "No such booking", body = ErrorBody)), security(("admin" = [])))]
pub(super) async fn booking(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    path: IdPath,
) -> Result<impl IntoResponse, ApiError> {
    let booking = state.gateway.store().booking(id(path)?).await?;
    found(booking.filter(|b| actor.sees(b.venue_id)), "booking")
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct SalesQuery {
    partner: Option<String>,
    external_id: Option<String>,
    venue: Option<i64>,
    unmatched: Option<bool>,
    /// The next page: sales with an id below this one (the last id of the previous page).
    before: Option<i64>,
    /// At most this many (default 100, at most 1000).
    limit: Option<i64>,
}

#[utoipa::path(get, path = "/api/v1/sales", tag = "sales", params(SalesQuery), responses((status = 200, description = "Sales, newest first", body = Vec<SaleRecord>)), security(("admin" = [])))]
pub(super) async fn sales(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    params: Result<Query<SalesQuery>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let params = query(params)?;
    let filter = SaleFilter {
        partner: params.partner,
        external_id: params.external_id,
        venue_id: params.venue,
        unmatched: params.unmatched,
        before_id: params.before,
        limit: params.limit.unwrap_or(DEFAULT_PAGE),
        venue_limit: actor.venue_limit(),
    };
    Ok(Json(state.gateway.store().sales(&filter).await?))
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct PurgeInput {
    /// Erase what is older than this; without it, what `retention_days` says is due.
    before: Option<DateTime<Utc>>,
}

/// Runs the retention purge now: raw payloads and guests' personal data older than the
/// cutoff are erased, sales figures stay.
#[utoipa::path(post, path = "/api/v1/retention/purge", tag = "events", request_body = PurgeInput,
    responses((status = 200, description = "What was erased", body = PurgeSummary),
        (status = 422, description = "No cutoff: neither `before` nor `retention_days`", body = ErrorBody)),
    security(("admin" = [])))]
pub(super) async fn purge(
    State(state): State<AppState>,
    input: Result<Json<PurgeInput>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let input = body(input)?;
    let before = match (input.before, state.retention) {
        (Some(before), _) => valid_time(before, "before")?,
        (None, Some(retention)) => match crate::retention::cutoff(retention) {
            Some(before) => before,
            None => return Ok(Json(PurgeSummary::default())),
        },
        (None, None) => {
            return Err(ApiError::Unprocessable(
                "give `before`, or set retention_days in the configuration".into(),
            ));
        }
    };
    Ok(Json(state.gateway.store().purge(before).await?))
}

/// Suggestions offered for an unmatched or ambiguous sale, at most this many.
const SUGGESTIONS: usize = 5;

#[utoipa::path(get, path = "/api/v1/sales/{id}/suggestions", tag = "sales", params(("id" = i64, Path, description = "Sale id")), responses((status = 200, description = "Bookings it might belong to, best first, each with its reason", body = Vec<SuggestionRecord>), (status = 404, description = "No such sale", body = ErrorBody)), security(("admin" = [])))]
pub(super) async fn suggestions(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    path: IdPath,
) -> Result<impl IntoResponse, ApiError> {
    let id = id(path)?;
    sale_visible(&state, &actor, id).await?;
    let suggestions = state.gateway.store().suggestions(id, SUGGESTIONS).await?;
    found(suggestions, "sale")
}

#[utoipa::path(get, path = "/api/v1/sales/{id}", tag = "sales", params(("id" = i64, Path, description = "Sale id")), responses((status = 200, description = "The sale with its lines and payments", body = SaleDetail), (status = 404, description = "No such sale", body = ErrorBody)), security(("admin" = [])))]
pub(super) async fn sale(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    path: IdPath,
) -> Result<impl IntoResponse, ApiError> {
    let sale = state.gateway.store().sale(id(path)?).await?;
    found(sale.filter(|s| actor.sees(s.sale.venue_id)), "sale")
}

/// What a hand-made diary change is about.
pub(super) enum Writable {
    Booking(i64),
    Sale(i64),
}

/// `Ok` when `actor` may change this booking or sale by hand: 404 when it is at a venue
/// they do not see (or does not exist), 403 when their role changes no diary.
///
/// # Errors
/// [`ApiError::NotFound`], [`ApiError::Forbidden`], or the store's error.
pub(super) async fn diary_writable(
    state: &AppState,
    actor: &Actor,
    what: Writable,
) -> Result<(), ApiError> {
    let store = state.gateway.store();
    let (venue, name) = match what {
        Writable::Booking(id) => (store.booking(id).await?.map(|b| b.venue_id), "booking"),
        Writable::Sale(id) => (store.sale(id).await?.map(|s| s.sale.venue_id), "sale"),
    };
    match venue {
        Some(venue) if actor.sees(venue) => allowed(actor, Permission::WriteDiary),
        _ => Err(ApiError::NotFound(name)),
    }
}

/// `Ok` when the sale exists at a venue `actor` sees.
async fn sale_visible(state: &AppState, actor: &Actor, id: i64) -> Result<(), ApiError> {
    let sale = state.gateway.store().sale(id).await?;
    match sale {
        Some(sale) => visible(actor, sale.sale.venue_id, "sale"),
        None => Err(ApiError::NotFound("sale")),
    }
}

/// `Ok` when `partner` takes deliveries (the file's, or the database's).
///
/// # Errors
/// [`ApiError::Unprocessable`] naming the partners there are.
pub(super) fn known_partner(state: &AppState, partner: &str) -> Result<(), ApiError> {
    if state.gateway.has_partner(partner) {
        return Ok(());
    }
    let names: Vec<String> = state
        .gateway
        .partners()
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    Err(ApiError::Unprocessable(format!(
        "partner {partner:?} is not configured; configured partners: {}",
        names.join(", ")
    )))
}
