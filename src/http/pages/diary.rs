//! The diary page: a venue's local day, its bookings on a timeline with their sales.

use super::*;

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

pub(super) async fn diary(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Result<Response, PageError> {
    let venue_id: Option<i64> = param(&params, "venue")?;
    let date: Option<NaiveDate> = param(&params, "date")?;
    let store = state.gateway.store();
    let mut venues = store.venues().await?;
    venues.retain(|venue| session.actor.sees(venue.id));
    let mut chrome = Chrome::new(&session, "diary");
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
