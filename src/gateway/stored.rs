//! What of a delivery is stored with its event: selected headers (never credentials), the
//! query with secret values masked, and the body, whole or, for a refused delivery, only its
//! first bytes.

use std::collections::BTreeMap;

use http::{HeaderMap, HeaderName};
use sha2::{Digest, Sha256};

use super::Inbound;
use crate::partners::auth::AuthScheme;
use crate::store::NewEvent;
use crate::store::body::StoredBody;

/// Headers worth keeping with a stored event. Credentials are never among them.
const KEPT_HEADERS: [&str; 8] = [
    "content-type",
    "content-encoding",
    "content-length",
    "user-agent",
    "x-request-id",
    "x-forwarded-for",
    "x-real-ip",
    "x-lightspeed-idempotency-key",
];

/// The most of each text of a refused delivery that is stored (partner name, path, query,
/// event type, a header's value), in bytes: well within what PostgreSQL can index (about
/// 2,700 bytes), since the partner name is in an index of events.
pub(super) const REFUSED_TEXT_KEPT: usize = 512;

/// `text` cut to [`REFUSED_TEXT_KEPT`] bytes at a character boundary, marked when cut.
fn shortened(text: &str) -> String {
    if text.len() <= REFUSED_TEXT_KEPT {
        return text.to_owned();
    }
    let mut end = REFUSED_TEXT_KEPT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &text[..end], text.len())
}

/// How much of a body to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Keep {
    /// Every byte: an accepted delivery, replayable.
    Whole,
    /// At most this many first bytes: a refused delivery, kept to show what was sent.
    First(usize),
}

/// The event as it will be stored: selected headers only, secret query values masked, the
/// body as `keep` says (its size and SHA-256 always of the whole body as received).
pub(super) fn new_event(
    inbound: &Inbound,
    auth: Option<&AuthScheme>,
    handler: Option<&str>,
    keep: Keep,
) -> NewEvent {
    let body = &inbound.body;
    let kept = match keep {
        Keep::Whole => body.clone(),
        Keep::First(limit) => body.slice(..body.len().min(limit)),
    };
    // A refused delivery's path, event type, query and headers are the sender's too: kept to
    // a length that shows what was sent, so a long URL costs no more than a long body.
    let cap = |text: &str| match keep {
        Keep::Whole => text.to_owned(),
        Keep::First(_) => shortened(text),
    };
    NewEvent {
        received_at: inbound.received_at,
        // An unknown partner's name is the sender's text too; a configured one is short.
        partner: cap(&inbound.partner),
        route: inbound.route.as_str(),
        method: inbound.method.clone(),
        event_type: cap(&inbound.event_type),
        path: cap(&inbound.path),
        query: inbound
            .query
            .as_deref()
            .map(|q| cap(&mask_query(q, auth.and_then(AuthScheme::secret_param)))),
        headers: kept_headers(&inbound.headers, auth.and_then(AuthScheme::secret_header))
            .into_iter()
            .map(|(name, value)| (name, cap(&value)))
            .collect(),
        body_sha256: hex::encode(Sha256::digest(body)),
        body_bytes: inbound.body_bytes.unwrap_or(body.len()),
        body_truncated: kept.len() < body.len()
            || inbound.body_bytes.is_some_and(|n| n > kept.len()),
        body: StoredBody::encode(&kept),
        handler: handler.map(str::to_owned),
        handler_version: None,
        secret_label: None,
    }
}

fn kept_headers(headers: &HeaderMap, secret: Option<&HeaderName>) -> BTreeMap<String, String> {
    headers
        .keys()
        .filter(|name| KEPT_HEADERS.contains(&name.as_str()) || name.as_str().contains("signature"))
        .filter(|name| Some(*name) != secret)
        .map(|name| {
            let values: Vec<String> = headers
                .get_all(name)
                .iter()
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .collect();
            (name.as_str().to_owned(), values.join(", "))
        })
        .collect()
}

/// Query parameter names that carry a credential whatever the partner's scheme says: masked
/// for every delivery, so a partner still sending an old URL's token after its scheme
/// changed, one refused before its scheme is known (an unknown or switched-off partner), or a
/// name in another case never leaves its secret in a stored event.
const CREDENTIAL_PARAMS: [&str; 17] = [
    "token",
    "access_token",
    "id_token",
    "refresh_token",
    "jwt",
    "secret",
    "client_secret",
    "password",
    "passwd",
    "pwd",
    "apikey",
    "api_key",
    "api-key",
    "key",
    "signature",
    "sig",
    "auth",
];

/// The query string with the values of `secret_param` and of every [`CREDENTIAL_PARAMS`]
/// name replaced (names compared case-insensitively after decoding), so stored events hold
/// no credentials.
fn mask_query(query: &str, secret_param: Option<&str>) -> String {
    query
        .split('&')
        .map(|pair| {
            let key = pair.split_once('=').map_or(pair, |(key, _)| key);
            let decoded: String = form_urlencoded::parse(key.as_bytes())
                .map(|(k, v)| {
                    if v.is_empty() {
                        k.into_owned()
                    } else {
                        format!("{k}={v}")
                    }
                })
                .collect();
            let secret = secret_param.is_some_and(|param| decoded.eq_ignore_ascii_case(param))
                || CREDENTIAL_PARAMS
                    .iter()
                    .any(|name| decoded.eq_ignore_ascii_case(name));
            if secret && pair.contains('=') {
                format!("{key}=[redacted]")
            } else {
                pair.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_query_parameters_are_masked_and_others_kept() {
        assert_eq!(
            mask_query("a=1&token=s3cret&b=2", Some("token")),
            "a=1&token=[redacted]&b=2"
        );
        assert_eq!(
            mask_query("a=1&TOKEN=s3cret&apiKey=k&account_id=7", None),
            "a=1&TOKEN=[redacted]&apiKey=[redacted]&account_id=7",
            "credentials are masked even when the scheme is not known"
        );
        assert_eq!(
            mask_query("Tok=x&tok=y", Some("TOK")),
            "Tok=[redacted]&tok=[redacted]"
        );
        assert_eq!(
            mask_query("tok%65n=s3cret", Some("token")),
            "tok%65n=[redacted]"
        );
    }

    #[test]
    fn credentials_are_never_kept_but_signatures_are() {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", "Bearer t".parse().expect("header"));
        headers.insert("x-api-secret", "k".parse().expect("header"));
        headers.insert("x-partner-signature", "abc".parse().expect("header"));
        headers.insert("content-type", "application/json".parse().expect("header"));
        let secret = HeaderName::from_static("x-api-secret");
        let kept = kept_headers(&headers, Some(&secret));
        assert_eq!(
            kept.keys().map(String::as_str).collect::<Vec<_>>(),
            vec!["content-type", "x-partner-signature"]
        );
    }
}
