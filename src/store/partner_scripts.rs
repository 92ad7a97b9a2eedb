//! Stored partners' scripts: every save is a new numbered version, never an edit of an old
//! one, so what mapped an event (its `handler_version`, the content hash) can always be read
//! again, and going back is saving an old version anew. A script partner runs its newest
//! version. Each save is audited (`partner.script_save`) with the version numbers and
//! hashes, not the text (the versions themselves are the text's history).

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;

use super::StoreError;
use super::audit::{self, Subject};
use super::db::{self, Conn, Row};
use super::sql::from_millis;
use crate::domain::access::Actor;

/// One saved version of a partner's script.
#[derive(Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ScriptVersion {
    /// 1, 2, ... in the order the partner's versions were saved.
    pub number: i64,
    /// The content hash every event it maps records as its `handler_version`.
    pub version: String,
    pub created_at: DateTime<Utc>,
    /// Who saved it, as the audit trail names them.
    pub created_by: String,
    /// The Rhai text; left out of lists.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

impl std::fmt::Debug for ScriptVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScriptVersion")
            .field("number", &self.number)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// A script to save: its text and content hash (checked by the caller: it compiles).
#[derive(Debug, Clone)]
pub struct NewScript {
    pub source: String,
    pub version: String,
}

/// What a save did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Saved {
    /// The version number the partner runs now.
    pub number: i64,
    /// `false` when the text was the newest version's already (nothing saved).
    pub created: bool,
}

const COLUMNS: &str = "number, version, created_at, created_by";

fn version_of(row: &Row, with_source: bool) -> Result<ScriptVersion, StoreError> {
    Ok(ScriptVersion {
        number: row.try_get("number")?,
        version: row.try_get("version")?,
        created_at: from_millis(row.try_get("created_at")?)?,
        created_by: row.try_get("created_by")?,
        source: if with_source {
            Some(row.try_get("source")?)
        } else {
            None
        },
    })
}

/// Every partner's newest script, by partner name.
///
/// # Errors
/// When the database fails.
pub(super) async fn newest(
    conn: &mut Conn<'_>,
) -> Result<std::collections::HashMap<String, ScriptVersion>, StoreError> {
    let rows = db::query(format!(
        "SELECT partner, source, {COLUMNS} FROM partner_scripts s
         WHERE number = (SELECT MAX(number) FROM partner_scripts t WHERE t.partner = s.partner)"
    ))
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| Ok((row.try_get("partner")?, version_of(row, true)?)))
        .collect()
}

/// A partner's versions, newest first, without their text.
///
/// # Errors
/// When the database fails.
pub(super) async fn versions(
    conn: &mut Conn<'_>,
    partner: &str,
) -> Result<Vec<ScriptVersion>, StoreError> {
    let rows = db::query(format!(
        "SELECT {COLUMNS} FROM partner_scripts WHERE partner = $1 ORDER BY number DESC"
    ))
    .bind(partner)
    .fetch_all(conn)
    .await?;
    rows.iter().map(|row| version_of(row, false)).collect()
}

/// One of a partner's versions, with its text.
///
/// # Errors
/// When the database fails.
pub(super) async fn version(
    conn: &mut Conn<'_>,
    partner: &str,
    number: i64,
) -> Result<Option<ScriptVersion>, StoreError> {
    let row = db::query(format!(
        "SELECT source, {COLUMNS} FROM partner_scripts WHERE partner = $1 AND number = $2"
    ))
    .bind(partner)
    .bind(number)
    .fetch_optional(conn)
    .await?;
    row.map(|row| version_of(&row, true)).transpose()
}

/// Saves `script` as the partner's next version, unless it is its newest already. The
/// caller holds the registry's row (every partner write does) and bumps the partner's
/// version when a version was saved, so every node reloads it.
///
/// # Errors
/// When the database fails.
pub(super) async fn insert(
    conn: &mut Conn<'_>,
    partner: &str,
    script: &NewScript,
    by: &Actor,
) -> Result<Saved, StoreError> {
    let newest: Option<(i64, String)> = db::query(
        "SELECT number, version FROM partner_scripts WHERE partner = $1
         ORDER BY number DESC LIMIT 1",
    )
    .bind(partner)
    .fetch_optional(&mut *conn)
    .await?
    .map(|row| Ok::<_, StoreError>((row.try_get("number")?, row.try_get("version")?)))
    .transpose()?;
    if let Some((number, version)) = &newest
        && *version == script.version
    {
        return Ok(Saved {
            number: *number,
            created: false,
        });
    }
    let number = newest.as_ref().map_or(1, |(number, _)| number + 1);
    db::query(
        "INSERT INTO partner_scripts (partner, number, source, version, created_at, created_by)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(partner)
    .bind(number)
    .bind(script.source.as_str())
    .bind(script.version.as_str())
    .bind(Utc::now().timestamp_millis())
    .bind(by.name.as_str())
    .execute(&mut *conn)
    .await?;
    let before = newest.map(|(number, version)| {
        json!({"name": partner, "script": {"number": number, "version": version}})
    });
    let after = json!({"name": partner, "script": {"number": number, "version": script.version}});
    audit::record(
        conn,
        by,
        "partner.script_save",
        None,
        Subject::Partner,
        before,
        Some(after),
    )
    .await?;
    Ok(Saved {
        number,
        created: true,
    })
}
