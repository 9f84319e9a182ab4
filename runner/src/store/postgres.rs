//! PostgreSQL implementation of [`Store`]: the same tables as SQLite, JSONB for JSON, embedded
//! migrations (`runner/migrations/postgres`), runtime queries. `DATABASE_URL=postgres://…`.

use std::str::FromStr;
use std::time::Duration;

use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{PgPool, Row};

use super::{
    Approver, Claimed, Event, EventRecord, Guard, Lease, NewRun, ORPHAN_STATUS_SQL, RequestStatus, RunMessage,
    RunRecord, RunRequest, RunStatus, StepChange, StepRecord, StepStatus, Store, StoreError, now,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The PostgreSQL store.
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects to `postgres://…` and migrates the database.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        Self::open_with(PgConnectOptions::from_str(url)?).await
    }

    /// Connects with `search_path` set to `schema` (created if missing): tests and several
    /// offramp instances can share one database this way.
    pub async fn open_in_schema(url: &str, schema: &str) -> Result<Self, StoreError> {
        if schema.is_empty() || !schema.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') {
            return Err(StoreError::Corrupt(format!("schema name `{schema}`: use lower-case letters, digits and `_`")));
        }
        let opts = PgConnectOptions::from_str(url)?;
        let pool = PgPoolOptions::new().max_connections(1).connect_with(opts.clone()).await?;
        sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {schema}")).execute(&pool).await?;
        pool.close().await;
        Self::open_with(opts.options([("search_path", schema)])).await
    }

    /// Drops a schema made by [`PgStore::open_in_schema`] and everything in it (test clean-up).
    pub async fn drop_schema(url: &str, schema: &str) -> Result<(), StoreError> {
        if !schema.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') {
            return Err(StoreError::Corrupt(format!("schema name `{schema}`")));
        }
        let pool = PgPoolOptions::new().max_connections(1).connect_with(PgConnectOptions::from_str(url)?).await?;
        sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).execute(&pool).await?;
        pool.close().await;
        Ok(())
    }

    async fn open_with(opts: PgConnectOptions) -> Result<Self, StoreError> {
        let pool =
            PgPoolOptions::new().max_connections(8).acquire_timeout(Duration::from_secs(3)).connect_with(opts).await?;
        MIGRATOR.run(&pool).await?;
        Ok(PgStore { pool })
    }
}

/// Numbers placeholders: `$1`, `$2`, …
#[derive(Default)]
struct Args(usize);

impl Args {
    fn next(&mut self) -> String {
        self.0 += 1;
        format!("${}", self.0)
    }

    fn list(&mut self, n: usize) -> String {
        (0..n).map(|_| self.next()).collect::<Vec<_>>().join(", ")
    }
}

fn count(v: i64) -> u32 {
    u32::try_from(v).unwrap_or(0)
}

fn run_from_row(row: &PgRow) -> Result<RunRecord, StoreError> {
    Ok(RunRecord {
        id: row.try_get("id")?,
        pipeline_name: row.try_get("pipeline_name")?,
        pipeline_hash: row.try_get("pipeline_hash")?,
        plan: row.try_get("plan")?,
        subject: row.try_get("subject")?,
        inputs: row.try_get("inputs")?,
        requested_by: row.try_get("requested_by")?,
        dry_run: row.try_get("dry_run")?,
        status: RunStatus::from_str(row.try_get::<&str, _>("status")?)?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        finished_at: row.try_get("finished_at")?,
        lease: lease_from_row(row)?,
    })
}

fn lease_from_row(row: &PgRow) -> Result<Option<Lease>, StoreError> {
    let owner: Option<String> = row.try_get("lease_owner")?;
    let until: Option<i64> = row.try_get("lease_until")?;
    Ok(owner.zip(until).map(|(owner, until_ms)| Lease { owner, until_ms }))
}

fn step_from_row(row: &PgRow) -> Result<StepRecord, StoreError> {
    let log: Option<Value> = row.try_get("log")?;
    Ok(StepRecord {
        run_id: row.try_get("run_id")?,
        step_id: row.try_get("step_id")?,
        position: row.try_get("position")?,
        status: StepStatus::from_str(row.try_get::<&str, _>("status")?)?,
        attempts: count(row.try_get("attempts")?),
        pauses: count(row.try_get("pauses")?),
        idempotency_key: row.try_get("idempotency_key")?,
        output: row.try_get("output")?,
        error: row.try_get("error")?,
        resolution: row.try_get("resolution")?,
        note: row.try_get("note")?,
        log: log.and_then(|l| serde_json::from_value(l).ok()).unwrap_or_default(),
        requests: row.try_get::<Option<Value>, _>("requests")?.unwrap_or(Value::Array(vec![])),
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn event_from_row(row: &PgRow) -> Result<EventRecord, StoreError> {
    Ok(EventRecord {
        id: row.try_get("id")?,
        run_id: row.try_get("run_id")?,
        step_id: row.try_get("step_id")?,
        at: row.try_get("at")?,
        actor: row.try_get("actor")?,
        kind: row.try_get("kind")?,
        detail: row.try_get("detail")?,
    })
}

fn request_from_row(row: &PgRow) -> Result<RunRequest, StoreError> {
    let inputs = match row.try_get::<Value, _>("inputs")? {
        Value::Object(m) => m,
        _ => serde_json::Map::new(),
    };
    Ok(RunRequest {
        id: row.try_get("id")?,
        pipeline: row.try_get("pipeline")?,
        pipeline_hash: row.try_get("pipeline_hash")?,
        inputs,
        subject: row.try_get("subject")?,
        requested_by: row.try_get("requested_by")?,
        channel_id: row.try_get("channel_id")?,
        approvals_needed: count(row.try_get("approvals_needed")?),
        allow_self: row.try_get("allow_self")?,
        status: RequestStatus::parse(row.try_get::<&str, _>("status")?)?,
        decided_by: row.try_get("decided_by")?,
        run_id: row.try_get("run_id")?,
        message_channel: row.try_get("message_channel")?,
        message_ts: row.try_get("message_ts")?,
        created_at: row.try_get("created_at")?,
        decided_at: row.try_get("decided_at")?,
    })
}

fn approver_from_row(r: &PgRow) -> Result<Approver, StoreError> {
    Ok(Approver { user_id: r.try_get("user_id")?, added_by: r.try_get("added_by")?, added_at: r.try_get("added_at")? })
}

async fn insert_event(
    conn: &mut sqlx::PgConnection,
    run_id: Option<&str>,
    step_id: Option<&str>,
    at: &str,
    event: &Event,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO events (run_id, step_id, at, actor, kind, detail) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(run_id)
        .bind(step_id)
        .bind(at)
        .bind(&event.actor)
        .bind(&event.kind)
        .bind(&event.detail)
        .execute(conn)
        .await?;
    Ok(())
}

/// With a fence, fails with [`StoreError::LeaseLost`] unless `owner` holds the run's lease, and
/// otherwise touches the run's `updated_at` (the one statement does both, and holds the run's row
/// until the transaction ends, so no claim slips in). Run it first in a transaction. Returns
/// whether it touched the run.
async fn check_fence(
    conn: &mut sqlx::PgConnection,
    run_id: &str,
    fence: Option<&str>,
    at: &str,
) -> Result<bool, StoreError> {
    let Some(owner) = fence else { return Ok(false) };
    let held = sqlx::query("UPDATE runs SET updated_at = $1 WHERE id = $2 AND lease_owner = $3")
        .bind(at)
        .bind(run_id)
        .bind(owner)
        .execute(&mut *conn)
        .await?
        .rows_affected()
        == 1;
    if held { Ok(true) } else { Err(StoreError::LeaseLost(run_id.to_string())) }
}

/// Inserts a run, its `pending` step rows and its creation event.
async fn insert_run(conn: &mut sqlx::PgConnection, run: &NewRun, event: &Event) -> Result<(), StoreError> {
    let at = now();
    sqlx::query(
        "INSERT INTO runs (id, pipeline_name, pipeline_hash, plan, subject, inputs, requested_by, dry_run, status, created_at, updated_at, lease_owner, lease_until)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending', $9, $9, $10, $11)",
    )
    .bind(&run.id)
    .bind(&run.pipeline_name)
    .bind(&run.pipeline_hash)
    .bind(&run.plan)
    .bind(&run.subject)
    .bind(&run.inputs)
    .bind(&run.requested_by)
    .bind(run.dry_run)
    .bind(&at)
    .bind(&run.lease.owner)
    .bind(run.lease.until_ms)
    .execute(&mut *conn)
    .await?;
    for (pos, (step, key)) in run.steps.iter().enumerate() {
        sqlx::query(
            "INSERT INTO step_results (run_id, step_id, position, status, attempts, idempotency_key, updated_at)
             VALUES ($1, $2, $3, 'pending', 0, $4, $5)",
        )
        .bind(&run.id)
        .bind(step)
        .bind(i64::try_from(pos).unwrap_or(i64::MAX))
        .bind(key)
        .bind(&at)
        .execute(&mut *conn)
        .await?;
    }
    insert_event(conn, Some(&run.id), None, &at, event).await
}

#[async_trait::async_trait]
impl Store for PgStore {
    async fn create_run(&self, run: &NewRun, event: Event) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        insert_run(&mut tx, run, &event).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn run(&self, id: &str) -> Result<RunRecord, StoreError> {
        let row = sqlx::query("SELECT * FROM runs WHERE id = $1").bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(run_from_row).transpose()?.ok_or_else(|| StoreError::NotFound(id.to_string()))
    }

    async fn runs(&self, limit: u32) -> Result<Vec<RunRecord>, StoreError> {
        let rows = sqlx::query("SELECT * FROM runs ORDER BY created_at DESC, id DESC LIMIT $1")
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(run_from_row).collect()
    }

    async fn claim_orphans(
        &self,
        owner: &str,
        now_ms: i64,
        until_ms: i64,
        limit: u32,
    ) -> Result<Vec<Claimed>, StoreError> {
        // The work-queue pattern: rows another replica is claiming right now are skipped, not
        // waited for, so replicas scanning at once take disjoint runs.
        let at = now();
        let mut tx = self.pool.begin().await?;
        let rows: Vec<(String, Option<String>)> = sqlx::query_as(&format!(
            "WITH orphan AS (
                 SELECT id, lease_owner FROM runs
                 WHERE {ORPHAN_STATUS_SQL}
                   AND (lease_until IS NULL OR lease_until < $2)
                 ORDER BY created_at, id LIMIT $4
                 FOR UPDATE SKIP LOCKED)
             UPDATE runs SET lease_owner = $1, lease_until = $3 FROM orphan WHERE runs.id = orphan.id
             RETURNING runs.id, orphan.lease_owner"
        ))
        .bind(owner)
        .bind(now_ms)
        .bind(until_ms)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        let mut claimed = Vec::with_capacity(rows.len());
        for (run_id, previous_owner) in rows {
            let event = Event::new(owner, "run_claimed", serde_json::json!({ "previous_owner": previous_owner }));
            insert_event(&mut tx, Some(&run_id), None, &at, &event).await?;
            claimed.push(Claimed { run_id, previous_owner });
        }
        tx.commit().await?;
        claimed.sort_by(|a, b| a.run_id.cmp(&b.run_id));
        Ok(claimed)
    }

    async fn claim_run(&self, run_id: &str, owner: &str, now_ms: i64, until_ms: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE runs SET lease_owner = $2, lease_until = $3 WHERE id = $1 AND status IN ('pending', 'running', 'paused')
               AND (lease_owner IS NULL OR lease_owner = $2 OR lease_until IS NULL OR lease_until < $4)",
        )
        .bind(run_id)
        .bind(owner)
        .bind(until_ms)
        .bind(now_ms)
        .execute(&self.pool)
        .await?
        .rows_affected()
            == 1;
        Ok(done)
    }

    async fn renew_leases(&self, owner: &str, run_ids: &[String], until_ms: i64) -> Result<u64, StoreError> {
        let n = sqlx::query("UPDATE runs SET lease_until = $1 WHERE lease_owner = $2 AND id = ANY($3)")
            .bind(until_ms)
            .bind(owner)
            .bind(run_ids)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(n)
    }

    async fn due_reminders(&self, cutoff: &str, now: &str, limit: u32) -> Result<Vec<RunRecord>, StoreError> {
        let rows = sqlx::query(
            "UPDATE runs SET reminded_at = $1 WHERE id IN (
                 SELECT id FROM runs WHERE status = 'paused' AND updated_at < $2
                   AND (reminded_at IS NULL OR reminded_at < $2) ORDER BY updated_at LIMIT $3
                 FOR UPDATE SKIP LOCKED)
             AND status = 'paused' AND (reminded_at IS NULL OR reminded_at < $2)
             RETURNING *",
        )
        .bind(now)
        .bind(cutoff)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let mut runs = rows.iter().map(run_from_row).collect::<Result<Vec<_>, _>>()?;
        runs.sort_by(|a, b| a.updated_at.cmp(&b.updated_at));
        Ok(runs)
    }

    async fn release_run(&self, run_id: &str, owner: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE runs SET lease_owner = NULL, lease_until = NULL WHERE id = $1 AND lease_owner = $2")
            .bind(run_id)
            .bind(owner)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn steps(&self, run_id: &str) -> Result<Vec<StepRecord>, StoreError> {
        let rows = sqlx::query("SELECT * FROM step_results WHERE run_id = $1 ORDER BY position")
            .bind(run_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(step_from_row).collect()
    }

    async fn events(&self, run_id: &str) -> Result<Vec<EventRecord>, StoreError> {
        let rows = sqlx::query("SELECT * FROM events WHERE run_id = $1 ORDER BY id")
            .bind(run_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(event_from_row).collect()
    }

    async fn recent_events(&self, limit: u32) -> Result<Vec<EventRecord>, StoreError> {
        let rows = sqlx::query("SELECT * FROM events ORDER BY id DESC LIMIT $1")
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(event_from_row).collect()
    }

    async fn set_run_status(
        &self,
        id: &str,
        from: &[RunStatus],
        to: RunStatus,
        fence: Option<&str>,
        event: Event,
    ) -> Result<bool, StoreError> {
        let at = now();
        let mut a = Args::default();
        // A run that stops moving (paused or finished) is nobody's any more.
        let mut sql = format!(
            "UPDATE runs SET status = {}, updated_at = {}, finished_at = CASE WHEN {} THEN {} ELSE finished_at END,
               lease_owner = CASE WHEN {moving} THEN lease_owner END, lease_until = CASE WHEN {moving} THEN lease_until END
             WHERE id = {}",
            a.next(),
            a.next(),
            a.next(),
            a.next(),
            a.next(),
            moving = a.next(),
        );
        if !from.is_empty() {
            sql.push_str(&format!(" AND status IN ({})", a.list(from.len())));
        }
        let moving = matches!(to, RunStatus::Pending | RunStatus::Running);
        let mut q =
            sqlx::query(&sql).bind(to.as_str()).bind(&at).bind(to.is_finished()).bind(&at).bind(id).bind(moving);
        for s in from {
            q = q.bind(s.as_str());
        }
        let mut tx = self.pool.begin().await?;
        check_fence(&mut tx, id, fence, &at).await?;
        let done = q.execute(&mut *tx).await?.rows_affected() == 1;
        if done {
            insert_event(&mut tx, Some(id), None, &at, &event).await?;
        }
        tx.commit().await?;
        Ok(done)
    }

    async fn change_step(
        &self,
        run_id: &str,
        step_id: &str,
        from: &[StepStatus],
        guard: Option<Guard>,
        fence: Option<&str>,
        change: StepChange,
        event: Event,
    ) -> Result<bool, StoreError> {
        let at = now();
        let mut a = Args::default();
        // Every value is bound as text and cast to its column's type.
        let mut sets = vec![format!("updated_at = {}", a.next())];
        let mut binds: Vec<Option<String>> = vec![Some(at.clone())];
        let mut set = |col: &str, cast: &str, v: Option<String>| {
            sets.push(format!("{col} = {}{cast}", a.next()));
            binds.push(v);
        };
        if let Some(s) = change.status {
            set("status", "", Some(s.as_str().to_string()));
        }
        if let Some(n) = change.attempts {
            set("attempts", "::bigint", Some(n.to_string()));
        }
        if let Some(o) = &change.output {
            set("output", "::jsonb", Some(o.to_string()));
        }
        if let Some(e) = change.error {
            set("error", "", e);
        }
        if let Some(r) = change.resolution {
            set("resolution", "", r);
        }
        if let Some(n) = change.note {
            set("note", "", n);
        }
        if let Some(l) = &change.log {
            set("log", "::jsonb", Some(Value::from(l.clone()).to_string()));
        }
        if let Some(r) = &change.requests {
            set("requests", "::jsonb", Some(r.to_string()));
        }
        if change.started {
            set("started_at", "", Some(at.clone()));
            set("finished_at", "", None);
        }
        if change.finished {
            set("finished_at", "", Some(at.clone()));
        }
        if change.paused {
            sets.push("pauses = pauses + 1".into());
        }
        let mut sql = format!(
            "UPDATE step_results SET {} WHERE run_id = {} AND step_id = {}",
            sets.join(", "),
            a.next(),
            a.next()
        );
        if !from.is_empty() {
            sql.push_str(&format!(" AND status IN ({})", a.list(from.len())));
        }
        match guard {
            Some(Guard::Attempt(_)) => sql.push_str(&format!(" AND attempts = {}", a.next())),
            Some(Guard::Pause(_)) => sql.push_str(&format!(" AND pauses = {}", a.next())),
            None => {}
        }
        let mut q = sqlx::query(&sql);
        for b in binds {
            q = q.bind(b);
        }
        q = q.bind(run_id).bind(step_id);
        for s in from {
            q = q.bind(s.as_str());
        }
        if let Some(Guard::Attempt(n) | Guard::Pause(n)) = guard {
            q = q.bind(i64::from(n));
        }
        let mut tx = self.pool.begin().await?;
        let touched = check_fence(&mut tx, run_id, fence, &at).await?;
        let done = q.execute(&mut *tx).await?.rows_affected() == 1;
        if done {
            insert_event(&mut tx, Some(run_id), Some(step_id), &at, &event).await?;
            if !touched {
                sqlx::query("UPDATE runs SET updated_at = $1 WHERE id = $2")
                    .bind(&at)
                    .bind(run_id)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(done)
    }

    async fn append_event(&self, run_id: Option<&str>, step_id: Option<&str>, event: Event) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        insert_event(&mut conn, run_id, step_id, &now(), &event).await
    }

    async fn add_approver(&self, user_id: &str, added_by: &str) -> Result<bool, StoreError> {
        let at = now();
        let mut tx = self.pool.begin().await?;
        let added = sqlx::query(
            "INSERT INTO approvers (user_id, added_by, added_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(user_id)
        .bind(added_by)
        .bind(&at)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if added {
            let event = Event::new(added_by, "approver_added", serde_json::json!({ "user": user_id }));
            insert_event(&mut tx, None, None, &at, &event).await?;
        }
        tx.commit().await?;
        Ok(added)
    }

    async fn remove_approver(&self, user_id: &str, removed_by: &str) -> Result<bool, StoreError> {
        let at = now();
        let mut tx = self.pool.begin().await?;
        let removed = sqlx::query("DELETE FROM approvers WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            == 1;
        if removed {
            let event = Event::new(removed_by, "approver_removed", serde_json::json!({ "user": user_id }));
            insert_event(&mut tx, None, None, &at, &event).await?;
        }
        tx.commit().await?;
        Ok(removed)
    }

    async fn approvers(&self) -> Result<Vec<Approver>, StoreError> {
        let rows = sqlx::query("SELECT * FROM approvers ORDER BY added_at, user_id").fetch_all(&self.pool).await?;
        rows.iter().map(approver_from_row).collect()
    }

    async fn approver(&self, user_id: &str) -> Result<Option<Approver>, StoreError> {
        let row =
            sqlx::query("SELECT * FROM approvers WHERE user_id = $1").bind(user_id).fetch_optional(&self.pool).await?;
        row.as_ref().map(approver_from_row).transpose()
    }

    async fn create_request(&self, req: &RunRequest, event: Event) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO run_requests (id, pipeline, pipeline_hash, inputs, subject, requested_by, channel_id,
                 approvals_needed, allow_self, status, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'pending', $10)",
        )
        .bind(&req.id)
        .bind(&req.pipeline)
        .bind(&req.pipeline_hash)
        .bind(Value::Object(req.inputs.clone()))
        .bind(&req.subject)
        .bind(&req.requested_by)
        .bind(&req.channel_id)
        .bind(i64::from(req.approvals_needed))
        .bind(req.allow_self)
        .bind(&req.created_at)
        .execute(&mut *tx)
        .await?;
        insert_event(&mut tx, None, None, &req.created_at, &event).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn request(&self, id: &str) -> Result<RunRequest, StoreError> {
        let row = sqlx::query("SELECT * FROM run_requests WHERE id = $1").bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(request_from_row).transpose()?.ok_or_else(|| StoreError::NoRequest(id.to_string()))
    }

    async fn approve_request(&self, id: &str, user: &str) -> Result<Option<u32>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let added = sqlx::query(
            "INSERT INTO request_approvals (request_id, user_id, at)
             SELECT id, $1, $2 FROM run_requests WHERE id = $3 AND status = 'pending'
             ON CONFLICT DO NOTHING",
        )
        .bind(user)
        .bind(now())
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !added {
            tx.rollback().await?;
            return Ok(None);
        }
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM request_approvals
             WHERE request_id = $1 AND user_id IN (SELECT user_id FROM approvers)",
        )
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(u32::try_from(n).unwrap_or(u32::MAX)))
    }

    async fn approvals(&self, id: &str) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar("SELECT user_id FROM request_approvals WHERE request_id = $1 ORDER BY at, user_id")
            .bind(id)
            .fetch_all(&self.pool)
            .await?)
    }

    async fn create_run_for_request(
        &self,
        request_id: &str,
        by: &str,
        run: &NewRun,
        event: Event,
    ) -> Result<bool, StoreError> {
        let at = now();
        let mut tx = self.pool.begin().await?;
        let claimed = sqlx::query(
            "UPDATE run_requests SET status = 'started', decided_by = $1, decided_at = $2, run_id = $3
             WHERE id = $4 AND status = 'pending'",
        )
        .bind(by)
        .bind(&at)
        .bind(&run.id)
        .bind(request_id)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !claimed {
            tx.rollback().await?;
            return Ok(false);
        }
        insert_run(&mut tx, run, &event).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn cancel_request(&self, id: &str, by: &str, event: Event) -> Result<bool, StoreError> {
        let at = now();
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE run_requests SET status = 'cancelled', decided_by = $1, decided_at = $2 WHERE id = $3 AND status = 'pending'",
        )
        .bind(by)
        .bind(&at)
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if done {
            insert_event(&mut tx, None, None, &at, &event).await?;
        }
        tx.commit().await?;
        Ok(done)
    }

    async fn set_request_message(&self, id: &str, channel: &str, ts: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE run_requests SET message_channel = $1, message_ts = $2 WHERE id = $3")
            .bind(channel)
            .bind(ts)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn set_run_message(&self, msg: &RunMessage) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO run_messages (run_id, channel, ts, request_id) VALUES ($1, $2, $3, $4)
             ON CONFLICT (run_id) DO UPDATE SET channel = excluded.channel, ts = excluded.ts",
        )
        .bind(&msg.run_id)
        .bind(&msg.channel)
        .bind(&msg.ts)
        .bind(&msg.request_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn run_message(&self, run_id: &str) -> Result<Option<RunMessage>, StoreError> {
        let row =
            sqlx::query("SELECT * FROM run_messages WHERE run_id = $1").bind(run_id).fetch_optional(&self.pool).await?;
        row.map(|r| {
            Ok(RunMessage {
                run_id: r.try_get("run_id")?,
                channel: r.try_get("channel")?,
                ts: r.try_get("ts")?,
                request_id: r.try_get("request_id")?,
            })
        })
        .transpose()
    }

    async fn first_sighting(&self, signature: &str, now_secs: i64, keep_secs: i64) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM seen_signatures WHERE seen_at < $1")
            .bind(now_secs - keep_secs)
            .execute(&mut *tx)
            .await?;
        let first =
            sqlx::query("INSERT INTO seen_signatures (signature, seen_at) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                .bind(signature)
                .bind(now_secs)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                == 1;
        tx.commit().await?;
        Ok(first)
    }
}
