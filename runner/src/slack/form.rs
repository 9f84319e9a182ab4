//! Slack's form bodies (`application/x-www-form-urlencoded`), read strictly: the raw body and
//! every percent-decoded key and value must be UTF-8. A lossy decoder would turn `%FF` into
//! U+FFFD and carry on with text nobody typed (a mangled email a click then starts a run for).

/// Refuses a body that is not UTF-8, raw or once percent-decoded.
pub(super) fn check_utf8(body: &[u8]) -> Result<(), String> {
    std::str::from_utf8(body).map_err(|e| format!("the body is not UTF-8: {e}"))?;
    for pair in body.split(|&b| b == b'&') {
        for part in pair.splitn(2, |&b| b == b'=') {
            let spaced: Vec<u8> = part.iter().map(|&b| if b == b'+' { b' ' } else { b }).collect();
            let decoded: Vec<u8> = percent_encoding::percent_decode(&spaced).collect();
            if std::str::from_utf8(&decoded).is_err() {
                let shown: String = String::from_utf8_lossy(part).chars().take(40).collect();
                return Err(format!("a form field is not UTF-8 once decoded: `{shown}`"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_utf8_raw_and_decoded() {
        assert!(check_utf8(b"text=alice%40example.com&user_id=U1").is_ok());
        assert!(check_utf8("text=jos%C3%A9%40example.com+x".as_bytes()).is_ok());
        assert!(check_utf8(b"text=alic\xe9@example.com").is_err(), "raw Latin-1");
        assert!(check_utf8(b"text=alic%E9%40example.com").is_err(), "percent-encoded Latin-1");
        assert!(check_utf8(b"te%FFxt=a").is_err(), "in a key too");
        assert!(check_utf8(b"payload=%7B%22a%22%3A1%7D").is_ok());
    }
}
