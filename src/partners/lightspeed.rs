//! Lightspeed Restaurant K-Series, "Reservations for Platforms" webhooks.
//!
//! Spec: <https://api-docs.lsk.lightspeed.app/prod/operation/operation-reservationordernotification>
//! and the examples at
//! <https://api-portal.lsk.lightspeed.app/guides/integration-guides/reservations/reservations-example-webhook>.
//!
//! Order notifications (`OPEN`, `UPDATE`, `CLOSE`, `CANCEL`) each carry a full snapshot of one
//! order ("account"), ordered by `updateDate` (epoch ms). Lightspeed sends ids as strings in
//! one place and numbers in another, money as JSON numbers, and optional fields absent or
//! null; the readers in [`super::wire`] absorb all of that. The legacy "Real Time
//! Notification" envelope (numeric ids, `status`, `cancelled`) maps the same way.
//! Integration, onboarding, error and POS-reservation notifications are recognised and, until
//! they are handled, recorded as `unrecognised_model`.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::wire::{id, opt_decimal, opt_i64, opt_id, opt_id_list};
use super::{Delivery, PartnerHandler};
use crate::domain::sale::BookingRef;
use crate::domain::{
    Command, Mapped, Reason, SaleKind, SaleLine, SalePayment, SaleSnapshot, SaleState, SaleTotals,
    TableKey,
};

/// The `lightspeed-kseries` handler.
#[derive(Debug, Clone, Copy, Default)]
pub struct LightspeedKSeries;

impl PartnerHandler for LightspeedKSeries {
    fn map(&self, delivery: Delivery<'_>) -> Mapped {
        map_body(delivery.body)
    }
}

/// The top level of every Lightspeed reservation webhook; only the order kind has `account`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope<'a> {
    notification_type: Option<String>,
    #[serde(borrow)]
    account: Option<&'a RawValue>,
    #[serde(default, deserialize_with = "opt_id")]
    business_location_id: Option<String>,
    #[serde(default, deserialize_with = "opt_id")]
    platform_reservation_id: Option<String>,
    status: Option<String>,
    error_code: Option<String>,
    onboarding_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Account {
    #[serde(deserialize_with = "id")]
    id: String,
    #[serde(default, deserialize_with = "opt_id")]
    business_location_id: Option<String>,
    #[serde(default, deserialize_with = "opt_id")]
    account_number: Option<String>,
    currency_code: Option<String>,
    #[serde(default, deserialize_with = "opt_i64")]
    open_date: Option<i64>,
    #[serde(default, deserialize_with = "opt_i64")]
    close_date: Option<i64>,
    #[serde(default, deserialize_with = "opt_i64")]
    update_date: Option<i64>,
    #[serde(default, deserialize_with = "opt_decimal")]
    paid_amount: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    total_amount: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    gratuity_amount: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    tax_amount: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    pre_tax_amount: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    service_charge: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_i64")]
    cover_count: Option<i64>,
    table_name: Option<String>,
    #[serde(default, deserialize_with = "opt_id")]
    table_number: Option<String>,
    #[serde(default, deserialize_with = "opt_id_list")]
    tables: Option<Vec<String>>,
    #[serde(default, deserialize_with = "opt_id")]
    origin_account_id: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    /// Legacy RTN only.
    cancelled: Option<bool>,
    transaction_lines: Option<Vec<TransactionLine>>,
    payment_lines: Option<Vec<PaymentLine>>,
    external_references: Option<Vec<ExternalReference>>,
    latest_external_references: Option<Vec<ExternalReference>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TransactionLine {
    #[serde(default, deserialize_with = "opt_id")]
    id: Option<String>,
    #[serde(default, deserialize_with = "opt_decimal")]
    amount: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    unit_amount: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    quantity: Option<Decimal>,
    name_override: Option<String>,
    item_description: Option<String>,
    active_tax: Option<ActiveTax>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ActiveTax {
    #[serde(default, deserialize_with = "opt_decimal")]
    rate: Option<Decimal>,
    tax_included: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PaymentLine {
    #[serde(default, deserialize_with = "opt_id")]
    id: Option<String>,
    #[serde(default, deserialize_with = "opt_decimal")]
    amount: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    gratuity_amount: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_i64")]
    date: Option<i64>,
    payment_method: Option<String>,
    payment_method_description: Option<String>,
}

#[derive(Deserialize)]
struct ExternalReference {
    reference: Option<String>,
}

fn ignore(reason: Reason, detail: impl Into<String>) -> Mapped {
    Mapped::Ignore {
        reason,
        detail: detail.into(),
    }
}

/// Maps one Lightspeed webhook body.
pub fn map_body(body: &[u8]) -> Mapped {
    if body.iter().all(u8::is_ascii_whitespace) {
        return ignore(Reason::MalformedPayload, "empty body");
    }
    let envelope: Envelope<'_> = match serde_json::from_slice(body) {
        Ok(envelope) => envelope,
        Err(error) if error.is_data() => {
            return ignore(
                Reason::InvalidPayload,
                format!("not a Lightspeed webhook: {error}"),
            );
        }
        Err(error) => return ignore(Reason::MalformedPayload, format!("not JSON: {error}")),
    };
    let kind = envelope.notification_type.as_deref().unwrap_or_default();
    let state = match kind {
        "OPEN" | "UPDATE" => SaleState::Open,
        "CLOSE" => SaleState::Closed,
        "CANCEL" => SaleState::Voided,
        _ => return unrecognised(&envelope),
    };
    let Some(account) = envelope.account else {
        return ignore(
            Reason::InvalidPayload,
            format!("{kind} notification without an account"),
        );
    };
    let account: Account = match serde_json::from_str(account.get()) {
        Ok(account) => account,
        Err(error) => return ignore(Reason::InvalidPayload, format!("account: {error}")),
    };
    let Some(location_id) = envelope
        .business_location_id
        .clone()
        .or_else(|| account.business_location_id.clone())
    else {
        return ignore(Reason::InvalidPayload, "no businessLocationId");
    };
    match snapshot(account, state, envelope.platform_reservation_id) {
        Ok(sale) => Mapped::Apply {
            location_id,
            commands: vec![Command::UpsertSale(sale)],
        },
        Err(detail) => ignore(Reason::InvalidPayload, detail),
    }
}

/// Names the other Lightspeed webhook kinds, so the operator sees what arrived.
fn unrecognised(envelope: &Envelope<'_>) -> Mapped {
    let what = match (
        envelope.notification_type.as_deref(),
        &envelope.status,
        &envelope.error_code,
        &envelope.onboarding_id,
    ) {
        (Some(kind @ ("ACTIVATED" | "DEACTIVATED")), ..) => {
            format!("integration notification {kind}")
        }
        (Some(kind), ..) => format!("notification type {kind:?}"),
        (None, Some(status), ..) => format!("POS reservation update {status}"),
        (None, None, Some(code), _) => format!("error notification {code}"),
        (None, None, None, Some(_)) => "onboarding notification".to_owned(),
        (None, None, None, None) => "no notificationType".to_owned(),
    };
    ignore(Reason::UnrecognisedModel, what)
}

fn instant(ms: i64, field: &str) -> Result<DateTime<Utc>, String> {
    DateTime::from_timestamp_millis(ms).ok_or_else(|| format!("{field} {ms} is not a valid time"))
}

fn snapshot(
    account: Account,
    mut state: SaleState,
    platform_reservation_id: Option<String>,
) -> Result<SaleSnapshot, String> {
    let opened_ms = account
        .open_date
        .or(account.update_date)
        .ok_or("account has neither openDate nor updateDate")?;
    let version = account
        .update_date
        .or(account.close_date)
        .unwrap_or(opened_ms);
    if account.cancelled == Some(true) {
        state = SaleState::Voided;
    }
    let kind = match account.kind.as_deref() {
        Some("SPLIT") => SaleKind::Split,
        Some("TRANSITORY") => SaleKind::Transfer,
        _ => SaleKind::Sale,
    };
    let zero = Decimal::ZERO;
    let totals = SaleTotals {
        total: account.total_amount.unwrap_or(zero),
        paid: account.paid_amount.unwrap_or(zero),
        tax: account.tax_amount.unwrap_or(zero),
        net: account.pre_tax_amount.unwrap_or_else(|| {
            account.total_amount.unwrap_or(zero) - account.tax_amount.unwrap_or(zero)
        }),
        tip: account.gratuity_amount.unwrap_or(zero),
        service_charge: account.service_charge.unwrap_or(zero),
    };
    let tables = match (&account.tables, &account.table_number, &account.table_name) {
        (Some(tables), ..) if !tables.is_empty() => {
            tables.iter().filter_map(|t| TableKey::parse(t)).collect()
        }
        (_, Some(number), _) => TableKey::parse(number).into_iter().collect(),
        (_, None, Some(name)) => TableKey::parse(name).into_iter().collect(),
        _ => Vec::new(),
    };
    let lines = account
        .transaction_lines
        .unwrap_or_default()
        .into_iter()
        .map(|line| SaleLine {
            external_id: line.id,
            description: line
                .name_override
                .filter(|name| !name.is_empty())
                .or(line.item_description)
                .unwrap_or_default(),
            quantity: line.quantity.unwrap_or(Decimal::ONE),
            unit_amount: line.unit_amount.unwrap_or(zero),
            amount: line.amount.unwrap_or(zero),
            tax_rate: line.active_tax.as_ref().and_then(|tax| tax.rate),
            tax_included: line.active_tax.as_ref().and_then(|tax| tax.tax_included),
        })
        .collect();
    let payments = account
        .payment_lines
        .unwrap_or_default()
        .into_iter()
        .map(|payment| {
            Ok(SalePayment {
                external_id: payment.id,
                method: payment
                    .payment_method_description
                    .or(payment.payment_method),
                amount: payment.amount.unwrap_or(zero),
                tip: payment.gratuity_amount.unwrap_or(zero),
                paid_at: payment
                    .date
                    .map(|ms| instant(ms, "paymentLines.date"))
                    .transpose()?,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let mut booking_refs = Vec::new();
    if let Some(id) = platform_reservation_id {
        booking_refs.push(BookingRef {
            value: id,
            source: "platformReservationId",
        });
    }
    let references = account
        .external_references
        .iter()
        .chain(&account.latest_external_references)
        .flatten()
        .filter_map(|r| {
            r.reference
                .as_deref()
                .and_then(reservation_id_from_reference)
        });
    for value in references {
        if !booking_refs.iter().any(|r| r.value == value) {
            booking_refs.push(BookingRef {
                value,
                source: "externalReferences",
            });
        }
    }
    Ok(SaleSnapshot {
        external_id: account.id,
        number: account.account_number,
        kind,
        origin_external_id: account.origin_account_id,
        state,
        opened_at: instant(opened_ms, "openDate")?,
        closed_at: account
            .close_date
            .map(|ms| instant(ms, "closeDate"))
            .transpose()?,
        version,
        currency: account.currency_code,
        totals,
        covers: account.cover_count,
        tables,
        lines,
        payments,
        booking_refs,
    })
}

/// The reservation id in a POS order's reservation reference.
///
/// The examples read `RN-{businessLocationId}-{platformCode}#{platformReservationId}`; the
/// OpenAPI example is `RN-197568495618-reservation_id_123213126`, so without a `#` the whole
/// remainder after the location is taken.
fn reservation_id_from_reference(reference: &str) -> Option<String> {
    let rest = reference.strip_prefix("RN-")?;
    let (_location, rest) = rest.split_once('-')?;
    let id = rest.rsplit_once('#').map_or(rest, |(_, id)| id);
    (!id.is_empty()).then(|| id.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/tests/fixtures/lightspeed/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {path}: {e}"))
    }

    fn sale_of(body: &[u8]) -> (String, SaleSnapshot) {
        match map_body(body) {
            Mapped::Apply {
                location_id,
                mut commands,
            } => match commands.pop() {
                Some(Command::UpsertSale(sale)) => (location_id, sale),
                other => panic!("expected a sale, got {other:?}"),
            },
            other => panic!("expected commands, got {other:?}"),
        }
    }

    fn money(s: &str) -> Decimal {
        Decimal::from_str(s).expect("decimal literal")
    }

    #[test]
    fn the_regular_reservation_open_maps_to_an_open_sale_with_its_reservation() {
        let (location, sale) = sale_of(&fixture("open_regular_tax_inclusive.json"));
        assert_eq!(location, "41910290874370");
        assert_eq!(sale.external_id, "1560383093473282");
        assert_eq!(sale.number.as_deref(), Some("A90826.1"));
        assert_eq!(sale.state, SaleState::Open);
        assert_eq!(sale.version, 1712245742274);
        assert_eq!(sale.covers, Some(4));
        assert_eq!(sale.currency.as_deref(), Some("GBP"));
        let refs: Vec<_> = sale
            .booking_refs
            .iter()
            .map(|r| (r.value.as_str(), r.source))
            .collect();
        assert_eq!(refs, vec![("224", "platformReservationId")]);
        assert_eq!(sale.tables, vec![TableKey::parse("1").expect("table")]);
    }

    #[test]
    fn the_split_check_example_keeps_every_cent_of_its_lines() {
        let (location, sale) = sale_of(&fixture("open_split_check_original.json"));
        assert_eq!(location, "1340570962231298");
        assert_eq!(sale.lines.len(), 5);
        let sum: Decimal = sale.lines.iter().map(|l| l.amount).sum();
        assert_eq!(sum, money("50.71"));
        assert_eq!(sale.totals.total, money("50.71"));
        assert_eq!(sale.totals.tax + sale.totals.net, money("50.71"));
        assert_eq!(sale.lines[2].quantity, money("2"));
        assert_eq!(sale.lines[2].tax_rate, Some(money("1.2")));
        assert_eq!(sale.tables, vec![TableKey::parse("10").expect("table")]);
        assert!(sale.booking_refs.is_empty());
    }

    #[test]
    fn the_legacy_transfer_close_with_numeric_ids_maps() {
        let (location, sale) = sale_of(&fixture("legacy_rtn_close_transitory.json"));
        assert_eq!(location, "40570261078018");
        assert_eq!(sale.external_id, "379610684457348");
        assert_eq!(sale.kind, SaleKind::Transfer);
        assert_eq!(sale.state, SaleState::Closed);
        assert_eq!(sale.origin_external_id.as_deref(), Some("379610684457338"));
        assert_eq!(sale.totals.tax, money("-1.6667"));
        assert_eq!(sale.payments.len(), 1);
    }

    #[test]
    fn reservation_references_parse_both_published_shapes() {
        assert_eq!(
            reservation_id_from_reference("RN-41910290874370-myApp#224").as_deref(),
            Some("224")
        );
        assert_eq!(
            reservation_id_from_reference("RN-197568495618-reservation_id_123213126").as_deref(),
            Some("reservation_id_123213126")
        );
        assert_eq!(
            reservation_id_from_reference("OO-40570261078018-TESTtfLreaxzh"),
            None
        );
    }

    #[test]
    fn other_lightspeed_webhooks_are_unrecognised_models() {
        for name in [
            "integration_activated.json",
            "onboarding.json",
            "error_notification.json",
            "pos_reservation_seated.json",
        ] {
            let mapped = map_body(&fixture(name));
            assert!(
                matches!(
                    mapped,
                    Mapped::Ignore {
                        reason: Reason::UnrecognisedModel,
                        ..
                    }
                ),
                "{name}: {mapped:?}"
            );
        }
    }

    #[test]
    fn bad_bodies_are_ignored_with_a_reason_never_a_panic() {
        let cases: [(&[u8], Reason); 6] = [
            (b"", Reason::MalformedPayload),
            (b"{\"notificationType\": \"OPEN\"", Reason::MalformedPayload),
            (b"\xff\xfe", Reason::MalformedPayload),
            (b"[1,2]", Reason::InvalidPayload),
            (b"{\"notificationType\": \"OPEN\"}", Reason::InvalidPayload),
            (
                b"{\"notificationType\": \"CLOSE\", \"businessLocationId\": 1, \"account\": {\"id\": \"7\", \"totalAmount\": \"lots\"}}",
                Reason::InvalidPayload,
            ),
        ];
        for (body, expected) in cases {
            match map_body(body) {
                Mapped::Ignore { reason, .. } => {
                    assert_eq!(reason, expected, "{:?}", String::from_utf8_lossy(body))
                }
                other => panic!("expected {expected:?}, got {other:?}"),
            }
        }
    }
}
