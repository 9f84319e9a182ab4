//! Builds the Python plugin (plugins/python/notify) with componentize-py, so the end-to-end
//! tests can run a plugin written in a language other than Rust.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest.parent().expect("tests/ has a parent").to_path_buf();
    let wit = root.join("wit");
    let app = root.join("plugins/python/notify");
    let out_dir = root.join("plugins/target/python");
    let out = out_dir.join("notify_py.wasm");
    println!("cargo:rerun-if-changed={}", wit.join("plugin.wit").display());
    println!("cargo:rerun-if-changed={}", app.join("app.py").display());
    println!("cargo:rerun-if-env-changed=COMPONENTIZE_PY");
    println!("cargo:rustc-env=OFFRAMP_PYTHON_PLUGIN={}", out.display());

    let tool = std::env::var("COMPONENTIZE_PY").unwrap_or_else(|_| "componentize-py".into());
    let _ = std::fs::create_dir_all(&out_dir);
    let status = Command::new(&tool)
        .arg("-d")
        .arg(&wit)
        .args(["-w", "task", "componentize", "app", "-p"])
        .arg(&app)
        .arg("-o")
        .arg(&out)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!("componentize-py failed ({s}) building {}", app.display()),
        Err(e) => panic!(
            "\n\nThe end-to-end tests run a plugin written in Python, built with componentize-py, \
             which cannot be run here ({tool}: {e}).\n\
             Fix: pip install componentize-py==0.25.1   (scripts/test does this for you)\n\n"
        ),
    }
}
