//! What a partner handler asks the gateway to do with one event.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use super::booking::{BookingStatus, Customer};
use super::event::Reason;
use super::sale::SaleSnapshot;
use super::table::TableKey;

/// A change to the diary, in our terms, produced by a partner handler.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "command", content = "with", rename_all = "snake_case")]
pub enum Command {
    /// Create or update a sale from a full snapshot and match it to a booking.
    UpsertSale(Box<SaleSnapshot>),
    /// The partner's view of a booking changed (e.g. a POS's reservation status): move it
    /// through the state machine and take its tables and covers.
    UpdateBooking(BookingUpdate),
    /// The partner switched its integration for this location on or off.
    SetIntegration { enabled: bool },
    /// A guest profile the partner knows (e.g. a POS customer record).
    UpsertGuest(Customer),
    /// Create or update a booking from a booking platform's full snapshot.
    UpsertBooking(Box<BookingSnapshot>),
    /// A payment or refund a booking platform took for a booking.
    RecordPayment(PlatformPayment),
}

/// A booking as a booking platform reports it: the whole booking, every time.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BookingSnapshot {
    /// The partner's key for the booking, unique per partner account (Checkfront's `code`,
    /// TourCMS's `account_id/booking_id`).
    pub external_key: String,
    /// The reference POS sales may carry to name this booking.
    pub reference: String,
    /// Our status for the partner's; `None` for a status we do not map (kept as it is).
    pub status: Option<BookingStatus>,
    /// The partner's own status, kept for the record.
    pub partner_status: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub covers: Option<i64>,
    /// What was booked (SKUs, product ids), for the venue's SKU-to-table map.
    pub skus: Vec<String>,
    pub customer: Customer,
    pub total: Option<Decimal>,
    /// What the guest has paid the platform so far.
    pub paid: Option<Decimal>,
    pub currency: Option<String>,
    /// Orders snapshots (the partner's update time, ms); `None` when it gives none.
    pub version: Option<i64>,
    /// Where the partner's own status lies along a booking's life, on the scale of
    /// [`BookingStatus::rank`], for partners that send no version (Checkfront: PART below
    /// PAID, though both are confirmed to us); `None`: the rank of `status`.
    pub rank: Option<i64>,
    /// `start` and `end` are the venue's wall-clock time (the partner gave local dates and
    /// times without a zone) until [`BookingSnapshot::localise`] turns them into instants.
    pub wall_clock: bool,
}

impl BookingSnapshot {
    /// Turns wall-clock times into instants in the venue's `zone`.
    pub fn localise(&mut self, zone: chrono_tz::Tz) {
        if self.wall_clock {
            self.start = super::sale::wall_clock_instant(zone, self.start);
            self.end = super::sale::wall_clock_instant(zone, self.end);
            self.wall_clock = false;
        }
    }

    /// The snapshot's place along the booking's life: a snapshot ranked below the last one
    /// applied is a late retry (after PEND, PART, PAID, a PEND again) and changes nothing.
    pub fn effective_rank(&self) -> Option<i64> {
        self.rank.or(self.status.map(BookingStatus::rank))
    }

    /// Everything the snapshot says, as one string: two deliveries of the same booking state
    /// (Checkfront fires "Booking Modified" and "Booking Status Change" for one change) have
    /// the same fingerprint, so the second changes nothing.
    pub fn fingerprint(&self) -> String {
        let c = &self.customer;
        let mut skus = self.skus.clone();
        skus.sort();
        format!(
            "{}|{}|{:?}|{}|{}|{}|{:?}|{}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}",
            self.external_key,
            self.reference,
            self.status,
            self.partner_status,
            self.start.timestamp_millis(),
            self.end.timestamp_millis(),
            self.covers,
            skus.join(","),
            c.name,
            c.email,
            c.phone,
            self.total,
            self.paid,
            self.currency,
            self.version,
        )
    }
}

/// A payment (or refund) taken by a booking platform.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PlatformPayment {
    /// The booking it is for, by its reference (Checkfront's booking `code`).
    pub booking_reference: String,
    /// The partner's id for the transaction: a payment is recorded once.
    pub transaction_id: String,
    /// Positive; `refund` says which way it went.
    pub amount: Decimal,
    pub refund: bool,
    pub at: Option<DateTime<Utc>>,
}

/// A notification that names a booking but carries no details: the details are fetched
/// from the partner's API after the notification is stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FetchRequest {
    pub location_id: String,
    pub booking_id: String,
    pub channel_id: String,
    /// The partner's event name, which decides the booking's status.
    pub event: String,
}

/// A partner's statement about one booking, found by its reference.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BookingUpdate {
    pub reference: String,
    /// Our status for the partner's; `None` when it has no equivalent (recorded only).
    pub status: Option<BookingStatus>,
    /// The partner's own status name, kept for the record.
    pub partner_status: String,
    pub tables: Option<Vec<TableKey>>,
    pub covers: Option<i64>,
}

impl Command {
    /// What this command must hold the in-flight lock on, so two deliveries of the same
    /// thing never apply at once (on any node): a sale by the partner's id, a platform's
    /// booking by its key (prefixed, so the two never collide). Other commands are
    /// idempotent on their own.
    pub fn lock_subject(&self) -> Option<std::borrow::Cow<'_, str>> {
        match self {
            Command::UpsertSale(sale) => Some(std::borrow::Cow::Borrowed(&sale.external_id)),
            Command::UpsertBooking(booking) => Some(std::borrow::Cow::Owned(format!(
                "booking:{}",
                booking.external_key
            ))),
            _ => None,
        }
    }
}

/// The result of running a partner's handler over one event.
///
/// Serialised for operators trying a handler (`{"apply": {...}}`, `{"ignore": {...}}`, ...),
/// with personal data redacted as in logs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mapped {
    /// Apply `commands` to the venue behind the partner's `location_id`.
    Apply {
        location_id: String,
        commands: Vec<Command>,
    },
    /// Commands for several of the partner's locations (one delivery batching several
    /// shops); applied all or nothing.
    Batch(Vec<(String, Vec<Command>)>),
    /// A notice for the operator (an onboarding request, a partner-side error): recorded as
    /// processed with `detail`, nothing else to apply.
    Notice { detail: String },
    /// The handler itself failed (e.g. a script hit a limit): the event is stored as `failed`
    /// and the partner asked to retry; a fixed handler recovers it by replay.
    Fail { reason: Reason, detail: String },
    /// Store the event as `pending` and fetch the details later (see [`FetchRequest`]).
    Fetch(FetchRequest),
    /// The body failed a check the partner signs into it (e.g. TourCMS's `<signed>`):
    /// stored as `rejected` and answered 400, like a bad signature header.
    Reject { reason: Reason, detail: String },
    /// Store the event and do nothing, for `reason` (`detail` is for the operator).
    Ignore { reason: Reason, detail: String },
}

impl Mapped {
    /// The same mapping with its location ids trimmed, as mappings of locations are: a
    /// script's `" loc-5 "` is location `loc-5` (an untrimmed id could never be mapped).
    pub fn with_trimmed_locations(self) -> Mapped {
        let trim = |id: String| match id.trim() {
            trimmed if trimmed.len() == id.len() => id,
            trimmed => trimmed.to_owned(),
        };
        match self {
            Mapped::Apply {
                location_id,
                commands,
            } => Mapped::Apply {
                location_id: trim(location_id),
                commands,
            },
            Mapped::Batch(locations) => Mapped::Batch(
                locations
                    .into_iter()
                    .map(|(location, commands)| (trim(location), commands))
                    .collect(),
            ),
            Mapped::Fetch(mut request) => {
                request.location_id = trim(request.location_id);
                Mapped::Fetch(request)
            }
            other => other,
        }
    }
}

/// The longest booking a partner may report: a year and a bit covers any rental or tour;
/// anything longer is a mistake, and would widen every table-and-time look-up of its venue.
pub const MAX_BOOKING_DAYS: i64 = 400;

/// The most covers a sale or booking may have, as the admin API allows.
pub const MAX_COVERS: i64 = 10_000;

/// The longest table name read: far longer than any floor plan's, far shorter than what
/// makes a `LIKE` pattern too complex for SQLite.
pub const MAX_TABLE_NAME: usize = 64;

/// The most distinct tables one check or booking may be on: a banquet across a whole room,
/// and far fewer than what makes a table-and-time look-up too large for the database.
pub const MAX_TABLES: usize = 64;

/// The most bytes a check's or booking's tables take as stored (a JSON list): PostgreSQL
/// keeps a booking's tables in the index its diary is read by, and an index entry past
/// about 2,700 bytes fails the write. 64 tables of 12 characters fit.
pub const MAX_TABLES_BYTES: usize = 1_024;

/// Bytes of `text` as a JSON string, quotes included, without writing it (this runs for
/// every table of every check): an escaped quote or backslash takes 2, a control character
/// at most 6.
fn json_string_len(text: &str) -> usize {
    let escapes: usize = text
        .bytes()
        .map(|b| match b {
            b'"' | b'\\' => 1,
            0..0x20 => 5,
            _ => 0,
        })
        .sum();
    text.len() + escapes + 2
}

/// Table names within [`MAX_TABLE_NAME`] characters, at most [`MAX_TABLES`] distinct and
/// [`MAX_TABLES_BYTES`] in all, for a check or booking named `what` in the error.
///
/// # Errors
/// [`InvalidCommand`] saying which bound was passed.
pub fn check_tables<'a>(
    tables: impl IntoIterator<Item = &'a super::TableKey>,
    what: &str,
) -> Result<(), InvalidCommand> {
    let mut distinct: Vec<&super::TableKey> = Vec::new();
    // The stored JSON list of distinct names: brackets, and per name its quotes, escapes
    // and a comma.
    let mut stored = 2usize;
    for table in tables {
        let length = table.as_str().chars().count();
        if length > MAX_TABLE_NAME {
            return Err(InvalidCommand(format!(
                "{what} has a table name of {length} characters; at most {MAX_TABLE_NAME}"
            )));
        }
        if !distinct.contains(&table) {
            distinct.push(table);
            stored = stored
                .saturating_add(json_string_len(table.as_str()))
                .saturating_add(1);
            if stored > MAX_TABLES_BYTES {
                return Err(InvalidCommand(format!(
                    "{what} has more than {MAX_TABLES_BYTES} bytes of table names"
                )));
            }
            if distinct.len() > MAX_TABLES {
                return Err(InvalidCommand(format!(
                    "{what} is on more than {MAX_TABLES} tables"
                )));
            }
        }
    }
    Ok(())
}

/// An instant of a command: in range, and for a wall-clock time (to be read in the venue's
/// zone later) a day inside the range on either side, so that any zone keeps it in range.
/// Bytes of a partner's identifier at most (a check's or booking's id, a reference, a
/// transaction id): real ones are a few dozen; PostgreSQL cannot index a key past about
/// 2,700 bytes, so a longer one would fail its write (a 500 the partner retries forever)
/// instead of being answered as the invalid payload it is.
pub const MAX_IDENTIFIER: usize = 256;

/// `value` within [`MAX_IDENTIFIER`] bytes.
///
/// # Errors
/// [`InvalidCommand`] naming `what` and its length.
pub fn check_identifier(value: &str, what: &str) -> Result<(), InvalidCommand> {
    if value.len() > MAX_IDENTIFIER {
        return Err(InvalidCommand(format!(
            "{what} is {} bytes long; at most {MAX_IDENTIFIER}",
            value.len()
        )));
    }
    Ok(())
}

fn check_instant(
    t: chrono::DateTime<chrono::Utc>,
    wall_clock: bool,
    field: &str,
) -> Result<(), InvalidCommand> {
    if wall_clock {
        super::time::bounded_naive(t.naive_utc(), field)?;
    } else {
        super::time::bounded(t, field)?;
    }
    Ok(())
}

/// A command a handler built from a payload that cannot be applied as it is: a time outside
/// [`super::time::RANGE`], a booking that ends before it starts, covers beyond
/// [`MAX_COVERS`]. The delivery is answered as an invalid payload, never applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidCommand(pub String);

impl From<super::time::OutOfRange> for InvalidCommand {
    fn from(error: super::time::OutOfRange) -> Self {
        InvalidCommand(error.to_string())
    }
}

fn check_covers(covers: Option<i64>, what: &str) -> Result<(), InvalidCommand> {
    match covers {
        Some(c) if !(-MAX_COVERS..=MAX_COVERS).contains(&c) => Err(InvalidCommand(format!(
            "{what} covers {c} is beyond {MAX_COVERS}"
        ))),
        _ => Ok(()),
    }
}

impl Command {
    /// Checks what every rule downstream relies on, whichever handler (built-in or script)
    /// built the command: every instant inside [`super::time::RANGE`], bookings that end
    /// after they start and last at most [`MAX_BOOKING_DAYS`], covers within bounds.
    ///
    /// # Errors
    /// [`InvalidCommand`] saying which field is wrong.
    pub fn check(&self) -> Result<(), InvalidCommand> {
        match self {
            Command::UpsertSale(sale) => {
                check_identifier(&sale.external_id, "a sale's id")?;
                let id = &sale.external_id;
                if let Some(origin) = &sale.origin_external_id {
                    check_identifier(origin, &format!("sale {id}'s origin"))?;
                }
                let local = sale.wall_clock;
                check_instant(sale.opened_at, local, &format!("sale {id} opened at"))?;
                if let Some(closed) = sale.closed_at {
                    check_instant(closed, local, &format!("sale {id} closed at"))?;
                }
                for payment in &sale.payments {
                    if let Some(paid) = payment.paid_at {
                        check_instant(paid, local, &format!("sale {id} payment at"))?;
                    }
                }
                check_tables(&sale.tables, &format!("sale {id}"))?;
                check_covers(sale.covers, &format!("sale {id}"))
            }
            Command::UpsertBooking(booking) => {
                check_identifier(&booking.external_key, "a booking's id")?;
                check_identifier(&booking.reference, "a booking's reference")?;
                let key = &booking.external_key;
                let local = booking.wall_clock;
                check_instant(booking.start, local, &format!("booking {key} start"))?;
                check_instant(booking.end, local, &format!("booking {key} end"))?;
                if let Some(version) = booking.version {
                    super::time::from_millis(version, &format!("booking {key} updated at"))?;
                }
                if booking.end < booking.start {
                    return Err(InvalidCommand(format!(
                        "booking {key} ends ({}) before it starts ({})",
                        booking.end.to_rfc3339(),
                        booking.start.to_rfc3339()
                    )));
                }
                if booking.end - booking.start > chrono::Duration::days(MAX_BOOKING_DAYS) {
                    return Err(InvalidCommand(format!(
                        "booking {key} lasts more than {MAX_BOOKING_DAYS} days"
                    )));
                }
                check_covers(booking.covers, &format!("booking {key}"))
            }
            Command::RecordPayment(payment) => {
                check_identifier(&payment.booking_reference, "a payment's booking reference")?;
                check_identifier(&payment.transaction_id, "a payment's transaction id")?;
                match payment.at {
                    Some(at) => {
                        super::time::bounded(at, &format!("payment {} at", payment.transaction_id))
                            .map(drop)
                            .map_err(Into::into)
                    }
                    None => Ok(()),
                }
            }
            Command::UpdateBooking(update) => {
                check_identifier(&update.reference, "a booking's reference")?;
                let what = format!("booking {}", update.reference);
                check_tables(update.tables.iter().flatten(), &what)?;
                check_covers(update.covers, &what)
            }
            Command::SetIntegration { .. } | Command::UpsertGuest(_) => Ok(()),
        }
    }
}

impl Mapped {
    /// A payload the handler cannot build a valid command from (a required field missing, a
    /// time out of range): stored as `failed` with reason `invalid_payload`, answered 200 by
    /// default, kept for a replay once the handler is fixed.
    pub fn invalid(detail: impl Into<String>) -> Mapped {
        Mapped::Fail {
            reason: Reason::InvalidPayload,
            detail: detail.into(),
        }
    }

    /// Checks every command ([`Command::check`]).
    ///
    /// # Errors
    /// The first [`InvalidCommand`] found.
    pub fn check(&self) -> Result<(), InvalidCommand> {
        let groups: Box<dyn Iterator<Item = (&String, &Vec<Command>)>> = match self {
            Mapped::Apply {
                location_id,
                commands,
            } => Box::new(std::iter::once((location_id, commands))),
            Mapped::Batch(groups) => Box::new(groups.iter().map(|(l, c)| (l, c))),
            _ => return Ok(()),
        };
        for (location_id, commands) in groups {
            check_identifier(location_id, "the location id")?;
            commands.iter().try_for_each(Command::check)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::json_string_len;

    #[test]
    fn a_tables_stored_length_is_what_json_writes_or_more_for_control_characters() {
        for name in ["7A", "TERRACE 12", "SAY \"HI\"", "A\\B", "CAFÉ", ""] {
            let written = serde_json::to_string(name).map_or(0, |s| s.len());
            assert_eq!(json_string_len(name), written, "{name}");
        }
        let control = "A\u{1}\nB";
        let written = serde_json::to_string(control).map_or(0, |s| s.len());
        assert!(json_string_len(control) >= written);
    }
}
