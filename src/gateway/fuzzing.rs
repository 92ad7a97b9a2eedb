//! The `delivery` fuzz target: whole deliveries through the gateway *and the store* on
//! SQLite, not only through a handler. A handler that maps an input cleanly can still hand
//! the rules downstream a value they cannot take (an `openDate` in year 262,142 once
//! panicked on the writer thread and stopped every write); this target finds those.
//!
//! One input is one delivery, in the format of [`crate::partners::fuzzing`], with one more
//! optional first line, `#partner`, choosing who sends it (`lightspeed`, the default;
//! `checkfront`; `salesplay`). Every partner authenticates with scheme `none`; the venue
//! owns the locations the seed payloads use and has bookings on their tables, so inputs
//! reach matching, walk-ins and status moves.
//!
//! After each delivery the target checks what must always hold: the answer is never our own
//! failure (`internal_error`, `store_error`, `processing_error`), and the store still takes
//! writes.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use super::{Gateway, Inbound, Receipt, Route};
use crate::config::Config;
use crate::domain::Reason;
use crate::domain::access::Actor;
use crate::store::{NewBooking, NewLocation, NewVenue, SqlStoreHandle, Store};

/// The partners a `#partner` line may name.
pub const PARTNERS: [&str; 3] = ["lightspeed", "checkfront", "salesplay"];

/// Locations the venue owns: the seed payloads' Lightspeed locations, a Checkfront host and a
/// SalesPlay shop.
const LOCATIONS: [(&str, &str); 5] = [
    ("lightspeed", "41910290874370"),
    ("lightspeed", "1340570962231298"),
    ("lightspeed", "42"),
    ("checkfront", "your-company.checkfront.com"),
    ("salesplay", "bHF2M2pMakkzTVZ0NFh2SE1WNnNoUT09"),
];

struct Rig {
    runtime: tokio::runtime::Runtime,
    gateway: Gateway,
    store: SqlStoreHandle,
}

/// The gateway and store every input goes through, built once per process in a fresh
/// database under the system's temp dir.
fn rig() -> &'static Rig {
    static RIG: OnceLock<Rig> = OnceLock::new();
    RIG.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("a runtime for the delivery target: {e}"));
        remove_stale_rigs();
        let dir = std::env::temp_dir().join(format!(
            "{RIG_PREFIX}{}-{}",
            std::process::id(),
            chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
        ));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let url = format!("sqlite://{}", dir.join("fuzz.db").display());
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/partners/salesplay.rhai");
        let toml = format!(
            "database_url = \"{url}\"\nadmin_token = \"fuzzing-admin-token\"\n\
             [[partners]]\nname = \"lightspeed\"\nhandler = \"lightspeed-kseries\"\n\
             rate_limit_per_second = 0\n[partners.auth]\nscheme = \"none\"\n\
             [[partners]]\nname = \"checkfront\"\nhandler = \"checkfront\"\n\
             rate_limit_per_second = 0\n[partners.auth]\nscheme = \"none\"\n\
             [[partners]]\nname = \"salesplay\"\nhandler = \"script\"\nscript = \"{script}\"\n\
             rate_limit_per_second = 0\n[partners.auth]\nscheme = \"none\"\n"
        );
        let config =
            Config::from_toml(&toml).unwrap_or_else(|e| panic!("the target's config: {e}"));
        let (gateway, store) = runtime.block_on(async {
            let store = crate::store::open(&url)
                .await
                .unwrap_or_else(|e| panic!("the target's store: {e}"));
            furnish(&store).await;
            let gateway = Gateway::new(config, Arc::new(store.clone()));
            (gateway, store)
        });
        Rig {
            runtime,
            gateway,
            store,
        }
    })
}

/// Where each process's database lives: `<temp>/<prefix><pid>-<nanos>`.
const RIG_PREFIX: &str = "diarysync-fuzz-delivery-";

/// Removes the databases of earlier processes that are gone (a static is never dropped, so
/// each process leaves its own behind).
fn remove_stale_rigs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(RIG_PREFIX))
            .and_then(|rest| rest.split('-').next())
        else {
            continue;
        };
        if !std::path::Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// A venue owning [`LOCATIONS`], walk-ins on, with bookings on the seed payloads' tables.
async fn furnish(store: &SqlStoreHandle) {
    let venue = store
        .create_venue(
            NewVenue {
                name: "Fuzz".to_owned(),
                timezone: "Europe/London".to_owned(),
                currency: Some("GBP".to_owned()),
                locations: LOCATIONS
                    .iter()
                    .map(|(partner, location_id)| NewLocation {
                        partner: (*partner).to_owned(),
                        location_id: (*location_id).to_owned(),
                        enabled: true,
                    })
                    .collect(),
            },
            Actor::command_line(),
        )
        .await
        .unwrap_or_else(|e| panic!("the target's venue: {e}"));
    let changes = crate::store::VenueChanges {
        walk_ins: Some(true),
        ..crate::store::VenueChanges::default()
    };
    store
        .update_venue(venue.id, changes, Actor::command_line())
        .await
        .unwrap_or_else(|e| panic!("walk-ins on: {e}"));
    let bookings = [
        ("224", "2024-04-04T15:30:00Z", "Table 1"),
        ("lunch", "2025-12-29T11:45:00Z", "10"),
        ("T1", "2024-04-04T18:00:00Z", "T1"),
    ];
    for (reference, start, table) in bookings {
        let booking = NewBooking {
            reference: Some(reference.to_owned()),
            start: start.parse().unwrap_or_default(),
            duration_minutes: 120,
            covers: 2,
            tables: vec![table.to_owned()],
            status: crate::domain::BookingStatus::Confirmed,
            customer: crate::domain::Customer::default(),
            source: "admin",
        };
        store
            .create_booking(venue.id, booking, Actor::command_line())
            .await
            .unwrap_or_else(|e| panic!("a booking: {e}"));
    }
}

/// Runs one fuzz input as a delivery through the gateway and the store.
///
/// # Panics
/// When the delivery is answered with our own failure or leaves the store unable to write:
/// what the fuzzer looks for.
pub fn deliver(input: &[u8]) {
    let rig = rig();
    let (partner, rest) = match input.strip_prefix(b"#") {
        Some(line) => {
            let end = line.iter().position(|b| *b == b'\n').unwrap_or(line.len());
            let name = String::from_utf8_lossy(&line[..end]);
            let partner = PARTNERS
                .into_iter()
                .find(|p| *p == name)
                .unwrap_or(PARTNERS[0]);
            (partner, line.get(end + 1..).unwrap_or_default())
        }
        None => (PARTNERS[0], input),
    };
    let (query, event_type, body) = crate::partners::fuzzing::split(rest);
    let inbound = Inbound {
        route: Route::Callback,
        partner: partner.to_owned(),
        event_type: event_type.to_owned(),
        method: "POST".to_owned(),
        path: format!("/partners/{partner}/webhooks/callback/{event_type}"),
        query: query.map(str::to_owned),
        headers: http::HeaderMap::new(),
        body: bytes::Bytes::copy_from_slice(body),
        body_bytes: None,
        received_at: chrono::Utc::now(),
        client: None,
    };
    let receipt = rig.runtime.block_on(rig.gateway.receive(inbound));
    if let Receipt::Failed { reason, .. } = &receipt {
        assert!(
            !matches!(
                reason,
                Reason::InternalError | Reason::StoreError | Reason::ProcessingError
            ),
            "a delivery failed on our side: {receipt:?}"
        );
    }
    let ready = rig
        .runtime
        .block_on(rig.store.ready(Duration::from_secs(10)));
    assert!(ready.is_ok(), "the store stopped taking writes: {ready:?}");
}
