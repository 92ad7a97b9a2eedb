//! Rows a PostgreSQL batch inserts together just before its commit ([`Conn::deferred_inserts`]):
//! one statement for the batch instead of a round trip per row.
//!
//! [`Conn::deferred_inserts`]: crate::store::db::Conn::deferred_inserts

use std::borrow::Cow;

use sqlx::PgConnection;

use crate::store::StoreError;
use crate::store::db::{DeferredInsert, Param};

/// One column's values across rows, typed as PostgreSQL arrays.
enum Column {
    Int(Vec<Option<i64>>),
    Text(Vec<Option<String>>),
    Bytes(Vec<Option<Vec<u8>>>),
}

impl Column {
    fn of(first: &Param<'_>, rows: usize) -> Column {
        match first {
            Param::Int(_) => Column::Int(Vec::with_capacity(rows)),
            Param::Text(_) => Column::Text(Vec::with_capacity(rows)),
            Param::Bytes(_) => Column::Bytes(Vec::with_capacity(rows)),
        }
    }

    fn cast(&self) -> &'static str {
        match self {
            Column::Int(_) => "bigint[]",
            Column::Text(_) => "text[]",
            Column::Bytes(_) => "bytea[]",
        }
    }

    /// Adds a row's value.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] when it is of another type than the column's first (our bug).
    fn push(&mut self, value: Param<'static>) -> Result<(), StoreError> {
        match (self, value) {
            (Column::Int(values), Param::Int(v)) => values.push(v),
            (Column::Text(values), Param::Text(v)) => values.push(v.map(Cow::into_owned)),
            (Column::Bytes(values), Param::Bytes(v)) => values.push(v.map(Cow::into_owned)),
            _ => {
                return Err(StoreError::Corrupt(
                    "a deferred row's value differs in type from its column's".to_owned(),
                ));
            }
        }
        Ok(())
    }
}

/// Inserts `rows`, one statement per run of rows for the same table and columns, each
/// column bound as one array (`INSERT … SELECT * FROM unnest(…)`): the statement's text
/// does not depend on how many rows there are, so it is prepared once per connection.
///
/// # Errors
/// When the database refuses a statement (the batch must then be rolled back whole).
pub(super) async fn insert_all(
    conn: &mut PgConnection,
    rows: Vec<DeferredInsert>,
) -> Result<(), StoreError> {
    let mut rows = rows.into_iter().peekable();
    while let Some(first) = rows.next() {
        let (table, names) = (first.table, first.columns);
        let mut group = vec![first];
        while let Some(next) = rows.next_if(|r| r.table == table && r.columns == names) {
            group.push(next);
        }
        insert_group(conn, table, names, group).await?;
    }
    Ok(())
}

async fn insert_group(
    conn: &mut PgConnection,
    table: &str,
    names: &str,
    group: Vec<DeferredInsert>,
) -> Result<(), StoreError> {
    let Some(first) = group.first() else {
        return Ok(());
    };
    let mut columns: Vec<Column> = first
        .values
        .iter()
        .map(|value| Column::of(value, group.len()))
        .collect();
    for row in group {
        if row.values.len() != columns.len() {
            return Err(StoreError::Corrupt(format!(
                "a deferred row of {table} has {} values for {} columns",
                row.values.len(),
                columns.len()
            )));
        }
        for (column, value) in columns.iter_mut().zip(row.values) {
            column.push(value)?;
        }
    }
    let arrays: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(n, column)| format!("${}::{}", n + 1, column.cast()))
        .collect();
    let sql = format!(
        "INSERT INTO {table} ({names}) SELECT * FROM unnest({})",
        arrays.join(", ")
    );
    let mut query = sqlx::query(&sql);
    for column in columns {
        query = match column {
            Column::Int(values) => query.bind(values),
            Column::Text(values) => query.bind(values),
            Column::Bytes(values) => query.bind(values),
        };
    }
    query.execute(&mut *conn).await?;
    Ok(())
}
