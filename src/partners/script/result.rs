//! A script's result read into commands: the map `handle(event)` returns (`docs/SCRIPTING.md`),
//! its sales, bookings and payments, with what is wrong said in the event's reason.

use chrono::{DateTime, NaiveDateTime, Utc};
use rhai::{Array, Dynamic, Map};

use super::super::tree::decimal_of;
use super::{MAX_COMMANDS, one_or_many};
use crate::domain::sale::BookingRef;
use crate::domain::{
    BookingStatus, BookingUpdate, Command, Customer, Mapped, Reason, SaleKind, SaleLine,
    SalePayment, SaleSnapshot, SaleState, SaleTotals, TableKey,
};

/// Reads a script's result; see `docs/SCRIPTING.md`. A result that is no result at all is the
/// script's error (`script_error`), too many commands its limit (`script_limit`), and a
/// command it could not build from the payload (a sale without `opened_at`) an invalid
/// payload (`invalid_payload`).
pub(super) fn mapped_of(value: Dynamic) -> Result<Mapped, (Reason, String)> {
    let script = |detail: &str| (Reason::ScriptError, detail.to_owned());
    let map = value
        .try_cast::<Map>()
        .ok_or_else(|| script("handle() must return a map: #{ignore: ...}, #{notice: ...} or #{location: ..., commands: [...]}"))?;
    if let Some(reason) = map.get("ignore") {
        let reason = reason
            .clone()
            .into_string()
            .map_err(|_| script("ignore must be a reason string"))?;
        let detail = text(&map, "detail").unwrap_or_else(|| reason.clone());
        return Ok(match ignore_reason(&reason) {
            Reason::InvalidPayload => Mapped::invalid(detail),
            reason => Mapped::Ignore { reason, detail },
        });
    }
    if let Some(notice) = text(&map, "notice") {
        return Ok(Mapped::Notice { detail: notice });
    }
    let default_location = text(&map, "location");
    let commands = map
        .get("commands")
        .cloned()
        .map(one_or_many)
        .ok_or_else(|| script("a result needs ignore, notice or commands"))?;
    if commands.len() > MAX_COMMANDS {
        return Err((
            Reason::ScriptLimit,
            format!("{} commands; at most {MAX_COMMANDS}", commands.len()),
        ));
    }
    // Commands may name their own location; they are grouped by it, in order of appearance.
    let mut groups: Vec<(String, Vec<Command>)> = Vec::new();
    for (i, command) in commands.into_iter().enumerate() {
        let own = command
            .clone()
            .try_cast::<Map>()
            .and_then(|m| text(&m, "location"));
        let location = own.or_else(|| default_location.clone()).ok_or_else(|| {
            (
                Reason::InvalidPayload,
                format!("command {i}: no location (give one on the result or the command)"),
            )
        })?;
        let command = command_of(command)
            .map_err(|e| (Reason::InvalidPayload, format!("command {i}: {e}")))?;
        match groups.iter_mut().find(|(l, _)| *l == location) {
            Some((_, group)) => group.push(command),
            None => groups.push((location, vec![command])),
        }
    }
    match groups.len() {
        0 => Err(script("no commands")),
        1 => {
            let (location_id, commands) = groups.remove(0);
            Ok(Mapped::Apply {
                location_id,
                commands,
            })
        }
        _ => Ok(Mapped::Batch(groups)),
    }
}

/// The reasons a script may give for ignoring an event.
fn ignore_reason(reason: &str) -> Reason {
    match reason {
        "malformed_payload" => Reason::MalformedPayload,
        "invalid_payload" => Reason::InvalidPayload,
        "unknown_location" => Reason::UnknownLocation,
        _ => Reason::UnrecognisedModel,
    }
}

fn text(map: &Map, key: &str) -> Option<String> {
    let value = map.get(key)?;
    if value.is_unit() {
        return None;
    }
    let text = if value.is_string() {
        value.clone().into_string().ok()?
    } else {
        value.to_string()
    };
    (!text.is_empty()).then_some(text)
}

fn int(map: &Map, key: &str) -> Result<Option<i64>, String> {
    match map.get(key) {
        None => Ok(None),
        Some(v) if v.is_unit() => Ok(None),
        Some(v) => v
            .as_int()
            .ok()
            .or_else(|| text(map, key).and_then(|t| t.trim().parse().ok()))
            .map(Some)
            .ok_or_else(|| format!("{key} must be a whole number")),
    }
}

fn money(map: &Map, key: &str) -> Result<Option<rust_decimal::Decimal>, String> {
    match map.get(key) {
        None => Ok(None),
        Some(v) if v.is_unit() => Ok(None),
        Some(v) => decimal_of(v)
            .map(Some)
            .ok_or_else(|| format!("{key} must be an amount, got {v}")),
    }
}

fn list(map: &Map, key: &str) -> Array {
    map.get(key).cloned().map(one_or_many).unwrap_or_default()
}

/// A time: RFC 3339 with an offset (an instant), `YYYY-MM-DD HH:MM:SS` without one (the
/// venue's wall-clock time), or epoch seconds / milliseconds.
enum Time {
    Instant(DateTime<Utc>),
    WallClock(NaiveDateTime),
}

fn time(map: &Map, key: &str) -> Result<Option<Time>, String> {
    let Some(value) = map.get(key).filter(|v| !v.is_unit()) else {
        return Ok(None);
    };
    let bad = || {
        format!(
            "{key} must be an RFC 3339 time, \"YYYY-MM-DD HH:MM:SS\" or epoch seconds/milliseconds"
        )
    };
    let out_of_range = |e: crate::domain::time::OutOfRange| e.to_string();
    if let Ok(epoch) = value.as_int() {
        let instant = if epoch.unsigned_abs() >= 100_000_000_000 {
            crate::domain::time::from_millis(epoch, key)
        } else {
            crate::domain::time::from_seconds(epoch, key)
        };
        return instant
            .map(|t| Some(Time::Instant(t)))
            .map_err(out_of_range);
    }
    let text = text(map, key).ok_or_else(bad)?;
    if let Ok(instant) = DateTime::parse_from_rfc3339(&text) {
        return crate::domain::time::bounded(instant.with_timezone(&Utc), key)
            .map(|t| Some(Time::Instant(t)))
            .map_err(out_of_range);
    }
    let wall_clock = [
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
    ]
    .iter()
    .find_map(|format| NaiveDateTime::parse_from_str(&text, format).ok())
    .ok_or_else(bad)?;
    crate::domain::time::bounded_naive(wall_clock, key)
        .map(|t| Some(Time::WallClock(t)))
        .map_err(out_of_range)
}

fn command_of(value: Dynamic) -> Result<Command, String> {
    let map = value.try_cast::<Map>().ok_or("must be a map")?;
    let kind =
        text(&map, "type").ok_or("needs a type: sale, booking_status, guest or integration")?;
    match kind.as_str() {
        "sale" => sale_of(&map).map(|sale| Command::UpsertSale(Box::new(sale))),
        "booking_status" => {
            let status = text(&map, "status");
            Ok(Command::UpdateBooking(BookingUpdate {
                reference: text(&map, "reference").ok_or("booking_status needs a reference")?,
                status: match &status {
                    Some(s) => Some(s.parse::<BookingStatus>().map_err(|e| e.to_string())?),
                    None => None,
                },
                partner_status: text(&map, "partner_status").or(status).unwrap_or_default(),
                tables: map.contains_key("tables").then(|| {
                    list(&map, "tables")
                        .iter()
                        .filter_map(|t| TableKey::parse(&t.to_string()))
                        .collect()
                }),
                covers: int(&map, "covers")?,
            }))
        }
        "guest" => Ok(Command::UpsertGuest(Customer {
            name: text(&map, "name"),
            email: text(&map, "email"),
            phone: text(&map, "phone"),
        })),
        "integration" => Ok(Command::SetIntegration {
            enabled: map
                .get("enabled")
                .and_then(|v| v.as_bool().ok())
                .ok_or("integration needs enabled: true or false")?,
        }),
        other => Err(format!("unknown command type {other:?}")),
    }
}

fn sale_of(map: &Map) -> Result<SaleSnapshot, String> {
    let mut wall_clock = None;
    let mut instant = |key: &str, time: Time| -> Result<DateTime<Utc>, String> {
        let (t, local) = match time {
            Time::Instant(t) => (t, false),
            Time::WallClock(t) => (t.and_utc(), true),
        };
        match wall_clock.replace(local) {
            Some(previous) if previous != local => Err(format!(
                "{key}: give every time of a sale with an offset, or none of them"
            )),
            _ => Ok(t),
        }
    };
    let opened_at = time(map, "opened_at")?.ok_or("a sale needs opened_at")?;
    let opened_at = instant("opened_at", opened_at)?;
    let closed_at = time(map, "closed_at")?
        .map(|t| instant("closed_at", t))
        .transpose()?;
    let state = match text(map, "state").as_deref() {
        None => SaleState::Closed,
        Some(state) => SaleState::parse(state)
            .ok_or_else(|| format!("state {state:?}: expected open, closed or voided"))?,
    };
    let kind = match text(map, "kind").as_deref() {
        None => SaleKind::Sale,
        Some(kind) => SaleKind::parse(kind)
            .ok_or_else(|| format!("kind {kind:?}: expected sale, split, transfer or refund"))?,
    };
    let zero = rust_decimal::Decimal::ZERO;
    let total = money(map, "total")?.ok_or("a sale needs a total")?;
    let tax = money(map, "tax")?.unwrap_or(zero);
    let mut lines = Vec::new();
    for line in list(map, "lines") {
        let line = line.try_cast::<Map>().ok_or("each line must be a map")?;
        let quantity = money(&line, "quantity")?.unwrap_or(rust_decimal::Decimal::ONE);
        let unit_amount = money(&line, "unit_amount")?;
        // Some layouts give only the unit price: the line is that many of it.
        let amount = match (money(&line, "amount")?, unit_amount) {
            (Some(amount), _) => amount,
            (None, Some(unit)) => unit
                .checked_mul(quantity)
                .ok_or("a line's unit_amount times its quantity is out of range")?,
            (None, None) => return Err("a line needs an amount or a unit_amount".into()),
        };
        lines.push(SaleLine {
            external_id: text(&line, "id"),
            description: text(&line, "description").unwrap_or_default(),
            quantity,
            unit_amount: unit_amount.unwrap_or(amount),
            amount,
            tax_rate: money(&line, "tax_rate")?,
            tax_included: line.get("tax_included").and_then(|v| v.as_bool().ok()),
        });
    }
    let mut payments = Vec::new();
    for payment in list(map, "payments") {
        let payment = payment
            .try_cast::<Map>()
            .ok_or("each payment must be a map")?;
        let paid_at = time(&payment, "paid_at")?
            .map(|t| instant("paid_at", t))
            .transpose()?;
        payments.push(SalePayment {
            external_id: text(&payment, "id"),
            method: text(&payment, "method"),
            amount: money(&payment, "amount")?.ok_or("a payment needs an amount")?,
            tip: money(&payment, "tip")?.unwrap_or(zero),
            paid_at,
        });
    }
    let updated_at = time(map, "updated_at")?
        .map(|t| instant("updated_at", t))
        .transpose()?;
    let version = match map.get("version").filter(|v| !v.is_unit()) {
        None => closed_at.unwrap_or(opened_at).timestamp_millis(),
        Some(v) if v.is_int() => int(map, "version")?.unwrap_or_default(),
        Some(_) => match time(map, "version")? {
            Some(Time::Instant(t)) => t.timestamp_millis(),
            Some(Time::WallClock(t)) => t.and_utc().timestamp_millis(),
            None => closed_at.unwrap_or(opened_at).timestamp_millis(),
        },
    };
    Ok(SaleSnapshot {
        updated_at,
        guest_name: crate::domain::GuestName::of(text(map, "guest").as_deref()),
        external_id: text(map, "id").ok_or("a sale needs an id")?,
        number: text(map, "number"),
        kind,
        origin_external_id: text(map, "origin"),
        state,
        opened_at,
        closed_at,
        version,
        currency: text(map, "currency"),
        totals: SaleTotals {
            total,
            paid: money(map, "paid")?.unwrap_or(if state == SaleState::Closed {
                total
            } else {
                zero
            }),
            tax,
            net: money(map, "net")?.unwrap_or(total - tax),
            tip: money(map, "tip")?.unwrap_or(zero),
            service_charge: money(map, "service_charge")?.unwrap_or(zero),
            discount: money(map, "discount")?.unwrap_or(zero),
            deposit: money(map, "deposit")?.unwrap_or(zero),
        },
        covers: int(map, "covers")?,
        tables: list(map, "tables")
            .iter()
            .filter_map(|t| TableKey::parse(&t.to_string()))
            .collect(),
        lines,
        payments,
        booking_refs: list(map, "booking_refs")
            .iter()
            .map(|r| BookingRef {
                value: r.to_string(),
                source: "script".to_owned(),
            })
            .collect(),
        wall_clock: wall_clock.unwrap_or(false),
    })
}
