//! Stored partner events over the API: the log, one event, and replays (of a filter, of
//! one event, of a location's events once mapped), each replay recorded in the audit trail.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Extension, Query, State};
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::AppState;
use super::input::{IdPath, body, found, id, query, valid_filter, valid_time};
use crate::domain::access::Actor;
use crate::error::{ApiError, ErrorBody};
use crate::gateway::ReplaySummary;
use crate::store::{EventDetail, EventFilter, EventSummary, ReplayFilter};

const DEFAULT_PAGE: i64 = 100;

/// What replaying one event did, and the event's outcome now.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct ReplayOne {
    summary: ReplaySummary,
    event: EventSummary,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct EventsQuery {
    partner: Option<String>,
    #[param(pattern = "^(processed|ignored|rejected|failed|pending)$")]
    outcome: Option<String>,
    reason: Option<String>,
    before: Option<i64>,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    limit: Option<i64>,
}

#[utoipa::path(get, path = "/api/v1/events", tag = "events", params(EventsQuery), responses((status = 200, description = "Stored partner events, newest first", body = Vec<EventSummary>), (status = 400, description = "Invalid filter", body = ErrorBody)), security(("admin" = [])))]
pub(super) async fn events(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    params: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let params = query(params)?;
    if let Some(outcome) = &params.outcome
        && crate::domain::Outcome::parse(outcome).is_none()
    {
        return Err(ApiError::BadRequest(format!(
            "outcome {outcome:?} is not one of processed, ignored, rejected, failed, pending"
        )));
    }
    let filter = EventFilter {
        partner: params.partner,
        outcome: params.outcome,
        reason: params.reason,
        before_id: params.before,
        from: valid_filter(params.from, "from")?,
        to: valid_filter(params.to, "to")?,
        limit: params.limit.unwrap_or(DEFAULT_PAGE),
        venue_limit: actor.venue_limit(),
    };
    Ok(Json(state.gateway.store().events(&filter).await?))
}

#[utoipa::path(get, path = "/api/v1/events/{id}", tag = "events", params(("id" = i64, Path, description = "Event id")), responses((status = 200, description = "The event with its headers (credentials never stored), masked query and raw body", body = EventDetail), (status = 404, description = "No such event", body = ErrorBody)), security(("admin" = [])))]
pub(super) async fn event(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    path: IdPath,
) -> Result<impl IntoResponse, ApiError> {
    let event = state.gateway.store().event(id(path)?).await?;
    let seen = |event: &EventDetail| match event.summary.venue_id {
        Some(venue) => actor.sees(venue),
        None => actor.venue_limit().is_none(),
    };
    found(event.filter(seen), "event")
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ReplayInput {
    partner: Option<String>,
    #[schema(pattern = "^(processed|ignored|rejected|failed|pending)$")]
    outcome: Option<String>,
    reason: Option<String>,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    /// Only the events this location of `partner` sent while no venue owned it.
    location_id: Option<String>,
}

/// Replays the stored events of a filter through the current handlers, synchronously.
#[utoipa::path(post, path = "/api/v1/events/replay", tag = "events", request_body = ReplayInput, responses((status = 200, description = "What the replay did", body = ReplaySummary), (status = 422, description = "Invalid filter", body = ErrorBody)), security(("admin" = [])))]
pub(super) async fn replay(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    input: Result<Json<ReplayInput>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let input = body(input)?;
    if let Some(outcome) = &input.outcome
        && crate::domain::Outcome::parse(outcome).is_none()
    {
        return Err(ApiError::Unprocessable(format!(
            "outcome {outcome:?} is not an outcome"
        )));
    }
    let filter = ReplayFilter {
        event_id: None,
        partner: input.partner,
        outcome: input.outcome,
        reason: input.reason,
        from: input.from.map(|t| valid_time(t, "from")).transpose()?,
        to: input.to.map(|t| valid_time(t, "to")).transpose()?,
        unmapped_location: input.location_id.map(|l| l.trim().to_owned()),
    };
    if filter.unmapped_location.is_some() && filter.partner.is_none() {
        return Err(ApiError::Unprocessable(
            "location_id needs the partner it belongs to".into(),
        ));
    }
    Ok(Json(replay_audited(&state, actor, filter).await?))
}

#[utoipa::path(post, path = "/api/v1/events/{id}/replay", tag = "events", params(("id" = i64, Path, description = "Event id")), responses((status = 200, description = "What the replay did and the event's new outcome", body = ReplayOne), (status = 404, description = "No such event", body = ErrorBody), (status = 409, description = "A rejected event is never replayed", body = ErrorBody)), security(("admin" = [])))]
pub(super) async fn replay_one(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    path: IdPath,
) -> Result<impl IntoResponse, ApiError> {
    let id = id(path)?;
    let store = state.gateway.store();
    let event = store.event(id).await?.ok_or(ApiError::NotFound("event"))?;
    let readable_later = event.summary.reason.as_deref().is_some_and(|r| {
        crate::domain::Reason::REPLAYABLE_REFUSALS
            .iter()
            .any(|readable| readable.as_str() == r)
    });
    if event.summary.outcome == "rejected" && !readable_later {
        return Err(ApiError::Conflict(
            "a rejected event failed authentication and is never replayed".into(),
        ));
    }
    let filter = ReplayFilter {
        event_id: Some(id),
        ..ReplayFilter::default()
    };
    let summary = replay_audited(&state, actor, filter).await?;
    let event = store.event(id).await?.ok_or(ApiError::NotFound("event"))?;
    Ok(Json(ReplayOne {
        summary,
        event: event.summary,
    }))
}

/// Replays `filter`'s stored events through the current handlers and records that in the
/// audit trail, in a task of its own: a client that hangs up (a proxy's or a browser's
/// timeout on a long replay) neither cuts the replay short, leaving part of its events
/// behind, nor leaves what it did unrecorded. A filter without an end ends now
/// ([`ReplayFilter::received_by`]), and the audit entry says so.
///
/// # Errors
/// The store's failure (pages committed before it stay done), or 503 when the replay's
/// task stopped.
pub(super) async fn replay_audited(
    state: &AppState,
    actor: Actor,
    filter: ReplayFilter,
) -> Result<ReplaySummary, ApiError> {
    let filter = filter.received_by(chrono::Utc::now());
    let state = state.clone();
    tokio::spawn(async move {
        let summary = state.gateway.replay(&filter, || {}).await?;
        audit_replay(&state, actor, &filter, &summary).await;
        Ok::<_, ApiError>(summary)
    })
    .await
    .map_err(|_| ApiError::Unavailable("the replay stopped; run it again".into()))?
}

/// Records a replay in the audit trail: its filter and what it did. The replay itself is
/// many transactions; an entry that fails to be written is logged, and the replay stands.
async fn audit_replay(
    state: &AppState,
    actor: Actor,
    filter: &ReplayFilter,
    summary: &ReplaySummary,
) {
    let after = serde_json::json!({
        "filter": {
            "event_id": filter.event_id,
            "partner": filter.partner,
            "outcome": filter.outcome,
            "reason": filter.reason,
            "from": filter.from,
            "to": filter.to,
            "unmapped_location": filter.unmapped_location,
        },
        "summary": summary,
    });
    // One event's replay names it as its subject; a replay of many is linked to each event
    // it re-ran.
    let recorded = match filter.event_id {
        Some(id) => {
            let subject = crate::store::audit::Subject::Event(id);
            state
                .operators
                .record_audit(actor, "event.replay", None, subject, after)
                .await
        }
        None => {
            state
                .operators
                .record_replay_audit(actor, after, summary.events.clone())
                .await
        }
    };
    if let Err(error) = recorded {
        tracing::error!(error = %error, "a replay was not recorded in the audit trail");
    }
}
