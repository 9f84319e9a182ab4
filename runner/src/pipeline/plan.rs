//! The compiled plan: a pipeline after validation, with every duration parsed, every plugin
//! resolved to a file and every grant checked. What the engine runs and stores with each run.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::model::{Approval, InputSpec, InputType, OnFailure};
use super::origin::{Grant, Origin};

/// A credential rule after validation.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CredentialPlan {
    pub origin: Origin,
    /// The secret's name; the value is looked up when the step runs.
    pub secret: String,
    pub header: String,
    pub format: String,
}

/// Retry policy with parsed durations.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RetryPlan {
    pub attempts: u32,
    pub initial: Duration,
    pub max: Duration,
    pub factor: f64,
}

impl RetryPlan {
    /// The wait before attempt `next` (2 = first retry).
    pub fn delay_before(&self, next: u32) -> Duration {
        let exp = i32::try_from(next.saturating_sub(2)).unwrap_or(i32::MAX);
        let secs = self.initial.as_secs_f64() * self.factor.powi(exp);
        Duration::from_secs_f64(secs.min(self.max.as_secs_f64()))
    }
}

/// One step, ready to run.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StepPlan {
    pub id: String,
    pub plugin: PathBuf,
    pub needs: Vec<String>,
    pub condition: Option<String>,
    pub with: serde_json::Value,
    pub timeout: Duration,
    pub memory_bytes: u64,
    pub retry: RetryPlan,
    pub on_failure: OnFailure,
    /// `idempotent: false`: not re-run blindly after a crash.
    #[serde(default = "yes")]
    pub idempotent: bool,
    pub allow: Vec<Grant>,
    pub credentials: Vec<CredentialPlan>,
}

/// A validated pipeline.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Plan {
    pub name: String,
    pub description: String,
    pub inputs: BTreeMap<String, InputSpec>,
    pub vars: BTreeMap<String, String>,
    pub steps: Vec<StepPlan>,
    /// The two-person rule (`Approval::NONE` without one).
    #[serde(default)]
    pub approval: Approval,
    /// SHA-256 of the file's text, recorded with every run.
    pub content_hash: String,
    /// The file's text, kept so a paused run resumes with exactly what it started with.
    pub source: String,
}

fn yes() -> bool {
    true
}

/// Checks (and normalises) an input value against its type.
pub fn coerce_input(kind: InputType, value: &serde_json::Value) -> Result<serde_json::Value, String> {
    use serde_json::Value as J;
    match (kind, value) {
        (InputType::String, J::String(_)) => Ok(value.clone()),
        (InputType::Email, J::String(s)) => {
            let s = s.trim();
            let valid = s.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty()
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !s.contains(char::is_whitespace)
                    && s.matches('@').count() == 1
            });
            if valid { Ok(J::String(s.to_string())) } else { Err(format!("`{s}` is not an email address")) }
        }
        (InputType::Bool, J::Bool(_)) => Ok(value.clone()),
        (InputType::Bool, J::String(s)) => match s.as_str() {
            "true" | "yes" => Ok(J::Bool(true)),
            "false" | "no" => Ok(J::Bool(false)),
            _ => Err(format!("`{s}` is not a bool (true or false)")),
        },
        (InputType::Int, J::Number(n)) if n.is_i64() => Ok(value.clone()),
        (InputType::Int, J::String(s)) => {
            s.trim().parse::<i64>().map(J::from).map_err(|_| format!("`{s}` is not an integer"))
        }
        (kind, other) => Err(format!("expected {kind}, got {other}")),
    }
}
