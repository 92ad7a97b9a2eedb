//! The audit trail: every manual action with who, when, what, and its subject before and
//! after, written in the action's own transaction (an action is never committed without its
//! entry, nor recorded without being committed).
//!
//! Snapshots hold what an operator decides on (a booking's time, covers, tables, status and
//! reference; a sale's match; a venue's settings; a user's role and venues), never a guest's
//! name, e-mail, phone or notes: the trail is kept longer than personal data is
//! (`retention_days`), and is read by people who may not see guests.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};

use super::StoreError;
use super::db::{self, Conn, Param, Row};
use super::sql::from_millis;
use crate::domain::access::Actor;

/// What an entry is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    Booking(i64),
    Sale(i64),
    Venue(i64),
    User(i64),
    Event(i64),
    /// A replay of many events (its filter and summary are the entry's `after`).
    Replay,
    /// A partner kept in the database (named in the entry's `before` and `after`).
    Partner,
    /// A webhook subscription.
    Webhook(i64),
}

impl Subject {
    pub fn kind(self) -> &'static str {
        match self {
            Subject::Booking(_) => "booking",
            Subject::Sale(_) => "sale",
            Subject::Venue(_) => "venue",
            Subject::User(_) => "user",
            Subject::Event(_) => "event",
            Subject::Replay => "replay",
            Subject::Partner => "partner",
            Subject::Webhook(_) => "webhook",
        }
    }

    pub fn id(self) -> Option<i64> {
        match self {
            Subject::Booking(id)
            | Subject::Sale(id)
            | Subject::Venue(id)
            | Subject::User(id)
            | Subject::Event(id)
            | Subject::Webhook(id) => Some(id),
            Subject::Replay | Subject::Partner => None,
        }
    }
}

/// One entry, as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema, PartialEq)]
pub struct AuditRecord {
    pub id: i64,
    pub at: DateTime<Utc>,
    /// The user's e-mail, `admin token` or `command line`.
    pub actor: String,
    pub actor_user_id: Option<i64>,
    /// How the actor signed in: `session`, `token <id>`, `admin token`, `command line`.
    pub actor_via: Option<String>,
    /// `sale.match`, `sale.unmatch`, `booking.create`, `booking.change`, `booking.cancel`,
    /// `venue.create`, `venue.change`, `venue.location_add`, `event.replay`,
    /// `events.replay`, `user.create`, `user.change`, `token.create`, `token.revoke`,
    /// `partner.create`, `partner.change`, `partner.secret_add`, `partner.secret_retire`,
    /// `booking.put`, `bookings.sync` (the platform link used by hand or by a user's token),
    /// `webhook.create`, `webhook.change`, `webhook.delete`, `webhook.resend`.
    pub action: String,
    pub venue_id: Option<i64>,
    pub subject_type: String,
    pub subject_id: Option<i64>,
    #[schema(value_type = Option<Object>)]
    pub before: Option<Value>,
    #[schema(value_type = Option<Object>)]
    pub after: Option<Value>,
}

/// Which entries to read, newest first.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// The actor's e-mail (or `admin token`), exactly.
    pub actor: Option<String>,
    pub venue: Option<i64>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// One subject's history: `(subject_type, subject_id)`, or every entry of a type.
    pub subject: Option<(String, Option<i64>)>,
    /// One partner's history (`partner.create`, `partner.change`, secrets, scripts).
    pub partner: Option<String>,
    /// Entries with ids below this one (the next page).
    pub before_id: Option<i64>,
    /// Only these venues' entries (a venue role's scope); `None` is every entry.
    pub venue_limit: Option<Vec<i64>>,
    /// For actors who do not administer users: entries about users (and their tokens) only
    /// when about this user (themselves).
    pub users_only_self: Option<Option<i64>>,
    pub limit: i64,
}

/// Writes one entry.
///
/// # Errors
/// When the database fails.
pub(super) async fn record(
    conn: &mut Conn<'_>,
    by: &Actor,
    action: &str,
    venue_id: Option<i64>,
    subject: Subject,
    before: Option<Value>,
    after: Option<Value>,
) -> Result<(), StoreError> {
    insert(conn, by, action, venue_id, subject, before, after)
        .await
        .map(drop)
}

/// Writes one entry about a replay of many events, and links each event it re-ran
/// (`events`, by id) to it, so that an event's history shows it.
///
/// # Errors
/// When the database fails.
pub(super) async fn record_replay(
    conn: &mut Conn<'_>,
    by: &Actor,
    after: Value,
    events: &[i64],
) -> Result<(), StoreError> {
    let entry = insert(
        conn,
        by,
        "events.replay",
        None,
        Subject::Replay,
        None,
        Some(after),
    )
    .await?;
    // A few hundred rows a statement, well under either engine's limit on parameters.
    for chunk in events.chunks(500) {
        let rows: Vec<String> = (0..chunk.len())
            .map(|n| format!("(${}, $1)", n + 2))
            .collect();
        let statement = format!(
            "INSERT INTO event_replays (event_id, audit_id) VALUES {} ON CONFLICT DO NOTHING",
            rows.join(", ")
        );
        let query = chunk
            .iter()
            .fold(db::query(statement).bind(entry), |q, id| q.bind(*id));
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Writes one entry; returns its id.
async fn insert(
    conn: &mut Conn<'_>,
    by: &Actor,
    action: &str,
    venue_id: Option<i64>,
    subject: Subject,
    before: Option<Value>,
    after: Option<Value>,
) -> Result<i64, StoreError> {
    // A partner's entries name it in their snapshots; kept in a column of its own so its
    // history is one indexed read.
    let named = |snapshot: &Option<Value>, key: &str| {
        snapshot
            .as_ref()
            .and_then(|s| s.pointer(key))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let subject_name = match subject {
        Subject::Partner => named(&after, "/name").or_else(|| named(&before, "/name")),
        // A replay of one partner's events is in that partner's history too.
        Subject::Replay => named(&after, "/filter/partner"),
        _ => None,
    };
    db::query_scalar(
        "INSERT INTO audit_log (at, actor_user_id, actor, actor_via, action, venue_id,
             subject_type, subject_id, before, after, subject_name)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
         RETURNING id",
    )
    .bind(Utc::now().timestamp_millis())
    .bind(by.user_id)
    .bind(by.name.as_str())
    .bind(by.via.as_str())
    .bind(action)
    .bind(venue_id)
    .bind(subject.kind())
    .bind(subject.id())
    .bind(before.map(|v| v.to_string()))
    .bind(after.map(|v| v.to_string()))
    .bind(subject_name)
    .fetch_one(conn)
    .await
}

/// Writes one entry from snapshots taken with their venue ([`booking`], [`sale`]): the venue
/// is the one before the action (or after, for a creation).
///
/// # Errors
/// When the database fails.
pub(super) async fn record_snapshots(
    conn: &mut Conn<'_>,
    by: &Actor,
    action: &str,
    subject: Subject,
    before: Option<(i64, Value)>,
    after: Option<(i64, Value)>,
) -> Result<(), StoreError> {
    let venue = before.as_ref().or(after.as_ref()).map(|(venue, _)| *venue);
    let (before, after) = (before.map(|b| b.1), after.map(|a| a.1));
    if before.is_some() && before == after {
        // Nothing changed: a double click, a form sent again. Nothing to record.
        return Ok(());
    }
    record(conn, by, action, venue, subject, before, after).await
}

/// A booking as the trail keeps it, and its venue; `None` when there is no such booking.
///
/// # Errors
/// When the database fails.
pub(super) async fn booking(
    conn: &mut Conn<'_>,
    id: i64,
) -> Result<Option<(i64, Value)>, StoreError> {
    let row = db::query(
        "SELECT venue_id, reference, start_at, end_at, covers, tables, status
         FROM bookings WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let tables: String = row.try_get("tables")?;
    let start: i64 = row.try_get("start_at")?;
    let end: i64 = row.try_get("end_at")?;
    Ok(Some((
        row.try_get("venue_id")?,
        json!({
            "reference": row.try_get::<Option<String>>("reference")?,
            "start": from_millis(start)?,
            "duration_minutes": end.saturating_sub(start) / 60_000,
            "covers": row.try_get::<i64>("covers")?,
            "tables": serde_json::from_str::<Value>(&tables).unwrap_or(Value::Null),
            "status": row.try_get::<String>("status")?,
        }),
    )))
}

/// A sale's match as the trail keeps it, and its venue.
///
/// # Errors
/// When the database fails.
pub(super) async fn sale(conn: &mut Conn<'_>, id: i64) -> Result<Option<(i64, Value)>, StoreError> {
    let row = db::query(
        "SELECT venue_id, partner, external_id, booking_id, match_rule FROM sales WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    Ok(Some((
        row.try_get("venue_id")?,
        json!({
            "partner": row.try_get::<String>("partner")?,
            "external_id": row.try_get::<String>("external_id")?,
            "booking_id": row.try_get::<Option<i64>>("booking_id")?,
            "rule": row.try_get::<Option<String>>("match_rule")?,
        }),
    )))
}

/// A venue's settings and partner locations as the trail keeps them.
///
/// # Errors
/// When the database fails.
pub(super) async fn venue(conn: &mut Conn<'_>, id: i64) -> Result<Option<Value>, StoreError> {
    Ok(super::sql::venue_record(conn, id)
        .await?
        .and_then(|venue| serde_json::to_value(venue).ok()))
}

/// A user as the trail keeps it (never the password's hash).
///
/// # Errors
/// When the database fails.
pub(super) async fn user(conn: &mut Conn<'_>, id: i64) -> Result<Option<Value>, StoreError> {
    Ok(super::operators::user(conn, id).await?.map(|user| {
        json!({
            "name": user.name,
            "email": user.email,
            "role": user.role,
            "venues": user.venues,
            "disabled": user.disabled_at.is_some(),
        })
    }))
}

fn audit_record(row: &Row) -> Result<AuditRecord, StoreError> {
    let json = |column: &str| -> Result<Option<Value>, StoreError> {
        Ok(row
            .try_get::<Option<String>>(column)?
            .and_then(|text| serde_json::from_str(&text).ok()))
    };
    Ok(AuditRecord {
        id: row.try_get("id")?,
        at: from_millis(row.try_get("at")?)?,
        actor: row.try_get("actor")?,
        actor_user_id: row.try_get("actor_user_id")?,
        actor_via: row.try_get("actor_via")?,
        action: row.try_get("action")?,
        venue_id: row.try_get("venue_id")?,
        subject_type: row.try_get("subject_type")?,
        subject_id: row.try_get("subject_id")?,
        before: json("before")?,
        after: json("after")?,
    })
}

/// The entries `filter` selects, newest first.
///
/// # Errors
/// When the database fails.
pub(super) async fn list(
    conn: &mut Conn<'_>,
    filter: &AuditFilter,
) -> Result<Vec<AuditRecord>, StoreError> {
    let mut conditions = super::sql::Conditions::default();
    conditions.text("actor = $?", &filter.actor);
    if let Some(venue) = filter.venue {
        conditions.int("venue_id = $?", venue);
    }
    if let Some(from) = filter.from {
        conditions.int("at >= $?", from.timestamp_millis());
    }
    if let Some(to) = filter.to {
        conditions.int("at < $?", to.timestamp_millis());
    }
    match &filter.subject {
        // An event's history: what was done to it alone, and the replays of many that
        // re-ran it.
        Some((kind, Some(id))) if kind == Subject::Event(0).kind() => conditions.push_each(
            "((subject_type = $? AND subject_id = $?)
              OR id IN (SELECT audit_id FROM event_replays WHERE event_id = $?))",
            vec![
                Param::Text(Some(kind.clone().into())),
                Param::Int(Some(*id)),
                Param::Int(Some(*id)),
            ],
        ),
        Some((kind, id)) => {
            conditions.text("subject_type = $?", &Some(kind.clone()));
            if let Some(id) = id {
                conditions.int("subject_id = $?", *id);
            }
        }
        None => {}
    }
    // A partner's entries and the replays of its events.
    conditions.text("subject_name = $?", &filter.partner);
    if let Some(before) = filter.before_id {
        conditions.int("id < $?", before);
    }
    if let Some(venues) = &filter.venue_limit {
        conditions.int_in("venue_id", venues);
    }
    if let Some(me) = filter.users_only_self {
        conditions.int(
            "(subject_type <> 'user' OR subject_id = $?)",
            me.unwrap_or(-1),
        );
    }
    let rows = conditions
        .query(
            "SELECT id, at, actor, actor_user_id, actor_via, action, venue_id, subject_type,
                subject_id, before, after FROM audit_log",
            &format!("ORDER BY id DESC LIMIT {}", filter.limit.clamp(1, 500)),
        )
        .fetch_all(conn)
        .await?;
    rows.iter().map(audit_record).collect()
}
