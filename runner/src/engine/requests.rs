//! A run request's life: asked for, approved, started or cancelled. The rules live here — only
//! the requester starts a request that needs no approval; the two-person rule counts approvers
//! other than the requester unless the pipeline allows self-approval; a pipeline edited since
//! the request is not started — so every front door (Slack today) applies the same ones and
//! only decides how to say the outcome.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{Engine, EngineError, StartRequest, inputs};
use crate::pipeline::Plan;
use crate::store::{Event, EventKind, RequestStatus, RunRequest, StoreError};

/// Who acts on a request: their id where they act (a Slack user id) and the front door, which
/// together name them in the event log (`slack:U123`).
#[derive(Debug, Clone, Copy)]
pub struct Person<'a> {
    pub via: &'a str,
    pub id: &'a str,
}

impl Person<'_> {
    /// How the event log names them.
    pub fn actor(&self) -> String {
        format!("{}:{}", self.via, self.id)
    }
}

/// Why a request was not approved, started or cancelled.
#[derive(Debug, thiserror::Error)]
pub enum RequestRefused {
    #[error("no such request")]
    Unknown,
    /// It was started or cancelled already (the request as it is now).
    #[error("the request is {}", .0.status.as_str())]
    Closed(Box<RunRequest>),
    /// A request that needs no approval is started by whoever asked for it.
    #[error("only {requested_by} can start this request")]
    OnlyRequester { requested_by: String },
    /// The requester's own Start does not count towards the approvals.
    #[error("the requester cannot approve their own request ({needed} other approvers needed)")]
    OwnRequest { needed: u32 },
    #[error("already approved by this person")]
    AlreadyApproved,
    /// The pipeline changed since the request was made: the request is cancelled.
    #[error("pipeline {pipeline} changed since the request was made")]
    PipelineChanged { pipeline: String },
    /// The inputs do not fit the pipeline ([`EngineError::Inputs`]), or the engine failed.
    #[error("{0}")]
    Engine(#[from] EngineError),
    #[error("{0}")]
    Store(#[from] StoreError),
}

/// What an approval led to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Approval {
    /// Enough approvals (or none needed, and the requester pressed Start): start the run.
    Start,
    /// Recorded; `count` of `needed` so far.
    Waiting { count: u32, needed: u32 },
}

/// A new request: which pipeline, for whom, with which inputs, asked by whom and where.
#[derive(Debug, Clone)]
pub struct NewRequest {
    pub pipeline: String,
    pub inputs: BTreeMap<String, String>,
    pub channel_id: Option<String>,
}

impl Engine {
    /// Records a `pending` request to run `plan` (its inputs checked now, so a request that
    /// could never start is refused at once). Nothing runs until it is approved and started.
    pub async fn request_run(
        &self,
        plan: &Plan,
        new: NewRequest,
        by: Person<'_>,
    ) -> Result<RunRequest, RequestRefused> {
        let subject = inputs::preview(plan, &new.inputs)?;
        let req = RunRequest {
            id: uuid::Uuid::new_v4().to_string(),
            pipeline: new.pipeline,
            pipeline_hash: plan.content_hash.clone(),
            inputs: new.inputs.into_iter().map(|(k, v)| (k, Value::String(v))).collect(),
            subject,
            requested_by: by.id.to_string(),
            channel_id: new.channel_id,
            approvals_needed: plan.approval.approvers,
            allow_self: plan.approval.allow_self,
            status: RequestStatus::Pending,
            decided_by: None,
            run_id: None,
            message_channel: None,
            message_ts: None,
            created_at: crate::store::now(),
            decided_at: None,
        };
        let event = Event::new(
            &by.actor(),
            EventKind::RunRequested,
            json!({ "request": req.id, "pipeline": req.pipeline, "subject": req.subject }),
        );
        self.store().create_request(&req, event).await?;
        Ok(req)
    }

    /// A pending request as it is now.
    pub async fn pending_request(&self, id: &str) -> Result<RunRequest, RequestRefused> {
        let req = self.request(id).await?;
        if req.status != RequestStatus::Pending {
            return Err(RequestRefused::Closed(Box::new(req)));
        }
        Ok(req)
    }

    async fn request(&self, id: &str) -> Result<RunRequest, RequestRefused> {
        match self.store().request(id).await {
            Ok(r) => Ok(r),
            Err(StoreError::NoRequest(_)) => Err(RequestRefused::Unknown),
            Err(e) => Err(e.into()),
        }
    }

    /// `by` pressed Start on a request: records their approval if it needs approvals, and says
    /// whether the run may start now ([`Engine::start_request`] starts it).
    pub async fn approve_request(&self, id: &str, by: Person<'_>) -> Result<(RunRequest, Approval), RequestRefused> {
        let req = self.pending_request(id).await?;
        let needed = req.approvals_needed;
        if needed == 0 {
            if by.id != req.requested_by {
                return Err(RequestRefused::OnlyRequester { requested_by: req.requested_by });
            }
            return Ok((req, Approval::Start));
        }
        if by.id == req.requested_by && !req.allow_self {
            return Err(RequestRefused::OwnRequest { needed });
        }
        let Some(count) = self.store().approve_request(&req.id, by.id).await? else {
            // Not recorded: the request closed meanwhile, or `by` had approved it already.
            self.pending_request(id).await?;
            return Err(RequestRefused::AlreadyApproved);
        };
        let event =
            Event::new(&by.actor(), EventKind::RequestApproved, json!({ "request": req.id, "approvals": count }));
        if let Err(e) = self.store().append_event(None, None, event).await {
            tracing::warn!(target: "offramp::engine", error = %e, "cannot log an approval");
        }
        let approval = if count >= needed { Approval::Start } else { Approval::Waiting { count, needed } };
        Ok((req, approval))
    }

    /// Starts the run of an approved request (`plan` is the request's pipeline as it is now).
    /// Marking the request started and creating the run are one transaction, so two racing
    /// Starts start one run and a failure leaves the request pending. A pipeline edited since
    /// the request was made cancels it instead: its approvers approved other steps.
    pub async fn start_request(&self, plan: &Plan, req: &RunRequest, by: Person<'_>) -> Result<String, RequestRefused> {
        if plan.content_hash != req.pipeline_hash {
            let event = Event::new("offramp", EventKind::RequestStale, json!({ "request": req.id }));
            if let Err(e) = self.store().cancel_request(&req.id, "offramp", event).await {
                tracing::warn!(target: "offramp::engine", error = %e, "cannot cancel a stale request");
            }
            return Err(RequestRefused::PipelineChanged { pipeline: req.pipeline.clone() });
        }
        let inputs = req
            .inputs
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_string)))
            .collect();
        let requester = Person { via: by.via, id: &req.requested_by };
        let start = StartRequest { inputs, requested_by: requester.actor(), dry_run: false };
        let actor = by.actor();
        let Some(run_id) = self.start_for_request(plan, start, &req.id, &actor).await? else {
            return Err(RequestRefused::Closed(Box::new(self.request(&req.id).await?)));
        };
        let event = Event::new(&actor, EventKind::RunApproved, json!({ "request": req.id }));
        if let Err(e) = self.store().append_event(Some(&run_id), None, event).await {
            tracing::warn!(target: "offramp::engine", error = %e, "cannot log a run's approval");
        }
        Ok(run_id)
    }

    /// Cancels a pending request; returns it as it was.
    pub async fn cancel_request(&self, id: &str, by: Person<'_>) -> Result<RunRequest, RequestRefused> {
        let req = self.request(id).await?;
        let actor = by.actor();
        let event = Event::new(&actor, EventKind::RequestCancelled, json!({ "request": req.id }));
        if !self.store().cancel_request(&req.id, &actor, event).await? {
            return Err(RequestRefused::Closed(Box::new(self.request(id).await?)));
        }
        Ok(req)
    }
}
