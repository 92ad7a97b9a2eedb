//! A node that stops without dying (SIGSTOP, a stalled VM, a network partition) and a
//! server that will not give every connection: PostgreSQL only, where nodes share locks and
//! connections. Other nodes answer within their lock wait and recover on their own, and
//! `/readyz` says when a node cannot write.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{Db, fixture, json_of, spawn};
use crate::process::{LIGHTSPEED_TOKEN as NODE_TOKEN, Node};

/// The location of the seed's split check.
const LOCATION: &str = "1340570962231298";

/// The seed's split check with every check id of it renamed by `tag` (one digit): a sale,
/// and its splits, of its own.
fn check(tag: char) -> Vec<u8> {
    let text = String::from_utf8(fixture("open_split_check_original.json")).expect("utf-8");
    text.replace("2190678134095", &format!("900000000000{tag}"))
        .into_bytes()
}

/// The external id of [`check`]'s first check.
fn check_id(tag: char) -> String {
    format!("900000000000{tag}876")
}

async fn post(base: &str, token: &str, body: Vec<u8>) -> (StatusCode, Value, bool) {
    let response = reqwest::Client::new()
        .post(format!(
            "{base}/Sales/partners/lightspeed/events/order.updated"
        ))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body)
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .expect("an answer");
    let retry_after = response.headers().contains_key("retry-after");
    let status = response.status();
    (status, json_of(response).await, retry_after)
}

/// A node that stopped in the middle of a batch, its venue's lock held. Before, the other
/// nodes' deliveries to that venue waited for the lock without limit, used up their pools
/// and answered 500 to every venue (found by the outside attack on issue 15). Now they are
/// answered 409 `venue_busy` within their lock wait, and PostgreSQL ends the stopped node's
/// idle session (`idle_in_transaction_session_timeout`), which releases the lock: the
/// partner's retry then applies, while the stopped node's own delivery was never
/// acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_stops_holding_a_venue_delays_other_nodes_by_a_409_not_an_outage() {
    let app = spawn(Db::Postgres).await;
    let venue = app.venue_with_location("lightspeed", LOCATION, true).await;
    let dir = tempfile::tempdir().expect("dir");
    // The stopped node: its writer thread sleeps for 15 s right after taking the venue's
    // lock, as a process under SIGSTOP would, once.
    let fail_point = format!(
        "{}=1*sleep(15000)",
        diarysync::store::postgres::FAIL_HOLDING_VENUE
    );
    let stopped = Node::start_with_env(
        dir.path(),
        &app.database_url,
        "database_writers = 1",
        "warn",
        &[("FAILPOINTS", &fail_point)],
    )
    .await;
    let base = stopped.base.clone();
    let on_stopped = tokio::spawn(async move { post(&base, NODE_TOKEN, check('1')).await });
    wait_for_advisory_locks(&app.database_url, 2).await;

    let started = Instant::now();
    let (status, body, retry_after) =
        post(&app.base, crate::helpers::LIGHTSPEED_TOKEN, check('2')).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"], "venue_busy", "{body}");
    assert!(retry_after, "a 409 says when to retry");
    let event = app.event(&body["event_id"]).await;
    assert_eq!(
        event["reason"], "venue_busy",
        "the refusal is recorded: {event}"
    );

    // The partner retries; PostgreSQL ends the stopped node's session after 10 s idle.
    let applied = loop {
        let (status, body, _) = post(&app.base, crate::helpers::LIGHTSPEED_TOKEN, check('2')).await;
        if status == StatusCode::OK {
            break body;
        }
        assert_eq!(
            status,
            StatusCode::CONFLICT,
            "only busy, never a failure: {body}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(40),
            "the stopped node's lock was never released"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(applied["outcome"], "processed", "{applied}");

    let (status, body, _) = on_stopped.await.expect("the stopped node's delivery");
    assert!(
        !status.is_success(),
        "a write whose session the server ended is not acknowledged: {status} {body}"
    );
    let sales = app
        .admin_get(&format!("/venues/{venue}/sales?limit=100"))
        .await;
    let ids: Vec<&str> = sales
        .as_array()
        .expect("sales")
        .iter()
        .filter_map(|s| s["external_id"].as_str())
        .collect();
    assert!(
        ids.contains(&check_id('2').as_str()) && !ids.contains(&check_id('1').as_str()),
        "only the acknowledged sale is stored: {sales}"
    );
}

/// Waits until some transaction on the database holds `locks` advisory locks (a sale's and
/// its venue's: 2; the migration's: 1).
async fn wait_for_advisory_locks(url: &str, locks: i64) {
    use sqlx::Connection as _;
    let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
    let started = Instant::now();
    loop {
        // A delivery's sale lock and then its venue's, in one session: a session holding
        // only the first has not reached the venue yet (under load, a delivery sent then got
        // the venue first and was answered 200).
        let held: i64 = sqlx::query_scalar(
            "SELECT COALESCE(MAX(n), 0) FROM (
                 SELECT count(*) AS n FROM pg_locks l JOIN pg_database d ON d.oid = l.database
                 WHERE l.locktype = 'advisory' AND l.granted AND d.datname = current_database()
                 GROUP BY l.pid) held",
        )
        .fetch_one(&mut conn)
        .await
        .expect("pg_locks");
        if held >= locks {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the stopped node never took its locks"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A node whose writers cannot connect (the server's connection limit reached) answered
/// `/readyz` 200 while failing nearly every delivery with 500, because only the pool was
/// probed (found by the outside attack on issue 15). Each writer is probed now, and
/// readiness comes back once the server takes connections again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_writers_cannot_connect_is_not_ready_until_they_can() {
    let database = crate::helpers::empty_database(Db::Postgres).await;
    let role = format!(
        "ds_limited_{}",
        database.url.rsplit('/').next().expect("a database name")
    );
    let admin = std::env::var("DIARYSYNC_TEST_PG_URL").expect("the test server");
    crate::helpers::run_sql_at(
        Db::Postgres,
        &admin,
        &format!(
            "CREATE ROLE {role} LOGIN CONNECTION LIMIT 6;
             ALTER DATABASE {db} OWNER TO {role};",
            db = database.url.rsplit('/').next().expect("name")
        ),
    )
    .await;
    // postgres://postgres@host:port/db as the limited role.
    let (scheme_user, rest) = database.url.split_once('@').expect("a user in the URL");
    let scheme = scheme_user.split("//").next().expect("scheme");
    let url = format!("{scheme}//{role}@{rest}");
    let dir = tempfile::tempdir().expect("dir");
    let node = Node::start(dir.path(), &url, "database_writers = 2").await;

    // The server ends the writers' sessions (a restart of a proxy, an operator), and other
    // processes take every connection the role has left, so the writers cannot reconnect;
    // the pool keeps the one it has.
    crate::helpers::run_sql_at(
        Db::Postgres,
        &admin,
        &format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE usename = '{role}' AND application_name LIKE 'diarysync-writer-%'"
        ),
    )
    .await;
    use sqlx::Connection as _;
    // Room for the pool's connections (requests, the webhook dispatcher, the silence watch)
    // and the two writers; at start, also for the connection that first checked the server,
    // until it is gone.
    let mut held = Vec::new();
    while held.len() < 6 {
        match sqlx::PgConnection::connect(&url).await {
            Ok(conn) => held.push(conn),
            Err(_) => break,
        }
    }
    assert!(
        !held.is_empty(),
        "the test holds the role's last connections"
    );
    assert_eq!(
        readiness(&node.base).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "not ready while its writers have no connection"
    );

    crate::helpers::run_sql_at(
        Db::Postgres,
        &admin,
        &format!("ALTER ROLE {role} CONNECTION LIMIT -1"),
    )
    .await;
    until_ready(&node.base, "ready again once connections are allowed").await;
    drop(held);
}

async fn readiness(base: &str) -> StatusCode {
    reqwest::Client::new()
        .get(format!("{base}/readyz"))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .expect("readyz")
        .status()
}

/// A writer's idle session ended by the server (a failover, a DBA's idle-session reaper, a
/// proxy's timeout) failed the next batch whole: every delivery in it answered 500 (found
/// by the outside attack on issue 15). Nothing was written on the dead session, so the
/// batch now runs again on a new connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_that_finds_its_writers_session_ended_runs_again_on_a_new_one() {
    let app = spawn(Db::Postgres).await;
    app.venue_with_location("lightspeed", LOCATION, true).await;
    let (status, body, _) = post(&app.base, crate::helpers::LIGHTSPEED_TOKEN, check('3')).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let admin = std::env::var("DIARYSYNC_TEST_PG_URL").expect("the test server");
    let database = app
        .database_url
        .rsplit('/')
        .next()
        .expect("name")
        .to_owned();
    crate::helpers::run_sql_at(Db::Postgres, &admin, &end_writer_sessions(&database)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let deliveries = (0..8u8).map(|n| {
        let base = app.base.clone();
        tokio::spawn(async move {
            let tag = char::from(b'4' + n);
            post(&base, crate::helpers::LIGHTSPEED_TOKEN, check(tag)).await
        })
    });
    for delivery in deliveries {
        let (status, body, _) = delivery.await.expect("delivery");
        assert_eq!(status, StatusCode::OK, "{body}");
    }
}

/// Writers that reconnect to a server that is now read-only (a failover onto a standby,
/// `default_transaction_read_only`) answered the readiness probe's query, so `/readyz` said
/// 200 while every delivery was a 500 (found by the outside attack on issue 15). The probe
/// now runs what only a writable session may, and a read-only writer reconnects after its
/// batch, so readiness returns once the server takes writes again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_on_a_read_only_server_make_the_node_not_ready_until_it_takes_writes() {
    let app = spawn(Db::Postgres).await;
    let admin = std::env::var("DIARYSYNC_TEST_PG_URL").expect("the test server");
    let database = app
        .database_url
        .rsplit('/')
        .next()
        .expect("name")
        .to_owned();
    assert_eq!(readiness(&app.base).await, StatusCode::OK);
    let end_writers = end_writer_sessions(&database);
    crate::helpers::run_sql_at(
        Db::Postgres,
        &admin,
        &format!("ALTER DATABASE {database} SET default_transaction_read_only = on; {end_writers}"),
    )
    .await;
    // The first probe may meet the dead sessions; the writers then reconnect read-only.
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(readiness(&app.base).await);
    }
    assert_eq!(
        seen.last(),
        Some(&StatusCode::SERVICE_UNAVAILABLE),
        "not ready while the writers' sessions are read-only: {seen:?}"
    );
    crate::helpers::run_sql_at(
        Db::Postgres,
        &admin,
        &format!("ALTER DATABASE {database} RESET default_transaction_read_only"),
    )
    .await;
    until_ready(&app.base, "ready again once the server takes writes").await;
}

/// A node frozen while it migrated held a session lock no server timeout ends, and every
/// node started after it waited, silently, for as long as the freeze lasted (found by the
/// outside attack on issue 15). The lock is now its transaction's: PostgreSQL ends the
/// frozen node's idle transaction after 10 s, and the next node migrates and starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_frozen_while_migrating_keeps_the_next_from_starting_only_seconds() {
    let database = crate::helpers::empty_database(Db::Postgres).await;
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("frozen.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{}\"\ndatabase_url = \"{}\"\nadmin_token = \"{}\"\n",
            crate::process::free_port(),
            database.url,
            crate::helpers::ADMIN_TOKEN
        ),
    )
    .expect("config");
    let mut frozen = std::process::Command::new(env!("CARGO_BIN_EXE_diarysync"))
        .args(["serve", "--config"])
        .arg(&config)
        .env(
            "FAILPOINTS",
            format!(
                "{}=1*sleep(20000)",
                diarysync::store::postgres::FAIL_MIGRATING
            ),
        )
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("starts");
    wait_for_advisory_locks(&database.url, 1).await;
    let next =
        tokio::time::timeout(Duration::from_secs(40), crate::helpers::spawn_on(database)).await;
    let _ = frozen.kill();
    let _ = frozen.wait();
    let next = next.expect("the next node started while the other was still frozen");
    assert_eq!(readiness(&next.base).await, StatusCode::OK);
}

/// Waits (30 s at most, else fails saying `why`) until `/readyz` answers 200.
async fn until_ready(base: &str, why: &str) {
    let started = Instant::now();
    while readiness(base).await != StatusCode::OK {
        assert!(started.elapsed() < Duration::from_secs(30), "{why}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// SQL that ends the writers' sessions of the node(s) on `database` (by their
/// `application_name`), as a failover, a proxy or a DBA would.
fn end_writer_sessions(database: &str) -> String {
    format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = '{database}' AND application_name LIKE 'diarysync-writer-%'"
    )
}
