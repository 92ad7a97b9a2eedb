use super::*;
use crate::domain::{Command, SaleState};

#[test]
fn scripts_parse_amounts_without_rust_decimals_separators() {
    let engine = engine();
    let amount: rust_decimal::Decimal = engine
        .eval(r#"parse_decimal(" 12.50 ")"#)
        .expect("an amount");
    assert_eq!(amount.to_string(), "12.50");
    let mut scope = rhai::Scope::new();
    scope.push("hostile", format!("1{}", "_".repeat(200_000)));
    let refused =
        engine.eval_with_scope::<rust_decimal::Decimal>(&mut scope, "parse_decimal(hostile)");
    assert!(refused.is_err(), "separators are not an amount");
    assert!(
        engine
            .eval::<rust_decimal::Decimal>(r#"parse_decimal("1_000")"#)
            .is_err()
    );
}
use http::HeaderMap;

fn handler(source: &str) -> (tempfile::TempDir, ScriptHandler) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("partner.rhai");
    std::fs::write(&path, source).expect("write script");
    (dir, ScriptHandler::new(path))
}

fn run(handler: &ScriptHandler, body: &str) -> (Mapped, Option<String>) {
    let headers = HeaderMap::new();
    handler.map_versioned(Delivery {
        event_type: "order.closed",
        headers: &headers,
        query: Some("a=1"),
        body: body.as_bytes(),
    })
}

const SALE: &str = r#"
    fn handle(event) {
        let o = event.body.order;
        #{ location: o.shop, commands: [ #{ type: "sale", id: o.id, opened_at: o.at, total: o.total,
           tables: [o.table], booking_refs: one_or_many(o.booking) } ] }
    }
"#;

#[test]
fn a_script_maps_a_payload_to_a_sale() {
    let (_dir, handler) = handler(SALE);
    let (mapped, version) = run(
        &handler,
        r#"{"order": {"shop": "s1", "id": 42, "at": "2026-03-14T19:05:00+01:00", "total": 12.50, "table": "T7", "booking": "B-9"}}"#,
    );
    let Mapped::Apply {
        location_id,
        commands,
    } = mapped
    else {
        panic!("{mapped:?}")
    };
    assert_eq!(location_id, "s1");
    let [Command::UpsertSale(sale)] = commands.as_slice() else {
        panic!("{commands:?}")
    };
    assert_eq!(sale.external_id, "42");
    assert_eq!(
        sale.totals.total.to_string(),
        "12.50",
        "the payload's digits"
    );
    assert_eq!(sale.opened_at.to_rfc3339(), "2026-03-14T18:05:00+00:00");
    assert_eq!(sale.state, SaleState::Closed);
    assert_eq!(sale.tables[0].as_str(), "7");
    assert_eq!(sale.booking_refs[0].value, "B-9");
    assert_eq!(version.map(|v| v.len()), Some(16));
}

#[test]
fn runaway_and_greedy_scripts_fail_the_event_quickly_with_a_precise_reason() {
    for (source, expected) in [
        ("fn handle(event) { loop { } }", Reason::ScriptLimit),
        (
            "fn handle(event) { let a = []; a.pad(10000000, 0); a }",
            Reason::ScriptLimit,
        ),
        (
            "fn handle(event) { let s = \"x\"; loop { s += s; } }",
            Reason::ScriptLimit,
        ),
        ("fn handle(event) { handle(event) }", Reason::ScriptLimit),
        ("fn handle(event) { throw \"nope\"; }", Reason::ScriptError),
        ("fn handle(event) { 42 }", Reason::ScriptError),
        (
            "fn handle(event) { #{ location: \"x\", commands: [#{ type: \"sale\" }] } }",
            Reason::InvalidPayload,
        ),
        ("this is not rhai", Reason::ScriptError),
    ] {
        let (_dir, handler) = handler(source);
        let started = std::time::Instant::now();
        let (mapped, _) = run(&handler, "{}");
        assert!(
            matches!(mapped, Mapped::Fail { reason, .. } if reason == expected),
            "{source}: expected {expected}, got {mapped:?}"
        );
        assert!(
            started.elapsed().as_secs() < 5,
            "{source} took {:?}",
            started.elapsed()
        );
    }
}

#[test]
fn a_changed_script_is_reloaded_and_its_version_recorded() {
    let (dir, handler) =
        handler("fn handle(event) { #{ ignore: \"unrecognised_model\", detail: \"v1\" } }");
    let (first, v1) = run(&handler, "{}");
    assert!(matches!(first, Mapped::Ignore { ref detail, .. } if detail == "v1"));
    std::fs::write(
        dir.path().join("partner.rhai"),
        "fn handle(event) { #{ notice: \"version two\" } }",
    )
    .expect("rewrite");
    let (second, v2) = run(&handler, "{}");
    assert_eq!(
        second,
        Mapped::Notice {
            detail: "version two".into()
        }
    );
    assert_ne!(v1, v2);
}

#[test]
fn commands_for_several_locations_become_a_batch() {
    let (_dir, handler) = handler(
        r#"fn handle(event) { #{ commands: [
            #{ type: "guest", name: "A", location: "s1" },
            #{ type: "guest", name: "B", location: "s2" },
            #{ type: "guest", name: "C", location: "s1" } ] } }"#,
    );
    let (mapped, _) = run(&handler, "{}");
    let Mapped::Batch(groups) = mapped else {
        panic!("{mapped:?}")
    };
    let shape: Vec<(&str, usize)> = groups.iter().map(|(l, c)| (l.as_str(), c.len())).collect();
    assert_eq!(shape, vec![("s1", 2), ("s2", 1)]);
}

#[test]
fn zone_less_times_are_the_venues_wall_clock() {
    let (_dir, handler) = handler(
        r#"fn handle(event) { #{ location: "s", commands: [#{ type: "sale", id: "1", opened_at: event.body.at, total: "5" }] } }"#,
    );
    let (mapped, _) = run(&handler, r#"{"at": "2025-06-30 12:54:31"}"#);
    let Mapped::Apply { commands, .. } = mapped else {
        panic!()
    };
    let Command::UpsertSale(mut sale) = commands.into_iter().next().expect("command") else {
        panic!()
    };
    assert!(sale.wall_clock);
    sale.localise(chrono_tz::Australia::Sydney);
    assert_eq!(
        sale.opened_at.to_rfc3339(),
        "2025-06-30T02:54:31+00:00",
        "AEST is UTC+10"
    );
}

#[test]
fn scripts_see_no_credentials() {
    let (_dir, handler) = handler(
        r#"fn handle(event) { #{ notice: `${event.headers.keys().len()} ${event.headers.authorization ?? "none"} ${event.query.a} ${event.format}` } }"#,
    );
    let mut headers = HeaderMap::new();
    headers.insert("authorization", "Bearer secret".parse().expect("header"));
    headers.insert("x-shop", "1".parse().expect("header"));
    let (mapped, _) = handler.map_versioned(Delivery {
        event_type: "t",
        headers: &headers,
        query: Some("a=1"),
        body: b"<a/>",
    });
    assert_eq!(
        mapped,
        Mapped::Notice {
            detail: "1 none 1 xml".into()
        }
    );
}
