//! Builds the bundled plugins (`../plugins`, their own cargo workspace) for `wasm32-wasip2`,
//! so `cargo build` / `cargo run` leave ready components in `plugins/target/wasm32-wasip2/release`.
//! (Spin's test-components pattern.)

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest.parent().expect("runner/ has a parent").to_path_buf();
    let plugins = root.join("plugins");
    let target_dir = plugins.join("target");
    let out = target_dir.join("wasm32-wasip2").join("release");
    println!("cargo:rustc-env=OFFRAMP_BUILTIN_PLUGINS_DIR={}", out.display());
    println!("cargo:rerun-if-env-changed=OFFRAMP_SKIP_PLUGIN_BUILD");
    println!("cargo:rerun-if-env-changed=COMPONENTIZE_PY");
    println!("cargo:rerun-if-env-changed=COMPONENTIZE_JS");
    watch(&root.join("wit"));
    watch(&plugins);

    if std::env::var_os("OFFRAMP_SKIP_PLUGIN_BUILD").is_some() {
        println!("cargo:warning=OFFRAMP_SKIP_PLUGIN_BUILD is set: bundled plugins were not rebuilt");
        return;
    }

    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    if let Some(sysroot) = sysroot
        && !sysroot.join("lib/rustlib/wasm32-wasip2").is_dir()
    {
        panic!(
            "\n\nThe Rust target `wasm32-wasip2` is not installed, and offramp's plugins are built for it.\n\
             Fix: rustup target add wasm32-wasip2\n\n"
        );
    }

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&plugins)
        .args(["build", "--release", "--target", "wasm32-wasip2", "--quiet"])
        .env("CARGO_TARGET_DIR", &target_dir);
    // Don't leak the outer build's settings (clippy's wrapper, profile flags) into the guest build.
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        let leaky = (key.starts_with("CARGO_") && key != "CARGO_HOME" && key != "CARGO_TARGET_DIR")
            || key.starts_with("RUSTC")
            || matches!(
                key,
                "RUSTFLAGS"
                    | "RUSTDOCFLAGS"
                    | "TARGET"
                    | "HOST"
                    | "OPT_LEVEL"
                    | "PROFILE"
                    | "DEBUG"
                    | "NUM_JOBS"
                    | "OUT_DIR"
            );
        if leaky {
            cmd.env_remove(key);
        }
    }
    let status = cmd.status().unwrap_or_else(|e| panic!("cannot run cargo to build the plugins: {e}"));
    if !status.success() {
        panic!("building the plugins in {} failed (see the errors above)", plugins.display());
    }

    // Plugins in other languages, from the same WIT, into the same folder: each folder
    // `plugins/python/NAME` (with app.py) and `plugins/js/NAME` (with app.js) → `NAME.wasm`.
    let wit = root.join("wit");
    // One name, one plugin: `uses: NAME` must not depend on which language built last.
    let mut names: std::collections::BTreeMap<String, PathBuf> = std::fs::read_dir(&plugins)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join("Cargo.toml").is_file() && e.path().join("src/lib.rs").is_file())
        .filter_map(|e| Some((e.file_name().to_str()?.to_string(), e.path())))
        .collect();
    for (lang, entry, tool_var) in [("python", "app.py", "COMPONENTIZE_PY"), ("js", "app.js", "COMPONENTIZE_JS")] {
        let Ok(dirs) = std::fs::read_dir(plugins.join(lang)) else { continue };
        let mut dirs: Vec<PathBuf> = dirs.flatten().map(|e| e.path()).filter(|p| p.join(entry).is_file()).collect();
        dirs.sort();
        let Some(tool) = std::env::var_os(tool_var).map(PathBuf::from) else {
            if !dirs.is_empty() {
                println!(
                    "cargo:warning={tool_var} is not set: the {lang} plugins were not built \
                     (`source scripts/tools.sh` installs the tool and sets it)"
                );
            }
            continue;
        };
        for dir in dirs {
            let Some(name) = dir.file_name().and_then(|n| n.to_str()).map(str::to_string) else { continue };
            if let Some(other) = names.insert(name.clone(), dir.clone()) {
                panic!(
                    "two plugins are named `{name}` ({} and {}): rename one folder, since `uses: {name}` must mean one",
                    other.display(),
                    dir.display()
                );
            }
            let wasm = out.join(format!("{name}.wasm"));
            if is_fresh(&wasm, &[&dir, &wit, &tool]) {
                continue;
            }
            let mut cmd = Command::new(&tool);
            if lang == "python" {
                cmd.arg("-d").arg(&wit).args(["-w", "described-task", "componentize", "app", "-p"]).arg(&dir);
            } else {
                cmd.arg(dir.join(entry)).arg("--wit").arg(&wit).args(["-n", "described-task"]);
            }
            // Built beside, then renamed: a failed build never leaves a half-written NAME.wasm
            // that looks fresh next time.
            let partial = out.join(format!("{name}.wasm.partial"));
            cmd.arg("-o").arg(&partial);
            match cmd.status() {
                Ok(s) if s.success() => {
                    if let Err(e) = std::fs::rename(&partial, &wasm) {
                        panic!("cannot move {} into place: {e}", partial.display());
                    }
                }
                Ok(s) => {
                    let _ = std::fs::remove_file(&partial);
                    let hint = if lang == "js" { " (componentize-js needs `node` on PATH)" } else { "" };
                    panic!("{} failed ({s}) building the {lang} plugin {}{hint}", tool.display(), dir.display())
                }
                Err(e) => panic!(
                    "\n\nCannot run {} to build the {lang} plugin {}: {e}\n\
                     Fix: `source scripts/tools.sh` (scripts/test and scripts/demo do it for you)\n\n",
                    tool.display(),
                    dir.display()
                ),
            }
        }
    }
}

/// True when `out` exists and is newer than every file under `inputs`.
fn is_fresh(out: &Path, inputs: &[&Path]) -> bool {
    fn newest(path: &Path) -> Option<std::time::SystemTime> {
        let meta = std::fs::metadata(path).ok()?;
        if !meta.is_dir() {
            return meta.modified().ok();
        }
        std::fs::read_dir(path).ok()?.flatten().filter_map(|e| newest(&e.path())).max()
    }
    let Some(built) = std::fs::metadata(out).ok().and_then(|m| m.modified().ok()) else { return false };
    inputs.iter().all(|p| newest(p).is_some_and(|t| t < built))
}

/// Reruns this script when sources under `dir` change (not `target/`).
fn watch(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.file_name().is_some_and(|n| n == "target" || n == "node_modules" || n == "__pycache__") {
            continue;
        }
        if path.is_dir() {
            watch(&path);
        } else {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
}
