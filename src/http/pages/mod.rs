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

mod diary;
mod events;
mod health;
mod sales;

use diary::diary;
use events::{event, events, replay_event, replay_filter};
use health::health;
use sales::{inbox, match_sale, sale, unmatch_sale};

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
