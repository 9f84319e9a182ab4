//! `offramp plugin new --lang rust|python|js NAME`: a plugin project that builds and runs as
//! generated. Each holds a copy of the plugin interface (`wit/plugin.wit`), the plugin (a user
//! lookup with the usual error handling: 404 → unchanged, 429/5xx → transient with the wait,
//! other 4xx → permanent), and a README with the build command and how to try it with
//! `offramp plugin run`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::ValueEnum;

/// The plugin interface, as the host was built with it.
const WIT: &str = include_str!("../../../wit/plugin.wit");

/// A language `plugin new` can start a plugin in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Lang {
    Rust,
    Python,
    Js,
}

/// Checks a plugin name: it becomes a file name, a crate name and `uses: NAME`.
pub(crate) fn check_name(name: &str) -> Result<(), String> {
    // Names a Rust crate can't take, or that would shadow what the generated code uses.
    const RESERVED: &[&str] = &["test", "std", "core", "alloc", "proc_macro", "serde_json", "wit_bindgen", "offramp"];
    if RESERVED.contains(&name) {
        return Err(format!("`{name}` is taken (a crate the plugin uses, or a name cargo refuses); try `{name}_step`"));
    }
    let ok = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 64;
    if ok {
        Ok(())
    } else {
        let hint = name.to_ascii_lowercase().replace(['-', ' ', '.'], "_");
        Err(format!(
            "`{name}` is not a plugin name: use lowercase letters, digits and `_`, starting with a letter \
             (e.g. `{hint}`); it becomes `uses: NAME` and NAME.wasm"
        ))
    }
}

/// The files of a new plugin project, as (relative path, contents).
pub(crate) fn files(lang: Lang, name: &str) -> Vec<(&'static str, String)> {
    let fill = |template: &str| template.replace("__NAME__", name).replace("__CRATE__", name);
    let mut files = vec![("wit/plugin.wit", WIT.to_string()), ("README.md", readme(lang, name))];
    match lang {
        Lang::Rust => {
            files.push(("Cargo.toml", fill(include_str!("scaffold/Cargo.toml.in"))));
            files.push(("src/lib.rs", fill(include_str!("scaffold/lib.rs.in"))));
            files.push((".gitignore", "/target\n".into()));
        }
        Lang::Python => {
            files.push(("app.py", fill(include_str!("scaffold/app.py.in"))));
            files.push((".gitignore", "*.wasm\n__pycache__/\n".into()));
        }
        Lang::Js => {
            files.push(("app.js", fill(include_str!("scaffold/app.js.in"))));
            files.push(("package.json", fill(include_str!("scaffold/package.json.in"))));
            files.push((".gitignore", "*.wasm\nnode_modules/\n".into()));
        }
    }
    files
}

/// The command that builds the plugin, run in its folder, and the component it leaves.
pub(crate) fn build_command(lang: Lang, name: &str) -> (&'static str, String) {
    match lang {
        Lang::Rust => {
            ("cargo build --release --target wasm32-wasip2", format!("target/wasm32-wasip2/release/{name}.wasm"))
        }
        Lang::Python => {
            ("componentize-py -d wit -w described-task componentize app -o NAME.wasm", format!("{name}.wasm"))
        }
        Lang::Js => ("npm install && npm run build", format!("{name}.wasm")),
    }
}

fn readme(lang: Lang, name: &str) -> String {
    let (build, wasm) = build_command(lang, name);
    let build = build.replace("NAME", name);
    let tool = match lang {
        Lang::Rust => "Rust with the wasm32-wasip2 target (`rustup target add wasm32-wasip2`)",
        Lang::Python => "componentize-py (`pip install componentize-py==0.25.1`)",
        Lang::Js => "Node.js 18+ (npm installs componentize-js from package.json)",
    };
    format!(
        "# {name}\n\nAn offramp step plugin. Needs {tool}.\n\n\
         Build:\n\n    {build}\n\n\
         Try it against offramp's mock SaaS (in another terminal: `offramp mock --listen 127.0.0.1:8900`):\n\n    \
         offramp --allow-private 127.0.0.1 plugin run {wasm} \\\n      \
         --input '{{\"api_url\": \"http://127.0.0.1:8900/__echo\", \"user\": \"alice\"}}' \\\n      \
         --allow http://127.0.0.1:8900\n\n\
         Use it in a pipeline (copy {name}.wasm next to the pipeline, or into the plugins folder):\n\n\
         ```yaml\n  - id: look_up\n    uses: ./{name}.wasm\n    with:\n      api_url: https://api.example.com\n      \
         user: \"{{{{ inputs.email }}}}\"\n    allow: [https://api.example.com]\n    credentials:\n      \
         - {{ host: https://api.example.com, secret: EXAMPLE_API_TOKEN, format: \"Bearer {{secret}}\" }}\n```\n\n\
         The interface is `wit/plugin.wit`; the guide is offramp's docs/plugins.md.\n"
    )
}

/// Writes the project into `dir/NAME` (which must not exist) and returns that folder.
pub(crate) fn create(lang: Lang, name: &str, dir: &Path) -> Result<PathBuf> {
    check_name(name).map_err(anyhow::Error::msg)?;
    let root = dir.join(name);
    if root.exists() {
        bail!("{} already exists; pick another name or remove it", root.display());
    }
    for (rel, contents) in files(lang, name) {
        let path = root.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_with_a_suggestion() {
        assert!(check_name("zoom_deactivate").is_ok());
        let err = check_name("Zoom-Deactivate").unwrap_err();
        assert!(err.contains("e.g. `zoom_deactivate`"), "{err}");
        assert!(check_name("1zoom").is_err());
        assert!(check_name("test").unwrap_err().contains("try `test_step`"));
        assert!(check_name("").is_err());
    }

    #[test]
    fn every_language_gets_the_interface_and_its_name_filled_in() {
        for lang in [Lang::Rust, Lang::Python, Lang::Js] {
            let files = files(lang, "hello");
            assert!(files.iter().any(|(p, c)| *p == "wit/plugin.wit" && c.contains("package offramp:plugin@")));
            assert!(files.iter().all(|(_, c)| !c.contains("__NAME__") && !c.contains("__CRATE__")), "{lang:?}");
            let readme = &files.iter().find(|(p, _)| *p == "README.md").unwrap().1;
            assert!(readme.contains("plugin run") && readme.contains("hello.wasm"), "{readme}");
        }
    }

    /// docs/plugins.md shows the generated files verbatim (for `hello`), so what the guide
    /// shows is what `plugin new` writes, which the CLI test builds and runs in each language.
    #[test]
    fn the_guide_shows_exactly_what_plugin_new_writes() {
        let guide = include_str!("../../../docs/plugins.md");
        for lang in [Lang::Rust, Lang::Python, Lang::Js] {
            for (path, contents) in files(lang, "hello") {
                if matches!(path, "src/lib.rs" | "Cargo.toml" | "app.py" | "app.js" | "package.json") {
                    assert!(guide.contains(&contents), "docs/plugins.md is out of date with the {path} template");
                    let lines = contents.lines().count();
                    assert!(path.ends_with(".toml") || path.ends_with(".json") || lines <= 40, "{path}: {lines} lines");
                }
            }
        }
    }

    #[test]
    fn an_existing_folder_is_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        create(Lang::Python, "hello", dir.path()).unwrap();
        let err = create(Lang::Python, "hello", dir.path()).unwrap_err();
        assert!(err.to_string().contains("already exists"), "{err}");
    }
}
