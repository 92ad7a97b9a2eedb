//! Partners: how each one authenticates and how its native payloads map onto our model.
//!
//! Every partner handler has the same narrow shape ([`PartnerHandler`]): it reads one raw
//! delivery and returns [`Mapped`] commands or a reason to ignore it. Handlers do no I/O and
//! keep no state, so the same stored event always maps the same way, which is what makes
//! replaying stored events after a handler fix safe. Transport, authentication, storage and
//! limits live once, outside the handlers.

pub mod auth;
pub mod lightspeed;
pub mod wire;

use std::fmt;
use std::str::FromStr;
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
    /// [`Mapped::Ignore`] with a reason.
    fn map(&self, delivery: Delivery<'_>) -> Mapped;
}

/// The built-in handlers, by the name used in the config file (`handler = "..."`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandlerKind {
    LightspeedKSeries,
}

impl HandlerKind {
    pub const ALL: [HandlerKind; 1] = [HandlerKind::LightspeedKSeries];

    pub fn name(self) -> &'static str {
        match self {
            Self::LightspeedKSeries => "lightspeed-kseries",
        }
    }

    pub fn build(self) -> Arc<dyn PartnerHandler> {
        match self {
            Self::LightspeedKSeries => Arc::new(lightspeed::LightspeedKSeries),
        }
    }
}

/// A handler name that is not one of ours.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown handler {0:?}; known handlers: lightspeed-kseries")]
pub struct UnknownHandler(pub String);

impl FromStr for HandlerKind {
    type Err = UnknownHandler;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.name() == s)
            .ok_or_else(|| UnknownHandler(s.to_owned()))
    }
}
