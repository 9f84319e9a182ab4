//! Plugin contracts: every catalog plugin declares one that parses; a plugin built against
//! `offramp:plugin@0.1.0` (before contracts) still loads, runs and validates as before; and a
//! plugin whose output breaks its own declaration fails the step, because later steps were
//! validated against that declaration.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use offramp::http::GateClient;
use offramp::pipeline::{self, Declared, LoadOptions};
use offramp::sandbox::{AttemptResult, FailureKind, Invoke, Sandbox};
use serde_json::json;

fn plugins() -> PathBuf {
    PathBuf::from(offramp::TEST_PLUGINS_DIR)
}

/// One sandbox for the file's tests (compiling the Python and JavaScript components once).
fn sandbox() -> Arc<Sandbox> {
    static SANDBOX: std::sync::OnceLock<Arc<Sandbox>> = std::sync::OnceLock::new();
    SANDBOX.get_or_init(|| Arc::new(Sandbox::new(Sandbox::default_cache_dir()).unwrap())).clone()
}

async fn invoke(sandbox: &Sandbox, plugin: &str, input: serde_json::Value) -> AttemptResult {
    let plugin = sandbox.plugin(&plugins().join(format!("{plugin}.wasm"))).unwrap();
    let client = GateClient::new(Default::default()).unwrap();
    let inv = Invoke {
        input,
        allow: vec![],
        credentials: vec![],
        timeout: Duration::from_secs(10),
        memory_bytes: 64 << 20,
        dry_run: false,
    };
    sandbox.invoke(&plugin, &client, inv).await.result
}

async fn validate(sandbox: &Arc<Sandbox>, dir: &Path, yaml: &str) -> Result<pipeline::Plan, String> {
    let file = dir.join("p.yaml");
    std::fs::write(&file, yaml).unwrap();
    let opts = LoadOptions { plugins_dir: plugins(), ..Default::default() };
    pipeline::load_checked(&file, &opts, sandbox).await.map_err(|e| e.to_string())
}

#[tokio::test]
async fn every_catalog_plugin_declares_a_contract_with_both_schemas_for_each_action() {
    let sandbox = sandbox();
    for name in ["okta", "google", "graph", "slack", "github", "http", "zoom", "atlassian", "notify"] {
        let Declared::Contract(c) = sandbox.declared(&plugins().join(format!("{name}.wasm"))).await else {
            panic!("{name} declares no usable contract");
        };
        assert!(!c.actions.is_empty(), "{name}");
        for a in &c.actions {
            assert!(a.input.is_some() && a.output.is_some(), "{name} `{}` leaves a schema undeclared", a.name);
            assert!(!a.description.is_empty(), "{name} `{}` has no description", a.name);
        }
    }
}

#[tokio::test]
async fn a_plugin_built_for_0_1_0_loads_runs_and_is_validated_as_before() {
    let sandbox = sandbox();
    let legacy = plugins().join("legacy.wasm");
    assert!(matches!(sandbox.declared(&legacy).await, Declared::Nothing));
    // Any `with:`, any output field: nothing declared, nothing to check against.
    let dir = tempfile::tempdir().unwrap();
    let yaml = "version: 1\nname: p\nsteps:\n  - id: a\n    uses: legacy\n    with: { anything: [1, 2], at: all }\n  - id: b\n    needs: [a]\n    uses: legacy\n    with: { x: \"{{ steps.a.output.echo.at }}\" }\n";
    let plan = validate(&sandbox, dir.path(), yaml).await.unwrap();
    assert_eq!(plan.steps.len(), 2);
    // Its imports (offramp:plugin/*@0.1.0) resolve to this host's 0.1.1, and it runs.
    match invoke(&sandbox, "legacy", json!({ "at": "all" })).await {
        AttemptResult::Done { output, .. } => assert_eq!(output, json!({ "echo": { "at": "all" } })),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn an_output_that_breaks_the_declaration_fails_the_step() {
    let sandbox = sandbox();
    // What it declares, it may return.
    match invoke(&sandbox, "liar", json!({ "output": { "id": "00u1", "extra": true } })).await {
        AttemptResult::Done { output, .. } => assert_eq!(output["id"], "00u1"),
        other => panic!("{other:?}"),
    }
    // A lie about a field's type, or a missing field, is a permanent failure saying where.
    for (output, expected) in [
        (json!({ "id": 3 }), "at `/id`"),
        (json!({ "name": "x" }), "\"id\" is a required property"),
        (json!([1, 2]), "is not of type \"object\""),
    ] {
        match invoke(&sandbox, "liar", json!({ "output": output })).await {
            AttemptResult::Failed { kind, message, .. } => {
                assert_eq!(kind, FailureKind::Permanent);
                assert!(message.starts_with("the plugin's output is not what liar declares: "), "{message}");
                assert!(message.contains(expected), "{message}");
            }
            other => panic!("{output}: {other:?}"),
        }
    }
    // And what later steps read is checked against the same declaration.
    let dir = tempfile::tempdir().unwrap();
    let step = |id: &str, needs: &str, out: &str| {
        format!("  - id: {id}\n    uses: liar\n{needs}    with: {{ output: {out} }}\n")
    };
    let ok = format!(
        "version: 1\nname: p\nsteps:\n{}{}",
        step("a", "", "{ id: x }"),
        step("b", "    needs: [a]\n", "{ id: \"{{ steps.a.output.id }}\" }")
    );
    validate(&sandbox, dir.path(), &ok).await.unwrap();
    let bad = ok.replace("steps.a.output.id", "steps.a.output.name");
    let err = validate(&sandbox, dir.path(), &bad).await.unwrap_err();
    assert!(err.contains("`steps.a.output` has no field `name`: liar declares only id"), "{err}");
}
