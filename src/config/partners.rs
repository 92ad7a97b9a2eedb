//! `[[partners]]`: each partner's handler, authentication scheme, API access and limits, read
//! and validated into a [`PartnerConfig`].

use super::*;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPartner {
    pub(super) name: String,
    handler: String,
    /// For `handler = "script"`: the script file, relative to the working directory.
    script: Option<std::path::PathBuf>,
    /// For a stored partner with `handler = "script"`: its saved script (never read from
    /// the definition, see [`stored_partner`]).
    #[serde(skip)]
    saved_script: Option<std::sync::Arc<crate::partners::script::SavedScript>>,
    /// For `handler = "checkfront"`: the account's own status ids -> our booking statuses.
    #[serde(default)]
    status_map: std::collections::BTreeMap<String, String>,
    /// For `handler = "tourcms"`: the account's API access.
    api: Option<RawApi>,
    /// Deliveries per second (0: unlimited) and the burst above it.
    rate_limit_per_second: Option<u32>,
    rate_limit_burst: Option<u32>,
    /// "store" (200, the default) or "retry" (500) for deliveries the handler cannot map.
    on_handler_error: Option<String>,
    /// A charset label (e.g. "windows-1252") for bodies that declare none and are not UTF-8.
    undeclared_charset: Option<String>,
    auth: RawAuth,
}

/// `[partners.api]`: how to call the partner's API.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApi {
    base_url: String,
    #[serde(default = "default_marketplace")]
    marketplace_id: String,
    private_key: Option<SecretString>,
    private_key_env: Option<String>,
    /// Calls per channel and hour never exceeded (default: TourCMS's published 3,000).
    hourly_limit: Option<u32>,
}

fn default_marketplace() -> String {
    "0".to_owned()
}

/// `[partners.auth]`: every key any scheme uses; which are required depends on `scheme`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    scheme: String,
    secret: Option<SecretString>,
    secret_env: Option<String>,
    header: Option<String>,
    signed: Option<String>,
    timestamp_header: Option<String>,
    tolerance_seconds: Option<u64>,
    username: Option<String>,
    password: Option<SecretString>,
    password_env: Option<String>,
    token: Option<SecretString>,
    token_env: Option<String>,
    param: Option<String>,
    value: Option<SecretString>,
    value_env: Option<String>,
}

/// Characters of a partner's name at most: it is a URL segment, a metrics label and part of
/// an index of stored events.
pub const MAX_PARTNER_NAME: usize = 64;

impl RawPartner {
    pub(super) fn validate(self) -> Result<PartnerConfig, ConfigError> {
        let name = self.name;
        let valid_name = !name.is_empty()
            && name.len() <= MAX_PARTNER_NAME
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid_name {
            return Err(invalid(format!(
                "partner name {name:?} must be 1 to {MAX_PARTNER_NAME} ASCII letters, digits, '-', '_' or '.'"
            )));
        }
        let api = match self.api {
            None => None,
            Some(api) => {
                if !(api.base_url.starts_with("http://") || api.base_url.starts_with("https://")) {
                    return Err(invalid(format!(
                        "partner {name}: api.base_url must start with https://"
                    )));
                }
                let private_key = required(
                    "private_key",
                    api.private_key,
                    api.private_key_env.as_deref(),
                )
                .map_err(|e| invalid(format!("partner {name}: api.{e}")))?;
                let hourly_limit = match api.hourly_limit {
                    None => crate::partners::tourcms::HOURLY_LIMIT,
                    Some(limit) => std::num::NonZeroU32::new(limit).ok_or_else(|| {
                        invalid(format!("partner {name}: api.hourly_limit must be positive"))
                    })?,
                };
                Some(crate::partners::tourcms::TourCmsApi {
                    base_url: api.base_url.trim_end_matches('/').to_owned(),
                    marketplace_id: api.marketplace_id,
                    private_key: std::sync::Arc::new(private_key),
                    hourly_limit,
                })
            }
        };
        let options = crate::partners::HandlerOptions {
            script: self.script,
            saved_script: self.saved_script,
            status_map: self.status_map,
            api,
        };
        let handler = HandlerSpec::parse(&self.handler, options)
            .map_err(|e| invalid(format!("partner {name}: {e}")))?;
        let auth = self
            .auth
            .validate()
            .map_err(|e| invalid(format!("partner {name}: {e}")))?;
        let rate_limit = match (self.rate_limit_per_second, self.rate_limit_burst) {
            (Some(0), _) => None,
            (per_second, burst) => {
                let per_second = per_second
                    .and_then(std::num::NonZeroU32::new)
                    .unwrap_or(DEFAULT_RATE_LIMIT.per_second);
                let burst = match burst {
                    None => DEFAULT_RATE_LIMIT.burst.max(per_second),
                    Some(burst) => std::num::NonZeroU32::new(burst).ok_or_else(|| {
                        invalid(format!("partner {name}: rate_limit_burst must be positive"))
                    })?,
                };
                Some(RateLimit { per_second, burst })
            }
        };
        let on_handler_error = match self.on_handler_error.as_deref() {
            None | Some("store") => HandlerErrors::Store,
            Some("retry") => HandlerErrors::Retry,
            Some(other) => {
                return Err(invalid(format!(
                    "partner {name}: on_handler_error = {other:?}: expected \"store\" or \"retry\""
                )));
            }
        };
        let undeclared_charset = self
            .undeclared_charset
            .map(|label| {
                encoding_rs::Encoding::for_label(label.as_bytes()).ok_or_else(|| {
                    invalid(format!(
                        "partner {name}: undeclared_charset {label:?} is not a known charset"
                    ))
                })
            })
            .transpose()?;
        Ok(PartnerConfig {
            name,
            handler,
            auth,
            rate_limit,
            on_handler_error,
            undeclared_charset,
        })
    }
}

impl RawAuth {
    fn validate(self) -> Result<AuthScheme, ConfigError> {
        let scheme = match self.scheme.as_str() {
            "hmac-sha256" => AuthScheme::HmacSha256 {
                secret: required("secret", self.secret, self.secret_env.as_deref())?,
                header: header_name(self.header.as_deref().unwrap_or(DEFAULT_SIGNATURE_HEADER))?,
                timestamp: match self.timestamp_header {
                    None => None,
                    Some(header) => Some(crate::partners::auth::TimestampWindow {
                        header: header_name(&header)?,
                        tolerance: Duration::from_secs(
                            match self.tolerance_seconds.unwrap_or(DEFAULT_TOLERANCE_SECONDS) {
                                // A day at most: past that, a signed timestamp stops
                                // bounding replays at all (0 would verify forever).
                                seconds @ 1..=86_400 => seconds,
                                _ => {
                                    return Err(invalid(
                                        "tolerance_seconds must be between 1 and 86400",
                                    ));
                                }
                            },
                        ),
                    }),
                },
                signed: match self.signed.as_deref() {
                    None | Some("body+url") => SignedPart::BodyAndUrl,
                    Some("body") => SignedPart::Body,
                    Some(other) => {
                        return Err(invalid(format!(
                            "signed = {other:?}: expected \"body\" or \"body+url\""
                        )));
                    }
                },
            },
            "basic" => AuthScheme::Basic {
                username: self
                    .username
                    .filter(|u| !u.is_empty() && !u.contains(':'))
                    .ok_or_else(|| {
                        invalid("username is required, without ':' (Basic auth splits on it)")
                    })?,
                password: required("password", self.password, self.password_env.as_deref())?,
            },
            "bearer" => AuthScheme::Bearer {
                token: required("token", self.token, self.token_env.as_deref())?,
            },
            "api-key" => AuthScheme::ApiKey {
                location: match (self.header, self.param) {
                    (Some(header), None) => KeyLocation::Header(header_name(&header)?),
                    (None, Some(param)) if !param.is_empty() => KeyLocation::Param(param),
                    _ => return Err(invalid("api-key needs exactly one of header or param")),
                },
                value: required("value", self.value, self.value_env.as_deref())?,
            },
            "url-token" => AuthScheme::UrlToken {
                param: self.param.unwrap_or_else(|| DEFAULT_TOKEN_PARAM.to_owned()),
                secret: required("secret", self.secret, self.secret_env.as_deref())?,
            },
            "none" => AuthScheme::None,
            other => {
                return Err(invalid(format!(
                    "auth scheme {other:?} is unknown; use hmac-sha256, basic, bearer, api-key, url-token or none"
                )));
            }
        };
        Ok(scheme)
    }
}

/// The authentication schemes a partner may use (`[partners.auth] scheme`).
pub const AUTH_SCHEMES: [&str; 6] = [
    "hmac-sha256",
    "bearer",
    "basic",
    "api-key",
    "url-token",
    "none",
];

/// The handlers a partner kept in the database may use: those whose whole definition is
/// data (a stored script partner's script is saved in the database with it). TourCMS takes
/// an API key, kept in the configuration file.
pub const STORED_HANDLERS: [&str; 3] = ["lightspeed-kseries", "checkfront", "script"];

/// The key of `[partners.auth]` that holds the secret of `scheme`; `None` for `none`.
pub fn secret_field(scheme: &str) -> Option<&'static str> {
    match scheme {
        "hmac-sha256" | "url-token" => Some("secret"),
        "basic" => Some("password"),
        "bearer" => Some("token"),
        "api-key" => Some("value"),
        _ => None,
    }
}

/// A partner kept in the database: its definition (the keys of a `[[partners]]` table, as
/// JSON, without the secret) validated as the file's are, with `secret` put where its scheme
/// takes it and, for `handler = "script"`, its saved `script`.
///
/// # Errors
/// [`ConfigError`] naming what is wrong, as for the file: an unknown key, a handler or
/// scheme that does not exist, a missing secret; and for stored partners also a handler
/// outside [`STORED_HANDLERS`], a secret in the definition, a key read from the
/// environment (`*_env`: an API must not point a partner at the server's environment), a
/// script file (`script`: nor at the server's files) or a script partner without a saved
/// script.
pub fn stored_partner(
    definition: &serde_json::Value,
    secret: Option<&SecretString>,
    script: Option<std::sync::Arc<crate::partners::script::SavedScript>>,
) -> Result<PartnerConfig, ConfigError> {
    let serde_json::Value::Object(fields) = definition else {
        return Err(invalid("a partner's definition is a JSON object"));
    };
    let handler = fields.get("handler").and_then(|h| h.as_str()).unwrap_or("");
    if !STORED_HANDLERS.contains(&handler) {
        return Err(invalid(format!(
            "handler {handler:?} cannot be kept in the database; use one of {} (scripts and \
             TourCMS stay in the configuration file)",
            STORED_HANDLERS.join(", ")
        )));
    }
    if fields.contains_key("script") {
        return Err(invalid(
            "script cannot be in a stored partner's definition: a stored partner's script is \
             saved with it (script_source), never read from a file of the server's",
        ));
    }
    if handler == "script" && script.is_none() {
        return Err(invalid(
            "a script partner kept in the database needs its script: give script_source",
        ));
    }
    let auth = match fields.get("auth") {
        Some(serde_json::Value::Object(auth)) => auth,
        _ => return Err(invalid("auth is required: {\"scheme\": ...}")),
    };
    let scheme = auth.get("scheme").and_then(|s| s.as_str()).unwrap_or("");
    for key in auth.keys() {
        let secret_key = matches!(key.as_str(), "secret" | "password" | "token" | "value");
        if secret_key || key.ends_with("_env") {
            return Err(invalid(format!(
                "auth.{key} cannot be in a stored partner's definition: secrets are added \
                 through its secrets (sealed at rest), never from the environment"
            )));
        }
    }
    let mut definition = definition.clone();
    if let (Some(field), Some(secret), Some(auth)) = (
        secret_field(scheme),
        secret,
        definition.get_mut("auth").and_then(|a| a.as_object_mut()),
    ) {
        auth.insert(
            field.to_owned(),
            serde_json::Value::String(secret.expose_secret().to_owned()),
        );
    }
    let mut raw: RawPartner =
        serde_json::from_value(definition).map_err(|e| invalid(format!("partner: {e}")))?;
    if handler == "script" {
        raw.saved_script = script;
    }
    raw.validate()
}
