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
}
