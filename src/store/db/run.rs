//! Running a statement on each engine: SQLite through rusqlite with cached statements and
//! `$n` rewritten to `?n`, PostgreSQL through sqlx; both return owned [`Row`]s.

use std::sync::Arc;

use sqlx::{Column, PgConnection, Row as _, TypeInfo, ValueRef as _};

use super::{Param, Row, Value};
use crate::store::StoreError;

impl rusqlite::ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match self {
            Param::Int(Some(v)) => ValueRef::Integer(*v),
            Param::Text(Some(v)) => ValueRef::Text(v.as_bytes()),
            Param::Bytes(Some(v)) => ValueRef::Blob(v),
            Param::Int(None) | Param::Text(None) | Param::Bytes(None) => ValueRef::Null,
        }))
    }
}

/// What SQLite needs of a statement text, worked out once per text and thread: the text with
/// `$n` rewritten to `?n` (bound by number, no name lookups) and its column names, shared by
/// every row it returns.
struct SqliteShape {
    sql: String,
    columns: Option<Arc<[String]>>,
}

thread_local! {
    static SHAPES: std::cell::RefCell<std::collections::HashMap<String, SqliteShape>> =
        std::cell::RefCell::default();
}

/// `$n` placeholders as SQLite's `?n`. Statements never hold a `$` anywhere else.
fn numbered_placeholders(sql: &str) -> String {
    sql.replace('$', "?")
}

pub(super) fn sqlite_run(
    conn: &rusqlite::Connection,
    sql: &str,
    params: &[Param<'_>],
    want_rows: bool,
) -> Result<(Vec<Row>, u64), StoreError> {
    SHAPES.with(|shapes| {
        let mut shapes = shapes.borrow_mut();
        if !shapes.contains_key(sql) {
            let shape = SqliteShape {
                sql: numbered_placeholders(sql),
                columns: None,
            };
            shapes.insert(sql.to_owned(), shape);
        }
        let shape = shapes
            .get_mut(sql)
            .ok_or_else(|| StoreError::Unsupported("statement cache".to_owned()))?;
        let mut statement = conn.prepare_cached(&shape.sql)?;
        for (index, param) in params.iter().enumerate() {
            statement.raw_bind_parameter(index + 1, param)?;
        }
        if !want_rows {
            let changed = statement.raw_execute()?;
            return Ok((Vec::new(), u64::try_from(changed).unwrap_or(u64::MAX)));
        }
        let columns = Arc::clone(shape.columns.get_or_insert_with(|| {
            statement
                .column_names()
                .into_iter()
                .map(str::to_owned)
                .collect()
        }));
        let width = columns.len();
        let mut rows = statement.raw_query();
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let mut values = Vec::with_capacity(width);
            for index in 0..width {
                use rusqlite::types::ValueRef;
                values.push(match row.get_ref(index)? {
                    ValueRef::Null => Value::Null,
                    ValueRef::Integer(v) => Value::Int(v),
                    ValueRef::Text(v) => Value::Text(String::from_utf8_lossy(v).into_owned()),
                    ValueRef::Blob(v) => Value::Bytes(v.to_vec()),
                    ValueRef::Real(v) => {
                        return Err(StoreError::Corrupt(format!(
                            "a REAL value ({v}) where none is ever written"
                        )));
                    }
                });
            }
            out.push(Row {
                columns: Arc::clone(&columns),
                values,
            });
        }
        Ok((out, 0))
    })
}

pub(super) async fn postgres_batch(conn: &mut PgConnection, sql: &str) -> Result<(), StoreError> {
    sqlx::query(sql).execute(conn).await?;
    Ok(())
}

pub(super) async fn postgres_run(
    conn: &mut PgConnection,
    sql: &str,
    params: &[Param<'_>],
    want_rows: bool,
) -> Result<(Vec<Row>, u64), StoreError> {
    let mut query = sqlx::query(sql);
    for param in params {
        query = match param {
            Param::Int(v) => query.bind(*v),
            Param::Text(v) => query.bind(v.as_deref()),
            Param::Bytes(v) => query.bind(v.as_deref()),
        };
    }
    if !want_rows {
        return Ok((Vec::new(), query.execute(&mut *conn).await?.rows_affected()));
    }
    let rows = query.fetch_all(&mut *conn).await?;
    let Some(first) = rows.first() else {
        return Ok((Vec::new(), 0));
    };
    let columns: Arc<[String]> = first
        .columns()
        .iter()
        .map(|c| c.name().to_owned())
        .collect();
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        let mut values = Vec::with_capacity(columns.len());
        for (index, column) in row.columns().iter().enumerate() {
            let null = row.try_get_raw(index)?.is_null();
            values.push(if null {
                Value::Null
            } else {
                match column.type_info().name() {
                    "INT8" => Value::Int(row.try_get::<i64, _>(index)?),
                    "INT4" => Value::Int(i64::from(row.try_get::<i32, _>(index)?)),
                    "INT2" => Value::Int(i64::from(row.try_get::<i16, _>(index)?)),
                    "BOOL" => Value::Int(i64::from(row.try_get::<bool, _>(index)?)),
                    "BYTEA" => Value::Bytes(row.try_get::<Vec<u8>, _>(index)?),
                    "TEXT" | "VARCHAR" | "NAME" | "BPCHAR" => {
                        Value::Text(row.try_get::<String, _>(index)?)
                    }
                    other => {
                        return Err(StoreError::Corrupt(format!(
                            "column {} has type {other}, which the store never uses",
                            column.name()
                        )));
                    }
                }
            });
        }
        out.push(Row {
            columns: Arc::clone(&columns),
            values,
        });
    }
    Ok((out, 0))
}
