//! Static analysis of templates and `if:` expressions: they must parse completely, use only
//! filters, tests and functions that exist, and every name they read is reported with the
//! attribute path after it, so validation can check `steps.lookup.output.id` against what the
//! step's plugin declares.
//!
//! Parsing goes through minijinja's own parser (`unstable_machinery`, version pinned in
//! Cargo.toml) so what is checked is exactly what the engine evaluates. Two gaps of the public
//! API are closed here: a lexer error after a complete expression (`a == b && c`) is swallowed
//! by minijinja's parser, so every source is tokenized to the end first; and unknown filters,
//! tests and functions are only found at render time, so they are looked up here.

use std::collections::BTreeSet;

use minijinja::machinery::{self, Span, ast};

/// One name a template reads, with the attribute path after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ref {
    /// `steps` in `steps.lookup.output.id`.
    pub root: String,
    pub path: Vec<Seg>,
    /// Byte offset of the reference in the template source.
    pub offset: usize,
    /// Its length in bytes.
    pub len: usize,
}

impl Ref {
    /// `steps.lookup.output.id`, with `[]` for an index and `[…]` for a computed key.
    pub(crate) fn dotted(&self) -> String {
        let mut s = self.root.clone();
        for seg in &self.path {
            match seg {
                Seg::Attr(name) => {
                    s.push('.');
                    s.push_str(name);
                }
                Seg::Index => s.push_str("[]"),
                Seg::Dynamic => s.push_str("[…]"),
            }
        }
        s
    }
}

/// One step of an attribute path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seg {
    /// `.name` or `["name"]`.
    Attr(String),
    /// `[0]`: an item of a list.
    Index,
    /// `[expr]`: not known statically.
    Dynamic,
}

/// What a template's value is when rendered.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Shape {
    /// Text with interpolations: a string.
    Text,
    /// Exactly `{{ reference }}`: the referenced value, with its type (index into `refs`).
    Ref(usize),
    /// Exactly `{{ constant }}`.
    Const(serde_json::Value),
    /// Exactly one other `{{ expression }}`: any type.
    Any,
}

/// A problem at a byte offset of the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    pub message: String,
    pub offset: usize,
    /// Bytes to underline (at least 1).
    pub len: usize,
}

/// What a template or expression reads and uses.
#[derive(Debug, Clone)]
pub(crate) struct Analysis {
    pub refs: Vec<Ref>,
    /// Unknown filters, tests, functions; method calls; unsupported statements.
    pub problems: Vec<Problem>,
    pub shape: Shape,
}

/// The whole source must tokenize: minijinja's parser stops at a complete expression and
/// drops a lexer error that follows it (`a == 'b' && c` would evaluate `a == 'b'`).
fn lex_all(source: &str, in_expr: bool) -> Result<(), Problem> {
    let config = minijinja::syntax::SyntaxConfig::default();
    for token in machinery::tokenize(source, in_expr, config) {
        if let Err(e) = token {
            let offset = e.range().map_or(0, |r| r.start);
            return Err(problem_at(source, &e, offset));
        }
    }
    Ok(())
}

/// minijinja's message, with the fix for operators people bring from other languages.
fn syntax_message(source: &str, e: &minijinja::Error, offset: usize) -> String {
    let detail = e.detail().unwrap_or("syntax error").to_string();
    let rest = source.get(offset..).unwrap_or_default();
    let hint = [("&&", "and"), ("||", "or"), ("!", "not "), ("===", "=="), ("!==", "!=")]
        .iter()
        .find(|(bad, _)| rest.starts_with(bad) && !(*bad == "!" && rest.starts_with("!=")))
        .map(|(bad, good)| format!(": `{bad}` is not an operator here, use `{}`", good.trim()));
    match hint {
        Some(h) => format!("{detail}{h}"),
        None => detail,
    }
}

fn parse_error(source: &str, e: &minijinja::Error) -> Problem {
    let mut offset = e.range().map_or(0, |r| r.start);
    // The parser stops at the second `|` of `||`: point at the operator's start.
    if offset > 0 && source.get(offset - 1..).is_some_and(|r| r.starts_with("||")) {
        offset -= 1;
    }
    problem_at(source, e, offset)
}

fn problem_at(source: &str, e: &minijinja::Error, offset: usize) -> Problem {
    let rest = source.get(offset..).unwrap_or_default();
    let len = rest.chars().take_while(|c| "&|!=".contains(*c)).count().max(1);
    Problem { message: syntax_message(source, e, offset), offset, len }
}

/// Analyses an `if:` expression (without `{{ }}`).
pub(crate) fn expression(source: &str) -> Result<Analysis, Problem> {
    lex_all(source, true)?;
    let expr = machinery::parse_expr(source).map_err(|e| parse_error(source, &e))?;
    let mut w = Walker::default();
    w.expr(&expr);
    let shape = w.shape_of(&expr);
    Ok(Analysis { refs: w.refs, problems: w.problems, shape })
}

/// Analyses a template string (text with `{{ }}` and `{% %}`).
pub(crate) fn template(source: &str) -> Result<Analysis, Problem> {
    if !source.contains("{{") && !source.contains("{%") && !source.contains("{#") {
        return Ok(Analysis { refs: vec![], problems: vec![], shape: Shape::Text });
    }
    lex_all(source, false)?;
    let stmt = machinery::parse(source, "<template>", Default::default()).map_err(|e| parse_error(source, &e))?;
    let mut w = Walker::default();
    w.stmt(&stmt);
    let shape = match &stmt {
        ast::Stmt::Template(t) if sole_emit(source) => {
            let mut emitted = t.children.iter().filter_map(|c| match c {
                ast::Stmt::EmitExpr(e) => Some(&e.expr),
                _ => None,
            });
            match (emitted.next(), emitted.next()) {
                (Some(e), None) => w.shape_of(e),
                _ => Shape::Text,
            }
        }
        _ => Shape::Text,
    };
    Ok(Analysis { refs: w.refs, problems: w.problems, shape })
}

/// Whether the source is exactly one `{{ … }}` (surrounding whitespace aside), which the
/// engine renders to the expression's own value instead of text.
fn sole_emit(source: &str) -> bool {
    let t = source.trim();
    t.starts_with("{{") && t.ends_with("}}") && t[2..t.len() - 2].matches("}}").count() == 0
}

#[derive(Default)]
struct Walker {
    refs: Vec<Ref>,
    problems: Vec<Problem>,
    /// Names bound inside the template (`for x in …`, `set x = …`, `with x = …`, `loop`).
    locals: BTreeSet<String>,
}

fn at(span: Span) -> usize {
    span.start_offset as usize
}

impl Walker {
    fn problem(&mut self, span: Span, message: String) {
        let len = (span.end_offset.saturating_sub(span.start_offset) as usize).max(1);
        self.problems.push(Problem { message, offset: at(span), len });
    }

    /// A problem about a name at `span`'s start (a filter, test or function name).
    fn name_problem(&mut self, span: Span, name: &str, message: String) {
        self.problems.push(Problem { message, offset: at(span), len: name.len().max(1) });
    }

    fn body(&mut self, stmts: &[ast::Stmt<'_>]) {
        stmts.iter().for_each(|s| self.stmt(s));
    }

    fn bind(&mut self, target: &ast::Expr<'_>) {
        match target {
            ast::Expr::Var(v) => {
                self.locals.insert(v.id.to_string());
            }
            ast::Expr::List(l) => l.items.iter().for_each(|i| self.bind(i)),
            ast::Expr::Tuple(t) => t.items.iter().for_each(|i| self.bind(i)),
            _ => {}
        }
    }

    fn stmt(&mut self, stmt: &ast::Stmt<'_>) {
        use ast::Stmt as S;
        match stmt {
            S::Template(t) => self.body(&t.children),
            S::EmitExpr(e) => self.expr(&e.expr),
            S::EmitRaw(_) => {}
            S::ForLoop(f) => {
                self.expr(&f.iter);
                self.bind(&f.target);
                self.locals.insert("loop".into());
                if let Some(filter) = &f.filter_expr {
                    self.expr(filter);
                }
                self.body(&f.body);
                self.body(&f.else_body);
            }
            S::IfCond(i) => {
                self.expr(&i.expr);
                self.body(&i.true_body);
                self.body(&i.false_body);
            }
            S::WithBlock(w) => {
                for (target, value) in &w.assignments {
                    self.expr(value);
                    self.bind(target);
                }
                self.body(&w.body);
            }
            S::Set(s) => {
                self.expr(&s.expr);
                self.bind(&s.target);
            }
            S::SetBlock(s) => {
                if let Some(f) = &s.filter {
                    self.expr(f);
                }
                self.body(&s.body);
                self.bind(&s.target);
            }
            S::FilterBlock(f) => {
                self.expr(&f.filter);
                self.body(&f.body);
            }
            S::Do(d) => self.call(&d.call),
            other => {
                let (span, what) = match other {
                    S::AutoEscape(s) => (s.span(), "autoescape"),
                    S::Block(s) => (s.span(), "block"),
                    S::Import(s) => (s.span(), "import"),
                    S::FromImport(s) => (s.span(), "from … import"),
                    S::Extends(s) => (s.span(), "extends"),
                    S::Include(s) => (s.span(), "include"),
                    S::Macro(s) => (s.span(), "macro"),
                    S::CallBlock(s) => (s.span(), "call"),
                    _ => (Span::default(), "this statement"),
                };
                self.problem(
                    span,
                    format!("`{{% {what} %}}` is not available in pipeline templates (use `if`, `for`, `set`, `with`)"),
                );
            }
        }
    }

    /// The reference an expression is, if it is a name with attributes (`steps.a.output.id`).
    fn path_of(expr: &ast::Expr<'_>) -> Option<(String, Vec<Seg>, Span)> {
        match expr {
            ast::Expr::Var(v) => Some((v.id.to_string(), vec![], v.span())),
            ast::Expr::GetAttr(g) => {
                let (root, mut path, span) = Self::path_of(&g.expr)?;
                path.push(Seg::Attr(g.name.to_string()));
                Some((root, path, span))
            }
            ast::Expr::GetItem(g) => {
                let (root, mut path, span) = Self::path_of(&g.expr)?;
                path.push(match &g.subscript_expr {
                    ast::Expr::Const(c) => match c.value.as_str() {
                        Some(s) => Seg::Attr(s.to_string()),
                        None if c.value.is_number() => Seg::Index,
                        None => Seg::Dynamic,
                    },
                    _ => Seg::Dynamic,
                });
                Some((root, path, span))
            }
            _ => None,
        }
    }

    fn shape_of(&self, expr: &ast::Expr<'_>) -> Shape {
        if let ast::Expr::Const(c) = expr {
            return serde_json::to_value(&c.value).map_or(Shape::Any, Shape::Const);
        }
        match Self::path_of(expr) {
            Some((root, path, span)) if !self.locals.contains(&root) => self
                .refs
                .iter()
                .position(|r| r.root == root && r.path == path && r.offset == at(span))
                .map_or(Shape::Any, Shape::Ref),
            _ => Shape::Any,
        }
    }

    fn expr(&mut self, expr: &ast::Expr<'_>) {
        use ast::Expr as E;
        if let Some((root, path, span)) = Self::path_of(expr) {
            // Computed keys are expressions too.
            self.subscripts(expr);
            if !self.locals.contains(&root) {
                let len = expr.span().end_offset.saturating_sub(span.start_offset) as usize;
                self.refs.push(Ref { root, path, offset: at(span), len });
            }
            return;
        }
        match expr {
            E::Var(_) | E::Const(_) => {}
            E::Slice(s) => {
                self.expr(&s.expr);
                for e in [&s.start, &s.stop, &s.step].into_iter().flatten() {
                    self.expr(e);
                }
            }
            E::UnaryOp(u) => self.expr(&u.expr),
            E::BinOp(b) => {
                self.expr(&b.left);
                self.expr(&b.right);
            }
            E::Compare(c) => {
                self.expr(&c.expr);
                c.ops.iter().for_each(|op| self.expr(&op.expr));
            }
            E::IfExpr(i) => {
                self.expr(&i.test_expr);
                self.expr(&i.true_expr);
                if let Some(f) = &i.false_expr {
                    self.expr(f);
                }
            }
            E::Filter(f) => {
                if let Some(e) = &f.expr {
                    self.expr(e);
                }
                self.args(&f.args);
                if !super::template::is_filter(f.name) {
                    let hint = suggest(f.name, super::template::FILTERS, super::template::is_filter);
                    self.name_problem(f.span(), f.name, format!("unknown filter `{}`{hint}", f.name));
                }
            }
            E::Test(t) => {
                self.expr(&t.expr);
                self.args(&t.args);
                if !super::template::is_test(t.name) {
                    let hint = suggest(t.name, super::template::TESTS, super::template::is_test);
                    self.problem(t.span(), format!("unknown test `is {}`{hint}", t.name));
                }
            }
            E::GetAttr(g) => self.expr(&g.expr),
            E::GetItem(g) => {
                self.expr(&g.expr);
                self.expr(&g.subscript_expr);
            }
            E::Call(c) => self.call(c),
            E::List(l) => l.items.iter().for_each(|i| self.expr(i)),
            E::Tuple(t) => t.items.iter().for_each(|i| self.expr(i)),
            E::Map(m) => {
                m.keys.iter().for_each(|k| self.expr(k));
                m.values.iter().for_each(|v| self.expr(v));
            }
        }
    }

    fn subscripts(&mut self, expr: &ast::Expr<'_>) {
        match expr {
            ast::Expr::GetAttr(g) => self.subscripts(&g.expr),
            ast::Expr::GetItem(g) => {
                self.subscripts(&g.expr);
                if !matches!(g.subscript_expr, ast::Expr::Const(_)) {
                    self.expr(&g.subscript_expr);
                }
            }
            _ => {}
        }
    }

    fn args(&mut self, args: &[ast::CallArg<'_>]) {
        for a in args {
            match a {
                ast::CallArg::Pos(e)
                | ast::CallArg::Kwarg(_, e)
                | ast::CallArg::PosSplat(e)
                | ast::CallArg::KwargSplat(e) => self.expr(e),
            }
        }
    }

    fn call(&mut self, call: &ast::Spanned<ast::Call<'_>>) {
        self.args(&call.args);
        match &call.expr {
            ast::Expr::Var(v) if self.locals.contains(v.id) => {}
            ast::Expr::Var(v) => {
                if !super::template::is_function(v.id) {
                    let hint = suggest(v.id, super::template::FUNCTIONS, super::template::is_function);
                    self.name_problem(v.span(), v.id, format!("unknown function `{}()`{hint}", v.id));
                }
            }
            ast::Expr::GetAttr(g) => {
                self.expr(&g.expr);
                let filter = if super::template::is_filter(g.name) {
                    format!(": use the filter, `| {}`", g.name)
                } else {
                    String::new()
                };
                self.problem(call.span(), format!("method calls like `.{}()` are not available{filter}", g.name));
            }
            other => self.expr(other),
        }
    }
}

/// Names people bring from other template languages, and what this one calls them.
const ALIASES: &[(&str, &str)] = &[
    ("lowercase", "lower"),
    ("downcase", "lower"),
    ("uppercase", "upper"),
    ("upcase", "upper"),
    ("len", "length"),
    ("size", "length"),
    ("strip", "trim"),
    ("json", "tojson"),
    ("to_json", "tojson"),
    ("str", "string"),
    ("to_string", "string"),
    ("is_defined", "defined"),
    ("exists", "defined"),
    ("null", "none"),
];

/// `(did you mean `x`?)` among the names `is_known` accepts.
fn suggest(name: &str, candidates: &[&str], is_known: fn(&str) -> bool) -> String {
    let lower = name.to_ascii_lowercase();
    if let Some((_, good)) = ALIASES.iter().find(|(bad, good)| *bad == lower && is_known(good)) {
        return format!(" (did you mean `{good}`?)");
    }
    let known: Vec<&str> = candidates.iter().copied().filter(|c| is_known(c)).collect();
    super::yaml::closest(&lower, &known).map(|b| format!(" (did you mean `{b}`?)")).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs(a: &Analysis) -> Vec<String> {
        a.refs.iter().map(Ref::dotted).collect()
    }

    #[test]
    fn expressions_must_parse_to_the_end() {
        for (src, at) in [
            ("steps.lookup.output.status != 'DEPROVISIONED' && false", 46),
            ("'a' == 'a' &&& nonsense", 11),
            ("a || b", 2),
            ("a | b || c", 6),
            ("a b", 2),
            ("!a", 0),
        ] {
            let err = expression(src).unwrap_err();
            assert_eq!(err.offset, at, "{src}: {err:?}");
        }
        let err = expression("a == 'b' && c").unwrap_err();
        assert!(err.message.contains("use `and`"), "{}", err.message);
        let err = expression("a || c").unwrap_err();
        assert!(err.message.contains("use `or`"), "{}", err.message);
        let err = template("{{ a && b }}").unwrap_err();
        assert!(err.message.contains("use `and`"), "{}", err.message);
    }

    #[test]
    fn references_keep_their_attribute_paths() {
        let a = expression("steps.lookup.output.status != 'X' and inputs['email'] and steps.a.output.groups[0].id")
            .unwrap();
        assert_eq!(refs(&a), ["steps.lookup.output.status", "inputs.email", "steps.a.output.groups[].id"]);
        let a = template("{% for g in steps.a.output.groups %}{{ g.id }} {{ loop.index }}{% endfor %}").unwrap();
        assert_eq!(refs(&a), ["steps.a.output.groups"]);
        let a = template("{{ inputs[vars.key] }}").unwrap();
        assert_eq!(refs(&a), ["vars.key", "inputs[…]"]);
    }

    #[test]
    fn shapes() {
        assert_eq!(template("{{ steps.a.output.id }}").unwrap().shape, Shape::Ref(0));
        assert_eq!(template(" {{ 3 }} ").unwrap().shape, Shape::Const(serde_json::json!(3)));
        assert_eq!(template("id {{ steps.a.output.id }}").unwrap().shape, Shape::Text);
        assert_eq!(template("{{ a }}{{ b }}").unwrap().shape, Shape::Text);
        assert_eq!(template("{{ a | lower }}").unwrap().shape, Shape::Any);
        assert_eq!(template("plain").unwrap().shape, Shape::Text);
    }

    #[test]
    fn unknown_filters_tests_functions_and_methods() {
        let a = template("{{ inputs.email | lowercase }}").unwrap();
        assert_eq!(a.problems[0].message, "unknown filter `lowercase` (did you mean `lower`?)");
        assert_eq!(a.problems[0].offset, 18);
        let a = expression("inputs.x is defind").unwrap();
        assert_eq!(a.problems[0].message, "unknown test `is defind` (did you mean `defined`?)");
        let a = expression("rnage(3)").unwrap();
        assert_eq!(a.problems[0].message, "unknown function `rnage()` (did you mean `range`?)");
        let a = expression("inputs.email.upper()").unwrap();
        assert!(a.problems[0].message.contains("use the filter, `| upper`"), "{:?}", a.problems);
        let a = template("{% include 'x' %}").unwrap();
        assert!(a.problems[0].message.contains("`{% include %}` is not available"), "{:?}", a.problems);
        let a = template("{{ inputs.email | lower | replace('a', 'b') }} {{ range(3) | list }} {{ x is defined }}")
            .unwrap();
        assert!(a.problems.is_empty(), "{:?}", a.problems);
    }
}
