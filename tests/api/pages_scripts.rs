//! An integrator edits a stored partner's script in a real headless Chromium: tries the
//! draft on an event the partner really sent, saves it as a new version, replays the
//! partner's events into the diary, and is named in the trail.

use fantoccini::{Client, Locator};
use serde_json::json;

use crate::helpers::{Db, TestApp, json_of, spawn_with};
use crate::onboarding::sealing;
use crate::pages::{browser, click_then, log_in, screenshot, start_driver, text_of};
use crate::script_editing::{CHECK, MAPPING, harbour_booking};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_integrator_tries_a_script_on_a_stored_event_and_saves_it_in_a_real_browser() {
    let app = spawn_with(Db::Sqlite, &sealing()).await;
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
    let result = scenario(&app, &browser).await;
    let _ = browser.close().await;
    result
}

async fn type_into(browser: &Client, id: &str, text: &str) {
    let field = browser.find(Locator::Id(id)).await.expect(id);
    field.clear().await.expect("clear");
    field.send_keys(text).await.expect("type");
}

async fn scenario(app: &TestApp, browser: &Client) {
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

    // A script partner made on the partners page starts by keeping what it is sent.
    browser
        .goto(&format!("{}/ui/partners", app.base))
        .await
        .expect("partners");
    type_into(browser, "new-name", "tilltastic").await;
    browser
        .find(Locator::Css("#new-partner select[name=handler]"))
        .await
        .expect("handler")
        .select_by_value("script")
        .await
        .expect("script");
    browser
        .find(Locator::Id("new-scheme"))
        .await
        .expect("scheme")
        .select_by_value("bearer")
        .await
        .expect("bearer");
    type_into(browser, "new-secret", "tilltastic-token").await;
    let create = browser
        .find(Locator::Css("#new-partner button[type=submit]"))
        .await
        .expect("button");
    click_then(browser, create, ".notice").await;
    assert!(text_of(browser, "#script-tilltastic").await.contains("v1"));

    let booking = harbour_booking(app).await;
    let delivered = app
        .client
        .post(format!(
            "{}/Sales/partners/tilltastic/events/check.closed",
            app.base
        ))
        .bearer_auth("tilltastic-token")
        .body(CHECK)
        .send()
        .await
        .expect("delivery");
    let answer = json_of(delivered).await;
    assert_eq!(answer["detail"], "not mapped yet: check.closed", "{answer}");

    // The mapping, typed in and tried on that stored event.
    let link = browser
        .find(Locator::Id("script-tilltastic"))
        .await
        .expect("the script's link");
    click_then(browser, link, "#script-source").await;
    type_into(browser, "script-source", MAPPING.trim()).await;
    let try_it = browser.find(Locator::Id("try-script")).await.expect("try");
    click_then(browser, try_it, "#try-result").await;
    screenshot(browser, "script-try").await;
    let draft = text_of(browser, "#try-draft").await;
    assert!(
        draft.contains("upsert_sale") && draft.contains("88.40"),
        "{draft}"
    );
    assert!(
        !draft.contains("Ada"),
        "no guest's name on the page: {draft}"
    );
    assert!(
        text_of(browser, "#try-current")
            .await
            .contains("not mapped yet")
    );
    assert!(
        text_of(browser, "#try-verdict")
            .await
            .contains("differently")
    );
    assert_eq!(
        app.booking_view(booking).await["status"],
        "confirmed",
        "trying changes nothing"
    );

    // Saved as version 2 from the editor that holds the draft, then replayed.
    let save = browser
        .find(Locator::Id("save-script"))
        .await
        .expect("save");
    click_then(browser, save, ".notice").await;
    assert!(
        text_of(browser, ".notice")
            .await
            .contains("Saved as version 2")
    );
    assert!(
        text_of(browser, "#script-version-2")
            .await
            .contains("running")
    );
    let replay = browser
        .find(Locator::Css("#replay-partner button"))
        .await
        .expect("replay");
    // The script page has a notice already ("Saved as version 2"): wait for the event log
    // the replay leads to, or the check below can run before the replay has.
    click_then(browser, replay, "form.filters").await;
    assert_eq!(app.booking_view(booking).await["status"], "paid");
    let saved = app.admin_get("/partners/tilltastic/script").await;
    assert_eq!(
        saved["current"]["source"],
        MAPPING.trim(),
        "the text typed is the text saved"
    );

    // The partner's history: the replay of its events, after the save of version 2.
    let trail = app.admin_get("/audit?partner=tilltastic").await;
    assert_eq!(trail[0]["action"], "events.replay", "{trail}");
    assert_eq!(trail[1]["action"], "partner.script_save", "{trail}");
    assert_eq!(trail[1]["actor"], "ira@platform.example");
    assert_eq!(trail[1]["after"]["script"]["number"], 2);
}
