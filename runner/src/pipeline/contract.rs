//! Plugin contracts: what each action of a plugin takes in `with:` and returns as output, as the
//! plugin declares them (`contract()` of the `described-task` world, JSON Schemas), and the
//! check of a step's `with:` against them — before anything runs, with each error on the key or
//! value it concerns.
//!
//! Templated values are accounted for: a string with `{{ }}` is a string; exactly
//! `{{ steps.x.output.f }}` has the type x's plugin declares for `f` (or an input's, a var's);
//! anything else the check cannot know is left to the plugin at run time.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;

use super::diag::Diagnostic;
use super::expr::{Analysis, Shape};
use super::refs::Scope;
use super::schema;
use super::yaml::{self, Loc, Node, NodeKind};

/// One action as a plugin declares it (the WIT `action-spec`, schemas still text).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ActionDecl {
    pub name: String,
    pub description: String,
    pub input_schema: String,
    pub output_schema: String,
}

/// One action, its schemas parsed and the input's validator built.
#[derive(Debug, Clone)]
pub struct ActionContract {
    pub name: String,
    pub description: String,
    pub input: Option<Value>,
    pub output: Option<Value>,
    validator: Option<Arc<jsonschema::Validator>>,
    output_validator: Option<Arc<jsonschema::Validator>>,
}

impl ActionContract {
    /// Whether an output the plugin returned is what it declares (the engine checks every
    /// successful attempt: later steps were validated against this declaration).
    pub fn check_output(&self, output: &Value) -> Result<(), String> {
        let Some(v) = &self.output_validator else { return Ok(()) };
        let mut errors = v.iter_errors(output);
        match errors.next() {
            None => Ok(()),
            Some(e) => {
                let at = e.instance_path().as_str().to_string();
                let at = if at.is_empty() { String::new() } else { format!(" at `{at}`") };
                let more = errors.count();
                let more = if more > 0 { format!(" (and {more} more)") } else { String::new() };
                Err(format!("{e}{at}{more}"))
            }
        }
    }
}

/// A plugin's declared contract.
#[derive(Debug, Clone)]
pub struct Contract {
    /// The plugin's name, for messages ("okta").
    pub plugin: String,
    pub actions: Vec<ActionContract>,
}

impl Contract {
    /// Parses and checks what a plugin declared. `None`: it declared nothing (an empty list).
    /// A declaration that is not valid JSON Schema is an error: the plugin is broken.
    pub fn parse(plugin: &str, decls: Vec<ActionDecl>) -> Result<Option<Contract>, String> {
        if decls.is_empty() {
            return Ok(None);
        }
        let mut names = BTreeSet::new();
        let mut actions = Vec::new();
        for d in decls {
            if !names.insert(d.name.clone()) {
                return Err(format!("its contract declares action `{}` twice", d.name));
            }
            let shown = if d.name.is_empty() { "its only action".to_string() } else { format!("action `{}`", d.name) };
            let parse = |text: &str, which: &str| -> Result<Option<Value>, String> {
                if text.trim().is_empty() {
                    return Ok(None);
                }
                let v: Value = serde_json::from_str(text)
                    .map_err(|e| format!("its contract's {which} schema of {shown} is not JSON: {e}"))?;
                jsonschema::meta::validate(&v)
                    .map_err(|e| format!("its contract's {which} schema of {shown} is not a valid JSON Schema: {e}"))?;
                Ok(Some(v))
            };
            let input = parse(&d.input_schema, "input")?;
            let output = parse(&d.output_schema, "output")?;
            let compile = |schema: &Option<Value>, which: &str| -> Result<_, String> {
                match schema {
                    Some(s) => Ok(Some(Arc::new(
                        jsonschema::validator_for(s)
                            .map_err(|e| format!("its contract's {which} schema of {shown} cannot be used: {e}"))?,
                    ))),
                    None => Ok(None),
                }
            };
            let validator = compile(&input, "input")?;
            let output_validator = compile(&output, "output")?;
            actions.push(ActionContract {
                name: d.name,
                description: d.description,
                input,
                output,
                validator,
                output_validator,
            });
        }
        if actions.len() > 1 && actions.iter().any(|a| a.name.is_empty()) {
            return Err("its contract mixes an unnamed action with named ones".into());
        }
        Ok(Some(Contract { plugin: plugin.to_string(), actions }))
    }

    fn named(&self) -> bool {
        self.actions.iter().any(|a| !a.name.is_empty())
    }

    /// The action a rendered input selects (its `action` value; the only one if unnamed).
    pub fn action_for(&self, input: &Value) -> Option<&ActionContract> {
        if !self.named() {
            return self.actions.first();
        }
        let name = input.get("action")?.as_str()?;
        self.actions.iter().find(|a| a.name == name)
    }
}

/// What loading a plugin's contract gave.
#[derive(Debug, Clone)]
pub enum Declared {
    Contract(Arc<Contract>),
    /// A 0.1.0 plugin, or one whose `contract()` is empty: checked as before contracts.
    Nothing,
    /// The file is not a usable plugin (not a component, not the offramp world, a broken
    /// contract): the message says why.
    Unusable(String),
}

/// Contracts by plugin path (as validation resolves `uses:`), filled before validation.
#[derive(Debug, Clone, Default)]
pub struct ContractBook(Arc<HashMap<PathBuf, Declared>>);

impl ContractBook {
    pub fn new(entries: HashMap<PathBuf, Declared>) -> Self {
        ContractBook(Arc::new(entries))
    }

    pub(crate) fn get(&self, path: &Path) -> Option<&Declared> {
        self.0.get(path)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Loads plugins' contracts (the sandbox does: it instantiates the component).
pub trait ContractLoader {
    fn load_contract(&self, plugin: &Path) -> impl std::future::Future<Output = Declared> + Send;
}

/// The action a step's `with:` selects, with the diagnostics when it selects none.
pub(crate) fn select(
    contract: &Contract,
    with: Option<&Node>,
    uses_loc: Loc,
    diags: &mut Vec<Diagnostic>,
) -> Option<usize> {
    if !contract.named() {
        return (!contract.actions.is_empty()).then_some(0);
    }
    let names: Vec<&str> = contract.actions.iter().map(|a| a.name.as_str()).collect();
    let action = with.and_then(|w| w.get("action"));
    match action.map(|n| (&n.kind, n.loc)) {
        None => {
            // A misspelt `action` key gets the error on itself.
            let typo = match with.map(|w| &w.kind) {
                Some(NodeKind::Map(entries)) => entries
                    .iter()
                    .map(|(k, _)| k)
                    .find(|k| k.as_str().is_some_and(|s| yaml::closest(s, &["action"]).is_some())),
                _ => None,
            };
            let (loc, hint) = match typo {
                Some(k) => (k.loc, format!("; `{}` is not it: did you mean `action`?", k.as_str().unwrap_or_default())),
                None => (with.map_or(uses_loc, |w| w.loc), String::new()),
            };
            diags.push(Diagnostic::new(
                loc,
                format!("{} needs `action:` in `with:` (one of: {}){hint}", contract.plugin, names.join(", ")),
            ));
            None
        }
        Some((NodeKind::Str(s), loc)) => {
            if s.contains("{{") || s.contains("{%") {
                return None; // chosen at run time: nothing to check it against
            }
            let found = contract.actions.iter().position(|a| a.name == *s);
            if found.is_none() {
                let hint = match yaml::closest(s, &names) {
                    Some(b) => format!("did you mean `{b}`?"),
                    None => format!("its actions: {}", names.join(", ")),
                };
                diags.push(Diagnostic::new(loc, format!("{} has no action `{s}` ({hint})", contract.plugin)));
            }
            found
        }
        Some((_, loc)) => {
            diags.push(Diagnostic::new(loc, format!("`action` is a name, one of: {}", names.join(", "))));
            None
        }
    }
}

/// What a templated value is known to be.
enum Placeholder {
    /// Of these JSON types (the substituted value has the first).
    Typed(BTreeSet<String>, String),
    /// Anything: no check below this point.
    Any,
}

/// Checks `with:` against the action's input schema.
pub(crate) fn check_with(
    action: &ActionContract,
    plugin: &str,
    with: Option<&Node>,
    at: Loc,
    scope: &Scope<'_>,
    analyses: &HashMap<Loc, Analysis>,
    diags: &mut Vec<Diagnostic>,
) {
    let (Some(validator), Some(schema)) = (&action.validator, &action.input) else { return };
    let empty = Node { loc: at, kind: NodeKind::Map(vec![]) };
    let with = with.unwrap_or(&empty);
    let mut holes: HashMap<String, Placeholder> = HashMap::new();
    let instance = instance(with, String::new(), scope, analyses, &mut holes);
    let what = if action.name.is_empty() { plugin.to_string() } else { format!("{plugin} `{}`", action.name) };
    for err in validator.iter_errors(&instance) {
        let pointer = err.instance_path().as_str().to_string();
        // An error at or under a templated value: only its type is known, if anything.
        let hole = holes.iter().find(|(p, _)| pointer == **p || pointer.starts_with(&format!("{p}/")));
        let kind = err.kind();
        match hole {
            Some((_, Placeholder::Any)) => continue,
            Some((p, Placeholder::Typed(types, source))) => {
                if *p != pointer || !matches!(kind, jsonschema::error::ValidationErrorKind::Type { .. }) {
                    continue;
                }
                let node = find(with, &pointer).unwrap_or(with);
                let expected = expected_types(schema, err.schema_path().as_str());
                diags.push(Diagnostic::new(
                    node.loc,
                    format!(
                        "`{}` expects {expected} ({what}), but `{source}` is {}",
                        key_of(&pointer),
                        schema::describe_types(types)
                    ),
                ));
                continue;
            }
            None => {}
        }
        diags.push(describe(&err, with, at, schema, &what));
    }
}

/// The JSON value of `with:` with templated strings replaced by placeholders of their type.
fn instance(
    node: &Node,
    pointer: String,
    scope: &Scope<'_>,
    analyses: &HashMap<Loc, Analysis>,
    holes: &mut HashMap<String, Placeholder>,
) -> Value {
    match &node.kind {
        NodeKind::Str(s) if s.contains("{{") || s.contains("{%") => {
            // Analysed once, by the reference checks (missing: it did not parse).
            let Some(a) = analyses.get(&node.loc) else {
                holes.insert(pointer, Placeholder::Any);
                return Value::Null;
            };
            match &a.shape {
                Shape::Text => Value::String(s.clone()),
                Shape::Const(v) => v.clone(),
                Shape::Ref(i) => match a.refs.get(*i).and_then(|r| scope.types_of(r).map(|t| (r.dotted(), t))) {
                    Some((source, types)) => {
                        let value = types
                            .iter()
                            .find(|t| *t != "null")
                            .or(types.iter().next())
                            .map_or(Value::Null, |t| sample(t));
                        holes.insert(pointer, Placeholder::Typed(types, source));
                        value
                    }
                    None => {
                        holes.insert(pointer, Placeholder::Any);
                        Value::Null
                    }
                },
                Shape::Any => {
                    holes.insert(pointer, Placeholder::Any);
                    Value::Null
                }
            }
        }
        NodeKind::Seq(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, n)| instance(n, format!("{pointer}/{i}"), scope, analyses, holes))
                .collect(),
        ),
        NodeKind::Map(entries) => Value::Object(
            entries
                .iter()
                .map(|(k, v)| {
                    let key = k.to_json().as_str().map_or_else(|| k.to_json().to_string(), str::to_string);
                    let child = format!("{pointer}/{}", key.replace('~', "~0").replace('/', "~1"));
                    (key, instance(v, child, scope, analyses, holes))
                })
                .collect(),
        ),
        _ => node.to_json(),
    }
}

fn sample(json_type: &str) -> Value {
    match json_type {
        "string" => Value::String(String::new()),
        "integer" | "number" => Value::from(0),
        "boolean" => Value::Bool(false),
        "array" => Value::Array(vec![]),
        "object" => Value::Object(Default::default()),
        _ => Value::Null,
    }
}

fn unescape(seg: &str) -> String {
    seg.replace("~1", "/").replace("~0", "~")
}

/// The node at a JSON pointer into `with:`.
fn find<'a>(node: &'a Node, pointer: &str) -> Option<&'a Node> {
    let mut cur = node;
    for seg in pointer.split('/').skip(1) {
        let seg = unescape(seg);
        cur = match &cur.kind {
            NodeKind::Map(_) => cur.get(&seg)?,
            NodeKind::Seq(items) => items.get(seg.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

/// The key node of `name` in the mapping at `pointer`.
fn find_key<'a>(node: &'a Node, pointer: &str, name: &str) -> Option<&'a Node> {
    match &find(node, pointer)?.kind {
        NodeKind::Map(entries) => entries.iter().find(|(k, _)| k.as_str() == Some(name)).map(|(k, _)| k),
        _ => None,
    }
}

/// `with.user`, `with.request.headers[0]`: how a user names a place in `with:`.
fn key_of(pointer: &str) -> String {
    let mut out = String::from("with");
    for seg in pointer.split('/').skip(1) {
        match seg.parse::<usize>() {
            Ok(i) => out.push_str(&format!("[{i}]")),
            Err(_) => {
                out.push('.');
                out.push_str(&unescape(seg));
            }
        }
    }
    out
}

/// The sub-schema a schema path ends in (minus its last keyword). `$ref` segments, where the
/// validator followed a reference, are followed here too.
fn schema_at<'a>(schema: &'a Value, schema_path: &str) -> Option<&'a Value> {
    let parent = schema_path.rsplit_once('/').map_or("", |(p, _)| p);
    let mut cur = schema;
    for seg in parent.split('/').skip(1) {
        let seg = unescape(seg);
        cur = match cur {
            Value::Object(m) if seg == "$ref" => {
                let target = m.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix('#'))?;
                schema.pointer(target)?
            }
            Value::Object(m) => m.get(&seg)?,
            Value::Array(a) => a.get(seg.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

fn expected_types(schema: &Value, schema_path: &str) -> String {
    schema_at(schema, schema_path)
        .and_then(|s| schema::types(schema, s))
        .map_or_else(|| "another type".to_string(), |t| schema::describe_types(&t))
}

fn describe(
    err: &jsonschema::ValidationError<'_>,
    with: &Node,
    with_key: Loc,
    schema: &Value,
    what: &str,
) -> Diagnostic {
    use jsonschema::error::ValidationErrorKind as K;
    let pointer = err.instance_path().as_str();
    let node = find(with, pointer).unwrap_or(with);
    let place = key_of(pointer);
    match err.kind() {
        K::AdditionalProperties { unexpected } | K::UnevaluatedProperties { unexpected } => {
            let known: Vec<String> = schema_at(schema, err.schema_path().as_str())
                .and_then(|s| s.get("properties"))
                .and_then(Value::as_object)
                .map(|p| p.keys().cloned().collect())
                .unwrap_or_default();
            let known_refs: Vec<&str> = known.iter().map(String::as_str).collect();
            let name = unexpected.first().cloned().unwrap_or_default();
            let loc = find_key(with, pointer, &name).map_or(node.loc, |k| k.loc);
            let hint = match yaml::closest(&name, &known_refs) {
                Some(b) => format!("did you mean `{b}`?"),
                None if known.is_empty() => "it takes none here".into(),
                None => format!("it takes: {}", known.join(", ")),
            };
            let inside = if pointer.is_empty() { String::new() } else { format!(" in `{place}`") };
            Diagnostic::new(loc, format!("unknown key `{name}`{inside}: {what} does not take it ({hint})"))
        }
        K::Required { property } => {
            let name = property.as_str().map_or_else(|| property.to_string(), str::to_string);
            // On the key that opens the mapping missing it (`with:` itself at the top).
            let loc = match pointer.rsplit_once('/') {
                Some((parent, last)) => find_key(with, parent, &unescape(last)).map_or(node.loc, |k| k.loc),
                None => with_key,
            };
            Diagnostic::new(loc, format!("`{place}` is missing `{name}`, which {what} requires"))
        }
        K::Enum { options } => {
            let given = node.to_json();
            let words: Vec<String> = options
                .as_array()
                .map(|o| o.iter().map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string)).collect())
                .unwrap_or_default();
            let refs: Vec<&str> = words.iter().map(String::as_str).collect();
            let hint = match given.as_str().and_then(|g| yaml::closest(g, &refs)) {
                Some(b) => format!("did you mean `{b}`?"),
                None => format!("one of: {}", words.join(", ")),
            };
            let shown = given.as_str().map_or_else(|| given.to_string(), str::to_string);
            Diagnostic::new(node.loc, format!("`{place}: {shown}` is not a value {what} accepts ({hint})"))
        }
        K::Type { .. } => {
            let found = schema::json_type(&node.to_json());
            let expected = expected_types(schema, err.schema_path().as_str());
            let found = schema::describe_types(&[found.to_string()].into());
            Diagnostic::new(node.loc, format!("`{place}` must be {expected} for {what}, found {found}"))
        }
        _ => Diagnostic::new(node.loc, format!("`{place}`: {err} ({what})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decl(name: &str, input: &str, output: &str) -> ActionDecl {
        ActionDecl {
            name: name.into(),
            description: String::new(),
            input_schema: input.into(),
            output_schema: output.into(),
        }
    }

    /// Checks `with` (YAML text) against one action's input schema, as validation does.
    fn check(input: serde_json::Value, with: &str) -> Vec<String> {
        use std::collections::{BTreeMap, BTreeSet, HashMap};
        let decl = ActionDecl {
            name: "go".into(),
            description: String::new(),
            input_schema: input.to_string(),
            output_schema: String::new(),
        };
        let contract = Contract::parse("p", vec![decl]).unwrap().unwrap();
        let text = format!("with: {with}\n");
        let root = super::super::yaml::parse(&text).unwrap();
        let node = root.get("with").unwrap();
        let (inputs, vars) = (BTreeMap::new(), BTreeMap::from([("domain".to_string(), "x".to_string())]));
        let (deps, all, outputs) = (BTreeSet::new(), HashMap::new(), HashMap::new());
        let source = super::super::refs::Source::new(&text);
        let scope = Scope {
            step: "s",
            inputs: &inputs,
            vars: &vars,
            deps: &deps,
            all: &all,
            outputs: &outputs,
            source: &source,
        };
        let mut diags = Vec::new();
        let analyses = scope.with(node, &mut diags);
        check_with(&contract.actions[0], "p", Some(node), Loc { line: 1, col: 1 }, &scope, &analyses, &mut diags);
        diags.iter().map(|d| format!("{}:{}: {}", d.loc.line, d.loc.col, d.message)).collect()
    }

    #[test]
    fn with_is_checked_key_by_key_and_templates_count_for_their_type() {
        let schema = serde_json::json!({
            "type": "object", "additionalProperties": false, "required": ["action", "user"],
            "properties": {
                "action": { "const": "go" }, "user": { "type": "string" }, "mode": { "enum": ["soft", "hard"] },
                "count": { "type": "integer" }, "opts": { "type": "object", "required": ["depth"],
                    "properties": { "depth": { "type": "integer" } } }
            }
        });
        let errs = check(schema.clone(), "{ action: go, usr: a, mode: sfot, count: many, opts: {} }");
        assert_eq!(
            errs,
            [
                "1:1: `with` is missing `user`, which p `go` requires",
                "1:48: `with.count` must be an integer for p `go`, found a string",
                "1:35: `with.mode: sfot` is not a value p `go` accepts (did you mean `soft`?)",
                "1:54: `with.opts` is missing `depth`, which p `go` requires",
                "1:21: unknown key `usr`: p `go` does not take it (did you mean `user`?)",
            ]
        );
        // A template is a string: fine for `user`, not for `count`; `{{ vars.x }}` alone is text too.
        let errs = check(schema.clone(), "{ action: go, user: \"{{ vars.domain }}\", count: \"{{ vars.domain }}\" }");
        assert_eq!(errs, ["1:55: `with.count` expects an integer (p `go`), but `vars.domain` is a string"]);
        // Computed values of unknown type are left to run time; constants are checked.
        assert!(check(schema.clone(), "{ action: go, user: x, count: \"{{ vars.domain | length }}\" }").is_empty());
        let errs = check(schema, "{ action: go, user: x, mode: \"{{ 'firm' }}\" }");
        assert_eq!(errs.len(), 1, "{errs:?}");
    }

    #[test]
    fn declarations_are_checked() {
        assert!(Contract::parse("p", vec![]).unwrap().is_none());
        let ok = Contract::parse("p", vec![decl("a", r#"{"type":"object"}"#, "")]).unwrap().unwrap();
        assert!(ok.actions[0].output.is_none());
        let err = Contract::parse("p", vec![decl("a", "{not json", "")]).unwrap_err();
        assert!(err.contains("not JSON"), "{err}");
        let err = Contract::parse("p", vec![decl("a", r#"{"type":"strnig"}"#, "")]).unwrap_err();
        assert!(err.contains("not a valid JSON Schema"), "{err}");
        let err = Contract::parse("p", vec![decl("a", "", ""), decl("a", "", "")]).unwrap_err();
        assert!(err.contains("twice"), "{err}");
        let err = Contract::parse("p", vec![decl("", "", ""), decl("a", "", "")]).unwrap_err();
        assert!(err.contains("mixes"), "{err}");
    }
}
