//! Upgrading: a database an earlier release created (its migrations recorded the sqlx way,
//! its bookings' tables in `booking_tables`) is brought up to date when diarysync starts,
//! and what it held stays.

use serde_json::json;

use crate::helpers::{self, Db};

const SQLX_BOOKKEEPING: &str = "CREATE TABLE _sqlx_migrations (version BIGINT PRIMARY KEY,
    description TEXT NOT NULL, installed_on TEXT, success BOOLEAN NOT NULL,
    checksum BLOB, execution_time BIGINT NOT NULL);
    INSERT INTO _sqlx_migrations (version, description, success, execution_time)
    VALUES (1, 'init', TRUE, 0);";

const EARLIER_DATA: &str = "INSERT INTO venues (id, name, timezone, created_at)
    VALUES (1, 'The Purple', 'Europe/London', 0);
    INSERT INTO bookings (id, venue_id, reference, start_at, end_at, covers, status,
        created_at, updated_at)
    VALUES (1, 1, '224', 1712244600000, 1712251800000, 4, 'confirmed', 0, 0);
    INSERT INTO booking_tables (booking_id, position, table_key) VALUES (1, 0, '1'), (1, 1, '2');";

async fn a_database_from_an_earlier_release_is_migrated_and_keeps_its_data(db: Db) {
    let init = match db {
        Db::Sqlite => include_str!("../../migrations/sqlite/0001_init.sql"),
        Db::Postgres => include_str!("../../migrations/postgres/0001_init.sql"),
    };
    let database = helpers::empty_database(db).await;
    let bookkeeping = match db {
        Db::Sqlite => SQLX_BOOKKEEPING.to_owned(),
        Db::Postgres => SQLX_BOOKKEEPING.replace("BLOB", "BYTEA"),
    };
    helpers::run_sql(
        db,
        &database,
        &format!("{init}\n{bookkeeping}\n{EARLIER_DATA}"),
    )
    .await;

    let app = helpers::spawn_on(database).await;
    let booking = app.booking_view(1).await;
    assert_eq!(booking["reference"], "224");
    assert_eq!(
        booking["tables"],
        json!(["1", "2"]),
        "the tables moved onto the booking"
    );
    assert_eq!(booking["covers"], 4);
}

crate::on_both_stores!(a_database_from_an_earlier_release_is_migrated_and_keeps_its_data,);

/// On SQLite a change's feed position became its row's own id (it was a copy a trigger wrote
/// after every insert). A platform's cursor must survive the upgrade: the positions already
/// handed out are kept, and a new change is placed after every one of them, even after the
/// newest were purged (a position handed out twice would be skipped by a reader past it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_change_feed_keeps_its_positions_across_the_upgrade_that_made_them_row_ids() {
    let database = helpers::empty_database(Db::Sqlite).await;
    let before: Vec<String> = (1..=12)
        .map(|n| {
            let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite");
            let name = std::fs::read_dir(dir)
                .expect("migrations")
                .filter_map(Result::ok)
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .find(|name| name.starts_with(&format!("{n:04}_")))
                .expect("a migration of that number");
            std::fs::read_to_string(format!("{dir}/{name}")).expect("its text")
        })
        .collect();
    helpers::run_sql(
        Db::Sqlite,
        &database,
        &format!(
            "{}
             PRAGMA user_version = 12;
             INSERT INTO venues (id, name, timezone, created_at)
                 VALUES (1, 'The Purple', 'Europe/London', 0);
             INSERT INTO changes (type, venue_id, ordering_key, payload, at) VALUES
                 ('booking.created', 1, 'booking:1', '{{}}', 1),
                 ('booking.changed', 1, 'booking:1', '{{}}', 2),
                 ('booking.changed', 1, 'booking:1', '{{}}', 3);
             DELETE FROM changes WHERE id > 1;",
            before.join("\n")
        ),
    )
    .await;

    let app = helpers::spawn_on(database).await;
    let (status, put) = app
        .admin_put(
            "/venues/1/bookings/by-reference/224",
            json!({ "start": "2024-04-04T15:30:00Z", "duration_minutes": 120, "covers": 4 }),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::CREATED, "{put}");
    let feed = app.admin_get("/changes?after=0&limit=10").await;
    let cursors: Vec<i64> = feed["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| {
            c["cursor"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .expect("a cursor")
        })
        .collect();
    assert_eq!(
        cursors.first(),
        Some(&1),
        "the kept change keeps its place: {feed}"
    );
    assert!(
        cursors.len() == 2 && cursors[1] > 3,
        "the new change comes after every position handed out: {feed}"
    );
}
