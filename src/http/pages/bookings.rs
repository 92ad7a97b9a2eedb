//! A booking's page: what the diary row says at length (its time in the venue's zone,
//! covers booked and counted, tables, status and how it got there), its sales and spend, and
//! its history of manual actions. Another venue's booking is "not found".

use super::*;

#[derive(Serialize)]
struct BookingPage {
    #[serde(flatten)]
    chrome: Chrome,
    b: BookingFacts,
    sales: Vec<SaleLink>,
    transitions: Vec<TransitionRow>,
    history: Vec<HistoryRow>,
}

#[derive(Serialize)]
struct BookingFacts {
    id: i64,
    guest: Option<String>,
    reference: Option<String>,
    venue_name: String,
    diary_link: String,
    when: String,
    covers: i64,
    pos_covers: Option<i64>,
    tables: String,
    status: &'static str,
    partner_status: Option<String>,
    source: String,
    platform_key: Option<String>,
    spend: String,
    per_cover: Option<String>,
    currency: Option<String>,
}

#[derive(Serialize)]
struct SaleLink {
    id: i64,
    label: String,
    total: String,
    state: &'static str,
    rule: Option<&'static str>,
}

#[derive(Serialize)]
struct TransitionRow {
    at: String,
    from: &'static str,
    to: &'static str,
    cause: String,
    event_id: Option<i64>,
}

pub(super) async fn booking(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Path(id): Path<i64>,
) -> Result<Response, PageError> {
    let store = state.gateway.store();
    let booking = seen(&session.actor, store.booking(id).await?, |b| {
        Some(b.venue_id)
    })
    .ok_or(PageError::NotFound("booking"))?;
    let venue = store
        .venue(booking.venue_id)
        .await?
        .ok_or(PageError::NotFound("venue"))?;
    let zone = zone_of(&venue);
    let mut chrome = Chrome::new(&session, "diary");
    chrome.venue_id = Some(venue.id);
    let page = BookingPage {
        chrome,
        history: history(&state, "booking", id).await?,
        sales: booking
            .sales
            .iter()
            .map(|sale| SaleLink {
                id: sale.id,
                label: sale_label(sale),
                total: money(sale.total),
                state: sale.state,
                rule: sale.match_.rule,
            })
            .collect(),
        transitions: booking
            .transitions
            .iter()
            .map(|t| TransitionRow {
                at: utc(t.at),
                from: t.from,
                to: t.to,
                cause: t.cause.clone(),
                event_id: t.event_id,
            })
            .collect(),
        b: BookingFacts {
            id,
            guest: booking.customer.name.clone(),
            reference: booking.reference.clone(),
            diary_link: diary_link(&venue, booking.start)
                .replace("#booking", &format!("#booking-{id}")),
            venue_name: venue.name.clone(),
            when: format!(
                "{} {} to {}",
                booking.start.with_timezone(&zone).format("%a %-d %b %Y"),
                hm(booking.start, zone),
                hm(booking.end, zone)
            ),
            covers: booking.covers,
            pos_covers: booking.pos_covers,
            tables: booking.tables.join(", "),
            status: booking.status,
            partner_status: booking.partner_status.clone(),
            source: booking.source.clone(),
            platform_key: booking
                .platform
                .as_ref()
                .map(|p| format!("{} {}", p.partner, p.external_key)),
            spend: money(booking.spend.total),
            per_cover: booking.spend.per_cover.map(money),
            currency: booking.spend.currency.clone(),
        },
    };
    Ok(render("booking.html", &page))
}
