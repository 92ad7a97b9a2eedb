//! What a booking's guests spent, summed over its sales without double counting.

use rust_decimal::Decimal;

use super::sale::{SaleKind, SaleState, SaleTotals};
use super::venue::CoversSource;

/// Spend of one booking, in the venue's currency.
///
/// Voided sales are excluded. Splits are separate checks and simply add up (the original
/// check's snapshot no longer holds the items moved to the split). Refunds and credit notes
/// reduce the spend: their amounts are subtracted whatever sign the partner gave them.
/// Sums saturate rather than overflow: amounts are bounded where payloads are read, but
/// a script handler or an old stored sale must never make a page panic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Spend {
    /// What the booking is worth: gross sales, tax included, less refunds.
    pub total: Decimal,
    pub paid: Decimal,
    pub tax: Decimal,
    /// `total` net of tax.
    pub net: Decimal,
    pub tips: Decimal,
    pub service_charge: Decimal,
    pub discounts: Decimal,
    /// Deposits paid in advance and applied to the checks.
    pub deposits: Decimal,
    /// Refunds and credit notes, as a positive amount.
    pub refunds: Decimal,
    /// `total / covers`, to the cent; `None` when there are no covers to divide by. Covers
    /// are the booked ones or the POS's, as the venue's [`CoversSource`] says.
    pub per_cover: Option<Decimal>,
    /// The covers the POS counted on the live checks (sales, not their splits, transfers
    /// or refunds); `None` when no check carries covers.
    pub pos_covers: Option<i64>,
    pub currency: Option<String>,
}

/// One sale's figures as spend needs them.
#[derive(Debug, Clone, Copy)]
pub struct SaleFigures<'a> {
    pub kind: SaleKind,
    pub state: SaleState,
    pub totals: &'a SaleTotals,
    pub covers: Option<i64>,
    pub currency: Option<&'a str>,
}

impl Spend {
    /// Sums the live sales. Per-cover spend divides by the covers `source` names, falling
    /// back to the other when it has none.
    pub fn of<'a>(
        sales: impl IntoIterator<Item = SaleFigures<'a>>,
        booking_covers: Option<i64>,
        venue_currency: Option<&str>,
        source: CoversSource,
    ) -> Spend {
        let mut spend = Spend {
            currency: venue_currency.map(str::to_owned),
            ..Spend::default()
        };
        let mut sale_covers: Option<i64> = None;
        for sale in sales {
            if sale.state == SaleState::Voided {
                continue;
            }
            let t = sale.totals;
            if sale.kind == SaleKind::Refund {
                spend.refunds = spend.refunds.saturating_add(t.total.abs());
                spend.total = spend.total.saturating_sub(t.total.abs());
                spend.paid = spend.paid.saturating_sub(t.paid.abs());
                spend.tax = spend.tax.saturating_sub(t.tax.abs());
                spend.net = spend.net.saturating_sub(t.net.abs());
            } else {
                spend.total = spend.total.saturating_add(t.total);
                spend.paid = spend.paid.saturating_add(t.paid);
                spend.tax = spend.tax.saturating_add(t.tax);
                spend.net = spend.net.saturating_add(t.net);
                spend.tips = spend.tips.saturating_add(t.tip);
                spend.service_charge = spend.service_charge.saturating_add(t.service_charge);
                spend.discounts = spend.discounts.saturating_add(t.discount);
                spend.deposits = spend.deposits.saturating_add(t.deposit);
                if sale.kind == SaleKind::Sale
                    && let Some(covers) = sale.covers.filter(|c| *c > 0)
                {
                    sale_covers = Some(sale_covers.unwrap_or(0).saturating_add(covers));
                }
            }
            if spend.currency.is_none() {
                spend.currency = sale.currency.map(str::to_owned);
            }
        }
        spend.pos_covers = sale_covers;
        let booked = booking_covers.filter(|c| *c > 0);
        let covers = match source {
            CoversSource::Booking => booked.or(sale_covers),
            CoversSource::Pos => sale_covers.or(booked),
        }
        .unwrap_or(0);
        spend.per_cover = (covers > 0).then(|| (spend.total / Decimal::from(covers)).round_dp(2));
        spend
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn money(s: &str) -> Decimal {
        Decimal::from_str(s).expect("decimal literal")
    }

    fn totals(total: &str, paid: &str) -> SaleTotals {
        SaleTotals {
            total: money(total),
            paid: money(paid),
            ..SaleTotals::default()
        }
    }

    fn figures<'a>(
        kind: SaleKind,
        state: SaleState,
        totals: &'a SaleTotals,
        covers: i64,
    ) -> SaleFigures<'a> {
        SaleFigures {
            kind,
            state,
            totals,
            covers: Some(covers),
            currency: Some("EUR"),
        }
    }

    #[test]
    fn split_checks_sum_and_voided_sales_do_not_count() {
        let a = totals("31.98", "31.98");
        let b = totals("18.73", "18.73");
        let voided = totals("99.00", "0");
        let spend = Spend::of(
            [
                figures(SaleKind::Sale, SaleState::Closed, &a, 2),
                figures(SaleKind::Split, SaleState::Closed, &b, 0),
                figures(SaleKind::Sale, SaleState::Voided, &voided, 2),
            ],
            Some(3),
            None,
            CoversSource::Booking,
        );
        assert_eq!(spend.total, money("50.71"));
        assert_eq!(spend.paid, money("50.71"));
        assert_eq!(spend.per_cover, Some(money("16.90")));
        assert_eq!(spend.currency.as_deref(), Some("EUR"));
    }

    #[test]
    fn refunds_reduce_spend_whatever_their_sign() {
        let sale = totals("80.00", "80.00");
        let positive = totals("15.00", "15.00");
        let negative = totals("-5.00", "-5.00");
        let spend = Spend::of(
            [
                figures(SaleKind::Sale, SaleState::Closed, &sale, 2),
                figures(SaleKind::Refund, SaleState::Closed, &positive, 0),
                figures(SaleKind::Refund, SaleState::Closed, &negative, 0),
            ],
            None,
            None,
            CoversSource::Booking,
        );
        assert_eq!(spend.refunds, money("20.00"));
        assert_eq!(spend.total, money("60.00"));
        assert_eq!(spend.paid, money("60.00"));
        assert_eq!(
            spend.per_cover,
            Some(money("30.00")),
            "covers from the sales"
        );
    }

    #[test]
    fn covers_fall_back_to_the_sales_when_the_booking_has_none() {
        let a = totals("40.00", "0");
        let spend = Spend::of(
            [figures(SaleKind::Sale, SaleState::Open, &a, 4)],
            Some(0),
            Some("GBP"),
            CoversSource::Booking,
        );
        assert_eq!(spend.per_cover, Some(money("10.00")));
        assert_eq!(
            spend.currency.as_deref(),
            Some("GBP"),
            "the venue's currency wins"
        );
    }

    #[test]
    fn a_venue_may_divide_by_the_covers_the_pos_counted() {
        let a = totals("90.00", "90.00");
        let b = totals("30.00", "30.00");
        let split = totals("10.00", "10.00");
        let sales = [
            figures(SaleKind::Sale, SaleState::Closed, &a, 3),
            figures(SaleKind::Sale, SaleState::Closed, &b, 1),
            figures(SaleKind::Split, SaleState::Closed, &split, 1),
        ];
        let booked = Spend::of(sales, Some(2), None, CoversSource::Booking);
        assert_eq!(
            booked.pos_covers,
            Some(4),
            "splits do not count their guests twice"
        );
        assert_eq!(booked.per_cover, Some(money("65.00")));
        let counted = Spend::of(sales, Some(2), None, CoversSource::Pos);
        assert_eq!(counted.per_cover, Some(money("32.50")));
        let none = totals("40.00", "0");
        let without = Spend::of(
            [SaleFigures {
                covers: None,
                ..figures(SaleKind::Sale, SaleState::Open, &none, 0)
            }],
            Some(4),
            None,
            CoversSource::Pos,
        );
        assert_eq!(without.pos_covers, None);
        assert_eq!(
            without.per_cover,
            Some(money("10.00")),
            "falls back to the booked"
        );
    }
}
