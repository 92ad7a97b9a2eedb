//! A booking's spend: the sales it holds, summed as the venue counts covers.

use super::StoreError;
use super::db::{self, Conn, Row};
use super::records::{SaleRecord, SpendRecord};
use super::sql::{SALE_COLUMNS, sale_record};
use crate::domain::spend::SaleFigures;
use crate::domain::venue::CoversSource;
use crate::domain::{SaleKind, SaleState, SaleTotals, Spend};

/// The sales a booking holds, in the order they were opened.
pub(super) async fn sales_of(
    conn: &mut Conn<'_>,
    booking_id: i64,
) -> Result<Vec<SaleRecord>, StoreError> {
    db::query(format!(
        "SELECT {SALE_COLUMNS} FROM sales WHERE booking_id = $1 ORDER BY opened_at, id"
    ))
    .bind(booking_id)
    .fetch_all(conn)
    .await?
    .iter()
    .map(sale_record)
    .collect()
}

/// A booking's spend from its sales and its row's `covers`, `currency` (the venue's) and
/// `covers_source` columns, and the covers the POS counted.
pub(super) fn spend_of_row(
    row: &Row,
    sales: &[SaleRecord],
) -> Result<(SpendRecord, Option<i64>), StoreError> {
    let covers: i64 = row.try_get("covers")?;
    let venue_currency: Option<String> = row.try_get("currency")?;
    let covers_source =
        CoversSource::parse(&row.try_get::<String>("covers_source")?).unwrap_or_default();
    Ok(spend_of(
        sales,
        covers,
        venue_currency.as_deref(),
        covers_source,
    ))
}

/// A booking's spend, and the covers the POS counted on its checks.
pub(super) fn spend_of(
    sales: &[SaleRecord],
    covers: i64,
    venue_currency: Option<&str>,
    source: CoversSource,
) -> (SpendRecord, Option<i64>) {
    let totals: Vec<SaleTotals> = sales
        .iter()
        .map(|s| SaleTotals {
            total: s.total,
            paid: s.paid,
            tax: s.tax,
            net: s.net,
            tip: s.tip,
            service_charge: s.service_charge,
            discount: s.discount,
            deposit: s.deposit,
        })
        .collect();
    let figures = sales.iter().zip(&totals).map(|(s, totals)| SaleFigures {
        kind: SaleKind::parse(s.kind).unwrap_or(SaleKind::Sale),
        state: SaleState::parse(s.state).unwrap_or(SaleState::Open),
        totals,
        covers: s.covers,
        currency: s.currency.as_deref(),
    });
    let spend = Spend::of(figures, Some(covers), venue_currency, source);
    let record = SpendRecord {
        total: spend.total,
        paid: spend.paid,
        tax: spend.tax,
        net: spend.net,
        tips: spend.tips,
        service_charge: spend.service_charge,
        discounts: spend.discounts,
        deposits: spend.deposits,
        refunds: spend.refunds,
        per_cover: spend.per_cover,
        currency: spend.currency,
    };
    (record, spend.pos_covers)
}
