//! Sales (checks, orders, receipts) as partners report them, in our terms.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use super::table::TableKey;

/// The state of a sale. Names are the public API's (`state` in JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SaleState {
    Open,
    Closed,
    /// Cancelled at the POS: kept for the record, never counted in spend.
    Voided,
}

impl SaleState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Closed => "closed",
            Self::Voided => "voided",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Open, Self::Closed, Self::Voided]
            .into_iter()
            .find(|state| state.as_str() == s)
    }
}

/// What kind of check this is, which decides how it inherits a booking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SaleKind {
    Sale,
    /// Split off another check; belongs to its origin's booking.
    Split,
    /// Items or balance moved from another check.
    Transfer,
    Refund,
}

impl SaleKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sale => "sale",
            Self::Split => "split",
            Self::Transfer => "transfer",
            Self::Refund => "refund",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Sale, Self::Split, Self::Transfer, Self::Refund]
            .into_iter()
            .find(|kind| kind.as_str() == s)
    }
}

/// The money on a sale, in the sale's currency, exactly as the partner stated it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SaleTotals {
    /// What the guest is charged, tax included.
    pub total: Decimal,
    /// What has been paid so far, tips excluded.
    pub paid: Decimal,
    pub tax: Decimal,
    pub net: Decimal,
    pub tip: Decimal,
    pub service_charge: Decimal,
    /// Discounts granted on the sale's lines (already taken off `total`).
    pub discount: Decimal,
    /// Deposits paid in advance and applied to this sale as payments (part of `paid`).
    pub deposit: Decimal,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SaleLine {
    pub external_id: Option<String>,
    pub description: String,
    pub quantity: Decimal,
    pub unit_amount: Decimal,
    pub amount: Decimal,
    /// Multiplier as the POS states it: 1.2 for 20 %.
    pub tax_rate: Option<Decimal>,
    pub tax_included: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SalePayment {
    pub external_id: Option<String>,
    pub method: Option<String>,
    pub amount: Decimal,
    pub tip: Decimal,
    pub paid_at: Option<DateTime<Utc>>,
}

/// A reference to a booking carried by a sale, with where it was found (for the match reason).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BookingRef {
    pub value: String,
    /// The field it was found in ("platformReservationId"), for the match reason.
    pub source: String,
}

/// One full snapshot of a sale as a partner reported it at `version`.
///
/// Partners send the whole check on every notification, so applying the newest snapshot is
/// enough: a snapshot whose `version` is not newer than the stored one changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SaleSnapshot {
    /// The partner's id for the sale, unique per venue.
    pub external_id: String,
    /// The human-facing check number (Lightspeed `accountNumber`), if any.
    pub number: Option<String>,
    pub kind: SaleKind,
    /// For splits, transfers and refunds: the external id of the sale this one came from.
    pub origin_external_id: Option<String>,
    pub state: SaleState,
    pub opened_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
    /// Orders snapshots of the same sale; the partner's own update time.
    pub version: i64,
    pub currency: Option<String>,
    pub totals: SaleTotals,
    pub covers: Option<i64>,
    pub tables: Vec<TableKey>,
    pub lines: Vec<SaleLine>,
    pub payments: Vec<SalePayment>,
    pub booking_refs: Vec<BookingRef>,
    /// When the partner says this snapshot was made (Lightspeed's `updateDate`), if it
    /// says; the time a check moved onto a table is read from it.
    pub updated_at: Option<DateTime<Utc>>,
    /// The guest named on the check (Lightspeed's `consumerRecord`), for matching only.
    /// Personal data: never logged.
    pub guest_name: Option<super::booking::GuestName>,
    /// The partner gave times without a zone (SalesPlay's `created_at`): `opened_at`,
    /// `closed_at` and payment times hold the venue's wall-clock time until
    /// [`SaleSnapshot::localise`] turns them into instants.
    pub wall_clock: bool,
}

impl SaleSnapshot {
    /// Turns wall-clock times into instants in the venue's `zone`. Ambiguous local times
    /// (the hour repeated when clocks go back) take the earlier instant; times that do not
    /// exist (skipped when clocks go forward) are read an hour later.
    pub fn localise(&mut self, zone: chrono_tz::Tz) {
        if !self.wall_clock {
            return;
        }
        self.opened_at = wall_clock_instant(zone, self.opened_at);
        self.closed_at = self.closed_at.map(|t| wall_clock_instant(zone, t));
        self.updated_at = self.updated_at.map(|t| wall_clock_instant(zone, t));
        for payment in &mut self.payments {
            payment.paid_at = payment.paid_at.map(|t| wall_clock_instant(zone, t));
        }
        self.wall_clock = false;
    }

    /// What matching needs to know of this sale.
    pub fn facts(&self) -> SaleFacts {
        SaleFacts {
            kind: self.kind,
            origin_external_id: self.origin_external_id.clone(),
            opened_at: self.opened_at,
            placed_at: None,
            tables: self.tables.clone(),
            booking_refs: self.booking_refs.clone(),
            covers: self.covers,
            guest_name: self.guest_name.clone(),
            paid_at: (self.state == SaleState::Closed).then(|| self.paid_at()),
        }
    }

    /// When a closed snapshot says its check was paid: its close time, else its own time,
    /// never before the check opened.
    pub fn paid_at(&self) -> DateTime<Utc> {
        self.closed_at
            .or(self.updated_at)
            .unwrap_or(self.opened_at)
            .max(self.opened_at)
    }

    /// Whether this snapshot should replace `stored`, given the stored version and state.
    ///
    /// Newer versions win. At an equal version a later state in open -> closed -> voided wins,
    /// so that a CLOSE stamped with the same millisecond as the last UPDATE is not lost.
    pub fn supersedes(&self, stored_version: i64, stored_state: SaleState) -> Freshness {
        use std::cmp::Ordering::*;
        let rank = |state: SaleState| match state {
            SaleState::Open => 0,
            SaleState::Closed => 1,
            SaleState::Voided => 2,
        };
        match self.version.cmp(&stored_version) {
            Greater => Freshness::Newer,
            Less => Freshness::Stale,
            Equal if rank(self.state) > rank(stored_state) => Freshness::Newer,
            Equal => Freshness::Duplicate,
        }
    }
}

/// The instant a wall-clock time (held as if it were UTC) stands for in `zone`.
pub(crate) fn wall_clock_instant(zone: chrono_tz::Tz, t: DateTime<Utc>) -> DateTime<Utc> {
    use chrono::TimeZone;
    let local = t.naive_utc();
    zone.from_local_datetime(&local)
        .earliest()
        .or_else(|| {
            let later = local.checked_add_signed(chrono::Duration::hours(1))?;
            zone.from_local_datetime(&later).earliest()
        })
        .map_or(t, |l| l.with_timezone(&Utc))
}

/// The facts of a sale that decide which booking it belongs to; rebuilt from storage when
/// stored sales are matched again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaleFacts {
    pub kind: SaleKind,
    pub origin_external_id: Option<String>,
    pub opened_at: DateTime<Utc>,
    /// When a snapshot after its first put the check on the tables it is on now (a bar tab
    /// moved to a table, a party moved), if one did; the store keeps it.
    pub placed_at: Option<DateTime<Utc>>,
    pub tables: Vec<TableKey>,
    pub booking_refs: Vec<BookingRef>,
    pub covers: Option<i64>,
    /// The guest named on the check.
    pub guest_name: Option<super::booking::GuestName>,
    /// When the check was (first) paid; `None` while it is open.
    pub paid_at: Option<DateTime<Utc>>,
}

impl SaleFacts {
    /// The time table and time matches with, and which it is: when the check got onto its
    /// table ([`SaleFacts::placed_at`]), else when it was opened.
    pub fn match_time(&self) -> (DateTime<Utc>, super::matching::TimeBasis) {
        match self.placed_at {
            Some(placed) if placed > self.opened_at => (placed, super::matching::TimeBasis::Placed),
            _ => (self.opened_at, super::matching::TimeBasis::Opened),
        }
    }
}

/// How an incoming snapshot relates to the stored one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    Newer,
    Duplicate,
    Stale,
}

crate::serialize_as_str!(SaleState, SaleKind);
