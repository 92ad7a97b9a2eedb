//! A stand-in for TourCMS's Show Booking API on loopback: it checks each request's signature
//! as TourCMS would, records what it was asked (and by which User-Agent), and answers with
//! the fixtures, a scripted answer per booking id, or as an API that is down.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode as AxumStatus};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

pub const PRIVATE_KEY: &str = "tourcms-test-private-key";

/// An answer the fake gives for one booking id instead of the fixtures'.
#[derive(Clone, Debug)]
pub struct Scripted {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

#[derive(Clone, Default)]
pub struct FakeTourCms {
    pub down: Arc<AtomicBool>,
    pub requests: Arc<AtomicUsize>,
    pub cancelled: Arc<AtomicBool>,
    /// Booking id -> the answer for it.
    pub scripted: Arc<Mutex<HashMap<String, Scripted>>>,
    /// The User-Agent of every request, in order.
    pub user_agents: Arc<Mutex<Vec<String>>>,
}

impl FakeTourCms {
    pub fn script(&self, booking_id: &str, answer: Scripted) {
        if let Ok(mut scripted) = self.scripted.lock() {
            scripted.insert(booking_id.to_owned(), answer);
        }
    }

    pub fn user_agents(&self) -> Vec<String> {
        self.user_agents
            .lock()
            .map(|u| u.clone())
            .unwrap_or_default()
    }
}

fn fixture(name: &str) -> Vec<u8> {
    crate::helpers::fixture_in("tourcms", name)
}

fn expected_signature(channel: &str, marketplace: &str, time: i64, path: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(PRIVATE_KEY.as_bytes()).expect("key");
    mac.update(format!("{channel}/{marketplace}/GET/{time}{path}").as_bytes());
    let raw = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    raw.replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D")
}

async fn show_booking(
    State(fake): State<FakeTourCms>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    fake.requests.fetch_add(1, Ordering::SeqCst);
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    if let Ok(mut agents) = fake.user_agents.lock() {
        agents.push(header("user-agent"));
    }
    if fake.down.load(Ordering::SeqCst) {
        return (AxumStatus::SERVICE_UNAVAILABLE, "down").into_response();
    }
    let Some(time) = chrono::DateTime::parse_from_rfc2822(&header("date"))
        .ok()
        .map(|d| d.timestamp())
    else {
        return (AxumStatus::UNAUTHORIZED, "no date").into_response();
    };
    let authorization = header("authorization");
    let Some((channel, marketplace, signature)) =
        authorization.strip_prefix("TourCMS ").and_then(|rest| {
            let mut parts = rest.splitn(3, ':');
            Some((
                parts.next()?.to_owned(),
                parts.next()?.to_owned(),
                parts.next()?.to_owned(),
            ))
        })
    else {
        return (AxumStatus::UNAUTHORIZED, "no authorization").into_response();
    };
    let booking = query.get("booking_id").cloned().unwrap_or_default();
    let path = format!("/c/booking/show.xml?booking_id={booking}");
    if signature != expected_signature(&channel, &marketplace, time, &path) {
        return (AxumStatus::UNAUTHORIZED, "bad signature").into_response();
    }
    let scripted = fake
        .scripted
        .lock()
        .ok()
        .and_then(|s| s.get(&booking).cloned());
    if let Some(answer) = scripted {
        let mut response = (
            AxumStatus::from_u16(answer.status).unwrap_or(AxumStatus::OK),
            answer.body,
        )
            .into_response();
        for (name, value) in answer.headers {
            if let Ok(value) = value.parse() {
                response.headers_mut().insert(name, value);
            }
        }
        return response;
    }
    let file = match (channel.as_str(), booking.as_str()) {
        ("3930", "1234") if fake.cancelled.load(Ordering::SeqCst) => {
            "show_booking_1234_cancelled.xml"
        }
        ("3930", "1234") => "show_booking_1234.xml",
        ("4001", "1234") => "show_booking_1234_other_account.xml",
        _ => "show_booking_error.xml",
    };
    (AxumStatus::OK, fixture(file)).into_response()
}

pub async fn start_fake_tourcms() -> (String, FakeTourCms) {
    let fake = FakeTourCms::default();
    let app = axum::Router::new()
        .route("/c/booking/show.xml", axum::routing::get(show_booking))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, fake)
}
