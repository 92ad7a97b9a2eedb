//! The event log, one event's page, and replay from either.

use super::*;

/// The event log's filter, as the form sends it (times are `datetime-local`, in UTC).
#[derive(Debug, Default, Deserialize, Serialize)]
struct LogFilter {
    #[serde(default)]
    partner: String,
    #[serde(default)]
    outcome: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
}

impl LogFilter {
    fn text(value: &str) -> Option<String> {
        let value = value.trim();
        (!value.is_empty()).then(|| value.to_owned())
    }

    fn time(value: &str) -> Result<Option<DateTime<Utc>>, PageError> {
        let value = value.trim();
        if value.is_empty() {
            return Ok(None);
        }
        NaiveDateTime::parse_from_str(value, "%Y-%m-%dT%H:%M")
            .or_else(|_| NaiveDateTime::parse_from_str(value, "%Y-%m-%dT%H:%M:%S"))
            .map_err(|_| PageError::BadRequest(format!("{value:?} is not a date and time")))
            .and_then(|t| {
                crate::domain::time::bounded(Utc.from_utc_datetime(&t), "time")
                    .map(Some)
                    .map_err(|e| PageError::BadRequest(e.to_string()))
            })
    }

    fn outcome(&self) -> Result<Option<String>, PageError> {
        match Self::text(&self.outcome) {
            Some(outcome) if Outcome::parse(&outcome).is_none() => Err(PageError::BadRequest(
                format!("{outcome:?} is not an outcome"),
            )),
            other => Ok(other),
        }
    }

    fn query_string(&self) -> String {
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs([
                ("partner", &self.partner),
                ("outcome", &self.outcome),
                ("reason", &self.reason),
                ("from", &self.from),
                ("to", &self.to),
            ])
            .finish()
    }
}

#[derive(Serialize)]
struct EventsPage {
    #[serde(flatten)]
    chrome: Chrome,
    filter: LogFilter,
    partners: Vec<String>,
    outcomes: Vec<&'static str>,
    events: Vec<EventRow>,
    older: Option<String>,
}

#[derive(Serialize)]
struct EventRow {
    id: i64,
    received: String,
    partner: String,
    event_type: String,
    outcome: String,
    reason: Option<String>,
    detail: Option<String>,
}

pub(super) async fn events(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Result<Response, PageError> {
    let notice = notice_text(&params);
    let text = |key: &str| params.get(key).cloned().unwrap_or_default();
    let log = LogFilter {
        partner: text("partner"),
        outcome: text("outcome"),
        reason: text("reason"),
        from: text("from"),
        to: text("to"),
    };
    let filter = EventFilter {
        partner: LogFilter::text(&log.partner),
        outcome: log.outcome()?,
        reason: LogFilter::text(&log.reason),
        before_id: param(&params, "before")?,
        from: LogFilter::time(&log.from)?,
        to: LogFilter::time(&log.to)?,
        limit: EVENTS_PER_PAGE,
        venue_limit: session.actor.venue_limit(),
    };
    let events = state.gateway.store().events(&filter).await?;
    let older = (events.len() == usize::try_from(EVENTS_PER_PAGE).unwrap_or(usize::MAX))
        .then(|| events.last().map(|e| e.id))
        .flatten()
        .map(|last| format!("/ui/events?{}&before={last}", log.query_string()));
    let mut chrome = Chrome::new(&session, "events");
    chrome.notice = notice;
    let page = EventsPage {
        chrome,
        partners: state
            .gateway
            .partners()
            .into_iter()
            .map(|(name, _)| name.to_owned())
            .collect(),
        outcomes: Outcome::ALL.iter().map(|o| o.as_str()).collect(),
        events: events
            .into_iter()
            .map(|e| EventRow {
                id: e.id,
                received: utc(e.received_at),
                partner: e.partner,
                event_type: e.event_type,
                outcome: e.outcome,
                reason: e.reason,
                detail: e.detail,
            })
            .collect(),
        older,
        filter: log,
    };
    Ok(render("events.html", &page))
}

#[derive(Serialize)]
struct EventPage {
    #[serde(flatten)]
    chrome: Chrome,
    e: EventView,
    history: Vec<HistoryRow>,
}

#[derive(Serialize)]
struct EventView {
    id: i64,
    received: String,
    partner: String,
    handler: Option<String>,
    handler_version: Option<String>,
    method: String,
    path: String,
    query: Option<String>,
    event_type: String,
    outcome: String,
    reason: Option<String>,
    detail: Option<String>,
    sale_id: Option<i64>,
    booking_id: Option<i64>,
    booking_link: Option<String>,
    venue_id: Option<i64>,
    body_bytes: usize,
    received_bytes: usize,
    body_sha256: String,
    headers: Vec<(String, String)>,
    payload: String,
}

pub(super) async fn event(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Path(id): Path<i64>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Result<Response, PageError> {
    let store = state.gateway.store();
    let detail = seen(&session.actor, store.event(id).await?, |e| {
        e.summary.venue_id
    })
    .ok_or(PageError::NotFound("event"))?;
    let summary = &detail.summary;
    let mut booking = None;
    if let Some(sale_id) = summary.sale_id
        && let Some(sale) = store.sale(sale_id).await?
        && let (Some(booking_id), Some(venue)) = (
            sale.sale.match_.booking_id,
            store.venue(sale.sale.venue_id).await?,
        )
        && let Some(view) = store.booking(booking_id).await?
    {
        let link =
            diary_link(&venue, view.start).replace("#booking", &format!("#booking-{booking_id}"));
        booking = Some((booking_id, link));
    }
    let payload = match (&detail.body, &detail.body_base64) {
        (Some(text), _) => pretty(text),
        (None, Some(base64)) => format!("(not UTF-8; base64)\n{base64}"),
        (None, None) => String::new(),
    };
    let mut chrome = Chrome::new(&session, "events");
    chrome.notice = notice_text(&params);
    let page = EventPage {
        chrome,
        history: history(&state, "event", summary.id).await?,
        e: EventView {
            id: summary.id,
            received: utc(summary.received_at),
            partner: summary.partner.clone(),
            handler: summary.handler.clone(),
            handler_version: summary.handler_version.clone(),
            method: summary.method.clone(),
            path: detail.path.clone(),
            query: detail.query.clone(),
            event_type: summary.event_type.clone(),
            outcome: summary.outcome.clone(),
            reason: summary.reason.clone(),
            detail: summary.detail.clone(),
            sale_id: summary.sale_id,
            booking_id: booking.as_ref().map(|(id, _)| *id),
            booking_link: booking.map(|(_, link)| link),
            venue_id: summary.venue_id,
            body_bytes: detail.body_bytes,
            received_bytes: detail.received_bytes,
            body_sha256: detail.body_sha256.clone(),
            headers: detail.headers.clone().into_iter().collect(),
            payload,
        },
    };
    Ok(render("event.html", &page))
}

pub(super) async fn replay_event(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Path(id): Path<i64>,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Result<Response, PageError> {
    let Form(form) = form.map_err(|e| PageError::BadRequest(e.body_text()))?;
    if !session.csrf_ok(&form.csrf) {
        return Err(PageError::Forbidden);
    }
    let filter = ReplayFilter {
        event_id: Some(id),
        ..ReplayFilter::default()
    };
    allowed(&session.actor, Permission::Integrate)?;
    let summary =
        super::super::events::replay_audited(&state, session.actor.clone(), filter).await?;
    Ok(Redirect::to(&replayed(&format!("/ui/events/{id}"), &summary)).into_response())
}

fn replayed(page: &str, summary: &crate::gateway::ReplaySummary) -> String {
    let page = with_param(page, "notice", "replayed");
    let page = with_param(&page, "replayed", &summary.replayed.to_string());
    with_param(&page, "recovered", &summary.recovered.to_string())
}

#[derive(Deserialize)]
pub(super) struct ReplayForm {
    csrf: String,
    #[serde(flatten)]
    filter: LogFilter,
}

pub(super) async fn replay_filter(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    form: Result<Form<ReplayForm>, FormRejection>,
) -> Result<Response, PageError> {
    let Form(form) = form.map_err(|e| PageError::BadRequest(e.body_text()))?;
    if !session.csrf_ok(&form.csrf) {
        return Err(PageError::Forbidden);
    }
    let filter = ReplayFilter {
        event_id: None,
        partner: LogFilter::text(&form.filter.partner),
        outcome: form.filter.outcome()?,
        reason: LogFilter::text(&form.filter.reason),
        from: LogFilter::time(&form.filter.from)?,
        to: LogFilter::time(&form.filter.to)?,
        unmapped_location: None,
    };
    allowed(&session.actor, Permission::Integrate)?;
    let summary =
        super::super::events::replay_audited(&state, session.actor.clone(), filter).await?;
    let page = format!("/ui/events?{}", form.filter.query_string());
    Ok(Redirect::to(&replayed(&page, &summary)).into_response())
}
