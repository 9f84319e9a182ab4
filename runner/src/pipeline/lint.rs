//! The pipeline file as text, before and around YAML parsing: its encoding, the characters it
//! indents with, and a better place for a syntax error than where the parser gave up (a
//! parser notices an unclosed quote or bracket, or a missing `:`, only lines later).

use super::diag::Diagnostic;
use super::yaml::Loc;

/// The file's text, or where and why it is not UTF-8.
pub fn decode(bytes: &[u8]) -> Result<&str, Diagnostic> {
    let at_start = |message: &str| Diagnostic::new(Loc { line: 1, col: 1 }, message).with_width(1);
    if bytes.starts_with(&[0xFF, 0xFE]) || bytes.starts_with(&[0xFE, 0xFF]) {
        return Err(at_start(
            "the file is UTF-16 (it starts with a UTF-16 byte-order mark); save it as UTF-8, which pipelines are written in",
        ));
    }
    let text = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    match std::str::from_utf8(text) {
        Ok(s) => {
            if let Some(nul) = s.find('\0') {
                let loc = loc_of(s, nul);
                return Err(Diagnostic::new(loc, "the file contains a NUL byte: it is not a text file").with_width(1));
            }
            Ok(s)
        }
        Err(e) => {
            let good = e.valid_up_to();
            let before = std::str::from_utf8(&text[..good]).unwrap_or_default();
            let loc = loc_of(before, good);
            let byte = text.get(good).copied().unwrap_or_default();
            let hint = if (0xA0..=0xFF).contains(&byte) {
                // A lone Latin-1 letter (é = 0xE9) is the usual way a file ends up here.
                let ch = char::from(byte);
                format!(" (in Latin-1 that would be `{ch}`: the file looks Latin-1 encoded)")
            } else {
                String::new()
            };
            Err(Diagnostic::new(
                loc,
                format!(
                    "the file is not UTF-8: byte 0x{byte:02X} here is not valid UTF-8{hint}; save the file as UTF-8"
                ),
            )
            .with_width(1))
        }
    }
}

/// The 1-based line and column (in characters) of byte `offset` of `text`.
fn loc_of(text: &str, offset: usize) -> Loc {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    Loc { line: u32::try_from(line).unwrap_or(u32::MAX), col: u32::try_from(col).unwrap_or(u32::MAX) }
}

/// Spaces that look like indentation but are not YAML's (which indents with U+0020 only).
fn unicode_space(c: char) -> Option<&'static str> {
    Some(match c {
        '\u{00A0}' => "a non-breaking space (U+00A0)",
        '\u{2000}'..='\u{200A}' => "a typographic space",
        '\u{200B}' => "a zero-width space (U+200B)",
        '\u{202F}' => "a narrow non-breaking space (U+202F)",
        '\u{3000}' => "an ideographic space (U+3000)",
        '\u{FEFF}' => "a zero-width no-break space (U+FEFF)",
        _ => return None,
    })
}

/// Lines indented with a character YAML does not take as indentation (a non-breaking space
/// pasted from a web page, say): the parser would read the line as text, not structure.
pub(crate) fn indentation(text: &str) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        for (col, c) in line.chars().enumerate() {
            if c == ' ' || c == '\t' {
                continue;
            }
            if let Some(what) = unicode_space(c) {
                out.push(Diagnostic::new(
                    Loc { line: i as u32 + 1, col: col as u32 + 1 },
                    format!("{what} used as indentation; YAML indents with plain spaces"),
                ));
            }
            break;
        }
    }
    out
}

/// What a scan of the text finds before a syntax error: quoted strings that span lines (or
/// never close) and flow brackets still open. Positions are 0-based (line, column).
#[derive(Default)]
struct Scan {
    /// (line, col, quote) of each quoted string that did not close on the line it opened.
    runaway_quotes: Vec<(usize, usize, char)>,
    /// Flow `[`/`{` still open, outermost first.
    open_brackets: Vec<(usize, usize, char)>,
}

fn scan(lines: &[&str]) -> Scan {
    let mut out = Scan::default();
    let mut quote: Option<(usize, usize, char)> = None;
    for (ln, line) in lines.iter().enumerate() {
        let chars: Vec<char> = line.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            match quote {
                Some((ql, qc, q)) => {
                    if c == q {
                        if q == '\'' && chars.get(i + 1) == Some(&'\'') {
                            i += 2; // '' is an escaped quote
                            continue;
                        }
                        if ql != ln {
                            out.runaway_quotes.push((ql, qc, q));
                        }
                        quote = None;
                    } else if q == '"' && c == '\\' {
                        i += 1;
                    }
                }
                None => {
                    let starts_token = i == 0 || matches!(chars[i - 1], ' ' | '[' | '{' | ',' | ':');
                    match c {
                        '"' | '\'' if starts_token => quote = Some((ln, i, c)),
                        '#' if i == 0 || chars[i - 1] == ' ' => break,
                        '[' | '{' => out.open_brackets.push((ln, i, c)),
                        ']' | '}' => {
                            out.open_brackets.pop();
                        }
                        _ => {}
                    }
                }
            }
            i += 1;
        }
    }
    if let Some((ql, qc, q)) = quote {
        out.runaway_quotes.push((ql, qc, q));
    }
    out
}

fn indent(line: &str) -> usize {
    line.chars().take_while(|c| *c == ' ').count()
}

/// A better place (and message) for a YAML syntax error the parser reported at `loc`.
pub(crate) fn refine(text: &str, loc: Loc, message: &str) -> Diagnostic {
    let lines: Vec<&str> = text.lines().collect();
    let upto = (loc.line as usize).min(lines.len());
    let at = |line: usize, col: usize| Loc { line: line as u32 + 1, col: col as u32 + 1 };

    // A tab in the indentation: the parser stops at the line before, or mid-scalar.
    if message.contains("tab") {
        let from = (loc.line as usize).saturating_sub(1);
        let window = lines.iter().enumerate().skip(from.saturating_sub(1)).take(3);
        for (i, line) in window {
            let lead: String = line.chars().take_while(|c| c.is_whitespace()).collect();
            if let Some(col) = lead.chars().position(|c| c == '\t') {
                let msg = "a tab is used for indentation here; YAML indents with spaces only";
                return Diagnostic::new(at(i, col), msg).with_width(1);
            }
        }
    }

    // An unclosed quote or bracket on an earlier line: the parser read on until it choked.
    let found = scan(&lines[..upto]);
    if let Some(&(i, col, q)) = found.runaway_quotes.last()
        && i + 1 < loc.line as usize
    {
        return Diagnostic::new(
            at(i, col),
            format!(
                "unclosed quote: the `{q}` here is not closed on its line, so the string runs on into the lines below (the parser gave up at line {}: {message})",
                loc.line
            ),
        );
    }
    if let Some(&(i, col, c)) = found.open_brackets.last()
        && i + 1 < loc.line as usize
    {
        let close = if c == '[' { ']' } else { '}' };
        return Diagnostic::new(
            at(i, col),
            format!("unclosed `{c}`: close it with `{close}` (the parser gave up at line {}: {message})", loc.line),
        )
        .with_width(1);
    }

    // A key without its `:`: the parser notices at the next line of the same mapping.
    if message.contains("mapping values are not allowed") || message.contains("could not find expected ':'") {
        let here = lines.get((loc.line as usize).saturating_sub(1)).copied().unwrap_or_default();
        let prev = (0..(loc.line as usize).saturating_sub(1))
            .rev()
            .find(|&i| lines.get(i).is_some_and(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#')));
        if let Some(p) = prev {
            let line = lines[p];
            let bare = line.split(" #").next().unwrap_or_default();
            let content = bare.trim_start().trim_start_matches("- ");
            if indent(line) == indent(here) && !content.contains(':') && !content.trim().is_empty() {
                let key = content.split_whitespace().next().unwrap_or_default();
                let col = line.find(key).map_or(indent(line), |b| line[..b].chars().count());
                let msg = format!("missing `:` after `{key}` (a key and its value are written `key: value`)");
                return Diagnostic::new(at(p, col), msg);
            }
        }
    }
    Diagnostic::new(loc, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(line: u32, col: u32) -> Loc {
        Loc { line, col }
    }

    #[test]
    fn encodings() {
        assert_eq!(decode(b"a: 1\n").unwrap(), "a: 1\n");
        assert_eq!(decode(b"\xEF\xBB\xBFa: 1\n").unwrap(), "a: 1\n");
        let e = decode(b"version: 1\nname: caf\xe9\n").unwrap_err();
        assert_eq!(e.loc, l(2, 10));
        assert!(e.message.contains("0xE9") && e.message.contains("`\u{e9}`"), "{}", e.message);
        let e = decode(b"\xFF\xFEv\0e\0").unwrap_err();
        assert!(e.message.contains("UTF-16"), "{}", e.message);
        let e = decode(b"version: 1\n\x7fELF\0\0").unwrap_err();
        assert_eq!(e.loc, l(2, 5));
    }

    #[test]
    fn unicode_spaces_in_indentation() {
        let d = indentation("steps:\n  - id: a\n\u{a0}\u{a0}\u{a0} uses: x\n    with: { a: \"\u{a0}\" }\n");
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].loc, l(3, 1));
    }

    #[test]
    fn syntax_errors_move_to_their_cause() {
        let text = "a:\n  b: 1\n\tc: 2\n";
        assert_eq!(refine(text, l(2, 6), "found a tab").loc, l(3, 1));
        let text = "with:\n  user: \"{{ inputs.email }}\n  org: \"x\"\n  a: 1\n  b: 2\n";
        assert_eq!(refine(text, l(5, 3), "did not find expected key").loc, l(2, 9));
        let text = "s:\n  needs: [b\n  id: b\n";
        assert_eq!(refine(text, l(3, 5), "illegal placement of ':' indicator").loc, l(2, 10));
        let text = "with:\n  mode noop\n  value: 1\n";
        let d = refine(text, l(3, 8), "mapping values are not allowed in this context");
        assert_eq!(
            (d.loc, d.message.as_str()),
            (l(2, 3), "missing `:` after `mode` (a key and its value are written `key: value`)")
        );
        // A flow list spread over lines, closed, is fine: the error stays where it was.
        let text = "a: [1,\n  2]\nb: 'it''s'\nc: \"x\"\nd e\nf: 1\n";
        assert_eq!(refine(text, l(6, 2), "mapping values are not allowed").loc, l(5, 1));
        let text = "a: [1,\n  2]\nb: {\nc: 1\n";
        assert_eq!(refine(text, l(4, 2), "x").loc, l(3, 4));
    }
}
