//! A plugin as it was written for `offramp:plugin@0.1.0`: the `task` world, no `contract()`.
//! Its WIT is a frozen copy (`wit/plugin.wit`), not the current one, so the host's tests prove
//! that a plugin built before contracts existed still loads, runs, and is validated as before
//! (no type checks of its `with:` or output).

#[allow(clippy::all)]
mod bindings {
    wit_bindgen::generate!({ path: "wit", world: "task" });
}

use bindings::offramp::plugin::types::{Change, InputSpec};
use bindings::{Guest, Invocation, Outcome, PluginInfo, TaskError};

struct Legacy;

impl Guest for Legacy {
    /// Returns its input, whatever it is, as its output.
    fn run(inv: Invocation) -> Result<Outcome, TaskError> {
        Ok(Outcome { output: format!("{{\"echo\":{}}}", inv.input), change: Change::Unchanged })
    }

    fn describe() -> PluginInfo {
        PluginInfo {
            name: "legacy".into(),
            version: "0.1.0".into(),
            description: "Echoes its input (built against offramp:plugin@0.1.0)".into(),
            inputs: vec![InputSpec {
                name: "anything".into(),
                type_name: "object".into(),
                required: false,
                description: "any keys at all".into(),
            }],
        }
    }
}

bindings::export!(Legacy with_types_in bindings);
