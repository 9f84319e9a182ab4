//! minijinja templating of `with:`, `if:` and `allow:`, shared by validation and the engine.
//!
//! The context has four roots: `inputs`, `vars`, `steps` (`steps.<id>.output`,
//! `steps.<id>.status`) and `run` (`run.id`). Secrets are not among them, by design.

use std::collections::BTreeSet;

use minijinja::{Environment, UndefinedBehavior, Value};

/// The names a template may start with.
pub(crate) const ROOTS: &[&str] = &["inputs", "vars", "steps", "run"];
/// Names people reach for when they want a secret; each gets a pointed error.
pub(crate) const SECRET_ROOTS: &[&str] = &["secrets", "secret", "env", "credentials"];

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

/// The variables a template string refers to, as dotted paths (`inputs.email`,
/// `steps.lookup.output`). Syntax errors come back as an error.
pub(crate) fn references(template: &str) -> Result<BTreeSet<String>, TemplateError> {
    if !template.contains("{{") && !template.contains("{%") {
        return Ok(BTreeSet::new());
    }
    let env = environment();
    let tmpl = env.template_from_str(template).map_err(|e| TemplateError(describe(&e)))?;
    Ok(tmpl.undeclared_variables(true).into_iter().collect())
}

/// The variables an `if:` expression refers to.
pub(crate) fn expression_references(expr: &str) -> Result<BTreeSet<String>, TemplateError> {
    let env = environment();
    let compiled = env.compile_expression(condition_expression(expr)).map_err(|e| TemplateError(describe(&e)))?;
    Ok(compiled.undeclared_variables(true).into_iter().collect())
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
}
