//! Replays the fuzzers' corpora (fuzz/corpus/<target>/, seeds plus whatever the fuzzers kept)
//! through the same entry points the cargo-fuzz targets call, so every input that once
//! mattered stays a regression test. The pipeline target also replays every example and
//! golden pipeline.

use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn files(dirs: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for dir in dirs {
        let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for e in entries {
            let path = e.unwrap().path();
            if path.is_file() && path.extension().is_none_or(|x| x != "err") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn replay(target: &str, extra: &[&str], entry: fn(&[u8])) {
    let mut dirs = vec![repo().join("fuzz/corpus").join(target)];
    dirs.extend(extra.iter().map(|d| repo().join(d)));
    let inputs = files(&dirs);
    assert!(inputs.len() >= 3, "{target}: the corpus is missing ({} inputs)", inputs.len());
    for path in &inputs {
        let data = std::fs::read(path).unwrap();
        let shown = path.strip_prefix(repo()).unwrap_or(Path::new("?")).display().to_string();
        if std::panic::catch_unwind(|| entry(&data)).is_err() {
            panic!("{target}: {shown} crashes the target");
        }
    }
}

#[test]
fn pipeline_corpus() {
    replay("pipeline", &["pipelines", "pipelines/invalid"], offramp::pipeline::fuzz);
}

#[test]
fn slack_signature_corpus() {
    replay("slack_signature", &[], offramp::slack::fuzz::signature);
}

#[test]
fn slack_command_corpus() {
    replay("slack_command", &[], offramp::slack::fuzz::command);
}

#[test]
fn slack_interaction_corpus() {
    replay("slack_interaction", &[], offramp::slack::fuzz::interaction);
}
