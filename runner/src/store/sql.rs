//! [`Store`] in SQL, written once for SQLite and PostgreSQL ([`super::db`] binds it to either).
//! What differs lives with its database: opening the pool, and claiming orphaned runs
//! (`sqlite.rs`, `postgres.rs`).

use std::marker::PhantomData;
use std::str::FromStr;

use serde_json::Value;

use super::db::{Db, Query, Row, Tx, query};
use super::{
    Approver, BatchRecord, Claimed, Event, EventKind, EventRecord, Guard, Lease, NewBatch, NewRun, RequestStatus,
    Resolution, RunMessage, RunRecord, RunRequest, RunStatus, StepChange, StepRecord, StepStatus, Store, StoreError,
    now,
};

/// The results table in a SQL database: [`super::SqliteStore`] or [`super::PgStore`]. `D` (sqlx's
/// database type) only names which; every query is shared.
pub struct SqlStore<D> {
    pub(super) db: Db,
    database: PhantomData<fn() -> D>,
}

impl<D> Clone for SqlStore<D> {
    fn clone(&self) -> Self {
        SqlStore { db: self.db.clone(), database: PhantomData }
    }
}

impl<D> SqlStore<D> {
    pub(super) fn new(db: Db) -> Self {
        SqlStore { db, database: PhantomData }
    }
}

/// How many ids one `IN (…)` list takes.
const CHUNK: usize = 500;

fn run_from_row(row: &Row) -> Result<RunRecord, StoreError> {
    let owner: Option<String> = row.get("lease_owner")?;
    let until: Option<i64> = row.get("lease_until")?;
    Ok(RunRecord {
        id: row.get("id")?,
        pipeline_name: row.get("pipeline_name")?,
        pipeline_hash: row.get("pipeline_hash")?,
        plan: row.json("plan")?.unwrap_or_default(),
        subject: row.get("subject")?,
        inputs: row.json("inputs")?.unwrap_or_default(),
        requested_by: row.get("requested_by")?,
        dry_run: row.get("dry_run")?,
        status: RunStatus::from_str(&row.get::<String>("status")?)?,
        created_at: row.get("created_at")?,
        updated_at: row.get("updated_at")?,
        finished_at: row.get("finished_at")?,
        lease: owner.zip(until).map(|(owner, until_ms)| Lease { owner, until_ms }),
        batch_id: row.get("batch_id")?,
    })
}

fn step_from_row(row: &Row) -> Result<StepRecord, StoreError> {
    Ok(StepRecord {
        run_id: row.get("run_id")?,
        step_id: row.get("step_id")?,
        position: row.get("position")?,
        status: StepStatus::from_str(&row.get::<String>("status")?)?,
        attempts: row.count("attempts")?,
        pauses: row.count("pauses")?,
        idempotency_key: row.get("idempotency_key")?,
        output: row.json("output")?,
        error: row.get("error")?,
        resolution: resolution(row)?,
        note: row.get("note")?,
        log: row.json("log")?.and_then(|l| serde_json::from_value(l).ok()).unwrap_or_default(),
        requests: row.json("requests")?.unwrap_or(Value::Array(vec![])),
        started_at: row.get("started_at")?,
        finished_at: row.get("finished_at")?,
        updated_at: row.get("updated_at")?,
    })
}

/// A step's resolution. One this version does not know (written by a newer replica sharing the
/// database) reads as none rather than making the run unreadable.
fn resolution(row: &Row) -> Result<Option<Resolution>, StoreError> {
    let Some(text) = row.get::<Option<String>>("resolution")? else { return Ok(None) };
    match Resolution::from_str(&text) {
        Ok(r) => Ok(Some(r)),
        Err(e) => {
            tracing::warn!(target: "offramp::store", error = %e, "unknown step resolution read as none");
            Ok(None)
        }
    }
}

fn event_from_row(row: &Row) -> Result<EventRecord, StoreError> {
    Ok(EventRecord {
        id: row.get("id")?,
        run_id: row.get("run_id")?,
        step_id: row.get("step_id")?,
        at: row.get("at")?,
        actor: row.get("actor")?,
        kind: EventKind::from(row.get::<String>("kind")?),
        detail: row.json("detail")?.unwrap_or_default(),
    })
}

fn request_from_row(row: &Row) -> Result<RunRequest, StoreError> {
    let inputs = match row.json("inputs")? {
        Some(Value::Object(m)) => m,
        _ => serde_json::Map::new(),
    };
    Ok(RunRequest {
        id: row.get("id")?,
        pipeline: row.get("pipeline")?,
        pipeline_hash: row.get("pipeline_hash")?,
        inputs,
        subject: row.get("subject")?,
        requested_by: row.get("requested_by")?,
        channel_id: row.get("channel_id")?,
        approvals_needed: row.count("approvals_needed")?,
        allow_self: row.get("allow_self")?,
        status: RequestStatus::parse(&row.get::<String>("status")?)?,
        decided_by: row.get("decided_by")?,
        run_id: row.get("run_id")?,
        message_channel: row.get("message_channel")?,
        message_ts: row.get("message_ts")?,
        created_at: row.get("created_at")?,
        decided_at: row.get("decided_at")?,
        batch: match row.json("batch")? {
            Some(v) => serde_json::from_value(v).map_err(|e| StoreError::Corrupt(format!("batch: {e}")))?,
            None => vec![],
        },
        batch_id: row.get("batch_id")?,
    })
}

fn approver_from_row(row: &Row) -> Result<Approver, StoreError> {
    Ok(Approver { user_id: row.get("user_id")?, added_by: row.get("added_by")?, added_at: row.get("added_at")? })
}

fn message_from_row(row: &Row) -> Result<RunMessage, StoreError> {
    Ok(RunMessage {
        run_id: row.get("run_id")?,
        channel: row.get("channel")?,
        ts: row.get("ts")?,
        request_id: row.get("request_id")?,
    })
}

/// Marks a pending request started by `by`, naming the run or the batch it makes; false if it
/// was not pending any more (another Start won).
async fn claim_request(
    tx: &mut Tx,
    request_id: &str,
    by: &str,
    at: &str,
    run_id: Option<&str>,
    batch_id: Option<&str>,
) -> Result<bool, StoreError> {
    let q = query(
        "UPDATE run_requests SET status = 'started', decided_by = $1, decided_at = $2, run_id = $3, batch_id = $4
         WHERE id = $5 AND status = 'pending'",
    );
    Ok(tx.execute(q.bind(by).bind(at).bind(run_id).bind(batch_id).bind(request_id)).await? == 1)
}

fn insert_batch<'a>(batch: &'a NewBatch, at: &'a str) -> Query<'a> {
    query(
        "INSERT INTO batches (id, pipeline_name, requested_by, approved_by, size, created_at, request_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&batch.id)
    .bind(&batch.pipeline_name)
    .bind(&batch.requested_by)
    .bind(batch.approved_by.as_deref())
    .bind(i64::from(batch.size))
    .bind(at)
    .bind(batch.request_id.as_deref())
}

/// Appends `event` to the event log.
pub(super) fn insert_event<'a>(
    run_id: Option<&'a str>,
    step_id: Option<&'a str>,
    at: &'a str,
    event: &'a Event,
) -> Query<'a> {
    query("INSERT INTO events (run_id, step_id, at, actor, kind, detail) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(run_id)
        .bind(step_id)
        .bind(at)
        .bind(&event.actor)
        .bind(event.kind.as_str())
        .bind(&event.detail)
}

/// Inserts a run, its `pending` step rows and its creation event.
async fn insert_run(tx: &mut Tx, run: &NewRun, event: &Event) -> Result<(), StoreError> {
    let at = now();
    tx.execute(
        query(
            "INSERT INTO runs (id, pipeline_name, pipeline_hash, plan, subject, inputs, requested_by, dry_run, status,
                 created_at, updated_at, lease_owner, lease_until, batch_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending', $9, $9, $10, $11, $12)",
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
        .bind(run.batch_id.as_deref()),
    )
    .await?;
    for (pos, (step, key)) in run.steps.iter().enumerate() {
        tx.execute(
            query(
                "INSERT INTO step_results (run_id, step_id, position, status, attempts, idempotency_key, updated_at)
                 VALUES ($1, $2, $3, 'pending', 0, $4, $5)",
            )
            .bind(&run.id)
            .bind(step)
            .bind(i64::try_from(pos).unwrap_or(i64::MAX))
            .bind(key)
            .bind(&at),
        )
        .await?;
    }
    tx.execute(insert_event(Some(&run.id), None, &at, event)).await?;
    Ok(())
}

/// With a fence, fails with [`StoreError::LeaseLost`] unless `owner` holds the run's lease, and
/// otherwise touches the run's `updated_at` (the one statement does both, and holds the run's row
/// until the transaction ends, so no claim slips in). Run it first in a transaction. Returns
/// whether it touched the run.
async fn check_fence(tx: &mut Tx, run_id: &str, fence: Option<&str>, at: &str) -> Result<bool, StoreError> {
    let Some(owner) = fence else { return Ok(false) };
    let held = tx
        .execute(
            query("UPDATE runs SET updated_at = $1 WHERE id = $2 AND lease_owner = $3")
                .bind(at)
                .bind(run_id)
                .bind(owner),
        )
        .await?
        == 1;
    if held { Ok(true) } else { Err(StoreError::LeaseLost(run_id.to_string())) }
}

#[async_trait::async_trait]
impl<D: sqlx::Database> Store for SqlStore<D> {
    async fn create_run(&self, run: &NewRun, event: Event) -> Result<(), StoreError> {
        let mut tx = self.db.begin().await?;
        insert_run(&mut tx, run, &event).await?;
        tx.commit().await
    }

    async fn run(&self, id: &str) -> Result<RunRecord, StoreError> {
        let row = self.db.fetch_optional(query("SELECT * FROM runs WHERE id = $1").bind(id)).await?;
        row.as_ref().map(run_from_row).transpose()?.ok_or_else(|| StoreError::NotFound(id.to_string()))
    }

    async fn runs(&self, limit: u32) -> Result<Vec<RunRecord>, StoreError> {
        let rows = self
            .db
            .fetch_all(query("SELECT * FROM runs ORDER BY created_at DESC, id DESC LIMIT $1").bind(limit))
            .await?;
        rows.iter().map(run_from_row).collect()
    }

    async fn create_batch(&self, batch: &NewBatch) -> Result<(), StoreError> {
        self.db.execute(insert_batch(batch, &now())).await?;
        Ok(())
    }

    async fn batch(&self, id: &str) -> Result<BatchRecord, StoreError> {
        let row = self.db.fetch_optional(query("SELECT * FROM batches WHERE id = $1").bind(id)).await?;
        let Some(row) = row else { return Err(StoreError::NotFound(id.to_string())) };
        Ok(BatchRecord {
            id: row.get("id")?,
            pipeline_name: row.get("pipeline_name")?,
            requested_by: row.get("requested_by")?,
            approved_by: row.get("approved_by")?,
            size: row.count("size")?,
            created_at: row.get("created_at")?,
            request_id: row.get("request_id")?,
            message_channel: row.get("message_channel")?,
            message_ts: row.get("message_ts")?,
        })
    }

    async fn batch_runs(&self, id: &str) -> Result<Vec<RunRecord>, StoreError> {
        // Without the plans: a batch of a thousand would read a thousand copies of one pipeline.
        let rows = self
            .db
            .fetch_all(
                query(
                    "SELECT id, pipeline_name, pipeline_hash, NULL AS plan, subject, inputs, requested_by, dry_run,
                         status, created_at, updated_at, finished_at, lease_owner, lease_until, batch_id
                     FROM runs WHERE batch_id = $1 ORDER BY created_at, id",
                )
                .bind(id),
            )
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
        match &self.db {
            Db::Sqlite(_) => super::sqlite::claim_orphans(&self.db, owner, now_ms, until_ms, limit).await,
            Db::Postgres(_) => super::postgres::claim_orphans(&self.db, owner, now_ms, until_ms, limit).await,
        }
    }

    async fn claim_run(&self, run_id: &str, owner: &str, now_ms: i64, until_ms: i64) -> Result<bool, StoreError> {
        let q = query(
            "UPDATE runs SET lease_owner = $2, lease_until = $3 WHERE id = $1 AND status IN ('pending', 'running', 'paused')
               AND (lease_owner IS NULL OR lease_owner = $2 OR lease_until IS NULL OR lease_until < $4)",
        )
        .bind(run_id)
        .bind(owner)
        .bind(until_ms)
        .bind(now_ms);
        Ok(self.db.execute(q).await? == 1)
    }

    async fn renew_leases(&self, owner: &str, run_ids: &[String], until_ms: i64) -> Result<u64, StoreError> {
        let mut renewed = 0;
        for ids in run_ids.chunks(CHUNK) {
            let mut q = query("").bind(until_ms).bind(owner);
            let sql = format!("UPDATE runs SET lease_until = $1 WHERE lease_owner = $2 AND id IN ({})", q.list(ids));
            renewed += self.db.execute(q.sql(sql)).await?;
        }
        Ok(renewed)
    }

    async fn busy_owners(&self, owner: &str, now_ms: i64) -> Result<u32, StoreError> {
        let q = query(
            "SELECT COUNT(DISTINCT lease_owner) AS n FROM runs
             WHERE lease_owner IS NOT NULL AND lease_owner <> $1 AND lease_until > $2 AND status IN ('pending', 'running')",
        );
        let rows = self.db.fetch_all(q.bind(owner).bind(now_ms)).await?;
        rows.first().map_or(Ok(0), |r| r.count("n"))
    }

    async fn due_reminders(&self, cutoff: &str, now: &str, limit: u32) -> Result<Vec<RunRecord>, StoreError> {
        // PostgreSQL: rows another replica is reminding right now are skipped, not waited for.
        let skip_locked = if matches!(self.db, Db::Postgres(_)) { "FOR UPDATE SKIP LOCKED" } else { "" };
        let sql = format!(
            "UPDATE runs SET reminded_at = $1 WHERE id IN (
                 SELECT id FROM runs WHERE status = 'paused' AND updated_at < $2
                   AND (reminded_at IS NULL OR reminded_at < $2) ORDER BY updated_at LIMIT $3 {skip_locked})
             AND status = 'paused' AND (reminded_at IS NULL OR reminded_at < $2)
             RETURNING *"
        );
        let rows = self.db.fetch_all(query(sql).bind(now).bind(cutoff).bind(limit)).await?;
        let mut runs = rows.iter().map(run_from_row).collect::<Result<Vec<_>, _>>()?;
        runs.sort_by(|a, b| a.updated_at.cmp(&b.updated_at));
        Ok(runs)
    }

    async fn release_run(&self, run_id: &str, owner: &str) -> Result<(), StoreError> {
        let q = query("UPDATE runs SET lease_owner = NULL, lease_until = NULL WHERE id = $1 AND lease_owner = $2");
        self.db.execute(q.bind(run_id).bind(owner)).await?;
        Ok(())
    }

    async fn steps(&self, run_id: &str) -> Result<Vec<StepRecord>, StoreError> {
        let q = query("SELECT * FROM step_results WHERE run_id = $1 ORDER BY position").bind(run_id);
        self.db.fetch_all(q).await?.iter().map(step_from_row).collect()
    }

    async fn events(&self, run_id: &str) -> Result<Vec<EventRecord>, StoreError> {
        let q = query("SELECT * FROM events WHERE run_id = $1 ORDER BY id").bind(run_id);
        self.db.fetch_all(q).await?.iter().map(event_from_row).collect()
    }

    async fn recent_events(&self, limit: u32) -> Result<Vec<EventRecord>, StoreError> {
        let q = query("SELECT * FROM events ORDER BY id DESC LIMIT $1").bind(limit);
        self.db.fetch_all(q).await?.iter().map(event_from_row).collect()
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
        // A run that stops moving (paused or finished) is nobody's any more.
        let moving = matches!(to, RunStatus::Pending | RunStatus::Running);
        let mut sql = String::from(
            "UPDATE runs SET status = $1, updated_at = $2, finished_at = CASE WHEN $3 THEN $2 ELSE finished_at END,
               lease_owner = CASE WHEN $4 THEN lease_owner END, lease_until = CASE WHEN $4 THEN lease_until END
             WHERE id = $5",
        );
        let mut q = query("").bind(to.as_str()).bind(&at).bind(to.is_finished()).bind(moving).bind(id);
        if !from.is_empty() {
            sql.push_str(&format!(" AND status IN ({})", q.list(from.iter().map(|s| s.as_str()))));
        }
        let q = q.sql(sql);
        let mut tx = self.db.begin().await?;
        check_fence(&mut tx, id, fence, &at).await?;
        let done = tx.execute(q).await? == 1;
        if done {
            tx.execute(insert_event(Some(id), None, &at, &event)).await?;
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
        let log = change.log.as_ref().map(|l| Value::from(l.clone()));
        let mut q = query("").bind(&at);
        let mut sets = vec!["updated_at = $1".to_string()];
        if let Some(s) = change.status {
            sets.push(format!("status = {}", q.arg(s.as_str())));
        }
        if let Some(n) = change.attempts {
            sets.push(format!("attempts = {}", q.arg(n)));
        }
        if let Some(o) = &change.output {
            sets.push(format!("output = {}", q.arg(o)));
        }
        if let Some(e) = &change.error {
            sets.push(format!("error = {}", q.arg(e)));
        }
        if let Some(r) = &change.resolution {
            sets.push(format!("resolution = {}", q.arg(r.map(Resolution::as_str))));
        }
        if let Some(n) = &change.note {
            sets.push(format!("note = {}", q.arg(n)));
        }
        if let Some(l) = &log {
            sets.push(format!("log = {}", q.arg(l)));
        }
        if let Some(r) = &change.requests {
            sets.push(format!("requests = {}", q.arg(r)));
        }
        if change.started {
            sets.push("started_at = $1, finished_at = NULL".into());
        }
        if change.finished {
            sets.push("finished_at = $1".into());
        }
        if change.paused {
            sets.push("pauses = pauses + 1".into());
        }
        let mut sql = format!(
            "UPDATE step_results SET {} WHERE run_id = {} AND step_id = {}",
            sets.join(", "),
            q.arg(run_id),
            q.arg(step_id)
        );
        if !from.is_empty() {
            sql.push_str(&format!(" AND status IN ({})", q.list(from.iter().map(|s| s.as_str()))));
        }
        match guard {
            Some(Guard::Attempt(n)) => sql.push_str(&format!(" AND attempts = {}", q.arg(n))),
            Some(Guard::Pause(n)) => sql.push_str(&format!(" AND pauses = {}", q.arg(n))),
            None => {}
        }
        let mut tx = self.db.begin().await?;
        let touched = check_fence(&mut tx, run_id, fence, &at).await?;
        let done = tx.execute(q.sql(sql)).await? == 1;
        if done {
            tx.execute(insert_event(Some(run_id), Some(step_id), &at, &event)).await?;
            if !touched {
                tx.execute(query("UPDATE runs SET updated_at = $1 WHERE id = $2").bind(&at).bind(run_id)).await?;
            }
        }
        tx.commit().await?;
        Ok(done)
    }

    async fn append_event(&self, run_id: Option<&str>, step_id: Option<&str>, event: Event) -> Result<(), StoreError> {
        self.db.execute(insert_event(run_id, step_id, &now(), &event)).await?;
        Ok(())
    }

    async fn add_approver(&self, user_id: &str, added_by: &str) -> Result<bool, StoreError> {
        let at = now();
        let mut tx = self.db.begin().await?;
        let q = query("INSERT INTO approvers (user_id, added_by, added_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING");
        let added = tx.execute(q.bind(user_id).bind(added_by).bind(&at)).await? == 1;
        if added {
            let event = Event::new(added_by, EventKind::ApproverAdded, serde_json::json!({ "user": user_id }));
            tx.execute(insert_event(None, None, &at, &event)).await?;
        }
        tx.commit().await?;
        Ok(added)
    }

    async fn remove_approver(&self, user_id: &str, removed_by: &str) -> Result<bool, StoreError> {
        let at = now();
        let mut tx = self.db.begin().await?;
        let removed = tx.execute(query("DELETE FROM approvers WHERE user_id = $1").bind(user_id)).await? == 1;
        if removed {
            let event = Event::new(removed_by, EventKind::ApproverRemoved, serde_json::json!({ "user": user_id }));
            tx.execute(insert_event(None, None, &at, &event)).await?;
        }
        tx.commit().await?;
        Ok(removed)
    }

    async fn approvers(&self) -> Result<Vec<Approver>, StoreError> {
        let rows = self.db.fetch_all(query("SELECT * FROM approvers ORDER BY added_at, user_id")).await?;
        rows.iter().map(approver_from_row).collect()
    }

    async fn approver(&self, user_id: &str) -> Result<Option<Approver>, StoreError> {
        let row = self.db.fetch_optional(query("SELECT * FROM approvers WHERE user_id = $1").bind(user_id)).await?;
        row.as_ref().map(approver_from_row).transpose()
    }

    async fn create_request(&self, req: &RunRequest, event: Event) -> Result<(), StoreError> {
        let inputs = Value::Object(req.inputs.clone());
        let batch = match req.batch.as_slice() {
            [] => None,
            items => Some(serde_json::to_value(items).map_err(|e| StoreError::Corrupt(format!("batch: {e}")))?),
        };
        let q = query(
            "INSERT INTO run_requests (id, pipeline, pipeline_hash, inputs, subject, requested_by, channel_id,
                 approvals_needed, allow_self, status, created_at, batch)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'pending', $10, $11)",
        )
        .bind(&req.id)
        .bind(&req.pipeline)
        .bind(&req.pipeline_hash)
        .bind(&inputs)
        .bind(&req.subject)
        .bind(&req.requested_by)
        .bind(&req.channel_id)
        .bind(req.approvals_needed)
        .bind(req.allow_self)
        .bind(&req.created_at)
        .bind(batch.as_ref());
        let mut tx = self.db.begin().await?;
        tx.execute(q).await?;
        tx.execute(insert_event(None, None, &req.created_at, &event)).await?;
        tx.commit().await
    }

    async fn request(&self, id: &str) -> Result<RunRequest, StoreError> {
        let row = self.db.fetch_optional(query("SELECT * FROM run_requests WHERE id = $1").bind(id)).await?;
        row.as_ref().map(request_from_row).transpose()?.ok_or_else(|| StoreError::NoRequest(id.to_string()))
    }

    async fn approve_request(&self, id: &str, user: &str) -> Result<Option<u32>, StoreError> {
        let at = now();
        let mut tx = self.db.begin().await?;
        let q = query(
            "INSERT INTO request_approvals (request_id, user_id, at)
             SELECT id, $1, $2 FROM run_requests WHERE id = $3 AND status = 'pending'
             ON CONFLICT DO NOTHING",
        );
        let added = tx.execute(q.bind(user).bind(&at).bind(id)).await? == 1;
        if !added {
            tx.rollback().await?;
            return Ok(None);
        }
        let q = query(
            "SELECT COUNT(*) AS n FROM request_approvals
             WHERE request_id = $1 AND user_id IN (SELECT user_id FROM approvers)",
        );
        let n: i64 = tx.fetch_one(q.bind(id)).await?.get("n")?;
        tx.commit().await?;
        Ok(Some(u32::try_from(n).unwrap_or(u32::MAX)))
    }

    async fn approvals(&self, id: &str) -> Result<Vec<String>, StoreError> {
        let q = query("SELECT user_id FROM request_approvals WHERE request_id = $1 ORDER BY at, user_id").bind(id);
        self.db.fetch_all(q).await?.iter().map(|r| r.get("user_id")).collect()
    }

    async fn create_run_for_request(
        &self,
        request_id: &str,
        by: &str,
        run: &NewRun,
        event: Event,
    ) -> Result<bool, StoreError> {
        let at = now();
        let mut tx = self.db.begin().await?;
        if !claim_request(&mut tx, request_id, by, &at, Some(&run.id), None).await? {
            tx.rollback().await?;
            return Ok(false);
        }
        insert_run(&mut tx, run, &event).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn create_batch_for_request(
        &self,
        request_id: &str,
        by: &str,
        batch: &NewBatch,
        runs: &[(NewRun, Event)],
        approved: &Event,
    ) -> Result<bool, StoreError> {
        let at = now();
        let mut tx = self.db.begin().await?;
        if !claim_request(&mut tx, request_id, by, &at, None, Some(&batch.id)).await? {
            tx.rollback().await?;
            return Ok(false);
        }
        tx.execute(insert_batch(batch, &at)).await?;
        for (run, event) in runs {
            insert_run(&mut tx, run, event).await?;
            tx.execute(insert_event(Some(&run.id), None, &at, approved)).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn set_batch_message(&self, batch_id: &str, channel: &str, ts: &str) -> Result<(), StoreError> {
        let q = query("UPDATE batches SET message_channel = $1, message_ts = $2 WHERE id = $3");
        self.db.execute(q.bind(channel).bind(ts).bind(batch_id)).await?;
        Ok(())
    }

    async fn cancel_request(&self, id: &str, by: &str, event: Event) -> Result<bool, StoreError> {
        let at = now();
        let mut tx = self.db.begin().await?;
        let q = query(
            "UPDATE run_requests SET status = 'cancelled', decided_by = $1, decided_at = $2 WHERE id = $3 AND status = 'pending'",
        );
        let done = tx.execute(q.bind(by).bind(&at).bind(id)).await? == 1;
        if done {
            tx.execute(insert_event(None, None, &at, &event)).await?;
        }
        tx.commit().await?;
        Ok(done)
    }

    async fn set_request_message(&self, id: &str, channel: &str, ts: &str) -> Result<(), StoreError> {
        let q = query("UPDATE run_requests SET message_channel = $1, message_ts = $2 WHERE id = $3");
        self.db.execute(q.bind(channel).bind(ts).bind(id)).await?;
        Ok(())
    }

    async fn set_run_message(&self, msg: &RunMessage) -> Result<(), StoreError> {
        let q = query(
            "INSERT INTO run_messages (run_id, channel, ts, request_id) VALUES ($1, $2, $3, $4)
             ON CONFLICT (run_id) DO UPDATE SET channel = excluded.channel, ts = excluded.ts",
        );
        self.db.execute(q.bind(&msg.run_id).bind(&msg.channel).bind(&msg.ts).bind(&msg.request_id)).await?;
        Ok(())
    }

    async fn run_message(&self, run_id: &str) -> Result<Option<RunMessage>, StoreError> {
        let row = self.db.fetch_optional(query("SELECT * FROM run_messages WHERE run_id = $1").bind(run_id)).await?;
        row.as_ref().map(message_from_row).transpose()
    }

    async fn first_sighting(&self, signature: &str, now_secs: i64, keep_secs: i64) -> Result<bool, StoreError> {
        let mut tx = self.db.begin().await?;
        tx.execute(query("DELETE FROM seen_signatures WHERE seen_at < $1").bind(now_secs - keep_secs)).await?;
        let q = query("INSERT INTO seen_signatures (signature, seen_at) VALUES ($1, $2) ON CONFLICT DO NOTHING");
        let first = tx.execute(q.bind(signature).bind(now_secs)).await? == 1;
        tx.commit().await?;
        Ok(first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SqliteStore;

    #[tokio::test]
    async fn a_resolution_this_version_does_not_know_leaves_the_run_readable() {
        let store = SqliteStore::open("sqlite::memory:").await.unwrap();
        let run = NewRun {
            id: "r1".into(),
            pipeline_name: "p".into(),
            pipeline_hash: "h".into(),
            plan: serde_json::json!({}),
            subject: "alice@example.com".into(),
            inputs: serde_json::json!({}),
            requested_by: "test".into(),
            dry_run: false,
            steps: vec![("a".into(), "k".into()), ("b".into(), "k2".into())],
            lease: Lease { owner: "test".into(), until_ms: 0 },
            batch_id: None,
        };
        store.create_run(&run, Event::new("test", EventKind::RunCreated, serde_json::json!({}))).await.unwrap();
        let skip = StepChange { resolution: Some(Some(Resolution::Condition)), ..Default::default() };
        assert!(store.change_step("r1", "a", &[], None, None, skip, Event::new("t", "x", Value::Null)).await.unwrap());
        // As a newer replica sharing the database might write it.
        store.db.execute(query("UPDATE step_results SET resolution = 'teleported' WHERE step_id = 'b'")).await.unwrap();
        let steps = store.steps("r1").await.unwrap();
        assert_eq!(steps[0].resolution, Some(Resolution::Condition));
        assert_eq!(steps[1].resolution, None);
    }
}
