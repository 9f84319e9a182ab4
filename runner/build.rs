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
}

/// Reruns this script when sources under `dir` change (not `target/`).
fn watch(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.file_name().is_some_and(|n| n == "target") {
            continue;
        }
        if path.is_dir() {
            watch(&path);
        } else {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
}
