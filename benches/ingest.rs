//! Ingest benchmark: durable event ingest over loopback HTTP against the machine's own ceiling.
//!
//! `cargo bench --bench ingest [-- --seconds 10 --concurrency 64]` runs, in one process
//! and one run:
//! 1. the ceiling: a minimal axum server that reads the same body and answers 200;
//! 2. diarysync on a fresh SQLite file (fsync-durable commits) with 1,000 venues and 100,000
//!    bookings, driven with signed Lightspeed OPEN/UPDATE/CLOSE notifications (the seed's
//!    4 KB check as the body) across many sales, at the same fixed concurrency;
//! 3. replay of everything stored, without HTTP.
//!
//! It prints events/s, latency percentiles, the ratio to the ceiling and the process's peak
//! RSS (server and load generator together). Numbers are for people and for
//! `docs/PERFORMANCE.md`; nothing here asserts a timing.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use diarysync::app::App;
use diarysync::config::Config;
use diarysync::gateway::Gateway;
use diarysync::partners::auth::hmac_sha256_hex;
use diarysync::store::ReplayFilter;

const SECRET: &str = "bench-hmac-secret";
const PUBLIC_URL: &str = "http://bench.local";
const VENUES: usize = 1_000;
const BOOKINGS: usize = 100_000;

struct Options {
    seconds: u64,
    concurrency: usize,
}

fn options() -> Options {
    let args: Vec<String> = std::env::args().collect();
    let value = |name: &str, default: u64| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    Options {
        seconds: value("--seconds", 10),
        concurrency: usize::try_from(value("--concurrency", 64)).unwrap_or(64),
    }
}

/// The seed's split-check order with markers for what varies per request.
fn template() -> String {
    let path = format!(
        "{}/tests/fixtures/lightspeed/open_split_check_original.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut order: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path).expect("fixture")).expect("json");
    order["notificationType"] = "__TYPE__".into();
    order["account"]["id"] = "__SALE__".into();
    order["account"]["businessLocationId"] = "__LOC__".into();
    order["account"]["updateDate"] = serde_json::json!(1_111_111_111_111u64);
    order["businessLocationId"] = serde_json::json!(2_222_222_222_222u64);
    order.to_string()
}

fn body(template: &str, sale: u64, step: u64) -> String {
    let kind = ["OPEN", "UPDATE", "CLOSE"][usize::try_from(step % 3).unwrap_or(0)];
    let location = sale % VENUES as u64;
    template
        .replace("__TYPE__", kind)
        .replace("__SALE__", &format!("bench-{sale}"))
        .replace("__LOC__", &format!("{location}"))
        .replace("1111111111111", &format!("{}", 1_767_013_602_149 + step))
        .replace("2222222222222", &format!("{location}"))
}

/// Latencies of one run, in microseconds.
struct Run {
    events: u64,
    errors: u64,
    elapsed: Duration,
    latencies: Vec<u32>,
}

impl Run {
    fn rate(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return 0.0;
        }
        let index = ((self.latencies.len() - 1) as f64 * p).round() as usize;
        f64::from(self.latencies[index]) / 1000.0
    }
}

/// Posts signed notifications from `concurrency` workers for `seconds`.
async fn drive(url: &str, path: &str, options: &Options, template: Arc<String>) -> Run {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(options.concurrency)
        .build()
        .expect("client");
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(options.seconds);
    let signed_url = format!("{PUBLIC_URL}{path}");
    let mut workers = Vec::new();
    for worker in 0..options.concurrency as u64 {
        let (client, template, errors) =
            (client.clone(), Arc::clone(&template), Arc::clone(&errors));
        let (target, signed_url) = (format!("{url}{path}"), signed_url.clone());
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(50_000);
            let mut step = 0u64;
            while Instant::now() < deadline {
                // Each worker walks its own sales through OPEN, UPDATE, CLOSE.
                let sale = worker * 1_000_000 + step / 3;
                let body = body(&template, sale, step);
                let signature =
                    hmac_sha256_hex(SECRET.as_bytes(), body.as_bytes(), Some(&signed_url));
                let sent = Instant::now();
                let ok = client
                    .post(&target)
                    .header("x-partner-signature", signature)
                    .body(body)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if !ok {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
                latencies.push(u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX));
                step += 1;
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for worker in workers {
        latencies.extend(worker.await.expect("worker"));
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    Run {
        events: latencies.len() as u64,
        errors: errors.load(Ordering::Relaxed),
        elapsed,
        latencies,
    }
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
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

fn report(name: &str, run: &Run, ceiling: Option<&Run>) {
    let ratio = ceiling.map_or(String::new(), |c| {
        format!("  {:.2} x ceiling", run.rate() / c.rate())
    });
    println!(
        "{name:<28} {:>9.0} events/s  p50 {:>6.2} ms  p99 {:>6.2} ms  p99.9 {:>6.2} ms  errors {}{ratio}",
        run.rate(),
        run.percentile(0.50),
        run.percentile(0.99),
        run.percentile(0.999),
        run.errors
    );
}

async fn ceiling(options: &Options, template: Arc<String>) -> Run {
    let app = axum::Router::new().route(
        "/Sales/partners/{partner}/events/{event}",
        axum::routing::post(|body: axum::body::Bytes| async move {
            if body.is_empty() { "empty" } else { "ok" }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let run = drive(
        &url,
        "/Sales/partners/bench/events/order",
        options,
        template,
    )
    .await;
    server.abort();
    run
}

fn config_text(database_url: &str) -> String {
    format!(
        "listen = \"127.0.0.1:0\"\npublic_url = \"{PUBLIC_URL}\"\ndatabase_url = \"{database_url}\"\n\
         admin_token = \"bench-admin-token-0123\"\n\
         [[partners]]\nname = \"lightspeed\"\nhandler = \"lightspeed-kseries\"\n\
         [partners.auth]\nscheme = \"hmac-sha256\"\nsecret = \"{SECRET}\"\n"
    )
}

/// 1,000 venues each owning one Lightspeed location, and 100,000 bookings across them.
fn seed(database_url: &str) {
    let path = database_url.trim_start_matches("sqlite://");
    let mut conn = rusqlite::Connection::open(path).expect("open");
    let tx = conn.transaction().expect("begin");
    for venue in 0..VENUES as i64 {
        tx.execute(
            "INSERT INTO venues (id, name, timezone, created_at) VALUES (?1, ?2, 'Europe/Paris', 0)",
            rusqlite::params![venue + 1, format!("Venue {venue}")],
        )
        .expect("venue");
        tx.execute(
            "INSERT INTO partner_locations (venue_id, partner, location_id, enabled) VALUES (?1, 'lightspeed', ?2, 1)",
            rusqlite::params![venue + 1, venue.to_string()],
        )
        .expect("location");
    }
    let day = 86_400_000i64;
    for booking in 0..BOOKINGS as i64 {
        let start = 1_766_966_400_000 + (booking % 30) * day + (booking % 8) * 1_800_000;
        tx.execute(
            "INSERT INTO bookings (venue_id, reference, start_at, end_at, covers, status, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, 2, 'confirmed', 0, 0)",
            rusqlite::params![booking % VENUES as i64 + 1, format!("B{booking}"), start, start + 5_400_000],
        )
        .expect("booking");
        tx.execute(
            "INSERT INTO booking_tables (booking_id, position, table_key) VALUES (?1, 0, ?2)",
            rusqlite::params![booking + 1, ((booking % 20) + 1).to_string()],
        )
        .expect("table");
    }
    tx.execute("UPDATE venues SET longest_booking_ms = 5400000", [])
        .expect("span");
    tx.commit().expect("commit");
}

async fn run() {
    let options = options();
    let template = Arc::new(template());
    println!(
        "ingest benchmark: {} s per run, {} concurrent connections, body {} bytes, {} cores",
        options.seconds,
        options.concurrency,
        template.len(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let ceiling = ceiling(&options, Arc::clone(&template)).await;
    report("ceiling (axum, read body)", &ceiling, None);

    let dir = tempfile::tempdir().expect("temp dir");
    let database_url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let app = App::build(Config::from_toml(&config_text(&database_url)).expect("config"))
        .await
        .expect("app");
    let seeding = Instant::now();
    seed(&database_url);
    println!(
        "seeded {VENUES} venues and {BOOKINGS} bookings in {:.1} s",
        seeding.elapsed().as_secs_f64()
    );
    let url = format!("http://127.0.0.1:{}", app.port());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    let sqlite = drive(
        &url,
        "/Sales/partners/lightspeed/events/order",
        &options,
        Arc::clone(&template),
    )
    .await;
    report("diarysync, SQLite durable", &sqlite, Some(&ceiling));
    let _ = stop.send(());
    let _ = server.await;

    let store = diarysync::store::open(&database_url).await.expect("store");
    let gateway = Gateway::new(
        Config::from_toml(&config_text(&database_url)).expect("config"),
        Arc::new(store),
    );
    let replaying = Instant::now();
    let summary = gateway
        .replay(&ReplayFilter::default(), || {})
        .await
        .expect("replay");
    let seconds = replaying.elapsed().as_secs_f64();
    println!(
        "replay (no HTTP)             {:>9.0} events/s  ({} events in {seconds:.1} s: {:?})",
        summary.replayed as f64 / seconds,
        summary.replayed,
        summary.outcomes
    );
    println!("peak RSS (whole process)     {:>9.1} MiB", peak_rss_mib());
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run());
}
