//! A run's inputs and template context: checking what a requester typed against the
//! pipeline's `inputs:`, picking the run's subject, and what `{{ … }}` templates see.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::EngineError;
use crate::pipeline::{Plan, coerce_input};
use crate::store::{RunRecord, StepRecord, StepStatus};

/// Checks raw inputs against a pipeline without starting anything; returns the subject the
/// run would have (what a confirmation shows).
pub fn preview(plan: &Plan, inputs: &BTreeMap<String, String>) -> Result<String, EngineError> {
    let inputs = check_inputs(plan, inputs)?;
    Ok(pick_subject(plan, &inputs))
}

/// The template context of a run: inputs, vars, finished steps' outputs, run id.
pub(super) fn context(run: &RunRecord, steps: &[StepRecord]) -> minijinja::Value {
    let vars = run.plan.get("vars").cloned().unwrap_or(json!({}));
    let steps: serde_json::Map<String, Value> = steps
        .iter()
        .filter(|s| {
            matches!(s.status, StepStatus::Succeeded | StepStatus::Unchanged | StepStatus::Skipped | StepStatus::Failed)
        })
        .map(|s| {
            (
                s.step_id.clone(),
                json!({ "output": s.output.clone().unwrap_or(Value::Null), "status": s.status.as_str() }),
            )
        })
        .collect();
    crate::pipeline::template::to_value(json!({
        "inputs": run.inputs,
        "vars": vars,
        "steps": steps,
        "run": { "id": run.id, "requested_by": run.requested_by, "dry_run": run.dry_run },
    }))
}

pub(super) fn check_inputs(
    plan: &Plan,
    given: &BTreeMap<String, String>,
) -> Result<serde_json::Map<String, Value>, EngineError> {
    let mut errors = Vec::new();
    let mut out = serde_json::Map::new();
    for key in given.keys() {
        if !plan.inputs.contains_key(key) {
            let known: Vec<&str> = plan.inputs.keys().map(String::as_str).collect();
            errors.push(format!("unknown input `{key}` (inputs: {})", known.join(", ")));
        }
    }
    for (name, spec) in &plan.inputs {
        let value = match (given.get(name), &spec.default) {
            (Some(v), _) => Value::String(v.clone()),
            (None, Some(d)) => d.clone(),
            (None, None) if spec.required => {
                errors.push(format!("missing required input `{name}` ({})", spec.kind));
                continue;
            }
            (None, None) => Value::Null,
        };
        if value.is_null() {
            out.insert(name.clone(), value);
            continue;
        }
        match coerce_input(spec.kind, &value) {
            Ok(v) => {
                out.insert(name.clone(), v);
            }
            Err(e) => errors.push(format!("input `{name}`: {e}")),
        }
    }
    if errors.is_empty() { Ok(out) } else { Err(EngineError::Inputs(errors)) }
}

/// The run's subject: the first email input, else the first required input, else the name.
pub(super) fn pick_subject(plan: &Plan, inputs: &serde_json::Map<String, Value>) -> String {
    let pick = |pred: &dyn Fn(&crate::pipeline::model::InputSpec) -> bool| {
        plan.inputs
            .iter()
            .filter(|(_, s)| pred(s))
            .find_map(|(n, _)| inputs.get(n).and_then(Value::as_str).map(str::to_string))
    };
    pick(&|s| s.kind == crate::pipeline::InputType::Email)
        .or_else(|| pick(&|s| s.required))
        .unwrap_or_else(|| plan.name.clone())
}
