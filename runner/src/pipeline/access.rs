//! What a step may reach: its `allow:` entries (origins, methods, path prefixes) within the
//! operator's cap, and its `credentials:` (which secret goes to which host, in which header).
//! Hosts may be templated from `vars` only: a requester must not choose where a credential goes.

use super::diag::Diagnostic;
use super::model::{AllowEntry, Credential};
use super::origin::{Grant, Origin};
use super::plan::CredentialPlan;
use super::template;
use super::yaml::{Loc, Spanned};

pub(super) fn origin(
    entry: &Spanned<String>,
    var_ctx: &minijinja::Value,
    diags: &mut Vec<Diagnostic>,
) -> Option<Origin> {
    let text = render_host(entry, var_ctx, diags)?;
    Origin::parse(&text).map_err(|e| diags.push(Diagnostic::new(entry.loc, e))).ok()
}

/// Hosts may use `vars` (operator-controlled) but nothing a requester controls.
fn render_host(entry: &Spanned<String>, var_ctx: &minijinja::Value, diags: &mut Vec<Diagnostic>) -> Option<String> {
    match template::references(entry) {
        Err(e) => {
            diags.push(Diagnostic::new(entry.loc, format!("invalid template: {e}")));
            return None;
        }
        Ok(refs) => {
            if let Some(bad) = refs.iter().find(|r| !r.starts_with("vars.") && *r != "vars") {
                diags.push(Diagnostic::new(
                    entry.loc,
                    format!(
                        "hosts may only use `vars` (found `{bad}`): a requester must not choose where credentials go"
                    ),
                ));
                return None;
            }
        }
    }
    template::render_text(entry, var_ctx).map_err(|e| diags.push(Diagnostic::new(entry.loc, e.0))).ok()
}

const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/// The methods and path prefixes of an `allow:` entry, checked.
pub(super) fn grant(origin: Origin, entry: &AllowEntry, diags: &mut Vec<Diagnostic>) -> Option<Grant> {
    let AllowEntry::Rule(rule) = entry else { return Some(Grant::origin(origin)) };
    let mut ok = true;
    let mut methods = Vec::new();
    for m in &rule.methods {
        let upper = m.trim().to_ascii_uppercase();
        if METHODS.contains(&upper.as_str()) {
            methods.push(upper);
        } else {
            diags.push(Diagnostic::new(m.loc, format!("unknown method `{}`: use {}", m.as_str(), METHODS.join(", "))));
            ok = false;
        }
    }
    let mut paths = Vec::new();
    for p in &rule.paths {
        let normal = url::Url::parse("http://x").ok().and_then(|base| base.join(p.trim()).ok());
        match normal {
            Some(u) if p.starts_with('/') && u.path() == p.trim() && u.query().is_none() => {
                paths.push(u.path().to_string())
            }
            _ => {
                diags.push(Diagnostic::new(
                    p.loc,
                    format!("`{}` is not a plain path prefix: start it with `/`, without `.`/`..` segments, query or fragment, e.g. `/api/v1/users/`", p.as_str()),
                ));
                ok = false;
            }
        }
    }
    ok.then_some(Grant { origin, methods, paths })
}

/// An `allow:` entry must fall inside the operator's cap, when there is one.
pub(super) fn within_cap(o: &Origin, loc: Loc, cap: Option<&[Origin]>, diags: &mut Vec<Diagnostic>) -> bool {
    let Some(cap) = cap else { return true };
    if cap.iter().any(|c| c.covers(o)) {
        return true;
    }
    let listed = cap.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
    let listed = if listed.is_empty() { "nothing".to_string() } else { listed };
    diags.push(Diagnostic::new(
        loc,
        format!("{o} is outside what the operator allows pipelines to reach (`network.allow`: {listed}); ask the operator to add it"),
    ));
    false
}

pub(super) fn check_credential(
    c: &Credential,
    allow: &[Grant],
    var_ctx: &minijinja::Value,
    diags: &mut Vec<Diagnostic>,
) -> Option<CredentialPlan> {
    let origin = origin(&c.host, var_ctx, diags)?;
    let mut ok = true;
    if origin.is_wildcard() {
        diags.push(Diagnostic::new(
            c.host.loc,
            format!("a credential goes to one host, not to every host under `{origin}`: name the host"),
        ));
        return None;
    }
    if !allow.iter().any(|a| a.origin.covers(&origin)) {
        diags.push(Diagnostic::new(
            c.host.loc,
            format!("credential host {origin} is not in this step's `allow:`; add it there"),
        ));
        ok = false;
    }
    let secret = c.secret.as_str();
    let valid_secret = secret.chars().next().is_some_and(|ch| ch.is_ascii_uppercase())
        && secret.chars().all(|ch| ch.is_ascii_uppercase() || ch.is_ascii_digit() || ch == '_');
    if !valid_secret {
        diags.push(Diagnostic::new(
            c.secret.loc,
            format!("secret name `{secret}` must be upper-case letters, digits and `_`, like an environment variable (e.g. `OKTA_API_TOKEN`)"),
        ));
        ok = false;
    }
    if http::HeaderName::from_bytes(c.header.as_bytes()).is_err() {
        diags.push(Diagnostic::new(c.header.loc, format!("`{}` is not a valid header name", c.header.as_str())));
        ok = false;
    }
    if !c.format.contains("{secret}") {
        diags.push(Diagnostic::new(
            c.format.loc,
            "`format` must contain `{secret}` where the secret goes, e.g. `SSWS {secret}`",
        ));
        ok = false;
    }
    ok.then(|| CredentialPlan {
        origin,
        secret: secret.to_string(),
        header: c.header.to_ascii_lowercase(),
        format: c.format.value.clone(),
    })
}
