//! Pipeline validation: the example pipelines are valid, every file in pipelines/invalid/
//! yields exactly its golden `.err` text, and the committed JSON Schema is current. Validation
//! here is the full one `offramp validate` does: the bundled plugins' declared contracts are
//! loaded through a real sandbox.
//!
//! Regenerate the golden files after an intended change: `UPDATE_GOLDEN=1 cargo test -p offramp-tests --test validate`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use offramp::pipeline::{self, Diagnostic, LoadOptions};
use offramp::sandbox::Sandbox;

fn sandbox() -> Arc<Sandbox> {
    static SANDBOX: OnceLock<Arc<Sandbox>> = OnceLock::new();
    SANDBOX.get_or_init(|| Arc::new(Sandbox::new(Sandbox::default_cache_dir()).unwrap())).clone()
}

/// Validates like `offramp validate`: with the contracts of the plugins the text uses.
async fn check(text: &str, file: &Path) -> Result<pipeline::Plan, Vec<Diagnostic>> {
    let opts = pipeline::with_contracts(text, file, &opts(), &sandbox()).await;
    pipeline::validate::validate(text, file, &opts)
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn opts() -> LoadOptions {
    LoadOptions { plugins_dir: PathBuf::from(offramp::TEST_PLUGINS_DIR), ..Default::default() }
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

#[tokio::test]
async fn example_pipelines_are_valid_and_point_editors_at_the_schema() {
    let files = yaml_files(&root().join("pipelines"));
    assert!(!files.is_empty());
    for file in files {
        if let Err(e) = pipeline::load_checked(&file, &opts(), &sandbox()).await {
            panic!("{} should be valid:\n{e}", file.display());
        }
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            text.starts_with("# yaml-language-server: $schema=../schema/pipeline.schema.json"),
            "{} should reference the schema on its first line",
            file.display()
        );
    }
}

#[tokio::test]
async fn invalid_pipelines_give_their_golden_errors() {
    let dir = root().join("pipelines/invalid");
    let files = yaml_files(&dir);
    assert!(files.len() >= 20, "the corpus has {} files", files.len());
    let plugins = offramp::TEST_PLUGINS_DIR;
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut mismatches = Vec::new();
    for file in files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let shown = format!("pipelines/invalid/{name}");
        let bytes = std::fs::read(&file).unwrap();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let result = match pipeline::lint::decode(&bytes) {
            Ok(decoded) => check(decoded, &file).await,
            Err(d) => Err(vec![d]),
        };
        let actual = match result {
            Ok(_) => format!("{shown} is unexpectedly valid\n"),
            Err(diags) => pipeline::diag::render(&shown, &text, &diags),
        };
        let actual = actual.replace(plugins, "$PLUGINS").replace(&dir.display().to_string(), "pipelines/invalid");
        let golden = file.with_extension("err");
        if update {
            std::fs::write(&golden, &actual).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&golden).unwrap_or_else(|_| format!("(no {} yet)", golden.display()));
        if actual != expected {
            mismatches.push(format!("--- {name}\nexpected:\n{expected}\nactual:\n{actual}"));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} golden mismatches (UPDATE_GOLDEN=1 rewrites them):\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

#[tokio::test]
async fn every_error_has_a_location_and_a_caret() {
    for file in yaml_files(&root().join("pipelines/invalid")) {
        let bytes = std::fs::read(&file).unwrap();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let result = match pipeline::lint::decode(&bytes) {
            Ok(decoded) => check(decoded, &file).await,
            Err(d) => Err(vec![d]),
        };
        let Err(diags) = result else {
            panic!("{} should be invalid", file.display());
        };
        for d in &diags {
            assert!(d.loc.line >= 1 && d.loc.col >= 1, "{}: {d:?} has no location", file.display());
        }
        if !text.is_empty() {
            assert!(pipeline::diag::render("f", &text, &diags).contains('^'), "{}", file.display());
        }
    }
}

#[test]
fn committed_schema_matches_the_types() {
    let committed = std::fs::read_to_string(root().join("schema/pipeline.schema.json")).unwrap_or_default();
    let generated = serde_json::to_string_pretty(&pipeline::json_schema()).unwrap() + "\n";
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(root().join("schema/pipeline.schema.json"), &generated).unwrap();
        return;
    }
    assert!(
        committed == generated,
        "schema/pipeline.schema.json is stale: run `cargo run -- schema > schema/pipeline.schema.json`"
    );
}
