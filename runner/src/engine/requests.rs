//! A run request's life: asked for, approved, started or cancelled. The rules live here — only
//! the requester starts a request that needs no approval; the two-person rule counts approvers
//! other than the requester unless the pipeline allows self-approval; a pipeline edited since
//! the request is not started — so every front door (Slack today) applies the same ones and
//! only decides how to say the outcome. A request may name several people (a batch): one
//! confirmation for all of them, and above the operator's [`BatchPolicy::two_person_over`] the
//! two-person rule applies whatever the pipeline says.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{Engine, EngineError, StartRequest, inputs};
use crate::pipeline::Plan;
use crate::store::{BatchItem, Event, EventKind, NewBatch, RequestStatus, RunRequest, StoreError};

/// The operator's rules for requests naming several people (`batches:` in the config file).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchPolicy {
    /// A request naming more people than this needs another approver's Start (the
    /// two-person rule), even for a pipeline that asks for none:
    ///
    /// ```yaml
    /// batches: { two_person_over: 10 }
    /// ```
    pub two_person_over: u32,
    /// The most people one request may name (`batches: { max_size: 1000 }`).
    pub max_size: u32,
}

impl Default for BatchPolicy {
    fn default() -> Self {
        BatchPolicy { two_person_over: 10, max_size: 1000 }
    }
}

/// What starting a request made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Started {
    /// A request for one person: its run.
    Run(String),
    /// A request for several: the batch, and its runs in the request's order.
    Batch { id: String, runs: Vec<String> },
}

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

    /// How a request records who asked: a Slack user by their id (the messages mention
    /// them), anyone else with their front door (`api:workday`), so whoever starts the
    /// request later (in Slack) does not rename them.
    fn as_requester(&self) -> String {
        if self.via == "slack" { self.id.to_string() } else { self.actor() }
    }

    fn asked_for(&self, req: &RunRequest) -> bool {
        req.requested_by == self.as_requester()
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
    /// More people than the operator's `batches: { max_size }`.
    #[error("{size} people in one request; at most {max} (the operator's `batches: {{ max_size }}`)")]
    TooMany { size: usize, max: u32 },
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

/// A new request for several people: each one's inputs (one run each), in order.
#[derive(Debug, Clone)]
pub struct NewBatchRequest {
    pub pipeline: String,
    pub rows: Vec<BTreeMap<String, String>>,
    pub channel_id: Option<String>,
}

/// A new pending request of `plan`, under the pipeline's approval rule, with no inputs yet.
fn pending(plan: &Plan, pipeline: String, subject: String, channel_id: Option<String>, by: Person<'_>) -> RunRequest {
    RunRequest {
        id: uuid::Uuid::new_v4().to_string(),
        pipeline,
        pipeline_hash: plan.content_hash.clone(),
        inputs: serde_json::Map::new(),
        subject,
        requested_by: by.as_requester(),
        channel_id,
        approvals_needed: plan.approval.approvers,
        allow_self: plan.approval.allow_self,
        status: RequestStatus::Pending,
        decided_by: None,
        run_id: None,
        message_channel: None,
        message_ts: None,
        created_at: crate::store::now(),
        decided_at: None,
        batch: vec![],
        batch_id: None,
    }
}

/// How a batch request names its people in one line: the first few, then how many more.
fn batch_subject(items: &[BatchItem]) -> String {
    const SHOWN: usize = 3;
    let names: Vec<&str> = items.iter().take(SHOWN).map(|i| i.subject.as_str()).collect();
    match items.len().saturating_sub(SHOWN) {
        0 => format!("{} people: {}", items.len(), names.join(", ")),
        more => format!("{} people: {} and {more} more", items.len(), names.join(", ")),
    }
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
        let mut req = pending(plan, new.pipeline, subject, new.channel_id, by);
        req.inputs = new.inputs.into_iter().map(|(k, v)| (k, Value::String(v))).collect();
        let event = Event::new(
            &by.actor(),
            EventKind::RunRequested,
            json!({ "request": req.id, "pipeline": req.pipeline, "subject": req.subject }),
        );
        self.store().create_request(&req, event).await?;
        Ok(req)
    }

    /// Records a `pending` request for several people, each row one run of `plan`. Every row
    /// is checked now; the errors of all of them come back together, each naming its row (and
    /// its person, where known), and nothing is recorded. One person is a plain request.
    pub async fn request_batch(
        &self,
        plan: &Plan,
        new: NewBatchRequest,
        by: Person<'_>,
    ) -> Result<RunRequest, RequestRefused> {
        let policy = &self.config.batches;
        if new.rows.len() > policy.max_size as usize {
            return Err(RequestRefused::TooMany { size: new.rows.len(), max: policy.max_size });
        }
        if new.rows.len() == 1 {
            let inputs = new.rows.into_iter().next().unwrap_or_default();
            return self
                .request_run(plan, NewRequest { pipeline: new.pipeline, inputs, channel_id: new.channel_id }, by)
                .await;
        }
        let mut items = Vec::with_capacity(new.rows.len());
        let mut errors = Vec::new();
        let mut seen = std::collections::HashMap::new();
        for (i, row) in new.rows.iter().enumerate() {
            match inputs::preview(plan, row) {
                Ok(subject) => {
                    // One person named twice, in whatever case: two runs on the same accounts.
                    if let Some(first) = seen.insert(subject.to_lowercase(), i + 1) {
                        errors.push(format!("{subject} is named twice (#{first} and #{})", i + 1));
                    }
                    let inputs = row.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
                    items.push(BatchItem { subject, inputs });
                }
                Err(EngineError::Inputs(why)) => {
                    let raw = row.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
                    let who = inputs::pick_subject(plan, &raw);
                    let who = if who == plan.name { String::new() } else { format!(" ({who})") };
                    errors.extend(why.into_iter().map(|w| format!("#{}{who}: {w}", i + 1)));
                }
                Err(e) => return Err(e.into()),
            }
        }
        if items.is_empty() && errors.is_empty() {
            errors.push("nobody to offboard: the request names no one".into());
        }
        if !errors.is_empty() {
            return Err(EngineError::Inputs(errors).into());
        }
        let mut req = pending(plan, new.pipeline, batch_subject(&items), new.channel_id, by);
        if items.len() > policy.two_person_over as usize {
            req.approvals_needed = plan.approval.approvers.max(1);
            req.allow_self = false;
        }
        req.batch = items;
        let event = Event::new(
            &by.actor(),
            EventKind::RunRequested,
            json!({ "request": req.id, "pipeline": req.pipeline, "subject": req.subject, "size": req.batch.len() }),
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
            if !by.asked_for(&req) {
                return Err(RequestRefused::OnlyRequester { requested_by: req.requested_by });
            }
            return Ok((req, Approval::Start));
        }
        if by.asked_for(&req) && !req.allow_self {
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
    pub async fn start_request(
        &self,
        plan: &Plan,
        req: &RunRequest,
        by: Person<'_>,
    ) -> Result<Started, RequestRefused> {
        if plan.content_hash != req.pipeline_hash {
            let event = Event::new("offramp", EventKind::RequestStale, json!({ "request": req.id }));
            if let Err(e) = self.store().cancel_request(&req.id, "offramp", event).await {
                tracing::warn!(target: "offramp::engine", error = %e, "cannot cancel a stale request");
            }
            return Err(RequestRefused::PipelineChanged { pipeline: req.pipeline.clone() });
        }
        let raw = |inputs: &serde_json::Map<String, Value>| -> BTreeMap<String, String> {
            inputs.iter().map(|(k, v)| (k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_string))).collect()
        };
        // A requester named with their front door (`api:workday`) keeps it; a bare id is a
        // Slack user's (requests made in Slack are started in Slack).
        let requester = if req.requested_by.contains(':') {
            req.requested_by.clone()
        } else {
            Person { via: by.via, id: &req.requested_by }.actor()
        };
        let actor = by.actor();
        let approved = Event::new(&actor, EventKind::RunApproved, json!({ "request": req.id }));
        let started = if req.batch.is_empty() {
            let start = StartRequest { inputs: raw(&req.inputs), requested_by: requester, dry_run: false };
            let Some(run_id) = self.start_for_request(plan, start, &req.id, &actor).await? else {
                return Err(RequestRefused::Closed(Box::new(self.request(&req.id).await?)));
            };
            if let Err(e) = self.store().append_event(Some(&run_id), None, approved).await {
                tracing::warn!(target: "offramp::engine", error = %e, "cannot log a run's approval");
            }
            Some(Started::Run(run_id))
        } else {
            let batch = NewBatch {
                id: super::new_run_id(),
                pipeline_name: plan.name.clone(),
                requested_by: requester.clone(),
                approved_by: Some(actor.clone()),
                size: u32::try_from(req.batch.len()).unwrap_or(u32::MAX),
                request_id: Some(req.id.clone()),
            };
            let mut runs = Vec::with_capacity(req.batch.len());
            for item in &req.batch {
                let start = StartRequest { inputs: raw(&item.inputs), requested_by: requester.clone(), dry_run: false };
                let (mut run, mut event) = self.new_run(plan, &start, super::new_run_id())?;
                run.batch_id = Some(batch.id.clone());
                event.detail["batch"] = json!(batch.id);
                event.detail["request"] = json!(req.id);
                event.detail["approved_by"] = json!(actor);
                runs.push((run, event));
            }
            let ids = runs.iter().map(|(r, _)| r.id.clone()).collect();
            self.store()
                // Each run's approval in the same transaction: a thousand runs, one write.
                .create_batch_for_request(&req.id, &actor, &batch, &runs, &approved)
                .await?
                .then_some(Started::Batch { id: batch.id, runs: ids })
        };
        match started {
            Some(started) => Ok(started),
            None => Err(RequestRefused::Closed(Box::new(self.request(&req.id).await?))),
        }
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
