//! A real HTTP receiver for outbound webhooks: it records every delivery (headers and body)
//! and answers 200, or 503 while told to fail.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use tokio::sync::Mutex;

/// One delivery as received.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: String,
    pub body: String,
    pub headers: Vec<(String, String)>,
    /// Whether the receiver accepted it (200) or refused it (503).
    pub accepted: bool,
}

impl Delivery {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("a delivery's body is JSON")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Clone, Default)]
struct Shared {
    deliveries: Arc<Mutex<Vec<Delivery>>>,
    failing: Arc<AtomicBool>,
    hanging: Arc<AtomicBool>,
}

pub struct Receiver {
    pub url: String,
    shared: Shared,
}

async fn receive(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> StatusCode {
    if shared.hanging.load(Ordering::SeqCst) {
        // A black-holed receiver: the connection is taken, no answer ever comes.
        tokio::time::sleep(Duration::from_secs(3_600)).await;
    }
    let accepted = !shared.failing.load(Ordering::SeqCst);
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let id = headers
        .iter()
        .find(|(n, _)| n == "webhook-id")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    shared.deliveries.lock().await.push(Delivery {
        id,
        body: String::from_utf8_lossy(&body).into_owned(),
        headers,
        accepted,
    });
    if accepted {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

impl Receiver {
    pub async fn start() -> Receiver {
        let shared = Shared::default();
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the receiver");
        let port = listener.local_addr().expect("address").port();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver {
            url: format!("http://127.0.0.1:{port}/hook"),
            shared,
        }
    }

    /// Answers 503 from now on (`true`) or 200 again (`false`).
    pub fn fail(&self, failing: bool) {
        self.shared.failing.store(failing, Ordering::SeqCst);
    }

    /// Takes every request from now on and never answers it.
    pub fn hang(&self) {
        self.shared.hanging.store(true, Ordering::SeqCst);
    }

    pub async fn deliveries(&self) -> Vec<Delivery> {
        self.shared.deliveries.lock().await.clone()
    }

    /// The deliveries it accepted.
    pub async fn accepted(&self) -> Vec<Delivery> {
        self.deliveries()
            .await
            .into_iter()
            .filter(|d| d.accepted)
            .collect()
    }

    /// Waits until `done` holds for the accepted deliveries, or panics after `within`.
    pub async fn wait_for(
        &self,
        within: Duration,
        what: &str,
        done: impl Fn(&[Delivery]) -> bool,
    ) -> Vec<Delivery> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let accepted = self.accepted().await;
            if done(&accepted) {
                return accepted;
            }
            if tokio::time::Instant::now() > deadline {
                let types: Vec<String> = accepted
                    .iter()
                    .map(|d| format!("{} {}", d.id, d.json()["type"]))
                    .collect();
                panic!("the receiver never got {what}; it got: {types:?}");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// Verifies `deliveries` with the `standardwebhooks` package from PyPI (the Python interpreter
/// of `DIARYSYNC_TEST_WEBHOOKS_PYTHON`, which `scripts/test` installs it into); returns the
/// ids it verified, in order.
pub fn verify_with_standardwebhooks(secret: &str, deliveries: &[Delivery]) -> Vec<String> {
    let python = std::env::var("DIARYSYNC_TEST_WEBHOOKS_PYTHON").expect(
        "DIARYSYNC_TEST_WEBHOOKS_PYTHON is not set: run the suite with scripts/test, which \
         installs the standardwebhooks package into a virtual environment",
    );
    let input: Vec<Value> = deliveries
        .iter()
        .map(|d| {
            let headers: serde_json::Map<String, Value> = d
                .headers
                .iter()
                .map(|(n, v)| (n.clone(), Value::String(v.clone())))
                .collect();
            json!({ "headers": headers, "body": d.body })
        })
        .collect();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/webhooks/verify.py");
    let mut child = std::process::Command::new(python)
        .arg(script)
        .env("WEBHOOK_SECRET", secret)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python runs");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(serde_json::to_string(&input).expect("JSON").as_bytes())
            .expect("write deliveries");
    }
    let output = child.wait_with_output().expect("python finishes");
    assert!(
        output.status.success(),
        "standardwebhooks refused a delivery: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}
