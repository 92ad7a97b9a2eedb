//! Reading admin requests: path ids, JSON bodies and query strings into values, with the
//! answers (400, 413, 422) their mistakes get, and the bounds values are held to.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};

use crate::domain::TableKey;
use crate::domain::command::check_identifier;
use crate::error::ApiError;

/// The JSON answer for something looked up by id, or 404 naming `what`.
pub(super) fn found<T>(value: Option<T>, what: &'static str) -> Result<Json<T>, ApiError> {
    value.map(Json).ok_or(ApiError::NotFound(what))
}

pub(super) fn body<T>(json: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    json.map(|Json(value)| value)
        .map_err(|rejection| match rejection {
            JsonRejection::JsonDataError(e) => ApiError::Unprocessable(e.body_text()),
            // Over the body limit: 413, as for partners, never a truncated read.
            other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                ApiError::TooLarge(other.body_text())
            }
            other => ApiError::BadRequest(other.body_text()),
        })
}

pub(super) fn query<T>(query: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    query
        .map(|Query(value)| value)
        .map_err(|rejection| ApiError::BadRequest(rejection.body_text()))
}

/// A time from a request body, inside the range diarysync works in (`domain::time`).
pub(super) fn valid_time(t: DateTime<Utc>, field: &str) -> Result<DateTime<Utc>, ApiError> {
    crate::domain::time::bounded(t, field).map_err(|e| ApiError::Unprocessable(e.to_string()))
}

/// Table names within the bounds a partner's are held to (`domain::command::check_tables`),
/// as the store will keep them.
pub(super) fn valid_tables(tables: &[String]) -> Result<(), ApiError> {
    let keys: Vec<TableKey> = tables.iter().filter_map(|t| TableKey::parse(t)).collect();
    crate::domain::command::check_tables(&keys, "the booking")
        .map_err(|e| ApiError::Unprocessable(e.to_string()))
}

/// One table name, not blank and within `domain::command::MAX_TABLE_NAME` characters once
/// normalised, for the setting `field`.
pub(super) fn table_name(name: &str, field: &str) -> Result<(), ApiError> {
    let key = TableKey::parse(name)
        .ok_or_else(|| ApiError::Unprocessable(format!("{field}: a table name is blank")))?;
    crate::domain::command::check_tables([&key], field)
        .map_err(|e| ApiError::Unprocessable(e.to_string()))
}

/// A currency as ISO 4217 writes it: three letters, upper-cased.
pub(super) fn valid_currency(currency: Option<String>) -> Result<Option<String>, ApiError> {
    match currency {
        Some(code) if code.len() == 3 && code.bytes().all(|b| b.is_ascii_alphabetic()) => {
            Ok(Some(code.to_ascii_uppercase()))
        }
        Some(_) => Err(ApiError::Unprocessable(
            "currency is an ISO 4217 code of three letters, such as EUR".to_owned(),
        )),
        None => Ok(None),
    }
}

/// An identifier the store indexes (a reference, a location id) within the bytes a
/// partner's are held to (`domain::command::MAX_IDENTIFIER`).
pub(super) fn identifier(value: &str, field: &str) -> Result<(), ApiError> {
    check_identifier(value, field).map_err(|e| ApiError::Unprocessable(e.to_string()))
}

/// A time filter from a query string, inside the same range; a query's mistakes are 400s.
pub(super) fn valid_filter(
    t: Option<DateTime<Utc>>,
    field: &str,
) -> Result<Option<DateTime<Utc>>, ApiError> {
    t.map(|t| crate::domain::time::bounded(t, field))
        .transpose()
        .map_err(|e| ApiError::BadRequest(e.to_string()))
}

/// An `{id}` path segment, or why it is not one.
pub(super) type IdPath = Result<Path<i64>, PathRejection>;

pub(super) fn id(path: IdPath) -> Result<i64, ApiError> {
    path.map(|Path(id)| id)
        .map_err(|_| ApiError::BadRequest("the id in the path must be an integer".to_owned()))
}
