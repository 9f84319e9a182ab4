//! Validation: from YAML text to a [`Plan`] the engine can run, or every error at once.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::de::IgnoredAny;
use serde_json::json;

use super::access::{check_credential, grant, origin, within_cap};
use super::contract::{self, Contract, ContractBook, Declared};
use super::diag::Diagnostic;
use super::model::{self, InputSpec, InputType, Pipeline, PipelineDoc, Step};
pub use super::origin::{Grant, Origin};
use super::plan::{Plan, RetryPlan, StepPlan, coerce_input};
use super::refs::{Scope, Source, StepOutput};
use super::yaml::{self, Loc, Node, NodeKind, Spanned};

/// Where to find things the pipeline names, and the operator's `--var` overrides.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Where `uses: NAME` looks for `NAME.wasm`.
    pub plugins_dir: PathBuf,
    /// Operator overrides of `vars:`.
    pub vars: BTreeMap<String, String>,
    /// The operator's cap (`network.allow` in the server config): every `allow:` entry of
    /// every step must fall inside one of these. `None`: no cap.
    pub allow_cap: Option<Vec<Origin>>,
    /// The plugins' declared contracts, by plugin path (see [`super::load_checked`]); a plugin
    /// missing here is checked without one.
    pub contracts: ContractBook,
}

/// Validates pipeline text. `file` is only used to resolve relative plugin paths.
pub fn validate(text: &str, file: &Path, opts: &LoadOptions) -> Result<Plan, Vec<Diagnostic>> {
    validate_parsed(text, file, opts, yaml::parse(text))
}

/// [`validate`] of text already parsed (`parsed` is `yaml::parse(text)`'s answer).
pub(crate) fn validate_parsed(
    text: &str,
    file: &Path,
    opts: &LoadOptions,
    parsed: Result<Node, Diagnostic>,
) -> Result<Plan, Vec<Diagnostic>> {
    let mut diags = Vec::new();
    // Indentation YAML does not see as indentation: the structure below it is wrong, so its
    // errors would only mislead.
    let spaces = super::lint::indentation(text);
    if !spaces.is_empty() {
        return Err(spaces);
    }
    let root = parsed.map_err(|d| vec![d])?;
    if !matches!(root.kind, NodeKind::Map(_)) {
        return Err(vec![Diagnostic::new(root.loc, "a pipeline is a mapping that starts with `version: 1`")]);
    }

    // The outer shape: unknown top-level keys, version, name. Inputs and steps are kept as
    // nodes and deserialized one by one, so an error in one does not hide errors in the next.
    let shell: Option<PipelineDoc<IgnoredAny, IgnoredAny>> = match yaml::from_node(&root) {
        Ok(shell) => Some(shell),
        Err(e) => {
            diags.push(Diagnostic::from_de(e, root.loc));
            None
        }
    };
    if let Some(shell) = &shell {
        if *shell.version != 1 {
            diags.push(Diagnostic::new(
                shell.version.loc,
                format!("unsupported version {}; this offramp reads `version: 1`", *shell.version),
            ));
        }
        if shell.name.trim().is_empty() {
            diags.push(Diagnostic::new(shell.name.loc, "`name` must not be empty"));
        }
        if let Some(a) = shell.approval
            && !(1..=5).contains(&a.approvers)
        {
            let loc = root.get("approval").map_or(root.loc, |n| n.get("approvers").map_or(n.loc, |n| n.loc));
            diags.push(Diagnostic::new(
                loc,
                format!(
                    "`approvers: {}` is out of range: 1 to 5 other approved users (remove `approval:` to let the requester start alone)",
                    a.approvers
                ),
            ));
        }
        if let Some(a) = shell.approval
            && a.approvers == 1
            && a.allow_self
        {
            let loc = root.get("approval").map_or(root.loc, |n| n.get("allow_self").map_or(n.loc, |n| n.loc));
            diags.push(Diagnostic::new(
                loc,
                "`approvers: 1` with `allow_self: true` lets the requester start alone: use `allow_self: false` or `approvers: 2`",
            ));
        }
    }

    let mut vars: BTreeMap<String, String> = shell.as_ref().map(|s| s.vars.clone()).unwrap_or_default();
    for (k, v) in &opts.vars {
        if !vars.contains_key(k) {
            diags.push(Diagnostic::new(
                root.get("vars").map_or(root.loc, |n| n.loc),
                format!("--var {k}: the pipeline declares no var `{k}` (declared: {})", list(vars.keys())),
            ));
        }
        vars.insert(k.clone(), v.clone());
    }

    let inputs = check_inputs(&root, &mut diags);
    let steps_node = root.get("steps");
    let mut steps: Vec<(Step, &Node)> = Vec::new();
    // Ids of steps that failed to deserialize: still known, so `needs` on them is not an error too.
    let mut unparsed_ids: Vec<(String, Loc)> = Vec::new();
    match steps_node.map(|n| (&n.kind, n)) {
        Some((NodeKind::Seq(items), _)) => {
            if items.is_empty() {
                diags.push(Diagnostic::new(
                    steps_node.map_or(root.loc, |n| n.loc),
                    "a pipeline needs at least one step",
                ));
            }
            for item in items {
                match yaml::from_node::<Step>(item) {
                    Ok(step) => steps.push((step, item)),
                    Err(e) => {
                        diags.push(Diagnostic::from_de(e, item.loc));
                        if let Some(id) = item.get("id").and_then(|n| n.as_str().map(|s| (s.to_string(), n.loc))) {
                            unparsed_ids.push(id);
                        }
                    }
                }
            }
        }
        Some((_, node)) if shell.is_none() => {
            let _ = node; // the shell error already says `steps` has the wrong type
        }
        _ => {}
    }

    let source = Source::new(text);
    let doc = Doc { inputs: &inputs, vars: &vars, file, opts, source: &source };
    let step_plans = check_steps(&steps, &unparsed_ids, &doc, &mut diags);

    if !diags.is_empty() {
        diags.sort_by_key(|d| d.loc);
        diags.dedup();
        return Err(diags);
    }
    let (Some(shell), Some(step_plans)) = (shell, step_plans) else {
        return Err(vec![Diagnostic::new(root.loc, "invalid pipeline")]);
    };
    Ok(Plan {
        name: shell.name.value.clone(),
        description: shell.description.clone(),
        inputs: inputs.into_iter().map(|(k, (spec, _))| (k, spec)).collect(),
        vars,
        steps: step_plans,
        approval: shell.approval.unwrap_or_default(),
        content_hash: crate::digest::sha256_hex(text.as_bytes()),
        source: text.to_string(),
    })
}

fn list<'a>(items: impl Iterator<Item = &'a String>) -> String {
    let v: Vec<&str> = items.map(String::as_str).collect();
    if v.is_empty() { "none".into() } else { v.join(", ") }
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn identifier_hint(s: &str) -> String {
    let fixed: String =
        s.to_ascii_lowercase().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    let fixed = fixed.trim_start_matches(|c: char| c.is_ascii_digit() || c == '_');
    if fixed.is_empty() { "e.g. `suspend_user`".into() } else { format!("e.g. `{fixed}`") }
}

fn check_inputs(root: &Node, diags: &mut Vec<Diagnostic>) -> BTreeMap<String, (InputSpec, Loc)> {
    let mut out = BTreeMap::new();
    let Some(NodeKind::Map(entries)) = root.get("inputs").map(|n| &n.kind) else {
        return out;
    };
    for (key, value) in entries {
        let Some(name) = key.as_str() else { continue };
        if !is_identifier(name) {
            diags.push(Diagnostic::new(
                key.loc,
                format!("input name `{name}` must be lower-case letters, digits and `_` ({})", identifier_hint(name)),
            ));
        }
        let spec: InputSpec = match yaml::from_node(value) {
            Ok(spec) => spec,
            Err(e) => {
                diags.push(Diagnostic::from_de(e, value.loc));
                continue;
            }
        };
        if let Some(default) = &spec.default {
            let loc = value.get("default").map_or(value.loc, |n| n.loc);
            if spec.required {
                diags.push(Diagnostic::new(
                    loc,
                    format!("input `{name}` has a default, so it cannot be `required: true`; remove one"),
                ));
            }
            if let (InputType::Bool, Some(fix)) = (spec.kind, default.as_str().and_then(yaml::yaml11_bool)) {
                let word = default.as_str().unwrap_or_default();
                diags.push(Diagnostic::new(
                    loc,
                    format!("`{word}` is not a boolean in YAML 1.2, which pipelines are written in: write `{fix}`"),
                ));
            } else if let Err(why) = coerce_input(spec.kind, default) {
                diags.push(Diagnostic::new(loc, format!("default of input `{name}`: {why}")));
            }
        }
        out.insert(name.to_string(), (spec, key.loc));
    }
    out
}

/// A step's plugin contract and the action (its index) its `with:` selects.
type Chosen = (Arc<Contract>, usize);

/// What every step is checked against.
struct Doc<'a> {
    inputs: &'a BTreeMap<String, (InputSpec, Loc)>,
    vars: &'a BTreeMap<String, String>,
    file: &'a Path,
    opts: &'a LoadOptions,
    source: &'a Source<'a>,
}

fn check_steps(
    steps: &[(Step, &Node)],
    unparsed_ids: &[(String, Loc)],
    doc: &Doc<'_>,
    diags: &mut Vec<Diagnostic>,
) -> Option<Vec<StepPlan>> {
    let Doc { inputs, vars, file, opts, source } = *doc;
    let start = diags.len();
    // Each step's plugin and the action its `with:` selects: later steps read its output.
    let mut chosen: HashMap<&str, (PathBuf, Option<Chosen>)> = HashMap::new();
    let mut outputs: HashMap<String, StepOutput> = HashMap::new();
    for (step, node) in steps {
        let plugin = resolve_plugin(&step.uses, file, opts, diags);
        let action = match opts.contracts.get(&plugin) {
            Some(Declared::Unusable(why)) => {
                diags.push(Diagnostic::new(step.uses.loc, format!("`uses: {}`: {why}", step.uses.trim())));
                None
            }
            Some(Declared::Contract(c)) => {
                contract::select(c, node.get("with"), step.uses.loc, diags).map(|i| (c.clone(), i))
            }
            Some(Declared::Nothing) | None => None,
        };
        if let Some((c, i)) = &action
            && let Some(a) = c.actions.get(*i).filter(|a| a.output.is_some())
        {
            let what = if a.name.is_empty() { c.plugin.clone() } else { format!("{} `{}`", c.plugin, a.name) };
            outputs.insert(step.id.value.clone(), StepOutput { what, contract: c.clone(), action: *i });
        }
        chosen.insert(step.id.as_str(), (plugin, action));
    }
    let mut seen: HashMap<&str, Loc> = HashMap::new();
    for (step, _) in steps {
        let id = step.id.as_str();
        if !is_identifier(id) {
            diags.push(Diagnostic::new(
                step.id.loc,
                format!(
                    "step id `{id}` must be lower-case letters, digits and `_` so templates can name it ({})",
                    identifier_hint(id)
                ),
            ));
        }
        if let Some(first) = seen.get(id) {
            diags.push(Diagnostic::new(
                step.id.loc,
                format!("duplicate step id `{id}` (first used on line {})", first.line),
            ));
        } else {
            seen.insert(id, step.id.loc);
        }
    }
    for (id, loc) in unparsed_ids {
        seen.entry(id.as_str()).or_insert(*loc);
    }
    let mut sorted_ids: Vec<&str> = seen.keys().copied().collect();
    sorted_ids.sort_unstable();

    // needs: known, not self.
    for (step, _) in steps {
        for need in &step.needs {
            if need.as_str() == step.id.as_str() {
                diags.push(Diagnostic::new(need.loc, format!("step `{}` cannot need itself", *step.id)));
            } else if !seen.contains_key(need.as_str()) {
                let hint = yaml::closest(need, &sorted_ids).map_or_else(
                    || format!("steps are: {}", sorted_ids.join(", ")),
                    |b| format!("did you mean `{b}`?"),
                );
                diags.push(Diagnostic::new(
                    need.loc,
                    format!("`needs` names unknown step `{}` ({hint})", need.as_str()),
                ));
            }
        }
    }
    let ancestors = check_cycles(steps, diags);

    let var_ctx = crate::pipeline::template::to_value(json!({ "vars": vars }));
    let mut plans = Vec::new();
    for (step, node) in steps {
        let id = step.id.as_str();
        let deps = ancestors.get(id).cloned().unwrap_or_default();
        let scope = Scope { step: id, inputs, vars, deps: &deps, all: &seen, outputs: &outputs, source };

        // with: walk the raw nodes so each template error points at its own string.
        let mut analyses = HashMap::new();
        if let Some(with) = node.get("with") {
            if !matches!(with.kind, NodeKind::Map(_)) {
                diags.push(Diagnostic::new(with.loc, "`with` must be a mapping of the plugin's inputs"));
            }
            analyses = scope.with(with, diags);
        }
        if let Some(cond) = &step.condition {
            scope.condition(cond.loc, cond, diags);
        }
        let (plugin, action) = chosen.remove(id).unwrap_or_default();
        if let Some((c, a)) = action.as_ref().and_then(|(c, i)| Some((c, c.actions.get(*i)?))) {
            let at = key_loc(node, "with").unwrap_or(step.uses.loc);
            contract::check_with(a, &c.plugin, node.get("with"), at, &scope, &analyses, diags);
        }

        let timeout = parse_spanned(step.timeout.as_ref(), model::DEFAULT_TIMEOUT, model::parse_duration, diags);
        if timeout.is_zero() {
            diags.push(Diagnostic::new(
                step.timeout.as_ref().map_or(step.id.loc, |t| t.loc),
                "`timeout` must be more than zero",
            ));
        }
        let memory_bytes = parse_spanned(step.memory.as_ref(), model::DEFAULT_MEMORY_BYTES, model::parse_bytes, diags);
        if let Some(m) = &step.memory
            && !(1024 * 1024..=model::MAX_MEMORY_BYTES).contains(&memory_bytes)
        {
            diags.push(Diagnostic::new(m.loc, "`memory` must be between 1MiB and 1GiB"));
        }
        let r = &step.retry;
        if *r.attempts == 0 || *r.attempts > 100 {
            diags.push(Diagnostic::new(
                r.attempts.loc,
                "`attempts` counts the first attempt too: use 1 (no retry) to 100",
            ));
        }
        let initial = parse_spanned(Some(&r.backoff.initial), Duration::from_secs(1), model::parse_duration, diags);
        let max = parse_spanned(Some(&r.backoff.max), Duration::from_secs(30), model::parse_duration, diags);
        if !(1.0..=10.0).contains(&*r.backoff.factor) {
            diags.push(Diagnostic::new(r.backoff.factor.loc, "`factor` must be between 1 and 10"));
        }
        if max < initial {
            diags.push(Diagnostic::new(r.backoff.max.loc, "`max` is shorter than `initial`"));
        }

        let allow: Vec<Grant> = step
            .allow
            .iter()
            .filter_map(|entry| {
                let host = entry.host();
                let o = origin(host, &var_ctx, diags)?;
                let capped = within_cap(&o, host.loc, opts.allow_cap.as_deref(), diags);
                let grant = grant(o, entry, diags)?;
                capped.then_some(grant)
            })
            .collect();
        let credentials =
            step.credentials.iter().filter_map(|c| check_credential(c, &allow, &var_ctx, diags)).collect();

        plans.push(StepPlan {
            id: id.to_string(),
            plugin,
            needs: step.needs.iter().map(|n| n.value.clone()).collect(),
            condition: step.condition.as_ref().map(|c| c.value.clone()),
            with: node.get("with").map_or(json!({}), Node::to_json),
            timeout,
            memory_bytes,
            retry: RetryPlan { attempts: *r.attempts, initial, max, factor: *r.backoff.factor },
            on_failure: step.on_failure,
            idempotent: step.idempotent.unwrap_or(true),
            allow,
            credentials,
        });
    }
    (diags.len() == start).then_some(plans)
}

/// The transitive `needs` of every step; reports each cycle once, naming it.
fn check_cycles(steps: &[(Step, &Node)], diags: &mut Vec<Diagnostic>) -> HashMap<String, BTreeSet<String>> {
    let graph: BTreeMap<&str, Vec<&str>> =
        steps.iter().map(|(s, _)| (s.id.as_str(), s.needs.iter().map(|n| n.as_str()).collect())).collect();
    let locs: HashMap<&str, Loc> = steps.iter().map(|(s, _)| (s.id.as_str(), s.id.loc)).collect();
    let mut state: HashMap<&str, u8> = HashMap::new(); // 1 = on stack, 2 = done
    let mut reported: BTreeSet<Vec<&str>> = BTreeSet::new();
    fn visit<'a>(
        n: &'a str,
        graph: &BTreeMap<&'a str, Vec<&'a str>>,
        state: &mut HashMap<&'a str, u8>,
        stack: &mut Vec<&'a str>,
        cycles: &mut Vec<Vec<&'a str>>,
    ) {
        state.insert(n, 1);
        stack.push(n);
        for &m in graph.get(n).into_iter().flatten() {
            match state.get(m) {
                Some(1) => {
                    if let Some(pos) = stack.iter().position(|s| *s == m) {
                        cycles.push(stack[pos..].to_vec());
                    }
                }
                Some(_) => {}
                None if graph.contains_key(m) => visit(m, graph, state, stack, cycles),
                None => {}
            }
        }
        stack.pop();
        state.insert(n, 2);
    }
    let mut cycles = Vec::new();
    for &n in graph.keys() {
        if !state.contains_key(n) {
            visit(n, &graph, &mut state, &mut Vec::new(), &mut cycles);
        }
    }
    for cycle in cycles {
        // Report each cycle once, starting from its first step in file order.
        let start = cycle.iter().min_by_key(|s| locs.get(*s)).copied().unwrap_or(cycle[0]);
        let pos = cycle.iter().position(|s| *s == start).unwrap_or(0);
        let rotated: Vec<&str> = cycle[pos..].iter().chain(&cycle[..pos]).copied().collect();
        if !reported.insert(rotated.clone()) {
            continue;
        }
        let mut names = rotated.clone();
        names.push(rotated[0]);
        // On the `needs` entry that closes the cycle: the last step's need of the first.
        let last = rotated[rotated.len() - 1];
        let closing = steps
            .iter()
            .find(|(s, _)| s.id.as_str() == last)
            .and_then(|(s, _)| s.needs.iter().find(|n| n.as_str() == rotated[0]))
            .map(|n| n.loc);
        diags.push(Diagnostic::new(
            closing.or_else(|| locs.get(start).copied()).unwrap_or_default(),
            format!("`needs` forms a cycle: {} (read → as \"needs\")", names.join(" → ")),
        ));
    }
    // Ancestors (only meaningful without cycles; with one, the sets are partial but finite).
    let mut out: HashMap<String, BTreeSet<String>> = HashMap::new();
    for &n in graph.keys() {
        let mut seen = BTreeSet::new();
        let mut todo: Vec<&str> = graph.get(n).cloned().unwrap_or_default();
        while let Some(m) = todo.pop() {
            if seen.insert(m.to_string()) {
                todo.extend(graph.get(m).into_iter().flatten());
            }
        }
        out.insert(n.to_string(), seen);
    }
    out
}

fn parse_spanned<T>(
    value: Option<&Spanned<String>>,
    default: T,
    parse: impl Fn(&str) -> Result<T, String>,
    diags: &mut Vec<Diagnostic>,
) -> T {
    match value {
        None => default,
        Some(v) => parse(v).unwrap_or_else(|e| {
            diags.push(Diagnostic::new(v.loc, e));
            default
        }),
    }
}

/// Where a mapping's key is written.
fn key_loc(map: &Node, key: &str) -> Option<Loc> {
    match &map.kind {
        NodeKind::Map(entries) => entries.iter().find(|(k, _)| k.as_str() == Some(key)).map(|(k, _)| k.loc),
        _ => None,
    }
}

/// The file `uses: NAME` names (`None`: neither a plugin name nor a path).
fn plugin_path(name: &str, file: &Path, opts: &LoadOptions) -> Option<PathBuf> {
    let name = name.trim();
    if name.contains('/') || name.ends_with(".wasm") {
        return Some(file.parent().unwrap_or(Path::new(".")).join(name.trim_start_matches("./")));
    }
    let plain = is_identifier(name) || name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    plain.then(|| opts.plugins_dir.join(format!("{name}.wasm")))
}

/// The plugin files a pipeline's steps name (whatever else is wrong with it), so their
/// contracts can be loaded before validation.
pub(crate) fn plugins_used(root: &Node, file: &Path, opts: &LoadOptions) -> Vec<PathBuf> {
    let Some(NodeKind::Seq(steps)) = root.get("steps").map(|n| &n.kind) else { return vec![] };
    steps.iter().filter_map(|s| s.get("uses")?.as_str()).filter_map(|n| plugin_path(n, file, opts)).collect()
}

fn resolve_plugin(uses: &Spanned<String>, file: &Path, opts: &LoadOptions, diags: &mut Vec<Diagnostic>) -> PathBuf {
    let name = uses.trim();
    let is_path = name.contains('/') || name.ends_with(".wasm");
    let Some(path) = plugin_path(name, file, opts) else {
        diags.push(Diagnostic::new(
            uses.loc,
            format!("`uses: {name}` is neither a plugin name nor a path ending in .wasm"),
        ));
        return PathBuf::new();
    };
    if !path.is_file() {
        let mut msg = format!("plugin `{name}` not found: no file {}", path.display());
        if !is_path {
            let available = available_plugins(&opts.plugins_dir);
            let refs: Vec<&str> = available.iter().map(String::as_str).collect();
            if let Some(best) = yaml::closest(name, &refs) {
                msg.push_str(&format!(" (did you mean `{best}`?)"));
            } else if !available.is_empty() {
                msg.push_str(&format!(" (available: {})", available.join(", ")));
            } else {
                msg.push_str(" (is --plugins-dir right? `cargo build` builds the bundled plugins)");
            }
        }
        diags.push(Diagnostic::new(uses.loc, msg));
    }
    path
}

/// Plugin names (`*.wasm` stems) in a directory, sorted.
pub fn available_plugins(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let p = e.path();
            (p.extension()? == "wasm").then(|| p.file_stem()?.to_str().map(str::to_string))?
        })
        .collect();
    names.sort();
    names
}

/// The typed pipeline, for `offramp schema` and tooling.
pub type Document = Pipeline;
