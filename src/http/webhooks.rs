//! Webhook subscriptions in the admin API: where the diary's messages are pushed, what became
//! of each message, and sending them again.

use axum::extract::Extension;

use super::access::audit_after;
use crate::domain::access::Actor;
use crate::store::audit::Subject;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::input::{IdPath, body, found, id, query, valid_filter};
use crate::domain::change::ChangeType;
use crate::error::{ApiError, ErrorBody};
use crate::store::{
    NewSubscription, ResendFilter, SubscriptionChanges, SubscriptionRecord, WebhookMessageRecord,
};
use crate::webhooks::{sign, target};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/webhooks", get(subscriptions).post(create_subscription))
        .route(
            "/webhooks/{id}",
            get(subscription)
                .patch(update_subscription)
                .delete(delete_subscription),
        )
        .route("/webhooks/{id}/messages", get(messages))
        .route("/webhooks/{id}/resend", post(resend))
}

/// Most venues or message types one subscription lists.
const MAX_LISTED: usize = 1_000;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct SubscriptionInput {
    /// `http` or `https`, no credentials, not in a denied address range.
    url: String,
    description: Option<String>,
    /// Message types to receive (`booking.paid`, ...); empty or left out: every type.
    #[serde(default)]
    event_types: Vec<String>,
    /// Venues to receive messages of; empty or left out: every venue.
    #[serde(default)]
    venues: Vec<i64>,
}

/// A new subscription with its secret, shown this once.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct CreatedSubscription {
    #[serde(flatten)]
    subscription: SubscriptionRecord,
    /// `whsec_…`: verify `webhook-signature` with it (any Standard Webhooks library). It is
    /// never shown again.
    secret: String,
}

fn valid_url(state: &AppState, url: &str) -> Result<String, ApiError> {
    target::check(url, &state.webhook_ranges)
        .map(|u| u.to_string())
        .map_err(|e| ApiError::Unprocessable(format!("url: {e}")))
}

fn valid_types(types: Vec<String>) -> Result<Vec<String>, ApiError> {
    if types.len() > MAX_LISTED {
        return Err(ApiError::Unprocessable(format!(
            "event_types lists at most {MAX_LISTED} types"
        )));
    }
    let mut known: Vec<String> = Vec::with_capacity(types.len());
    for name in types {
        let kind = ChangeType::parse(name.trim()).ok_or_else(|| {
            let names: Vec<&str> = ChangeType::ALL.iter().map(|t| t.as_str()).collect();
            ApiError::Unprocessable(format!(
                "event_types: {name:?} is not a message type; known: {}",
                names.join(", ")
            ))
        })?;
        if !known.iter().any(|k| k == kind.as_str()) {
            known.push(kind.as_str().to_owned());
        }
    }
    Ok(known)
}

fn valid_venues(mut venues: Vec<i64>) -> Result<Vec<i64>, ApiError> {
    if venues.len() > MAX_LISTED {
        return Err(ApiError::Unprocessable(format!(
            "venues lists at most {MAX_LISTED} venues"
        )));
    }
    venues.sort_unstable();
    venues.dedup();
    Ok(venues)
}

fn valid_description(description: Option<String>) -> Result<Option<String>, ApiError> {
    match description {
        Some(d) if d.chars().count() > 500 => Err(ApiError::Unprocessable(
            "description is at most 500 characters".into(),
        )),
        other => Ok(other),
    }
}

#[utoipa::path(post, path = "/api/v1/webhooks", tag = "webhooks", request_body = SubscriptionInput, responses((status = 201, description = "Subscribed; messages of changes committed from now on are sent. The secret is in this answer only", body = CreatedSubscription), (status = 422, description = "URL refused, or an unknown message type", body = ErrorBody)), security(("admin" = [])))]
pub(super) async fn create_subscription(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    input: Result<Json<SubscriptionInput>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let input = body(input)?;
    let url = valid_url(&state, &input.url)?;
    let secret = sign::new_secret()
        .map_err(|e| ApiError::Unavailable(format!("cannot make a secret now: {e}")))?;
    let new = NewSubscription {
        url,
        secret: secret.clone(),
        description: valid_description(input.description)?,
        event_types: valid_types(input.event_types)?,
        venues: valid_venues(input.venues)?,
    };
    let subscription = state.gateway.store().create_subscription(new).await?;
    let subject = Subject::Webhook(subscription.id);
    audit_after(
        &state,
        actor,
        "webhook.create",
        None,
        subject,
        trail(&subscription),
    )
    .await;
    Ok((
        StatusCode::CREATED,
        Json(CreatedSubscription {
            subscription,
            secret,
        }),
    ))
}

#[utoipa::path(get, path = "/api/v1/webhooks", tag = "webhooks", responses((status = 200, description = "Every subscription, without secrets", body = Vec<SubscriptionRecord>)), security(("admin" = [])))]
pub(super) async fn subscriptions(
    State(state): State<AppState>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(state.gateway.store().subscriptions().await?))
}

#[utoipa::path(get, path = "/api/v1/webhooks/{id}", tag = "webhooks", params(("id" = i64, Path, description = "Subscription id")), responses((status = 200, description = "The subscription, without its secret", body = SubscriptionRecord), (status = 404, description = "No such subscription", body = ErrorBody)), security(("admin" = [])))]
pub(super) async fn subscription(
    State(state): State<AppState>,
    path: IdPath,
) -> Result<impl IntoResponse, ApiError> {
    found(
        state.gateway.store().subscription(id(path)?).await?,
        "subscription",
    )
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct SubscriptionChangesInput {
    url: Option<String>,
    description: Option<String>,
    event_types: Option<Vec<String>>,
    venues: Option<Vec<i64>>,
    /// `true` enables it again (its failure cleared, its waiting messages sent); `false`
    /// stops sending (messages keep being queued).
    enabled: Option<bool>,
}

#[utoipa::path(patch, path = "/api/v1/webhooks/{id}", tag = "webhooks", params(("id" = i64, Path, description = "Subscription id")), request_body = SubscriptionChangesInput, responses((status = 200, description = "The subscription as changed", body = SubscriptionRecord), (status = 404, description = "No such subscription", body = ErrorBody), (status = 422, description = "URL refused, or an unknown message type", body = ErrorBody)), security(("admin" = [])))]
pub(super) async fn update_subscription(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    path: IdPath,
    input: Result<Json<SubscriptionChangesInput>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let id = id(path)?;
    let input = body(input)?;
    let changes = SubscriptionChanges {
        url: input.url.map(|u| valid_url(&state, &u)).transpose()?,
        description: valid_description(input.description)?,
        event_types: input.event_types.map(valid_types).transpose()?,
        venues: input.venues.map(valid_venues).transpose()?,
        enabled: input.enabled,
    };
    let changed = state
        .gateway
        .store()
        .update_subscription(id, changes)
        .await?;
    let subject = Subject::Webhook(id);
    audit_after(
        &state,
        actor,
        "webhook.change",
        None,
        subject,
        trail(&changed),
    )
    .await;
    Ok(Json(changed))
}

#[utoipa::path(delete, path = "/api/v1/webhooks/{id}", tag = "webhooks", params(("id" = i64, Path, description = "Subscription id")), responses((status = 204, description = "Deleted with its queued messages"), (status = 404, description = "No such subscription", body = ErrorBody)), security(("admin" = [])))]
pub(super) async fn delete_subscription(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    path: IdPath,
) -> Result<impl IntoResponse, ApiError> {
    let id = id(path)?;
    state.gateway.store().delete_subscription(id).await?;
    let subject = Subject::Webhook(id);
    let after = serde_json::json!({ "deleted": true });
    audit_after(&state, actor, "webhook.delete", None, subject, after).await;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct MessagesQuery {
    #[param(pattern = "^(pending|delivered|failed)$")]
    state: Option<String>,
    /// The next page: messages before this cursor.
    before: Option<i64>,
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
}

fn valid_state(state: Option<String>) -> Result<Option<String>, ApiError> {
    match state.as_deref() {
        None | Some("pending" | "delivered" | "failed") => Ok(state),
        Some(other) => Err(ApiError::BadRequest(format!(
            "state {other:?} is not pending, delivered or failed"
        ))),
    }
}

#[utoipa::path(get, path = "/api/v1/webhooks/{id}/messages", tag = "webhooks", params(("id" = i64, Path, description = "Subscription id"), MessagesQuery), responses((status = 200, description = "The subscription's messages, newest first, with their attempts", body = Vec<WebhookMessageRecord>), (status = 404, description = "No such subscription", body = ErrorBody)), security(("admin" = [])))]
pub(super) async fn messages(
    State(state): State<AppState>,
    path: IdPath,
    params: Result<Query<MessagesQuery>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let id = id(path)?;
    let params = query(params)?;
    let store = state.gateway.store();
    store
        .subscription(id)
        .await?
        .ok_or(ApiError::NotFound("subscription"))?;
    let messages = store
        .webhook_messages(
            id,
            valid_state(params.state)?,
            params.before,
            super::platform::page_limit(params.limit)?,
        )
        .await?;
    Ok(Json(messages))
}

#[derive(Deserialize, utoipa::ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct ResendInput {
    /// One message, by its id (`msg_…`).
    message_id: Option<String>,
    /// Only messages in this state: `failed` or `delivered` (default: both).
    #[schema(pattern = "^(delivered|failed)$")]
    state: Option<String>,
    /// Only messages made at or after.
    since: Option<DateTime<Utc>>,
}

/// How many messages were queued again.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct Resent {
    resent: u64,
}

#[utoipa::path(post, path = "/api/v1/webhooks/{id}/resend", tag = "webhooks", params(("id" = i64, Path, description = "Subscription id")), request_body = ResendInput, responses((status = 200, description = "The selected messages are sent again from now, as new attempts", body = Resent), (status = 404, description = "No such subscription", body = ErrorBody)), security(("admin" = [])))]
pub(super) async fn resend(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    path: IdPath,
    input: Result<Json<ResendInput>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let id = id(path)?;
    let input = body(input)?;
    if input.message_id.is_none() && input.state.is_none() && input.since.is_none() {
        return Err(ApiError::Unprocessable(
            "name what to resend: message_id, state or since".into(),
        ));
    }
    let seq = input
        .message_id
        .as_deref()
        .map(|m| {
            m.strip_prefix("msg_")
                .and_then(|n| n.parse::<i64>().ok())
                .ok_or_else(|| ApiError::Unprocessable(format!("{m:?} is not a message id")))
        })
        .transpose()?;
    let state_filter = match input.state.as_deref() {
        None | Some("delivered" | "failed") => input.state,
        Some(other) => {
            return Err(ApiError::Unprocessable(format!(
                "state {other:?} is not delivered or failed"
            )));
        }
    };
    let store = state.gateway.store();
    store
        .subscription(id)
        .await?
        .ok_or(ApiError::NotFound("subscription"))?;
    let filter = ResendFilter {
        subscription_id: id,
        seq,
        state: state_filter,
        since: valid_filter(input.since, "since")?,
    };
    let resent = store.resend_webhooks(filter).await?;
    let after = serde_json::json!({ "resent": resent });
    audit_after(
        &state,
        actor,
        "webhook.resend",
        None,
        Subject::Webhook(id),
        after,
    )
    .await;
    Ok(Json(Resent { resent }))
}

/// What the audit trail keeps of a subscription: where it sends (without the URL's query,
/// which may hold a credential), what, and whether it is on.
fn trail(subscription: &SubscriptionRecord) -> serde_json::Value {
    let url = url::Url::parse(&subscription.url).map_or_else(
        |_| String::new(),
        |mut url| {
            url.set_query(None);
            let _ = url.set_password(None);
            url.to_string()
        },
    );
    serde_json::json!({
        "url": url,
        "event_types": subscription.event_types,
        "venues": subscription.venues,
        "enabled": subscription.enabled,
    })
}
