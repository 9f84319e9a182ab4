//! PostgreSQL: the same tables as SQLite with JSONB for JSON and real booleans, embedded
//! migrations (`runner/migrations/postgres`), `DATABASE_URL=postgres://…`. The queries are
//! shared ([`super::sql`]); what is PostgreSQL's own is here: the pool, schemas for tests and
//! replicas sharing a database, and claiming orphaned runs with `FOR UPDATE SKIP LOCKED`.

use std::str::FromStr;
use std::time::Duration;

use sqlx::Postgres;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use super::db::{Db, query};
use super::sql::{SqlStore, insert_event};
use super::{Claimed, Event, EventKind, ORPHAN_STATUS_SQL, StoreError, now};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The PostgreSQL store.
pub type PgStore = SqlStore<Postgres>;

fn checked_schema(schema: &str) -> Result<&str, StoreError> {
    if schema.is_empty() || !schema.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') {
        return Err(StoreError::Corrupt(format!("schema name `{schema}`: use lower-case letters, digits and `_`")));
    }
    Ok(schema)
}

impl SqlStore<Postgres> {
    /// Connects to `postgres://…` and migrates the database.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        Self::open_with(PgConnectOptions::from_str(url)?).await
    }

    /// Connects with `search_path` set to `schema` (created if missing): tests and several
    /// offramp instances can share one database this way.
    pub async fn open_in_schema(url: &str, schema: &str) -> Result<Self, StoreError> {
        let schema = checked_schema(schema)?;
        let opts = PgConnectOptions::from_str(url)?;
        let pool = PgPoolOptions::new().max_connections(1).connect_with(opts.clone()).await?;
        sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {schema}")).execute(&pool).await?;
        pool.close().await;
        Self::open_with(opts.options([("search_path", schema)])).await
    }

    /// Drops a schema made by [`PgStore::open_in_schema`] and everything in it (test clean-up).
    pub async fn drop_schema(url: &str, schema: &str) -> Result<(), StoreError> {
        let schema = checked_schema(schema)?;
        let pool = PgPoolOptions::new().max_connections(1).connect_with(PgConnectOptions::from_str(url)?).await?;
        sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).execute(&pool).await?;
        pool.close().await;
        Ok(())
    }

    async fn open_with(opts: PgConnectOptions) -> Result<Self, StoreError> {
        let pool =
            PgPoolOptions::new().max_connections(8).acquire_timeout(Duration::from_secs(3)).connect_with(opts).await?;
        MIGRATOR.run(&pool).await?;
        Ok(SqlStore::new(Db::Postgres(pool)))
    }
}

/// [`super::Store::claim_orphans`], the work-queue pattern: rows another replica is claiming
/// right now are skipped, not waited for, so replicas scanning at once take disjoint runs.
pub(super) async fn claim_orphans(
    db: &Db,
    owner: &str,
    now_ms: i64,
    until_ms: i64,
    limit: u32,
) -> Result<Vec<Claimed>, StoreError> {
    let at = now();
    let mut tx = db.begin().await?;
    let q = query(format!(
        "WITH orphan AS (
             SELECT id, lease_owner FROM runs
             WHERE {ORPHAN_STATUS_SQL}
               AND (lease_until IS NULL OR lease_until < $2)
             ORDER BY created_at, id LIMIT $4
             FOR UPDATE SKIP LOCKED)
         UPDATE runs SET lease_owner = $1, lease_until = $3 FROM orphan WHERE runs.id = orphan.id
         RETURNING runs.id AS run_id, orphan.lease_owner AS previous_owner"
    ));
    let rows = tx.fetch_all(q.bind(owner).bind(now_ms).bind(until_ms).bind(limit)).await?;
    let mut claimed = Vec::with_capacity(rows.len());
    for row in rows {
        let (run_id, previous_owner): (String, Option<String>) = (row.get("run_id")?, row.get("previous_owner")?);
        let event = Event::new(owner, EventKind::RunClaimed, serde_json::json!({ "previous_owner": previous_owner }));
        tx.execute(insert_event(Some(&run_id), None, &at, &event)).await?;
        claimed.push(Claimed { run_id, previous_owner });
    }
    tx.commit().await?;
    claimed.sort_by(|a, b| a.run_id.cmp(&b.run_id));
    Ok(claimed)
}
