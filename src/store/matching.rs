//! Gathering what matching decides on, and writing what it decided: the candidates a sale
//! may belong to (bookings named by its references, the booking of its origin, its current
//! match, bookings on its tables near its time, each with its open and closed checks, covers
//! and guest name) read with indexed queries; the domain's [`decide`] picks; the link is
//! written with the table and time that decided it, or, for an ambiguous sale, every
//! candidate with the evidence for it. A venue that takes walk-ins gets a walk-in booking
//! for a check on a table nobody booked.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::booking::GuestName;
use crate::domain::change::{Note, Noted};
use crate::domain::matching::{
    CandidateBooking, CandidateEvidence, CurrentMatch, Decisive, MatchInput, TimeBasis, decide,
};
use crate::domain::sale::BookingRef;
use crate::domain::{
    BookingStatus, MatchDecision, MatchRule, SaleFacts, SaleKind, SaleState, TableKey, time,
};

use crate::store::StoreError;
use crate::store::db::{self, Conn, Row};
use crate::store::sql::{from_millis, json_list, parse_status};
use crate::store::venue::{Venue, note_booking_span};

/// Default length of a walk-in booking created from a sale, in minutes.
pub(in crate::store) const WALK_IN_MINUTES: i64 = 90;

/// A booking reference as stored with a sale, so it can be matched again later.
#[derive(Serialize, Deserialize)]
pub(in crate::store) struct StoredRef {
    pub(in crate::store) value: String,
    pub(in crate::store) source: String,
}

/// One candidate's evidence as stored with an ambiguous sale (`match_evidence`).
#[derive(Serialize, Deserialize)]
struct StoredEvidence {
    booking_id: i64,
    evidence: String,
}

/// The link a sale ends up with.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(in crate::store) struct Link {
    pub booking_id: Option<i64>,
    pub rule: Option<&'static str>,
    pub reason: Option<String>,
    pub candidates: Vec<i64>,
    /// For `table_time`: the table and time that decided it.
    pub decided_by: Option<Decisive>,
    /// For an ambiguous sale: each candidate with the evidence for it.
    pub evidence: Vec<CandidateEvidence>,
}

impl Link {
    pub(in crate::store) fn of(decision: MatchDecision) -> Link {
        match decision {
            MatchDecision::Matched(m) => Link {
                booking_id: Some(m.booking_id),
                rule: Some(m.rule.as_str()),
                reason: Some(m.reason),
                decided_by: m.decided_by,
                ..Link::default()
            },
            MatchDecision::Ambiguous {
                candidates,
                reason,
                evidence,
            } => Link {
                reason: Some(reason),
                candidates,
                evidence,
                ..Link::default()
            },
            MatchDecision::Unmatched => Link::default(),
        }
    }

    /// An operator's decision, which automatic rules never override.
    pub(in crate::store) fn manual(booking_id: Option<i64>, reason: String) -> Link {
        Link {
            booking_id,
            rule: Some(MatchRule::Manual.as_str()),
            reason: Some(reason),
            ..Link::default()
        }
    }

    /// Notes the decision for the sale's message (`sale.matched`, `sale.unmatched`,
    /// `sale.needs_review`).
    pub(in crate::store) fn note(
        &self,
        conn: &mut Conn<'_>,
        sale_id: i64,
        event_id: Option<i64>,
        at: DateTime<Utc>,
    ) {
        conn.note(Note {
            change: Noted::SaleLink {
                sale_id,
                booking_id: self.booking_id,
                candidates: self.candidates.clone(),
            },
            cause: self.describe(),
            event_id,
            at,
        });
    }

    pub(in crate::store) fn describe(&self) -> String {
        match (&self.rule, &self.reason) {
            (Some(rule), Some(reason)) => format!("matched by {rule}: {reason}"),
            (None, Some(reason)) => format!("ambiguous: {reason}"),
            _ => "unmatched".to_owned(),
        }
    }

    /// The `match_candidates` column.
    fn candidates_column(&self) -> Option<String> {
        (!self.candidates.is_empty()).then(|| json_list(self.candidates.iter()))
    }

    /// The link's columns, in the order `set_link` and a sale's insert write them:
    /// `booking_id`, `match_rule`, `match_reason`, `match_candidates`, `matched_table`,
    /// `matched_at`, `time_basis`, `match_evidence`.
    pub(in crate::store) fn params(&self) -> [db::Param<'_>; 8] {
        use db::Bind as _;
        let decided = self.decided_by.as_ref();
        [
            self.booking_id.param(),
            self.rule.param(),
            self.reason.as_deref().param(),
            self.candidates_column().param(),
            decided.map(|d| d.table.as_str().to_owned()).param(),
            decided.map(|d| d.at.timestamp_millis()).param(),
            decided.map(|d| d.basis.as_str()).param(),
            self.evidence_column().param(),
        ]
    }

    /// The `match_evidence` column.
    fn evidence_column(&self) -> Option<String> {
        (!self.evidence.is_empty()).then(|| {
            json_list(self.evidence.iter().map(|e| StoredEvidence {
                booking_id: e.booking_id,
                evidence: e.evidence.clone(),
            }))
        })
    }
}

/// The `match_evidence` column read back: each candidate of an ambiguous sale with the
/// evidence for it.
pub(in crate::store) fn stored_evidence(column: Option<String>) -> Vec<CandidateEvidence> {
    column
        .and_then(|c| serde_json::from_str::<Vec<StoredEvidence>>(&c).ok())
        .unwrap_or_default()
        .into_iter()
        .map(|e| CandidateEvidence {
            booking_id: e.booking_id,
            evidence: e.evidence,
        })
        .collect()
}

/// A sale as matching sees it: its facts, and what the store knows of it.
pub(in crate::store) struct SaleToMatch<'a> {
    pub facts: &'a SaleFacts,
    /// The stored sale's id, so its own check is not counted against its candidates.
    pub id: Option<i64>,
    /// Its table-and-time match as it stands, kept while its booking holds it.
    pub current: Option<&'a CurrentMatch>,
}

/// Decides `sale`'s booking at `venue` from the candidates the store holds.
///
/// # Errors
/// When the database refuses.
pub(in crate::store) async fn decide_match(
    conn: &mut Conn<'_>,
    partner: &str,
    venue: &Venue,
    sale: SaleToMatch<'_>,
) -> Result<MatchDecision, StoreError> {
    let facts = sale.facts;
    let exclude = sale.id.unwrap_or(0);
    let input = |by_reference, origin_booking, nearby| MatchInput {
        sale: facts,
        by_reference,
        origin_booking,
        current: sale.current,
        nearby,
        tolerances: venue.tolerances,
    };
    if !facts.booking_refs.is_empty() {
        let references: Vec<&str> = facts
            .booking_refs
            .iter()
            .map(|r| r.value.as_str())
            .collect();
        let by_reference = bookings_by_reference(conn, venue.id, &references, exclude).await?;
        if !by_reference.is_empty() {
            return Ok(decide(input(&by_reference, None, &[])));
        }
    }
    if let Some(origin) = &facts.origin_external_id {
        let origin_booking: Option<Option<i64>> = db::query_scalar(
            "SELECT booking_id FROM sales WHERE partner = $1 AND venue_id = $2 AND external_id = $3",
        )
        .bind(partner)
        .bind(venue.id)
        .bind(origin.as_str())
        .fetch_optional(conn)
        .await?;
        if let Some(booking) = origin_booking.flatten() {
            return Ok(decide(input(&[], Some(booking), &[])));
        }
    }
    if facts.tables.is_empty() && sale.current.is_none() {
        return Ok(MatchDecision::Unmatched);
    }
    let (at, _) = facts.match_time();
    let nearby = if facts.tables.is_empty() {
        Vec::new()
    } else {
        bookings_near(conn, venue, at, &facts.tables, exclude).await?
    };
    Ok(decide(input(&[], None, &nearby)))
}

/// Everything matching reads of a booking, its checks counted without sale `$n` (where
/// they are is [`note_presence`]'s).
pub(in crate::store) fn candidate_select(exclude: usize) -> String {
    format!(
        "SELECT b.id, b.reference, b.start_at, b.end_at, b.status, b.tables, b.covers,
             b.customer_name, b.source,
             (SELECT COUNT(*) FROM sales s WHERE s.booking_id = b.id AND s.state <> 'voided'
                  AND s.id <> ${exclude}) AS checks_anywhere
         FROM bookings b"
    )
}

pub(in crate::store) async fn bookings_by_reference(
    conn: &mut Conn<'_>,
    venue_id: i64,
    references: &[&str],
    exclude: i64,
) -> Result<Vec<CandidateBooking>, StoreError> {
    let placeholders: Vec<String> = (0..references.len())
        .map(|i| format!("${}", i + 3))
        .collect();
    let sql = format!(
        "{} WHERE b.venue_id = $1 AND b.reference IN ({}) ORDER BY b.id",
        candidate_select(2),
        placeholders.join(", ")
    );
    let mut query = db::query(&sql).bind(venue_id).bind(exclude);
    for reference in references {
        query = query.bind(*reference);
    }
    candidates(query.fetch_all(conn).await?)
}

/// One booking as a candidate (for a sale's current match), its checks counted without
/// sale `exclude`.
pub(in crate::store) async fn candidate_booking(
    conn: &mut Conn<'_>,
    booking_id: i64,
    exclude: i64,
) -> Result<Option<CandidateBooking>, StoreError> {
    let sql = format!("{} WHERE b.id = $1", candidate_select(2));
    let rows = db::query(&sql)
        .bind(booking_id)
        .bind(exclude)
        .fetch_all(conn)
        .await?;
    Ok(candidates(rows)?.pop())
}

/// Bookings on one of `tables` whose window, widened by the venue's tolerances, contains
/// `at` (table and time never matches any other). The scan of the `bookings_venue_start`
/// index is bounded on both sides (by the venue's longest booking from below), so its cost
/// does not grow with the diary's history, and the table filter is checked in the index, so
/// only the bookings on the sale's tables are read.
pub(in crate::store) async fn bookings_near(
    conn: &mut Conn<'_>,
    venue: &Venue,
    at: DateTime<Utc>,
    tables: &[TableKey],
    exclude: i64,
) -> Result<Vec<CandidateBooking>, StoreError> {
    let latest_start = time::plus(at, venue.tolerances.before_start).timestamp_millis();
    let earliest_end = time::minus(at, venue.tolerances.after_end);
    let earliest_start = time::minus(earliest_end, venue.longest_booking).timestamp_millis();
    let on_tables: Vec<String> = (0..tables.len())
        .map(|i| format!("b.tables LIKE ${} ESCAPE '\\'", i + 6))
        .collect();
    let mut query = db::query(format!(
        "{} WHERE b.venue_id = $1 AND b.start_at <= $2 AND b.start_at >= $4 AND b.end_at >= $3
         AND ({}) AND b.status NOT IN ('cancelled', 'no_show')",
        candidate_select(5),
        on_tables.join(" OR ")
    ))
    .bind(venue.id)
    .bind(latest_start)
    .bind(earliest_end.timestamp_millis())
    .bind(earliest_start)
    .bind(exclude);
    for table in tables {
        query = query.bind(json_member_pattern(table.as_str()));
    }
    let mut near = candidates(query.fetch_all(conn).await?)?;
    note_presence(conn, venue, &mut near, exclude).await?;
    Ok(near)
}

/// A `LIKE` pattern (escaped with `\`) finding `value` as a member of a JSON list of strings.
/// It may find more (a case-insensitive `LIKE`, a member's escaped text), never less: the
/// domain decides on the parsed lists.
pub(in crate::store) fn json_member_pattern(value: &str) -> String {
    let quoted = serde_json::to_string(value).unwrap_or_default();
    let mut pattern = String::with_capacity(quoted.len() + 4);
    pattern.push('%');
    for c in quoted.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// Booking rows (of [`candidate_select`], or with at least its booking columns) as
/// matching candidates.
pub(in crate::store) fn candidates(rows: Vec<Row>) -> Result<Vec<CandidateBooking>, StoreError> {
    rows.iter()
        .map(|row| {
            let status: String = row.try_get("status")?;
            let tables: String = row.try_get("tables")?;
            let tables: Vec<String> = serde_json::from_str(&tables).unwrap_or_default();
            let count = |column: &str| -> usize {
                row.try_get::<i64>(column)
                    .ok()
                    .and_then(|n| usize::try_from(n).ok())
                    .unwrap_or(0)
            };
            let source: Option<String> = row.try_get("source").ok().flatten();
            let name: Option<String> = row.try_get("customer_name").ok().flatten();
            Ok(CandidateBooking {
                id: row.try_get("id")?,
                reference: row.try_get("reference")?,
                start: from_millis(row.try_get("start_at")?)?,
                end: from_millis(row.try_get("end_at")?)?,
                tables: tables.into_iter().map(TableKey::from_normalised).collect(),
                status: parse_status(&status)?,
                covers: row.try_get::<i64>("covers").unwrap_or(0),
                guest_name: GuestName::of(name.as_deref()),
                walk_in: source.as_deref() == Some("walk_in"),
                // Where its checks are is read by `note_presence`, for the bookings that
                // have any.
                open_checks: 0,
                closed_checks: 0,
                last_closed_at: None,
                moved_away_at: None,
                checks_anywhere: count("checks_anywhere"),
            })
        })
        .collect()
}

/// A check paid this soon after it was opened was no meal: a deposit, a voucher sold, a
/// prepayment taken on arrival.
const NOT_A_MEAL: chrono::Duration = chrono::Duration::minutes(10);

/// Where each candidate's party is, from its other live checks (but sale `exclude`), as
/// a host reads the floor: only checks on the booking's own tables (as the venue names
/// them) hold those tables (`open_checks`, `closed_checks`, and `last_closed_at` from
/// each check's first close: a check reopened later for a tip does not bring the party
/// back); a tab at the bar holds no table; refunds say nothing of where anyone sits. When
/// every check is on other tables, the party moved away (`moved_away_at`: when the last
/// got there).
pub(in crate::store) async fn note_presence(
    conn: &mut Conn<'_>,
    venue: &Venue,
    bookings: &mut [CandidateBooking],
    exclude: i64,
) -> Result<(), StoreError> {
    let with_checks: Vec<i64> = bookings
        .iter()
        .filter(|b| b.checks_anywhere > 0)
        .map(|b| b.id)
        .collect();
    if with_checks.is_empty() {
        return Ok(());
    }
    // One read for every candidate that has checks.
    let placeholders: Vec<String> = (0..with_checks.len())
        .map(|i| format!("${}", i + 2))
        .collect();
    let sql = format!(
        "SELECT booking_id, tables, state, kind, placed_at, opened_at, first_closed_at, closed_at
         FROM sales WHERE booking_id IN ({}) AND state <> 'voided' AND id <> $1",
        placeholders.join(", ")
    );
    let mut query = db::query(&sql).bind(exclude);
    for id in &with_checks {
        query = query.bind(*id);
    }
    let rows = query.fetch_all(conn).await?;
    for booking in bookings.iter_mut().filter(|b| b.checks_anywhere > 0) {
        let id = booking.id;
        let checks = rows
            .iter()
            .filter(|row| row.try_get::<i64>("booking_id").ok() == Some(id));
        presence(venue, booking, checks)?;
    }
    Ok(())
}

/// Fills in where `booking`'s party is from its `checks` (rows of [`note_presence`]).
fn presence<'r>(
    venue: &Venue,
    booking: &mut CandidateBooking,
    checks: impl Iterator<Item = &'r Row>,
) -> Result<(), StoreError> {
    let (mut open, mut closed, mut left) = (0, 0, None);
    let (mut elsewhere, mut moved) = (0, None);
    let mut counted = 0;
    for row in checks {
        let kind: String = row.try_get("kind")?;
        if kind == SaleKind::Refund.as_str() {
            continue;
        }
        let tables: String = row.try_get("tables")?;
        let tables: Vec<String> = serde_json::from_str(&tables).unwrap_or_default();
        let tables: Vec<TableKey> = tables.into_iter().map(TableKey::from_normalised).collect();
        let tables = venue.diary_tables(&tables);
        let opened = from_millis(row.try_get("opened_at")?)?;
        if !tables.iter().any(|t| booking.tables.contains(t)) {
            counted += 1;
            if !tables.is_empty() {
                elsewhere += 1;
                let since = row
                    .try_get::<Option<i64>>("placed_at")?
                    .map(from_millis)
                    .transpose()?
                    .unwrap_or(opened);
                moved = moved.max(Some(since));
            }
            continue;
        }
        let state: String = row.try_get("state")?;
        if state == SaleState::Open.as_str() {
            counted += 1;
            open += 1;
            continue;
        }
        let paid = row
            .try_get::<Option<i64>>("first_closed_at")?
            .or(row.try_get::<Option<i64>>("closed_at")?)
            .map(from_millis)
            .transpose()?;
        // A check paid before the booking was due, or within minutes of being opened (a
        // deposit, a voucher, a prepayment taken on arrival), says nothing of its party
        // having eaten and left.
        if paid.is_some_and(|paid| paid <= booking.start || paid - opened < NOT_A_MEAL) {
            continue;
        }
        counted += 1;
        closed += 1;
        left = left.max(paid);
    }
    booking.open_checks = open;
    booking.closed_checks = closed;
    booking.last_closed_at = left;
    booking.checks_anywhere = counted;
    booking.moved_away_at = (elsewhere > 0 && elsewhere == counted)
        .then_some(moved)
        .flatten();
    Ok(())
}

/// A stored table-and-time match as the domain's [`CurrentMatch`]: its booking as it is
/// now, and the table and time that decided it. `None` for any other link, or one stored
/// before these were kept.
pub(in crate::store) async fn current_match(
    conn: &mut Conn<'_>,
    venue: &Venue,
    sale_id: i64,
    stored: &StoredLink,
) -> Result<Option<CurrentMatch>, StoreError> {
    let (Some(booking_id), Some(decided_by)) = (stored.booking_id, stored.decided_by.clone())
    else {
        return Ok(None);
    };
    if stored.rule.as_deref() != Some(MatchRule::TableTime.as_str()) {
        return Ok(None);
    }
    let Some(booking) = candidate_booking(conn, booking_id, sale_id).await? else {
        return Ok(None);
    };
    let mut booking = [booking];
    note_presence(conn, venue, &mut booking, sale_id).await?;
    let [booking] = booking;
    Ok(Some(CurrentMatch {
        booking,
        reason: stored.reason.clone().unwrap_or_default(),
        decided_by,
    }))
}

/// A sale's link as stored.
#[derive(Debug, Clone, Default)]
pub(in crate::store) struct StoredLink {
    pub booking_id: Option<i64>,
    pub rule: Option<String>,
    pub reason: Option<String>,
    pub decided_by: Option<Decisive>,
}

impl StoredLink {
    /// From a row with `booking_id`, `match_rule`, `match_reason`, `matched_table`,
    /// `matched_at` and `time_basis`.
    pub(in crate::store) fn from_row(row: &Row) -> Result<StoredLink, StoreError> {
        let table: Option<String> = row.try_get("matched_table")?;
        let at: Option<i64> = row.try_get("matched_at")?;
        let basis: Option<String> = row.try_get("time_basis")?;
        let decided_by = match (table, at, basis.as_deref().and_then(TimeBasis::parse)) {
            (Some(table), Some(at), Some(basis)) => Some(Decisive {
                table: TableKey::from_normalised(table),
                at: from_millis(at)?,
                basis,
            }),
            _ => None,
        };
        Ok(StoredLink {
            booking_id: row.try_get("booking_id")?,
            rule: row.try_get("match_rule")?,
            reason: row.try_get("match_reason")?,
            decided_by,
        })
    }

    pub(in crate::store) fn is_manual(&self) -> bool {
        self.rule.as_deref() == Some(MatchRule::Manual.as_str())
    }
}

/// The columns [`StoredLink::from_row`] reads.
pub(in crate::store) const LINK_COLUMNS: &str =
    "booking_id, match_rule, match_reason, matched_table, matched_at, time_basis";

/// Writes `link` on sale `sale_id`.
pub(in crate::store) async fn set_link(
    conn: &mut Conn<'_>,
    sale_id: i64,
    link: &Link,
) -> Result<(), StoreError> {
    link.note(conn, sale_id, None, Utc::now());
    db::query(
        "UPDATE sales SET booking_id = $1, match_rule = $2, match_reason = $3,
             match_candidates = $4, matched_table = $5, matched_at = $6, time_basis = $7,
             match_evidence = $8
         WHERE id = $9",
    )
    .bind_params(link.params())
    .bind(sale_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// What a walk-in booking is made from: a check on a table nobody booked.
pub(in crate::store) struct WalkIn<'a> {
    pub kind: SaleKind,
    pub state: SaleState,
    /// When the check got onto its table.
    pub at: DateTime<Utc>,
    pub covers: Option<i64>,
    pub tables: &'a [TableKey],
}

/// `link`, or, when it is nobody's and the venue takes walk-ins, a new walk-in booking for
/// the check (a sale, not voided, on a table).
///
/// # Errors
/// When the database refuses.
pub(in crate::store) async fn or_walk_in(
    conn: &mut Conn<'_>,
    venue: &Venue,
    link: Link,
    walk_in: WalkIn<'_>,
    now: DateTime<Utc>,
) -> Result<Link, StoreError> {
    let wanted = link.booking_id.is_none()
        && link.candidates.is_empty()
        && venue.walk_ins
        && walk_in.kind == SaleKind::Sale
        && walk_in.state != SaleState::Voided
        && !walk_in.tables.is_empty();
    if !wanted {
        return Ok(link);
    }
    let start = walk_in.at;
    let end = time::plus(start, Duration::minutes(WALK_IN_MINUTES));
    let booking_id: i64 = db::query_scalar(
        "INSERT INTO bookings (venue_id, start_at, end_at, covers, status, source, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, 'walk_in', $6, $6) RETURNING id",
    )
    .bind(venue.id)
    .bind(start.timestamp_millis())
    .bind(end.timestamp_millis())
    .bind(walk_in.covers.unwrap_or(0).max(0))
    .bind(BookingStatus::Confirmed.as_str())
    .bind(now.timestamp_millis())
    .fetch_one(conn)
    .await?;
    db::query("UPDATE bookings SET tables = $1 WHERE id = $2")
        .bind(json_list(walk_in.tables.iter().map(TableKey::as_str)))
        .bind(booking_id)
        .execute(conn)
        .await?;
    note_booking_span(conn, venue.id, start, end).await?;
    let names: Vec<&str> = walk_in.tables.iter().map(TableKey::as_str).collect();
    let table = walk_in.tables.first().cloned();
    Ok(Link {
        booking_id: Some(booking_id),
        rule: Some(MatchRule::TableTime.as_str()),
        reason: Some(format!(
            "walk-in booking created for table {}",
            names.join(", ")
        )),
        decided_by: table.map(|table| Decisive {
            table,
            at: start,
            basis: TimeBasis::Opened,
        }),
        ..Link::default()
    })
}

/// A stored sale's matching facts and current link.
pub(in crate::store) struct StoredFacts {
    pub id: i64,
    pub partner: String,
    pub external_id: String,
    pub facts: SaleFacts,
    pub state: SaleState,
    pub link: StoredLink,
}

/// The columns [`stored_facts`] reads.
pub(in crate::store) const FACT_COLUMNS: &str = "id, partner, external_id, kind, state,
    origin_external_id, opened_at, placed_at, tables, booking_refs, covers, guest_name,
    booking_id, match_rule, match_reason, matched_table, matched_at, time_basis,
    first_closed_at, closed_at";

pub(in crate::store) fn stored_facts(row: &Row) -> Result<StoredFacts, StoreError> {
    let kind: String = row.try_get("kind")?;
    let state: String = row.try_get("state")?;
    let tables: String = row.try_get("tables")?;
    let refs: String = row.try_get("booking_refs")?;
    let tables: Vec<String> = serde_json::from_str(&tables).unwrap_or_default();
    let refs: Vec<StoredRef> = serde_json::from_str(&refs).unwrap_or_default();
    let guest_name: Option<String> = row.try_get("guest_name")?;
    Ok(StoredFacts {
        id: row.try_get("id")?,
        partner: row.try_get("partner")?,
        external_id: row.try_get("external_id")?,
        state: SaleState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("sale state {state:?}")))?,
        link: StoredLink::from_row(row)?,
        facts: SaleFacts {
            kind: SaleKind::parse(&kind).unwrap_or(SaleKind::Sale),
            origin_external_id: row.try_get("origin_external_id")?,
            opened_at: from_millis(row.try_get("opened_at")?)?,
            placed_at: row
                .try_get::<Option<i64>>("placed_at")?
                .map(from_millis)
                .transpose()?,
            tables: tables.into_iter().map(TableKey::from_normalised).collect(),
            booking_refs: refs
                .into_iter()
                .map(|r| BookingRef {
                    value: r.value,
                    source: r.source,
                })
                .collect(),
            covers: row.try_get("covers")?,
            guest_name: GuestName::of(guest_name.as_deref()),
            paid_at: match state.as_str() {
                "closed" => row
                    .try_get::<Option<i64>>("first_closed_at")?
                    .or(row.try_get::<Option<i64>>("closed_at")?)
                    .map(from_millis)
                    .transpose()?,
                _ => None,
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::json_member_pattern;

    #[test]
    fn a_table_pattern_finds_the_member_and_escapes_like_wildcards() {
        assert_eq!(json_member_pattern("10"), r#"%"10"%"#);
        assert_eq!(json_member_pattern("5_%"), r#"%"5\_\%"%"#);
        assert_eq!(json_member_pattern(r#"A"B"#), r#"%"A\\"B"%"#);
    }
}
