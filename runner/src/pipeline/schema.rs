//! Reading a plugin's declared JSON Schemas: which fields an output has (for
//! `steps.<id>.output.<field>` references) and which JSON types a value may take. Validating an
//! input against a schema is the `jsonschema` crate's job (pipeline/contract.rs); this is the
//! navigation it does not offer.

use std::collections::BTreeSet;

use serde_json::Value;

use super::expr::Seg;

/// Where a path through an output schema leads.
#[derive(Debug, PartialEq)]
pub(crate) enum Lookup<'a> {
    /// The schema of the value at the end of the path.
    Found(&'a Value),
    /// `path[at]` names a field the object at `path[..at]` does not declare.
    Missing { at: usize, field: String, known: Vec<String> },
    /// `path[at]` reads a field of something that is not an object (`found`: "a string", …).
    NotObject { at: usize, found: String },
    /// The schema does not say (open object, `{}`, a computed key, …).
    Unknown,
}

/// Follows `$ref`s (to `#/$defs/…` or `#/definitions/…` of `root`), at most a few levels.
fn resolve<'a>(root: &'a Value, mut s: &'a Value) -> &'a Value {
    for _ in 0..16 {
        let Some(r) = s.get("$ref").and_then(Value::as_str) else { return s };
        let Some(pointer) = r.strip_prefix('#') else { return s };
        match root.pointer(pointer) {
            Some(next) => s = next,
            None => return s,
        }
    }
    s
}

/// The alternatives a schema allows (`anyOf`/`oneOf` branches, or itself), resolved.
fn branches<'a>(root: &'a Value, s: &'a Value) -> Vec<&'a Value> {
    let s = resolve(root, s);
    let mut out = Vec::new();
    for key in ["anyOf", "oneOf"] {
        if let Some(list) = s.get(key).and_then(Value::as_array) {
            for b in list {
                out.extend(branches(root, b));
            }
        }
    }
    if out.is_empty() { vec![s] } else { out }
}

/// The JSON types a schema allows (`None`: any). `integer` counts as `number` too.
pub(crate) fn types(root: &Value, s: &Value) -> Option<BTreeSet<String>> {
    let mut all = BTreeSet::new();
    for b in branches(root, s) {
        let b_types: BTreeSet<String> = match b.get("type") {
            Some(Value::String(t)) => [t.clone()].into(),
            Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).map(str::to_string).collect(),
            _ => match (b.get("const"), b.get("enum").and_then(Value::as_array)) {
                (Some(c), _) => [json_type(c).to_string()].into(),
                (None, Some(values)) => values.iter().map(|v| json_type(v).to_string()).collect(),
                _ if b.get("properties").is_some() => ["object".to_string()].into(),
                _ => return None,
            },
        };
        all.extend(b_types);
    }
    if all.contains("integer") {
        all.insert("number".into());
    }
    Some(all)
}

/// A value's JSON type name.
pub(crate) fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// "a string", "an object", "a string or null".
pub(crate) fn describe_types(types: &BTreeSet<String>) -> String {
    let words: Vec<String> = types
        .iter()
        .filter(|t| t.as_str() != "null")
        .chain(types.get("null"))
        .filter(|t| !(t.as_str() == "number" && types.contains("integer")))
        .map(|t| match t.as_str() {
            "object" | "array" | "integer" => format!("an {t}"),
            "null" => "null".to_string(),
            other => format!("a {other}"),
        })
        .collect();
    words.join(" or ")
}

/// One line naming an object schema's fields and their types, required ones marked `*`:
/// `org_url*: string, user*: string, poll_wait_ms: integer` (`skip` left out).
pub(crate) fn summary(root: &Value, skip: &str) -> String {
    let s = resolve(root, root);
    let required: BTreeSet<&str> =
        s.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
    let Some(props) = s.get("properties").and_then(Value::as_object) else {
        return "(any JSON)".into();
    };
    let fields: Vec<String> = props
        .iter()
        .filter(|(k, _)| k.as_str() != skip)
        .map(|(k, v)| {
            let t = types(root, v).map_or_else(
                || "any".to_string(),
                |t| {
                    let shown = |x: &&String| !(x.as_str() == "number" && t.contains("integer"));
                    let mut names: Vec<&str> =
                        t.iter().filter(shown).filter(|x| *x != "null").map(String::as_str).collect();
                    names.extend(t.get("null").map(String::as_str));
                    names.join("|")
                },
            );
            format!("{k}{}: {t}", if required.contains(k.as_str()) { "*" } else { "" })
        })
        .collect();
    if fields.is_empty() { "(none)".into() } else { fields.join(", ") }
}

/// Follows `path` through an output schema. Objects that list `properties` are closed unless
/// they say otherwise (`additionalProperties` other than `false`): an output's declaration is
/// what later steps may read.
pub(crate) fn lookup<'a>(root: &'a Value, path: &[Seg]) -> Lookup<'a> {
    lookup_from(root, root, path, 0)
}

fn lookup_from<'a>(root: &'a Value, s: &'a Value, path: &[Seg], at: usize) -> Lookup<'a> {
    let Some(seg) = path.get(at) else { return Lookup::Found(resolve(root, s)) };
    let options = branches(root, s);
    let mut known = BTreeSet::new();
    let mut scalar: Option<BTreeSet<String>> = None;
    let mut result = None;
    for b in &options {
        let next = match seg {
            Seg::Dynamic => return Lookup::Unknown,
            Seg::Index => match b.get("items") {
                Some(items) => Some(items),
                None => return Lookup::Unknown,
            },
            Seg::Attr(name) => {
                let props = b.get("properties").and_then(Value::as_object);
                match (props.and_then(|p| p.get(name)), b.get("additionalProperties")) {
                    (Some(field), _) => Some(field),
                    (None, Some(Value::Bool(false))) | (None, None) if props.is_some() => {
                        known.extend(props.into_iter().flat_map(|p| p.keys().cloned()));
                        None
                    }
                    (None, Some(extra)) if extra.is_object() => Some(extra),
                    _ => match types(root, b) {
                        Some(t) if !t.contains("object") => {
                            scalar.get_or_insert_with(BTreeSet::new).extend(t);
                            None
                        }
                        _ => return Lookup::Unknown,
                    },
                }
            }
        };
        if let Some(next) = next {
            match lookup_from(root, next, path, at + 1) {
                Lookup::Unknown => return Lookup::Unknown,
                found @ Lookup::Found(_) if result.is_none() => result = Some(found),
                Lookup::Found(_) => return Lookup::Unknown, // several branches: type not certain
                missing if result.is_none() && options.len() == 1 => return missing,
                _ => {}
            }
        }
    }
    if let Some(found) = result {
        return found;
    }
    match (seg, scalar) {
        (Seg::Attr(_), Some(t)) if known.is_empty() => Lookup::NotObject { at, found: describe_types(&t) },
        (Seg::Attr(name), _) => Lookup::Missing { at, field: name.clone(), known: known.into_iter().collect() },
        _ => Lookup::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn attrs(p: &[&str]) -> Vec<Seg> {
        p.iter().map(|s| if *s == "[]" { Seg::Index } else { Seg::Attr((*s).into()) }).collect()
    }

    #[test]
    fn fields_through_refs_lists_and_alternatives() {
        let s = json!({
            "type": "object",
            "properties": {
                "id": { "type": "string" },
                "groups": { "type": "array", "items": { "$ref": "#/$defs/Group" } },
                "extra": { "type": "object" },
                "either": { "anyOf": [ { "$ref": "#/$defs/Group" }, { "type": "null" } ] }
            },
            "$defs": { "Group": { "type": "object", "properties": { "name": { "type": "string" } }, "additionalProperties": false } }
        });
        assert_eq!(lookup(&s, &attrs(&["id"])), Lookup::Found(&json!({ "type": "string" })));
        assert_eq!(lookup(&s, &attrs(&["groups", "[]", "name"])), Lookup::Found(&json!({ "type": "string" })));
        assert_eq!(lookup(&s, &attrs(&["either", "name"])), Lookup::Found(&json!({ "type": "string" })));
        assert_eq!(lookup(&s, &attrs(&["extra", "anything"])), Lookup::Unknown);
        assert_eq!(
            lookup(&s, &attrs(&["idd"])),
            Lookup::Missing {
                at: 0,
                field: "idd".into(),
                known: vec!["either".into(), "extra".into(), "groups".into(), "id".into()]
            }
        );
        assert_eq!(
            lookup(&s, &attrs(&["groups", "[]", "nam"])),
            Lookup::Missing { at: 2, field: "nam".into(), known: vec!["name".into()] }
        );
        assert_eq!(lookup(&s, &attrs(&["id", "x"])), Lookup::NotObject { at: 1, found: "a string".into() });
        assert_eq!(lookup(&json!({}), &attrs(&["anything"])), Lookup::Unknown);
        assert_eq!(lookup(&json!(true), &attrs(&["anything"])), Lookup::Unknown);
    }

    #[test]
    fn type_names() {
        let root = json!({});
        assert_eq!(
            types(&root, &json!({ "type": ["string", "null"] })).map(|t| describe_types(&t)),
            Some("a string or null".into())
        );
        assert_eq!(types(&root, &json!({ "type": "integer" })).map(|t| describe_types(&t)), Some("an integer".into()));
        assert_eq!(types(&root, &json!({ "enum": ["a", "b"] })).map(|t| describe_types(&t)), Some("a string".into()));
        assert_eq!(types(&root, &json!({})), None);
    }
}
