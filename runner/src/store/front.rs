//! Rows of the Slack front door: approvers, run requests, run messages.

use serde::{Deserialize, Serialize};

use super::StoreError;

/// Someone allowed to request runs and decide on paused steps.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Approver {
    /// Slack user id, e.g. `U024BE7LH`.
    pub user_id: String,
    pub added_by: String,
    pub added_at: String,
}

/// Where a run request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestStatus {
    Pending,
    Started,
    Cancelled,
}

impl RequestStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestStatus::Pending => "pending",
            RequestStatus::Started => "started",
            RequestStatus::Cancelled => "cancelled",
        }
    }

    pub(crate) fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "pending" => Ok(RequestStatus::Pending),
            "started" => Ok(RequestStatus::Started),
            "cancelled" => Ok(RequestStatus::Cancelled),
            other => Err(StoreError::Corrupt(format!("unknown request status `{other}`"))),
        }
    }
}

/// A `/offboard` request, from the command until Start or Cancel.
#[derive(Debug, Clone, Serialize)]
pub struct RunRequest {
    pub id: String,
    pub pipeline: String,
    pub pipeline_hash: String,
    /// The raw `key=value` inputs.
    pub inputs: serde_json::Map<String, serde_json::Value>,
    pub subject: String,
    pub requested_by: String,
    pub channel_id: Option<String>,
    /// Approvals needed from approvers other than the requester (0: the requester's Start is enough).
    pub approvals_needed: u32,
    /// Whether the requester's own approval counts.
    pub allow_self: bool,
    pub status: RequestStatus,
    pub decided_by: Option<String>,
    pub run_id: Option<String>,
    pub message_channel: Option<String>,
    pub message_ts: Option<String>,
    pub created_at: String,
    pub decided_at: Option<String>,
    /// A request for several people (`/offboard a@x b@x`, `POST /api/runs`): each one and the
    /// inputs of their run; empty for a request for one (`inputs`, `subject`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub batch: Vec<BatchItem>,
    /// The batch a request for several made when it started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_id: Option<String>,
}

/// One person of a request for several: who leaves, and the inputs of their run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchItem {
    pub subject: String,
    pub inputs: serde_json::Map<String, serde_json::Value>,
}

/// The channel message a run is reported in.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RunMessage {
    pub run_id: String,
    pub channel: String,
    pub ts: String,
    pub request_id: Option<String>,
}
