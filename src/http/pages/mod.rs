//! The operator's web pages (`/ui`): the diary, the unmatched inbox, the event log, partner
//! health. Server-rendered from `templates/` with auto-escaping: partner-supplied text is
//! data, never markup. No scripts at all: forms post and redirect back, and the
//! Content-Security-Policy forbids scripts, so even a missed escape could not run one.
//!
//! Every page but the login form needs a session ([`super::session`]); every form carries
//! the session's CSRF token. A page shows what the signed-in user's role may see: a venue
//! manager's pages list their venues only, and another venue's booking, sale or event is
//! "not found"; partner health and replay are for integrators and admins.

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
use super::session::{self, Session};
use crate::domain::Outcome;
use crate::domain::access::{Actor, Permission};
use crate::store::{
    BookingView, EventFilter, ReplayFilter, SaleFilter, SaleRecord, StoreError, SuggestionRecord,
    VenueRecord,
};

/// Events per page of the log; suggestions per sale; sales in the inbox.
const EVENTS_PER_PAGE: i64 = 50;
const SUGGESTIONS: usize = 5;
const INBOX: i64 = 50;

const TEMPLATES: [(&str, &str); 14] = [
    (
        "booking.html",
        include_str!("../../../templates/booking.html"),
    ),
    ("base.html", include_str!("../../../templates/base.html")),
    ("login.html", include_str!("../../../templates/login.html")),
    ("diary.html", include_str!("../../../templates/diary.html")),
    ("inbox.html", include_str!("../../../templates/inbox.html")),
    (
        "events.html",
        include_str!("../../../templates/events.html"),
    ),
    ("event.html", include_str!("../../../templates/event.html")),
    ("sale.html", include_str!("../../../templates/sale.html")),
    (
        "health.html",
        include_str!("../../../templates/health.html"),
    ),
    ("error.html", include_str!("../../../templates/error.html")),
    (
        "partners.html",
        include_str!("../../../templates/partners.html"),
    ),
    (
        "script.html",
        include_str!("../../../templates/script.html"),
    ),
    (
        "venues.html",
        include_str!("../../../templates/venues.html"),
    ),
    ("venue.html", include_str!("../../../templates/venue.html")),
];

const STYLE: &str = include_str!("../../../templates/style.css");

static ENVIRONMENT: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut environment = Environment::new();
    for (name, source) in TEMPLATES {
        if let Err(error) = environment.add_template(name, source) {
            tracing::error!(template = name, error = %error, "a page template does not parse");
        }
    }
    environment
});

mod bookings;
mod diary;
mod events;
mod health;
mod login;
mod partners;
mod sales;
mod scripts;
mod venues;

use diary::diary;
use events::{event, events, replay_event, replay_filter};
use health::{health, map_location};
use login::{CsrfForm, login, login_page, logout, require_session};
use sales::{inbox, match_sale, sale, unmatch_sale};

pub(super) fn router(state: AppState) -> Router<AppState> {
    let signed_in = Router::new()
        .route("/", get(|| async { Redirect::to("/ui/diary") }))
        .route("/diary", get(diary))
        .route("/inbox", get(inbox))
        .route("/bookings/{id}", get(bookings::booking))
        .route("/sales/{id}", get(sale))
        .route("/sales/{id}/match", post(match_sale))
        .route("/sales/{id}/unmatch", post(unmatch_sale))
        .route("/events", get(events))
        .route("/events/replay", post(replay_filter))
        .route("/events/{id}", get(event))
        .route("/events/{id}/replay", post(replay_event))
        .route("/health", get(health))
        .route("/health/map", post(map_location))
        .route(
            "/partners",
            get(partners::partners).post(partners::change_partner),
        )
        .route(
            "/partners/{name}/script",
            get(scripts::script).post(scripts::try_or_save),
        )
        .route("/venues", get(venues::venues).post(venues::create_venue))
        .route("/venues/{id}", get(venues::venue).post(venues::save_venue))
        .route("/venues/{id}/locations", post(venues::add_location))
        .route("/logout", post(logout))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            require_session,
        ));
    Router::new()
        .route("/login", get(login_page).post(login))
        .merge(signed_in)
        .layer(session::layer(
            std::sync::Arc::clone(&state.operators),
            state.secure_cookies,
        ))
        .layer(middleware::from_fn(same_origin))
        .route("/static/style.css", get(style))
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
    #[error("your role may not do this")]
    NotAllowed,
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

/// The API's answers as the pages give them: the same checks, on a page.
impl From<crate::error::ApiError> for PageError {
    fn from(error: crate::error::ApiError) -> Self {
        use crate::error::ApiError;
        match error {
            ApiError::NotFound(what) => PageError::NotFound(what),
            ApiError::Forbidden(_) | ApiError::Unauthorized => PageError::NotAllowed,
            ApiError::Internal(error) => PageError::Internal(error),
            other => PageError::BadRequest(other.to_string()),
        }
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, title) = match &self {
            PageError::NotFound(_) => (StatusCode::NOT_FOUND, "Not found"),
            PageError::BadRequest(_) => (StatusCode::BAD_REQUEST, "That did not work"),
            PageError::Forbidden => (StatusCode::FORBIDDEN, "Expired form"),
            PageError::NotAllowed => (StatusCode::FORBIDDEN, "Not allowed"),
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
    /// Who is signed in (their e-mail, or `admin token`) and what their role shows.
    actor: String,
    integrates: bool,
    writes_diary: bool,
}

impl Chrome {
    fn new(session: &Session, page: &'static str) -> Chrome {
        Chrome {
            signed_in: true,
            csrf: session.csrf().to_owned(),
            page,
            venue_id: None,
            notice: None,
            actor: session.actor.name.clone(),
            integrates: session.actor.may(Permission::Integrate),
            writes_diary: session.actor.may(Permission::WriteDiary),
        }
    }
}

/// `Ok` when the signed-in actor's role may do `permission`.
fn allowed(actor: &Actor, permission: Permission) -> Result<(), PageError> {
    if actor.may(permission) {
        Ok(())
    } else {
        Err(PageError::NotAllowed)
    }
}

/// `Some(value)` only when it belongs to a venue `actor` sees: another venue's page is "not
/// found", as if it did not exist.
fn seen<T>(actor: &Actor, value: Option<T>, venue: impl Fn(&T) -> Option<i64>) -> Option<T> {
    value.filter(|v| match venue(v) {
        Some(venue) => actor.sees(venue),
        None => actor.venue_limit().is_none(),
    })
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

/// Refuses a form posted from another site (login CSRF, and a second line behind the CSRF
/// tokens): the browser's `Sec-Fetch-Site`, else the `Origin` it sends with every POST,
/// must say the form came from our own pages.
async fn same_origin(request: Request, next: Next) -> Response {
    if request.method() != http::Method::POST {
        return next.run(request).await;
    }
    let headers = request.headers();
    let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    let fetch_site = text(header::HeaderName::from_static("sec-fetch-site"));
    let cross_site = match (fetch_site, text(header::ORIGIN), text(header::HOST)) {
        (Some(site), _, _) => !matches!(site, "same-origin" | "none"),
        (None, Some(origin), Some(host)) => {
            origin == "null"
                || origin
                    .split_once("://")
                    .is_none_or(|(_, authority)| !authority.eq_ignore_ascii_case(host))
        }
        _ => false,
    };
    if cross_site {
        tracing::warn!("a form posted from another site was refused");
        return PageError::Forbidden.into_response();
    }
    next.run(request).await
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

/// `back` if it is a page of ours, else `fallback`: redirects never leave the site.
fn local_page<'a>(back: Option<&'a str>, fallback: &'a str) -> &'a str {
    back.filter(|b| {
        b.starts_with("/ui/")
            && !b.contains("//")
            && !b.contains('\\')
            && !b.chars().any(char::is_control)
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
        Some("mapped") => Some(format!(
            "Location {} mapped to venue {}; replayed its {} waiting event(s): below, what they became.",
            params.get("location").map_or("", String::as_str),
            params.get("venue").map_or("", String::as_str),
            count("replayed"),
        )),
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

/// One entry of a page's history (the audit trail of its subject).
#[derive(Serialize)]
struct HistoryRow {
    at: String,
    actor: String,
    action: String,
}

/// The audit trail of one subject (`sale`, `event`, `booking`), newest first.
async fn history(state: &AppState, kind: &str, id: i64) -> Result<Vec<HistoryRow>, PageError> {
    let filter = crate::store::audit::AuditFilter {
        subject: Some((kind.to_owned(), Some(id))),
        limit: 50,
        ..crate::store::audit::AuditFilter::default()
    };
    Ok(state
        .operators
        .audit(filter)
        .await?
        .into_iter()
        .map(|entry| HistoryRow {
            at: utc(entry.at),
            actor: entry.actor,
            action: entry.action,
        })
        .collect())
}

#[derive(Serialize)]
struct VenueOption {
    id: i64,
    name: String,
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
