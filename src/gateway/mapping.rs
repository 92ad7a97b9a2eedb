//! What a partner's handler makes of a delivery, as the gateway takes it: mapped with its
//! panics caught, vetted against the rules every command must meet, and the sales it will
//! lock; the same for a live delivery and a replay.

use crate::domain::{Command, Mapped, Reason};
use crate::partners::decode::Undecodable;
use crate::partners::{Delivery, PartnerHandler};
use crate::store::SaleKey;

/// The in-flight lock keys of every sale a mapping touches.
pub(super) fn lock_keys(partner: &str, mapped: &Mapped) -> Vec<SaleKey> {
    let groups: Vec<(&String, &Vec<Command>)> = match mapped {
        Mapped::Apply {
            location_id,
            commands,
        } => vec![(location_id, commands)],
        Mapped::Batch(groups) => groups.iter().map(|(l, c)| (l, c)).collect(),
        _ => Vec::new(),
    };
    groups
        .into_iter()
        .flat_map(|(location_id, commands)| {
            commands
                .iter()
                .filter_map(Command::lock_subject)
                .map(move |subject| SaleKey {
                    partner: partner.to_owned(),
                    location_id: location_id.clone(),
                    external_id: subject.into_owned(),
                })
        })
        .collect()
}

/// `mapped`, or an invalid payload when one of its commands cannot be applied as it is
/// ([`Mapped::check`]: a time outside the accepted range, a booking ending before it
/// starts). The one check every handler's output passes, built-in and scripted alike,
/// fresh or replayed or fetched, so no handler's gap can reach the rules downstream.
pub(crate) fn vetted(mapped: Mapped) -> Mapped {
    let mapped = mapped.with_trimmed_locations();
    match mapped.check() {
        Ok(()) => mapped,
        Err(invalid) => Mapped::invalid(invalid.to_string()),
    }
}

/// Whether a failed event failed for its content (its handler or script could not build a
/// valid command from it), not for our own fault: answered per the partner's
/// `on_handler_error`, 200 by default.
pub(super) fn is_content_failure(reason: Reason) -> bool {
    matches!(
        reason,
        Reason::InvalidPayload | Reason::ScriptError | Reason::ScriptLimit
    )
}

/// What a delivery whose body cannot be decoded becomes: an unsupported encoding or charset
/// is refused (415) and stored, so a replay reads it once support exists; a broken body is
/// malformed (200, stored); one too large once decompressed is refused like an oversized
/// body (the live path answers 413 before this; a replay records it so).
pub(super) fn undecodable_mapping(undecodable: &Undecodable) -> Mapped {
    let detail = undecodable.to_string();
    match undecodable {
        Undecodable::UnsupportedEncoding(_) => Mapped::Reject {
            reason: Reason::UnsupportedEncoding,
            detail,
        },
        Undecodable::UnsupportedCharset(_) => Mapped::Reject {
            reason: Reason::UnsupportedCharset,
            detail,
        },
        Undecodable::TooLarge { .. } => Mapped::Reject {
            reason: Reason::BodyTooLarge,
            detail,
        },
        Undecodable::Corrupt(_) => Mapped::Ignore {
            reason: Reason::MalformedPayload,
            detail,
        },
    }
}

/// A handler's mapping of `body` as the gateway makes it (vetted, panics caught), for the
/// property tests of handlers.
#[cfg(test)]
pub(crate) fn map_for_tests(
    handler: &std::sync::Arc<dyn PartnerHandler>,
    body: &[u8],
) -> (Mapped, Option<String>) {
    let headers = http::HeaderMap::new();
    map_guarded(
        handler.as_ref(),
        Delivery {
            event_type: "order.updated",
            headers: &headers,
            query: None,
            body,
        },
    )
}

/// Maps a delivery, turning a handler's panic into a `failed` event instead of a dropped
/// connection. Handlers never panic by contract (fuzzed and property-tested); this is the
/// net under that contract: the raw event is still stored, the partner is asked to retry,
/// and a fixed handler recovers the event by replay.
pub(super) fn map_guarded(
    handler: &dyn PartnerHandler,
    delivery: Delivery<'_>,
) -> (Mapped, Option<String>) {
    let mapped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        handler.map_versioned(delivery)
    }));
    mapped
        .map(|(mapped, version)| (vetted(mapped), version))
        .unwrap_or_else(|panic| {
            let message = panic
                .downcast_ref::<&str>()
                .map(|message| (*message).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            // The message stays in the stored event (operators only): it may quote the payload.
            tracing::error!(handler = ?handler, "a partner handler panicked; the event is failed");
            let detail = format!(
                "the handler panicked ({message}); the event is kept: replay it once the \
             handler is fixed"
            );
            let mapped = Mapped::Fail {
                reason: Reason::ProcessingError,
                detail,
            };
            (mapped, None)
        })
}

#[cfg(test)]
mod tests {
    use http::HeaderMap;

    use super::*;

    /// A handler with a bug, to prove the net under the never-panic contract holds.
    #[derive(Debug)]
    struct Panicking;

    impl PartnerHandler for Panicking {
        fn map(&self, delivery: Delivery<'_>) -> Mapped {
            let total: u8 = delivery.body.iter().sum();
            panic!("overflowed at {total}");
        }
    }

    #[test]
    fn a_panicking_handler_fails_the_event_instead_of_the_request() {
        let headers = HeaderMap::new();
        let delivery = Delivery {
            event_type: "order.updated",
            headers: &headers,
            query: None,
            body: b"\x01\x02",
        };
        let (mapped, version) = map_guarded(&Panicking, delivery);
        assert_eq!(version, None);
        match mapped {
            Mapped::Fail { reason, detail } => {
                assert_eq!(reason, Reason::ProcessingError);
                assert!(detail.contains("overflowed at 3"), "{detail}");
            }
            other => panic!("expected a failed event, got {other:?}"),
        }
    }
}
