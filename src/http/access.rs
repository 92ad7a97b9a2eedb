//! Who a request acts as, and what it may do: the API's bearer tokens (the configuration's
//! bootstrap `admin_token`, or a user's personal token), and the checks handlers make.
//!
//! Every API request carries an [`Actor`] in its extensions once [`authenticate`] let it in.
//! Routes a role may not use at all answer 403 ([`require`]); another venue's data answers
//! 404 ([`visible`]), the same as data that does not exist.

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::AppState;
use crate::domain::access::{Actor, Permission};
use crate::error::ApiError;

/// Personal tokens start with this, so a leaked one is recognisable (secret scanners) and
/// never mistaken for the admin token.
pub const TOKEN_PREFIX: &str = "dsk_";

/// The bearer token of a request, if it has one.
fn bearer(request: &Request) -> Option<&str> {
    request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
}

/// SHA-256 of a secret, hex: how tokens and session ids are stored and looked up.
pub fn digest_hex(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Whether `presented` is the admin token (compared in constant time, on digests so the
/// length does not leak either).
pub fn is_admin_token(state: &AppState, presented: &str) -> bool {
    let expected = Sha256::digest(state.admin_token.expose_secret().as_bytes());
    bool::from(Sha256::digest(presented.as_bytes()).ct_eq(&expected))
}

/// Lets a request through with the admin token or a valid personal token, carrying its
/// [`Actor`]; 401 otherwise. A personal token is looked up by its SHA-256 on every request,
/// so revoking it, or disabling its user, takes effect on every node at once.
pub(super) async fn authenticate(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let actor = match bearer(&request) {
        Some(token) if is_admin_token(&state, token) => Some(Actor::bootstrap_admin()),
        Some(token) if token.starts_with(TOKEN_PREFIX) => {
            match state
                .operators
                .token_actor(&digest_hex(token), Utc::now())
                .await
            {
                Ok(actor) => actor,
                Err(error) => return ApiError::from(error).into_response(),
            }
        }
        _ => None,
    };
    let Some(actor) = actor else {
        return ApiError::Unauthorized.into_response();
    };
    request.extensions_mut().insert(actor);
    next.run(request).await
}

/// A route layer that lets only actors with `permission` through (403 otherwise).
pub(super) fn require(
    permission: Permission,
) -> impl Fn(Request, Next) -> futures_util::future::BoxFuture<'static, Response> + Clone {
    move |request: Request, next: Next| {
        Box::pin(async move {
            match request.extensions().get::<Actor>() {
                Some(actor) if actor.may(permission) => next.run(request).await,
                Some(actor) => forbidden(actor).into_response(),
                None => ApiError::Unauthorized.into_response(),
            }
        })
    }
}

fn forbidden(actor: &Actor) -> ApiError {
    ApiError::Forbidden(format!("the {} role may not do this", actor.role))
}

/// `Ok` when `actor` may do `permission`, else 403.
///
/// # Errors
/// [`ApiError::Forbidden`].
pub(super) fn allowed(actor: &Actor, permission: Permission) -> Result<(), ApiError> {
    if actor.may(permission) {
        Ok(())
    } else {
        Err(forbidden(actor))
    }
}

/// `Ok` when `actor` sees venue `venue_id`; another venue's data is answered as missing.
///
/// # Errors
/// [`ApiError::NotFound`] naming `what`.
pub(super) fn visible(actor: &Actor, venue_id: i64, what: &'static str) -> Result<(), ApiError> {
    if actor.sees(venue_id) {
        Ok(())
    } else {
        Err(ApiError::NotFound(what))
    }
}

/// Records an action whose own write is not the store's manual-action path (the platform
/// link, webhooks, partners): after it succeeded. A failure to record is logged; the action
/// stands.
pub(super) async fn audit_after(
    state: &AppState,
    actor: Actor,
    action: &'static str,
    venue_id: Option<i64>,
    subject: crate::store::audit::Subject,
    after: serde_json::Value,
) {
    if let Err(error) = state
        .operators
        .record_audit(actor, action, venue_id, subject, after)
        .await
    {
        tracing::error!(error = %error, action, "an action was not recorded in the audit trail");
    }
}

/// A new personal token: the prefix and 256 random bits, base64url.
///
/// # Errors
/// When the system's random source fails.
pub fn new_token() -> Result<String, getrandom::Error> {
    use base64::Engine as _;
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_token_is_long_random_and_recognisable() {
        let one = new_token().expect("random");
        let two = new_token().expect("random");
        assert!(one.starts_with(TOKEN_PREFIX));
        assert_eq!(one.len(), TOKEN_PREFIX.len() + 43);
        assert_ne!(one, two);
        assert_ne!(digest_hex(&one), digest_hex(&two));
    }
}
