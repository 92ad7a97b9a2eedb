//! Partners and venues' partner locations, onboarded without a restart (integrators and
//! admins): partners kept in the database with their secrets sealed at rest, rotated with
//! two secrets valid at once; a location mapped to a venue and the events it sent while
//! unmapped replayed into the diary.

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::access::visible;
use super::admin::known_partner;
use super::input::{IdPath, body, id, identifier, valid_time};
use crate::domain::access::Actor;
use crate::error::{ApiError, ErrorBody};
use crate::gateway::ReplaySummary;
use crate::gateway::registry::{PartnerInfo, seal_context};
use crate::partners::script::SavedScript;
use crate::store::partner_registry::NewSecret;
use crate::store::partner_scripts::NewScript;
use crate::store::{NewLocation, ReplayFilter, VenueRecord};

/// Integrator routes.
pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/partners", get(partners).post(create_partner))
        .route("/partners/{name}", get(partner).patch(update_partner))
        .route("/partners/{name}/secrets", post(add_secret))
        .route("/partners/{name}/secrets/{id}", delete(retire_secret))
        .route("/venues/{id}/locations", post(add_location))
}

fn sync_failed(error: crate::store::StoreError) -> ApiError {
    ApiError::from(error)
}

async fn catalogue(state: &AppState) -> Result<Vec<PartnerInfo>, ApiError> {
    state.partner_sync.catalogue().await.map_err(sync_failed)
}

async fn info(state: &AppState, name: &str) -> Result<PartnerInfo, ApiError> {
    catalogue(state)
        .await?
        .into_iter()
        .find(|p| p.name == name)
        .ok_or(ApiError::NotFound("partner"))
}

#[utoipa::path(get, path = "/api/v1/partners", tag = "partners",
    responses((status = 200, description = "Every partner: the configuration file's (`managed_by: file`) and the database's, with their secrets' labels and windows, never the secrets", body = Vec<PartnerInfo>)),
    security(("admin" = [])))]
pub(super) async fn partners(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(catalogue(&state).await?))
}

#[utoipa::path(get, path = "/api/v1/partners/{name}", tag = "partners",
    params(("name" = String, Path, description = "Partner name")),
    responses((status = 200, description = "The partner", body = PartnerInfo), (status = 404, description = "No such partner", body = ErrorBody)),
    security(("admin" = [])))]
pub(super) async fn partner(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let name = partner_name(path)?;
    Ok(Json(info(&state, &name).await?))
}

pub(super) fn partner_name(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    let Ok(Path(name)) = path else {
        return Err(ApiError::BadRequest("the path needs a partner name".into()));
    };
    Ok(name)
}

/// A partner to keep in the database: the keys of a `[[partners]]` table of the
/// configuration file (`handler`, `auth` without its secret, `status_map`,
/// `rate_limit_per_second`, `rate_limit_burst`, `on_handler_error`, `undeclared_charset`),
/// and its first secret.
#[derive(Deserialize, utoipa::ToSchema)]
pub(super) struct PartnerInput {
    /// The `{partnerName}` of its webhook URLs: ASCII letters, digits, `-`, `_`, `.`.
    name: String,
    /// Its first secret (the signing key, token, password or API key its scheme takes),
    /// labelled `current`; sealed at rest, never shown again.
    secret: Option<String>,
    /// For `handler: "script"`: the Rhai script (`docs/SCRIPTING.md`), saved as its version
    /// 1; at most 256 KiB, must compile and define `fn handle(event)`.
    script_source: Option<String>,
    /// The rest of the partner's definition, as in the configuration file.
    #[serde(flatten)]
    #[schema(value_type = Object)]
    definition: serde_json::Map<String, serde_json::Value>,
}

/// The stored form of a definition: validated as the file's are (with a placeholder for the
/// secret, or `secret`), with its name.
fn checked_definition(
    name: &str,
    mut definition: serde_json::Map<String, serde_json::Value>,
    secret: Option<&SecretString>,
    script: Option<&NewScript>,
) -> Result<serde_json::Value, ApiError> {
    if matches!(name, "." | "..") {
        return Err(ApiError::Unprocessable(format!(
            "partner name {name:?} is not a name"
        )));
    }
    if definition
        .get("name")
        .is_some_and(|given| given.as_str() != Some(name))
    {
        return Err(ApiError::Unprocessable(
            "a partner is not renamed: its name is in its webhook URLs; create a new one".into(),
        ));
    }
    if definition
        .get("auth")
        .and_then(|auth| auth.get("scheme"))
        .and_then(serde_json::Value::as_str)
        == Some("none")
    {
        return Err(ApiError::Unprocessable(
            "a partner kept in the database must authenticate its deliveries (scheme \"none\" \
             is for the configuration file only)"
                .into(),
        ));
    }
    definition.insert("name".into(), serde_json::Value::String(name.to_owned()));
    let definition = serde_json::Value::Object(definition);
    let placeholder = SecretString::from("placeholder-secret-for-validation".to_owned());
    let script = script.map(|script| {
        std::sync::Arc::new(SavedScript {
            number: 0,
            source: script.source.clone(),
        })
    });
    crate::config::stored_partner(&definition, Some(secret.unwrap_or(&placeholder)), script)
        .map_err(|e| ApiError::Unprocessable(e.to_string()))?;
    Ok(definition)
}

async fn sealed(
    state: &AppState,
    partner: &str,
    label: &str,
    secret: &SecretString,
) -> Result<String, ApiError> {
    let sealer = state.partner_sync.sealer().ok_or_else(|| {
        ApiError::Unprocessable(
            "this node has no secret_key (secret_key_env): partners' secrets are sealed at rest \
             with it, so none can be stored"
                .into(),
        )
    })?;
    // A node whose key is not the one the stored secrets were sealed with must not seal
    // more under it: no other node could open them.
    let stored = state.partner_sync.registry().stored_partners().await?;
    if let Some((owner, sample)) = stored
        .iter()
        .find_map(|p| p.secrets.first().map(|s| (p.name.as_str(), s)))
        && sealer
            .open(&sample.sealed, &seal_context(owner, &sample.label))
            .is_err()
    {
        return Err(ApiError::Unavailable(
            "this node's secret_key does not open the secrets already stored: every node must \
             have the same key"
                .into(),
        ));
    }
    sealer
        .seal(secret, &seal_context(partner, label))
        .map_err(|e| ApiError::Unavailable(e.to_string()))
}

fn valid_secret(secret: &str) -> Result<SecretString, ApiError> {
    if secret.trim().len() < 8 || secret.len() > 4096 || secret.chars().any(char::is_control) {
        return Err(ApiError::Unprocessable(
            "a secret has 8 to 4096 characters, without control characters".into(),
        ));
    }
    Ok(SecretString::from(secret.to_owned()))
}

#[utoipa::path(post, path = "/api/v1/partners", tag = "partners", request_body = PartnerInput,
    responses((status = 201, description = "Created; every node takes its deliveries within seconds", body = PartnerInfo),
        (status = 409, description = "A partner of that name exists (in the file or the database)", body = ErrorBody),
        (status = 422, description = "Invalid definition, or no secret_key to seal its secret with", body = ErrorBody)),
    security(("admin" = [])))]
pub(super) async fn create_partner(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    input: Result<Json<PartnerInput>, JsonRejection>,
) -> Result<(StatusCode, impl IntoResponse), ApiError> {
    let input = body(input)?;
    let name = input.name.clone();
    create(
        &state,
        actor,
        NewPartner {
            name: input.name,
            secret: input.secret,
            script_source: input.script_source,
            definition: input.definition,
        },
    )
    .await?;
    Ok((StatusCode::CREATED, Json(info(&state, &name).await?)))
}

/// A partner to create, from the API or the pages.
pub(super) struct NewPartner {
    pub name: String,
    pub secret: Option<String>,
    /// A script partner's first script.
    pub script_source: Option<String>,
    pub definition: serde_json::Map<String, serde_json::Value>,
}

/// Creates a partner kept in the database, its first secret (`current`) sealed and a script
/// partner's script saved as its version 1.
///
/// # Errors
/// 409 for a name the file uses or that exists; 422 for an invalid definition, secret or
/// script, or no `secret_key` to seal the secret with.
pub(super) async fn create(
    state: &AppState,
    actor: Actor,
    partner: NewPartner,
) -> Result<(), ApiError> {
    let NewPartner {
        name,
        secret,
        script_source,
        definition,
    } = partner;
    if state.gateway.is_file_partner(&name) {
        return Err(ApiError::Conflict(format!(
            "partner {name} is defined in the configuration file"
        )));
    }
    // Names that differ only in case are one partner to the people who read them (and in
    // a case-insensitive URL rewrite): `ACME` beside `acme` is a mistake, not a partner.
    if let Some(other) = catalogue(state)
        .await?
        .into_iter()
        .find(|p| p.name != name && p.name.eq_ignore_ascii_case(&name))
    {
        return Err(ApiError::Conflict(format!(
            "partner {} exists: names that differ only in case are refused",
            other.name
        )));
    }
    let secret = secret.as_deref().map(valid_secret).transpose()?;
    let script = script_source
        .map(super::partner_scripts::checked_script)
        .transpose()?;
    let definition = checked_definition(&name, definition, secret.as_ref(), script.as_ref())?;
    let secret = match &secret {
        Some(secret) => Some(NewSecret {
            label: "current".into(),
            sealed: sealed(state, &name, "current", secret).await?,
            valid_from: None,
            valid_until: None,
        }),
        None => None,
    };
    state
        .partner_sync
        .registry()
        .create_partner(name, definition, secret, script, actor)
        .await?;
    state.partner_sync.poll().await.map_err(sync_failed)
}

/// Adds a secret to a stored partner, valid at once until retired (the pages' rotation).
///
/// # Errors
/// As [`add_secret`].
pub(super) async fn rotate(
    state: &AppState,
    actor: Actor,
    name: String,
    secret: String,
    label: Option<String>,
) -> Result<i64, ApiError> {
    let input = SecretInput {
        secret,
        label,
        valid_from: None,
        valid_until: None,
    };
    store_secret(state, actor, name, input).await
}

/// Changes to a stored partner: its definition (whole, as at creation) or whether it takes
/// deliveries.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct PartnerChangesInput {
    /// `false` holds its deliveries (503 `partner_unavailable`, with `Retry-After`: the
    /// partner retries them) until enabled again.
    enabled: Option<bool>,
    /// The whole new definition, as at creation (without `name` and `secret`).
    #[schema(value_type = Option<Object>)]
    definition: Option<serde_json::Map<String, serde_json::Value>>,
}

#[utoipa::path(patch, path = "/api/v1/partners/{name}", tag = "partners",
    params(("name" = String, Path, description = "Partner name")), request_body = PartnerChangesInput,
    responses((status = 200, description = "The partner as changed", body = PartnerInfo),
        (status = 404, description = "No such partner in the database", body = ErrorBody),
        (status = 409, description = "The partner is managed by the configuration file", body = ErrorBody),
        (status = 422, description = "Invalid definition", body = ErrorBody)),
    security(("admin" = [])))]
pub(super) async fn update_partner(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    path: Result<Path<String>, PathRejection>,
    input: Result<Json<PartnerChangesInput>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let name = partner_name(path)?;
    let input = body(input)?;
    if state.gateway.is_file_partner(&name) {
        return Err(ApiError::Conflict(format!(
            "partner {name} is managed by the configuration file"
        )));
    }
    // A partner switched to `script` runs its newest saved script: it must have one.
    let script = state
        .partner_sync
        .registry()
        .stored_partners()
        .await?
        .into_iter()
        .find(|p| p.name == name)
        .and_then(|p| p.script)
        .and_then(|s| {
            Some(NewScript {
                source: s.source?,
                version: s.version,
            })
        });
    let definition = input
        .definition
        .map(|d| checked_definition(&name, d, None, script.as_ref()))
        .transpose()?;
    state
        .partner_sync
        .registry()
        .update_partner(name.clone(), definition, input.enabled, actor)
        .await?;
    Ok(Json(info(&state, &name).await?))
}

/// A secret to add: the next one, during a rotation.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct SecretInput {
    secret: String,
    /// Its name (`next` unless given): letters, digits, `-`, `_`, `.`.
    label: Option<String>,
    /// Accepted from this instant on; none: at once.
    valid_from: Option<DateTime<Utc>>,
    /// Accepted until this instant; none: until retired.
    valid_until: Option<DateTime<Utc>>,
}

/// A secret as stored: never the secret.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct SecretAdded {
    id: i64,
    partner: PartnerInfo,
}

#[utoipa::path(post, path = "/api/v1/partners/{name}/secrets", tag = "partners",
    params(("name" = String, Path, description = "Partner name")), request_body = SecretInput,
    responses((status = 201, description = "Added: deliveries signed with it are accepted within its window, beside the others", body = SecretAdded),
        (status = 404, description = "No such partner in the database", body = ErrorBody),
        (status = 422, description = "Invalid secret or window, or no secret_key", body = ErrorBody)),
    security(("admin" = [])))]
pub(super) async fn add_secret(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    path: Result<Path<String>, PathRejection>,
    input: Result<Json<SecretInput>, JsonRejection>,
) -> Result<(StatusCode, impl IntoResponse), ApiError> {
    let name = partner_name(path)?;
    let input = body(input)?;
    let id = store_secret(&state, actor, name.clone(), input).await?;
    Ok((
        StatusCode::CREATED,
        Json(SecretAdded {
            id,
            partner: info(&state, &name).await?,
        }),
    ))
}

async fn store_secret(
    state: &AppState,
    actor: Actor,
    name: String,
    input: SecretInput,
) -> Result<i64, ApiError> {
    let secret = valid_secret(&input.secret)?;
    let label = input.label.unwrap_or_else(|| "next".to_owned());
    if label.is_empty()
        || label.len() > 40
        || !label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(ApiError::Unprocessable(
            "label: up to 40 ASCII letters, digits, '-', '_' or '.'".into(),
        ));
    }
    let valid_from = input
        .valid_from
        .map(|t| valid_time(t, "valid_from"))
        .transpose()?;
    let valid_until = input
        .valid_until
        .map(|t| valid_time(t, "valid_until"))
        .transpose()?;
    if let (Some(from), Some(until)) = (valid_from, valid_until)
        && until <= from
    {
        return Err(ApiError::Unprocessable(
            "valid_until must be after valid_from".into(),
        ));
    }
    if valid_until.is_some_and(|until| until <= Utc::now()) {
        return Err(ApiError::Unprocessable(
            "valid_until is past: the secret would never verify anything".into(),
        ));
    }
    let new = NewSecret {
        sealed: sealed(state, &name, &label, &secret).await?,
        label,
        valid_from,
        valid_until,
    };
    let id = state
        .partner_sync
        .registry()
        .add_secret(name, new, actor)
        .await?;
    state.partner_sync.poll().await.map_err(sync_failed)?;
    Ok(id)
}

#[utoipa::path(delete, path = "/api/v1/partners/{name}/secrets/{id}", tag = "partners",
    params(("name" = String, Path, description = "Partner name"), ("id" = i64, Path, description = "Secret id")),
    responses((status = 204, description = "Retired: deliveries signed with it are refused from now on"),
        (status = 404, description = "No such live secret of this partner", body = ErrorBody),
        (status = 409, description = "Retiring it would leave a moment, from now on, when the partner has no valid secret (its last one, or a next one not valid yet or ending sooner)", body = ErrorBody)),
    security(("admin" = [])))]
pub(super) async fn retire_secret(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    path: Result<Path<(String, i64)>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let Ok(Path((name, id))) = path else {
        return Err(ApiError::BadRequest(
            "the path needs a partner name and a whole-number secret id".into(),
        ));
    };
    state
        .partner_sync
        .registry()
        .retire_secret(name, id, actor)
        .await?;
    state.partner_sync.poll().await.map_err(sync_failed)?;
    Ok(StatusCode::NO_CONTENT)
}

/// A partner location to map to the venue.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct LocationMapInput {
    partner: String,
    location_id: String,
    #[serde(default = "yes")]
    enabled: bool,
    /// Replay the events this location sent while no venue owned it (default `true`).
    #[serde(default = "yes")]
    replay: bool,
}

fn yes() -> bool {
    true
}

/// The venue with its new location, and what replaying the location's events did.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct LocationMapped {
    venue: VenueRecord,
    replay: Option<ReplaySummary>,
}

#[utoipa::path(post, path = "/api/v1/venues/{id}/locations", tag = "venues",
    params(("id" = i64, Path, description = "Venue id")), request_body = LocationMapInput,
    responses((status = 201, description = "Mapped; with `replay`, the events it sent while unmapped were replayed into the diary", body = LocationMapped),
        (status = 404, description = "No such venue", body = ErrorBody),
        (status = 409, description = "The location belongs to a venue already", body = ErrorBody),
        (status = 422, description = "Unknown partner or invalid location id", body = ErrorBody)),
    security(("admin" = [])))]
pub(super) async fn add_location(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    path: IdPath,
    input: Result<Json<LocationMapInput>, JsonRejection>,
) -> Result<(StatusCode, impl IntoResponse), ApiError> {
    let venue_id = id(path)?;
    visible(&actor, venue_id, "venue")?;
    let input = body(input)?;
    known_partner(&state, &input.partner)?;
    identifier(&input.location_id, "location_id")?;
    if input.location_id.trim().is_empty() {
        return Err(ApiError::Unprocessable(
            "location_id must not be empty".into(),
        ));
    }
    let (_, replay) = map_location(
        &state,
        actor,
        MapTo::Venue(venue_id),
        input.partner,
        input.location_id,
        input.enabled,
        input.replay,
    )
    .await?;
    let venue = state
        .gateway
        .store()
        .venue(venue_id)
        .await?
        .ok_or(ApiError::NotFound("venue"))?;
    Ok((StatusCode::CREATED, Json(LocationMapped { venue, replay })))
}

/// Where a location is mapped to.
pub(super) enum MapTo {
    Venue(i64),
    /// A venue made with the mapping (its `locations` are set here).
    NewVenue(crate::store::NewVenue),
}

/// Maps the location and, with `replay`, replays exactly the events it sent while no venue
/// owned it (audited as the mapping and the replay). Returns the venue's id and the replay.
///
/// # Errors
/// The store's, as [`ApiError`].
pub(super) async fn map_location(
    state: &AppState,
    actor: Actor,
    venue: MapTo,
    partner: String,
    location_id: String,
    enabled: bool,
    replay: bool,
) -> Result<(i64, Option<ReplaySummary>), ApiError> {
    // Partners' location ids arrive trimmed (`Mapped::vetted`): a mapping must be too, or it
    // never matches.
    let location_id = location_id.trim().to_owned();
    let location = NewLocation {
        partner: partner.clone(),
        location_id: location_id.clone(),
        enabled,
    };
    let store = state.gateway.store();
    let venue_id = match venue {
        MapTo::Venue(venue_id) => {
            store
                .add_location(venue_id, location, actor.clone())
                .await?;
            venue_id
        }
        // The venue and its location in one transaction: a location another venue owns (a
        // form sent twice) leaves no venue behind.
        MapTo::NewVenue(mut new) => {
            new.locations = vec![location];
            store.create_venue(new, actor.clone()).await?.id
        }
    };
    // Replaying into a switched-off mapping would only mark the events disabled, and a later
    // mapping would no longer find them.
    if !replay || !enabled {
        return Ok((venue_id, None));
    }
    let filter = ReplayFilter {
        partner: Some(partner),
        unmapped_location: Some(location_id),
        ..ReplayFilter::default()
    };
    let summary = super::events::replay_audited(state, actor, filter).await?;
    Ok((venue_id, Some(summary)))
}
