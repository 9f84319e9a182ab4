//! The two databases behind one statement type, so the store's SQL is written once.
//!
//! A [`Query`] is SQL with `$1, $2, …` placeholders (PostgreSQL's spelling, which SQLite
//! accepts as numbered parameters too) and its [`Arg`]s. The only thing the two databases
//! disagree on below the SQL is how JSON travels: JSONB on PostgreSQL, text on SQLite. That is
//! decided here, once, when a query is bound and when a column is read.

use serde_json::Value;
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::sqlite::{SqliteArguments, SqliteRow};
use sqlx::{Decode, PgPool, Postgres, Row as _, Sqlite, SqlitePool, Type};

use super::StoreError;

/// A connection pool to one of the two databases.
#[derive(Clone)]
pub(crate) enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// An open transaction.
pub(crate) enum Tx {
    Sqlite(sqlx::Transaction<'static, Sqlite>),
    Postgres(sqlx::Transaction<'static, Postgres>),
}

/// A value bound to a statement.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Arg<'a> {
    Text(Option<&'a str>),
    Int(i64),
    Bool(bool),
    /// JSONB on PostgreSQL, its text on SQLite.
    Json(Option<&'a Value>),
}

impl<'a> From<&'a str> for Arg<'a> {
    fn from(v: &'a str) -> Self {
        Arg::Text(Some(v))
    }
}

impl<'a> From<&'a String> for Arg<'a> {
    fn from(v: &'a String) -> Self {
        Arg::Text(Some(v))
    }
}

impl<'a> From<Option<&'a str>> for Arg<'a> {
    fn from(v: Option<&'a str>) -> Self {
        Arg::Text(v)
    }
}

impl<'a> From<&'a Option<String>> for Arg<'a> {
    fn from(v: &'a Option<String>) -> Self {
        Arg::Text(v.as_deref())
    }
}

impl From<i64> for Arg<'_> {
    fn from(v: i64) -> Self {
        Arg::Int(v)
    }
}

impl From<u32> for Arg<'_> {
    fn from(v: u32) -> Self {
        Arg::Int(i64::from(v))
    }
}

impl From<bool> for Arg<'_> {
    fn from(v: bool) -> Self {
        Arg::Bool(v)
    }
}

impl<'a> From<&'a Value> for Arg<'a> {
    fn from(v: &'a Value) -> Self {
        Arg::Json(Some(v))
    }
}

impl<'a> From<Option<&'a Value>> for Arg<'a> {
    fn from(v: Option<&'a Value>) -> Self {
        Arg::Json(v)
    }
}

/// A statement and its arguments, for either database.
pub(crate) struct Query<'a> {
    sql: std::borrow::Cow<'a, str>,
    args: Vec<Arg<'a>>,
}

/// A statement: `query("… WHERE id = $1").bind(id)`.
pub(crate) fn query<'a>(sql: impl Into<std::borrow::Cow<'a, str>>) -> Query<'a> {
    Query { sql: sql.into(), args: Vec::new() }
}

impl<'a> Query<'a> {
    pub(crate) fn bind(mut self, arg: impl Into<Arg<'a>>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Binds `arg` and returns its placeholder, for SQL written piece by piece.
    pub(crate) fn arg(&mut self, arg: impl Into<Arg<'a>>) -> String {
        self.args.push(arg.into());
        format!("${}", self.args.len())
    }

    /// Binds each of `args` and returns their placeholders, comma-separated: an `IN (…)` list.
    pub(crate) fn list<A: Into<Arg<'a>>>(&mut self, args: impl IntoIterator<Item = A>) -> String {
        args.into_iter().map(|a| self.arg(a)).collect::<Vec<_>>().join(", ")
    }

    /// The statement's text, once its pieces are placed.
    pub(crate) fn sql(self, sql: impl Into<std::borrow::Cow<'a, str>>) -> Self {
        Query { sql: sql.into(), ..self }
    }

    fn sqlite(&self) -> sqlx::query::Query<'_, Sqlite, SqliteArguments<'_>> {
        let mut q = sqlx::query(&self.sql);
        for arg in &self.args {
            q = match *arg {
                Arg::Text(v) => q.bind(v),
                Arg::Int(v) => q.bind(v),
                Arg::Bool(v) => q.bind(v),
                Arg::Json(v) => q.bind(v.map(Value::to_string)),
            };
        }
        q
    }

    fn postgres(&self) -> sqlx::query::Query<'_, Postgres, PgArguments> {
        let mut q = sqlx::query(&self.sql);
        for arg in &self.args {
            q = match *arg {
                Arg::Text(v) => q.bind(v),
                Arg::Int(v) => q.bind(v),
                Arg::Bool(v) => q.bind(v),
                Arg::Json(v) => q.bind(v.map(sqlx::types::Json)),
            };
        }
        q
    }
}

/// A row from either database.
pub(crate) enum Row {
    Sqlite(SqliteRow),
    Postgres(PgRow),
}

impl Row {
    /// A column of a type both databases decode the same way (text, integers, booleans).
    pub(crate) fn get<T>(&self, col: &str) -> Result<T, StoreError>
    where
        T: for<'r> Decode<'r, Sqlite> + Type<Sqlite> + for<'r> Decode<'r, Postgres> + Type<Postgres>,
    {
        Ok(match self {
            Row::Sqlite(r) => r.try_get(col)?,
            Row::Postgres(r) => r.try_get(col)?,
        })
    }

    /// A count column (`attempts`, `pauses`…), clamped into `u32`.
    pub(crate) fn count(&self, col: &str) -> Result<u32, StoreError> {
        Ok(u32::try_from(self.get::<i64>(col)?).unwrap_or(0))
    }

    /// A JSON column: JSONB on PostgreSQL, text on SQLite.
    pub(crate) fn json(&self, col: &str) -> Result<Option<Value>, StoreError> {
        match self {
            Row::Sqlite(r) => r
                .try_get::<Option<String>, _>(col)?
                .map(|s| serde_json::from_str(&s).map_err(|e| StoreError::Corrupt(format!("{col}: {e}"))))
                .transpose(),
            Row::Postgres(r) => Ok(r.try_get(col)?),
        }
    }
}

impl Db {
    pub(crate) async fn begin(&self) -> Result<Tx, StoreError> {
        Ok(match self {
            Db::Sqlite(p) => Tx::Sqlite(p.begin().await?),
            Db::Postgres(p) => Tx::Postgres(p.begin().await?),
        })
    }

    /// Runs a statement; returns how many rows it changed.
    pub(crate) async fn execute(&self, q: Query<'_>) -> Result<u64, StoreError> {
        Ok(match self {
            Db::Sqlite(p) => q.sqlite().execute(p).await?.rows_affected(),
            Db::Postgres(p) => q.postgres().execute(p).await?.rows_affected(),
        })
    }

    pub(crate) async fn fetch_all(&self, q: Query<'_>) -> Result<Vec<Row>, StoreError> {
        Ok(match self {
            Db::Sqlite(p) => q.sqlite().fetch_all(p).await?.into_iter().map(Row::Sqlite).collect(),
            Db::Postgres(p) => q.postgres().fetch_all(p).await?.into_iter().map(Row::Postgres).collect(),
        })
    }

    pub(crate) async fn fetch_optional(&self, q: Query<'_>) -> Result<Option<Row>, StoreError> {
        Ok(match self {
            Db::Sqlite(p) => q.sqlite().fetch_optional(p).await?.map(Row::Sqlite),
            Db::Postgres(p) => q.postgres().fetch_optional(p).await?.map(Row::Postgres),
        })
    }
}

impl Tx {
    /// Runs a statement; returns how many rows it changed.
    pub(crate) async fn execute(&mut self, q: Query<'_>) -> Result<u64, StoreError> {
        Ok(match self {
            Tx::Sqlite(tx) => q.sqlite().execute(&mut **tx).await?.rows_affected(),
            Tx::Postgres(tx) => q.postgres().execute(&mut **tx).await?.rows_affected(),
        })
    }

    pub(crate) async fn fetch_all(&mut self, q: Query<'_>) -> Result<Vec<Row>, StoreError> {
        Ok(match self {
            Tx::Sqlite(tx) => q.sqlite().fetch_all(&mut **tx).await?.into_iter().map(Row::Sqlite).collect(),
            Tx::Postgres(tx) => q.postgres().fetch_all(&mut **tx).await?.into_iter().map(Row::Postgres).collect(),
        })
    }

    pub(crate) async fn fetch_one(&mut self, q: Query<'_>) -> Result<Row, StoreError> {
        Ok(match self {
            Tx::Sqlite(tx) => Row::Sqlite(q.sqlite().fetch_one(&mut **tx).await?),
            Tx::Postgres(tx) => Row::Postgres(q.postgres().fetch_one(&mut **tx).await?),
        })
    }

    pub(crate) async fn commit(self) -> Result<(), StoreError> {
        match self {
            Tx::Sqlite(tx) => tx.commit().await?,
            Tx::Postgres(tx) => tx.commit().await?,
        }
        Ok(())
    }

    pub(crate) async fn rollback(self) -> Result<(), StoreError> {
        match self {
            Tx::Sqlite(tx) => tx.rollback().await?,
            Tx::Postgres(tx) => tx.rollback().await?,
        }
        Ok(())
    }
}
