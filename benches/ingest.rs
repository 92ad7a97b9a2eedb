//! Ingest benchmark: durable event ingest over loopback HTTP against the machine's own
//! ceiling, measured in one run (`docs/PERFORMANCE.md`).
//!
//! `bash scripts/bench` (which also starts a durable private PostgreSQL) or
//! `cargo bench --bench ingest [-- --seconds 5 --concurrency 64 --rate 2000 --only a,b]`
//! runs these phases:
//! 1. `ceiling`: a minimal axum server, in its own process, that reads the same body and
//!    answers 200;
//! 2. `sqlite`: diarysync (the release binary, its own process) on a fresh SQLite file with
//!    fsync-durable commits, 1,000 venues and 100,000 bookings, driven with signed Lightspeed
//!    OPEN/UPDATE/CLOSE notifications (the seed's 3.7 KB split check) across many sales,
//!    each sale matching a booking by table and time, at fixed concurrency;
//! 3. `rate`: the same server at a fixed offered rate (open loop: latency counts from when
//!    each request was due, so a stall is not hidden by the generator waiting for it);
//! 4. `postgres`: phase 2 against PostgreSQL, when `DIARYSYNC_BENCH_PG_URL` names a server;
//! 5. `replay`: every event phase 2 stored, re-processed without HTTP;
//! 6. `matching`: the cost of processing a sale matched by table and time as the diary grows
//!    from 1,000 to 1,000,000 bookings;
//! 7. `sync`: the booking platform's `bookings:sync` of 5,000 bookings, new and unchanged, on
//!    SQLite and PostgreSQL.
//!
//! The load generator runs in this process on the same 2 cores; each server's peak RSS is
//! its own process's. Nothing here asserts a timing: the figures are for people.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use diarysync::config::Config;
use diarysync::gateway::{Gateway, Inbound, Receipt, Route};
use diarysync::partners::auth::hmac_sha256_hex;
use diarysync::store::ReplayFilter;

#[path = "support/cpu.rs"]
mod cpu;
#[path = "support/fleet.rs"]
mod fleet;
#[path = "support/load.rs"]
mod load;
#[path = "support/sync.rs"]
mod sync;
use load::*;

#[derive(Debug, Clone)]
struct Options {
    seconds: u64,
    concurrency: usize,
    rate: u64,
    only: Option<Vec<String>>,
    /// Nodes behind the load balancer in the `fleet` run.
    nodes: usize,
}

impl Options {
    fn parse() -> Options {
        let args: Vec<String> = std::env::args().collect();
        let value = |name: &str| {
            args.iter()
                .position(|a| a == name)
                .and_then(|i| args.get(i + 1))
                .cloned()
        };
        let number =
            |name: &str, default: u64| value(name).and_then(|v| v.parse().ok()).unwrap_or(default);
        // `cargo test --all-targets` runs this binary too, without `--bench`: a short smoke
        // run then checks that every part of the benchmark still works.
        let smoke = !args.iter().any(|a| a == "--bench");
        Options {
            seconds: number("--seconds", if smoke { 1 } else { 5 }),
            concurrency: usize::try_from(number("--concurrency", if smoke { 8 } else { 64 }))
                .unwrap_or(64),
            rate: number("--rate", if smoke { 200 } else { 2_000 }),
            only: value("--only")
                .or_else(|| smoke.then(|| "fsync,ceiling,sqlite,rate,replay".to_owned()))
                .map(|v| v.split(',').map(str::to_owned).collect()),
            nodes: usize::try_from(number("--nodes", 3)).unwrap_or(3),
        }
    }

    /// Whether a run was asked for (all but `fleet` run when none is named: the fleet needs
    /// HAProxy and several nodes, `scripts/fleet` runs it).
    fn runs(&self, phase: &str) -> bool {
        self.only
            .as_ref()
            .map_or(phase != "fleet", |only| only.iter().any(|p| p == phase))
    }
}

/// Figures for the summary table.
#[derive(Default)]
struct Summary {
    lines: Vec<String>,
}

impl Summary {
    fn load(&mut self, name: &str, run: &Run, ceiling: Option<&Run>, rss: Option<f64>) {
        let ratio = ceiling.map_or(String::from("1"), |c| {
            format!("{:.2}", run.rate() / c.rate())
        });
        let rss = rss.map_or(String::new(), |r| format!("{r:.1}"));
        let line = format!(
            "| {name} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {ratio} | {rss} |",
            run.rate(),
            run.percentile(0.50),
            run.percentile(0.99),
            run.percentile(0.999),
            run.percentile(1.0),
            run.errors
        );
        println!("{line}");
        self.lines.push(line);
    }

    fn note(&mut self, line: String) {
        println!("{line}");
        self.lines.push(line);
    }
}

async fn sqlite_phases(
    options: &Options,
    template: &Arc<Template>,
    ceiling: Option<&Run>,
    summary: &mut Summary,
    dir: &Path,
) -> Option<PathBuf> {
    if !options.runs("sqlite") && !options.runs("rate") && !options.runs("replay") {
        return None;
    }
    let seeding = Instant::now();
    let (path, url) = seeded_sqlite(dir, "bench.db").await;
    println!(
        "seeded SQLite with {VENUES} venues and {BOOKINGS} bookings in {:.1} s",
        seeding.elapsed().as_secs_f64()
    );
    let server = spawn_diarysync(dir, &url, &[]).await;
    warm_up(server.addr, options, template).await;
    if options.runs("sqlite") || options.runs("replay") {
        let meter = cpu::Meter {
            server: server.child.id(),
            writer_threads: "sqlite-writer",
            postmaster: None,
        };
        let before = meter.read();
        let run = drive(server.addr, options, template).await;
        let cost = meter.read().since(&before, run.events);
        summary.note(format!(
            "| SQLite durable, CPU per event at {} connections | server {:.0} µs (writer thread {:.0} µs), load generator {:.0} µs |",
            options.concurrency, cost.server, cost.writers, cost.generator,
        ));
        summary.note(format!(
            "| SQLite durable, what this machine's {} cores allow at that cost | {:.0} events/s; the writer thread alone {:.0} events/s |",
            cpu::cores(),
            cost.allowed_rate(),
            1e6 / cost.writers.max(1.0),
        ));
        summary.load(
            &format!(
                "diarysync, SQLite durable, {} connections",
                options.concurrency
            ),
            &run,
            ceiling,
            Some(server.peak_rss_mib()),
        );
    }
    if options.runs("rate") {
        let run = drive_rate(server.addr, options.rate, options.seconds, template, 0).await;
        summary.load(
            &format!(
                "diarysync, SQLite durable, {} events/s offered",
                options.rate
            ),
            &run,
            None,
            Some(server.peak_rss_mib()),
        );
    }
    server.print_store_metrics().await;
    server.stop();
    Some(path)
}

/// A fresh SQLite file `name` in `dir`, migrated and seeded with the diary: its path and URL.
async fn seeded_sqlite(dir: &Path, name: &str) -> (PathBuf, String) {
    let path = dir.join(name);
    let url = format!("sqlite://{}", path.display());
    diarysync::store::open(&url)
        .await
        .expect("migrate")
        .close()
        .await;
    seed_sqlite(&path, VENUES, BOOKINGS);
    (path, url)
}

/// A fresh database on the server `DIARYSYNC_BENCH_PG_URL` names, migrated and seeded with
/// the diary; `None`, noted as the `run` skipped, without one (`script` sets it).
async fn seeded_postgres(summary: &mut Summary, run: &str, script: &str) -> Option<String> {
    let Ok(admin_url) = std::env::var("DIARYSYNC_BENCH_PG_URL") else {
        summary.note(format!(
            "| {run} | skipped: DIARYSYNC_BENCH_PG_URL is not set ({script} sets it) |"
        ));
        return None;
    };
    let url = fresh_postgres(&admin_url).await;
    diarysync::store::open(&url)
        .await
        .expect("migrate")
        .close()
        .await;
    seed_postgres(&url).await;
    Some(url)
}

/// The sqlite and rate runs again with `sqlite_synchronous = "normal"`: commits that do not
/// wait for the disk, on a fresh copy of the same diary.
async fn sqlite_normal_phase(
    options: &Options,
    template: &Arc<Template>,
    ceiling: Option<&Run>,
    summary: &mut Summary,
    dir: &Path,
) {
    let (_, url) = seeded_sqlite(dir, "bench-normal.db").await;
    let server = spawn_diarysync(dir, &url, &[("DIARYSYNC_SQLITE_SYNCHRONOUS", "normal")]).await;
    warm_up(server.addr, options, template).await;
    let run = drive(server.addr, options, template).await;
    summary.load(
        &format!(
            "diarysync, SQLite synchronous = NORMAL, {} connections",
            options.concurrency
        ),
        &run,
        ceiling,
        Some(server.peak_rss_mib()),
    );
    let run = drive_rate(server.addr, options.rate, options.seconds, template, 0).await;
    summary.load(
        &format!(
            "diarysync, SQLite synchronous = NORMAL, {} events/s offered",
            options.rate
        ),
        &run,
        None,
        Some(server.peak_rss_mib()),
    );
    server.stop();
}

/// The disk's own flush latency in this run: 8 KiB appended and `fdatasync`ed, as a WAL
/// commit does, for a second (at most 5,000 times).
fn fsync_phase(summary: &mut Summary, dir: &Path) {
    use std::io::Write as _;
    let path = dir.join("fsync-probe");
    let mut file = std::fs::File::create(&path).expect("probe file");
    let page = vec![0x5a_u8; 8192];
    let mut latencies = Vec::new();
    let started = Instant::now();
    while started.elapsed() < std::time::Duration::from_secs(1) && latencies.len() < 5_000 {
        let flushing = Instant::now();
        file.write_all(&page).expect("append");
        file.sync_data().expect("fdatasync");
        latencies.push(u32::try_from(flushing.elapsed().as_micros()).unwrap_or(u32::MAX));
    }
    drop(file);
    let _ = std::fs::remove_file(&path);
    latencies.sort_unstable();
    let at = |p: f64| {
        let index = ((latencies.len().saturating_sub(1)) as f64 * p).round() as usize;
        f64::from(latencies.get(index).copied().unwrap_or(0)) / 1000.0
    };
    summary.note(format!(
        "| disk: 8 KiB append + fdatasync, {} times | p50 {:.2} ms | p99 {:.2} ms | p99.9 {:.2} ms | max {:.2} ms |",
        latencies.len(),
        at(0.5),
        at(0.99),
        at(0.999),
        at(1.0)
    ));
}

async fn postgres_phase(
    options: &Options,
    template: &Arc<Template>,
    ceiling: Option<&Run>,
    summary: &mut Summary,
    dir: &Path,
) {
    if !options.runs("postgres") {
        return;
    }
    let Some(url) = seeded_postgres(summary, "PostgreSQL", "scripts/bench").await else {
        return;
    };
    let server = spawn_diarysync(dir, &url, &[]).await;
    warm_up(server.addr, options, template).await;
    // PostgreSQL plans statements from table statistics; autovacuum refreshes them once a
    // minute, which a short run never sees: before it, `sales` looked empty.
    let mut statistics = PostgresStatistics::connect(&url).await;
    sqlx::query("ANALYZE")
        .execute(&mut statistics.conn)
        .await
        .expect("analyze");
    statistics.reset().await;
    let meter = cpu::Meter {
        server: server.child.id(),
        writer_threads: "postgres-writer",
        postmaster: statistics.postmaster,
    };
    let before = meter.read();
    let run = drive(server.addr, options, template).await;
    let cost = meter.read().since(&before, run.events);
    let statements = match statistics.statements().await {
        Some(calls) => format!("{:.1}", calls as f64 / run.events.max(1) as f64),
        None => "not counted (pg_stat_statements is not loaded)".to_owned(),
    };
    summary.note(format!(
        "| PostgreSQL, CPU per event at {} connections | node {:.0} µs (writer threads {:.0} µs), PostgreSQL {:.0} µs, load generator {:.0} µs | statements per event {statements} |",
        options.concurrency, cost.server, cost.writers, cost.database, cost.generator,
    ));
    summary.note(format!(
        "| PostgreSQL, what this machine's {} cores allow at that cost | {:.0} events/s |",
        cpu::cores(),
        cost.allowed_rate(),
    ));
    summary.load(
        &format!("diarysync, PostgreSQL, {} connections", options.concurrency),
        &run,
        ceiling,
        Some(server.peak_rss_mib()),
    );
    // Latency at a rate it sustains, and at the rate the SQLite run is offered.
    for rate in [options.rate / 2, options.rate] {
        let run = drive_rate(server.addr, rate, options.seconds, template, rate).await;
        summary.load(
            &format!("diarysync, PostgreSQL, {rate} events/s offered"),
            &run,
            None,
            Some(server.peak_rss_mib()),
        );
    }
    server.stop();
}

/// What PostgreSQL itself spent on a run: its CPU (the postmaster and every backend) and,
/// where `pg_stat_statements` is loaded (`scripts/bench` loads it), the statements it ran.
struct PostgresStatistics {
    conn: sqlx::PgConnection,
    postmaster: Option<u32>,
    counts_statements: bool,
}

impl PostgresStatistics {
    async fn connect(url: &str) -> PostgresStatistics {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
        let backend: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&mut conn)
            .await
            .expect("backend pid");
        // Only a server on this machine has its processes in our /proc.
        let postmaster = u32::try_from(backend).ok().and_then(cpu::parent_of);
        let counts_statements = sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            .execute(&mut conn)
            .await
            .is_ok()
            && sqlx::query("SELECT pg_stat_statements_reset()")
                .execute(&mut conn)
                .await
                .is_ok();
        PostgresStatistics {
            conn,
            postmaster,
            counts_statements,
        }
    }

    async fn reset(&mut self) {
        if self.counts_statements {
            let _ = sqlx::query("SELECT pg_stat_statements_reset()")
                .execute(&mut self.conn)
                .await;
        }
    }

    /// Statements run in this database since the last reset, but this connection's.
    async fn statements(&mut self) -> Option<i64> {
        if !self.counts_statements {
            return None;
        }
        sqlx::query_scalar(
            "SELECT sum(calls)::bigint FROM pg_stat_statements
             WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
               AND query NOT LIKE '%pg_stat_statements%'",
        )
        .fetch_one(&mut self.conn)
        .await
        .ok()
        .flatten()
    }
}

async fn replay_phase(path: &Path, summary: &mut Summary) {
    let url = format!("sqlite://{}", path.display());
    let store = diarysync::store::open(&url).await.expect("store");
    let gateway = Gateway::new(
        Config::from_toml(&config_text(&url, 0)).expect("config"),
        Arc::new(store),
    );
    let started = Instant::now();
    let replayed = gateway
        .replay(&ReplayFilter::default(), || {})
        .await
        .expect("replay");
    let seconds = started.elapsed().as_secs_f64();
    summary.note(format!(
        "| replay, no HTTP | {:.0} events/s | {} events in {seconds:.2} s | outcomes {:?} |",
        replayed.replayed as f64 / seconds,
        replayed.replayed,
        replayed.outcomes
    ));
}

/// Processing cost of sales matched by table and time, for diaries of growing size: the
/// same 50 venues of 20 tables, more days of history (1,000 days at 1,000,000 bookings). Sales arrive 256 at a time, so commits are
/// shared and what is left is processing.
async fn matching_phase(template: &Template, summary: &mut Summary) {
    const SALES: u64 = 4_096;
    const VENUES: i64 = 50;
    let mut baseline = None;
    for bookings in [1_000, 10_000, 100_000, 1_000_000] {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("matching.db");
        let url = format!("sqlite://{}", path.display());
        diarysync::store::open(&url)
            .await
            .expect("migrate")
            .close()
            .await;
        seed_sqlite(&path, VENUES, bookings);
        let store = diarysync::store::open(&url).await.expect("store");
        let gateway = Arc::new(Gateway::new(
            Config::from_toml(&config_text(&url, 0)).expect("config"),
            Arc::new(store),
        ));
        let days = (bookings / VENUES / TABLES).max(1);
        let mut scratch = String::new();
        let inbound: Vec<Inbound> = (0..SALES)
            .map(|i| {
                // The latest lunches: the diary's whole history lies before them.
                let (location, table, day) = spread(i, VENUES, days.min(5));
                let day = days - 1 - day;
                let open_date = DAY0_MS + day * DAY_MS + SALE_OPEN_MS;
                let n = Notification {
                    kind: "CLOSE",
                    sale: i,
                    location,
                    table,
                    open_date,
                    update_date: snapshot_time(open_date, 2),
                };
                template.render(&n, &mut scratch);
                let signature = hmac_sha256_hex(
                    SECRET.as_bytes(),
                    scratch.as_bytes(),
                    Some(&format!("{PUBLIC_URL}{PATH}")),
                );
                let mut headers = http::HeaderMap::new();
                headers.insert("x-partner-signature", signature.parse().expect("header"));
                Inbound {
                    route: Route::Sales,
                    partner: "lightspeed".to_owned(),
                    event_type: "order.updated".to_owned(),
                    method: "POST".to_owned(),
                    path: PATH.to_owned(),
                    query: None,
                    headers,
                    body: scratch.clone().into_bytes().into(),
                    body_bytes: None,
                    received_at: chrono::Utc::now(),
                    client: None,
                }
            })
            .collect();
        let started = Instant::now();
        let mut matched = 0usize;
        for chunk in inbound.chunks(256) {
            let receipts = futures_util::future::join_all(chunk.iter().cloned().map(|i| {
                let gateway = Arc::clone(&gateway);
                async move { gateway.receive(i).await }
            }))
            .await;
            matched += receipts
                .iter()
                .filter(|r| matches!(r, Receipt::Accepted { detail: Some(d), .. } if d.contains("table_time")))
                .count();
        }
        let per_sale = started.elapsed().as_secs_f64() * 1e6 / SALES as f64;
        let base = *baseline.get_or_insert(per_sale);
        summary.note(format!(
            "| matching, {bookings} bookings | {per_sale:.0} µs per sale | {:.2} x the 1,000-booking cost | {matched}/{SALES} matched by table and time |",
            per_sale / base
        ));
    }
}

async fn run(options: Options) {
    let template = Arc::new(Template::load());
    let mut probe = String::new();
    template.render(&Notification::of(0, 0), &mut probe);
    println!(
        "ingest benchmark: {} s per run, {} connections, {} events/s offered in the rate run, body {} bytes, {} cores",
        options.seconds,
        options.concurrency,
        options.rate,
        probe.len(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    // DIARYSYNC_BENCH_DIR keeps the databases, configs and server logs for a look afterwards.
    let temp = tempfile::tempdir().expect("temp dir");
    let dir = std::env::var_os("DIARYSYNC_BENCH_DIR")
        .map_or_else(|| temp.path().to_owned(), PathBuf::from);
    std::fs::create_dir_all(&dir).expect("bench dir");
    let mut summary = Summary::default();
    summary.note("| run | events/s | p50 ms | p99 ms | p99.9 ms | max ms | errors | × ceiling | server peak RSS MiB |".to_owned());
    summary.note("|---|---:|---:|---:|---:|---:|---:|---:|---:|".to_owned());
    let ceiling = if options.runs("ceiling") {
        let server = spawn_ceiling().await;
        let run = drive(server.addr, &options, &template).await;
        summary.load(
            &format!(
                "ceiling: axum reads the body, answers 200, {} connections",
                options.concurrency
            ),
            &run,
            None,
            Some(server.peak_rss_mib()),
        );
        if options.runs("rate") {
            let paced = drive_rate(server.addr, options.rate, options.seconds, &template, 0).await;
            summary.load(
                &format!("ceiling, {} events/s offered", options.rate),
                &paced,
                None,
                Some(server.peak_rss_mib()),
            );
        }
        server.stop();
        Some(run)
    } else {
        None
    };
    if options.runs("fsync") {
        fsync_phase(&mut summary, &dir);
    }
    let stored = sqlite_phases(&options, &template, ceiling.as_ref(), &mut summary, &dir).await;
    if options.runs("normal") {
        sqlite_normal_phase(&options, &template, ceiling.as_ref(), &mut summary, &dir).await;
    }
    postgres_phase(&options, &template, ceiling.as_ref(), &mut summary, &dir).await;
    if let (Some(path), true) = (&stored, options.runs("replay")) {
        replay_phase(path, &mut summary).await;
    }
    if options.runs("matching") {
        matching_phase(&template, &mut summary).await;
    }
    if options.runs("sync") {
        let path = dir.join("sync.db");
        sync::sync_phase(
            &mut summary,
            &dir,
            "SQLite",
            &format!("sqlite://{}", path.display()),
        )
        .await;
        if let Ok(admin_url) = std::env::var("DIARYSYNC_BENCH_PG_URL") {
            let url = fresh_postgres(&admin_url).await;
            sync::sync_phase(&mut summary, &dir, "PostgreSQL", &url).await;
        }
    }
    if options.runs("fleet") {
        fleet::fleet_phase(&options, &template, &mut summary, &dir).await;
    }
    println!("\n{}", summary.lines.join("\n"));
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(port) = args
        .iter()
        .position(|a| a == "--ceiling-server")
        .and_then(|i| args.get(i + 1))
        .and_then(|p| p.parse().ok())
    {
        ceiling_server(port);
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(Options::parse()));
}
