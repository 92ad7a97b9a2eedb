//! What a booking's guests spent, summed over its sales without double counting.

use rust_decimal::Decimal;

use super::sale::{SaleState, SaleTotals};

/// Spend of one booking. Voided sales are excluded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Spend {
    pub total: Decimal,
    pub paid: Decimal,
    pub tax: Decimal,
    pub net: Decimal,
    pub tips: Decimal,
    pub service_charge: Decimal,
    /// `total / covers`, to the cent; `None` when there are no covers to divide by.
    pub per_cover: Option<Decimal>,
    pub currency: Option<String>,
}

impl Spend {
    /// Sums the live sales. Covers come from the booking, else from the sales themselves.
    pub fn of<'a>(
        sales: impl IntoIterator<Item = (SaleState, &'a SaleTotals, Option<i64>, Option<&'a str>)>,
        booking_covers: Option<i64>,
        venue_currency: Option<&str>,
    ) -> Spend {
        let mut spend = Spend {
            currency: venue_currency.map(str::to_owned),
            ..Spend::default()
        };
        let mut sale_covers = 0i64;
        for (state, totals, covers, currency) in sales {
            if state == SaleState::Voided {
                continue;
            }
            spend.total += totals.total;
            spend.paid += totals.paid;
            spend.tax += totals.tax;
            spend.net += totals.net;
            spend.tips += totals.tip;
            spend.service_charge += totals.service_charge;
            sale_covers += covers.unwrap_or(0).max(0);
            if spend.currency.is_none() {
                spend.currency = currency.map(str::to_owned);
            }
        }
        let covers = booking_covers.filter(|c| *c > 0).unwrap_or(sale_covers);
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

    #[test]
    fn split_checks_sum_and_voided_sales_do_not_count() {
        let a = totals("31.98", "31.98");
        let b = totals("18.73", "18.73");
        let voided = totals("99.00", "0");
        let spend = Spend::of(
            [
                (SaleState::Closed, &a, Some(2), Some("EUR")),
                (SaleState::Closed, &b, Some(0), Some("EUR")),
                (SaleState::Voided, &voided, Some(2), Some("EUR")),
            ],
            Some(3),
            None,
        );
        assert_eq!(spend.total, money("50.71"));
        assert_eq!(spend.paid, money("50.71"));
        assert_eq!(spend.per_cover, Some(money("16.90")));
        assert_eq!(spend.currency.as_deref(), Some("EUR"));
    }

    #[test]
    fn covers_fall_back_to_the_sales_when_the_booking_has_none() {
        let a = totals("40.00", "0");
        let spend = Spend::of([(SaleState::Open, &a, Some(4), None)], Some(0), Some("GBP"));
        assert_eq!(spend.per_cover, Some(money("10.00")));
        assert_eq!(spend.currency.as_deref(), Some("GBP"));
    }
}
