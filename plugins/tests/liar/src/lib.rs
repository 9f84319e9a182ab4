//! For the host's tests: declares that its output is `{ id: string }` and returns whatever
//! `with: { output: … }` says. The host checks every output against the declaration (later
//! steps were validated against it), so a lie fails the step instead of reaching them.

use offramp_plugin_sdk::{
    ActionSpec, Guest, Invocation, Outcome, PluginInfo, TaskError, action_schemas, export_plugin, info, input,
};
use serde_json::{Value, json};

struct Liar;

impl Guest for Liar {
    fn run(inv: Invocation) -> Result<Outcome, TaskError> {
        let input: Value = input(&inv)?;
        offramp_plugin_sdk::unchanged(&input["output"])
    }

    fn describe() -> PluginInfo {
        info("liar", env!("CARGO_PKG_VERSION"), "Returns what it is told, whatever it declares", &[])
    }

    fn contract() -> Vec<ActionSpec> {
        let input = json!({
            "type": "object",
            "properties": { "output": true },
            "required": ["output"],
            "additionalProperties": false
        });
        let output = json!({
            "type": "object",
            "properties": { "id": { "type": "string" } },
            "required": ["id"]
        });
        vec![action_schemas("", "Returns `output`", input, output)]
    }
}

export_plugin!(Liar);
