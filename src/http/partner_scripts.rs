//! Stored partners' scripts (integrators and admins): read, tried on a stored event before
//! saving (what `diarysync handler test` does with a file, on a payload the partner really
//! sent), and saved as a new version that every node runs within seconds.

use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::input::body;
use super::partner_settings::partner_name;
use crate::domain::Mapped;
use crate::domain::access::Actor;
use crate::error::{ApiError, ErrorBody};
use crate::gateway::registry::PartnerInfo;
use crate::partners::PartnerHandler;
use crate::partners::script::{self, ScriptHandler};
use crate::store::ReplayFilter;
use crate::store::partner_scripts::{NewScript, Saved, ScriptVersion};

/// Scripts tried at once on this node, and how long a try waits for its turn.
static TRIES: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);
const TRY_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Integrator routes.
pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/partners/{name}/script", get(script).put(save_script))
        .route("/partners/{name}/script/versions/{number}", get(version))
        .route("/partners/{name}/script/try", post(try_script))
}

/// A script to save checked: at most 256 KiB, compiles, defines `fn handle(event)`.
///
/// # Errors
/// 422 naming what is wrong, with the compiler's line and column.
pub(super) fn checked_script(source: String) -> Result<NewScript, ApiError> {
    let source = script::without_bom(source);
    let version = script::check_source(&source)
        .map_err(|e| ApiError::Unprocessable(format!("script: {e}")))?;
    Ok(NewScript { source, version })
}

/// A stored partner's script and its versions.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct ScriptView {
    partner: String,
    /// The partner's handler: its newest script runs only when this is `script`.
    handler: &'static str,
    /// The newest version, with its text; `null` before the first save.
    pub(super) current: Option<ScriptVersion>,
    /// Every version, newest first, without their text.
    versions: Vec<ScriptVersion>,
}

/// A stored partner's catalogue entry; 409 for the file's, 404 for none.
async fn stored_partner(state: &AppState, name: &str) -> Result<PartnerInfo, ApiError> {
    let partner = state
        .partner_sync
        .catalogue()
        .await?
        .into_iter()
        .find(|p| p.name == name)
        .ok_or(ApiError::NotFound("partner"))?;
    if partner.managed_by == "file" {
        return Err(ApiError::Conflict(format!(
            "partner {name} is managed by the configuration file: its script is a file of the \
             server's (try it with `diarysync handler test`)"
        )));
    }
    Ok(partner)
}

/// The partner's script page's data: its newest version with text, and every version.
///
/// # Errors
/// 404 for no such partner, 409 for the file's.
pub(super) async fn script_view(state: &AppState, name: &str) -> Result<ScriptView, ApiError> {
    let partner = stored_partner(state, name).await?;
    let registry = state.partner_sync.registry();
    let versions = registry.script_versions(name.to_owned()).await?;
    let current = match versions.first() {
        Some(newest) => {
            registry
                .script_version(name.to_owned(), newest.number)
                .await?
        }
        None => None,
    };
    Ok(ScriptView {
        partner: partner.name,
        handler: partner.handler,
        current,
        versions,
    })
}

#[utoipa::path(get, path = "/api/v1/partners/{name}/script", tag = "partners",
    params(("name" = String, Path, description = "Partner name")),
    responses((status = 200, description = "The partner's newest script with its text, and every version", body = ScriptView),
        (status = 404, description = "No such partner", body = ErrorBody),
        (status = 409, description = "The partner is managed by the configuration file", body = ErrorBody)),
    security(("admin" = [])))]
pub(super) async fn script(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let name = partner_name(path)?;
    Ok(Json(script_view(&state, &name).await?))
}

#[utoipa::path(get, path = "/api/v1/partners/{name}/script/versions/{number}", tag = "partners",
    params(("name" = String, Path, description = "Partner name"), ("number" = i64, Path, description = "Version number")),
    responses((status = 200, description = "One version, with its text", body = ScriptVersion),
        (status = 404, description = "No such partner or version", body = ErrorBody),
        (status = 409, description = "The partner is managed by the configuration file", body = ErrorBody)),
    security(("admin" = [])))]
pub(super) async fn version(
    State(state): State<AppState>,
    path: Result<Path<(String, i64)>, PathRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Ok(Path((name, number))) = path else {
        return Err(ApiError::BadRequest(
            "the path needs a partner name and a version number".into(),
        ));
    };
    stored_partner(&state, &name).await?;
    let version = state
        .partner_sync
        .registry()
        .script_version(name, number)
        .await?
        .ok_or(ApiError::NotFound("script version"))?;
    Ok(Json(version))
}

/// A script to save as the partner's next version.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ScriptInput {
    /// The Rhai text (`docs/SCRIPTING.md`): at most 256 KiB, must compile and define
    /// `fn handle(event)`.
    source: String,
}

/// What a save did.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct ScriptSaved {
    #[serde(flatten)]
    pub(super) saved: Saved,
    /// The content hash its events record as `handler_version`.
    version: String,
    partner: PartnerInfo,
}

/// Saves `source` as the partner's next version (nothing when it is its newest already) and
/// reloads the partner on this node; the others within [`crate::gateway::registry::PartnerSync::POLL`].
///
/// # Errors
/// 404, 409 (the file's partner) or 422 (the script does not compile).
pub(super) async fn save(
    state: &AppState,
    actor: Actor,
    name: &str,
    source: String,
) -> Result<ScriptSaved, ApiError> {
    stored_partner(state, name).await?;
    let script = checked_script(source)?;
    let version = script.version.clone();
    let saved = state
        .partner_sync
        .registry()
        .save_script(name.to_owned(), script, actor)
        .await?;
    state.partner_sync.poll().await?;
    Ok(ScriptSaved {
        saved,
        version,
        partner: stored_partner(state, name).await?,
    })
}

#[utoipa::path(put, path = "/api/v1/partners/{name}/script", tag = "partners",
    params(("name" = String, Path, description = "Partner name")), request_body = ScriptInput,
    responses((status = 201, description = "Saved as a new version: the partner runs it on every node within seconds (if its handler is `script`)", body = ScriptSaved),
        (status = 200, description = "The text was the newest version's already: nothing saved", body = ScriptSaved),
        (status = 404, description = "No such partner", body = ErrorBody),
        (status = 409, description = "The partner is managed by the configuration file", body = ErrorBody),
        (status = 422, description = "The script is too large, does not compile or defines no `fn handle(event)`", body = ErrorBody)),
    security(("admin" = [])))]
pub(super) async fn save_script(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    path: Result<Path<String>, PathRejection>,
    input: Result<Json<ScriptInput>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let name = partner_name(path)?;
    let input = body(input)?;
    let saved = save(&state, actor, &name, input.source).await?;
    let status = if saved.saved.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(saved)))
}

/// A script to try on a stored event: nothing is saved or applied.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct TryInput {
    /// The stored event to run it on: one of this partner's, authenticated and not purged.
    event_id: i64,
    /// The draft to try; none: the partner's newest saved version.
    source: Option<String>,
}

/// What a script made of a stored event.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct Tried {
    /// The content hash of the text tried (what its events would record).
    handler_version: Option<String>,
    /// The commands it produced (`apply`, `batch`), or `notice`, `ignore`, `fail`,
    /// `fetch`, `reject` with their reason and detail. Guests' personal data is redacted.
    #[schema(value_type = Object)]
    mapped: Mapped,
}

/// A try: the draft's result beside what the partner runs now, on one stored event.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct TryResult {
    event_id: i64,
    /// The partner the event was delivered to.
    event_partner: String,
    event_type: String,
    /// What the event is now: its stored outcome and reason.
    outcome: String,
    reason: Option<String>,
    /// The draft's (or the newest version's) result.
    tried: Tried,
    /// The partner's running handler on the same event, to compare; `null` when it takes
    /// no deliveries now.
    current: Option<Tried>,
    /// Whether the two map the event the same way.
    same_as_current: bool,
}

impl TryResult {
    /// What the draft made of the event.
    pub(super) fn mapped(&self) -> &Mapped {
        &self.tried.mapped
    }

    /// What the partner's running handler makes of it.
    pub(super) fn current_mapped(&self) -> Option<&Mapped> {
        self.current.as_ref().map(|c| &c.mapped)
    }
}

/// Runs a draft (or the newest version) of `name`'s script on stored event `event_id`.
///
/// # Errors
/// 404 for no such partner or event (or a purged or unauthenticated one), 409 for the
/// file's partner, 422 for a draft that does not compile.
pub(super) async fn try_on_event(
    state: &AppState,
    name: &str,
    event_id: i64,
    source: Option<String>,
) -> Result<TryResult, ApiError> {
    stored_partner(state, name).await?;
    let source = match source {
        Some(source) => source,
        None => script_view(state, name)
            .await?
            .current
            .and_then(|c| c.source)
            .ok_or_else(|| ApiError::Unprocessable(format!("partner {name} has no script")))?,
    };
    // Only this partner's events: what runs now for it is compared on what it was sent.
    let filter = ReplayFilter {
        event_id: Some(event_id),
        partner: Some(name.to_owned()),
        ..ReplayFilter::default()
    };
    let event = state
        .gateway
        .store()
        .replayable(&filter, 0, 1)
        .await?
        .into_iter()
        .next()
        .ok_or(ApiError::NotFound("event"))?;
    let gateway = Arc::clone(&state.gateway);
    let partner = name.to_owned();
    // Compiling and running a script is CPU work bounded by its limits (a draft may spin to
    // its operation limit), kept off the threads that answer deliveries, and a few at once:
    // operators trying scripts never take the cores deliveries need. The turn is held by
    // the work itself, so a client that hangs up does not free it while the work runs on.
    let turn = tokio::time::timeout(TRY_WAIT, TRIES.acquire())
        .await
        .ok()
        .and_then(Result::ok)
        .ok_or_else(|| {
            ApiError::Unavailable(
                "other scripts are being tried right now: try again in a moment".into(),
            )
        })?;
    tokio::task::spawn_blocking(move || {
        let _turn = turn;
        let draft = ScriptHandler::draft(&script::without_bom(source))
            .map_err(|e| ApiError::Unprocessable(format!("script: {e}")))?;
        let (mapped, handler_version) = gateway.try_stored(&event, &partner, &draft);
        let tried = Tried {
            handler_version,
            mapped,
        };
        let current = gateway.partner_handler(&partner).map(|(_, handler)| {
            let (mapped, handler_version) =
                gateway.try_stored(&event, &partner, handler.as_ref() as &dyn PartnerHandler);
            Tried {
                handler_version,
                mapped,
            }
        });
        let same_as_current = current.as_ref().is_some_and(|c| c.mapped == tried.mapped);
        Ok(TryResult {
            event_id: event.id,
            event_partner: event.partner,
            event_type: event.event_type,
            outcome: event.outcome,
            reason: event.reason,
            tried,
            current,
            same_as_current,
        })
    })
    .await
    .map_err(|e| {
        ApiError::Internal(crate::store::StoreError::Unsupported(format!(
            "trying the script: {e}"
        )))
    })?
}

#[utoipa::path(post, path = "/api/v1/partners/{name}/script/try", tag = "partners",
    params(("name" = String, Path, description = "Partner name")), request_body = TryInput,
    responses((status = 200, description = "What the script makes of the stored event, beside what the partner runs now; nothing is saved or applied", body = TryResult),
        (status = 404, description = "No such partner or event", body = ErrorBody),
        (status = 409, description = "The partner is managed by the configuration file", body = ErrorBody),
        (status = 422, description = "The draft is too large, does not compile or defines no `fn handle(event)`", body = ErrorBody),
        (status = 503, description = "Other scripts are being tried on this node: try again in a moment", body = ErrorBody)),
    security(("admin" = [])))]
pub(super) async fn try_script(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    input: Result<Json<TryInput>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let name = partner_name(path)?;
    let input = body(input)?;
    Ok(Json(
        try_on_event(&state, &name, input.event_id, input.source).await?,
    ))
}
