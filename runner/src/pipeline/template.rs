//! minijinja templating of `with:`, `if:` and `allow:`, shared by validation and the engine.
//!
//! The context has four roots: `inputs`, `vars`, `steps` (`steps.<id>.output`,
//! `steps.<id>.status`) and `run` (`run.id`). Secrets are not among them, by design.

use std::collections::BTreeSet;

use minijinja::{Environment, UndefinedBehavior, Value};

use super::expr;

/// The names a template may start with.
pub(crate) const ROOTS: &[&str] = &["inputs", "vars", "steps", "run"];
/// Names people reach for when they want a secret; each gets a pointed error.
pub(crate) const SECRET_ROOTS: &[&str] = &["secrets", "secret", "env", "credentials"];

/// Filters offered in "did you mean" hints (each checked against minijinja at run time).
pub(crate) const FILTERS: &[&str] = &[
    "abs",
    "attr",
    "batch",
    "bool",
    "capitalize",
    "count",
    "d",
    "default",
    "dictsort",
    "escape",
    "first",
    "float",
    "format",
    "groupby",
    "indent",
    "int",
    "items",
    "join",
    "last",
    "length",
    "lines",
    "list",
    "lower",
    "map",
    "max",
    "min",
    "pprint",
    "reject",
    "rejectattr",
    "replace",
    "reverse",
    "round",
    "safe",
    "select",
    "selectattr",
    "slice",
    "sort",
    "split",
    "string",
    "sum",
    "title",
    "tojson",
    "trim",
    "unique",
    "upper",
    "urlencode",
];
/// Tests offered in hints.
pub(crate) const TESTS: &[&str] = &[
    "boolean",
    "defined",
    "divisibleby",
    "endingwith",
    "eq",
    "even",
    "false",
    "float",
    "ge",
    "gt",
    "in",
    "integer",
    "iterable",
    "le",
    "lower",
    "lt",
    "mapping",
    "ne",
    "none",
    "number",
    "odd",
    "sameas",
    "sequence",
    "startingwith",
    "string",
    "true",
    "undefined",
    "upper",
];
/// Functions offered in hints.
pub(crate) const FUNCTIONS: &[&str] = &["range", "dict", "namespace"];

/// Whether minijinja (as configured here) has a filter of that name.
pub(crate) fn is_filter(name: &str) -> bool {
    lookup("filter", name)
}

/// Whether minijinja has a test of that name.
pub(crate) fn is_test(name: &str) -> bool {
    lookup("test", name)
}

/// Whether minijinja has a global function of that name.
pub(crate) fn is_function(name: &str) -> bool {
    lookup_env().globals().any(|(n, _)| n == name)
}

/// One environment for every lookup (validation asks for each filter, test and function a
/// pipeline uses).
fn lookup_env() -> &'static Environment<'static> {
    static ENV: std::sync::OnceLock<Environment<'static>> = std::sync::OnceLock::new();
    ENV.get_or_init(environment)
}

/// minijinja's own `is filter` / `is test` tests: the truth, whatever its version ships.
fn lookup(kind: &str, name: &str) -> bool {
    let env = lookup_env();
    let Ok(expr) = env.compile_expression_owned(format!("name is {kind}")) else { return false };
    expr.eval(minijinja::context! { name => name }).is_ok_and(|v| v.is_true())
}

/// A template or expression that could not be used.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TemplateError(pub String);

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    // A template is user input: bound the work it can make us do.
    env.set_fuel(Some(100_000));
    env.set_recursion_limit(64);
    env
}

fn describe(e: &minijinja::Error) -> String {
    let mut msg = e.detail().map_or_else(|| e.kind().to_string(), str::to_string);
    if matches!(e.kind(), minijinja::ErrorKind::UndefinedError) {
        msg = format!("undefined value ({msg})");
    }
    msg
}

/// A template context from any serializable value.
pub(crate) fn to_value<T: serde::Serialize>(v: T) -> Value {
    Value::from(minijinja::value::Serde(v))
}

/// If `s` is exactly one `{{ expression }}`, returns the expression.
fn sole_expression(s: &str) -> Option<&str> {
    let inner = s.trim().strip_prefix("{{")?.strip_suffix("}}")?;
    (!inner.contains("{{") && !inner.contains("}}") && !inner.contains("{%")).then_some(inner.trim())
}

/// Strips an optional `{{ }}` around an `if:` expression.
pub(crate) fn condition_expression(s: &str) -> &str {
    sole_expression(s).unwrap_or(s.trim())
}

/// Checks a template completely (syntax to the end, filters, tests, functions) and returns
/// what it reads. Validation uses it for located errors; the engine calls it again before
/// rendering, so nothing that validation would refuse is ever half-evaluated.
pub(crate) fn analyze(template: &str) -> Result<expr::Analysis, TemplateError> {
    let a = expr::template(template).map_err(|p| TemplateError(p.message))?;
    match a.problems.first() {
        Some(p) => Err(TemplateError(p.message.clone())),
        None => Ok(a),
    }
}

/// [`analyze`] for an `if:` expression.
pub(crate) fn analyze_condition(condition: &str) -> Result<expr::Analysis, TemplateError> {
    let a = expr::expression(condition_expression(condition)).map_err(|p| TemplateError(p.message))?;
    match a.problems.first() {
        Some(p) => Err(TemplateError(p.message.clone())),
        None => Ok(a),
    }
}

/// The names a template reads, dotted (`inputs.email`, `steps.lookup.output.id`).
pub(crate) fn references(template: &str) -> Result<BTreeSet<String>, TemplateError> {
    Ok(analyze(template)?.refs.iter().map(expr::Ref::dotted).collect())
}

/// Renders every string in `value` against `ctx`. A string that is exactly one
/// `{{ expression }}` takes the expression's JSON value (so lists and numbers pass through).
pub(crate) fn render_json(value: &serde_json::Value, ctx: &Value) -> Result<serde_json::Value, TemplateError> {
    use serde_json::Value as J;
    Ok(match value {
        J::String(s) => render_string_value(s, ctx)?,
        J::Array(items) => J::Array(items.iter().map(|v| render_json(v, ctx)).collect::<Result<_, _>>()?),
        J::Object(map) => J::Object(
            map.iter().map(|(k, v)| Ok((k.clone(), render_json(v, ctx)?))).collect::<Result<_, TemplateError>>()?,
        ),
        other => other.clone(),
    })
}

fn render_string_value(s: &str, ctx: &Value) -> Result<serde_json::Value, TemplateError> {
    if !s.contains("{{") && !s.contains("{%") {
        return Ok(serde_json::Value::String(s.to_string()));
    }
    analyze(s).map_err(|e| TemplateError(format!("in `{s}`: {e}")))?;
    let env = environment();
    if let Some(expr) = sole_expression(s) {
        let compiled = env.compile_expression(expr).map_err(|e| TemplateError(describe(&e)))?;
        let v = compiled.eval(ctx.clone()).map_err(|e| TemplateError(format!("in `{s}`: {}", describe(&e))))?;
        if v.is_undefined() {
            return Err(TemplateError(format!("in `{s}`: undefined value (`{expr}` names nothing)")));
        }
        return serde_json::to_value(&v).map_err(|e| TemplateError(format!("in `{s}`: {e}")));
    }
    env.render_str(s, ctx.clone())
        .map(serde_json::Value::String)
        .map_err(|e| TemplateError(format!("in `{s}`: {}", describe(&e))))
}

/// Renders a template to text (for `allow:` and credential hosts).
pub(crate) fn render_text(s: &str, ctx: &Value) -> Result<String, TemplateError> {
    match render_string_value(s, ctx)? {
        serde_json::Value::String(s) => Ok(s),
        other => Ok(other.to_string()),
    }
}

/// Evaluates an `if:` expression to a boolean (minijinja truthiness).
pub(crate) fn eval_condition(expr: &str, ctx: &Value) -> Result<bool, TemplateError> {
    analyze_condition(expr).map_err(|e| TemplateError(format!("in `if: {expr}`: {e}")))?;
    let env = environment();
    let compiled = env.compile_expression(condition_expression(expr)).map_err(|e| TemplateError(describe(&e)))?;
    compiled
        .eval(ctx.clone())
        .map(|v| v.is_true())
        .map_err(|e| TemplateError(format!("in `if: {expr}`: {}", describe(&e))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx() -> Value {
        to_value(json!({
            "inputs": { "email": "alice@example.com" },
            "steps": { "lookup": { "output": { "id": "00u1", "groups": ["a", "b"] }, "status": "succeeded" } },
            "vars": {}, "run": { "id": "r1" },
        }))
    }

    #[test]
    fn sole_expressions_keep_their_type_and_text_is_interpolated() {
        let out = render_json(
            &json!({ "g": "{{ steps.lookup.output.groups }}", "u": "user {{ inputs.email }}", "n": 3 }),
            &ctx(),
        )
        .unwrap();
        assert_eq!(out, json!({ "g": ["a", "b"], "u": "user alice@example.com", "n": 3 }));
    }

    #[test]
    fn undefined_values_are_errors_not_empty_strings() {
        let err = render_json(&json!("{{ steps.lookup.output.nope }}"), &ctx()).unwrap_err();
        assert!(err.0.contains("undefined"), "{}", err.0);
    }

    #[test]
    fn references_and_conditions() {
        let refs = references("{{ inputs.email }} {{ steps.lookup.output.id }}").unwrap();
        assert!(refs.iter().any(|r| r.starts_with("inputs.email")), "{refs:?}");
        assert!(refs.iter().any(|r| r.starts_with("steps.lookup")), "{refs:?}");
        assert!(eval_condition("steps.lookup.output.id == '00u1'", &ctx()).unwrap());
        assert!(!eval_condition("{{ inputs.email == 'bob' }}", &ctx()).unwrap());
    }

    #[test]
    fn a_condition_is_evaluated_whole_or_not_at_all() {
        // minijinja alone evaluates `… != 'X'` and drops `&& false`: true where false was meant.
        let err = eval_condition("steps.lookup.output.id != 'X' && false", &ctx()).unwrap_err();
        assert!(err.0.contains("use `and`"), "{}", err.0);
        assert!(!eval_condition("steps.lookup.output.id != 'X' and false", &ctx()).unwrap());
        let err = render_json(&json!("{{ inputs.email | lowercase }}"), &ctx()).unwrap_err();
        assert!(err.0.contains("unknown filter `lowercase`"), "{}", err.0);
    }
}
