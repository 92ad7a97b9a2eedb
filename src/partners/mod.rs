//! Partners: how each one authenticates and how its native payloads map onto our model.
//!
//! Every partner handler has the same narrow shape ([`PartnerHandler`]): it reads one raw
//! delivery and returns [`Mapped`] commands or a reason to ignore it. Handlers make no network
//! calls and their answer depends only on the delivery (and, for a script, on the script's
//! version, which is recorded with each event), so the same stored event maps the same way
//! again: that is what makes replaying stored events after a handler fix safe. Partners whose
//! notifications only point at data map to [`Mapped::Fetch`]; the fetching is
//! `crate::fetcher`'s. Transport, authentication, storage and limits live once, outside the
//! handlers.

pub mod auth;
pub mod checkfront;
pub mod decode;
pub mod fuzzing;
pub mod keyring;
pub mod lightspeed;
pub mod script;
pub mod tourcms;
pub mod tree;
pub mod wire;

#[cfg(test)]
mod properties;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use http::HeaderMap;

use crate::domain::{BookingStatus, Mapped};

/// One delivery as a handler sees it: already authenticated, not yet parsed.
#[derive(Debug, Clone, Copy)]
pub struct Delivery<'a> {
    /// The `{eventType}` path segment, as the partner sent it.
    pub event_type: &'a str,
    pub headers: &'a HeaderMap,
    pub query: Option<&'a str>,
    pub body: &'a [u8],
}

/// Maps a partner's native payload onto domain commands.
pub trait PartnerHandler: Send + Sync + fmt::Debug {
    /// Maps one delivery. Never panics on any input: what cannot be mapped becomes
    /// [`Mapped::Ignore`] with a reason, a handler's own failure [`Mapped::Fail`].
    fn map(&self, delivery: Delivery<'_>) -> Mapped;

    /// Maps one delivery and names the handler version that did it (a script's content
    /// hash), so every stored event says which version mapped it.
    fn map_versioned(&self, delivery: Delivery<'_>) -> (Mapped, Option<String>) {
        (self.map(delivery), None)
    }

    /// Whether mapping may cost far more than reading the payload (a script running to its
    /// operation limit): such handlers run a few at a time, off the threads that answer
    /// requests.
    fn is_costly(&self) -> bool {
        false
    }
}

/// Which handler a partner uses, from its config (`handler = "..."`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandlerSpec {
    LightspeedKSeries,
    /// Checkfront, with the account's custom statuses mapped (`[partners.status_map]`).
    Checkfront(BTreeMap<String, BookingStatus>),
    /// TourCMS, with the account's API access for fetching bookings (`[partners.api]`).
    TourCms(tourcms::TourCmsApi),
    /// `handler = "script"`: with `script = "partners/acme.rhai"` in the configuration
    /// file, or a version saved in the database for a stored partner.
    Script(script::ScriptSource),
}

/// What a partner's config says beyond `handler`, for the handlers that take it.
#[derive(Debug, Clone, Default)]
pub struct HandlerOptions {
    pub script: Option<PathBuf>,
    /// A stored partner's saved script (never a file: see `config::stored_partner`).
    pub saved_script: Option<Arc<script::SavedScript>>,
    /// Partner status id -> our booking status name.
    pub status_map: BTreeMap<String, String>,
    /// API access, for the handlers that fetch from the partner.
    pub api: Option<tourcms::TourCmsApi>,
}

impl HandlerSpec {
    /// The handler names the config accepts.
    pub const NAMES: [&'static str; 4] = ["lightspeed-kseries", "checkfront", "tourcms", "script"];

    /// Reads a config's `handler` and the options it takes.
    ///
    /// # Errors
    /// A message naming the mistake.
    pub fn parse(handler: &str, options: HandlerOptions) -> Result<HandlerSpec, String> {
        if (options.script.is_some() || options.saved_script.is_some()) && handler != "script" {
            return Err(format!("handler {handler:?} takes no script"));
        }
        if !options.status_map.is_empty() && handler != "checkfront" {
            return Err(format!("handler {handler:?} takes no status_map"));
        }
        if options.api.is_some() && handler != "tourcms" {
            return Err(format!("handler {handler:?} takes no [partners.api]"));
        }
        match handler {
            "lightspeed-kseries" => Ok(Self::LightspeedKSeries),
            "checkfront" => {
                let map = options
                    .status_map
                    .into_iter()
                    .map(|(id, status)| {
                        let status = status
                            .parse::<BookingStatus>()
                            .map_err(|e| format!("status_map {id}: {e}"))?;
                        Ok((id, status))
                    })
                    .collect::<Result<_, String>>()?;
                Ok(Self::Checkfront(map))
            }
            "tourcms" => options.api.map(Self::TourCms).ok_or_else(|| {
                "handler \"tourcms\" needs [partners.api] with base_url and private_key".to_owned()
            }),
            "script" => {
                if let Some(saved) = options.saved_script {
                    return Ok(Self::Script(script::ScriptSource::Saved(saved)));
                }
                let path = options
                    .script
                    .ok_or("handler \"script\" needs script = \"path/to/file.rhai\"")?;
                script::check(&path)?;
                Ok(Self::Script(script::ScriptSource::File(path)))
            }
            name => Err(format!(
                "unknown handler {name:?}; known handlers: {}",
                Self::NAMES.join(", ")
            )),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::LightspeedKSeries => "lightspeed-kseries",
            Self::Checkfront(_) => "checkfront",
            Self::TourCms(_) => "tourcms",
            Self::Script(_) => "script",
        }
    }

    pub fn build(&self) -> Arc<dyn PartnerHandler> {
        match self {
            Self::LightspeedKSeries => Arc::new(lightspeed::LightspeedKSeries),
            Self::Checkfront(status_map) => Arc::new(checkfront::Checkfront {
                status_map: status_map.clone(),
            }),
            Self::TourCms(api) => Arc::new(tourcms::TourCms { api: api.clone() }),
            Self::Script(source) => Arc::new(script::ScriptHandler::of(source)),
        }
    }
}
