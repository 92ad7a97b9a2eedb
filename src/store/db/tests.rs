//! The shared layer's own tests: what a write reads ahead stays only while nothing changed.

use super::*;

/// The outbox renders a booking from the rows its status move read, instead of reading it
/// again, only while no statement since could have changed them: any write (a `WITH` that
/// writes included) or savepoint gives them up; reads and an event's own row do not.
#[test]
fn a_booking_read_ahead_is_given_back_only_while_nothing_was_written_since() {
    let mut sqlite = rusqlite::Connection::open_in_memory().expect("in memory");
    sqlite
        .execute_batch("CREATE TABLE t (x INTEGER)")
        .expect("a table");
    let mut conn = Conn::sqlite(&mut sqlite);
    run_sync(async {
        let rows = query("SELECT 'seated' AS b_status")
            .fetch_all(&mut conn)
            .await?;

        conn.read_booking_ahead(7, rows.clone());
        query("SELECT x FROM t").fetch_all(&mut conn).await?;
        assert!(
            conn.take_booking_read_ahead(8).is_none(),
            "another booking's"
        );
        let kept = conn.take_booking_read_ahead(7).expect("kept across a read");
        assert_eq!(kept[0].try_get::<String>("b_status")?, "seated");
        assert!(conn.take_booking_read_ahead(7).is_none(), "given back once");

        conn.read_booking_ahead(7, rows.clone());
        query("INSERT INTO t VALUES (1)")
            .execute_unseen(&mut conn)
            .await?;
        assert!(
            conn.take_booking_read_ahead(7).is_some(),
            "kept across a row no read ahead shows"
        );

        conn.read_booking_ahead(7, rows.clone());
        query("WITH one AS (SELECT 2) INSERT INTO t SELECT * FROM one")
            .execute(&mut conn)
            .await?;
        assert!(conn.take_booking_read_ahead(7).is_none(), "a write since");

        conn.read_booking_ahead(7, rows);
        let savepoint = conn.savepoint().await?;
        savepoint.rollback(&mut conn).await?;
        assert!(
            conn.take_booking_read_ahead(7).is_none(),
            "a rollback since"
        );
        Ok(())
    })
    .expect("runs");
}
