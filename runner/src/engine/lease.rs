//! Leases and the database's bad days: which process drives a run, the heartbeat that keeps
//! its leases alive, and the retry loop that carries the engine through a database outage.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};

use crate::http::limiter::ReplicaShare;
use crate::store::{Store, StoreError, now_ms};

/// `host:pid:random`: unique per process, readable in `offramp runs` and the event log.
pub(crate) fn default_owner() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}:{}:{}", std::process::id(), &nonce[..8])
}

/// The runs this process is driving right now: the ones the heartbeat renews.
#[derive(Clone, Default)]
pub(crate) struct Driving(Arc<Mutex<HashSet<String>>>);

impl Driving {
    /// Marks a run as driven until the returned guard is dropped (however the drive ends);
    /// `None` if this process is driving it already (a second driver would take the first
    /// one's running steps for interrupted ones).
    pub(crate) fn enter(&self, run_id: &str) -> Option<DrivingGuard> {
        let mut set = self.0.lock().ok()?;
        set.insert(run_id.to_string()).then(|| DrivingGuard { driving: self.clone(), run_id: run_id.to_string() })
    }

    fn snapshot(&self) -> Vec<String> {
        self.0.lock().map(|s| s.iter().cloned().collect()).unwrap_or_default()
    }
}

pub(crate) struct DrivingGuard {
    driving: Driving,
    run_id: String,
}

impl Drop for DrivingGuard {
    fn drop(&mut self) {
        if let Ok(mut set) = self.driving.0.lock() {
            set.remove(&self.run_id);
        }
    }
}

/// Renews the leases of the runs this process is driving, every third of the lease, until
/// dropped; and counts the other processes driving runs on the same database, with whom every
/// vendor's rate limit is shared.
pub(crate) struct Heartbeat {
    task: tokio::task::JoinHandle<()>,
}

impl Heartbeat {
    /// `None` outside a Tokio runtime (nothing to drive runs with there either).
    pub(crate) fn start(
        store: Arc<dyn Store>,
        owner: String,
        lease: Duration,
        driving: Driving,
        share: ReplicaShare,
    ) -> Option<Heartbeat> {
        let handle = tokio::runtime::Handle::try_current().ok()?;
        let every = (lease / 3).max(Duration::from_millis(50));
        let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
        let task = handle.spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let runs = driving.snapshot();
                if !runs.is_empty()
                    && let Err(e) = store.renew_leases(&owner, &runs, now_ms().saturating_add(lease_ms)).await
                {
                    tracing::warn!(target: "offramp::engine", error = %e, "cannot renew this process's leases");
                }
                // After the renewal (which must not wait on it), and whether this process drives
                // anything or not, so its first requests after being idle take only its share.
                match tokio::time::timeout(every, store.busy_owners(&owner, now_ms())).await {
                    Ok(Ok(others)) => {
                        if others + 1 != share.get() {
                            tracing::info!(target: "offramp::engine", processes = others + 1, "vendor rate limits shared with the processes driving runs");
                        }
                        share.set(others + 1);
                    }
                    Ok(Err(e)) => tracing::warn!(target: "offramp::engine", error = %e, "cannot count the processes driving runs"),
                    Err(_) => tracing::warn!(target: "offramp::engine", "counting the processes driving runs took too long"),
                }
            }
        });
        Some(Heartbeat { task })
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Runs a store call, retrying with exponential backoff (100 ms doubling to 5 s, jittered)
/// while the database cannot be reached, for up to `patience`. Anything else returns at once.
pub(crate) async fn persist<T, F, Fut>(patience: Duration, f: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let deadline = tokio::time::Instant::now() + patience;
    let backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(5))
        .with_jitter()
        .without_max_times();
    f.retry(backoff)
        .when(|e: &StoreError| e.is_unavailable() && tokio::time::Instant::now() < deadline)
        .notify(|e: &StoreError, wait: Duration| {
            tracing::warn!(target: "offramp::engine", error = %e, retry_in = ?wait, "the database cannot be reached; retrying");
        })
        .await
}
