//! Text helpers shared by every module that shows text to people (a leaf: it imports nothing).

/// At most `max` characters of `s`, the last one `…` when it was cut.
pub(crate) fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}
