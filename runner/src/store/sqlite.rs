//! SQLite, the default: WAL mode, embedded migrations (`runner/migrations/sqlite`). The queries
//! are shared ([`super::sql`]); what is SQLite's own is here: the pool, and claiming orphaned
//! runs one conditional UPDATE at a time (SQLite has one writer, and no `SKIP LOCKED`).

use std::str::FromStr;
use std::time::Duration;

use sqlx::Sqlite;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use super::db::{Db, query};
use super::sql::{SqlStore, insert_event};
use super::{Claimed, Event, EventKind, ORPHAN_STATUS_SQL, StoreError, now};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// The SQLite store.
pub type SqliteStore = SqlStore<Sqlite>;

impl SqlStore<Sqlite> {
    /// Opens (creating if needed) `sqlite://PATH` or `sqlite::memory:`, and migrates it.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let memory = url.contains(":memory:") || url.contains("mode=memory");
        let opts = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let opts = if memory {
            opts
        } else {
            opts.journal_mode(SqliteJournalMode::Wal).synchronous(SqliteSynchronous::Normal)
        };
        // An in-memory database lives in one connection; keep exactly one.
        let pool = SqlitePoolOptions::new()
            .max_connections(if memory { 1 } else { 4 })
            .min_connections(if memory { 1 } else { 0 })
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(opts)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(SqlStore::new(Db::Sqlite(pool)))
    }
}

/// [`super::Store::claim_orphans`]: each claim is one conditional UPDATE, so of two processes
/// claiming the same run, one changes the row and the other changes nothing.
pub(super) async fn claim_orphans(
    db: &Db,
    owner: &str,
    now_ms: i64,
    until_ms: i64,
    limit: u32,
) -> Result<Vec<Claimed>, StoreError> {
    let q = query(format!(
        "SELECT id, lease_owner FROM runs WHERE {ORPHAN_STATUS_SQL}
           AND (lease_until IS NULL OR lease_until < $1) ORDER BY created_at, id LIMIT $2"
    ));
    let candidates = db.fetch_all(q.bind(now_ms).bind(limit)).await?;
    let mut claimed = Vec::new();
    for row in candidates {
        let (run_id, previous_owner): (String, Option<String>) = (row.get("id")?, row.get("lease_owner")?);
        let at = now();
        let mut tx = db.begin().await?;
        let q = query(format!(
            "UPDATE runs SET lease_owner = $1, lease_until = $2 WHERE id = $3 AND {ORPHAN_STATUS_SQL}
               AND (lease_until IS NULL OR lease_until < $4)"
        ));
        let won = tx.execute(q.bind(owner).bind(until_ms).bind(&run_id).bind(now_ms)).await? == 1;
        if won {
            let event =
                Event::new(owner, EventKind::RunClaimed, serde_json::json!({ "previous_owner": previous_owner }));
            tx.execute(insert_event(Some(&run_id), None, &at, &event)).await?;
            tx.commit().await?;
            claimed.push(Claimed { run_id, previous_owner });
        } else {
            tx.rollback().await?;
        }
    }
    Ok(claimed)
}
