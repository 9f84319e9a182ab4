//! Builds the bundled plugins (`../plugins`, their own cargo workspace) for `wasm32-wasip2`,
//! so `cargo build` / `cargo run` leave ready components in `plugins/target/wasm32-wasip2/release`.
//! (Spin's test-components pattern.)
//!
//! Then the plugins only tests use (`../plugins/tests`, another workspace) into
//! `plugins/tests/target/wasm32-wasip2/release`, which the binary never searches, and makes
//! `plugins/tests/target/all/`: a link to every bundled plugin and every test plugin, the one
//! plugins directory the tests and benches use (`OFFRAMP_TEST_PLUGINS_DIR`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest.parent().expect("runner/ has a parent").to_path_buf();
    let plugins = root.join("plugins");
    let target_dir = plugins.join("target");
    let out = target_dir.join("wasm32-wasip2").join("release");
    let tests = plugins.join("tests");
    let tests_target = tests.join("target");
    let tests_out = tests_target.join("wasm32-wasip2").join("release");
    let all = tests_target.join("all");
    println!("cargo:rustc-env=OFFRAMP_BUILTIN_PLUGINS_DIR={}", out.display());
    println!("cargo:rustc-env=OFFRAMP_TEST_PLUGINS_DIR={}", all.display());
    println!("cargo:rerun-if-env-changed=OFFRAMP_SKIP_PLUGIN_BUILD");
    println!("cargo:rerun-if-env-changed=COMPONENTIZE_PY");
    println!("cargo:rerun-if-env-changed=COMPONENTIZE_JS");
    watch(&root.join("wit"));
    watch(&plugins);

    // The test plugins: none may share a name with a bundled plugin, since the tests' folder
    // holds both; and none stays in the bundled folder, where builds from before the test plugins
    // had their own workspace left them.
    let bundled = bundled_names(&plugins);
    for (name, dir) in rust_plugins(&tests) {
        if let Some(other) = bundled.get(&name) {
            panic!(
                "a test plugin and a bundled plugin are both named `{name}` ({} and {}): rename one folder",
                dir.display(),
                other.display()
            );
        }
        let _ = std::fs::remove_file(out.join(format!("{name}.wasm")));
    }

    if std::env::var_os("OFFRAMP_SKIP_PLUGIN_BUILD").is_some() {
        println!("cargo:warning=OFFRAMP_SKIP_PLUGIN_BUILD is set: bundled and test plugins were not rebuilt");
        link_all(&all, &[&out, &tests_out]);
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

    cargo_build(&plugins, &target_dir);

    // Plugins in other languages, from the same WIT, into the same folder: each folder
    // `plugins/python/NAME` (with app.py) and `plugins/js/NAME` (with app.js) → `NAME.wasm`.
    let wit = root.join("wit");
    // One name, one plugin: `uses: NAME` must not depend on which language built last.
    let mut names = rust_plugins(&plugins);
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

    // The test plugins: their own workspace, their own output folder.
    cargo_build(&tests, &tests_target);
    link_all(&all, &[&out, &tests_out]);
}

/// Builds the guest workspace at `workspace` for `wasm32-wasip2` (release) into `target_dir`.
fn cargo_build(workspace: &Path, target_dir: &Path) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace)
        .args(["build", "--release", "--target", "wasm32-wasip2", "--quiet"])
        .env("CARGO_TARGET_DIR", target_dir);
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
        panic!("building the plugins in {} failed (see the errors above)", workspace.display());
    }
}

/// The Rust plugins of a guest workspace: each folder with a Cargo.toml and a src/lib.rs, by name.
fn rust_plugins(dir: &Path) -> BTreeMap<String, PathBuf> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join("Cargo.toml").is_file() && e.path().join("src/lib.rs").is_file())
        .filter_map(|e| Some((e.file_name().to_str()?.to_string(), e.path())))
        .collect()
}

/// Every bundled plugin's name: the Rust ones, and each `python/NAME` and `js/NAME` folder.
fn bundled_names(plugins: &Path) -> BTreeMap<String, PathBuf> {
    let mut names = rust_plugins(plugins);
    for (lang, entry) in [("python", "app.py"), ("js", "app.js")] {
        for dir in std::fs::read_dir(plugins.join(lang)).into_iter().flatten().flatten() {
            if let Some(name) = dir.file_name().to_str().filter(|_| dir.path().join(entry).is_file()) {
                names.insert(name.to_string(), dir.path());
            }
        }
    }
    names
}

/// Makes `all` hold a link to every `*.wasm` in `dirs` (and nothing else), so one plugins
/// directory finds bundled and test plugins alike. Links, not copies: a plugin rebuilt by hand is
/// seen at once, and the sandbox, which keys plugins by canonical path, sees the same file
/// whichever folder named it. Each link is replaced in one rename, so a test running meanwhile
/// never finds a plugin missing.
fn link_all(all: &Path, dirs: &[&Path]) {
    let mut wanted: BTreeMap<std::ffi::OsString, PathBuf> = BTreeMap::new();
    for dir in dirs {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|x| x == "wasm") && path.is_file() {
                wanted.entry(entry.file_name()).or_insert(path);
            }
        }
    }
    if let Err(e) = std::fs::create_dir_all(all) {
        panic!("cannot create {}: {e}", all.display());
    }
    for entry in std::fs::read_dir(all).into_iter().flatten().flatten() {
        if !wanted.contains_key(&entry.file_name()) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    for (name, target) in &wanted {
        let link = all.join(name);
        if std::fs::read_link(&link).is_ok_and(|t| &t == target) {
            continue;
        }
        let mut partial = name.clone();
        partial.push(".partial");
        let partial = all.join(partial);
        let _ = std::fs::remove_file(&partial);
        if let Err(e) = make_link(target, &partial).and_then(|()| std::fs::rename(&partial, &link)) {
            panic!("cannot link {} to {}: {e}", link.display(), target.display());
        }
    }
}

#[cfg(unix)]
fn make_link(target: &Path, link: &Path) -> std::io::Result<()> {
    std::os::unix::fs::symlink(target, link)
}

#[cfg(not(unix))]
fn make_link(target: &Path, link: &Path) -> std::io::Result<()> {
    std::fs::copy(target, link).map(|_| ())
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
