//! Partners: how each one authenticates and how its native payloads map onto our model.
//!
//! Every partner handler has the same narrow shape ([`PartnerHandler`]): it reads one raw
//! delivery and returns [`Mapped`] commands or a reason to ignore it. Handlers do no I/O and
//! keep no state, so the same stored event always maps the same way, which is what makes
//! replaying stored events after a handler fix safe. Transport, authentication, storage and
//! limits live once, outside the handlers.

pub mod auth;
pub mod lightspeed;
pub mod script;
pub mod tree;
pub mod wire;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use http::HeaderMap;

use crate::domain::Mapped;

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
}

/// Which handler a partner uses, from its config (`handler = "..."`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandlerSpec {
    LightspeedKSeries,
    /// `handler = "script"` with `script = "partners/acme.rhai"`.
    Script(PathBuf),
}

impl HandlerSpec {
    /// The handler names the config accepts.
    pub const NAMES: [&'static str; 2] = ["lightspeed-kseries", "script"];

    /// Reads a config's `handler` (and `script`, which only the script handler takes).
    ///
    /// # Errors
    /// A message naming the mistake.
    pub fn parse(handler: &str, script: Option<PathBuf>) -> Result<HandlerSpec, String> {
        match (handler, script) {
            ("lightspeed-kseries", None) => Ok(Self::LightspeedKSeries),
            ("script", Some(path)) => {
                script::check(&path)?;
                Ok(Self::Script(path))
            }
            ("script", None) => {
                Err("handler \"script\" needs script = \"path/to/file.rhai\"".to_owned())
            }
            (name, Some(_)) if Self::NAMES.contains(&name) => {
                Err(format!("handler {name:?} takes no script"))
            }
            (name, _) => Err(format!(
                "unknown handler {name:?}; known handlers: {}",
                Self::NAMES.join(", ")
            )),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::LightspeedKSeries => "lightspeed-kseries",
            Self::Script(_) => "script",
        }
    }

    pub fn build(&self) -> Arc<dyn PartnerHandler> {
        match self {
            Self::LightspeedKSeries => Arc::new(lightspeed::LightspeedKSeries),
            Self::Script(path) => Arc::new(script::ScriptHandler::new(path.clone())),
        }
    }
}
