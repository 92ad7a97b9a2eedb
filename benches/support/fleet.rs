//! The `fleet` run: several diarysync nodes on one PostgreSQL behind a real load balancer
//! (HAProxy, from Debian's packages), driven like the other runs, one node killed
//! (`SIGKILL`) halfway through; then the database is checked for every acknowledged event,
//! each snapshot applied once.
//!
//! A partner here does what a POS does: it retries a delivery that was not acknowledged (a
//! reset connection, a 5xx) until it is. HAProxy retries a request whose node died before
//! answering on another node (`retry-on conn-failure empty-response`), so a delivery may
//! reach two nodes: the second finds the same snapshot stored and records it as a
//! duplicate, which is what "exactly once" means for the diary.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::BodyExt;

use super::load::{
    Notification, Run, Server, Template, connect, free_port, signed_request, spawn_diarysync,
};
use super::{Options, Summary};

/// What the partners saw.
#[derive(Default)]
struct Seen {
    latencies: Vec<u32>,
    /// Event ids of acknowledged deliveries.
    acknowledged: Vec<i64>,
    /// Sales whose CLOSE was acknowledged.
    closed: Vec<String>,
    /// Deliveries tried again after a reset or refused connection.
    connection_retries: u64,
    /// Deliveries tried again after an answer other than 2xx, by status.
    status_retries: std::collections::BTreeMap<u16, u64>,
}

pub async fn fleet_phase(
    options: &Options,
    template: &Arc<Template>,
    summary: &mut Summary,
    dir: &Path,
) {
    let Some(url) = super::seeded_postgres(summary, "fleet", "scripts/fleet").await else {
        return;
    };
    let mut nodes = Vec::new();
    for _ in 0..options.nodes.max(2) {
        nodes.push(Some(spawn_diarysync(dir, &url, &[]).await));
    }
    let balancer = Balancer::start(dir, &nodes).await;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(options.seconds);
    let kill_at = started + Duration::from_secs(options.seconds) / 2;
    let drivers: Vec<_> = (0..options.concurrency as u64)
        .map(|worker| {
            tokio::spawn(partner(
                balancer.addr,
                Arc::clone(template),
                worker,
                deadline,
            ))
        })
        .collect();
    tokio::time::sleep_until(kill_at.into()).await;
    let killed = nodes[0].take().map(|mut node| {
        let _ = node.child.kill();
        let _ = node.child.wait();
        node.addr
    });
    let mut seen = Seen::default();
    for driver in drivers {
        let part = driver.await.expect("partner");
        seen.latencies.extend(part.latencies);
        seen.acknowledged.extend(part.acknowledged);
        seen.closed.extend(part.closed);
        seen.connection_retries += part.connection_retries;
        for (status, count) in part.status_retries {
            *seen.status_retries.entry(status).or_default() += count;
        }
    }
    let elapsed = started.elapsed();
    balancer.stop();
    for node in nodes.into_iter().flatten() {
        node.stop();
    }
    let retried = seen.connection_retries + seen.status_retries.values().sum::<u64>();
    let run = Run::of(
        vec![(std::mem::take(&mut seen.latencies), retried)],
        elapsed,
    );
    summary.load(
        &format!(
            "fleet: {} nodes on PostgreSQL behind HAProxy, one killed at {} s, {} connections",
            options.nodes.max(2),
            options.seconds / 2,
            options.concurrency
        ),
        &run,
        None,
        None,
    );
    let verdict = check(&url, &seen).await;
    summary.note(format!(
        "| fleet: partners' retries | {} after a reset or refused connection; by status {:?}; node {} killed |",
        seen.connection_retries,
        seen.status_retries,
        killed.map_or_else(String::new, |addr| addr.to_string())
    ));
    summary.note(format!("| fleet: exactly once | {verdict} |"));
}

/// One partner connection: walks its sales through OPEN, UPDATE and CLOSE until
/// `deadline`, retrying each delivery until it is acknowledged.
async fn partner(
    balancer: SocketAddr,
    template: Arc<Template>,
    worker: u64,
    deadline: Instant,
) -> Seen {
    let mut seen = Seen::default();
    let mut scratch = String::with_capacity(4096);
    let mut sender = None;
    let mut step = 0;
    while Instant::now() < deadline {
        let n = Notification::of(worker, step);
        let sent = Instant::now();
        loop {
            let live = match sender.as_mut() {
                Some(live) => live,
                None => sender.insert(connect(balancer).await),
            };
            let request = signed_request(&template, &n, &mut scratch);
            let answer = match live.ready().await {
                Ok(()) => live.send_request(request).await.ok(),
                Err(_) => None,
            };
            let Some(response) = answer else {
                seen.connection_retries += 1;
                sender = None;
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            };
            let status = response.status();
            let body = response.into_body().collect().await.map(|b| b.to_bytes());
            match (status.is_success(), body) {
                (true, Ok(body)) => {
                    let answer: serde_json::Value =
                        serde_json::from_slice(&body).unwrap_or_default();
                    if let Some(id) = answer["event_id"].as_i64() {
                        seen.acknowledged.push(id);
                    }
                    if n.kind == "CLOSE" {
                        seen.closed.push(format!("bench-{}", n.sale));
                    }
                    break;
                }
                (false, Ok(_)) => {
                    *seen.status_retries.entry(status.as_u16()).or_default() += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                (_, Err(_)) => {
                    seen.connection_retries += 1;
                    sender = None;
                }
            }
        }
        seen.latencies
            .push(u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX));
        step += 1;
    }
    seen
}

/// Checks the database after the run: every acknowledged event stored, no snapshot applied
/// twice, every acknowledged CLOSE closed its sale.
async fn check(url: &str, seen: &Seen) -> String {
    use sqlx::Connection as _;
    let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
    let mut acknowledged = seen.acknowledged.clone();
    acknowledged.sort_unstable();
    acknowledged.dedup();
    let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events WHERE id = ANY($1)")
        .bind(&acknowledged)
        .fetch_one(&mut conn)
        .await
        .expect("stored");
    // Each sale has three snapshots: more processed events than that is one applied twice.
    let applied_twice: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM (SELECT sale_id FROM events
             WHERE outcome = 'processed' AND sale_id IS NOT NULL
             GROUP BY sale_id HAVING COUNT(*) > 3) twice",
    )
    .fetch_one(&mut conn)
    .await
    .expect("applied twice");
    let duplicates: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM events WHERE reason IN ('duplicate_event', 'stale_update')",
    )
    .fetch_one(&mut conn)
    .await
    .expect("duplicates");
    let closed: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM sales WHERE external_id = ANY($1) AND state = 'closed'",
    )
    .bind(&seen.closed)
    .fetch_one(&mut conn)
    .await
    .expect("closed");
    let failed: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events WHERE outcome = 'failed'")
        .fetch_one(&mut conn)
        .await
        .expect("failed");
    let holds = usize::try_from(stored).ok() == Some(acknowledged.len())
        && applied_twice == 0
        && usize::try_from(closed).ok() == Some(seen.closed.len())
        && failed == 0;
    format!(
        "{}: {stored} of {} acknowledged events stored; {applied_twice} sales applied more than once; \
         {closed} of {} acknowledged CLOSEs closed their sale; {duplicates} deliveries recorded as duplicates; \
         {failed} failed",
        if holds { "holds" } else { "VIOLATED" },
        acknowledged.len(),
        seen.closed.len()
    )
}

/// HAProxy in front of the nodes: round robin, health-checked on `/readyz`, a request whose
/// node died before answering retried on another.
///
/// `timeout check` is longer than the nodes' `readiness_timeout_ms` (2 s): `/readyz` commits
/// a probe through every writer, ahead of the events queued there but after the batch being
/// written (up to 256 events), and waits up to that long for a slow database. Without it
/// HAProxy gives a check `inter` (200 ms) to answer; before the probe went ahead of the
/// queue, that marked busy nodes down at saturation and answered partners 503 with no node
/// left (732 such answers in a 20 s run).
struct Balancer {
    child: Child,
    addr: SocketAddr,
}

impl Balancer {
    async fn start(dir: &Path, nodes: &[Option<Server>]) -> Balancer {
        let port = free_port();
        let servers: String = nodes
            .iter()
            .flatten()
            .enumerate()
            .map(|(i, node)| format!("    server node{i} {} check\n", node.addr))
            .collect();
        let config = format!(
            "global\n    maxconn 4096\n\
             defaults\n    mode http\n    timeout connect 1s\n    timeout client 30s\n    timeout server 30s\n\
             \x20   timeout check 3s\n\
             \x20   retries 3\n    option redispatch 1\n    option http-buffer-request\n\
             \x20   retry-on conn-failure empty-response junk-response 503\n\
             frontend partners\n    bind 127.0.0.1:{port}\n    default_backend nodes\n\
             backend nodes\n    balance roundrobin\n    option httpchk GET /readyz\n\
             \x20   http-check expect status 200\n    default-server inter 200ms fall 2 rise 2\n{servers}"
        );
        let path = dir.join("haproxy.cfg");
        std::fs::write(&path, config).expect("haproxy config");
        let child = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("haproxy (apt-get install haproxy)");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        // The health checks mark every node up after two passes.
        tokio::time::sleep(Duration::from_millis(600)).await;
        Balancer { child, addr }
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
