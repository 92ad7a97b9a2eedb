//! Partner health: deliveries and their outcomes per partner, at a glance.

use super::super::partner_settings::MapTo;
use super::*;

#[derive(Serialize)]
struct HealthPage {
    #[serde(flatten)]
    chrome: Chrome,
    partners: Vec<PartnerHealth>,
    webhooks: Vec<WebhookRow>,
    /// The venues an unmapped location can be mapped to.
    venues: Vec<VenueOption>,
}

/// A problem, and for a location no venue owns, what mapping it takes.
#[derive(Serialize)]
struct ProblemRow {
    text: String,
    /// `(partner, location id)` to map.
    unmapped: Option<(String, String)>,
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
    problems: Vec<ProblemRow>,
    /// Problems beyond those listed.
    problems_not_listed: i64,
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

/// A problem in words.
fn problem_text(p: &crate::store::HealthProblem) -> String {
    match (p.reason.as_deref(), p.example.as_deref()) {
        (Some("unknown_location"), Some(example)) => format!("{example}: {} events", p.events),
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
    }
}

pub(super) async fn health(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Result<Response, PageError> {
    allowed(&session.actor, Permission::Integrate)?;
    let now = Utc::now();
    let records = state.gateway.store().health(now).await?;
    let partners = state
        .gateway
        .partners()
        .into_iter()
        .map(|(name, handler)| PartnerHealth {
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
                        .map(|p| ProblemRow {
                            unmapped: (p.reason.as_deref() == Some("unknown_location"))
                                .then_some(p.example.as_deref())
                                .flatten()
                                .and_then(crate::domain::event::unmapped_location_of)
                                .map(|location| (r.partner.clone(), location.to_owned())),
                            text: problem_text(p),
                        })
                        .collect(),
                    problems_not_listed: r.problems_not_listed,
                })
                .collect(),
            name,
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
    let mut chrome = Chrome::new(&session, "health");
    chrome.notice = notice_text(&params);
    let venues = state
        .gateway
        .store()
        .venues()
        .await?
        .into_iter()
        .map(|v| VenueOption {
            id: v.id,
            name: v.name,
        })
        .collect();
    let page = HealthPage {
        chrome,
        partners,
        webhooks,
        venues,
    };
    Ok(render("health.html", &page))
}

#[derive(Deserialize)]
pub(super) struct MapForm {
    csrf: String,
    partner: String,
    location_id: String,
    /// A venue's id, or `new` with `new_name` and `new_timezone`.
    venue: String,
    new_name: Option<String>,
    new_timezone: Option<String>,
}

/// Maps a location no venue owns (to a venue, or one made now), replays exactly the events
/// it sent meanwhile, and shows them in the event log with what they became.
pub(super) async fn map_location(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    form: Result<Form<MapForm>, FormRejection>,
) -> Result<Response, PageError> {
    let Form(form) = form.map_err(|e| PageError::BadRequest(e.body_text()))?;
    if !session.csrf_ok(&form.csrf) {
        return Err(PageError::Forbidden);
    }
    allowed(&session.actor, Permission::Integrate)?;
    allowed(&session.actor, Permission::ManageVenues)?;
    if !state.gateway.has_partner(&form.partner) {
        return Err(PageError::BadRequest(format!(
            "partner {:?} is not configured",
            form.partner
        )));
    }
    let target = match form.venue.as_str() {
        "new" => {
            let name = form.new_name.unwrap_or_default().trim().to_owned();
            let timezone = form.new_timezone.unwrap_or_default().trim().to_owned();
            let bad = |e: crate::error::ApiError| PageError::BadRequest(e.to_string());
            super::super::admin::valid_name(&name).map_err(bad)?;
            super::super::admin::valid_timezone(&timezone).map_err(bad)?;
            MapTo::NewVenue(crate::store::NewVenue {
                name,
                timezone,
                currency: None,
                locations: Vec::new(),
            })
        }
        id => MapTo::Venue(
            id.parse::<i64>()
                .map_err(|_| PageError::BadRequest("choose a venue".into()))?,
        ),
    };
    let (venue, summary) = super::super::partner_settings::map_location(
        &state,
        session.actor.clone(),
        target,
        form.partner.clone(),
        form.location_id.clone(),
        true,
        true,
    )
    .await
    .map_err(|error| PageError::BadRequest(error.to_string()))?;
    let replayed = summary.map_or(0, |s| s.replayed);
    let page = format!(
        "/ui/events?partner={}&notice=mapped&location={}&venue={venue}&replayed={replayed}",
        form_urlencoded::byte_serialize(form.partner.as_bytes()).collect::<String>(),
        form_urlencoded::byte_serialize(form.location_id.as_bytes()).collect::<String>(),
    );
    Ok(Redirect::to(&page).into_response())
}
