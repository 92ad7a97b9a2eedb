//! The unmatched inbox and a sale's page, with the operator's match and unmatch forms.

use super::*;

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

pub(super) async fn inbox(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Result<Response, PageError> {
    let venue_id: Option<i64> = param(&params, "venue")?;
    let store = state.gateway.store();
    let mut venues = store.venues().await?;
    venues.retain(|venue| session.actor.sees(venue.id));
    if venue_id.is_some_and(|id| !venues.iter().any(|v| v.id == id)) {
        return Err(PageError::NotFound("venue"));
    }
    let mut chrome = Chrome::new(&session, "inbox");
    chrome.notice = notice_text(&params);
    chrome.venue_id = venue_id;
    let filter = SaleFilter {
        venue_id,
        unmatched: Some(true),
        limit: INBOX,
        venue_limit: session.actor.venue_limit(),
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
    history: Vec<HistoryRow>,
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

pub(super) async fn sale(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Path(id): Path<i64>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Result<Response, PageError> {
    let store = state.gateway.store();
    let detail = seen(&session.actor, store.sale(id).await?, |d| {
        Some(d.sale.venue_id)
    })
    .ok_or(PageError::NotFound("sale"))?;
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
    let mut chrome = Chrome::new(&session, "inbox");
    chrome.notice = notice_text(&params);
    chrome.venue_id = Some(venue.id);
    let page = SalePage {
        chrome,
        here: format!("/ui/sales/{id}"),
        history: history(&state, "sale", id).await?,
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
pub(super) struct MatchForm {
    csrf: String,
    booking_id: i64,
    back: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct BackForm {
    csrf: String,
    back: Option<String>,
}

pub(super) async fn match_sale(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Path(id): Path<i64>,
    form: Result<Form<MatchForm>, FormRejection>,
) -> Result<Response, PageError> {
    let Form(form) = form.map_err(|e| PageError::BadRequest(e.body_text()))?;
    if !session.csrf_ok(&form.csrf) {
        return Err(PageError::Forbidden);
    }
    writable(&state, &session.actor, id, Some(form.booking_id)).await?;
    state
        .gateway
        .store()
        .match_sale(id, form.booking_id, session.actor.clone())
        .await?;
    let back = local_page(form.back.as_deref(), "/ui/inbox");
    Ok(Redirect::to(&with_param(back, "notice", "matched")).into_response())
}

pub(super) async fn unmatch_sale(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Path(id): Path<i64>,
    form: Result<Form<BackForm>, FormRejection>,
) -> Result<Response, PageError> {
    let Form(form) = form.map_err(|e| PageError::BadRequest(e.body_text()))?;
    if !session.csrf_ok(&form.csrf) {
        return Err(PageError::Forbidden);
    }
    writable(&state, &session.actor, id, None).await?;
    state
        .gateway
        .store()
        .unmatch_sale(id, session.actor.clone())
        .await?;
    let back = local_page(form.back.as_deref(), "/ui/inbox");
    Ok(Redirect::to(&with_param(back, "notice", "unmatched")).into_response())
}

/// `Ok` when `actor` may match sale `sale_id` (to `booking_id`) by hand: the sale and the
/// booking at venues they see ("not found" otherwise), and a role that changes diaries.
async fn writable(
    state: &AppState,
    actor: &Actor,
    sale_id: i64,
    booking_id: Option<i64>,
) -> Result<(), PageError> {
    let store = state.gateway.store();
    seen(actor, store.sale(sale_id).await?, |d| Some(d.sale.venue_id))
        .ok_or(PageError::NotFound("sale"))?;
    if let Some(booking_id) = booking_id {
        seen(actor, store.booking(booking_id).await?, |b| {
            Some(b.venue_id)
        })
        .ok_or(PageError::NotFound("booking"))?;
    }
    allowed(actor, Permission::WriteDiary)
}
