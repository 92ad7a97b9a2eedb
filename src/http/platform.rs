//! The booking platform's side of the admin API: its bookings by its own reference, a whole
//! range synced at once, bookings paged, and the change feed.

use axum::extract::Extension;

use super::access::audit_after;
use crate::domain::access::Actor;
use crate::store::audit::Subject;
use std::collections::HashSet;

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use chrono::{DateTime, SubsecRound as _, Utc};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::admin::{CustomerInput, booking_fields, default_duration, parse_status};
use super::input::{IdPath, body, id, identifier, query, valid_filter, valid_time};
use crate::domain::Customer;
use crate::error::{ApiError, ErrorBody};
use crate::store::platform::MAX_SYNC;
use crate::store::{
    BookingPage, BookingPageFilter, BookingView, ChangeRecord, PlatformBooking, PutResult,
    SyncOutcome,
};

/// A page size from a query: 100 when left out, else 1 to 1,000 as documented (a query's
/// mistakes are 400s).
pub(super) fn page_limit(limit: Option<i64>) -> Result<i64, ApiError> {
    match limit {
        None => Ok(100),
        Some(n) if (1..=1_000).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::BadRequest(format!(
            "limit must be between 1 and 1000, not {n}"
        ))),
    }
}

/// Bytes a sync's body may have: 5,000 bookings with their guests, with room to spare.
pub(super) const SYNC_BODY_BYTES: usize = 16 * 1024 * 1024;

/// The body limit of the request to `path`: a sync's own, above `max_body_bytes` (which
/// 5,000 bookings of about 260 bytes pass), for every other.
pub(super) fn body_limit(path: &str, max_body_bytes: usize) -> usize {
    if path.ends_with("/bookings:sync") {
        max_body_bytes.max(SYNC_BODY_BYTES)
    } else {
        max_body_bytes
    }
}

/// A booking as the platform states it.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct PlatformBookingInput {
    start: DateTime<Utc>,
    #[serde(default = "default_duration")]
    #[schema(minimum = 1, maximum = 1440)]
    duration_minutes: i64,
    #[serde(default)]
    #[schema(minimum = 0, maximum = 10000)]
    covers: i64,
    #[serde(default)]
    tables: Vec<String>,
    /// Left out: a new booking is `confirmed`, an existing one keeps its status. Given, it
    /// moves the booking only as a partner may (forwards, cancelled, a no-show before
    /// seating), so a platform re-sending `confirmed` never undoes the POS's `seated`.
    #[schema(
        pattern = "^(enquiry|provisional|confirmed|arrived|seated|paid|completed|cancelled|no_show)$"
    )]
    status: Option<String>,
    #[serde(default)]
    customer: CustomerInput,
}

impl PlatformBookingInput {
    fn validate(self) -> Result<PlatformBooking, ApiError> {
        let start = booking_fields(self.start, self.duration_minutes, self.covers, &self.tables)?;
        for (field, value, most) in [
            ("customer.name", &self.customer.name, 512),
            ("customer.email", &self.customer.email, 254),
            ("customer.phone", &self.customer.phone, 64),
        ] {
            if value.as_ref().is_some_and(|v| v.len() > most) {
                return Err(ApiError::Unprocessable(format!(
                    "{field} is longer than {most} bytes"
                )));
            }
        }
        // Stored to the millisecond: a start with finer digits compares equal to itself
        // sent again (`2026-…T19:30:00.123456Z` twice is unchanged the second time).
        let start = start.trunc_subsecs(3);
        Ok(PlatformBooking {
            start,
            duration_minutes: self.duration_minutes,
            covers: self.covers,
            tables: self.tables,
            status: self.status.as_deref().map(parse_status).transpose()?,
            customer: Customer {
                name: self.customer.name,
                email: self.customer.email,
                phone: self.customer.phone,
            },
        })
    }
}

/// What a put did, and the booking as it is now.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct PutAnswer {
    result: PutResult,
    /// What of the booking as stated was not applied, and why: a status that would move it
    /// back or release guests who arrived, a time or tables changed after they arrived (the
    /// POS says where they sit). Empty when all of it was.
    not_applied: Vec<String>,
    booking: BookingView,
}

/// 404 unless venue `id` exists.
async fn known_venue(state: &AppState, id: i64) -> Result<(), ApiError> {
    state
        .gateway
        .store()
        .venue(id)
        .await?
        .map(|_| ())
        .ok_or(ApiError::NotFound("venue"))
}

/// A reference as the platform's key: not blank, no spaces around it, no control characters
/// or replacement characters (`%00` and undecodable bytes would otherwise be stored as one
/// another's look-alikes), within the identifier bounds. Compared byte for byte.
fn reference(value: &str) -> Result<String, ApiError> {
    if value.trim().is_empty() {
        return Err(ApiError::Unprocessable("the reference is blank".into()));
    }
    if value.trim() != value {
        return Err(ApiError::Unprocessable(
            "the reference has spaces around it".into(),
        ));
    }
    if value
        .chars()
        .any(|c| c.is_control() || c == char::REPLACEMENT_CHARACTER)
    {
        return Err(ApiError::Unprocessable(
            "the reference has control characters or bytes that are not UTF-8".into(),
        ));
    }
    identifier(value, "reference")?;
    Ok(value.to_owned())
}

#[utoipa::path(put, path = "/api/v1/venues/{id}/bookings/by-reference/{reference}", tag = "platform", params(("id" = i64, Path, description = "Venue id"), ("reference" = String, Path, description = "The platform's own booking reference")), request_body = PlatformBookingInput, responses((status = 201, description = "Created; waiting sales that belong to it are matched at once", body = PutAnswer), (status = 200, description = "Replaced, or already as stated (`result: unchanged`: nothing was written)", body = PutAnswer), (status = 404, description = "No such venue", body = ErrorBody), (status = 422, description = "Invalid booking", body = ErrorBody)), security(("admin" = [])))]
pub(super) async fn put_booking(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    path: Result<Path<(i64, String)>, PathRejection>,
    input: Result<Json<PlatformBookingInput>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Path((venue_id, raw_reference)) = path.map_err(|_| {
        ApiError::BadRequest("the path needs an integer venue id and a UTF-8 reference".to_owned())
    })?;
    let reference = reference(&raw_reference)?;
    let booking = body(input)?.validate()?;
    let store = state.gateway.store();
    let outcome = store
        .put_booking(venue_id, reference.clone(), booking)
        .await?;
    if outcome.result != PutResult::Unchanged {
        let after = serde_json::json!({
            "reference": reference, "result": outcome.result, "not_applied": outcome.not_applied,
        });
        let subject = Subject::Booking(outcome.id);
        audit_after(&state, actor, "booking.put", Some(venue_id), subject, after).await;
    }
    let view = store
        .booking(outcome.id)
        .await?
        .ok_or(ApiError::NotFound("booking"))?;
    let status = match outcome.result {
        PutResult::Created => StatusCode::CREATED,
        PutResult::Updated | PutResult::Unchanged => StatusCode::OK,
    };
    Ok((
        status,
        Json(PutAnswer {
            result: outcome.result,
            not_applied: outcome.not_applied,
            booking: view,
        }),
    ))
}

/// One booking of a sync, with its reference: the fields of [`PlatformBookingInput`] spelled
/// out again, because serde cannot refuse unknown fields of a struct that flattens another
/// (a typo must be a 422, not a silently ignored field).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct SyncItem {
    reference: String,
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

impl SyncItem {
    fn split(self) -> (String, PlatformBookingInput) {
        let booking = PlatformBookingInput {
            start: self.start,
            duration_minutes: self.duration_minutes,
            covers: self.covers,
            tables: self.tables,
            status: self.status,
            customer: self.customer,
        };
        (self.reference, booking)
    }
}

/// The span whose unlisted platform bookings a sync cancels.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct SyncRange {
    /// Bookings starting at or after...
    from: DateTime<Utc>,
    /// ...and before.
    to: DateTime<Utc>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct SyncInput {
    /// At most 5,000, each reference once.
    bookings: Vec<SyncItem>,
    /// Cancel the platform's bookings starting in this span that `bookings` no longer lists.
    cancel_missing: Option<SyncRange>,
}

#[utoipa::path(post, path = "/api/v1/venues/{id}/bookings:sync", tag = "platform", params(("id" = i64, Path, description = "Venue id")), request_body = SyncInput, responses((status = 200, description = "Every booking upserted by reference, validated whole before any is written, then written 100 to a transaction", body = SyncOutcome), (status = 404, description = "No such venue", body = ErrorBody), (status = 422, description = "Invalid booking, repeated reference, or more than 5,000", body = ErrorBody)), security(("admin" = [])))]
pub(super) async fn sync_bookings(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    path: IdPath,
    input: Result<Json<SyncInput>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let venue_id = id(path)?;
    let input = body(input)?;
    known_venue(&state, venue_id).await?;
    if input.bookings.len() > MAX_SYNC {
        return Err(ApiError::Unprocessable(format!(
            "a sync carries at most {MAX_SYNC} bookings; send the range in parts"
        )));
    }
    let mut seen = HashSet::with_capacity(input.bookings.len());
    let mut bookings = Vec::with_capacity(input.bookings.len());
    for (n, item) in input.bookings.into_iter().enumerate() {
        let (raw_reference, booking) = item.split();
        let reference = reference(&raw_reference)
            .map_err(|e| ApiError::Unprocessable(format!("bookings[{n}]: {e}")))?;
        if !seen.insert(reference.clone()) {
            return Err(ApiError::Unprocessable(format!(
                "bookings[{n}]: reference {reference:?} is listed twice"
            )));
        }
        let booking = booking
            .validate()
            .map_err(|e| ApiError::Unprocessable(format!("bookings[{n}] ({reference}): {e}")))?;
        bookings.push((reference, booking));
    }
    let cancel_missing = match input.cancel_missing {
        None => None,
        Some(range) => {
            let from = valid_time(range.from, "cancel_missing.from")?;
            let to = valid_time(range.to, "cancel_missing.to")?;
            if to <= from {
                return Err(ApiError::Unprocessable(
                    "cancel_missing.to must be after cancel_missing.from".into(),
                ));
            }
            Some((from, to))
        }
    };
    let outcome = state
        .gateway
        .store()
        .sync_bookings(venue_id, bookings, cancel_missing)
        .await?;
    let after = serde_json::json!({ "outcome": outcome, "cancel_missing": cancel_missing });
    let subject = Subject::Venue(venue_id);
    audit_after(
        &state,
        actor,
        "bookings.sync",
        Some(venue_id),
        subject,
        after,
    )
    .await;
    Ok(Json(outcome))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct BookingsQuery {
    /// Bookings starting at or after.
    from: Option<DateTime<Utc>>,
    /// Bookings starting before.
    to: Option<DateTime<Utc>>,
    #[param(
        pattern = "^(enquiry|provisional|confirmed|arrived|seated|paid|completed|cancelled|no_show)$"
    )]
    status: Option<String>,
    /// Bookings changed at or after.
    updated_since: Option<DateTime<Utc>>,
    /// The previous page's `next`.
    after: Option<i64>,
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
}

#[utoipa::path(get, path = "/api/v1/venues/{id}/bookings", tag = "platform", params(("id" = i64, Path, description = "Venue id"), BookingsQuery), responses((status = 200, description = "A page of the venue's bookings in id order", body = BookingPage), (status = 404, description = "No such venue", body = ErrorBody)), security(("admin" = [])))]
pub(super) async fn bookings(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    path: IdPath,
    params: Result<Query<BookingsQuery>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let venue_id = id(path)?;
    super::access::visible(&actor, venue_id, "venue")?;
    let params = query(params)?;
    known_venue(&state, venue_id).await?;
    let status = params
        .status
        .as_deref()
        .map(|s| parse_status(s).map_err(|e| ApiError::BadRequest(e.to_string())))
        .transpose()?;
    let filter = BookingPageFilter {
        venue_id,
        from: valid_filter(params.from, "from")?,
        to: valid_filter(params.to, "to")?,
        status,
        updated_since: valid_filter(params.updated_since, "updated_since")?,
        after: params.after,
        limit: page_limit(params.limit)?,
    };
    Ok(Json(state.gateway.store().booking_page(filter).await?))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct ChangesQuery {
    /// The `next_cursor` (or a change's `cursor`) read last; left out: from the start.
    after: Option<String>,
    /// Only this venue's changes.
    venue: Option<i64>,
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
}

/// A page of the change feed.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct ChangesPage {
    changes: Vec<ChangeRecord>,
    /// Pass as `after` for the changes that follow (the same cursor when there were none).
    next_cursor: String,
}

#[utoipa::path(get, path = "/api/v1/changes", tag = "platform", params(ChangesQuery), responses((status = 200, description = "Changes after the cursor in commit order; the same messages the webhooks carry, with the same ids", body = ChangesPage)), security(("admin" = [])))]
pub(super) async fn changes(
    State(state): State<AppState>,
    params: Result<Query<ChangesQuery>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let params = query(params)?;
    let after = match params.after.as_deref().map(str::trim) {
        None | Some("") => 0,
        Some(cursor) => cursor
            .parse::<i64>()
            .ok()
            .filter(|c| *c >= 0)
            .ok_or_else(|| {
                ApiError::BadRequest(format!("{cursor:?} is not a cursor of this feed"))
            })?,
    };
    let changes = state
        .gateway
        .store()
        .changes(after, page_limit(params.limit)?, params.venue)
        .await?;
    let next_cursor = changes
        .last()
        .map_or_else(|| after.to_string(), |c| c.cursor.clone());
    Ok(Json(ChangesPage {
        changes,
        next_cursor,
    }))
}
