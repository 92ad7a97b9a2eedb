//! The operator's pages in a real headless Chromium, driven over WebDriver (chromedriver)
//! against a running diarysync: log in, read the diary, match from the inbox and see the
//! spend change, replay a failed event, and see a payload's `<script>` as text.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them). With
//! `DIARYSYNC_SCREENSHOTS=docs/screenshots` it also saves a screenshot of each page.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::helpers::{ADMIN_TOKEN, Db, SPLIT_LOCATION, TestApp, audit_actions, fixture, spawn};

/// A chromedriver on a free port, stopped when dropped.
pub(crate) struct Driver {
    process: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

pub(crate) async fn start_driver() -> Driver {
    let port = free_port();
    let process = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "chromedriver is needed for the browser tests ({e}): install Debian's chromium \
                 and chromium-driver (apt-get install chromium chromium-driver), as .ci/run does"
            )
        });
    let driver = Driver {
        process,
        url: format!("http://127.0.0.1:{port}"),
    };
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return driver;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("chromedriver did not start on port {port}");
}

pub(crate) async fn browser(driver: &Driver, profile: &std::path::Path) -> Client {
    let capabilities = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--no-first-run", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--window-size=1400,1000",
                format!("--user-data-dir={}", profile.display()),
            ],
        },
    });
    let serde_json::Value::Object(capabilities) = capabilities else {
        unreachable!("a JSON object")
    };
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&driver.url)
        .await
        .expect("a Chromium session")
}

/// Saves a screenshot of the current page as `name.png` when DIARYSYNC_SCREENSHOTS names a
/// folder.
pub(crate) async fn screenshot(browser: &Client, name: &str) {
    let Ok(folder) = std::env::var("DIARYSYNC_SCREENSHOTS") else {
        return;
    };
    let png = browser.screenshot().await.expect("screenshot");
    std::fs::create_dir_all(&folder).expect("screenshot folder");
    std::fs::write(format!("{folder}/{name}.png"), png).expect("write screenshot");
}

/// Clicks `element` and waits for `marker` on the page it leads to: a click returns before
/// the navigation it starts has finished.
pub(crate) async fn click_then(
    browser: &Client,
    element: fantoccini::elements::Element,
    marker: &str,
) {
    element.click().await.expect("click");
    browser
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css(marker))
        .await
        .unwrap_or_else(|e| panic!("{marker} after the click: {e}"));
}

pub(crate) async fn text_of(browser: &Client, css: &str) -> String {
    browser
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .text()
        .await
        .expect("text")
}

/// The split check, opened on a table no booking has.
fn unmatched_sale() -> Value {
    let mut order: Value =
        serde_json::from_slice(&fixture("open_split_check_original.json")).expect("json");
    order["account"]["tableName"] = json!("Table 12");
    order["account"]["tableNumber"] = json!(12);
    order["account"]["tables"] = json!(["12"]);
    order
}

/// The day's diary, bookings and events the pages are looked at with.
async fn seed(app: &TestApp) -> (i64, i64) {
    let (status, venue) = app
        .admin_post(
            "/venues",
            json!({ "name": "Uno Cafe", "timezone": "Europe/Paris", "currency": "EUR",
                    "locations": [{ "partner": "lightspeed", "location_id": SPLIT_LOCATION }] }),
        )
        .await;
    assert!(status.is_success(), "{venue}");
    let venue = venue["id"].as_i64().expect("venue id");
    let window = app
        .booking(
            venue,
            json!({ "reference": "W-18", "start": "2025-12-29T11:45:00Z", "duration_minutes": 105,
                    "covers": 2, "tables": ["12A"], "customer": { "name": "Ada Window" } }),
        )
        .await;
    app.booking(
        venue,
        json!({ "reference": "T-4", "start": "2025-12-29T12:30:00Z", "duration_minutes": 90,
                "covers": 4, "tables": ["4"], "customer": { "name": "Bea <b>Bold</b> Table" } }),
    )
    .await;
    app.booking(
        venue,
        json!({ "reference": "D-1", "start": "2025-12-29T18:30:00Z", "duration_minutes": 120,
                "covers": 6, "tables": ["1", "2"], "customer": { "name": "Dinner Party" } }),
    )
    .await;
    let answer = crate::helpers::json_of(
        app.post_lightspeed(unmatched_sale().to_string().as_bytes())
            .await,
    )
    .await;
    assert_eq!(answer["detail"], "unmatched", "{answer}");
    // An event that fails: a trigger refuses sale writes while it arrives.
    sabotage(app, true);
    let mut failing = unmatched_sale();
    failing["account"]["id"] = json!("2190678134099999");
    failing["account"]["accountNumber"] = json!("A127599.1");
    let failed = app.post_lightspeed(failing.to_string().as_bytes()).await;
    assert_eq!(failed.status(), reqwest::StatusCode::INTERNAL_SERVER_ERROR);
    sabotage(app, false);
    // A partner payload with markup in it.
    let mut hostile = unmatched_sale();
    hostile["account"]["id"] = json!("2190678134098888");
    hostile["account"]["name"] =
        json!("<script>alert('pwned')</script><img src=x onerror=alert(1)>");
    hostile["account"]["accountNumber"] = json!("<b>A1</b>");
    let answer =
        crate::helpers::json_of(app.post_lightspeed(hostile.to_string().as_bytes()).await).await;
    assert_eq!(answer["outcome"], "processed", "{answer}");
    // Deliveries for a location no venue owns.
    let mut stranger = unmatched_sale();
    stranger["businessLocationId"] = json!(424242);
    for _ in 0..2 {
        app.post_lightspeed(stranger.to_string().as_bytes()).await;
    }
    (venue, window)
}

fn sabotage(app: &TestApp, on: bool) {
    let path = app.database_url.trim_start_matches("sqlite://");
    let conn = rusqlite::Connection::open(path).expect("open");
    conn.busy_timeout(Duration::from_secs(10))
        .expect("busy timeout");
    let sql = if on {
        "CREATE TRIGGER sabotage BEFORE INSERT ON sales BEGIN SELECT RAISE(ABORT, 'sabotaged'); END;"
    } else {
        "DROP TRIGGER sabotage;"
    };
    conn.execute_batch(sql).expect("trigger");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_matches_replays_and_never_runs_partner_markup_in_a_real_browser() {
    let app = spawn(Db::Sqlite).await;
    let (venue, window) = seed(&app).await;
    let driver = start_driver().await;
    let profile = tempfile::tempdir().expect("profile dir");
    let browser = browser(&driver, profile.path()).await;
    let result = scenario(&app, &browser, venue, window).await;
    let _ = browser.close().await;
    result
}

async fn scenario(app: &TestApp, browser: &Client, venue: i64, window: i64) {
    // Log in: the diary sends us to the login form, a wrong token is refused.
    let diary = format!("{}/ui/diary?venue={venue}&date=2025-12-29", app.base);
    browser.goto(&diary).await.expect("diary");
    let url = browser.current_url().await.expect("url");
    assert_eq!(url.path(), "/ui/login", "not signed in yet");
    screenshot(browser, "login").await;
    // The bootstrap admin's token form is folded away under the e-mail and password form.
    browser
        .find(Locator::Css("details summary"))
        .await
        .expect("the admin token's form")
        .click()
        .await
        .expect("unfold");
    let token = browser
        .find(Locator::Id("token"))
        .await
        .expect("token field");
    token.send_keys("not-the-token").await.expect("type");
    let submit = browser
        .find(Locator::Css("#token-login button[type=submit]"))
        .await
        .expect("button");
    click_then(browser, submit, ".error").await;
    assert!(
        text_of(browser, ".error")
            .await
            .contains("not the admin token")
    );
    let token = browser
        .find(Locator::Id("token"))
        .await
        .expect("token field");
    token.send_keys(ADMIN_TOKEN).await.expect("type");
    let submit = browser
        .find(Locator::Css("#token-login button[type=submit]"))
        .await
        .expect("button");
    click_then(browser, submit, "#totals").await;
    let url = browser.current_url().await.expect("url");
    assert_eq!(url.path(), "/ui/diary", "back where we wanted to go");

    // The diary of a day with seeded events.
    assert_eq!(text_of(browser, "#total-bookings").await, "3");
    assert_eq!(text_of(browser, "#total-covers").await, "12");
    assert_eq!(text_of(browser, &format!("#spend-{window}")).await, "0.00");
    let guest = text_of(browser, "table.diary").await;
    assert!(
        guest.contains("Bea <b>Bold</b> Table"),
        "a guest's name is text: {guest}"
    );
    assert!(
        browser
            .find_all(Locator::Css("table.diary b"))
            .await
            .expect("query")
            .is_empty(),
        "and never markup"
    );

    // The inbox: match the unmatched sale to the window table's booking in one click.
    browser
        .goto(&format!("{}/ui/inbox?venue={venue}", app.base))
        .await
        .expect("inbox");
    let sale = app.sales_with_external_id("2190678134095876").await[0]["id"]
        .as_i64()
        .expect("sale id");
    let first = text_of(browser, &format!("#sale-{sale} .suggestions li")).await;
    assert!(
        first.contains("Ada Window"),
        "the nearest booking first: {first}"
    );
    screenshot(browser, "inbox").await;
    let button = browser
        .find(Locator::Id(&format!("match-{sale}-{window}")))
        .await
        .expect("match button");
    click_then(browser, button, ".notice").await;
    assert!(text_of(browser, ".notice").await.contains("Sale matched"));
    assert!(
        browser
            .find_all(Locator::Id(&format!("sale-{sale}")))
            .await
            .expect("query")
            .is_empty(),
        "the sale left the inbox"
    );

    // ... and the diary shows it at once.
    browser.goto(&diary).await.expect("diary");
    assert_eq!(text_of(browser, &format!("#spend-{window}")).await, "50.71");
    assert!(text_of(browser, "#total-spend").await.starts_with("50.71"));
    screenshot(browser, "diary").await;

    // The event log: the failed event, replayed now that the store accepts it.
    browser
        .goto(&format!("{}/ui/events?outcome=failed", app.base))
        .await
        .expect("events");
    let failed_link = browser
        .find(Locator::Css("table.events tbody tr td a"))
        .await
        .expect("a failed event");
    screenshot(browser, "events").await;
    click_then(browser, failed_link, "#outcome").await;
    assert_eq!(text_of(browser, "#outcome").await, "failed");
    let replay = browser
        .find(Locator::Id("replay"))
        .await
        .expect("replay button");
    click_then(browser, replay, ".notice").await;
    assert!(text_of(browser, ".notice").await.contains("1 recovered"));
    assert_eq!(text_of(browser, "#outcome").await, "processed");

    // A payload with markup shows as text, pretty-printed, and runs nothing.
    browser
        .goto(&format!("{}/ui/events?outcome=processed", app.base))
        .await
        .expect("events");
    let newest = browser
        .find(Locator::Css("table.events tbody tr td a"))
        .await
        .expect("newest event");
    click_then(browser, newest, "#payload").await;
    let payload = text_of(browser, "#payload").await;
    assert!(
        payload
            .contains("\"name\": \"<script>alert('pwned')</script><img src=x onerror=alert(1)>\""),
        "{payload}"
    );
    for hostile in ["#payload script", "#payload img", "script"] {
        assert!(
            browser
                .find_all(Locator::Css(hostile))
                .await
                .expect("query")
                .is_empty(),
            "{hostile} must not exist"
        );
    }
    screenshot(browser, "event").await;

    // Partner health and the sale's own page render too, with the webhook subscriptions
    // (where each goes, never its query string, which may carry the receiver's token).
    let (status, _) = app
        .admin_post(
            "/webhooks",
            json!({ "url": "https://hooks.example.invalid/diarysync?token=receiver-secret" }),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::CREATED);
    browser
        .goto(&format!("{}/ui/health", app.base))
        .await
        .expect("health");
    let health = text_of(browser, "#partner-lightspeed").await;
    assert!(health.contains("Uno Cafe"), "{health}");
    assert!(
        health.contains("location 424242 is not mapped to a venue: 2 events"),
        "{health}"
    );
    let webhooks = text_of(browser, "#webhooks").await;
    assert!(
        webhooks.contains("https://hooks.example.invalid/diarysync"),
        "{webhooks}"
    );
    assert!(!webhooks.contains("receiver-secret"), "{webhooks}");
    screenshot(browser, "health").await;
    browser
        .goto(&format!("{}/ui/sales/{sale}", app.base))
        .await
        .expect("sale");
    assert!(text_of(browser, "#match").await.contains("manual"));
}

/// A venue manager in a real browser: logs in with their e-mail and password, sees their
/// venue only, finds another venue's diary, booking, sale and event "not found" and partner
/// health not allowed, matches a sale of their own, and the sale's history names them; their
/// booking's page shows the sale and the booking's history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_venue_manager_sees_only_their_venue_in_a_real_browser() {
    let app = spawn(Db::Sqlite).await;
    let (venue, window) = seed(&app).await;
    // Another venue, with a sale and a booking of its own.
    let other = app
        .venue_with_location("lightspeed", "41910290874370", true)
        .await;
    let answer = app.deliver_ok("open_regular_tax_inclusive.json").await;
    let other_event = answer["event_id"].as_i64().expect("event id");
    let other_sale = app.admin_get(&format!("/venues/{other}/sales")).await[0]["id"]
        .as_i64()
        .expect("sale id");
    let other_booking = app
        .booking(
            other,
            json!({ "start": "2024-04-04T15:30:00Z", "covers": 2, "tables": ["9"] }),
        )
        .await;
    let (status, user) = app
        .admin_post(
            "/users",
            json!({ "name": "Vera Manager", "email": "vera@uno.example", "role": "venue_manager",
                    "venues": [venue], "password": "vera's long password" }),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::CREATED, "{user}");

    let driver = start_driver().await;
    let profile = tempfile::tempdir().expect("profile dir");
    let browser = browser(&driver, profile.path()).await;
    let result = manager_scenario(
        &app,
        &browser,
        (venue, window),
        (other, other_sale, other_event, other_booking),
    )
    .await;
    let _ = browser.close().await;
    result
}

async fn manager_scenario(
    app: &TestApp,
    browser: &Client,
    (venue, window): (i64, i64),
    (other, other_sale, other_event, other_booking): (i64, i64, i64, i64),
) {
    browser
        .goto(&format!("{}/ui/login", app.base))
        .await
        .expect("login");
    log_in(browser, "vera@uno.example", "a wrong password", ".error").await;
    assert!(text_of(browser, ".error").await.contains("do not match"));
    log_in(
        browser,
        "vera@uno.example",
        "vera's long password",
        "#signed-in-as",
    )
    .await;
    assert_eq!(text_of(browser, "#signed-in-as").await, "vera@uno.example");
    let options = browser
        .find_all(Locator::Css("select#venue option"))
        .await
        .expect("venues");
    assert_eq!(options.len(), 1, "their venue only");
    assert!(
        browser
            .find_all(Locator::Css("a[href='/ui/health']"))
            .await
            .expect("query")
            .is_empty(),
        "no partner health for a venue manager"
    );
    screenshot(browser, "venue-manager-diary").await;

    for (path, title) in [
        (
            format!("/ui/diary?venue={other}&date=2024-04-04"),
            "Not found",
        ),
        (format!("/ui/inbox?venue={other}"), "Not found"),
        (format!("/ui/sales/{other_sale}"), "Not found"),
        (format!("/ui/bookings/{other_booking}"), "Not found"),
        (format!("/ui/events/{other_event}"), "Not found"),
        ("/ui/health".to_owned(), "Not allowed"),
    ] {
        browser
            .goto(&format!("{}{path}", app.base))
            .await
            .expect("page");
        assert_eq!(text_of(browser, "main h1").await, title, "{path}");
    }

    // Their own sale, matched from the inbox; its page names who did it.
    browser
        .goto(&format!("{}/ui/inbox?venue={venue}", app.base))
        .await
        .expect("inbox");
    let sale = app.sales_with_external_id("2190678134095876").await[0]["id"]
        .as_i64()
        .expect("sale id");
    let button = browser
        .find(Locator::Id(&format!("match-{sale}-{window}")))
        .await
        .expect("match button");
    click_then(browser, button, ".notice").await;
    browser
        .goto(&format!("{}/ui/sales/{sale}", app.base))
        .await
        .expect("sale");
    let history = text_of(browser, "#history").await;
    assert!(
        history.contains("vera@uno.example") && history.contains("sale.match"),
        "{history}"
    );
    let trail = app.admin_get("/audit?actor=vera@uno.example").await;
    assert_eq!(trail[0]["action"], "sale.match", "{trail}");
    assert_eq!(trail[0]["subject_id"], sale);

    // The booking's own page: its sale, and its history from its creation on.
    browser
        .goto(&format!("{}/ui/bookings/{window}", app.base))
        .await
        .expect("booking");
    screenshot(browser, "booking").await;
    let sales = text_of(browser, "#booking-sales").await;
    assert!(sales.contains("manual"), "{sales}");
    let history = text_of(browser, "#history").await;
    assert!(
        history.contains("booking.create") && history.contains("admin token"),
        "{history}"
    );
}

/// Fills the login form with an e-mail and password and waits for `marker`.
pub(crate) async fn log_in(browser: &Client, email: &str, password: &str, marker: &str) {
    for (field, value) in [("email", email), ("password", password)] {
        let input = browser.find(Locator::Id(field)).await.expect("field");
        input.clear().await.expect("clear");
        input.send_keys(value).await.expect("type");
    }
    let submit = browser
        .find(Locator::Css("#password-login button[type=submit]"))
        .await
        .expect("button");
    click_then(browser, submit, marker).await;
}

/// An integrator in a real browser onboards without a restart: maps a location no venue owns
/// from the partner health page and sees its events replayed into the diary, creates a
/// partner and rotates its secret while deliveries signed with the old and the new secret
/// both succeed; the audit trail names them for each step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_integrator_maps_a_location_and_rotates_a_secret_in_a_real_browser() {
    let app = crate::helpers::spawn_with(
        Db::Sqlite,
        "secret_key = \"MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\"",
    )
    .await;
    let (venue, _) = seed(&app).await;
    let mut stranger = unmatched_sale();
    stranger["businessLocationId"] = json!(777_777);
    stranger["account"]["id"] = json!("2190678134097777");
    for _ in 0..2 {
        let answer =
            crate::helpers::json_of(app.post_lightspeed(stranger.to_string().as_bytes()).await)
                .await;
        assert_eq!(answer["reason"], "unknown_location", "{answer}");
    }
    let (status, user) = app
        .admin_post(
            "/users",
            json!({ "name": "Ira Integrator", "email": "ira@platform.example",
                    "role": "integrator", "password": "ira's long password" }),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::CREATED, "{user}");

    let driver = start_driver().await;
    let profile = tempfile::tempdir().expect("profile dir");
    let browser = browser(&driver, profile.path()).await;
    let result = onboarding_scenario(&app, &browser, venue).await;
    let _ = browser.close().await;
    result
}

async fn onboarding_scenario(app: &TestApp, browser: &Client, venue: i64) {
    browser
        .goto(&format!("{}/ui/login", app.base))
        .await
        .expect("login");
    log_in(
        browser,
        "ira@platform.example",
        "ira's long password",
        "#signed-in-as",
    )
    .await;

    // Health says the location is not mapped; map it to the venue from there.
    browser
        .goto(&format!("{}/ui/health", app.base))
        .await
        .expect("health");
    let form = browser
        .find(Locator::Id("map-lightspeed-777777"))
        .await
        .expect("the unmapped location's form");
    assert!(
        text_of(browser, "#partner-lightspeed")
            .await
            .contains("location 777777 is not mapped to a venue: 2 events")
    );
    form.find(Locator::Css("select[name=venue]"))
        .await
        .expect("venues")
        .select_by_value(&venue.to_string())
        .await
        .expect("choose the venue");
    screenshot(browser, "health-map-location").await;
    let submit = form
        .find(Locator::Css("button[type=submit]"))
        .await
        .expect("button");
    click_then(browser, submit, ".notice").await;
    assert!(
        text_of(browser, ".notice")
            .await
            .contains("Location 777777 mapped to venue"),
    );
    let sale = &app.sales_with_external_id("2190678134097777").await[0];
    assert_eq!(
        sale["venue_id"], venue,
        "its events are in the venue's diary now"
    );

    // A partner of the database's, created on the partners page.
    browser
        .goto(&format!("{}/ui/partners", app.base))
        .await
        .expect("partners");
    browser
        .find(Locator::Id("new-name"))
        .await
        .expect("name")
        .send_keys("rotating-pos")
        .await
        .expect("type");
    browser
        .find(Locator::Id("new-scheme"))
        .await
        .expect("scheme")
        .select_by_value("bearer")
        .await
        .expect("bearer");
    browser
        .find(Locator::Id("new-secret"))
        .await
        .expect("secret")
        .send_keys("the-old-pos-token")
        .await
        .expect("type");
    let create = browser
        .find(Locator::Css("#new-partner button[type=submit]"))
        .await
        .expect("button");
    click_then(browser, create, ".notice").await;
    assert!(
        text_of(browser, ".notice")
            .await
            .contains("Partner created")
    );

    // Rotation: the next secret added while deliveries keep coming, both taken.
    let deliver = |token: &'static str, account: &'static str| async move {
        let mut order = unmatched_sale();
        order["account"]["id"] = json!(account);
        let response = app
            .client
            .post(format!(
                "{}/Sales/partners/rotating-pos/events/order.updated",
                app.base
            ))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(order.to_string())
            .send()
            .await
            .expect("delivery");
        (
            response.status(),
            crate::helpers::json_of(response).await["event_id"].clone(),
        )
    };
    let (status, _) = deliver("the-old-pos-token", "2190678134090001").await;
    assert_eq!(status, reqwest::StatusCode::OK);
    browser
        .find(Locator::Id("next-secret-rotating-pos"))
        .await
        .expect("next secret")
        .send_keys("the-new-pos-token")
        .await
        .expect("type");
    let add = browser
        .find(Locator::Css("#rotate-rotating-pos button[type=submit]"))
        .await
        .expect("button");
    click_then(browser, add, ".notice").await;
    screenshot(browser, "partners-rotation").await;
    let (old, old_event) = deliver("the-old-pos-token", "2190678134090002").await;
    let (new, new_event) = deliver("the-new-pos-token", "2190678134090003").await;
    assert_eq!(
        (old, new),
        (reqwest::StatusCode::OK, reqwest::StatusCode::OK)
    );
    assert_eq!(app.event(&old_event).await["verified_by"], "current");
    assert_eq!(app.event(&new_event).await["verified_by"], "next");

    // The trail names the integrator for each step.
    let trail = app.admin_get("/audit?actor=ira@platform.example").await;
    let actions = audit_actions(&trail);
    for action in [
        "venue.location_add",
        "events.replay",
        "partner.create",
        "partner.secret_add",
    ] {
        assert!(actions.contains(&action), "{action} in {actions:?}");
    }
}
