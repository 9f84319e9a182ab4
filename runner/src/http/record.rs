//! What a step attempt did on the network: the request records kept for the results table,
//! and the hook through which the gate writes mutating requests ahead of sending them.

use serde::{Deserialize, Serialize};

/// Requests recorded beyond `max_requests` (refusals, mostly) before only counting them.
pub(super) const RECORD_SLACK: usize = 20;
/// The longest URL kept in a request record or quoted in an error.
pub(super) const SHOWN_URL_CHARS: usize = 256;
/// The longest outcome kept in a request record.
pub(super) const SHOWN_OUTCOME_CHARS: usize = 512;

/// What the step did on the network, for the results table and `--dry-run` plans.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestRecord {
    pub method: String,
    /// Scheme, host, port and path (at most 256 characters); the query string is left out
    /// (it can hold identifiers).
    pub url: String,
    /// The status, or why there was none.
    pub outcome: String,
    /// Which secret the host injected, if any (its name, never its value).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub dry_run: bool,
    /// The attempt that made it (filled in by the engine).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub attempt: Option<u32>,
    /// On the last record of a long journal only: how many more requests were made and not
    /// recorded one by one.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub omitted: Option<u64>,
}

impl RequestRecord {
    /// Whether this request may change something at the other end (anything but GET, HEAD,
    /// OPTIONS): what a dry run holds back and what the engine writes ahead.
    pub fn is_mutation(&self) -> bool {
        is_mutating(&self.method)
    }

    /// Whether the request was answered with a 2xx status.
    pub fn succeeded(&self) -> bool {
        self.outcome.len() == 3 && self.outcome.starts_with('2') && self.outcome.bytes().all(|b| b.is_ascii_digit())
    }
}

pub(super) fn is_mutating(method: &str) -> bool {
    !matches!(method, "GET" | "HEAD" | "OPTIONS")
}

/// Where the gate writes a mutating request before sending it, and its answer after: the
/// engine's results table, so a crash mid-request still leaves the attempt on record.
#[async_trait::async_trait]
pub(crate) trait Recorder: Send + Sync {
    /// Called before a mutating request leaves; an error stops the request (fail closed).
    /// Returns the ticket [`Recorder::answered`] is given back.
    async fn sending(&self, rec: &RequestRecord) -> Result<u32, String>;
    /// Called with the outcome once it is known.
    async fn answered(&self, ticket: u32, rec: &RequestRecord);
}

/// The per-attempt request record: the first requests in full, then a count.
#[derive(Default)]
pub(super) struct Journal {
    pub(super) records: Vec<RequestRecord>,
    /// Requests made (sent or refused).
    pub(super) made: u64,
    /// Requests that passed every check and went out.
    pub(super) sent: u32,
}
