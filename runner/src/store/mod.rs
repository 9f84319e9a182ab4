//! The results table: runs, step results and an append-only event log, behind [`Store`].
//!
//! SQLite is the default (`sqlite://offramp.db`, WAL); `postgres://…` selects [`PgStore`].
//! The engine and the Slack front door only see the trait.

mod db;
mod front;
mod kinds;
mod postgres;
mod sql;
mod sqlite;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use front::{Approver, BatchItem, RequestStatus, RunMessage, RunRequest};
pub use kinds::{EventKind, Resolution};
pub use postgres::PgStore;
pub use sql::SqlStore;
pub use sqlite::SqliteStore;

/// Store failures. Callers match on `NotFound`; the rest are reported.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no run {0}")]
    NotFound(String),
    #[error("no request {0}")]
    NoRequest(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("corrupt row: {0}")]
    Corrupt(String),
    #[error("unsupported database URL `{0}`: use sqlite://PATH or postgres://USER@HOST/DATABASE")]
    Unsupported(String),
    /// A write fenced by a lease this process no longer holds: another process took the run over.
    #[error("run {0} is no longer leased to this process (another one took it over)")]
    LeaseLost(String),
}

impl StoreError {
    /// Whether the database could not be reached (connection refused or dropped, pool timed
    /// out): worth retrying, unlike a constraint or a missing row.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Database(e) => {
                matches!(
                    e,
                    sqlx::Error::Io(_)
                        | sqlx::Error::PoolTimedOut
                        | sqlx::Error::PoolClosed
                        | sqlx::Error::Tls(_)
                        | sqlx::Error::Protocol(_)
                        | sqlx::Error::WorkerCrashed
                ) || e.as_database_error().and_then(|d| d.code()).is_some_and(|c| {
                    // PostgreSQL: admin shutdown, crash shutdown, cannot connect now, connection failures.
                    matches!(c.as_ref(), "57P01" | "57P02" | "57P03" | "08000" | "08003" | "08006" | "08001" | "08004")
                })
            }
            _ => false,
        }
    }
}

/// A run's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Pending,
    Running,
    Paused,
    Succeeded,
    Failed,
    Aborted,
}

/// A step's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Pending,
    Running,
    Succeeded,
    Unchanged,
    Failed,
    Skipped,
    Paused,
}

macro_rules! text_enum {
    ($t:ty { $($v:ident => $s:literal),* $(,)? }) => {
        impl $t {
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$v => $s),* }
            }
        }
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.pad(self.as_str()) }
        }
        impl std::str::FromStr for $t {
            type Err = $crate::store::StoreError;
            fn from_str(s: &str) -> Result<Self, $crate::store::StoreError> {
                match s {
                    $($s => Ok(Self::$v),)*
                    other => Err($crate::store::StoreError::Corrupt(format!("unknown {} `{other}`", stringify!($t)))),
                }
            }
        }
    };
}
pub(crate) use text_enum;

text_enum!(RunStatus { Pending => "pending", Running => "running", Paused => "paused", Succeeded => "succeeded", Failed => "failed", Aborted => "aborted" });
text_enum!(StepStatus { Pending => "pending", Running => "running", Succeeded => "succeeded", Unchanged => "unchanged", Failed => "failed", Skipped => "skipped", Paused => "paused" });

impl RunStatus {
    pub fn is_finished(self) -> bool {
        matches!(self, RunStatus::Succeeded | RunStatus::Failed | RunStatus::Aborted)
    }
}

impl StepStatus {
    pub fn is_finished(self) -> bool {
        matches!(self, StepStatus::Succeeded | StepStatus::Unchanged | StepStatus::Failed | StepStatus::Skipped)
    }
}

/// A new run, as the engine creates it.
#[derive(Debug, Clone)]
pub struct NewRun {
    pub id: String,
    pub pipeline_name: String,
    pub pipeline_hash: String,
    pub plan: serde_json::Value,
    pub subject: String,
    pub inputs: serde_json::Value,
    pub requested_by: String,
    pub dry_run: bool,
    /// `(step id, idempotency key)` in file order.
    pub steps: Vec<(String, String)>,
    /// Who holds the new run's lease, and until when: the creator drives it.
    pub lease: Lease,
    /// The batch it belongs to (one request for many runs), if any.
    pub batch_id: Option<String>,
}

/// One request for many runs (`offramp run --inputs-file`): who asked, who approved.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NewBatch {
    pub id: String,
    pub pipeline_name: String,
    pub requested_by: String,
    pub approved_by: Option<String>,
    /// How many runs it asks for.
    pub size: u32,
    /// The request it was approved as, if it came through one (Slack, the API).
    pub request_id: Option<String>,
}

/// A batch as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BatchRecord {
    pub id: String,
    pub pipeline_name: String,
    pub requested_by: String,
    pub approved_by: Option<String>,
    pub size: u32,
    pub created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The channel message the batch is reported in, once posted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_channel: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_ts: Option<String>,
}

/// Who drives a run, and until when (unix milliseconds) unless renewed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lease {
    pub owner: String,
    pub until_ms: i64,
}

/// A run claimed by [`Store::claim_orphans`], and who held it before (if anyone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    pub run_id: String,
    pub previous_owner: Option<String>,
}

/// A run row.
#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    pub id: String,
    pub pipeline_name: String,
    pub pipeline_hash: String,
    #[serde(skip)]
    pub plan: serde_json::Value,
    pub subject: String,
    pub inputs: serde_json::Value,
    pub requested_by: String,
    pub dry_run: bool,
    pub status: RunStatus,
    pub created_at: String,
    pub updated_at: String,
    pub finished_at: Option<String>,
    /// Who is driving the run (`None` once it paused or finished).
    pub lease: Option<Lease>,
    /// The batch it belongs to, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_id: Option<String>,
}

/// A step result row.
#[derive(Debug, Clone, Serialize)]
pub struct StepRecord {
    pub run_id: String,
    pub step_id: String,
    pub position: i64,
    pub status: StepStatus,
    pub attempts: u32,
    /// How many times the step has paused (a decision names the pause it answers).
    pub pauses: u32,
    pub idempotency_key: String,
    pub output: Option<serde_json::Value>,
    pub error: Option<String>,
    pub resolution: Option<Resolution>,
    /// What offramp adds to the plugin's own account: e.g. "changed by attempt 1, which was
    /// interrupted" when a re-run found the change already made.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub log: Vec<String>,
    pub requests: serde_json::Value,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub updated_at: String,
}

/// An event log entry.
#[derive(Debug, Clone, Serialize)]
pub struct EventRecord {
    pub id: i64,
    pub run_id: Option<String>,
    pub step_id: Option<String>,
    pub at: String,
    pub actor: String,
    pub kind: EventKind,
    pub detail: serde_json::Value,
}

/// Something that happened, to append to the event log in the same transaction as the change.
#[derive(Debug, Clone)]
pub struct Event {
    pub actor: String,
    pub kind: EventKind,
    pub detail: serde_json::Value,
}

impl Event {
    pub fn new(actor: &str, kind: impl Into<EventKind>, detail: serde_json::Value) -> Self {
        Event { actor: actor.to_string(), kind: kind.into(), detail }
    }
}

/// A change to one step row. `None` fields are left as they are.
#[derive(Debug, Clone, Default)]
pub struct StepChange {
    pub status: Option<StepStatus>,
    pub attempts: Option<u32>,
    pub output: Option<serde_json::Value>,
    /// `Some(None)` clears the error.
    pub error: Option<Option<String>>,
    pub resolution: Option<Option<Resolution>>,
    /// `Some(None)` clears the note.
    pub note: Option<Option<String>>,
    pub log: Option<Vec<String>>,
    pub requests: Option<serde_json::Value>,
    pub started: bool,
    pub finished: bool,
    /// Counts a pause (`pauses + 1`).
    pub paused: bool,
}

/// The extra condition of [`Store::change_step`]: the step is still at this attempt, or at
/// this pause. What makes a stale or racing change a no-op.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guard {
    Attempt(u32),
    Pause(u32),
}

/// The results table.
#[async_trait::async_trait]
pub trait Store: Send + Sync {
    /// Inserts a run with a `pending` row per step.
    async fn create_run(&self, run: &NewRun, event: Event) -> Result<(), StoreError>;
    async fn run(&self, id: &str) -> Result<RunRecord, StoreError>;
    /// Newest first.
    async fn runs(&self, limit: u32) -> Result<Vec<RunRecord>, StoreError>;
    /// Records a batch; its runs are created after it, each naming it.
    async fn create_batch(&self, batch: &NewBatch) -> Result<(), StoreError>;
    async fn batch(&self, id: &str) -> Result<BatchRecord, StoreError>;
    /// A batch's runs, oldest first, without their plans (`plan` is null).
    async fn batch_runs(&self, id: &str) -> Result<Vec<RunRecord>, StoreError>;
    /// Pending or running runs that nobody drives (their lease ran out at `now_ms`: the process
    /// died, or never had one), and paused runs with no paused step left (a decision that raced
    /// the run pausing), up to `limit`, oldest first; each is leased to `owner` until
    /// `until_ms`. Concurrent claimers get disjoint sets (PostgreSQL: `FOR UPDATE SKIP LOCKED`).
    /// The claim is in the event log (`run_claimed`).
    async fn claim_orphans(
        &self,
        owner: &str,
        now_ms: i64,
        until_ms: i64,
        limit: u32,
    ) -> Result<Vec<Claimed>, StoreError>;
    /// Leases a pending or running run to `owner` until `until_ms`, if it is free, expired at
    /// `now_ms`, or already `owner`'s. Returns whether it did.
    async fn claim_run(&self, run_id: &str, owner: &str, now_ms: i64, until_ms: i64) -> Result<bool, StoreError>;
    /// Extends `owner`'s leases on `run_ids` (the runs it is driving) to `until_ms`: the
    /// heartbeat. A lease `owner` holds on a run it no longer drives (a drive that failed and
    /// could not release it) is not renewed, so it runs out and the run is picked up again.
    /// Returns how many were renewed.
    async fn renew_leases(&self, owner: &str, run_ids: &[String], until_ms: i64) -> Result<u64, StoreError>;
    /// How many processes other than `owner` are driving runs right now (hold a lease that
    /// has not run out at `now_ms` on a pending or running run): the replicas a vendor's rate
    /// limit is shared with.
    async fn busy_owners(&self, owner: &str, now_ms: i64) -> Result<u32, StoreError>;
    /// Gives up `owner`'s lease on a run (it paused or finished, or `owner` stops).
    async fn release_run(&self, run_id: &str, owner: &str) -> Result<(), StoreError>;
    /// Paused runs due a reminder: paused (unchanged) since before `cutoff` and not reminded
    /// since then. Each is marked reminded at `now` in the same statement, so of several
    /// replicas asking at once only one gets a given run. Oldest first, up to `limit`.
    async fn due_reminders(&self, cutoff: &str, now: &str, limit: u32) -> Result<Vec<RunRecord>, StoreError>;
    /// In pipeline order.
    async fn steps(&self, run_id: &str) -> Result<Vec<StepRecord>, StoreError>;
    async fn events(&self, run_id: &str) -> Result<Vec<EventRecord>, StoreError>;
    /// The newest events of any run or none (refusals, approver changes), newest first.
    async fn recent_events(&self, limit: u32) -> Result<Vec<EventRecord>, StoreError>;
    /// Sets a run's status if it is currently one of `from` (empty: any). Returns whether it did.
    /// With `fence`, only while that owner holds the run's lease ([`StoreError::LeaseLost`]
    /// otherwise). A run that pauses or finishes loses its lease.
    async fn set_run_status(
        &self,
        id: &str,
        from: &[RunStatus],
        to: RunStatus,
        fence: Option<&str>,
        event: Event,
    ) -> Result<bool, StoreError>;
    /// Applies `change` to a step if its status is one of `from` (and, when given, the guard
    /// holds). Returns whether it did: two racing decisions cannot both win. With `fence`, only
    /// while that owner holds the run's lease ([`StoreError::LeaseLost`] otherwise).
    #[allow(clippy::too_many_arguments)]
    async fn change_step(
        &self,
        run_id: &str,
        step_id: &str,
        from: &[StepStatus],
        guard: Option<Guard>,
        fence: Option<&str>,
        change: StepChange,
        event: Event,
    ) -> Result<bool, StoreError>;
    /// Appends an event not tied to a state change (e.g. a refused request).
    async fn append_event(&self, run_id: Option<&str>, step_id: Option<&str>, event: Event) -> Result<(), StoreError>;

    // --- The Slack front door -------------------------------------------------------------

    /// Adds an approver. Returns false if they already were one.
    async fn add_approver(&self, user_id: &str, added_by: &str) -> Result<bool, StoreError>;
    /// Removes an approver. Returns false if they were not one.
    async fn remove_approver(&self, user_id: &str, removed_by: &str) -> Result<bool, StoreError>;
    async fn approvers(&self) -> Result<Vec<Approver>, StoreError>;
    async fn approver(&self, user_id: &str) -> Result<Option<Approver>, StoreError>;

    /// Records a new `pending` request.
    async fn create_request(&self, req: &RunRequest, event: Event) -> Result<(), StoreError>;
    async fn request(&self, id: &str) -> Result<RunRequest, StoreError>;
    /// Records `user`'s approval of a pending request. Returns the number of approvals after it
    /// by users who are approvers now, or `None` if the request is not pending or `user` had
    /// already approved it.
    async fn approve_request(&self, id: &str, user: &str) -> Result<Option<u32>, StoreError>;
    /// Users who approved a request, in order.
    async fn approvals(&self, id: &str) -> Result<Vec<String>, StoreError>;
    /// Starts a pending request: marks it `started` by `by` and creates its run, in one
    /// transaction. Returns false (and creates nothing) if the request was no longer pending:
    /// of two racing Start clicks, one wins.
    async fn create_run_for_request(
        &self,
        request_id: &str,
        by: &str,
        run: &NewRun,
        event: Event,
    ) -> Result<bool, StoreError>;
    /// Starts a pending request for several people: marks it `started` by `by`, records
    /// `batch` and creates all its runs, each with `approved` in its event log, in one
    /// transaction. Returns false (and creates nothing) if the request was no longer pending.
    async fn create_batch_for_request(
        &self,
        request_id: &str,
        by: &str,
        batch: &NewBatch,
        runs: &[(NewRun, Event)],
        approved: &Event,
    ) -> Result<bool, StoreError>;
    /// Remembers the channel message a batch is reported in.
    async fn set_batch_message(&self, batch_id: &str, channel: &str, ts: &str) -> Result<(), StoreError>;
    /// Cancels a pending request. Returns whether it did.
    async fn cancel_request(&self, id: &str, by: &str, event: Event) -> Result<bool, StoreError>;
    /// Remembers the channel post that asks for approval of a request.
    async fn set_request_message(&self, id: &str, channel: &str, ts: &str) -> Result<(), StoreError>;

    /// Remembers (or replaces) the channel message a run is reported in.
    async fn set_run_message(&self, msg: &RunMessage) -> Result<(), StoreError>;
    async fn run_message(&self, run_id: &str) -> Result<Option<RunMessage>, StoreError>;

    /// Records a request signature. Returns false if it was already recorded (a replay).
    /// Forgets signatures older than `keep_secs`.
    async fn first_sighting(&self, signature: &str, now_secs: i64, keep_secs: i64) -> Result<bool, StoreError>;
}

/// The runs that nobody should be waiting for, as SQL over `runs` (both stores): pending or
/// running, or paused with no step paused any more (a decision raced the run pausing). Whoever
/// holds no live lease on one of these may claim it ([`Store::claim_orphans`]).
pub(crate) const ORPHAN_STATUS_SQL: &str = "(status IN ('pending', 'running') OR (status = 'paused' AND NOT EXISTS (SELECT 1 FROM step_results s WHERE s.run_id = runs.id AND s.status = 'paused')))";

/// Opens the store a database URL names, running migrations.
pub async fn open(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    if url.starts_with("sqlite:") {
        return Ok(Arc::new(SqliteStore::open(url).await?));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Arc::new(PgStore::open(url).await?));
    }
    Err(StoreError::Unsupported(url.split('@').next_back().unwrap_or(url).to_string()))
}

/// Now, as RFC 3339 UTC with milliseconds.
pub(crate) fn now() -> String {
    timestamp(time::OffsetDateTime::now_utc())
}

/// A moment as the stores write it: RFC 3339 UTC with milliseconds (text order = time order).
pub(crate) fn timestamp(at: time::OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    at.format(&fmt).unwrap_or_else(|_| at.unix_timestamp().to_string())
}

/// Now, in unix milliseconds: the clock leases are measured with.
pub fn now_ms() -> i64 {
    let ns = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
    i64::try_from(ns / 1_000_000).unwrap_or(i64::MAX)
}
