//! What templates and `if:` expressions read, checked against the pipeline: declared inputs and
//! vars, steps that have run before (through `needs`), the fields a run and a step have, and —
//! when the step's plugin declares it — the step's output. Each error points at the offending
//! name inside its string when the YAML spells the string verbatim on one line.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use super::contract::Contract;
use super::diag::Diagnostic;
use super::expr::{self, Analysis, Ref, Seg};
use super::model::{InputSpec, InputType};
use super::schema::{self, Lookup};
use super::template;
use super::yaml::{self, Loc, Node, NodeKind};

/// The fields of `run` in the template context (engine/inputs.rs builds it).
pub(crate) const RUN_FIELDS: &[&str] = &["id", "requested_by", "dry_run"];
/// The fields of `steps.<id>`.
pub(crate) const STEP_FIELDS: &[&str] = &["output", "status"];

/// What one step's output is known to look like: its plugin's contract and the action chosen.
#[derive(Debug, Clone)]
pub(crate) struct StepOutput {
    /// e.g. "okta `lookup`", for messages.
    pub what: String,
    pub contract: Arc<Contract>,
    pub action: usize,
}

impl StepOutput {
    /// JSON Schema of the output (the whole document, for `$ref`s); `true` if undeclared.
    fn schema(&self) -> &serde_json::Value {
        static ANY: serde_json::Value = serde_json::Value::Bool(true);
        self.contract.actions.get(self.action).and_then(|a| a.output.as_ref()).unwrap_or(&ANY)
    }
}

/// The pipeline source, to place an error on the name inside a string.
pub(crate) struct Source<'a> {
    lines: Vec<&'a str>,
}

impl<'a> Source<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        Source { lines: text.lines().collect() }
    }

    /// A diagnostic on bytes `offset..offset + len` of `value` (a scalar written at `loc`):
    /// on exactly those characters when the file spells the value verbatim on that line
    /// (plain, or quoted without escapes), otherwise on the whole scalar.
    pub(crate) fn at(&self, loc: Loc, value: &str, offset: usize, len: usize, message: String) -> Diagnostic {
        match self.exact(loc, value, offset) {
            Some(inner) => {
                let width = value.get(offset..offset + len).map_or(1, |s| s.chars().count()).max(1);
                Diagnostic::new(inner, message).with_width(u32::try_from(width).unwrap_or(1))
            }
            None => Diagnostic::new(loc, message),
        }
    }

    fn exact(&self, loc: Loc, value: &str, offset: usize) -> Option<Loc> {
        let line = (loc.line as usize).checked_sub(1).and_then(|i| self.lines.get(i))?;
        let start = line.char_indices().nth((loc.col as usize).saturating_sub(1)).map(|(i, _)| i)?;
        let rest = &line[start..];
        let quoted = rest.starts_with(['"', '\'']) && rest[1..].starts_with(value);
        if !(rest.starts_with(value) || quoted) || value.contains('\n') {
            return None;
        }
        let prefix = value.get(..offset)?;
        let shift = u32::try_from(prefix.chars().count() + usize::from(quoted)).ok()?;
        Some(Loc { line: loc.line, col: loc.col + shift })
    }
}

/// Everything a step's templates may read.
pub(crate) struct Scope<'a> {
    pub step: &'a str,
    pub inputs: &'a BTreeMap<String, (InputSpec, Loc)>,
    pub vars: &'a BTreeMap<String, String>,
    /// Steps that certainly finished before this one (transitive `needs`).
    pub deps: &'a BTreeSet<String>,
    pub all: &'a HashMap<&'a str, Loc>,
    /// Declared outputs, by step id (steps whose plugin declares one).
    pub outputs: &'a HashMap<String, StepOutput>,
    pub source: &'a Source<'a>,
}

impl Scope<'_> {
    /// Checks one template string of `field` (`with`, …); returns its analysis when it parses.
    fn template(&self, node: &Node, s: &str, field: &str, diags: &mut Vec<Diagnostic>) -> Option<Analysis> {
        match expr::template(s) {
            Ok(a) => {
                self.report(&a, node.loc, s, 0, field, diags);
                Some(a)
            }
            Err(p) => {
                diags.push(self.source.at(node.loc, s, p.offset, p.len, format!("invalid template: {}", p.message)));
                None
            }
        }
    }

    /// Checks an `if:` expression written at `loc`.
    pub(crate) fn condition(&self, loc: Loc, cond: &str, diags: &mut Vec<Diagnostic>) {
        let inner = template::condition_expression(cond);
        let base = (inner.as_ptr() as usize).saturating_sub(cond.as_ptr() as usize);
        match expr::expression(inner) {
            Ok(a) => self.report(&a, loc, cond, base, "if", diags),
            Err(p) => {
                let message = format!("invalid `if` expression: {}", p.message);
                diags.push(self.source.at(loc, cond, base + p.offset, p.len, message));
            }
        }
    }

    /// Checks every string under a `with:` node; returns each template's analysis by where it
    /// is written (the type check of `with:` reads them).
    pub(crate) fn with(&self, node: &Node, diags: &mut Vec<Diagnostic>) -> HashMap<Loc, Analysis> {
        let mut out = HashMap::new();
        self.with_into(node, diags, &mut out);
        out
    }

    fn with_into(&self, node: &Node, diags: &mut Vec<Diagnostic>, out: &mut HashMap<Loc, Analysis>) {
        match &node.kind {
            NodeKind::Str(s) => {
                if let Some(a) = self.template(node, s, "with", diags) {
                    out.insert(node.loc, a);
                }
            }
            NodeKind::Seq(items) => items.iter().for_each(|n| self.with_into(n, diags, out)),
            NodeKind::Map(entries) => entries.iter().for_each(|(_, v)| self.with_into(v, diags, out)),
            _ => {}
        }
    }

    fn report(&self, a: &Analysis, loc: Loc, s: &str, base: usize, field: &str, diags: &mut Vec<Diagnostic>) {
        for p in &a.problems {
            diags.push(self.source.at(loc, s, base + p.offset, p.len, p.message.clone()));
        }
        for r in &a.refs {
            if let Some(msg) = self.check(r, field) {
                diags.push(self.source.at(loc, s, base + r.offset, r.len, msg));
            }
        }
    }

    /// What is wrong with one reference, if anything.
    fn check(&self, r: &Ref, field: &str) -> Option<String> {
        let mut names = r.path.iter();
        let first = match names.next() {
            Some(Seg::Attr(n)) => Some(n.as_str()),
            _ => None,
        };
        match (r.root.as_str(), first) {
            (root, _) if template::SECRET_ROOTS.contains(&root) => Some(format!(
                "secrets cannot be templated into `{field}` (found `{root}`); declare the secret under `credentials:` so the host injects it into requests"
            )),
            ("inputs", Some(n)) if !self.inputs.contains_key(n) => Some(unknown("input", n, self.inputs.keys(), field)),
            ("vars", Some(n)) if !self.vars.contains_key(n) => Some(unknown("var", n, self.vars.keys(), field)),
            ("run", Some(n)) if !RUN_FIELDS.contains(&n) => Some(unknown_field("run", n, RUN_FIELDS)),
            ("steps", Some(n)) => self.check_step(n, &r.path[1..], field),
            ("inputs" | "vars" | "steps" | "run", _) => None,
            (other, _) => {
                let hint =
                    yaml::closest(other, template::ROOTS).map(|b| format!("did you mean `{b}`? ")).unwrap_or_default();
                Some(format!(
                    "unknown name `{other}` in `{field}` ({hint}templates can use {})",
                    template::ROOTS.join(", ")
                ))
            }
        }
    }

    fn check_step(&self, id: &str, rest: &[Seg], field: &str) -> Option<String> {
        if id == self.step {
            return Some(format!("step `{id}` cannot read its own output"));
        }
        if !self.all.contains_key(id) {
            let known: Vec<&str> = self.all.keys().copied().collect();
            let hint = yaml::closest(id, &known).map(|b| format!(" (did you mean `{b}`?)")).unwrap_or_default();
            return Some(format!("unknown step `{id}` in `{field}`{hint}"));
        }
        if !self.deps.contains(id) {
            return Some(format!("`{field}` reads step `{id}`, which may not have run yet: add `needs: [{id}]`"));
        }
        match rest.first() {
            Some(Seg::Attr(f)) if !STEP_FIELDS.contains(&f.as_str()) => {
                Some(unknown_field(&format!("steps.{id}"), f, STEP_FIELDS))
            }
            Some(Seg::Attr(f)) if f == "output" => {
                let out = self.outputs.get(id)?;
                match schema::lookup(out.schema(), &rest[1..]) {
                    Lookup::Missing { at, field: missing, known } => {
                        let path: String = rest[1..][..at].iter().map(seg_text).collect();
                        let known_refs: Vec<&str> = known.iter().map(String::as_str).collect();
                        let hint = yaml::closest(&missing, &known_refs)
                            .map(|b| format!(" (did you mean `{b}`?)"))
                            .unwrap_or_default();
                        let declared = if known.is_empty() {
                            "no fields there".to_string()
                        } else {
                            format!("only {}", known.join(", "))
                        };
                        Some(format!(
                            "`steps.{id}.output{path}` has no field `{missing}`{hint}: {} declares {declared}",
                            out.what
                        ))
                    }
                    Lookup::NotObject { at, found } => {
                        let path: String = rest[1..][..at].iter().map(seg_text).collect();
                        Some(format!(
                            "`steps.{id}.output{path}` is {found}, with no fields (as {} declares its output)",
                            out.what
                        ))
                    }
                    Lookup::Found(_) | Lookup::Unknown => None,
                }
            }
            _ => None,
        }
    }

    /// The JSON types a reference's value may have, when known: an input's declared type, a
    /// var (text), a run's or step's field, a declared output field.
    pub(crate) fn types_of(&self, r: &Ref) -> Option<BTreeSet<String>> {
        let one = |t: &str| Some(BTreeSet::from([t.to_string()]));
        let mut names = r.path.iter().map(|s| match s {
            Seg::Attr(n) => Some(n.as_str()),
            _ => None,
        });
        match (r.root.as_str(), names.next().flatten(), names.next().flatten()) {
            ("inputs", Some(n), None) => match self.inputs.get(n)?.0.kind {
                InputType::String | InputType::Email => one("string"),
                InputType::Bool => one("boolean"),
                InputType::Int => one("integer"),
            },
            ("vars", Some(_), None) => one("string"),
            ("run", Some("dry_run"), None) => one("boolean"),
            ("run", Some(_), None) => one("string"),
            ("steps", Some(_), Some("status")) if r.path.len() == 2 => one("string"),
            ("steps", Some(id), Some("output")) => {
                let out = self.outputs.get(id)?;
                match schema::lookup(out.schema(), &r.path[2..]) {
                    Lookup::Found(s) => schema::types(out.schema(), s),
                    _ => None,
                }
            }
            _ => None,
        }
    }
}

fn seg_text(s: &Seg) -> String {
    match s {
        Seg::Attr(n) => format!(".{n}"),
        Seg::Index => "[]".into(),
        Seg::Dynamic => "[…]".into(),
    }
}

fn unknown<'a>(what: &str, name: &str, known: impl Iterator<Item = &'a String>, field: &str) -> String {
    let known: Vec<&str> = known.map(String::as_str).collect();
    let hint = match yaml::closest(name, &known) {
        Some(b) => format!("did you mean `{b}`?"),
        None if known.is_empty() => format!("the pipeline declares no {what}s"),
        None => format!("{what}s: {}", known.join(", ")),
    };
    format!("unknown {what} `{name}` in `{field}` ({hint})")
}

fn unknown_field(owner: &str, name: &str, known: &[&str]) -> String {
    let hint = match yaml::closest(name, known) {
        Some(b) => format!("did you mean `{b}`?"),
        None => format!("it has {}", known.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")),
    };
    format!("`{owner}` has no field `{name}` ({hint})")
}
