//! One restaurant's service day, generated from a seed, with the truth of every check.
//!
//! The floor: fourteen tables (13 and 14 may be joined for a large party), lunch seatings
//! from 12:00 to 13:45 and dinner from 18:00 to 21:15, in January in London (UTC). Per
//! table, seatings follow each other at the booked length plus a reset; each is a
//! reservation, a walk-in or left empty. What happens to a reservation and its party is
//! drawn from the published figures in `docs/MATCHING.md`; what a host never does (seat a
//! walk-in at a table whose booking is due within the venue's early tolerance, seat a
//! party before the last one left) does not happen here either.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use fastrand::Rng;
use serde_json::Value;

use super::wire::{self, Snapshot};

/// Which booking a check belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Truth {
    /// The planned reservation with this index in [`Day::bookings`].
    Booking(usize),
    /// Nobody's reservation: a walk-in, a drink at the bar.
    WalkIn,
}

/// What became of a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    Came,
    /// Never came; `reported` when the POS said so.
    NoShow {
        reported: bool,
    },
    /// Cancelled before the day.
    Cancelled,
}

/// A reservation as the diary holds it before service.
#[derive(Debug, Clone)]
pub struct PlannedBooking {
    pub reference: String,
    pub start: DateTime<Utc>,
    /// Booked length, in minutes.
    pub minutes: i64,
    pub covers: i64,
    pub tables: Vec<String>,
    pub name: String,
    pub fate: Fate,
}

/// One notification as the partner sends it, at the time it is sent.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub sent_at: DateTime<Utc>,
    /// A partner's notification (Lightspeed), or `None` for a host's change to the diary.
    pub body: Value,
    /// A host's change to the diary at that time, instead of a notification.
    pub retable: Option<Retable>,
}

/// The host moves a reservation to other tables in the diary before its party arrives.
#[derive(Debug, Clone)]
pub struct Retable {
    /// The reservation, by its index in [`Day::bookings`].
    pub booking: usize,
    pub tables: Vec<String>,
}

/// A generated day: the diary before service, the floor's deliveries in the order they
/// are sent, and the truth of every check (by Lightspeed account id).
#[derive(Debug, Clone)]
pub struct Day {
    pub index: u32,
    /// The Lightspeed `businessLocationId` this day's venue owns.
    pub location_id: String,
    pub bookings: Vec<PlannedBooking>,
    pub deliveries: Vec<Delivery>,
    pub truth: BTreeMap<String, Truth>,
    /// How often each situation was generated, by name.
    pub situations: BTreeMap<&'static str, usize>,
}

/// The venue's early tolerance (diarysync's default): a check opened earlier than this
/// before a booking's start is not that booking's.
const EARLY: i64 = 30;
const SINGLE_TABLES: [&str; 12] = [
    "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12",
];
const JOINABLE: [&str; 2] = ["13", "14"];

#[derive(Debug, Clone, Copy)]
struct Service {
    first: (u32, u32),
    last: (u32, u32),
    /// Booked length, minutes.
    booked: i64,
    /// How long a party stays, minutes.
    stay: (i64, i64),
    walk_in_stay: (i64, i64),
}

const LUNCH: Service = Service {
    first: (12, 0),
    last: (13, 45),
    booked: 75,
    stay: (35, 65),
    walk_in_stay: (30, 50),
};
const DINNER: Service = Service {
    first: (18, 0),
    last: (21, 15),
    booked: 105,
    stay: (60, 110),
    walk_in_stay: (45, 80),
};

/// From when to when a table is taken.
type Span = (DateTime<Utc>, DateTime<Utc>);

/// A party at a table: who it is, where, from when to when.
#[derive(Debug, Clone)]
struct Party {
    truth: Truth,
    tables: Vec<String>,
    seated: DateTime<Utc>,
    left: DateTime<Utc>,
    covers: i64,
    name: Option<String>,
    reference: Option<String>,
    /// Opened a tab at the bar at this time, moved to the table when seated.
    bar_from: Option<DateTime<Utc>>,
    /// Moved to this table at this time (a transfer).
    moved: Option<(DateTime<Utc>, String)>,
}

struct Builder {
    rng: Rng,
    date: NaiveDate,
    index: u32,
    bookings: Vec<PlannedBooking>,
    parties: Vec<Party>,
    /// When each table is taken, for transfers.
    taken: BTreeMap<String, Vec<Span>>,
    /// The host's diary moves: when, which reservation, to which table.
    retables: Vec<(DateTime<Utc>, usize, String)>,
    /// POS reservation statuses: when, for which reservation, which status.
    statuses: Vec<(DateTime<Utc>, String, &'static str)>,
    situations: BTreeMap<&'static str, usize>,
}

const NAMES: [(&str, &str); 16] = [
    ("Ana", "López"),
    ("Zoë", "Müller"),
    ("Chloé", "Dubois"),
    ("Søren", "Kierkegaard"),
    ("James", "O'Brien"),
    ("Priya", "Patel"),
    ("Mei", "Chen"),
    ("Łukasz", "Nowak"),
    ("Olivia", "Smith"),
    ("Noah", "Jones"),
    ("Aoife", "Murphy"),
    ("José", "García"),
    ("Emma", "Brown"),
    ("Kenji", "Sato"),
    ("Fatima", "Ahmed"),
    ("Lars", "Eriksson"),
];

/// Generates day `index` of the run seeded with `seed`. The same pair always gives the
/// same day.
pub fn generate(seed: u64, index: u32) -> Day {
    let location_id = format!("77{:06}{:04}", seed % 1_000_000, index % 10_000);
    Builder::plan(seed, index).finish(location_id)
}

impl Builder {
    /// Seats the day's parties; [`Builder::finish`] turns them into deliveries.
    fn plan(seed: u64, index: u32) -> Self {
        let base = NaiveDate::from_ymd_opt(2026, 1, 5).unwrap_or_default();
        let mut builder = Builder {
            rng: Rng::with_seed(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(index)),
            date: base + Duration::days(i64::from(index % 28)),
            index,
            bookings: Vec::new(),
            parties: Vec::new(),
            taken: BTreeMap::new(),
            statuses: Vec::new(),
            retables: Vec::new(),
            situations: BTreeMap::new(),
        };
        for service in [LUNCH, DINNER] {
            for table in SINGLE_TABLES {
                builder.seat_unit(service, &[table], (2, 4));
            }
            if service.booked == DINNER.booked && builder.rng.f64() < 0.4 {
                builder.count("joined tables");
                builder.seat_unit(service, &JOINABLE, (6, 10));
            } else {
                for table in JOINABLE {
                    builder.seat_unit(service, &[table], (2, 4));
                }
            }
            builder.bar_drinkers(service);
        }
        builder.retable();
        builder.transfers();
        builder
    }

    fn count(&mut self, situation: &'static str) {
        *self.situations.entry(situation).or_default() += 1;
    }

    fn at(&self, (hour, minute): (u32, u32)) -> DateTime<Utc> {
        let naive = self.date.and_hms_opt(hour, minute, 0).unwrap_or_default();
        Utc.from_utc_datetime(&naive)
    }

    fn minutes(&mut self, range: (i64, i64)) -> Duration {
        Duration::minutes(self.rng.i64(range.0..=range.1))
    }

    fn name(&mut self) -> String {
        let (first, last) = NAMES[self.rng.usize(..NAMES.len())];
        format!("{first} {last}")
    }

    /// Seats one table (or a joined pair) through a service.
    fn seat_unit(&mut self, service: Service, tables: &[&str], covers: (i64, i64)) {
        let tables: Vec<String> = tables.iter().map(|t| (*t).to_owned()).collect();
        let last = self.at(service.last);
        let mut slot = self.at(service.first) + Duration::minutes(15 * self.rng.i64(0..=2));
        let mut free_at = self.at(service.first) - Duration::minutes(30);
        while slot <= last {
            let next_slot = slot + Duration::minutes(service.booked + 15 * self.rng.i64(0..=1));
            let roll = self.rng.f64();
            if roll < 0.72 {
                free_at = self.reservation(service, &tables, covers, slot, next_slot, free_at);
            } else if roll < 0.87 {
                let seated = (slot + self.minutes((0, 20))).max(free_at + Duration::minutes(5));
                free_at = self
                    .walk_in(service, &tables, seated, next_slot)
                    .unwrap_or(free_at);
            }
            slot = next_slot;
        }
    }

    /// A reservation at `slot` and what became of it; returns when the table is free.
    fn reservation(
        &mut self,
        service: Service,
        tables: &[String],
        covers: (i64, i64),
        slot: DateTime<Utc>,
        next_slot: DateTime<Utc>,
        free_at: DateTime<Utc>,
    ) -> DateTime<Utc> {
        let number = self.bookings.len();
        let reference = format!("SIM-{}-{number}", self.index);
        let name = self.name();
        let party_size = self.rng.i64(covers.0..=covers.1);
        let roll = self.rng.f64();
        // Published figures: about 17% of reservations cancelled, 5% no-shows.
        let fate = if roll < 0.17 {
            Fate::Cancelled
        } else if roll < 0.22 {
            Fate::NoShow {
                reported: self.rng.f64() < 0.6,
            }
        } else {
            Fate::Came
        };
        self.bookings.push(PlannedBooking {
            reference: reference.clone(),
            start: slot,
            minutes: service.booked,
            covers: party_size,
            tables: tables.to_vec(),
            name: name.clone(),
            fate,
        });
        match fate {
            Fate::Cancelled => {
                self.count("cancellation");
                if self.rng.bool() {
                    self.count("walk-in on a cancelled slot");
                    let seated = (slot + self.minutes((0, 20))).max(free_at + Duration::minutes(5));
                    return self
                        .walk_in(service, tables, seated, next_slot)
                        .unwrap_or(free_at);
                }
                free_at
            }
            Fate::NoShow { reported } => {
                self.count("no-show");
                // Hosts hold a table about 15 minutes, then give it away.
                let marked = slot + self.minutes((15, 25));
                let walk_in = self.rng.bool();
                if reported || walk_in {
                    let reported_at = if walk_in {
                        // Marked before or after the walk-in's check opens.
                        marked + self.minutes((-5, 10))
                    } else {
                        marked
                    };
                    self.statuses.push((reported_at, reference, "NO_SHOW"));
                    if let Fate::NoShow { reported } = &mut self.bookings[number].fate {
                        *reported = true;
                    }
                }
                if walk_in {
                    self.count("walk-in on a no-show's table");
                    let seated = marked.max(free_at + Duration::minutes(5));
                    return self
                        .walk_in(service, tables, seated, next_slot)
                        .unwrap_or(free_at);
                }
                free_at
            }
            Fate::Came => {
                // Half arrive within five minutes; most of the rest within twenty.
                let offset = match self.rng.f64() {
                    r if r < 0.5 => self.minutes((-5, 5)),
                    r if r < 0.9 => self.minutes((-15, 20)),
                    _ => {
                        self.count("late arrival");
                        self.minutes((20, 30))
                    }
                };
                let seated = (slot + offset).max(free_at + Duration::minutes(5));
                let left = seated + self.minutes(service.stay);
                let bar_from = (self.rng.f64() < 0.08).then(|| {
                    self.count("bar tab moved to the table");
                    seated - self.minutes((15, 40))
                });
                let carries_reference = self.rng.f64() < 0.25;
                let named = self.rng.f64() < 0.3;
                self.parties.push(Party {
                    truth: Truth::Booking(number),
                    tables: tables.to_vec(),
                    seated,
                    left,
                    covers: party_size,
                    name: named.then_some(name),
                    reference: carries_reference.then_some(reference),
                    bar_from,
                    moved: None,
                });
                self.take(tables, seated, left);
                left
            }
        }
    }

    /// A walk-in seated at `seated`, unless a host would not: when the table's next
    /// booking is due within the early tolerance (and a margin). Returns when it leaves.
    fn walk_in(
        &mut self,
        service: Service,
        tables: &[String],
        seated: DateTime<Utc>,
        next_slot: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        if seated > next_slot - Duration::minutes(EARLY + 10) {
            return None;
        }
        self.count("walk-in");
        let left = seated + self.minutes(service.walk_in_stay);
        let name = (self.rng.f64() < 0.05).then(|| self.name());
        let covers = self.rng.i64(1..=4);
        self.parties.push(Party {
            truth: Truth::WalkIn,
            tables: tables.to_vec(),
            seated,
            left,
            covers,
            name,
            reference: None,
            bar_from: None,
            moved: None,
        });
        self.take(tables, seated, left);
        Some(left)
    }

    /// Drinks at the bar that never reach a table.
    fn bar_drinkers(&mut self, service: Service) {
        for _ in 0..self.rng.usize(3..=8) {
            self.count("bar tab");
            let seated = self.at(service.first) + self.minutes((-30, 180));
            let left = seated + self.minutes((15, 60));
            self.parties.push(Party {
                truth: Truth::WalkIn,
                tables: Vec::new(),
                seated,
                left,
                covers: 1,
                name: None,
                reference: None,
                bar_from: None,
                moved: None,
            });
        }
    }

    fn take(&mut self, tables: &[String], from: DateTime<Utc>, to: DateTime<Utc>) {
        for table in tables {
            self.taken
                .entry(table.clone())
                .or_default()
                .push((from, to));
        }
    }

    /// Some reservations are moved by the host to another table before the party arrives
    /// (a better table freed up, a pram to fit): the diary is changed 20 to 60 minutes
    /// before the start, and the party is seated there. Only to a table free for the
    /// party's whole stay and with no other reservation in the booking's window.
    fn retable(&mut self) {
        for index in 0..self.parties.len() {
            let party = &self.parties[index];
            let Truth::Booking(booking) = party.truth else {
                continue;
            };
            if party.tables.len() != 1 || party.bar_from.is_some() || self.rng.f64() >= 0.05 {
                continue;
            }
            let (seated, left, from) = (party.seated, party.left, party.tables[0].clone());
            let planned = &self.bookings[booking];
            let (start, end) = (
                planned.start,
                planned.start + Duration::minutes(planned.minutes),
            );
            let window = (
                start - Duration::minutes(EARLY),
                end + Duration::minutes(60),
            );
            // As for any table a host keeps for a booking: nobody else sits there from
            // before the booking is due until the party leaves.
            let kept_from = seated.min(window.0 - Duration::minutes(10));
            let free: Vec<&str> = SINGLE_TABLES
                .iter()
                .copied()
                .filter(|table| *table != from)
                .filter(|table| {
                    self.taken.get(*table).is_none_or(|spans| {
                        spans.iter().all(|(a, b)| {
                            *b + Duration::minutes(5) <= kept_from
                                || left + Duration::minutes(5) <= *a
                        })
                    })
                })
                .filter(|table| {
                    self.bookings.iter().all(|other| {
                        other.fate == Fate::Cancelled
                            || !other.tables.iter().any(|t| t == table)
                            || other.start
                                + Duration::minutes(other.minutes)
                                + Duration::minutes(60)
                                < window.0
                            || other.start - Duration::minutes(EARLY) > window.1
                    })
                })
                .collect();
            if free.is_empty() {
                continue;
            }
            let target = free[self.rng.usize(..free.len())].to_owned();
            self.count("reservation moved to another table before arrival");
            let at = start - self.minutes((20, 60));
            if let Some(spans) = self.taken.get_mut(&from) {
                spans.retain(|span| *span != (seated, left));
            }
            self.take(std::slice::from_ref(&target), seated, left);
            self.retables.push((at, booking, target.clone()));
            self.parties[index].tables = vec![target];
        }
    }

    /// Some parties at single tables move to another table that is free for the rest of
    /// their meal (a draught, a bigger table): same check, new table.
    fn transfers(&mut self) {
        for index in 0..self.parties.len() {
            let party = &self.parties[index];
            if party.tables.len() != 1 || self.rng.f64() >= 0.06 {
                continue;
            }
            let (seated, left, from_table) = (party.seated, party.left, party.tables[0].clone());
            let at = seated + Duration::minutes(15);
            if at + Duration::minutes(10) >= left {
                continue;
            }
            let free: Vec<&str> = SINGLE_TABLES
                .iter()
                .copied()
                .filter(|table| *table != from_table)
                .filter(|table| {
                    self.taken.get(*table).is_none_or(|spans| {
                        spans.iter().all(|(from, to)| {
                            *to + Duration::minutes(5) <= at || left + Duration::minutes(5) <= *from
                        })
                    })
                })
                .collect();
            if free.is_empty() {
                continue;
            }
            let target = free[self.rng.usize(..free.len())].to_owned();
            self.count("party moved to another table");
            self.take(std::slice::from_ref(&target), at, left);
            self.parties[index].moved = Some((at, target));
        }
    }

    /// Turns parties into checks and their snapshots, and snapshots into deliveries.
    fn finish(mut self, location_id: String) -> Day {
        let mut truth = BTreeMap::new();
        let mut snapshots: Vec<Snapshot> = Vec::new();
        let mut next_id = 0u32;
        let mut account = |day: u32| {
            next_id += 1;
            format!("9{day:04}{next_id:06}")
        };
        let parties = std::mem::take(&mut self.parties);
        for party in &parties {
            let separate = matches!(party.truth, Truth::Booking(_)) && self.rng.f64() < 0.05;
            if separate {
                self.count("separate checks per guest");
            }
            for guest in 0..if separate { 2 } else { 1 } {
                let id = account(self.index);
                truth.insert(id.clone(), party.truth);
                let opened = party.bar_from.unwrap_or(party.seated) + Duration::minutes(guest);
                let cents = party.covers * self.rng.i64(1800..=4500);
                let base = Snapshot {
                    account_id: id.clone(),
                    location_id: location_id.clone(),
                    notification: "OPEN",
                    opened,
                    updated: opened,
                    tables: if party.bar_from.is_some() {
                        Vec::new()
                    } else {
                        party.tables.clone()
                    },
                    total_cents: cents / 3,
                    paid_cents: 0,
                    tip_cents: 0,
                    covers: Some(if self.rng.f64() < 0.2 {
                        (party.covers + 1).max(1)
                    } else {
                        party.covers
                    }),
                    guest: party.name.clone(),
                    reference: party.reference.clone(),
                    kind: "SALE",
                    origin: None,
                };
                snapshots.push(base.clone());
                let mut tables = party.tables.clone();
                if party.bar_from.is_some() {
                    snapshots.push(base.next("UPDATE", party.seated, &tables, cents / 2));
                }
                // Orders go in before a transfer (15 minutes after seating, below).
                let ordered = party.seated + self.minutes((5, 14));
                snapshots.push(base.next("UPDATE", ordered, &tables, cents * 2 / 3));
                if let Some((at, table)) = &party.moved {
                    tables = vec![table.clone()];
                    snapshots.push(base.next("UPDATE", *at, &tables, cents * 3 / 4));
                }
                let closed = party.left - self.minutes((0, 5));
                if self.rng.f64() < 0.08 && party.covers > 1 {
                    self.count("split bill");
                    let half = cents / 2;
                    for _ in 0..2 {
                        let child = account(self.index);
                        truth.insert(child.clone(), party.truth);
                        let mut split = base.next("OPEN", closed, &tables, half);
                        split.account_id = child;
                        split.opened = closed;
                        split.kind = "SPLIT";
                        split.origin = Some(id.clone());
                        split.covers = None;
                        snapshots.push(split.clone());
                        snapshots.push(split.paid(closed + Duration::minutes(2), half, 0));
                    }
                    snapshots.push(base.paid(closed + Duration::minutes(2), 0, 0).on(&tables));
                } else {
                    let close = base.next("UPDATE", closed, &tables, cents);
                    snapshots.push(close.paid(closed, cents, 0));
                    if self.rng.f64() < 0.04 {
                        self.count("check reopened for a tip");
                        let reopened = closed + self.minutes((5, 20));
                        let tip = cents / 10;
                        snapshots.push(close.next("UPDATE", reopened, &tables, cents));
                        snapshots.push(close.paid(reopened + Duration::minutes(1), cents, tip));
                    }
                    if self.rng.f64() < 0.02 {
                        self.count("refund days later");
                        let refund_id = account(self.index);
                        truth.insert(refund_id.clone(), party.truth);
                        let at = closed + Duration::days(self.rng.i64(1..=3));
                        let mut refund = base.next("OPEN", at, &[], -(cents / 5));
                        refund.account_id = refund_id;
                        refund.opened = at;
                        refund.kind = if self.rng.bool() { "REFUND" } else { "SALE" };
                        refund.origin = Some(id.clone());
                        refund.covers = None;
                        refund.guest = None;
                        refund.reference = None;
                        snapshots.push(refund.paid(at, -(cents / 5), 0));
                    }
                }
            }
        }
        // Refunds of checks from before the integration went live: no origin diarysync
        // knows, rung up at some table during service. Nobody's reservation.
        for _ in 0..self.rng.usize(0..=2) {
            self.count("refund of an unknown check");
            let id = account(self.index);
            truth.insert(id.clone(), Truth::WalkIn);
            let table = SINGLE_TABLES[self.rng.usize(..SINGLE_TABLES.len())].to_owned();
            let at = self.at(DINNER.first) + self.minutes((0, 180));
            let refund = Snapshot {
                account_id: id,
                location_id: location_id.clone(),
                notification: "CLOSE",
                opened: at,
                updated: at,
                tables: vec![table],
                total_cents: -self.rng.i64(500..=3000),
                paid_cents: 0,
                tip_cents: 0,
                covers: None,
                guest: None,
                reference: None,
                kind: "REFUND",
                origin: Some(format!("1{:010}", self.rng.u64(..10_000_000_000))),
            };
            snapshots.push(refund.paid(at, refund.total_cents, 0));
        }
        let mut deliveries: Vec<Delivery> = Vec::new();
        for snapshot in &snapshots {
            let body = wire::order_notification(snapshot);
            // Partners retry what timed out and sometimes send twice.
            // Partners retry what timed out (minutes later), and a POS that lost its
            // connection flushes its queue when it is back (up to an hour later).
            let sent_at = match self.rng.f64() {
                r if r < 0.04 => {
                    self.count("delivery delayed by a retry");
                    snapshot.updated + self.minutes((1, 12))
                }
                r if r < 0.05 => {
                    self.count("delivery delayed by a POS offline");
                    snapshot.updated + self.minutes((20, 60))
                }
                _ => snapshot.updated,
            };
            if self.rng.f64() < 0.03 {
                self.count("delivery duplicated");
                deliveries.push(Delivery {
                    sent_at: sent_at + self.minutes((0, 3)),
                    body: body.clone(),
                    retable: None,
                });
            }
            deliveries.push(Delivery {
                sent_at,
                body,
                retable: None,
            });
        }
        // Reservations the POS seated itself report SEATED and DEPARTED.
        for party in &parties {
            if let Truth::Booking(index) = party.truth
                && self.rng.f64() < 0.4
            {
                self.count("POS reservation statuses");
                let reference = self.bookings[index].reference.clone();
                let seated = party.seated + self.minutes((0, 2));
                let departed = party.left + self.minutes((0, 5));
                self.statuses.push((seated, reference.clone(), "SEATED"));
                self.statuses.push((departed, reference, "DEPARTED"));
            }
        }
        for (at, reference, status) in &self.statuses {
            deliveries.push(Delivery {
                sent_at: *at,
                body: wire::reservation_status(&location_id, reference, status),
                retable: None,
            });
        }
        for (at, booking, table) in &self.retables {
            deliveries.push(Delivery {
                sent_at: *at,
                body: Value::Null,
                retable: Some(Retable {
                    booking: *booking,
                    tables: vec![table.clone()],
                }),
            });
        }
        deliveries.sort_by_key(|d| d.sent_at);
        Day {
            index: self.index,
            location_id,
            bookings: self.bookings,
            deliveries,
            truth,
            situations: self.situations,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_day() {
        let (a, b) = (generate(7, 3), generate(7, 3));
        assert_eq!(a.deliveries.len(), b.deliveries.len());
        assert_eq!(a.truth, b.truth);
        assert_ne!(generate(8, 3).truth.len(), 0);
    }

    #[test]
    fn a_week_of_days_has_every_situation() {
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for day in 0..7 {
            for (situation, n) in generate(1, day).situations {
                *seen.entry(situation).or_default() += n;
            }
        }
        for situation in [
            "cancellation",
            "no-show",
            "walk-in",
            "walk-in on a no-show's table",
            "bar tab moved to the table",
            "party moved to another table",
            "split bill",
            "separate checks per guest",
            "check reopened for a tip",
            "refund days later",
            "refund of an unknown check",
            "POS reservation statuses",
            "reservation moved to another table before arrival",
            "joined tables",
            "delivery duplicated",
            "delivery delayed by a retry",
        ] {
            assert!(
                seen.contains_key(situation),
                "{situation} never happened: {seen:?}"
            );
        }
    }

    #[test]
    fn no_table_holds_two_parties_at_once() {
        for index in 0..7 {
            let builder = Builder::plan(5, index);
            for (table, spans) in &builder.taken {
                let mut spans = spans.clone();
                spans.sort();
                for pair in spans.windows(2) {
                    assert!(
                        pair[0].1 <= pair[1].0,
                        "day {index}, table {table}: {:?} overlaps {:?}",
                        pair[0],
                        pair[1]
                    );
                }
            }
        }
    }
}
