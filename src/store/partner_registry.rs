//! Partners kept in the database ([`PartnerRegistry`]): their definitions, their sealed
//! secrets with validity windows, and one registry version every write bumps, which every
//! node polls to reload them. Each write is audited (`partner.create`, `partner.change`,
//! `partner.secret_add`, `partner.secret_retire`), never with a secret.

use std::fmt;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::StoreError;
use super::audit::{self, Subject};
use super::db::{self, Conn, Row};
use super::partner_scripts::{self as scripts, NewScript, Saved, ScriptVersion};
use super::sql::from_millis;
use crate::domain::access::Actor;

/// The most secrets a partner holds at once (current, next, and a few in waiting).
pub const MAX_SECRETS: usize = 5;

/// A stored partner with its secrets (still sealed).
#[derive(Clone, PartialEq, Eq)]
pub struct StoredPartner {
    pub name: String,
    /// The keys of a `[[partners]]` table, without the secret.
    pub definition: Value,
    pub enabled: bool,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub secrets: Vec<StoredSecret>,
    /// Its newest saved script, with its text (what a `script` handler runs).
    pub script: Option<ScriptVersion>,
}

impl fmt::Debug for StoredPartner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredPartner")
            .field("name", &self.name)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// One of a partner's secrets: sealed, with its window.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredSecret {
    pub id: i64,
    pub label: String,
    pub sealed: String,
    pub valid_from: Option<DateTime<Utc>>,
    pub valid_until: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

impl fmt::Debug for StoredSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredSecret")
            .field("id", &self.id)
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

impl StoredSecret {
    /// Whether it is valid at `at`: from `valid_from` (inclusive) to `valid_until`
    /// (exclusive), either open.
    pub fn valid_at(&self, at: DateTime<Utc>) -> bool {
        self.valid_from.is_none_or(|from| from <= at)
            && self.valid_until.is_none_or(|until| at < until)
    }
}

/// The first instant from `now` on at which the secret `retired` is valid and none of the
/// partner's other `secrets` is, if any: retiring it would leave the partner without a
/// secret there (a next secret not valid yet, or ending sooner), and every delivery from
/// then on would fail. `None` when the others cover all of its time left.
pub fn left_uncovered(
    secrets: &[StoredSecret],
    retired: i64,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let gone = secrets.iter().find(|s| s.id == retired)?;
    let end = gone.valid_until;
    let mut at = gone.valid_from.map_or(now, |from| from.max(now));
    if end.is_some_and(|end| end <= at) {
        return None;
    }
    let others: Vec<&StoredSecret> = secrets.iter().filter(|s| s.id != retired).collect();
    // Each step moves `at` to the end of a secret valid at it: at most one step per secret.
    for _ in 0..=others.len() {
        let reach = others
            .iter()
            .filter(|s| s.valid_at(at))
            .map(|s| s.valid_until)
            .max_by(|a, b| match (a, b) {
                (None, None) => std::cmp::Ordering::Equal,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (Some(_), None) => std::cmp::Ordering::Less,
                (Some(a), Some(b)) => a.cmp(b),
            });
        match reach {
            None => return Some(at),
            Some(None) => return None,
            Some(Some(until)) => {
                if end.is_some_and(|end| end <= until) {
                    return None;
                }
                at = until;
            }
        }
    }
    Some(at)
}

/// A secret to add: already sealed by the caller.
#[derive(Debug, Clone)]
pub struct NewSecret {
    pub label: String,
    pub sealed: String,
    pub valid_from: Option<DateTime<Utc>>,
    pub valid_until: Option<DateTime<Utc>>,
}

/// Partners in the database.
#[async_trait]
pub trait PartnerRegistry: Send + Sync + fmt::Debug {
    /// The registry's version: it changes with every partner write.
    async fn registry_version(&self) -> Result<i64, StoreError>;
    /// Every stored partner with its live (not retired) secrets, by name.
    async fn stored_partners(&self) -> Result<Vec<StoredPartner>, StoreError>;
    /// # Errors
    /// [`StoreError::Conflict`] when the name is taken.
    async fn create_partner(
        &self,
        name: String,
        definition: Value,
        secret: Option<NewSecret>,
        script: Option<NewScript>,
        by: Actor,
    ) -> Result<(), StoreError>;
    /// Replaces the definition and/or the enabled flag.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] for an unknown partner.
    async fn update_partner(
        &self,
        name: String,
        definition: Option<Value>,
        enabled: Option<bool>,
        by: Actor,
    ) -> Result<(), StoreError>;
    async fn add_secret(
        &self,
        partner: String,
        secret: NewSecret,
        by: Actor,
    ) -> Result<i64, StoreError>;
    /// # Errors
    /// [`StoreError::NotFound`] when the partner has no such live secret;
    /// [`StoreError::Conflict`] when it is the partner's last one.
    async fn retire_secret(&self, partner: String, id: i64, by: Actor) -> Result<(), StoreError>;
    /// Saves `script` as the partner's next version (nothing when it is its newest already);
    /// every node reloads the partner.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] for an unknown partner.
    async fn save_script(
        &self,
        partner: String,
        script: NewScript,
        by: Actor,
    ) -> Result<Saved, StoreError>;
    /// The partner's script versions, newest first, without their text.
    async fn script_versions(&self, partner: String) -> Result<Vec<ScriptVersion>, StoreError>;
    /// One version, with its text.
    async fn script_version(
        &self,
        partner: String,
        number: i64,
    ) -> Result<Option<ScriptVersion>, StoreError>;
}

fn millis(t: Option<i64>) -> Result<Option<DateTime<Utc>>, StoreError> {
    t.map(from_millis).transpose()
}

fn secret_of(row: &Row) -> Result<StoredSecret, StoreError> {
    Ok(StoredSecret {
        id: row.try_get("id")?,
        label: row.try_get("label")?,
        sealed: row.try_get("sealed")?,
        valid_from: millis(row.try_get("valid_from")?)?,
        valid_until: millis(row.try_get("valid_until")?)?,
        created_at: from_millis(row.try_get("created_at")?)?,
    })
}

/// # Errors
/// When the database fails.
pub(super) async fn version(conn: &mut Conn<'_>) -> Result<i64, StoreError> {
    db::query_scalar("SELECT version FROM partner_registry WHERE id = 1")
        .fetch_one(conn)
        .await
}

async fn bump(conn: &mut Conn<'_>) -> Result<i64, StoreError> {
    db::query_scalar(
        "UPDATE partner_registry SET version = version + 1 WHERE id = 1 RETURNING version",
    )
    .fetch_one(conn)
    .await
}

/// # Errors
/// When the database fails.
pub(super) async fn list(conn: &mut Conn<'_>) -> Result<Vec<StoredPartner>, StoreError> {
    let rows = db::query(
        "SELECT name, definition, enabled, version, created_at, updated_at FROM partners
         ORDER BY name",
    )
    .fetch_all(conn)
    .await?;
    let secrets = db::query(
        "SELECT id, partner, label, sealed, valid_from, valid_until, created_at
         FROM partner_secrets WHERE retired_at IS NULL ORDER BY id",
    )
    .fetch_all(conn)
    .await?;
    let mut scripts = scripts::newest(conn).await?;
    let mut partners = Vec::with_capacity(rows.len());
    for row in &rows {
        let name: String = row.try_get("name")?;
        let definition: String = row.try_get("definition")?;
        let mut own = Vec::new();
        for secret in &secrets {
            if secret.try_get::<String>("partner")? == name {
                own.push(secret_of(secret)?);
            }
        }
        let script = scripts.remove(&name);
        partners.push(StoredPartner {
            definition: serde_json::from_str(&definition)
                .map_err(|e| StoreError::Corrupt(format!("partner {name}: {e}")))?,
            name,
            enabled: row.try_get::<i64>("enabled")? != 0,
            version: row.try_get("version")?,
            created_at: from_millis(row.try_get("created_at")?)?,
            updated_at: from_millis(row.try_get("updated_at")?)?,
            secrets: own,
            script,
        });
    }
    Ok(partners)
}

/// What the trail keeps of a partner: its definition, whether it is on, and its secrets'
/// labels and windows, never a secret.
async fn snapshot(conn: &mut Conn<'_>, name: &str) -> Result<Option<Value>, StoreError> {
    let partner = list(conn).await?.into_iter().find(|p| p.name == name);
    Ok(partner.map(|p| {
        json!({
            "definition": p.definition,
            "enabled": p.enabled,
            "secrets": p.secrets.iter().map(|s| json!({
                "id": s.id, "label": s.label, "valid_from": s.valid_from,
                "valid_until": s.valid_until,
            })).collect::<Vec<_>>(),
            "script": p.script.map(|s| json!({"number": s.number, "version": s.version})),
        })
    }))
}

async fn insert_secret(
    conn: &mut Conn<'_>,
    partner: &str,
    secret: &NewSecret,
) -> Result<i64, StoreError> {
    db::query_scalar(
        "INSERT INTO partner_secrets (partner, label, sealed, valid_from, valid_until, created_at)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(partner)
    .bind(secret.label.as_str())
    .bind(secret.sealed.as_str())
    .bind(secret.valid_from.map(|t| t.timestamp_millis()))
    .bind(secret.valid_until.map(|t| t.timestamp_millis()))
    .bind(Utc::now().timestamp_millis())
    .fetch_one(conn)
    .await
}

fn partner_subject() -> Subject {
    Subject::Partner
}

/// # Errors
/// [`StoreError::Conflict`] when the name is taken.
pub(super) async fn create(
    conn: &mut Conn<'_>,
    name: &str,
    definition: &Value,
    secret: Option<&NewSecret>,
    script: Option<&NewScript>,
    by: &Actor,
) -> Result<(), StoreError> {
    // The registry's row first: it serialises every partner write on every node, so two
    // creations of one name, or two retirements of a partner's secrets, never interleave.
    let version = bump(conn).await?;
    let taken = db::query_scalar::<String>("SELECT name FROM partners WHERE name = $1")
        .bind(name)
        .fetch_optional(conn)
        .await?;
    if taken.is_some() {
        return Err(StoreError::Conflict(format!("partner {name} exists")));
    }
    let now = Utc::now().timestamp_millis();
    db::query(
        "INSERT INTO partners (name, definition, enabled, version, created_at, updated_at)
         VALUES ($1, $2, 1, $3, $4, $4)",
    )
    .bind(name)
    .bind(definition.to_string())
    .bind(version)
    .bind(now)
    .execute(conn)
    .await?;
    if let Some(secret) = secret {
        insert_secret(conn, name, secret).await?;
    }
    if let Some(script) = script {
        scripts::insert(conn, name, script, by).await?;
    }
    let after = snapshot(conn, name).await?.map(|mut a| {
        a["name"] = json!(name);
        a
    });
    audit::record(
        conn,
        by,
        "partner.create",
        None,
        partner_subject(),
        None,
        after,
    )
    .await
}

/// # Errors
/// [`StoreError::NotFound`] for an unknown partner.
pub(super) async fn update(
    conn: &mut Conn<'_>,
    name: &str,
    definition: Option<&Value>,
    enabled: Option<bool>,
    by: &Actor,
) -> Result<(), StoreError> {
    let version = bump(conn).await?;
    let before = snapshot(conn, name)
        .await?
        .ok_or(StoreError::NotFound("partner"))?;
    db::query(
        "UPDATE partners SET definition = COALESCE($1, definition),
             enabled = COALESCE($2, enabled), version = $3, updated_at = $4
         WHERE name = $5",
    )
    .bind(definition.map(Value::to_string))
    .bind(enabled.map(i64::from))
    .bind(version)
    .bind(Utc::now().timestamp_millis())
    .bind(name)
    .execute(conn)
    .await?;
    let after = snapshot(conn, name).await?;
    let (mut before, mut after) = (before, after);
    before["name"] = json!(name);
    if let Some(after) = after.as_mut() {
        after["name"] = json!(name);
    }
    audit::record(
        conn,
        by,
        "partner.change",
        None,
        partner_subject(),
        Some(before),
        after,
    )
    .await
}

/// # Errors
/// [`StoreError::NotFound`] for an unknown partner.
pub(super) async fn add_secret(
    conn: &mut Conn<'_>,
    name: &str,
    secret: &NewSecret,
    by: &Actor,
) -> Result<i64, StoreError> {
    bump(conn).await?;
    let before = snapshot(conn, name)
        .await?
        .ok_or(StoreError::NotFound("partner"))?;
    let live = before["secrets"].as_array().cloned().unwrap_or_default();
    if live.iter().any(|s| s["label"] == secret.label.as_str()) {
        return Err(StoreError::Conflict(format!(
            "partner {name} has a secret labelled {:?}: retire it, or give another label",
            secret.label
        )));
    }
    if live.len() >= MAX_SECRETS {
        return Err(StoreError::Conflict(format!(
            "a partner holds at most {MAX_SECRETS} secrets at once: retire one first"
        )));
    }
    let id = insert_secret(conn, name, secret).await?;
    touch(conn, name).await?;
    let after = snapshot(conn, name).await?;
    let mut before = before;
    before["name"] = json!(name);
    audit::record(
        conn,
        by,
        "partner.secret_add",
        None,
        partner_subject(),
        Some(before),
        after,
    )
    .await?;
    Ok(id)
}

async fn touch(conn: &mut Conn<'_>, name: &str) -> Result<(), StoreError> {
    let version = bump(conn).await?;
    db::query("UPDATE partners SET version = $1, updated_at = $2 WHERE name = $3")
        .bind(version)
        .bind(Utc::now().timestamp_millis())
        .bind(name)
        .execute(conn)
        .await?;
    Ok(())
}

/// # Errors
/// [`StoreError::NotFound`] or [`StoreError::Conflict`] (the last secret).
pub(super) async fn retire_secret(
    conn: &mut Conn<'_>,
    name: &str,
    id: i64,
    by: &Actor,
) -> Result<(), StoreError> {
    bump(conn).await?;
    let before = snapshot(conn, name)
        .await?
        .ok_or(StoreError::NotFound("partner"))?;
    let found = before["secrets"]
        .as_array()
        .is_some_and(|secrets| secrets.iter().any(|s| s["id"] == id));
    if !found {
        return Err(StoreError::NotFound("secret"));
    }
    // The others must be valid whenever this one would have been, from now on: a next
    // secret not valid yet, or ending sooner, would leave every delivery in the gap failing.
    let secrets = list(conn)
        .await?
        .into_iter()
        .find(|p| p.name == name)
        .map(|p| p.secrets)
        .unwrap_or_default();
    if let Some(gap) = left_uncovered(&secrets, id, Utc::now()) {
        return Err(StoreError::Conflict(format!(
            "a partner keeps a valid secret at every moment: retiring this one would leave \
             none valid from {}; add the next one (valid by then, for as long) before retiring \
             this one",
            gap.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        )));
    }
    db::query("UPDATE partner_secrets SET retired_at = $1 WHERE id = $2 AND partner = $3")
        .bind(Utc::now().timestamp_millis())
        .bind(id)
        .bind(name)
        .execute(conn)
        .await?;
    touch(conn, name).await?;
    let after = snapshot(conn, name).await?;
    let mut before = before;
    before["name"] = json!(name);
    audit::record(
        conn,
        by,
        "partner.secret_retire",
        None,
        partner_subject(),
        Some(before),
        after,
    )
    .await
}

/// # Errors
/// [`StoreError::NotFound`] for an unknown partner.
pub(super) async fn save_script(
    conn: &mut Conn<'_>,
    name: &str,
    script: &NewScript,
    by: &Actor,
) -> Result<Saved, StoreError> {
    bump(conn).await?;
    let known = db::query_scalar::<String>("SELECT name FROM partners WHERE name = $1")
        .bind(name)
        .fetch_optional(conn)
        .await?;
    if known.is_none() {
        return Err(StoreError::NotFound("partner"));
    }
    let saved = scripts::insert(conn, name, script, by).await?;
    if saved.created {
        touch(conn, name).await?;
    }
    Ok(saved)
}

/// # Errors
/// When the database fails.
pub(super) async fn script_versions(
    conn: &mut Conn<'_>,
    name: &str,
) -> Result<Vec<ScriptVersion>, StoreError> {
    scripts::versions(conn, name).await
}

/// # Errors
/// When the database fails.
pub(super) async fn script_version(
    conn: &mut Conn<'_>,
    name: &str,
    number: i64,
) -> Result<Option<ScriptVersion>, StoreError> {
    scripts::version(conn, name, number).await
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;

    fn secret(id: i64, from: Option<i64>, until: Option<i64>) -> StoredSecret {
        let now = now();
        StoredSecret {
            id,
            label: format!("s{id}"),
            sealed: String::new(),
            valid_from: from.map(|m| now + Duration::minutes(m)),
            valid_until: until.map(|m| now + Duration::minutes(m)),
            created_at: now,
        }
    }

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default()
    }

    #[test]
    fn retiring_a_secret_must_not_leave_a_moment_without_one() {
        let at = |m: i64| Some(now() + Duration::minutes(m));
        // The current secret, forever, and a next one valid only in an hour: a gap now.
        let next_later = [secret(1, None, None), secret(2, Some(60), None)];
        assert_eq!(left_uncovered(&next_later, 1, now()), at(0));
        // A next one that ends in five minutes: a gap from then on.
        let next_ending = [secret(1, None, None), secret(2, None, Some(5))];
        assert_eq!(left_uncovered(&next_ending, 1, now()), at(5));
        // Two that together cover what the retired one did: no gap.
        let chained = [
            secret(1, None, None),
            secret(2, None, Some(30)),
            secret(3, Some(30), None),
        ];
        assert_eq!(left_uncovered(&chained, 1, now()), None);
        // A gap between two: found where it starts.
        let gapped = [
            secret(1, None, None),
            secret(2, None, Some(30)),
            secret(3, Some(40), None),
        ];
        assert_eq!(left_uncovered(&gapped, 1, now()), at(30));
        // The retired one ends in ten minutes, and the next covers that: no gap.
        let handing_over = [secret(1, None, Some(10)), secret(2, Some(-5), None)];
        assert_eq!(left_uncovered(&handing_over, 1, now()), None);
        // An expired or mistaken future secret can always go while the current one stays.
        let expired = [secret(1, None, Some(-1)), secret(2, None, None)];
        assert_eq!(left_uncovered(&expired, 1, now()), None);
        let mistaken = [secret(1, None, None), secret(2, Some(60), None)];
        assert_eq!(left_uncovered(&mistaken, 2, now()), None);
        // The only secret: a gap now.
        assert_eq!(left_uncovered(&[secret(1, None, None)], 1, now()), at(0));
    }
}
