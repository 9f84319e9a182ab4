//! Errors in a pipeline file, rendered as `FILE:LINE:COL: message` with the line and a caret.

use std::fmt::Write as _;

use super::yaml::{DeError, Loc};

/// One problem in a pipeline file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub loc: Loc,
    pub message: String,
}

impl Diagnostic {
    pub(crate) fn new(loc: Loc, message: impl Into<String>) -> Self {
        Diagnostic { loc, message: message.into() }
    }

    pub(crate) fn from_de(e: DeError, fallback: Loc) -> Self {
        Diagnostic { loc: e.loc.unwrap_or(fallback), message: e.message }
    }
}

/// Renders diagnostics like a compiler does:
///
/// ```text
/// pipelines/bad.yaml:7:11: plugin `oktaa` not found (did you mean `okta`?)
///     |
///   7 |     uses: oktaa
///     |           ^^^^^
/// ```
pub fn render(file: &str, source: &str, diags: &[Diagnostic]) -> String {
    let lines: Vec<&str> = source.lines().collect();
    let mut out = String::new();
    for d in diags {
        let _ = writeln!(out, "{file}:{}:{}: {}", d.loc.line, d.loc.col, d.message);
        let Some(line) = (d.loc.line as usize).checked_sub(1).and_then(|i| lines.get(i)) else {
            continue;
        };
        let num = d.loc.line.to_string();
        let pad = " ".repeat(num.len());
        let col = (d.loc.col as usize).max(1);
        // Underline the token that starts at the column (up to the next space), at least one caret.
        let rest: String = line.chars().skip(col - 1).collect();
        let width = rest
            .find(|c: char| c.is_whitespace() || c == ',' || c == ']' || c == '}')
            .unwrap_or(rest.len())
            .clamp(1, 60);
        let indent: String = line
            .chars()
            .take(col - 1)
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        let _ = writeln!(out, "{pad} |");
        let _ = writeln!(out, "{num} | {line}");
        let _ = writeln!(out, "{pad} | {indent}{}", "^".repeat(width));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_line_and_caret_under_the_token() {
        let src = "version: 1\nsteps:\n  - uses: oktaa\n";
        let d = Diagnostic::new(Loc { line: 3, col: 11 }, "plugin `oktaa` not found");
        let out = render("p.yaml", src, &[d]);
        assert_eq!(out, "p.yaml:3:11: plugin `oktaa` not found\n  |\n3 |   - uses: oktaa\n  |           ^^^^^\n");
    }
}
