//! Plays generated days against a running diarysync over HTTP and scores the diary.

use std::collections::HashMap;

use anyhow::{Context, bail};
use serde_json::{Value, json};

use super::floor::{Day, Fate, Truth};
use super::score::Score;

/// A running diarysync: its base URL, the admin token, and the Lightspeed partner as
/// configured there (its name, its Sales route and its bearer token).
#[derive(Debug, Clone)]
pub struct Target {
    pub base: String,
    pub admin_token: String,
    pub partner: String,
    pub partner_token: String,
}

impl Target {
    fn partner_url(&self) -> String {
        format!(
            "{}/Sales/partners/{}/events/order.updated",
            self.base, self.partner
        )
    }
}

/// Plays each day (its own venue, its diary, then its deliveries in order) and scores the
/// final diary against the day's truth.
///
/// # Errors
/// When the admin API refuses to set up a day or to answer what the diary holds: the
/// target is not a diarysync, or not reachable. A delivery not answered 200 is not an
/// error; it is counted in [`Score::rejected`].
pub async fn run(target: &Target, days: &[Day]) -> anyhow::Result<Score> {
    let client = reqwest::Client::new();
    let mut total = Score::default();
    for day in days {
        total.add(play(&client, target, day).await?);
    }
    Ok(total)
}

async fn play(client: &reqwest::Client, target: &Target, day: &Day) -> anyhow::Result<Score> {
    let admin = Admin { client, target };
    let venue = admin
        .send(
            reqwest::Method::POST,
            "/venues",
            json!({
                "name": format!("Simulated day {}", day.index),
                "timezone": "Europe/London",
                "locations": [{ "partner": target.partner, "location_id": day.location_id, "enabled": true }],
            }),
        )
        .await?;
    let venue_id = id_of(&venue)?;
    admin
        .send(
            reqwest::Method::PATCH,
            &format!("/venues/{venue_id}"),
            json!({ "walk_ins": true }),
        )
        .await?;
    let mut booking_ids = Vec::with_capacity(day.bookings.len());
    for booking in &day.bookings {
        let created = admin
            .send(
                reqwest::Method::POST,
                &format!("/venues/{venue_id}/bookings"),
                json!({
                    "reference": booking.reference,
                    "start": booking.start,
                    "duration_minutes": booking.minutes,
                    "covers": booking.covers,
                    "tables": booking.tables,
                    "customer": { "name": booking.name },
                }),
            )
            .await?;
        let id = id_of(&created)?;
        if booking.fate == Fate::Cancelled {
            admin
                .send(
                    reqwest::Method::POST,
                    &format!("/bookings/{id}/cancel"),
                    json!({}),
                )
                .await?;
        }
        booking_ids.push(id);
    }

    let mut score = Score {
        days: 1,
        situations: day
            .situations
            .iter()
            .map(|(situation, n)| ((*situation).to_owned(), *n))
            .collect(),
        ..Score::default()
    };
    let url = target.partner_url();
    for delivery in &day.deliveries {
        if let Some(retable) = &delivery.retable {
            let id = booking_ids
                .get(retable.booking)
                .with_context(|| format!("no booking {}", retable.booking))?;
            admin
                .send(
                    reqwest::Method::PATCH,
                    &format!("/bookings/{id}"),
                    json!({ "tables": retable.tables }),
                )
                .await?;
            continue;
        }
        score.deliveries += 1;
        let response = deliver(client, &url, target, &delivery.body).await?;
        if response.status() != reqwest::StatusCode::OK {
            score.rejected += 1;
            let status = response.status();
            let text = response.text().await.unwrap_or_default();
            score.mistake(format!(
                "day {}: delivery answered {status}: {text}",
                day.index
            ));
        }
    }

    let planned: HashMap<i64, usize> = booking_ids
        .iter()
        .enumerate()
        .map(|(index, id)| (*id, index))
        .collect();
    for sale in admin.venue_sales(venue_id).await? {
        judge_sale(day, &planned, &sale, &mut score);
    }
    for (index, id) in booking_ids.iter().enumerate() {
        let view = admin
            .send(
                reqwest::Method::GET,
                &format!("/bookings/{id}"),
                Value::Null,
            )
            .await?;
        judge_booking(day, index, &view, &mut score);
    }
    Ok(score)
}

/// Posts one notification as the partner would, retrying as partners do when told to slow
/// down (429, 503 with `Retry-After`), a few times.
async fn deliver(
    client: &reqwest::Client,
    url: &str,
    target: &Target,
    body: &Value,
) -> anyhow::Result<reqwest::Response> {
    let mut attempts = 0;
    loop {
        attempts += 1;
        let response = client
            .post(url)
            .bearer_auth(&target.partner_token)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .context("posting a delivery")?;
        let busy = matches!(
            response.status(),
            reqwest::StatusCode::TOO_MANY_REQUESTS | reqwest::StatusCode::SERVICE_UNAVAILABLE
        );
        if !busy || attempts >= 5 {
            return Ok(response);
        }
        let wait = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(1)
            .min(10);
        tokio::time::sleep(std::time::Duration::from_secs(wait)).await;
    }
}

fn judge_sale(day: &Day, planned: &HashMap<i64, usize>, sale: &Value, score: &mut Score) {
    let external_id = sale["external_id"].as_str().unwrap_or_default();
    let Some(truth) = day.truth.get(external_id) else {
        score.mistake(format!(
            "day {}: sale {external_id} was never sent",
            day.index
        ));
        return;
    };
    score.checks += 1;
    let matched = &sale["match"];
    let on = matched["booking_id"]
        .as_i64()
        .and_then(|id| planned.get(&id));
    if matched["booking_id"].is_null()
        && matched["candidates"]
            .as_array()
            .is_some_and(|c| !c.is_empty())
    {
        score.ambiguous += 1;
    }
    let says = || {
        format!(
            "{} ({})",
            matched["rule"].as_str().unwrap_or("unmatched"),
            matched["reason"].as_str().unwrap_or_default()
        )
    };
    match (*truth, on) {
        (Truth::Booking(expected), Some(got)) if *got == expected => {
            score.should_match += 1;
            score.right += 1;
            let rule = matched["rule"].as_str().unwrap_or("unknown").to_owned();
            *score.right_by_rule.entry(rule).or_default() += 1;
        }
        (Truth::Booking(expected), Some(got)) => {
            score.should_match += 1;
            score.wrong += 1;
            score.mistake(format!(
                "day {}: check {external_id} of {} on {}: {}",
                day.index,
                day.bookings[expected].reference,
                day.bookings[*got].reference,
                says()
            ));
        }
        (Truth::Booking(expected), None) => {
            score.should_match += 1;
            score.missed += 1;
            score.mistake(format!(
                "day {}: check {external_id} of {} missed: {}",
                day.index,
                day.bookings[expected].reference,
                says()
            ));
        }
        (Truth::WalkIn, Some(got)) => {
            score.wrong += 1;
            score.mistake(format!(
                "day {}: walk-in check {external_id} on {}: {}",
                day.index,
                day.bookings[*got].reference,
                says()
            ));
        }
        (Truth::WalkIn, None) => {}
    }
}

fn judge_booking(day: &Day, index: usize, view: &Value, score: &mut Score) {
    let booking = &day.bookings[index];
    let status = view["status"].as_str().unwrap_or_default();
    let expected: &[&str] = match booking.fate {
        Fate::Came => &["paid", "completed"],
        Fate::NoShow { reported: true } => &["no_show"],
        Fate::NoShow { reported: false } => &["confirmed"],
        Fate::Cancelled => &["cancelled"],
    };
    if !expected.contains(&status) {
        score.diary_errors += 1;
        score.mistake(format!(
            "day {}: booking {} ({:?}) is {status}, expected {}",
            day.index,
            booking.reference,
            booking.fate,
            expected.join(" or ")
        ));
    }
}

fn id_of(value: &Value) -> anyhow::Result<i64> {
    value["id"]
        .as_i64()
        .with_context(|| format!("no id in {value}"))
}

struct Admin<'a> {
    client: &'a reqwest::Client,
    target: &'a Target,
}

impl Admin<'_> {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Value,
    ) -> anyhow::Result<Value> {
        let mut request = self
            .client
            .request(method.clone(), format!("{}/api/v1{path}", self.target.base))
            .bearer_auth(&self.target.admin_token);
        if !body.is_null() {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("{method} {path}"))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if !status.is_success() {
            bail!("{method} {path} answered {status}: {text}");
        }
        serde_json::from_str(&text).with_context(|| format!("{method} {path}: not JSON"))
    }

    /// Every sale of the venue, page by page.
    async fn venue_sales(&self, venue_id: i64) -> anyhow::Result<Vec<Value>> {
        let mut sales = Vec::new();
        let mut before: Option<i64> = None;
        loop {
            let cursor = before.map(|id| format!("&before={id}")).unwrap_or_default();
            let page = self
                .send(
                    reqwest::Method::GET,
                    &format!("/venues/{venue_id}/sales?limit=100{cursor}"),
                    Value::Null,
                )
                .await?;
            let page = page.as_array().cloned().unwrap_or_default();
            let last = page.iter().filter_map(|s| s["id"].as_i64()).min();
            let full = page.len() == 100;
            sales.extend(page);
            match last {
                Some(id) if full => before = Some(id),
                _ => return Ok(sales),
            }
        }
    }
}
