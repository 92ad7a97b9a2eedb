//! Field readers shared by partner wire types.
//!
//! Partners send the same id as a string in one place and a number in another, and ids over
//! 2^53 (Lightspeed's `9765040300495493`) do not survive a trip through `f64`; money must keep
//! the payload's own digits. So these readers take the field's raw JSON text and parse that:
//! nothing passes through a float. They need a borrowed input (`serde_json::from_slice`).

use std::str::FromStr;

use rust_decimal::Decimal;
use serde::de::{Deserialize, Deserializer, Error};
use serde_json::value::RawValue;

/// The field's text: `None` for `null`, the unescaped content for a string, the literal for
/// anything else.
fn scalar_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let Some(raw) = <Option<&'de RawValue>>::deserialize(d)? else {
        return Ok(None);
    };
    raw_text(raw.get()).map_err(D::Error::custom)
}

/// [`scalar_text`] of a field's raw JSON.
fn raw_text(text: &str) -> Result<Option<String>, String> {
    match text.as_bytes().first() {
        Some(b'"') => serde_json::from_str::<String>(text)
            .map(Some)
            .map_err(|e| e.to_string()),
        Some(b'-' | b'0'..=b'9') => Ok(Some(text.to_owned())),
        Some(b'n') => Ok(None),
        _ => Err(format!(
            "expected a string or a number, found {}",
            describe(text)
        )),
    }
}

fn describe(text: &str) -> &'static str {
    match text.as_bytes().first() {
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        Some(b't' | b'f') => "a boolean",
        _ => "something else",
    }
}

/// An identifier given as a JSON string or a number, kept as text. A number written with a
/// zero fraction or an exponent (`41910290874370.0`, `4.191029087437e13`, as a client that
/// passed the id through a float writes it) is the integer it stands for, so it still names
/// the location it was configured as.
pub fn opt_id<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let Some(raw) = <Option<&'de RawValue>>::deserialize(d)? else {
        return Ok(None);
    };
    if let Some(whole) = integral_number(raw.get()) {
        return Ok(Some(whole));
    }
    Ok(raw_text(raw.get())
        .map_err(D::Error::custom)?
        .filter(|id| !id.is_empty()))
}

/// A JSON number literal with a fraction or exponent whose value is whole, as its integer
/// digits; `None` for anything else (a string id keeps its own text).
fn integral_number(literal: &str) -> Option<String> {
    let is_number = literal
        .as_bytes()
        .first()
        .is_some_and(|b| matches!(b, b'-' | b'0'..=b'9'));
    if !is_number || !literal.contains(['.', 'e', 'E']) {
        return None;
    }
    let value = parse_decimal(literal)?;
    value
        .fract()
        .is_zero()
        .then(|| value.trunc().normalize().to_string())
}

/// A required identifier; see [`opt_id`].
pub fn id<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    opt_id(d)?.ok_or_else(|| D::Error::custom("missing identifier"))
}

/// An amount given as a JSON number or a numeric string, exactly as written.
pub fn opt_decimal<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Decimal>, D::Error> {
    let Some(text) = scalar_text(d)? else {
        return Ok(None);
    };
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    parse_decimal(text)
        .map(Some)
        .ok_or_else(|| D::Error::custom(format!("not a representable amount: {text:?}")))
}

/// The largest amount a payload may carry, either sign: 10^18 is beyond any real sale in
/// any currency's minor units, and keeps every sum of a body's amounts (a body holds far
/// fewer than 10^10 of them) far inside `Decimal`'s range, so totals never overflow.
const MAX_AMOUNT: i64 = 1_000_000_000_000_000_000;

/// The longest amount literal read: far more digits than `Decimal` holds.
const MAX_AMOUNT_LEN: usize = 64;

/// Parses a decimal literal, in plain or scientific notation, within [`MAX_AMOUNT`].
///
/// Only digits, a sign, a point and an exponent get as far as `rust_decimal`: its parser
/// also accepts `_` separators and recurses once per separator, so an amount of a few
/// thousand underscores overflowed the stack and took the whole process down (found by
/// fuzzing the Lightspeed handler).
pub fn parse_decimal(text: &str) -> Option<Decimal> {
    let plain = |b: &u8| b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.' | b'e' | b'E');
    if text.len() > MAX_AMOUNT_LEN || !text.as_bytes().iter().all(plain) {
        return None;
    }
    Decimal::from_str(text)
        .ok()
        .or_else(|| Decimal::from_scientific(text).ok())
        .filter(|amount| amount.abs() <= Decimal::from(MAX_AMOUNT))
}

/// A whole number (counts, epoch times) given as a JSON integer or a string of digits.
pub fn opt_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let Some(text) = scalar_text(d)? else {
        return Ok(None);
    };
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    text.parse::<i64>()
        .map(Some)
        .map_err(|_| D::Error::custom(format!("not a whole number in range: {text:?}")))
}

/// A list of identifiers, each a string or a number.
pub fn opt_id_list<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    #[derive(serde::Deserialize)]
    struct Id(#[serde(deserialize_with = "opt_id")] Option<String>);
    let ids = <Option<Vec<Id>>>::deserialize(d)?;
    Ok(ids.map(|ids| ids.into_iter().filter_map(|Id(id)| id).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    struct Probe {
        #[serde(default, deserialize_with = "opt_id")]
        id: Option<String>,
        #[serde(default, deserialize_with = "opt_decimal")]
        amount: Option<Decimal>,
        #[serde(default, deserialize_with = "opt_i64")]
        at: Option<i64>,
    }

    fn probe(json: &str) -> Result<Probe, serde_json::Error> {
        serde_json::from_slice(json.as_bytes())
    }

    #[test]
    fn ids_beyond_two_to_the_53_keep_every_digit() {
        let p = probe(r#"{"id": 9765040300495493}"#).expect("parses");
        assert_eq!(p.id.as_deref(), Some("9765040300495493"));
        let p = probe(r#"{"id": "9765040300495493"}"#).expect("parses");
        assert_eq!(p.id.as_deref(), Some("9765040300495493"));
    }

    #[test]
    fn amounts_keep_the_payloads_digits() {
        let p = probe(r#"{"amount": -1.6667}"#).expect("parses");
        assert_eq!(p.amount.map(|d| d.to_string()).as_deref(), Some("-1.6667"));
        let p = probe(r#"{"amount": "48.30"}"#).expect("parses");
        assert_eq!(p.amount.map(|d| d.to_string()).as_deref(), Some("48.30"));
        let p = probe(r#"{"amount": 0.1}"#).expect("parses");
        assert_eq!(p.amount.map(|d| d.to_string()).as_deref(), Some("0.1"));
    }

    #[test]
    fn separators_and_overlong_literals_are_not_amounts() {
        // Each `_` was one level of recursion in rust_decimal's parser: a stack overflow.
        let underscores = format!("1{}", "_".repeat(1_000_000));
        assert_eq!(parse_decimal(&underscores), None);
        assert_eq!(parse_decimal("1_000"), None);
        assert_eq!(parse_decimal(&"9".repeat(65)), None);
        assert_eq!(parse_decimal(" 1"), None, "callers trim");
        assert_eq!(parse_decimal("-12.50"), Decimal::from_str("-12.50").ok());
        assert_eq!(parse_decimal("1.5E+3"), Decimal::from_str("1500").ok());
    }

    #[test]
    fn wrong_types_and_huge_numbers_are_errors_not_panics() {
        assert!(probe(r#"{"amount": {"x": 1}}"#).is_err());
        assert!(probe(r#"{"amount": 1e400}"#).is_err());
        assert!(probe(r#"{"at": 99999999999999999999999}"#).is_err());
        assert!(probe(r#"{"id": [1]}"#).is_err());
        assert!(probe(r#"{"id": true}"#).is_err());
    }

    #[test]
    fn an_id_that_went_through_a_float_is_still_its_integer() {
        for literal in ["41910290874370.0", "4.191029087437e13", "41910290874370"] {
            let p = probe(&format!(r#"{{"id": {literal}}}"#)).expect("parses");
            assert_eq!(p.id.as_deref(), Some("41910290874370"), "{literal}");
        }
        let p = probe(r#"{"id": "2.0"}"#).expect("parses");
        assert_eq!(p.id.as_deref(), Some("2.0"), "a string id keeps its text");
        let p = probe(r#"{"id": 2.5}"#).expect("parses");
        assert_eq!(p.id.as_deref(), Some("2.5"));
    }

    #[test]
    fn nulls_and_absent_fields_are_none() {
        let p = probe(r#"{"id": null, "amount": null}"#).expect("parses");
        assert!(p.id.is_none() && p.amount.is_none() && p.at.is_none());
    }
}
