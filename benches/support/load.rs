//! The load generator and the servers the benchmarks drive: signed Lightspeed notifications
//! cut from the seed's split check, closed- and open-loop drivers, diarysync and the ceiling
//! server as child processes, and the seeded diary on SQLite and PostgreSQL.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use diarysync::partners::auth::hmac_sha256_hex;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::Mutex;

use super::Options;

pub const SECRET: &str = "bench-hmac-secret";
pub const PUBLIC_URL: &str = "http://bench.local";
pub const PATH: &str = "/Sales/partners/lightspeed/events/order.updated";
pub const VENUES: i64 = 1_000;
pub const BOOKINGS: i64 = 100_000;
/// Tables per venue; each has one lunch booking (12:00-14:00 UTC) a day.
pub const TABLES: i64 = 20;
/// 2022-01-03T00:00:00Z: the first day of the diary, far enough back that even the
/// 1,000-day diary of the matching run ends before today (diarysync refuses snapshots
/// stamped more than a day ahead of its clock).
pub const DAY0_MS: i64 = 1_641_168_000_000;
pub const DAY_MS: i64 = 86_400_000;
/// Sales open at 12:30, inside that day's booking of their table.
pub const SALE_OPEN_MS: i64 = 45_000_000;

/// The seed's split-check order cut into literal pieces and the fields that vary per request.
pub struct Template {
    pieces: Vec<Piece>,
}

#[derive(Clone)]
pub enum Piece {
    Text(String),
    Kind,
    Sale,
    Location,
    OpenDate,
    UpdateDate,
    TableName,
    TableNumber,
    Tables,
}

/// One request's varying fields.
pub struct Notification {
    pub kind: &'static str,
    pub sale: u64,
    pub location: i64,
    pub table: i64,
    pub open_date: i64,
    pub update_date: i64,
}

impl Notification {
    /// Step `step` of worker `worker`: each worker walks its own sales through OPEN, UPDATE
    /// and CLOSE; each sale lands at a table of a venue during one of the seeded lunches,
    /// spread over the whole diary as real checks are.
    pub fn of(worker: u64, step: u64) -> Notification {
        let sale = worker * 10_000_000 + step / 3;
        let (location, table, day) = spread(sale, VENUES, days_seeded());
        Notification {
            kind: ["OPEN", "UPDATE", "CLOSE"][usize::try_from(step % 3).unwrap_or(0)],
            sale,
            location,
            table,
            open_date: DAY0_MS + day * DAY_MS + SALE_OPEN_MS,
            update_date: snapshot_time(DAY0_MS + day * DAY_MS + SALE_OPEN_MS, step),
        }
    }
}

impl Notification {
    /// Request `step` of a paced run: `per_second` sales are open at a time and each gets
    /// its OPEN, UPDATE and CLOSE a second apart, as a POS updates many checks at once. Each
    /// `run` has sales of its own (a run on a server another run used sends no duplicates).
    pub fn interleaved(per_second: u64, step: u64, run: u64) -> Notification {
        let round = step / per_second;
        let sale = (round / 3) * per_second + step % per_second;
        Notification::of(1_000 + run, sale * 3 + round % 3)
    }
}

/// The venue (location id), table and day of sale `sale`: a fixed mix of its number, so
/// every booking of the diary is as likely as any other.
pub fn spread(sale: u64, venues: i64, days: i64) -> (i64, i64, i64) {
    let mixed = sale.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11;
    let mixed = i64::try_from(mixed).unwrap_or(0);
    (
        mixed % venues,
        (mixed / venues) % TABLES + 1,
        (mixed / venues / TABLES) % days.max(1),
    )
}

/// When step `step` of a sale opened at `open_date` is taken, as a POS stamps it: the OPEN
/// at the open time, the UPDATE a quarter of an hour later, the CLOSE after an hour (a
/// millisecond per step keeps every snapshot of a run distinct).
pub fn snapshot_time(open_date: i64, step: u64) -> i64 {
    let offset = [0, 900_000, 3_600_000][usize::try_from(step % 3).unwrap_or(0)];
    open_date + offset + i64::try_from(step % 1_000).unwrap_or(0)
}

pub fn days_seeded() -> i64 {
    BOOKINGS / VENUES / TABLES
}

impl Template {
    pub fn load() -> Template {
        let path = format!(
            "{}/tests/fixtures/lightspeed/open_split_check_original.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let mut order: serde_json::Value =
            serde_json::from_slice(&std::fs::read(path).expect("fixture")).expect("json");
        order["notificationType"] = "@KIND@".into();
        order["businessLocationId"] = "@LOCATION@".into();
        order["account"]["businessLocationId"] = "@LOCATION@".into();
        order["account"]["id"] = "@SALE@".into();
        order["account"]["openDate"] = "@OPEN@".into();
        order["account"]["updateDate"] = "@UPDATE@".into();
        order["account"]["tableName"] = "@TABLE_NAME@".into();
        order["account"]["tableNumber"] = "@TABLE_NUMBER@".into();
        order["account"]["tables"] = "@TABLES@".into();
        let text = order.to_string();
        let markers = [
            ("\"@KIND@\"", Piece::Kind),
            ("\"@SALE@\"", Piece::Sale),
            ("\"@LOCATION@\"", Piece::Location),
            ("\"@OPEN@\"", Piece::OpenDate),
            ("\"@UPDATE@\"", Piece::UpdateDate),
            ("\"@TABLE_NAME@\"", Piece::TableName),
            ("\"@TABLE_NUMBER@\"", Piece::TableNumber),
            ("\"@TABLES@\"", Piece::Tables),
        ];
        let mut pieces = Vec::new();
        let mut rest = text.as_str();
        while let Some((at, marker, piece)) = markers
            .iter()
            .filter_map(|(marker, piece)| rest.find(marker).map(|at| (at, *marker, piece)))
            .min_by_key(|(at, _, _)| *at)
        {
            pieces.push(Piece::Text(rest[..at].to_owned()));
            pieces.push(piece.clone());
            rest = &rest[at + marker.len()..];
        }
        pieces.push(Piece::Text(rest.to_owned()));
        Template { pieces }
    }

    pub fn render(&self, n: &Notification, out: &mut String) {
        use std::fmt::Write;
        out.clear();
        for piece in &self.pieces {
            let _ = match piece {
                Piece::Text(text) => {
                    out.push_str(text);
                    Ok(())
                }
                Piece::Kind => write!(out, "\"{}\"", n.kind),
                Piece::Sale => write!(out, "\"bench-{}\"", n.sale),
                Piece::Location => write!(out, "{}", n.location),
                Piece::OpenDate => write!(out, "{}", n.open_date),
                Piece::UpdateDate => write!(out, "{}", n.update_date),
                Piece::TableName => write!(out, "\"Table {}\"", n.table),
                Piece::TableNumber => write!(out, "{}", n.table),
                Piece::Tables => write!(out, "[\"{}\"]", n.table),
            };
        }
    }
}

/// One signed request, ready to send.
pub fn signed_request(
    template: &Template,
    n: &Notification,
    scratch: &mut String,
) -> Request<Full<Bytes>> {
    template.render(n, scratch);
    let signature = hmac_sha256_hex(
        SECRET.as_bytes(),
        scratch.as_bytes(),
        Some(&format!("{PUBLIC_URL}{PATH}")),
    );
    Request::post(PATH)
        .header("host", "bench.local")
        .header("content-type", "application/json")
        .header("x-partner-signature", signature)
        .body(Full::new(Bytes::copy_from_slice(scratch.as_bytes())))
        .expect("request")
}

/// What one load run saw.
pub struct Run {
    pub events: u64,
    pub errors: u64,
    pub elapsed: Duration,
    /// Microseconds, sorted.
    pub latencies: Vec<u32>,
}

impl Run {
    pub fn rate(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64()
    }

    pub fn percentile(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return 0.0;
        }
        let index = ((self.latencies.len() - 1) as f64 * p).round() as usize;
        f64::from(self.latencies[index]) / 1000.0
    }

    pub fn of(parts: Vec<(Vec<u32>, u64)>, elapsed: Duration) -> Run {
        let mut latencies = Vec::new();
        let mut errors = 0;
        for (part, failed) in parts {
            latencies.extend(part);
            errors += failed;
        }
        latencies.sort_unstable();
        Run {
            events: latencies.len() as u64,
            errors,
            elapsed,
            latencies,
        }
    }
}

pub type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

pub async fn connect(addr: SocketAddr) -> Sender {
    let stream = TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(connection);
    sender
}

/// Sends one request and reads the whole answer; true on a 2xx.
pub async fn exchange(sender: &mut Sender, request: Request<Full<Bytes>>) -> bool {
    if sender.ready().await.is_err() {
        return false;
    }
    match sender.send_request(request).await {
        Ok(response) => {
            let ok = response.status().is_success();
            ok && response.into_body().collect().await.is_ok()
        }
        Err(_) => false,
    }
}

pub fn micros(elapsed: Duration) -> u32 {
    u32::try_from(elapsed.as_micros()).unwrap_or(u32::MAX)
}

/// Closed loop: `concurrency` connections, each sending its next request when the last is
/// answered, for `seconds`.
pub async fn drive(addr: SocketAddr, options: &Options, template: &Arc<Template>) -> Run {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(options.seconds);
    let mut workers = Vec::new();
    for worker in 0..options.concurrency as u64 {
        let template = Arc::clone(template);
        workers.push(tokio::spawn(async move {
            let mut sender = connect(addr).await;
            let mut latencies = Vec::with_capacity(100_000);
            let mut errors = 0;
            let mut scratch = String::with_capacity(4096);
            let mut step = 0;
            while Instant::now() < deadline {
                let request =
                    signed_request(&template, &Notification::of(worker, step), &mut scratch);
                let sent = Instant::now();
                if !exchange(&mut sender, request).await {
                    errors += 1;
                    sender = connect(addr).await;
                }
                latencies.push(micros(sent.elapsed()));
                step += 1;
            }
            (latencies, errors)
        }));
    }
    let mut parts = Vec::new();
    for worker in workers {
        parts.push(worker.await.expect("worker"));
    }
    Run::of(parts, started.elapsed())
}

/// Open loop: requests are due every 1/`rate` s whatever the answers; latency counts from
/// when each was due. Up to 256 connections carry them.
pub async fn drive_rate(
    addr: SocketAddr,
    rate: u64,
    seconds: u64,
    template: &Arc<Template>,
    run: u64,
) -> Run {
    const CONNECTIONS: u64 = 256;
    let total = rate * seconds;
    let (due, queue) = tokio::sync::mpsc::channel::<(u64, Instant)>(
        usize::try_from(total).unwrap_or(1 << 20).max(1),
    );
    let queue = Arc::new(Mutex::new(queue));
    let started = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let mut workers = Vec::new();
    for _ in 0..CONNECTIONS {
        let (queue, template) = (Arc::clone(&queue), Arc::clone(template));
        workers.push(tokio::spawn(async move {
            let mut sender = connect(addr).await;
            let mut latencies = Vec::new();
            let mut errors = 0;
            let mut scratch = String::with_capacity(4096);
            loop {
                let next = queue.lock().await.recv().await;
                let Some((step, due_at)) = next else { break };
                let n = Notification::interleaved(rate, step, run);
                let request = signed_request(&template, &n, &mut scratch);
                if !exchange(&mut sender, request).await {
                    errors += 1;
                    sender = connect(addr).await;
                }
                latencies.push(micros(due_at.elapsed()));
            }
            (latencies, errors)
        }));
    }
    for step in 0..total {
        let due_at = started + interval.mul_f64(step as f64);
        tokio::time::sleep_until(due_at.into()).await;
        if due.send((step, due_at)).await.is_err() {
            break;
        }
    }
    drop(due);
    let mut parts = Vec::new();
    for worker in workers {
        parts.push(worker.await.expect("worker"));
    }
    Run::of(parts, started.elapsed())
}

/// Two seconds of the same load before measuring: connections open, caches filled, plans
/// made. Its sales are other workers' (numbered from 500), so the measured run starts fresh.
pub async fn warm_up(addr: SocketAddr, options: &Options, template: &Arc<Template>) {
    let warm = Options {
        seconds: 2.min(options.seconds),
        ..options.clone()
    };
    let mut workers = Vec::new();
    for worker in 0..warm.concurrency as u64 {
        let template = Arc::clone(template);
        let deadline = Instant::now() + Duration::from_secs(warm.seconds);
        workers.push(tokio::spawn(async move {
            let mut sender = connect(addr).await;
            let mut scratch = String::with_capacity(4096);
            let mut step = 0;
            while Instant::now() < deadline {
                let n = Notification::of(500 + worker, step);
                if !exchange(&mut sender, signed_request(&template, &n, &mut scratch)).await {
                    sender = connect(addr).await;
                }
                step += 1;
            }
        }));
    }
    for worker in workers {
        let _ = worker.await;
    }
}

/// A server process under test.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
}

impl Server {
    pub fn peak_rss_mib(&self) -> f64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()
            .and_then(|status| {
                status
                    .lines()
                    .find(|l| l.starts_with("VmHWM:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|kb| kb.parse::<f64>().ok())
            })
            .map_or(0.0, |kb| kb / 1024.0)
    }

    /// With `DIARYSYNC_BENCH_METRICS` set, prints the server's store histograms (commit
    /// time, writes per batch, time from receipt to committed outcome): where a tail comes
    /// from.
    pub async fn print_store_metrics(&self) {
        if std::env::var_os("DIARYSYNC_BENCH_METRICS").is_none() {
            return;
        }
        let text = match reqwest::get(format!("http://{}/metrics", self.addr)).await {
            Ok(response) => response.text().await.unwrap_or_default(),
            Err(error) => format!("no metrics: {error}"),
        };
        for line in text.lines().filter(|line| {
            line.starts_with("diarysync_store_") || line.starts_with("diarysync_event_processing")
        }) {
            println!("{line}");
        }
    }

    /// Asks the server to stop (SIGTERM) and waits for it.
    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }

    pub async fn wait_until_listening(&self, path: &str) {
        let client = reqwest::Client::new();
        for _ in 0..600 {
            let answered = client
                .get(format!("http://{}{path}", self.addr))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if answered {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the server at {} did not come up", self.addr);
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The minimal axum server, in a child process of this binary.
pub async fn spawn_ceiling() -> Server {
    let port = free_port();
    let child = Command::new(std::env::current_exe().expect("own path"))
        .args(["--ceiling-server", &port.to_string()])
        .stdout(Stdio::null())
        .spawn()
        .expect("ceiling process");
    let server = Server {
        child,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
    };
    server.wait_until_listening("/up").await;
    server
}

pub fn ceiling_server(port: u16) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async move {
        let app = axum::Router::new()
            .route("/up", axum::routing::get(|| async { "up" }))
            .route(
                "/Sales/partners/{partner}/events/{event}",
                axum::routing::post(|body: Bytes| async move {
                    if body.is_empty() { "empty" } else { "ok" }
                }),
            );
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind");
        axum::serve(listener, app).await.expect("serve");
    });
}

pub fn config_text(database_url: &str, port: u16) -> String {
    format!(
        "listen = \"127.0.0.1:{port}\"\npublic_url = \"{PUBLIC_URL}\"\n\
         database_url = \"{database_url}\"\nadmin_token = \"bench-admin-token-0123\"\n\
         [[partners]]\nname = \"lightspeed\"\nhandler = \"lightspeed-kseries\"\nrate_limit_per_second = 0\n\
         [partners.auth]\nscheme = \"hmac-sha256\"\nsecret = \"{SECRET}\"\n"
    )
}

/// diarysync's release binary serving `database_url`, logging warnings only.
pub async fn spawn_diarysync(dir: &Path, database_url: &str, env: &[(&str, &str)]) -> Server {
    let port = free_port();
    let config = dir.join(format!("bench-{port}.toml"));
    std::fs::write(&config, config_text(database_url, port)).expect("config");
    let log = std::fs::File::create(dir.join(format!("server-{port}.log"))).expect("log");
    // DIARYSYNC_BENCH_SERVER runs another build (an earlier commit's) against the same
    // generator, for a before-and-after in one run.
    let binary = std::env::var_os("DIARYSYNC_BENCH_SERVER")
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_diarysync").into());
    let child = Command::new(binary)
        .args(["serve", "--config"])
        .arg(&config)
        .env(
            "RUST_LOG",
            std::env::var("DIARYSYNC_BENCH_LOG").unwrap_or_else(|_| "warn".to_owned()),
        )
        .envs(env.iter().copied())
        // The server logs to standard output: kept beside its standard error.
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("diarysync process");
    let server = Server {
        child,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
    };
    server.wait_until_listening("/readyz").await;
    server
}

/// Booking `b` of a diary over `venues`: venue `b % venues + 1`, table
/// `(b / venues) % 20 + 1`, lunch (12:00-14:00 UTC) on day `b / venues / 20`.
pub fn booking_start(b: i64, venues: i64) -> i64 {
    DAY0_MS + (b / venues / TABLES) * DAY_MS + 43_200_000
}

/// The venues, their Lightspeed locations and the diary, straight into SQLite.
pub fn seed_sqlite(path: &Path, venues: i64, bookings: i64) {
    let mut conn = rusqlite::Connection::open(path).expect("open");
    let tx = conn.transaction().expect("begin");
    {
        let mut venue = tx
            .prepare("INSERT INTO venues (id, name, timezone, created_at, longest_booking_ms) VALUES (?1, ?2, 'Europe/Paris', 0, 7200000)")
            .expect("prepare");
        let mut location = tx
            .prepare("INSERT INTO partner_locations (venue_id, partner, location_id, enabled) VALUES (?1, 'lightspeed', ?2, 1)")
            .expect("prepare");
        for v in 0..venues {
            venue
                .execute(rusqlite::params![v + 1, format!("Venue {v}")])
                .expect("venue");
            location
                .execute(rusqlite::params![v + 1, v.to_string()])
                .expect("location");
        }
        let mut booking = tx
            .prepare(
                "INSERT INTO bookings (id, venue_id, reference, start_at, end_at, covers, status, tables, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, 2, 'confirmed', ?6, 0, 0)",
            )
            .expect("prepare");
        for b in 0..bookings {
            let start = booking_start(b, venues);
            let tables = format!("[\"{}\"]", (b / venues) % TABLES + 1);
            booking
                .execute(rusqlite::params![
                    b + 1,
                    b % venues + 1,
                    format!("B{b}"),
                    start,
                    start + 7_200_000,
                    tables
                ])
                .expect("booking");
        }
    }
    tx.commit().expect("commit");
}

/// The same diary in PostgreSQL, generated by the server.
pub async fn seed_postgres(url: &str) {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
    let statements = [
        format!("INSERT INTO venues (id, name, timezone, created_at, longest_booking_ms)
                 SELECT v, 'Venue ' || v, 'Europe/Paris', 0, 7200000 FROM generate_series(1, {VENUES}) v"),
        format!("INSERT INTO partner_locations (venue_id, partner, location_id, enabled)
                 SELECT v, 'lightspeed', (v - 1)::text, 1 FROM generate_series(1, {VENUES}) v"),
        format!("INSERT INTO bookings (id, venue_id, reference, start_at, end_at, covers, status, tables, created_at, updated_at)
                 SELECT b + 1, b % {VENUES} + 1, 'B' || b, {DAY0_MS} + (b / {VENUES} / {TABLES}) * {DAY_MS} + 43200000,
                        {DAY0_MS} + (b / {VENUES} / {TABLES}) * {DAY_MS} + 50400000, 2, 'confirmed',
                        '[\"' || ((b / {VENUES}) % {TABLES} + 1) || '\"]', 0, 0
                 FROM generate_series(0, {BOOKINGS} - 1) b"),
        "SELECT setval(pg_get_serial_sequence('venues', 'id'), 100000)".to_owned(),
        "SELECT setval(pg_get_serial_sequence('bookings', 'id'), 10000000)".to_owned(),
        "ANALYZE".to_owned(),
    ];
    for statement in statements {
        sqlx::query(&statement)
            .execute(&mut conn)
            .await
            .expect("seed");
    }
}

/// A fresh database on the PostgreSQL server at `admin_url`.
pub async fn fresh_postgres(admin_url: &str) -> String {
    use sqlx::Connection;
    let name = format!("diarysync_bench_{}", std::process::id());
    let mut conn = sqlx::PgConnection::connect(admin_url)
        .await
        .expect("connect");
    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name}"))
        .execute(&mut conn)
        .await;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .expect("create database");
    let base = admin_url
        .rsplit_once('/')
        .map_or(admin_url, |(base, _)| base);
    format!("{base}/{name}")
}
