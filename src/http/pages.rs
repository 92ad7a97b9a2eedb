//! The operator's web pages (`/ui`): the diary, the unmatched inbox, the event log, partner
//! health. Server-rendered from `templates/` with auto-escaping: partner-supplied text is
//! data, never markup. No scripts at all: forms post and redirect back, and the
//! Content-Security-Policy forbids scripts, so even a missed escape could not run one.
//!
//! Every page but the login form needs a session ([`super::session`]); every form carries
//! the session's CSRF token.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use axum::Router;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Extension, Form, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use minijinja::Environment;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::pretty::pretty;
use super::session::{self, Session, Sessions};
use crate::domain::Outcome;
use crate::store::{
    BookingView, EventFilter, ReplayFilter, SaleFilter, SaleRecord, StoreError, SuggestionRecord,
    VenueRecord,
};

/// Events per page of the log; suggestions per sale; sales in the inbox.
const EVENTS_PER_PAGE: i64 = 50;
const SUGGESTIONS: usize = 5;
const INBOX: i64 = 50;

const TEMPLATES: [(&str, &str); 9] = [
    ("base.html", include_str!("../../templates/base.html")),
    ("login.html", include_str!("../../templates/login.html")),
    ("diary.html", include_str!("../../templates/diary.html")),
    ("inbox.html", include_str!("../../templates/inbox.html")),
    ("events.html", include_str!("../../templates/events.html")),
    ("event.html", include_str!("../../templates/event.html")),
    ("sale.html", include_str!("../../templates/sale.html")),
    ("health.html", include_str!("../../templates/health.html")),
    ("error.html", include_str!("../../templates/error.html")),
];

const STYLE: &str = include_str!("../../templates/style.css");

static ENVIRONMENT: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut environment = Environment::new();
    for (name, source) in TEMPLATES {
        if let Err(error) = environment.add_template(name, source) {
            tracing::error!(template = name, error = %error, "a page template does not parse");
        }
    }
    environment
});

pub(super) fn router(state: AppState) -> Router<AppState> {
    let signed_in = Router::new()
        .route("/", get(|| async { Redirect::to("/ui/diary") }))
        .route("/diary", get(diary))
        .route("/inbox", get(inbox))
        .route("/sales/{id}", get(sale))
        .route("/sales/{id}/match", post(match_sale))
        .route("/sales/{id}/unmatch", post(unmatch_sale))
        .route("/events", get(events))
        .route("/events/replay", post(replay_filter))
        .route("/events/{id}", get(event))
        .route("/events/{id}/replay", post(replay_event))
        .route("/health", get(health))
        .route("/logout", post(logout))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            require_session,
        ));
    Router::new()
        .route("/login", get(login_page).post(login))
        .route("/static/style.css", get(style))
        .merge(signed_in)
        .layer(middleware::from_fn(page_headers))
}

/// What the pages answer with when something is wrong.
#[derive(Debug, thiserror::Error)]
pub(super) enum PageError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    BadRequest(String),
    #[error("this form has expired; reload the page and try again")]
    Forbidden,
    #[error("something went wrong on our side")]
    Internal(#[source] StoreError),
}

impl From<StoreError> for PageError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound(what) => PageError::NotFound(what),
            StoreError::Conflict(message) => PageError::BadRequest(message),
            other => PageError::Internal(other),
        }
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, title) = match &self {
            PageError::NotFound(_) => (StatusCode::NOT_FOUND, "Not found"),
            PageError::BadRequest(_) => (StatusCode::BAD_REQUEST, "That did not work"),
            PageError::Forbidden => (StatusCode::FORBIDDEN, "Expired form"),
            PageError::Internal(error) => {
                tracing::error!(error = %error, source = ?std::error::Error::source(error), "page failed");
                (StatusCode::INTERNAL_SERVER_ERROR, "Error")
            }
        };
        let page = ErrorPage {
            chrome: Chrome::default(),
            title,
            message: self.to_string(),
        };
        (status, render("error.html", &page)).into_response()
    }
}

/// The fields every page's layout reads.
#[derive(Debug, Default, Serialize)]
struct Chrome {
    signed_in: bool,
    csrf: String,
    page: &'static str,
    venue_id: Option<i64>,
    notice: Option<String>,
}

impl Chrome {
    fn new(sessions: &Sessions, session: &Session, page: &'static str) -> Chrome {
        Chrome {
            signed_in: true,
            csrf: sessions.csrf(session),
            page,
            venue_id: None,
            notice: None,
        }
    }
}

#[derive(Serialize)]
struct ErrorPage {
    #[serde(flatten)]
    chrome: Chrome,
    title: &'static str,
    message: String,
}

fn render_html(name: &str, page: &impl Serialize) -> Result<String, minijinja::Error> {
    ENVIRONMENT
        .get_template(name)
        .and_then(|template| template.render(minijinja::value::Serde(page)))
}

/// A page as HTML. A template that fails to render is an internal error, logged.
fn render(name: &str, page: &impl Serialize) -> Response {
    match render_html(name, page) {
        Ok(html) => ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response(),
        Err(error) => {
            tracing::error!(template = name, error = %error, "a page did not render");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be rendered",
            )
                .into_response()
        }
    }
}

/// Headers on every page: no scripts, no framing, no caching of operator data.
async fn page_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self'; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// Lets the request through with a valid session, else sends the browser to the login form.
async fn require_session(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let session = session::cookie_value(request.headers())
        .and_then(|cookie| state.sessions.check(cookie, Utc::now()));
    let Some(session) = session else {
        // Inside `/ui` the URI lost its prefix; the original one is the page to come back to.
        let wanted = request
            .extensions()
            .get::<axum::extract::OriginalUri>()
            .and_then(|uri| uri.path_and_query())
            .map_or("/ui/diary", |p| p.as_str());
        let next_page = if request.method() == http::Method::GET {
            wanted
        } else {
            "/ui/diary"
        };
        let target = format!(
            "/ui/login?next={}",
            form_urlencoded::byte_serialize(next_page.as_bytes()).collect::<String>()
        );
        return Redirect::to(&target).into_response();
    };
    request.extensions_mut().insert(session);
    next.run(request).await
}

/// `back` if it is a page of ours, else `fallback`: redirects never leave the site.
fn local_page<'a>(back: Option<&'a str>, fallback: &'a str) -> &'a str {
    back.filter(|b| {
        b.starts_with("/ui/") && !b.contains("//") && !b.contains('\\') && !b.contains(['\r', '\n'])
    })
    .unwrap_or(fallback)
}

/// Query parameter `key`, parsed; absent or empty is `None`.
fn param<T: std::str::FromStr>(
    params: &BTreeMap<String, String>,
    key: &str,
) -> Result<Option<T>, PageError> {
    match params.get(key).map(|v| v.trim()).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(value) => value
            .parse()
            .map(Some)
            .map_err(|_| PageError::BadRequest(format!("{key} {value:?} is not valid"))),
    }
}

/// `page` with `key=value` added to its query string.
fn with_param(page: &str, key: &str, value: &str) -> String {
    let separator = if page.contains('?') { '&' } else { '?' };
    let value: String = form_urlencoded::byte_serialize(value.as_bytes()).collect();
    format!("{page}{separator}{key}={value}")
}

async fn style() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        STYLE,
    )
        .into_response()
}

#[derive(Deserialize, Default)]
struct LoginQuery {
    next: Option<String>,
}

#[derive(Serialize)]
struct LoginPage {
    #[serde(flatten)]
    chrome: Chrome,
    next: String,
    failed: bool,
}

async fn login_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<LoginQuery>, QueryRejection>,
) -> Response {
    let next = query.map(|Query(q)| q.next).unwrap_or_default();
    let next = local_page(next.as_deref(), "/ui/diary").to_owned();
    let signed_in = session::cookie_value(&headers)
        .and_then(|cookie| state.sessions.check(cookie, Utc::now()))
        .is_some();
    if signed_in {
        return Redirect::to(&next).into_response();
    }
    let page = LoginPage {
        chrome: Chrome::default(),
        next,
        failed: false,
    };
    render("login.html", &page)
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
    next: Option<String>,
}

async fn login(
    State(state): State<AppState>,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return PageError::BadRequest("the login form was incomplete".into()).into_response();
    };
    let next = local_page(form.next.as_deref(), "/ui/diary").to_owned();
    if !Sessions::is_admin_token(&state.admin_token, form.token.trim()) {
        tracing::warn!("a login to the pages failed");
        let page = LoginPage {
            chrome: Chrome::default(),
            next,
            failed: true,
        };
        return (StatusCode::UNAUTHORIZED, render("login.html", &page)).into_response();
    }
    let cookie = session::set_cookie(&state.sessions.start(Utc::now()));
    let mut response = Redirect::to(&next).into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

async fn logout(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Result<Response, PageError> {
    let Ok(Form(form)) = form else {
        return Err(PageError::Forbidden);
    };
    if !state.sessions.csrf_ok(&session, &form.csrf) {
        return Err(PageError::Forbidden);
    }
    let mut response = Redirect::to("/ui/login").into_response();
    if let Ok(value) = HeaderValue::from_str(&session::clear_cookie()) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    Ok(response)
}

/// The notice a redirect asked to show, in our words only.
fn notice_text(params: &BTreeMap<String, String>) -> Option<String> {
    let count = |key: &str| {
        params
            .get(key)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    match params.get("notice").map(String::as_str) {
        Some("matched") => Some("Sale matched: the diary and its spend now include it.".into()),
        Some("unmatched") => Some("Sale unmatched: it is back in the inbox.".into()),
        Some("replayed") => Some(format!(
            "Replayed {} event(s) through the current handlers; {} recovered.",
            count("replayed"),
            count("recovered")
        )),
        _ => None,
    }
}

/// A time of day in `zone`, `19:30`.
fn hm(at: DateTime<Utc>, zone: Tz) -> String {
    at.with_timezone(&zone).format("%H:%M").to_string()
}

/// An instant for the event log, UTC to the second.
fn utc(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S").to_string()
}

fn zone_of(venue: &VenueRecord) -> Tz {
    venue.timezone.parse().unwrap_or(chrono_tz::UTC)
}

/// The diary page of the local day a booking starts on.
fn diary_link(venue: &VenueRecord, start: DateTime<Utc>) -> String {
    let date = start.with_timezone(&zone_of(venue)).date_naive();
    format!("/ui/diary?venue={}&date={date}#booking", venue.id)
}

#[derive(Serialize)]
struct DiaryPage {
    #[serde(flatten)]
    chrome: Chrome,
    venues: Vec<VenueOption>,
    venue_name: String,
    timezone: String,
    date: String,
    date_long: String,
    previous_day: String,
    next_day: String,
    hours_label: String,
    here: String,
    diary: Option<crate::store::DiaryView>,
    rows: Vec<BookingRow>,
}

#[derive(Serialize)]
struct VenueOption {
    id: i64,
    name: String,
}

#[derive(Serialize)]
struct BookingRow {
    id: i64,
    time: String,
    bar_left: String,
    bar_width: String,
    guest: Option<String>,
    reference: Option<String>,
    covers: i64,
    /// Covers the POS counted, shown beside the booked ones when they differ.
    pos_covers: Option<i64>,
    tables: String,
    status: &'static str,
    sales: Vec<SaleChip>,
    spend: String,
    per_cover: Option<String>,
}

#[derive(Serialize)]
struct SaleChip {
    id: i64,
    label: String,
    total: String,
    state: &'static str,
    rule: &'static str,
}

/// Money as the API writes it: at least two decimals, every digit kept.
fn money(amount: rust_decimal::Decimal) -> String {
    let mut amount = amount;
    if amount.scale() < 2 {
        amount.rescale(2);
    }
    amount.to_string()
}

fn sale_label(sale: &SaleRecord) -> String {
    sale.number
        .clone()
        .unwrap_or_else(|| format!("{} {}", sale.partner, sale.external_id))
}

async fn diary(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Result<Response, PageError> {
    let venue_id: Option<i64> = param(&params, "venue")?;
    let date: Option<NaiveDate> = param(&params, "date")?;
    let store = state.gateway.store();
    let venues = store.venues().await?;
    let mut chrome = Chrome::new(&state.sessions, &session, "diary");
    chrome.notice = notice_text(&params);
    let options = venues
        .iter()
        .map(|v| VenueOption {
            id: v.id,
            name: v.name.clone(),
        })
        .collect();
    let chosen = match venue_id {
        Some(id) => Some(
            venues
                .iter()
                .find(|v| v.id == id)
                .ok_or(PageError::NotFound("venue"))?,
        ),
        None => venues.first(),
    };
    let Some(venue) = chosen else {
        return Ok(render(
            "diary.html",
            &DiaryPage {
                chrome,
                venues: options,
                venue_name: String::new(),
                timezone: String::new(),
                date: String::new(),
                date_long: String::new(),
                previous_day: String::new(),
                next_day: String::new(),
                hours_label: String::new(),
                here: "/ui/diary".into(),
                diary: None,
                rows: Vec::new(),
            },
        ));
    };
    let zone = zone_of(venue);
    let date = date.unwrap_or_else(|| Utc::now().with_timezone(&zone).date_naive());
    crate::domain::time::bounded(date.and_time(chrono::NaiveTime::MIN).and_utc(), "date")
        .map_err(|e| PageError::BadRequest(e.to_string()))?;
    let diary = store.diary(venue.id, date).await?;
    let (from_hour, to_hour) = service_hours(&diary.bookings, zone);
    let span = f64::from((to_hour - from_hour).max(1)) * 60.0;
    let minutes_into = |at: DateTime<Utc>| {
        let local = at.with_timezone(&zone);
        let minutes = if local.date_naive() < date {
            0.0
        } else if local.date_naive() > date {
            24.0 * 60.0
        } else {
            f64::from(local.hour() * 60 + local.minute())
        };
        ((minutes - f64::from(from_hour) * 60.0) / span * 100.0).clamp(0.0, 100.0)
    };
    let rows = diary
        .bookings
        .iter()
        .map(|b| {
            let left = minutes_into(b.start);
            let right = minutes_into(b.end).max(left + 1.0).min(100.0);
            booking_row(b, zone, left, right - left)
        })
        .collect();
    chrome.venue_id = Some(venue.id);
    let page = DiaryPage {
        chrome,
        venues: options,
        venue_name: venue.name.clone(),
        timezone: venue.timezone.clone(),
        date: date.to_string(),
        date_long: date.format("%A %-d %B %Y").to_string(),
        previous_day: date.pred_opt().unwrap_or(date).to_string(),
        next_day: date.succ_opt().unwrap_or(date).to_string(),
        hours_label: format!("{from_hour:02}:00 – {to_hour:02}:00"),
        here: format!("/ui/diary?venue={}&date={date}", venue.id),
        diary: Some(diary),
        rows,
    };
    Ok(render("diary.html", &page))
}

/// The hours the timeline shows: the day's bookings, rounded out to whole hours, and at least
/// 11:00 to 23:00.
fn service_hours(bookings: &[BookingView], zone: Tz) -> (u32, u32) {
    let mut from = 11;
    let mut to = 23;
    for booking in bookings {
        let start = booking.start.with_timezone(&zone);
        let end = booking.end.with_timezone(&zone);
        from = from.min(start.hour());
        let end_hour = if end.date_naive() > start.date_naive() {
            24
        } else {
            end.hour() + u32::from(end.minute() > 0)
        };
        to = to.max(end_hour);
    }
    (from, to.min(24))
}

fn booking_row(b: &BookingView, zone: Tz, left: f64, width: f64) -> BookingRow {
    BookingRow {
        id: b.id,
        time: format!("{}–{}", hm(b.start, zone), hm(b.end, zone)),
        bar_left: format!("{left:.2}"),
        bar_width: format!("{width:.2}"),
        guest: b.customer.name.clone(),
        reference: b.reference.clone(),
        covers: b.covers,
        pos_covers: b.pos_covers,
        tables: b.tables.join(", "),
        status: b.status,
        sales: b
            .sales
            .iter()
            .map(|s| SaleChip {
                id: s.id,
                label: sale_label(s),
                total: money(s.total),
                state: s.state,
                rule: s.match_.rule.unwrap_or("unmatched"),
            })
            .collect(),
        spend: money(b.spend.total),
        per_cover: b.spend.per_cover.map(money),
    }
}

#[derive(Serialize)]
struct InboxPage {
    #[serde(flatten)]
    chrome: Chrome,
    venues: Vec<VenueOption>,
    venue_name: Option<String>,
    here: String,
    sales: Vec<InboxSale>,
}

#[derive(Serialize)]
struct InboxSale {
    id: i64,
    label: String,
    partner: String,
    opened: String,
    tables: String,
    total: String,
    state: &'static str,
    reason: Option<String>,
    suggestions: Vec<SuggestionRow>,
}

#[derive(Serialize)]
struct SuggestionRow {
    booking_id: i64,
    time: String,
    guest: Option<String>,
    covers: i64,
    tables: String,
    reason: String,
}

fn suggestion_rows(suggestions: Vec<SuggestionRecord>, zone: Tz) -> Vec<SuggestionRow> {
    suggestions
        .into_iter()
        .map(|s| SuggestionRow {
            booking_id: s.booking_id,
            time: format!(
                "{} {}–{}",
                s.start.with_timezone(&zone).format("%a %-d %b"),
                hm(s.start, zone),
                hm(s.end, zone)
            ),
            guest: s.customer_name,
            covers: s.covers,
            tables: s.tables.join(", "),
            reason: s.reason,
        })
        .collect()
}

async fn inbox(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Result<Response, PageError> {
    let venue_id: Option<i64> = param(&params, "venue")?;
    let store = state.gateway.store();
    let venues = store.venues().await?;
    let mut chrome = Chrome::new(&state.sessions, &session, "inbox");
    chrome.notice = notice_text(&params);
    chrome.venue_id = venue_id;
    let filter = SaleFilter {
        venue_id,
        unmatched: Some(true),
        limit: INBOX,
        ..SaleFilter::default()
    };
    let mut sales = Vec::new();
    for sale in store.sales(&filter).await? {
        if sale.state == "voided" {
            continue;
        }
        let Some(venue) = venues.iter().find(|v| v.id == sale.venue_id) else {
            continue;
        };
        let zone = zone_of(venue);
        let suggestions = store
            .suggestions(sale.id, SUGGESTIONS)
            .await?
            .unwrap_or_default();
        sales.push(InboxSale {
            id: sale.id,
            label: sale_label(&sale),
            partner: sale.partner.clone(),
            opened: format!(
                "{} {}",
                sale.opened_at.with_timezone(&zone).format("%a %-d %b"),
                hm(sale.opened_at, zone)
            ),
            tables: sale.tables.join(", "),
            total: money(sale.total),
            state: sale.state,
            reason: sale.match_.reason.clone(),
            suggestions: suggestion_rows(suggestions, zone),
        });
    }
    let here = match venue_id {
        Some(id) => format!("/ui/inbox?venue={id}"),
        None => "/ui/inbox".to_owned(),
    };
    let page = InboxPage {
        chrome,
        venue_name: venue_id
            .and_then(|id| venues.iter().find(|v| v.id == id))
            .map(|v| v.name.clone()),
        venues: venues
            .iter()
            .map(|v| VenueOption {
                id: v.id,
                name: v.name.clone(),
            })
            .collect(),
        here,
        sales,
    };
    Ok(render("inbox.html", &page))
}

#[derive(Serialize)]
struct SalePage {
    #[serde(flatten)]
    chrome: Chrome,
    here: String,
    s: SaleView,
    suggestions: Vec<SuggestionRow>,
}

#[derive(Serialize)]
struct SaleView {
    id: i64,
    label: String,
    partner: String,
    external_id: String,
    kind: &'static str,
    state: &'static str,
    opened: String,
    closed: Option<String>,
    tables: String,
    total: String,
    paid: String,
    currency: Option<String>,
    booking_id: Option<i64>,
    booking_link: Option<String>,
    rule: Option<&'static str>,
    reason: Option<String>,
    lines: Vec<LineView>,
    payments: Vec<PaymentView>,
}

#[derive(Serialize)]
struct LineView {
    description: String,
    quantity: String,
    amount: String,
}

#[derive(Serialize)]
struct PaymentView {
    method: Option<String>,
    amount: String,
    tip: String,
}

async fn sale(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Path(id): Path<i64>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Result<Response, PageError> {
    let store = state.gateway.store();
    let detail = store.sale(id).await?.ok_or(PageError::NotFound("sale"))?;
    let venue = store
        .venue(detail.sale.venue_id)
        .await?
        .ok_or(PageError::NotFound("venue"))?;
    let zone = zone_of(&venue);
    let booking_link = match detail.sale.match_.booking_id {
        Some(booking_id) => store.booking(booking_id).await?.map(|b| {
            diary_link(&venue, b.start).replace("#booking", &format!("#booking-{booking_id}"))
        }),
        None => None,
    };
    let suggestions = if detail.sale.match_.booking_id.is_none() {
        store
            .suggestions(id, SUGGESTIONS)
            .await?
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    let sale = &detail.sale;
    let mut chrome = Chrome::new(&state.sessions, &session, "inbox");
    chrome.notice = notice_text(&params);
    chrome.venue_id = Some(venue.id);
    let page = SalePage {
        chrome,
        here: format!("/ui/sales/{id}"),
        s: SaleView {
            id,
            label: sale_label(sale),
            partner: sale.partner.clone(),
            external_id: sale.external_id.clone(),
            kind: sale.kind,
            state: sale.state,
            opened: format!(
                "{} {}",
                sale.opened_at.with_timezone(&zone).format("%a %-d %b %Y"),
                hm(sale.opened_at, zone)
            ),
            closed: sale.closed_at.map(|t| hm(t, zone)),
            tables: sale.tables.join(", "),
            total: money(sale.total),
            paid: money(sale.paid),
            currency: sale.currency.clone(),
            booking_id: sale.match_.booking_id,
            booking_link,
            rule: sale.match_.rule,
            reason: sale.match_.reason.clone(),
            lines: detail
                .lines
                .iter()
                .map(|l| LineView {
                    description: l.description.clone(),
                    quantity: l.quantity.normalize().to_string(),
                    amount: money(l.amount),
                })
                .collect(),
            payments: detail
                .payments
                .iter()
                .map(|p| PaymentView {
                    method: p.method.clone(),
                    amount: money(p.amount),
                    tip: money(p.tip),
                })
                .collect(),
        },
        suggestions: suggestion_rows(suggestions, zone),
    };
    Ok(render("sale.html", &page))
}

#[derive(Deserialize)]
struct MatchForm {
    csrf: String,
    booking_id: i64,
    back: Option<String>,
}

#[derive(Deserialize)]
struct BackForm {
    csrf: String,
    back: Option<String>,
}

async fn match_sale(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Path(id): Path<i64>,
    form: Result<Form<MatchForm>, FormRejection>,
) -> Result<Response, PageError> {
    let Form(form) = form.map_err(|e| PageError::BadRequest(e.body_text()))?;
    if !state.sessions.csrf_ok(&session, &form.csrf) {
        return Err(PageError::Forbidden);
    }
    state
        .gateway
        .store()
        .match_sale(id, form.booking_id)
        .await?;
    let back = local_page(form.back.as_deref(), "/ui/inbox");
    Ok(Redirect::to(&with_param(back, "notice", "matched")).into_response())
}

async fn unmatch_sale(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Path(id): Path<i64>,
    form: Result<Form<BackForm>, FormRejection>,
) -> Result<Response, PageError> {
    let Form(form) = form.map_err(|e| PageError::BadRequest(e.body_text()))?;
    if !state.sessions.csrf_ok(&session, &form.csrf) {
        return Err(PageError::Forbidden);
    }
    state.gateway.store().unmatch_sale(id).await?;
    let back = local_page(form.back.as_deref(), "/ui/inbox");
    Ok(Redirect::to(&with_param(back, "notice", "unmatched")).into_response())
}

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

async fn events(
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
    };
    let events = state.gateway.store().events(&filter).await?;
    let older = (events.len() == usize::try_from(EVENTS_PER_PAGE).unwrap_or(usize::MAX))
        .then(|| events.last().map(|e| e.id))
        .flatten()
        .map(|last| format!("/ui/events?{}&before={last}", log.query_string()));
    let mut chrome = Chrome::new(&state.sessions, &session, "events");
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

async fn event(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Path(id): Path<i64>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Result<Response, PageError> {
    let store = state.gateway.store();
    let detail = store.event(id).await?.ok_or(PageError::NotFound("event"))?;
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
    let mut chrome = Chrome::new(&state.sessions, &session, "events");
    chrome.notice = notice_text(&params);
    let page = EventPage {
        chrome,
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

async fn replay_event(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Path(id): Path<i64>,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Result<Response, PageError> {
    let Form(form) = form.map_err(|e| PageError::BadRequest(e.body_text()))?;
    if !state.sessions.csrf_ok(&session, &form.csrf) {
        return Err(PageError::Forbidden);
    }
    let filter = ReplayFilter {
        event_id: Some(id),
        ..ReplayFilter::default()
    };
    let summary = state.gateway.replay(&filter, || {}).await?;
    Ok(Redirect::to(&replayed(&format!("/ui/events/{id}"), &summary)).into_response())
}

fn replayed(page: &str, summary: &crate::gateway::ReplaySummary) -> String {
    let page = with_param(page, "notice", "replayed");
    let page = with_param(&page, "replayed", &summary.replayed.to_string());
    with_param(&page, "recovered", &summary.recovered.to_string())
}

#[derive(Deserialize)]
struct ReplayForm {
    csrf: String,
    #[serde(flatten)]
    filter: LogFilter,
}

async fn replay_filter(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    form: Result<Form<ReplayForm>, FormRejection>,
) -> Result<Response, PageError> {
    let Form(form) = form.map_err(|e| PageError::BadRequest(e.body_text()))?;
    if !state.sessions.csrf_ok(&session, &form.csrf) {
        return Err(PageError::Forbidden);
    }
    let filter = ReplayFilter {
        event_id: None,
        partner: LogFilter::text(&form.filter.partner),
        outcome: form.filter.outcome()?,
        reason: LogFilter::text(&form.filter.reason),
        from: LogFilter::time(&form.filter.from)?,
        to: LogFilter::time(&form.filter.to)?,
    };
    let summary = state.gateway.replay(&filter, || {}).await?;
    let page = format!("/ui/events?{}", form.filter.query_string());
    Ok(Redirect::to(&replayed(&page, &summary)).into_response())
}

#[derive(Serialize)]
struct HealthPage {
    #[serde(flatten)]
    chrome: Chrome,
    partners: Vec<PartnerHealth>,
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

async fn health(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
) -> Result<Response, PageError> {
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
    let page = HealthPage {
        chrome: Chrome::new(&state.sessions, &session, "health"),
        partners,
    };
    Ok(render("health.html", &page))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_parses() {
        for (name, _) in TEMPLATES {
            assert!(ENVIRONMENT.get_template(name).is_ok(), "{name}");
        }
    }

    proptest::proptest! {
        #[test]
        fn no_back_link_leaves_our_pages(back in "[ -~\r\n]{0,40}") {
            let page = local_page(Some(&back), "/ui/diary");
            proptest::prop_assert!(page.starts_with("/ui/"));
            proptest::prop_assert!(!page.contains("//") && !page.contains(['\r', '\n', '\\']));
        }
    }

    #[test]
    fn redirects_stay_on_our_pages() {
        assert_eq!(
            local_page(Some("/ui/inbox?venue=1"), "/ui/x"),
            "/ui/inbox?venue=1"
        );
        for hostile in [
            "https://evil.example/",
            "//evil.example",
            "/ui/..//evil",
            "/api/v1",
            "/ui/\\evil",
            "/ui/a\r\nSet-Cookie: x",
        ] {
            assert_eq!(local_page(Some(hostile), "/ui/x"), "/ui/x", "{hostile}");
        }
    }

    #[test]
    fn partner_text_is_escaped_on_a_page() {
        let page = ErrorPage {
            chrome: Chrome::default(),
            title: "t",
            message: "<script>alert(1)</script>".into(),
        };
        let html = render_html("error.html", &page).expect("renders");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;"), "{html}");
        assert!(!html.contains("<script>"));
    }
}
