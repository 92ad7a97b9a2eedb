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
