//! The pipeline file: its YAML model, templating, and validation with located errors.

pub(crate) mod access;
pub mod contract;
pub mod diag;
pub(crate) mod expr;
pub mod lint;
pub mod model;
pub mod origin;
pub mod plan;
pub(crate) mod refs;
pub(crate) mod schema;
pub mod template;
pub mod validate;
pub mod yaml;

use std::path::{Path, PathBuf};

pub use contract::{ActionDecl, Contract, ContractBook, ContractLoader, Declared};
pub use diag::Diagnostic;
pub use model::{InputType, OnFailure, Pipeline};
pub use origin::{Grant, Origin};
pub use plan::{CredentialPlan, Plan, RetryPlan, StepPlan, coerce_input};
pub use validate::LoadOptions;

/// A pipeline file that failed to load: every problem, ready to print.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{}", diag::render(.path, .source_text, .diagnostics))]
    Invalid { path: String, source_text: String, diagnostics: Vec<Diagnostic> },
}

/// Reads a pipeline file's text; a file that is not UTF-8 is invalid, with the place why.
pub fn read(path: &Path) -> Result<String, LoadError> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| LoadError::Read { path: shown.clone(), source })?;
    match lint::decode(&bytes) {
        Ok(text) => Ok(text.to_string()),
        Err(d) => Err(LoadError::Invalid {
            path: shown,
            source_text: String::from_utf8_lossy(&bytes).into_owned(),
            diagnostics: vec![d],
        }),
    }
}

/// Reads and validates a pipeline file.
pub fn load(path: &Path, opts: &LoadOptions) -> Result<Plan, LoadError> {
    let shown = path.display().to_string();
    let text = read(path)?;
    validate::validate(&text, path, opts).map_err(|diagnostics| LoadError::Invalid {
        path: shown,
        source_text: text,
        diagnostics,
    })
}

/// Reads and validates a pipeline file, applying only the operator vars it declares (a server
/// sets vars for all its pipelines; each pipeline takes the ones it has).
pub fn load_declared(path: &Path, opts: &LoadOptions) -> Result<Plan, LoadError> {
    let text = read(path)?;
    let opts = only_declared(&text, opts);
    validate::validate(&text, path, &opts).map_err(|diagnostics| LoadError::Invalid {
        path: path.display().to_string(),
        source_text: text,
        diagnostics,
    })
}

fn only_declared(text: &str, opts: &LoadOptions) -> LoadOptions {
    let declared = declared_vars(text);
    LoadOptions {
        vars: opts.vars.iter().filter(|(k, _)| declared.contains(*k)).map(|(k, v)| (k.clone(), v.clone())).collect(),
        ..opts.clone()
    }
}

/// [`load`], type-checked against the contracts the pipeline's plugins declare (loaded through
/// `loader`, the sandbox): what `validate`, `run`, `serve` and the Slack confirmation use.
pub async fn load_checked(path: &Path, opts: &LoadOptions, loader: &impl ContractLoader) -> Result<Plan, LoadError> {
    check(read(path)?, path, opts, false, loader).await
}

/// [`load_declared`], type-checked like [`load_checked`].
pub async fn load_declared_checked(
    path: &Path,
    opts: &LoadOptions,
    loader: &impl ContractLoader,
) -> Result<Plan, LoadError> {
    check_declared(read(path)?, path, opts, loader).await
}

/// [`load_declared_checked`] of text already read from `path`.
pub async fn check_declared(
    text: String,
    path: &Path,
    opts: &LoadOptions,
    loader: &impl ContractLoader,
) -> Result<Plan, LoadError> {
    check(text, path, opts, true, loader).await
}

/// Validates text read from `path` with its plugins' contracts, parsing the YAML once (the
/// plugins it uses and, with `declared_only`, the vars it declares come from the same tree).
async fn check(
    text: String,
    path: &Path,
    opts: &LoadOptions,
    declared_only: bool,
    loader: &impl ContractLoader,
) -> Result<Plan, LoadError> {
    let parsed = yaml::parse(&text);
    let opts = match &parsed {
        Ok(root) => {
            let mut opts = opts.clone();
            if declared_only {
                let declared: std::collections::BTreeSet<&str> = match root.get("vars").map(|v| &v.kind) {
                    Some(yaml::NodeKind::Map(entries)) => entries.iter().filter_map(|(k, _)| k.as_str()).collect(),
                    _ => Default::default(),
                };
                opts.vars.retain(|k, _| declared.contains(k.as_str()));
            }
            let plugins = validate::plugins_used(root, path, &opts);
            with_contracts_of(plugins, &opts, loader).await
        }
        Err(_) => opts.clone(), // validation reports the syntax error, before vars matter
    };
    validate::validate_parsed(&text, path, &opts, parsed).map_err(|diagnostics| LoadError::Invalid {
        path: path.display().to_string(),
        source_text: text,
        diagnostics,
    })
}

/// `opts` plus the contracts of every plugin file the pipeline text uses.
pub async fn with_contracts(text: &str, file: &Path, opts: &LoadOptions, loader: &impl ContractLoader) -> LoadOptions {
    match yaml::parse(text) {
        Ok(root) => with_contracts_of(validate::plugins_used(&root, file, opts), opts, loader).await,
        Err(_) => opts.clone(),
    }
}

async fn with_contracts_of(plugins: Vec<PathBuf>, opts: &LoadOptions, loader: &impl ContractLoader) -> LoadOptions {
    let mut book = std::collections::HashMap::new();
    for plugin in plugins {
        if plugin.is_file() && !book.contains_key(&plugin) {
            let declared = loader.load_contract(&plugin).await;
            book.insert(plugin, declared);
        }
    }
    LoadOptions { contracts: ContractBook::new(book), ..opts.clone() }
}

/// Entry point for the cargo-fuzz target (fuzz/) and its corpus replay: validates arbitrary
/// bytes as a pipeline and renders every diagnostic (source line and caret). Must not panic.
#[doc(hidden)]
pub fn fuzz(data: &[u8]) {
    let text = match lint::decode(data) {
        Ok(text) => text,
        Err(d) => {
            let _ = diag::render("fuzz.yaml", &String::from_utf8_lossy(data), &[d]);
            return;
        }
    };
    let opts = LoadOptions {
        // The bundled plugins and the test ones (`testkit`…), as the golden corpus uses them.
        plugins_dir: std::path::PathBuf::from(crate::TEST_PLUGINS_DIR),
        contracts: fuzz_contracts(),
        ..Default::default()
    };
    if let Err(diagnostics) = validate::validate(text, Path::new("fuzz.yaml"), &opts) {
        assert!(!diagnostics.is_empty(), "an invalid pipeline must say why");
        let _ = diag::render("fuzz.yaml", text, &diagnostics);
    }
    let _ = declared_vars(text);
}

/// Contracts for the fuzz target, so it reaches the type checks without a sandbox: `okta`
/// (named actions, typed input and nested output), `echo` (one unnamed action, open output),
/// `legacy` (declares nothing) and `junk` (not a component).
fn fuzz_contracts() -> ContractBook {
    use serde_json::json;
    static BOOK: std::sync::OnceLock<ContractBook> = std::sync::OnceLock::new();
    BOOK.get_or_init(|| {
        let dir = Path::new(crate::TEST_PLUGINS_DIR);
        let input = |action: &str| {
            json!({ "type": "object", "additionalProperties": false, "required": ["action", "org_url", "user"],
                "properties": { "action": { "const": action }, "org_url": { "type": "string" },
                    "user": { "type": "string", "minLength": 1 }, "poll_wait_ms": { "type": "integer", "minimum": 0 },
                    "mode": { "enum": ["soft", "hard"] } } })
        };
        let output = json!({ "type": "object", "required": ["id"], "properties": { "id": { "type": "string" },
            "status": { "type": ["string", "null"] }, "groups": { "type": "array", "items": { "$ref": "#/$defs/G" } } },
            "$defs": { "G": { "type": "object", "properties": { "name": { "type": "string" } }, "additionalProperties": false } } });
        let decl = |name: &str, input: serde_json::Value, output: &serde_json::Value| ActionDecl {
            name: name.into(),
            description: name.into(),
            input_schema: input.to_string(),
            output_schema: output.to_string(),
        };
        let okta = ["lookup", "suspend", "remove_groups"].map(|a| decl(a, input(a), &output)).to_vec();
        let echo = vec![decl("", json!({ "type": "object" }), &json!({}))];
        let mut book = std::collections::HashMap::new();
        for (name, decls) in [("okta", okta), ("echo", echo)] {
            if let Ok(Some(c)) = Contract::parse(name, decls) {
                book.insert(dir.join(format!("{name}.wasm")), Declared::Contract(std::sync::Arc::new(c)));
            }
        }
        book.insert(dir.join("legacy.wasm"), Declared::Nothing);
        book.insert(dir.join("junk.wasm"), Declared::Unusable("this file is not WebAssembly".into()));
        ContractBook::new(book)
    })
    .clone()
}

/// The names under a pipeline's `vars:` (none if it does not parse; validation says why).
pub fn declared_vars(text: &str) -> std::collections::BTreeSet<String> {
    #[derive(serde::Deserialize)]
    struct VarsOnly {
        #[serde(default)]
        vars: std::collections::BTreeMap<String, serde::de::IgnoredAny>,
    }
    serde_saphyr::from_str_with_options::<VarsOnly>(text, yaml::options())
        .map(|v| v.vars.into_keys().collect())
        .unwrap_or_default()
}

/// The JSON Schema of the pipeline format, generated from the Rust types.
pub fn json_schema() -> serde_json::Value {
    let schema = schemars::schema_for!(validate::Document);
    serde_json::to_value(schema).unwrap_or_default()
}
