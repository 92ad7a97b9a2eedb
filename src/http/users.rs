//! Operators' accounts over the API: users (admins only), one's own personal tokens, and the
//! audit trail (each actor reads the entries of the venues they see).

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{delete, get};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::access::{digest_hex, new_token};
use super::input::{IdPath, body, found, id, query, valid_filter, valid_time};
use crate::accounts::{self, CredentialError};
use crate::domain::access::{Actor, Role};
use crate::error::{ApiError, ErrorBody};
use crate::store::audit::{AuditFilter, AuditRecord};
use crate::store::operators::{NewToken, NewUser, TokenRecord, UserChanges, UserRecord};

/// Routes every signed-in actor has: themselves, their tokens, the audit trail.
pub(super) fn own_router() -> Router<AppState> {
    Router::new()
        .route("/me", get(me))
        .route("/me/tokens", get(my_tokens).post(create_my_token))
        .route("/me/tokens/{id}", delete(revoke_my_token))
        .route("/audit", get(audit))
}

/// Admin routes: every user and their tokens.
pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/users", get(users).post(create_user))
        .route("/users/{id}", get(user).patch(update_user))
        .route(
            "/users/{id}/tokens",
            get(user_tokens).post(create_user_token),
        )
        .route("/users/{id}/tokens/{token}", delete(revoke_user_token))
}

fn credential(error: CredentialError) -> ApiError {
    match error {
        CredentialError::Hash => ApiError::Internal(crate::store::StoreError::Unsupported(
            "the password could not be hashed".into(),
        )),
        other => ApiError::Unprocessable(other.to_string()),
    }
}

/// Hashes `password` off the async runtime, within the node's bound on password work.
async fn hash(state: &AppState, password: String) -> Result<String, ApiError> {
    state
        .passwords
        .hash(password)
        .await
        .map_err(|busy| ApiError::Unavailable(busy.to_string()))?
        .map_err(credential)
}

/// A venue role needs venues; other roles see every venue and take none.
fn valid_venues(role: Role, venues: &[i64]) -> Result<(), ApiError> {
    match (role.is_venue_scoped(), venues.is_empty()) {
        (true, true) => Err(ApiError::Unprocessable(
            "a venue_manager needs at least one venue".into(),
        )),
        (false, false) => Err(ApiError::Unprocessable(format!(
            "the {role} role sees every venue; give venues to venue_manager users only"
        ))),
        _ => Ok(()),
    }
}

fn valid_user_name(name: &str) -> Result<(), ApiError> {
    if name.trim().is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(ApiError::Unprocessable(
            "name must be 1 to 200 characters, without control characters".into(),
        ));
    }
    Ok(())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct UserInput {
    name: String,
    email: String,
    #[schema(pattern = "^(admin|integrator|venue_manager)$")]
    role: String,
    /// The venues a `venue_manager` sees (required for that role, refused for others).
    #[serde(default)]
    venues: Vec<i64>,
    /// At least 8 characters; without one the user cannot log in to the pages until it is
    /// set (personal tokens still work).
    #[schema(min_length = 8, max_length = 1024)]
    password: Option<String>,
}

fn parse_role(role: &str) -> Result<Role, ApiError> {
    role.parse()
        .map_err(|e: crate::domain::access::UnknownRole| ApiError::Unprocessable(e.to_string()))
}

#[utoipa::path(post, path = "/api/v1/users", tag = "users", request_body = UserInput,
    responses((status = 201, description = "Created", body = UserRecord),
        (status = 404, description = "An unknown venue", body = ErrorBody),
        (status = 409, description = "The e-mail is taken", body = ErrorBody),
        (status = 422, description = "Invalid user", body = ErrorBody)),
    security(("admin" = [])))]
pub(super) async fn create_user(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    input: Result<Json<UserInput>, JsonRejection>,
) -> Result<(StatusCode, impl IntoResponse), ApiError> {
    let input = body(input)?;
    valid_user_name(&input.name)?;
    let email = accounts::normalise_email(&input.email).map_err(credential)?;
    let role = parse_role(&input.role)?;
    valid_venues(role, &input.venues)?;
    let password_hash = match input.password {
        Some(password) => Some(hash(&state, password).await?),
        None => None,
    };
    let new = NewUser {
        name: input.name.trim().to_owned(),
        email,
        role,
        venues: input.venues,
        password_hash,
    };
    let user = state.operators.create_user(new, actor).await?;
    Ok((StatusCode::CREATED, Json(user)))
}

#[utoipa::path(get, path = "/api/v1/users", tag = "users",
    responses((status = 200, description = "Every user, by id", body = Vec<UserRecord>)),
    security(("admin" = [])))]
pub(super) async fn users(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(state.operators.users().await?))
}

#[utoipa::path(get, path = "/api/v1/users/{id}", tag = "users",
    params(("id" = i64, Path, description = "User id")),
    responses((status = 200, description = "The user", body = UserRecord),
        (status = 404, description = "No such user", body = ErrorBody)),
    security(("admin" = [])))]
pub(super) async fn user(
    State(state): State<AppState>,
    path: IdPath,
) -> Result<impl IntoResponse, ApiError> {
    found(state.operators.user(id(path)?).await?, "user")
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct UserChangesInput {
    name: Option<String>,
    #[schema(pattern = "^(admin|integrator|venue_manager)$")]
    role: Option<String>,
    venues: Option<Vec<i64>>,
    /// Disabling a user ends their sessions and stops their tokens at once, on every node.
    disabled: Option<bool>,
    /// A new password ends the user's sessions.
    #[schema(min_length = 8, max_length = 1024)]
    password: Option<String>,
}

#[utoipa::path(patch, path = "/api/v1/users/{id}", tag = "users",
    params(("id" = i64, Path, description = "User id")), request_body = UserChangesInput,
    responses((status = 200, description = "The user as changed", body = UserRecord),
        (status = 404, description = "No such user or venue", body = ErrorBody),
        (status = 422, description = "Invalid change", body = ErrorBody)),
    security(("admin" = [])))]
pub(super) async fn update_user(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    path: IdPath,
    input: Result<Json<UserChangesInput>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let id = id(path)?;
    let input = body(input)?;
    let current = state
        .operators
        .user(id)
        .await?
        .ok_or(ApiError::NotFound("user"))?;
    input.name.as_deref().map(valid_user_name).transpose()?;
    let role = input.role.as_deref().map(parse_role).transpose()?;
    let venues_after = match (&input.venues, role) {
        (Some(venues), _) => venues.clone(),
        // A role leaving venue_manager drops its venues; one joining it needs them.
        (None, Some(role)) if !role.is_venue_scoped() => Vec::new(),
        (None, _) => current.venues.clone(),
    };
    valid_venues(role.unwrap_or(current.role), &venues_after)?;
    let venues = (venues_after != current.venues).then_some(venues_after);
    let password_hash = match input.password {
        Some(password) => Some(hash(&state, password).await?),
        None => None,
    };
    let changes = UserChanges {
        name: input.name.map(|n| n.trim().to_owned()),
        role,
        venues,
        disabled: input.disabled,
        password_hash,
    };
    Ok(Json(state.operators.update_user(id, changes, actor).await?))
}

/// Who the request acts as.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct MeRecord {
    /// The user's e-mail, or `admin token`.
    actor: String,
    #[schema(value_type = String, example = "venue_manager")]
    role: Role,
    /// The venues the actor sees; `null`: every venue.
    venues: Option<Vec<i64>>,
    /// The user, unless this is the configuration's admin token.
    user: Option<UserRecord>,
}

#[utoipa::path(get, path = "/api/v1/me", tag = "users",
    responses((status = 200, description = "Who this token acts as", body = MeRecord)),
    security(("admin" = [])))]
pub(super) async fn me(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
) -> Result<impl IntoResponse, ApiError> {
    let user = match actor.user_id {
        Some(id) => state.operators.user(id).await?,
        None => None,
    };
    Ok(Json(MeRecord {
        venues: actor.venue_limit(),
        actor: actor.name,
        role: actor.role,
        user,
    }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct TokenInput {
    /// What the token is for, e.g. `reconciliation script`.
    name: String,
    /// When it stops working; none: until revoked.
    expires_at: Option<DateTime<Utc>>,
}

/// A token just created: the only time it is shown.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct NewTokenRecord {
    /// Send as `Authorization: Bearer <token>`. Shown once; store it now.
    token: String,
    #[serde(flatten)]
    record: TokenRecord,
}

fn own_id(actor: &Actor) -> Result<i64, ApiError> {
    actor.user_id.ok_or_else(|| {
        ApiError::Unprocessable(
            "the configuration's admin token is not a user and has no personal tokens; \
             create a user (POST /api/v1/users) and give them tokens"
                .into(),
        )
    })
}

async fn issue_token(
    state: &AppState,
    actor: Actor,
    user_id: i64,
    input: TokenInput,
) -> Result<(StatusCode, Json<NewTokenRecord>), ApiError> {
    let name = input.name.trim().to_owned();
    if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(ApiError::Unprocessable(
            "name must be 1 to 200 characters, without control characters".into(),
        ));
    }
    let expires_at = input
        .expires_at
        .map(|t| valid_time(t, "expires_at"))
        .transpose()?;
    if expires_at.is_some_and(|t| t <= Utc::now()) {
        return Err(ApiError::Unprocessable(
            "expires_at must be in the future".into(),
        ));
    }
    let token = new_token().map_err(|_| {
        ApiError::Internal(crate::store::StoreError::Unsupported(
            "no random source".into(),
        ))
    })?;
    let new = NewToken {
        user_id,
        name,
        token_hash: digest_hex(&token),
        prefix: token.chars().take(10).collect(),
        expires_at,
    };
    let record = state.operators.create_token(new, actor).await?;
    Ok((StatusCode::CREATED, Json(NewTokenRecord { token, record })))
}

#[utoipa::path(get, path = "/api/v1/me/tokens", tag = "users",
    responses((status = 200, description = "This user's tokens (never the tokens themselves)", body = Vec<TokenRecord>),
        (status = 422, description = "The configuration's admin token is not a user", body = ErrorBody)),
    security(("admin" = [])))]
pub(super) async fn my_tokens(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(state.operators.tokens(own_id(&actor)?).await?))
}

#[utoipa::path(post, path = "/api/v1/me/tokens", tag = "users", request_body = TokenInput,
    responses((status = 201, description = "The token, shown this once, with its record", body = NewTokenRecord),
        (status = 422, description = "Invalid token request, or the admin token asked", body = ErrorBody)),
    security(("admin" = [])))]
pub(super) async fn create_my_token(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    input: Result<Json<TokenInput>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let input = body(input)?;
    let user_id = own_id(&actor)?;
    issue_token(&state, actor, user_id, input).await
}

#[utoipa::path(delete, path = "/api/v1/me/tokens/{id}", tag = "users",
    params(("id" = i64, Path, description = "Token id")),
    responses((status = 204, description = "Revoked"), (status = 404, description = "No such token of this user", body = ErrorBody),
        (status = 422, description = "The configuration's admin token is not a user", body = ErrorBody)),
    security(("admin" = [])))]
pub(super) async fn revoke_my_token(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    path: IdPath,
) -> Result<StatusCode, ApiError> {
    let token = id(path)?;
    let user_id = own_id(&actor)?;
    state.operators.revoke_token(user_id, token, actor).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/users/{id}/tokens", tag = "users",
    params(("id" = i64, Path, description = "User id")),
    responses((status = 200, description = "The user's tokens", body = Vec<TokenRecord>), (status = 404, description = "No such user", body = ErrorBody)),
    security(("admin" = [])))]
pub(super) async fn user_tokens(
    State(state): State<AppState>,
    path: IdPath,
) -> Result<impl IntoResponse, ApiError> {
    let id = id(path)?;
    state
        .operators
        .user(id)
        .await?
        .ok_or(ApiError::NotFound("user"))?;
    Ok(Json(state.operators.tokens(id).await?))
}

#[utoipa::path(post, path = "/api/v1/users/{id}/tokens", tag = "users",
    params(("id" = i64, Path, description = "User id")), request_body = TokenInput,
    responses((status = 201, description = "The token, shown this once", body = NewTokenRecord), (status = 404, description = "No such user", body = ErrorBody)),
    security(("admin" = [])))]
pub(super) async fn create_user_token(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    path: IdPath,
    input: Result<Json<TokenInput>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let user_id = id(path)?;
    let input = body(input)?;
    issue_token(&state, actor, user_id, input).await
}

#[utoipa::path(delete, path = "/api/v1/users/{id}/tokens/{token}", tag = "users",
    params(("id" = i64, Path, description = "User id"), ("token" = i64, Path, description = "Token id")),
    responses((status = 204, description = "Revoked"), (status = 404, description = "No such token of this user", body = ErrorBody)),
    security(("admin" = [])))]
pub(super) async fn revoke_user_token(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    path: Result<Path<(i64, i64)>, axum::extract::rejection::PathRejection>,
) -> Result<StatusCode, ApiError> {
    let Ok(Path((user_id, token))) = path else {
        return Err(ApiError::BadRequest("ids must be whole numbers".into()));
    };
    state.operators.revoke_token(user_id, token, actor).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct AuditQuery {
    /// The actor's e-mail, or `admin token`.
    actor: Option<String>,
    venue: Option<i64>,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    /// One subject's history: `booking`, `sale`, `venue`, `user`, `event`, `webhook` with
    /// `subject_id`; alone (also `partner`, `replay`), every entry of that type.
    subject_type: Option<String>,
    subject_id: Option<i64>,
    /// One partner's history: its creation, changes, secrets, script versions and the
    /// replays of its events.
    partner: Option<String>,
    /// The next page: entries with an id below this one.
    before: Option<i64>,
    /// At most this many (default 100, at most 500).
    limit: Option<i64>,
}

#[utoipa::path(get, path = "/api/v1/audit", tag = "users", params(AuditQuery),
    responses((status = 200, description = "Manual actions, newest first, of the venues this actor sees", body = Vec<AuditRecord>),
        (status = 400, description = "Invalid filter", body = ErrorBody)),
    security(("admin" = [])))]
pub(super) async fn audit(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    params: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let params = query(params)?;
    let subject = match (params.subject_type, params.subject_id) {
        (Some(kind), id) => Some((kind, id)),
        (None, None) => None,
        (None, Some(_)) => {
            return Err(ApiError::BadRequest(
                "subject_id needs its subject_type".into(),
            ));
        }
    };
    let filter = AuditFilter {
        actor: params.actor.map(|a| a.trim().to_lowercase()),
        venue: params.venue,
        from: valid_filter(params.from, "from")?,
        to: valid_filter(params.to, "to")?,
        subject,
        partner: params.partner,
        before_id: params.before,
        venue_limit: actor.venue_limit(),
        users_only_self: (!actor.may(crate::domain::access::Permission::Administer))
            .then_some(actor.user_id),
        limit: match params.limit {
            None => 100,
            Some(limit @ 1..=500) => limit,
            Some(_) => {
                return Err(ApiError::BadRequest("limit must be 1 to 500".into()));
            }
        },
    };
    Ok(Json(state.operators.audit(filter).await?))
}
