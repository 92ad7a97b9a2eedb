//! Property: any order and any duplication of the same notifications, interleaved with the
//! bookings they belong to being created, leaves the same bookings, sales and spend.

use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};

use crate::helpers::{Db, TestApp, spawn};

/// One step of a day of service.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Deliver(&'static str),
    /// Creates the booking with this reference (see [`booking_body`]).
    Book(&'static str),
}

const DELIVERIES: [&str; 13] = [
    "open_regular_tax_inclusive.json",
    "r224_update_items.json",
    "r224_update_stale.json",
    "r224_update_payment.json",
    "r224_close.json",
    "open_split_check_original.json",
    "split_original_update.json",
    "split_child_open.json",
    "split_original_close.json",
    "split_child_close.json",
    "open_regular_tax_exclusive.json",
    "r438_cancel.json",
    "r438_close_tax_exclusive.json",
];

const BOOKINGS: [&str; 3] = ["224", "lunch-10", "438"];

/// (location, booking reference, booking body)
fn booking_body(reference: &str) -> (&'static str, Value) {
    match reference {
        "224" => (
            "41910290874370",
            json!({ "reference": "224", "start": "2024-04-04T15:30:00Z", "covers": 4, "tables": ["1"] }),
        ),
        "lunch-10" => (
            "1340570962231298",
            json!({ "reference": "lunch-10", "start": "2025-12-29T11:45:00Z", "covers": 2, "tables": ["10"] }),
        ),
        _ => (
            "141948669132802",
            json!({ "reference": "438", "start": "2024-09-18T20:00:00Z", "covers": 2, "tables": ["1"] }),
        ),
    }
}

fn canonical() -> Vec<Step> {
    BOOKINGS
        .iter()
        .map(|b| Step::Book(b))
        .chain(DELIVERIES.iter().map(|d| Step::Deliver(d)))
        .collect()
}

/// Every step once, shuffled, with up to six deliveries repeated at random places.
fn shuffled_with_duplicates() -> impl Strategy<Value = Vec<Step>> {
    let duplicates =
        proptest::collection::vec((0..DELIVERIES.len(), any::<prop::sample::Index>()), 0..6);
    (Just(canonical()).prop_shuffle(), duplicates).prop_map(|(mut steps, duplicates)| {
        for (delivery, at) in duplicates {
            let position = at.index(steps.len() + 1);
            steps.insert(position, Step::Deliver(DELIVERIES[delivery]));
        }
        steps
    })
}

/// Plays the steps on a fresh service and returns what an operator would see.
async fn final_state(db: Db, steps: &[Step]) -> BTreeMap<String, Value> {
    let app = spawn(db).await;
    let mut venues = BTreeMap::new();
    for reference in BOOKINGS {
        let (location, _) = booking_body(reference);
        venues.insert(
            location,
            app.venue_with_location("lightspeed", location, true).await,
        );
    }
    let mut booked = BTreeMap::new();
    for step in steps {
        match step {
            Step::Deliver(fixture) => {
                let (status, answer) = app.deliver(fixture).await;
                assert_eq!(status, reqwest::StatusCode::OK, "{fixture}: {answer}");
            }
            Step::Book(reference) => {
                let (location, body) = booking_body(reference);
                booked.insert(*reference, app.booking(venues[location], body).await);
            }
        }
    }
    observe(&app, &booked).await
}

async fn observe(app: &TestApp, booked: &BTreeMap<&str, i64>) -> BTreeMap<String, Value> {
    let reference_of: BTreeMap<i64, &str> = booked.iter().map(|(r, id)| (*id, *r)).collect();
    let mut seen = BTreeMap::new();
    for (reference, id) in booked {
        let booking = app.admin_get(&format!("/bookings/{id}")).await;
        let mut sales: Vec<String> = booking["sales"]
            .as_array()
            .expect("sales")
            .iter()
            .map(|s| {
                format!(
                    "{} {} {} {}",
                    s["external_id"], s["state"], s["total"], s["match"]["rule"]
                )
            })
            .collect();
        sales.sort();
        seen.insert(
            format!("booking {reference}"),
            json!({ "status": booking["status"], "spend": booking["spend"], "sales": sales, "tables": booking["tables"] }),
        );
    }
    for sale in app
        .admin_get("/sales?limit=1000")
        .await
        .as_array()
        .expect("sales")
    {
        let booking = sale["match"]["booking_id"]
            .as_i64()
            .and_then(|id| reference_of.get(&id));
        seen.insert(
            format!("sale {}", sale["external_id"]),
            json!({ "state": sale["state"], "total": sale["total"], "paid": sale["paid"], "tip": sale["tip"],
                    "version": sale["version"], "booking": booking, "rule": sale["match"]["rule"] }),
        );
    }
    seen
}

fn any_order_and_duplication_gives_the_same_diary(db: Db, cases: u32) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let expected = runtime.block_on(final_state(db, &canonical()));
    assert_eq!(
        expected["booking 224"]["status"], "paid",
        "the canonical day is itself right"
    );
    assert_eq!(expected["booking lunch-10"]["spend"]["total"], "50.71");
    assert_eq!(expected["booking 438"]["spend"]["total"], "69.55");
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let outcome = runner.run(&shuffled_with_duplicates(), |steps| {
        let got = runtime.block_on(final_state(db, &steps));
        prop_assert_eq!(&got, &expected, "steps: {:?}", steps);
        Ok(())
    });
    if let Err(failure) = outcome {
        panic!("{failure}");
    }
}

#[test]
fn sqlite_any_order_and_duplication_gives_the_same_diary() {
    any_order_and_duplication_gives_the_same_diary(Db::Sqlite, 40);
}

#[test]
fn postgres_any_order_and_duplication_gives_the_same_diary() {
    any_order_and_duplication_gives_the_same_diary(Db::Postgres, 16);
}
