//! Partner health: deliveries and their outcomes per partner, at a glance.

use super::*;

#[derive(Serialize)]
struct HealthPage {
    #[serde(flatten)]
    chrome: Chrome,
    partners: Vec<PartnerHealth>,
    webhooks: Vec<WebhookRow>,
}

/// A webhook subscription as the page shows it: where, whether it is failing or disabled,
/// and what waits.
#[derive(Serialize)]
struct WebhookRow {
    id: i64,
    url: String,
    state: String,
    pending: i64,
    failed: i64,
    last_success: String,
}

#[derive(Serialize)]
struct PartnerHealth {
    name: String,
    handler: &'static str,
    rows: Vec<HealthRow>,
}

#[derive(Serialize)]
struct HealthRow {
    venue_id: Option<i64>,
    venue_name: Option<String>,
    last_hour: Vec<(String, i64)>,
    last_day: Vec<(String, i64)>,
    last_event: String,
    /// "silent since …" while the partner is unusually silent here (`partner.silent`).
    silent: Option<String>,
    match_rate: String,
    problems: Vec<String>,
}

/// How long ago `then` was, in words.
fn ago(then: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let elapsed = now - then;
    let when = if elapsed < Duration::minutes(1) {
        "just now".to_owned()
    } else if elapsed < Duration::hours(1) {
        format!("{} min ago", elapsed.num_minutes())
    } else {
        format!("{} h ago", elapsed.num_hours())
    };
    format!("{when} ({} UTC)", then.format("%H:%M"))
}

pub(super) async fn health(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
) -> Result<Response, PageError> {
    allowed(&session.actor, Permission::Integrate)?;
    let now = Utc::now();
    let records = state.gateway.store().health(now).await?;
    let partners = state
        .gateway
        .partners()
        .into_iter()
        .map(|(name, handler)| PartnerHealth {
            name: name.to_owned(),
            handler,
            rows: records
                .iter()
                .filter(|r| r.partner == name)
                .map(|r| HealthRow {
                    venue_id: r.venue_id,
                    venue_name: r.venue_name.clone(),
                    last_hour: r.last_hour.clone().into_iter().collect(),
                    last_day: r.last_day.clone().into_iter().collect(),
                    last_event: r
                        .last_event_at
                        .map_or_else(|| "–".to_owned(), |t| ago(t, now)),
                    silent: r
                        .silent_since
                        .map(|t| format!("silent since {}", ago(t, now))),
                    match_rate: match (r.matched_last_day, r.sales_last_day) {
                        (_, 0) => "–".to_owned(),
                        (matched, sales) => {
                            format!("{}% ({matched} of {sales} sales)", matched * 100 / sales)
                        }
                    },
                    problems: r
                        .problems
                        .iter()
                        .map(|p| match (p.reason.as_deref(), p.example.as_deref()) {
                            (Some("unknown_location"), Some(example)) => {
                                format!("{example}: {} events", p.events)
                            }
                            (reason, Some(example)) if p.event_type.is_some() => format!(
                                "{} {} failed ({}): {example}",
                                p.events,
                                p.event_type.as_deref().unwrap_or_default(),
                                reason.unwrap_or("")
                            ),
                            (reason, Some(example)) => format!(
                                "{} {}: {} events (e.g. {example})",
                                p.outcome,
                                reason.unwrap_or(""),
                                p.events
                            ),
                            (reason, None) => format!(
                                "{} {}: {} events",
                                p.outcome,
                                reason.unwrap_or(""),
                                p.events
                            ),
                        })
                        .collect(),
                })
                .collect(),
        })
        .collect();
    let webhooks = state
        .gateway
        .store()
        .subscriptions()
        .await?
        .into_iter()
        .map(|s| WebhookRow {
            id: s.id,
            // A query string may carry the receiver's own token: the page shows where only.
            url: s
                .url
                .split(['?', '#'])
                .next()
                .unwrap_or_default()
                .to_owned(),
            state: match (s.enabled, &s.disabled_reason, s.failing_since) {
                (false, reason, _) => format!(
                    "disabled: {}",
                    reason.as_deref().unwrap_or("by an operator")
                ),
                (true, _, Some(since)) => format!("failing since {}", ago(since, now)),
                (true, _, None) => "delivering".to_owned(),
            },
            pending: s.pending,
            failed: s.failed,
            last_success: s
                .last_success_at
                .map_or_else(|| "–".to_owned(), |t| ago(t, now)),
        })
        .collect();
    let page = HealthPage {
        chrome: Chrome::new(&session, "health"),
        partners,
        webhooks,
    };
    Ok(render("health.html", &page))
}
