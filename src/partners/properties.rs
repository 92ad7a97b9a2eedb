//! Property tests over every partner parser: whatever bytes arrive, a handler maps them to
//! an outcome and never panics; what is valid keeps its meaning. The fuzz targets in
//! `fuzz/` drive the same entry points with coverage guidance for longer.

use std::sync::Arc;

use http::HeaderMap;
use proptest::prelude::*;

use super::{Delivery, PartnerHandler};

/// Every handler diarysync ships, as a partner would configure it.
fn handlers() -> impl Iterator<Item = &'static Arc<dyn PartnerHandler>> {
    super::fuzzing::handlers()
        .iter()
        .map(|(_, handler)| handler)
}

/// JSON documents made of the shapes partners send: objects, arrays, strings, integers,
/// decimals as text, booleans, nulls.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        "[a-zA-Z0-9 .,:@#<>&'\"-]{0,24}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("notificationType".to_owned()),
                    Just("account".to_owned()),
                    Just("businessLocationId".to_owned()),
                    Just("booking".to_owned()),
                    Just("id".to_owned()),
                    Just("totalAmount".to_owned()),
                    "[a-z]{1,8}",
                ],
                inner,
                0..6
            )
            .prop_map(|map| serde_json::Value::Object(map.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_bytes_map_to_an_outcome_in_every_handler(
        body in proptest::collection::vec(any::<u8>(), 0..2048),
        event_type in "[a-z._]{0,20}",
        query in proptest::option::of("[a-z_=&%0-9]{0,40}"),
    ) {
        let headers = HeaderMap::new();
        for handler in handlers() {
            // Not panicking is the property; any Mapped is an answer.
            let _ = handler.map_versioned(Delivery {
                event_type: &event_type,
                headers: &headers,
                query: query.as_deref(),
                body: &body,
            });
        }
    }

    #[test]
    fn any_json_document_maps_to_an_outcome_in_every_handler(document in json_value()) {
        let body = document.to_string();
        let headers = HeaderMap::new();
        for handler in handlers() {
            let _ = handler.map(Delivery {
                event_type: "order.updated",
                headers: &headers,
                query: None,
                body: body.as_bytes(),
            });
        }
    }

    #[test]
    fn the_script_tree_reads_any_json_object_as_json(document in json_value()) {
        // Partners send objects (or arrays); a bare scalar body is read as text.
        let body = serde_json::json!({ "payload": document }).to_string();
        let parsed = super::tree::parse(body.as_bytes());
        prop_assert!(parsed.is_ok(), "{body}");
        if let Ok((format, _)) = parsed {
            prop_assert_eq!(format.as_str(), "json");
        }
    }

    #[test]
    fn any_epoch_number_in_a_sale_maps_to_commands_every_rule_can_take(
        open_ms in extreme_epoch(),
        close_ms in extreme_epoch(),
    ) {
        let body = format!(
            r#"{{"notificationType":"CLOSE","businessLocationId":"42","account":{{"id":"1","openDate":{open_ms},"closeDate":{close_ms},"tableName":"T1","totalAmount":5}}}}"#
        );
        let (mapped, _) = crate::gateway::map_for_tests(lightspeed(), body.as_bytes());
        prop_assert!(mapped.check().is_ok(), "{mapped:?}");
        if let crate::domain::Mapped::Apply { .. } = mapped {
            let in_range = |ms: i128| (0..=i128::from(crate::domain::time::LATEST_MS)).contains(&ms);
            prop_assert!(in_range(open_ms) && in_range(close_ms), "{open_ms} {close_ms}");
        }
    }

    #[test]
    fn any_epoch_number_in_a_booking_maps_to_commands_every_rule_can_take(
        start_s in extreme_epoch(),
        end_s in extreme_epoch(),
    ) {
        let body = serde_json::json!({
            "@attributes": { "host": "h.checkfront.com" },
            "booking": { "status": "PAID", "code": "C1", "start_date": start_s.to_string(),
                         "end_date": end_s.to_string() }
        })
        .to_string();
        let (mapped, _) = crate::gateway::map_for_tests(checkfront(), body.as_bytes());
        prop_assert!(mapped.check().is_ok(), "{mapped:?}");
    }

    #[test]
    fn matching_decides_at_any_instant_chrono_holds_without_panicking(
        opened in extreme_epoch(),
        start in extreme_epoch(),
        minutes in any::<i64>(),
    ) {
        use crate::domain::matching::{CandidateBooking, MatchInput, decide};
        let instant = |ms: i128| {
            i64::try_from(ms)
                .ok()
                .and_then(chrono::DateTime::from_timestamp_millis)
                .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC)
        };
        let table = crate::domain::TableKey::parse("T1").expect("table");
        let booking = CandidateBooking {
            id: 1,
            reference: None,
            start: instant(start),
            end: instant(start),
            tables: vec![table.clone()],
            status: crate::domain::BookingStatus::Confirmed,
            covers: 2,
            guest_name: None,
            walk_in: false,
            open_checks: 1,
            closed_checks: 0,
            last_closed_at: Some(instant(opened)),
            moved_away_at: None,
            checks_anywhere: 1,
        };
        let mut sale = crate::domain::SaleFacts {
            kind: crate::domain::SaleKind::Sale,
            origin_external_id: None,
            opened_at: instant(opened),
            placed_at: Some(instant(start)),
            tables: vec![table.clone()],
            booking_refs: Vec::new(),
            covers: Some(2),
            guest_name: None,
            paid_at: None,
        };
        let current = crate::domain::matching::CurrentMatch {
            booking: booking.clone(),
            reason: String::new(),
            decided_by: crate::domain::matching::Decisive {
                table,
                at: instant(opened),
                basis: crate::domain::matching::TimeBasis::Opened,
            },
        };
        let tolerances = crate::domain::Tolerances {
            before_start: crate::domain::time::minutes(minutes),
            after_end: crate::domain::time::minutes(minutes.wrapping_neg()),
        };
        let _ = decide(MatchInput {
            sale: &sale,
            by_reference: &[],
            origin_booking: None,
            current: Some(&current),
            nearby: std::slice::from_ref(&booking),
            tolerances,
        });
        let _ = decide(MatchInput {
            sale: &sale,
            by_reference: &[],
            origin_booking: None,
            current: None,
            nearby: &[booking.clone(), booking.clone()],
            tolerances,
        });
        sale.opened_at = chrono::DateTime::<chrono::Utc>::MIN_UTC;
        let _ = crate::domain::matching::suggest(&sale, std::slice::from_ref(&booking), &[], 5);
    }
}

/// Epoch numbers at every edge: chrono's limits, i64's, 1970 and 2200, beyond i64, and any.
fn extreme_epoch() -> impl Strategy<Value = i128> {
    prop_oneof![
        Just(0i128),
        Just(-1),
        Just(i128::from(crate::domain::time::LATEST_MS)),
        Just(i128::from(crate::domain::time::LATEST_MS) + 1),
        Just(8_210_266_876_799_999),
        Just(-8_334_601_228_800_000),
        Just(i128::from(i64::MAX)),
        Just(i128::from(i64::MIN)),
        Just(i128::from(i64::MAX) + 1),
        Just(i128::from(i64::MIN) * 1000),
        any::<i64>().prop_map(i128::from),
        (0i64..7_258_118_399_999).prop_map(i128::from),
    ]
}

fn lightspeed() -> &'static Arc<dyn PartnerHandler> {
    handler_named("lightspeed-kseries")
}

fn checkfront() -> &'static Arc<dyn PartnerHandler> {
    handler_named("checkfront")
}

fn handler_named(name: &str) -> &'static Arc<dyn PartnerHandler> {
    super::fuzzing::handlers()
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, handler)| handler)
        .unwrap_or_else(|| panic!("no handler {name}"))
}
