//! No acknowledged event is ever lost, and retries converge: a load generator posts a day of
//! Lightspeed notifications while the server is SIGKILLed at random moments and restarted,
//! many times; every delivery is retried until it gets a 2xx, as partners do. Afterwards
//! every acknowledged event is stored with its outcome, and the sales and the diary equal
//! those of a clean run of the same deliveries without crashes. On SQLite and PostgreSQL.
//!
//! `DIARYSYNC_CRASH_CYCLES` and `DIARYSYNC_CRASH_SALES` make the run longer (CI runs a short
//! one; `docs/RELIABILITY.md` has a long one's figures).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::Mutex;

use crate::helpers::{ADMIN_TOKEN, Db, empty_database, setting};
use crate::process::Node;
use crate::workload::{deliver, seed, state, workload};

/// A small xorshift: the test prints its seed, so a failing run can be repeated.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

async fn an_acknowledged_event_survives_any_crash_and_state_equals_a_clean_run(db: Db) {
    let cycles = setting("DIARYSYNC_CRASH_CYCLES", 10);
    let sales = setting("DIARYSYNC_CRASH_SALES", 150);
    let seed_value = std::env::var("DIARYSYNC_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            (u64::from(std::process::id()) << 20)
                | u64::from(chrono::Utc::now().timestamp_subsec_micros())
        })
        | 1;
    eprintln!("crash test on {db:?}: {cycles} kills, {sales} sales, seed {seed_value}");
    let deliveries = workload(sales);

    let database = empty_database(db).await;
    let dir = tempfile::tempdir().expect("dir");
    let mut node = Node::start(dir.path(), &database.url, "").await;
    seed(&node.base).await;
    let base = Arc::new(Mutex::new(node.base.clone()));
    let queue = Arc::new(Mutex::new(deliveries.clone().into_iter()));
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let done = Arc::new(AtomicUsize::new(0));
    let client = reqwest::Client::new();
    let started = Instant::now();
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let (queue, acknowledged, done, base, client) = (
                Arc::clone(&queue),
                Arc::clone(&acknowledged),
                Arc::clone(&done),
                Arc::clone(&base),
                client.clone(),
            );
            tokio::spawn(async move {
                loop {
                    let next = queue.lock().await.next();
                    let Some(delivery) = next else { break };
                    let event_id = deliver(&client, &base, &delivery.body).await;
                    acknowledged.lock().await.push((delivery.key, event_id));
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let mut rng = Rng(seed_value);
    let mut kills = 0;
    while kills < cycles && done.load(Ordering::Relaxed) < deliveries.len() {
        tokio::time::sleep(Duration::from_millis(20 + rng.below(180))).await;
        node.restart().await;
        kills += 1;
    }
    for worker in workers {
        worker.await.expect("worker");
    }
    let elapsed = started.elapsed();

    // Every acknowledged event is stored, with a committed outcome.
    let acknowledged = acknowledged.lock().await.clone();
    assert_eq!(acknowledged.len(), deliveries.len());
    let admin = reqwest::Client::new();
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    for (key, event_id) in &acknowledged {
        let event: Value = admin
            .get(format!("{}/api/v1/events/{event_id}", node.base))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("event")
            .json()
            .await
            .expect("event JSON");
        let outcome = event["outcome"].as_str().unwrap_or("missing").to_owned();
        assert!(
            outcome == "processed"
                || (outcome == "ignored"
                    && matches!(
                        event["reason"].as_str(),
                        Some("duplicate_event" | "stale_update")
                    )),
            "acknowledged delivery {key} (event {event_id}) is stored as {event}"
        );
        *outcomes.entry(outcome).or_default() += 1;
    }
    let crashed = state(&node.base).await;
    drop(node);

    // The same deliveries, once each, in order, to a server that never crashes.
    let clean_database = empty_database(db).await;
    let clean_dir = tempfile::tempdir().expect("dir");
    let clean_node = Node::start(clean_dir.path(), &clean_database.url, "").await;
    seed(&clean_node.base).await;
    let clean_base = Mutex::new(clean_node.base.clone());
    for delivery in &deliveries {
        deliver(&client, &clean_base, &delivery.body).await;
    }
    let clean = state(&clean_node.base).await;
    assert_eq!(crashed.0.len(), sales, "one sale record per sale");
    assert_eq!(crashed.0, clean.0, "sales equal a clean run's");
    assert_eq!(crashed.1, clean.1, "bookings equal a clean run's");
    eprintln!(
        "crash test on {db:?}: {kills} kills in {:.1} s, {} deliveries acknowledged ({outcomes:?}), \
         {} sales, {} bookings equal to a clean run",
        elapsed.as_secs_f64(),
        acknowledged.len(),
        crashed.0.len(),
        crashed.1.len()
    );
}

crate::on_both_stores!(an_acknowledged_event_survives_any_crash_and_state_equals_a_clean_run,);
