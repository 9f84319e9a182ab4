//! Errors in a pipeline file, rendered as `FILE:LINE:COL: message` with the line and a caret.

use std::fmt::Write as _;

use super::yaml::{DeError, Loc};

/// One problem in a pipeline file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub loc: Loc,
    pub message: String,
    /// How many characters the caret underlines; 0: the whole YAML token at `loc`.
    pub width: u32,
}

impl Diagnostic {
    pub(crate) fn new(loc: Loc, message: impl Into<String>) -> Self {
        Diagnostic { loc, message: message.into(), width: 0 }
    }

    pub(crate) fn from_de(e: DeError, fallback: Loc) -> Self {
        Diagnostic { loc: e.loc.unwrap_or(fallback), message: e.message, width: 0 }
    }

    /// Underlines `width` characters instead of the whole token (a name inside a string).
    pub(crate) fn with_width(mut self, width: u32) -> Self {
        self.width = width;
        self
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
        let width = if d.width > 0 { d.width as usize } else { token_width(line, col) };
        let indent: String = line.chars().take(col - 1).map(|c| if c == '\t' { '\t' } else { ' ' }).collect();
        let _ = writeln!(out, "{pad} |");
        let _ = writeln!(out, "{num} | {line}");
        let _ = writeln!(out, "{pad} | {indent}{}", "^".repeat(width));
    }
    out
}

/// The width of the YAML token starting at `col` (1-based): a quoted string to its closing
/// quote; in flow style (`[a, b]`, `{k: v}`) up to the next `,`, `]` or `}`; otherwise the rest
/// of the line before a comment. At least 1, at most 60.
fn token_width(line: &str, col: usize) -> usize {
    let chars: Vec<char> = line.chars().collect();
    let start = col - 1;
    if start >= chars.len() {
        return 1;
    }
    let rest = &chars[start..];
    let width = match rest[0] {
        q @ ('"' | '\'') => rest[1..].iter().position(|c| *c == q).map_or(rest.len(), |i| i + 2),
        _ => {
            let in_flow = chars[..start].iter().any(|c| matches!(c, '[' | '{'));
            let end = rest
                .iter()
                .enumerate()
                .position(|(i, c)| {
                    (in_flow && matches!(c, ',' | ']' | '}'))
                        || (*c == '#' && i > 0 && rest[i - 1] == ' ')
                        || (*c == ':' && rest.get(i + 1).is_none_or(|n| *n == ' '))
                })
                .unwrap_or(rest.len());
            rest[..end].iter().collect::<String>().trim_end().chars().count()
        }
    };
    width.clamp(1, 60)
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

    #[test]
    fn tokens_are_underlined_whole() {
        assert_eq!(token_width(r#"    user: "{{ inputs.mail }}""#, 11), 19);
        assert_eq!(token_width("    timeout: 30 parsecs  # comment", 14), 10);
        assert_eq!(token_width("    allow: [a.com, b.com]", 20), 5);
        assert_eq!(token_width("x", 5), 1);
        assert_eq!(token_width("    timout: 5s", 5), 6);
        assert_eq!(token_width("    allow: https://a.com", 12), 13);
    }
}
