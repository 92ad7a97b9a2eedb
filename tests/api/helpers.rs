//! Spawning a real diarysync on a random port, on a fresh SQLite file or a fresh PostgreSQL
//! database, and talking to it over HTTP like a partner or an operator would.

use std::sync::atomic::{AtomicU32, Ordering};

use diarysync::app::App;
use diarysync::config::Config;
use diarysync::partners::auth::hmac_sha256_hex;
use diarysync::store::SqlStoreHandle;
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use tokio::sync::oneshot;

/// Which store a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";
pub const PUBLIC_URL: &str = "https://gateway.test";
pub const LIGHTSPEED_TOKEN: &str = "ls-bearer-token";
pub const HMAC_SECRET: &str = "hmac-shared-secret";

/// Every auth scheme, each on a partner using the Lightspeed handler.
const PARTNERS: &str = r#"
[[partners]]
name = "lightspeed"
handler = "lightspeed-kseries"
[partners.auth]
scheme = "bearer"
token = "ls-bearer-token"

[[partners]]
name = "ls-basic"
handler = "lightspeed-kseries"
[partners.auth]
scheme = "basic"
username = "lightspeed"
password = "basic-password"

[[partners]]
name = "ls-header-key"
handler = "lightspeed-kseries"
[partners.auth]
scheme = "api-key"
header = "X-API-SECRET"
value = "header-key-value"

[[partners]]
name = "ls-param-key"
handler = "lightspeed-kseries"
[partners.auth]
scheme = "api-key"
param = "api_key"
value = "param-key-value"

[[partners]]
name = "ls-url-token"
handler = "lightspeed-kseries"
[partners.auth]
scheme = "url-token"
secret = "url-token-secret"

[[partners]]
name = "signed"
handler = "lightspeed-kseries"
[partners.auth]
scheme = "hmac-sha256"
secret = "hmac-shared-secret"

[[partners]]
name = "signed-body"
handler = "lightspeed-kseries"
[partners.auth]
scheme = "hmac-sha256"
secret = "hmac-shared-secret"
header = "X-Body-Signature"
signed = "body"

[[partners]]
name = "open"
handler = "lightspeed-kseries"
[partners.auth]
scheme = "none"
"#;

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub store: SqlStoreHandle,
    pub database_url: String,
    _dir: tempfile::TempDir,
    _shutdown: oneshot::Sender<()>,
}

static DATABASES: AtomicU32 = AtomicU32::new(0);

/// A fresh, empty PostgreSQL database on the test server, and its URL.
async fn fresh_postgres_database() -> String {
    use sqlx::Connection;
    let admin_url = std::env::var("DIARYSYNC_TEST_PG_URL").expect(
        "DIARYSYNC_TEST_PG_URL is not set: run the suite with scripts/test, which starts a \
         private PostgreSQL server, or point the variable at one",
    );
    let name = format!(
        "ds_{}_{}_{}",
        std::process::id(),
        DATABASES.fetch_add(1, Ordering::Relaxed),
        chrono::Utc::now().timestamp_subsec_nanos()
    );
    let mut conn = sqlx::PgConnection::connect(&admin_url)
        .await
        .expect("connect to the test PostgreSQL server");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .expect("create a test database");
    let base = admin_url
        .rsplit_once('/')
        .map_or(admin_url.as_str(), |(base, _)| base);
    format!("{base}/{name}")
}

pub async fn spawn(db: Db) -> TestApp {
    spawn_with(db, "").await
}

/// A database of its own for one test: a file in a temp dir, or a fresh PostgreSQL database.
#[derive(Debug)]
pub struct EmptyDatabase {
    pub url: String,
    dir: tempfile::TempDir,
}

pub async fn empty_database(db: Db) -> EmptyDatabase {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = match db {
        Db::Sqlite => format!("sqlite://{}", dir.path().join("diarysync.db").display()),
        Db::Postgres => fresh_postgres_database().await,
    };
    EmptyDatabase { url, dir }
}

/// Runs SQL statements on a test database, outside the service.
pub async fn run_sql(db: Db, database: &EmptyDatabase, sql: &str) {
    run_sql_at(db, &database.url, sql).await
}

/// Runs SQL statements on the database at `url` (a running app's), outside the service.
pub async fn run_sql_at(db: Db, url: &str, sql: &str) {
    match db {
        Db::Sqlite => {
            let path = url.trim_start_matches("sqlite://");
            let conn = rusqlite::Connection::open(path).expect("open");
            conn.busy_timeout(std::time::Duration::from_secs(10))
                .expect("busy timeout");
            conn.execute_batch(sql).expect("SQL runs");
        }
        Db::Postgres => {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
            sqlx::raw_sql(sql)
                .execute(&mut conn)
                .await
                .expect("SQL runs");
        }
    }
}

/// Spawns with extra top-level config lines (e.g. `max_body_bytes = 100`).
pub async fn spawn_with(db: Db, extra: &str) -> TestApp {
    spawn_on_with(empty_database(db).await, extra).await
}

/// A second node on `app`'s database, with its own config `extra`: several nodes on one
/// PostgreSQL, in one test process.
pub async fn spawn_beside(app: &TestApp, extra: &str) -> TestApp {
    let database = EmptyDatabase {
        url: app.database_url.clone(),
        dir: tempfile::tempdir().expect("temp dir"),
    };
    spawn_on_with(database, extra).await
}

/// Spawns on a database prepared by the test.
pub async fn spawn_on(database: EmptyDatabase) -> TestApp {
    spawn_on_with(database, "").await
}

async fn spawn_on_with(database: EmptyDatabase, extra: &str) -> TestApp {
    let EmptyDatabase {
        url: database_url,
        dir,
    } = database;
    // The tests' own lock wait, unless the test sets one.
    let lock_wait = if extra.contains("sale_lock_wait_ms") {
        ""
    } else {
        "sale_lock_wait_ms = 200\n"
    };
    let toml = format!(
        "listen = \"127.0.0.1:0\"\npublic_url = \"{PUBLIC_URL}\"\ndatabase_url = \"{database_url}\"\n\
         admin_token = \"{ADMIN_TOKEN}\"\n{lock_wait}{extra}\n{PARTNERS}"
    );
    let config = Config::from_toml(&toml).expect("test config is valid");
    let app = App::build(config).await.expect("app builds");
    let base = format!("http://127.0.0.1:{}", app.port());
    let store = app.store().clone();
    let (shutdown, stopped) = oneshot::channel::<()>();
    tokio::spawn(app.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    TestApp {
        base,
        client: reqwest::Client::new(),
        store,
        database_url,
        _dir: dir,
        _shutdown: shutdown,
    }
}

/// A Lightspeed fixture (`tests/fixtures/lightspeed/{name}`).
pub fn fixture(name: &str) -> Vec<u8> {
    fixture_in("lightspeed", name)
}

/// A fixture of any partner (`tests/fixtures/{dir}/{name}`).
pub fn fixture_in(dir: &str, name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{dir}/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {path}: {e}"))
}

/// Deserialises a response body as JSON, with the body in the panic message if it is not.
/// The `action` of each entry of an audit trail page (`GET /api/v1/audit`), newest first.
pub fn audit_actions(trail: &Value) -> Vec<&str> {
    trail
        .as_array()
        .expect("an audit trail page")
        .iter()
        .filter_map(|entry| entry["action"].as_str())
        .collect()
}

pub async fn json_of(response: Response) -> Value {
    let text = response.text().await.expect("response body");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

impl TestApp {
    /// Posts to the Sales route as the `lightspeed` partner (bearer token).
    pub async fn post_lightspeed(&self, body: &[u8]) -> Response {
        self.client
            .post(format!(
                "{}/Sales/partners/lightspeed/events/order.updated",
                self.base
            ))
            .bearer_auth(LIGHTSPEED_TOKEN)
            .header("content-type", "application/json")
            .body(body.to_vec())
            .send()
            .await
            .expect("request")
    }

    /// Posts a fixture as Lightspeed and returns the answer's status and JSON.
    pub async fn deliver(&self, fixture_name: &str) -> (StatusCode, Value) {
        let response = self.post_lightspeed(&fixture(fixture_name)).await;
        let status = response.status();
        (status, json_of(response).await)
    }

    /// Posts with the platform's own HMAC scheme, signing body + public URL + path + query.
    pub async fn post_signed(&self, path_and_query: &str, body: &[u8]) -> Response {
        let signature = hmac_sha256_hex(
            HMAC_SECRET.as_bytes(),
            body,
            Some(&format!("{PUBLIC_URL}{path_and_query}")),
        );
        self.client
            .post(format!("{}{path_and_query}", self.base))
            .header("X-Partner-Signature", signature)
            .body(body.to_vec())
            .send()
            .await
            .expect("request")
    }

    pub async fn admin_get(&self, path: &str) -> Value {
        let response = self
            .client
            .get(format!("{}/api/v1{path}", self.base))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), StatusCode::OK, "GET {path}");
        json_of(response).await
    }

    pub async fn admin_post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.admin_send(reqwest::Method::POST, path, body).await
    }

    pub async fn admin_patch(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.admin_send(reqwest::Method::PATCH, path, body).await
    }

    pub async fn admin_put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.admin_send(reqwest::Method::PUT, path, body).await
    }

    async fn admin_send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Value,
    ) -> (StatusCode, Value) {
        let response = self
            .client
            .request(method, format!("{}/api/v1{path}", self.base))
            .bearer_auth(ADMIN_TOKEN)
            .json(&body)
            .send()
            .await
            .expect("request");
        let status = response.status();
        (status, json_of(response).await)
    }

    /// The Prometheus text `/metrics` serves, insisting on a 200.
    pub async fn metrics_text(&self) -> String {
        let response = self
            .client
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), reqwest::StatusCode::OK);
        response.text().await.expect("body")
    }

    /// Posts a Lightspeed fixture and insists on a 200; returns the answer.
    pub async fn deliver_ok(&self, fixture_name: &str) -> Value {
        let (status, answer) = self.deliver(fixture_name).await;
        assert_eq!(status, StatusCode::OK, "{fixture_name}: {answer}");
        answer
    }

    pub async fn booking_view(&self, id: i64) -> Value {
        self.admin_get(&format!("/bookings/{id}")).await
    }

    /// Creates a venue with one location of `partner`, enabled or not; returns its id.
    pub async fn venue_with_location(
        &self,
        partner: &str,
        location_id: &str,
        enabled: bool,
    ) -> i64 {
        let (status, venue) = self
            .admin_post(
                "/venues",
                json!({
                    "name": format!("Venue {location_id}"),
                    "timezone": "Europe/London",
                    "locations": [{ "partner": partner, "location_id": location_id, "enabled": enabled }],
                }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{venue}");
        venue["id"].as_i64().expect("venue id")
    }

    /// Creates a booking and returns its id.
    pub async fn booking(&self, venue_id: i64, booking: Value) -> i64 {
        let (status, created) = self
            .admin_post(&format!("/venues/{venue_id}/bookings"), booking)
            .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        created["id"].as_i64().expect("booking id")
    }

    pub async fn event(&self, id: &Value) -> Value {
        self.admin_get(&format!("/events/{}", id.as_i64().expect("event id")))
            .await
    }

    /// All sales of the `lightspeed` partner with this external id.
    pub async fn sales_with_external_id(&self, external_id: &str) -> Vec<Value> {
        let sales = self
            .admin_get(&format!(
                "/sales?partner=lightspeed&external_id={external_id}"
            ))
            .await;
        sales.as_array().cloned().unwrap_or_default()
    }
}

/// A Checkfront partner (its own handler, a URL token), as the tests configure it.
pub const CHECKFRONT_PARTNER: &str = r#"
[[partners]]
name = "checkfront"
handler = "checkfront"
[partners.auth]
scheme = "url-token"
secret = "cf-token"
"#;

impl TestApp {
    /// Posts a body to the `checkfront` partner's booking callback.
    pub async fn post_checkfront(&self, body: Vec<u8>, content_type: &str) -> (StatusCode, Value) {
        let response = self
            .client
            .post(format!(
                "{}/partners/checkfront/webhooks/callback/booking?token=cf-token",
                self.base
            ))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("request");
        let status = response.status();
        (status, json_of(response).await)
    }

    /// The status of an admin GET, whatever it is.
    pub async fn admin_get_status(&self, path: &str) -> StatusCode {
        self.client
            .get(format!("{}/api/v1{path}", self.base))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("request")
            .status()
    }
}

/// Held by each test that configures the fail point `FAIL_APPLY_SALE`: fail points are
/// global to the test process, and its tests run at once.
#[cfg(feature = "failpoints")]
pub static FAIL_APPLY_SALE_HELD: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Runs each listed `async fn(Db)` scenario as a test on SQLite and on PostgreSQL.
#[macro_export]
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::Db::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::Db::Postgres).await
                }
            )*
        }
    };
}

/// A whole-number knob from the environment, for the tests a long run scales up
/// (`DIARYSYNC_CRASH_CYCLES`, `DIARYSYNC_NODES_SALES`, ...); `default` when unset.
pub fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The venue of the split-check seed payloads (`open_split_check_original.json` and its splits).
pub const SPLIT_LOCATION: &str = "1340570962231298";

/// The lunch booking at table 10 that the split-check seed payloads belong to by table and time.
pub fn split_venue_booking() -> Value {
    json!({ "start": "2025-12-29T11:45:00Z", "duration_minutes": 90, "covers": 2, "tables": ["10"] })
}

impl TestApp {
    /// A venue owning [`SPLIT_LOCATION`] with [`split_venue_booking`]: (venue id, booking id).
    pub async fn split_venue_with_booking(&self) -> (i64, i64) {
        let venue = self
            .venue_with_location("lightspeed", SPLIT_LOCATION, true)
            .await;
        (venue, self.booking(venue, split_venue_booking()).await)
    }
}
