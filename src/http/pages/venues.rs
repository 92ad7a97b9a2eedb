//! Venues on the pages: a list, a new venue (integrators and admins), a venue's settings
//! (its managers too) and its partner locations (integrators and admins: mapping one replays
//! the events it sent while unmapped). The same checks as the API's.

use super::super::admin::{CoversSourceInput, TolerancesInput, VenueSettingsInput, venue_changes};
use super::*;
use crate::error::ApiError;
use crate::store::NewVenue;

fn bad(error: ApiError) -> PageError {
    PageError::BadRequest(error.to_string())
}

#[derive(Serialize)]
struct VenuesPage {
    #[serde(flatten)]
    chrome: Chrome,
    venues: Vec<VenueRecord>,
    manages_venues: bool,
}

pub(super) async fn venues(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Result<Response, PageError> {
    let mut venues = state.gateway.store().venues().await?;
    venues.retain(|v| session.actor.sees(v.id));
    let mut chrome = Chrome::new(&session, "venues");
    chrome.notice = params.get("done").map(|_| "Venue saved.".to_owned());
    let page = VenuesPage {
        manages_venues: session.actor.may(Permission::ManageVenues),
        chrome,
        venues,
    };
    Ok(render("venues.html", &page))
}

/// Venue `id`, if the signed-in actor sees it ("not found" otherwise).
async fn own_venue(state: &AppState, session: &Session, id: i64) -> Result<VenueRecord, PageError> {
    seen(
        &session.actor,
        state.gateway.store().venue(id).await?,
        |v| Some(v.id),
    )
    .ok_or(PageError::NotFound("venue"))
}

#[derive(Deserialize)]
pub(super) struct NewVenueForm {
    csrf: String,
    name: String,
    timezone: String,
    currency: Option<String>,
}

pub(super) async fn create_venue(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    form: Result<Form<NewVenueForm>, FormRejection>,
) -> Result<Response, PageError> {
    let Form(form) = form.map_err(|e| PageError::BadRequest(e.body_text()))?;
    if !session.csrf_ok(&form.csrf) {
        return Err(PageError::Forbidden);
    }
    allowed(&session.actor, Permission::ManageVenues)?;
    super::super::admin::valid_name(&form.name).map_err(bad)?;
    super::super::admin::valid_timezone(form.timezone.trim()).map_err(bad)?;
    let currency =
        super::super::input::valid_currency(form.currency.filter(|c| !c.trim().is_empty()))
            .map_err(bad)?;
    let venue = NewVenue {
        name: form.name.trim().to_owned(),
        timezone: form.timezone.trim().to_owned(),
        currency,
        locations: Vec::new(),
    };
    let venue = state
        .gateway
        .store()
        .create_venue(venue, session.actor.clone())
        .await?;
    Ok(Redirect::to(&format!("/ui/venues/{}?done=saved", venue.id)).into_response())
}

#[derive(Serialize)]
struct VenuePage {
    #[serde(flatten)]
    chrome: Chrome,
    v: VenueRecord,
    aliases: String,
    skus: String,
    partners: Vec<String>,
    manages_venues: bool,
    history: Vec<HistoryRow>,
}

/// `key = value` lines, one per entry.
fn lines(map: &BTreeMap<String, String>) -> String {
    map.iter()
        .map(|(k, v)| format!("{k} = {v}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `key = value` lines read back; blank lines skipped.
fn read_lines(text: &str, field: &str) -> Result<BTreeMap<String, String>, PageError> {
    let mut map = BTreeMap::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let (key, value) = line.split_once('=').ok_or_else(|| {
            PageError::BadRequest(format!("{field}: {line:?} is not \"name = table\""))
        })?;
        let (key, value) = (key.trim(), value.trim());
        map.insert(key.to_owned(), value.to_owned());
    }
    Ok(map)
}

pub(super) async fn venue(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Path(id): Path<i64>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Result<Response, PageError> {
    let venue = own_venue(&state, &session, id).await?;
    let mut chrome = Chrome::new(&session, "venues");
    chrome.venue_id = Some(id);
    chrome.notice = params.get("done").map(|done| match done.as_str() {
        "mapped" => format!(
            "Location mapped; its {} waiting event(s) replayed.",
            params.get("replayed").map_or("0", String::as_str)
        ),
        _ => "Venue saved.".to_owned(),
    });
    let page = VenuePage {
        chrome,
        aliases: lines(&venue.table_aliases),
        skus: lines(&venue.sku_tables),
        partners: state
            .gateway
            .partners()
            .into_iter()
            .map(|(name, _)| name)
            .collect(),
        manages_venues: session.actor.may(Permission::ManageVenues),
        history: history(&state, "venue", id).await?,
        v: venue,
    };
    Ok(render("venue.html", &page))
}

#[derive(Deserialize)]
pub(super) struct SettingsForm {
    csrf: String,
    name: String,
    timezone: String,
    currency: Option<String>,
    before_start_minutes: i64,
    after_end_minutes: i64,
    walk_ins: Option<String>,
    covers_source: String,
    table_aliases: String,
    sku_tables: String,
}

pub(super) async fn save_venue(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Path(id): Path<i64>,
    form: Result<Form<SettingsForm>, FormRejection>,
) -> Result<Response, PageError> {
    let Form(form) = form.map_err(|e| PageError::BadRequest(e.body_text()))?;
    if !session.csrf_ok(&form.csrf) {
        return Err(PageError::Forbidden);
    }
    own_venue(&state, &session, id).await?;
    allowed(&session.actor, Permission::VenueSettings)?;
    let covers_source = match form.covers_source.as_str() {
        "booking" => CoversSourceInput::Booking,
        "pos" => CoversSourceInput::Pos,
        other => return Err(PageError::BadRequest(format!("covers source {other:?}"))),
    };
    let changes = venue_changes(VenueSettingsInput {
        name: Some(form.name.trim().to_owned()),
        timezone: Some(form.timezone.trim().to_owned()),
        currency: form.currency.filter(|c| !c.trim().is_empty()),
        tolerances: Some(TolerancesInput {
            before_start_minutes: form.before_start_minutes,
            after_end_minutes: form.after_end_minutes,
        }),
        table_aliases: Some(read_lines(&form.table_aliases, "table_aliases")?),
        walk_ins: Some(form.walk_ins.is_some()),
        sku_tables: Some(read_lines(&form.sku_tables, "sku_tables")?),
        covers_source: Some(covers_source),
    })
    .map_err(bad)?;
    state
        .gateway
        .store()
        .update_venue(id, changes, session.actor.clone())
        .await?;
    Ok(Redirect::to(&format!("/ui/venues/{id}?done=saved")).into_response())
}

#[derive(Deserialize)]
pub(super) struct LocationForm {
    csrf: String,
    partner: String,
    location_id: String,
}

pub(super) async fn add_location(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Path(id): Path<i64>,
    form: Result<Form<LocationForm>, FormRejection>,
) -> Result<Response, PageError> {
    let Form(form) = form.map_err(|e| PageError::BadRequest(e.body_text()))?;
    if !session.csrf_ok(&form.csrf) {
        return Err(PageError::Forbidden);
    }
    own_venue(&state, &session, id).await?;
    allowed(&session.actor, Permission::ManageVenues)?;
    let location = form.location_id.trim().to_owned();
    super::super::input::identifier(&location, "location_id").map_err(bad)?;
    if location.is_empty() || !state.gateway.has_partner(&form.partner) {
        return Err(PageError::BadRequest(
            "choose a partner and give its location id".into(),
        ));
    }
    let (_, summary) = super::super::partner_settings::map_location(
        &state,
        session.actor.clone(),
        super::super::partner_settings::MapTo::Venue(id),
        form.partner,
        location,
        true,
        true,
    )
    .await
    .map_err(bad)?;
    let replayed = summary.map_or(0, |s| s.replayed);
    Ok(Redirect::to(&format!("/ui/venues/{id}?done=mapped&replayed={replayed}")).into_response())
}
