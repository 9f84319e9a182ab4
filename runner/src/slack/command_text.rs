//! The slash command's text: `/offboard alice@example.com [bob@example.com …] [pipeline=NAME]
//! [key=value ...]` (several people, separated by spaces, commas or new lines, are one request
//! for all of them), `/offboard help`, `/offboard status RUN_ID`.

use std::collections::BTreeMap;

/// What the text asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SlashCommand {
    Help,
    Status {
        run_id: String,
    },
    /// Who is leaving (one or more, in the order given), then the options every run gets.
    Offboard {
        subjects: Vec<String>,
        pipeline: Option<String>,
        inputs: BTreeMap<String, String>,
    },
}

/// Reads the command text. The error says what was wrong; the caller adds the usage.
pub(crate) fn parse(text: &str) -> Result<SlashCommand, String> {
    let mut words = text.split_whitespace();
    let Some(first) = words.next() else { return Ok(SlashCommand::Help) };
    match first.to_ascii_lowercase().as_str() {
        "help" | "-h" | "--help" => return Ok(SlashCommand::Help),
        "status" => {
            let id = words.next().ok_or("`status` needs a run id: `status RUN_ID`")?;
            if let Some(extra) = words.next() {
                return Err(format!("unexpected `{extra}` after the run id"));
            }
            if id.is_empty() || id.len() > 64 || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                return Err(format!("`{id}` is not a run id (they look like 0190f3c2-…)"));
            }
            return Ok(SlashCommand::Status { run_id: id.to_string() });
        }
        _ => {}
    }
    if first.contains('=') {
        return Err(format!(
            "start with who is leaving (e.g. `alice@example.com`), then `key=value` options; got `{first}` first"
        ));
    }
    let mut subjects = Vec::new();
    let mut pipeline = None;
    let mut inputs = BTreeMap::new();
    for word in std::iter::once(first).chain(words) {
        let Some((k, v)) = word.split_once('=') else {
            if pipeline.is_some() || !inputs.is_empty() {
                return Err(format!(
                    "`{word}` comes after the `key=value` options: name everyone who is leaving first, then the options"
                ));
            }
            subjects.extend(word.split(',').filter(|w| !w.is_empty()).map(unwrap_link));
            continue;
        };
        let (k, v) = (k.trim(), unwrap_link(v));
        if k.is_empty() || v.is_empty() {
            return Err(format!("`{word}` needs both a key and a value"));
        }
        if k == "pipeline" {
            if pipeline.replace(pipeline_name(&v)?).is_some() {
                return Err("`pipeline=` is given twice".into());
            }
            continue;
        }
        if inputs.insert(k.to_string(), v).is_some() {
            return Err(format!("`{k}=` is given twice"));
        }
    }
    if subjects.is_empty() {
        return Err("name who is leaving first (e.g. `alice@example.com`)".into());
    }
    Ok(SlashCommand::Offboard { subjects, pipeline, inputs })
}

/// A pipeline name is a file stem in the pipelines directory: no paths.
pub(crate) fn pipeline_name(name: &str) -> Result<String, String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if ok {
        Ok(name.to_string())
    } else {
        Err(format!("`{name}` is not a pipeline name (lower-case letters, digits, `-`, `_`)"))
    }
}

/// Slack may send `<mailto:a@b.c|a@b.c>` or `<https://x|x>` for what the user typed; take the label.
fn unwrap_link(word: &str) -> String {
    match word.strip_prefix('<').and_then(|w| w.strip_suffix('>')) {
        Some(inner) => match inner.split_once('|') {
            Some((_, label)) => label.to_string(),
            None => inner.strip_prefix("mailto:").unwrap_or(inner).to_string(),
        },
        None => word.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_commands() {
        assert_eq!(parse("").unwrap(), SlashCommand::Help);
        assert_eq!(parse("  HELP ").unwrap(), SlashCommand::Help);
        assert_eq!(parse("status 0190-ab").unwrap(), SlashCommand::Status { run_id: "0190-ab".into() });
        let SlashCommand::Offboard { subjects, pipeline, inputs } =
            parse("<mailto:alice@example.com|alice@example.com> pipeline=contractor manager=<mailto:bob@example.com|bob@example.com>")
                .unwrap()
        else {
            panic!("not an offboard command")
        };
        assert_eq!(subjects, ["alice@example.com"]);
        assert_eq!(pipeline.as_deref(), Some("contractor"));
        assert_eq!(inputs.get("manager").map(String::as_str), Some("bob@example.com"));
    }

    #[test]
    fn reads_several_people_however_they_are_separated() {
        let text = "<mailto:a@x.com|a@x.com>, b@x.com,c@x.com\nd@x.com\t e@x.com manager=m@x.com";
        let SlashCommand::Offboard { subjects, inputs, .. } = parse(text).unwrap() else { panic!("not offboard") };
        assert_eq!(subjects, ["a@x.com", "b@x.com", "c@x.com", "d@x.com", "e@x.com"]);
        assert_eq!(inputs.len(), 1);
    }

    #[test]
    fn explains_bad_text() {
        for (text, says) in [
            ("status", "needs a run id"),
            ("status ../../etc", "not a run id"),
            ("status a b", "unexpected `b`"),
            ("pipeline=x alice@example.com", "start with who is leaving"),
            ("alice@example.com manager=m@x.com bob@example.com", "comes after the `key=value` options"),
            (", ,", "name who is leaving first"),
            ("alice@example.com pipeline=../secrets", "not a pipeline name"),
            ("alice@example.com pipeline=a pipeline=b", "given twice"),
            ("alice@example.com x=1 x=2", "given twice"),
            ("alice@example.com x=", "both a key and a value"),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains(says), "{text:?}: {err}");
        }
    }
}
