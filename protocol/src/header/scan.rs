//! Small lexical helpers shared by the typed header parsers (RFC 3261 §25.1 basic rules):
//! linear whitespace (including line folding), comma splitting that respects quoted strings
//! and `<...>`, token checks and bounded decimal numbers.

use std::ops::Range;

/// Whitespace inside a header value: SP, HT, and the CR/LF of a folded line (RFC 3261 §7.3.1).
pub(crate) fn is_lws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// Trims linear whitespace (including folding) from both ends.
pub(crate) fn trim(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_ascii() && is_lws(c as u8))
}

/// Trims linear whitespace from a byte slice.
pub(crate) fn trim_bytes(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|b| !is_lws(*b)).unwrap_or(s.len());
    let end = s.iter().rposition(|b| !is_lws(*b)).map_or(start, |e| e + 1);
    s.get(start..end).unwrap_or_default()
}

/// RFC 3261 §25.1 `token` characters.
pub(crate) fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

/// True if `s` is a non-empty RFC 3261 token.
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token_char)
}

/// Position of the first `needle` in `s` that is outside quoted strings and `<...>`.
pub(crate) fn find_unquoted(s: &[u8], needle: u8) -> Option<usize> {
    let mut in_quote = false;
    let mut in_angle = false;
    let mut escape = false;
    for (i, &b) in s.iter().enumerate() {
        if in_quote {
            if escape {
                escape = false;
            } else if b == b'\\' {
                escape = true;
            } else if b == b'"' {
                in_quote = false;
            }
            continue;
        }
        if b == needle && !in_angle {
            return Some(i);
        }
        match b {
            b'"' => in_quote = true,
            b'<' => in_angle = true,
            b'>' => in_angle = false,
            _ => {}
        }
    }
    None
}

/// Splits a header value on commas that are not inside quotes or `<...>`; yields the trimmed
/// byte range of each element relative to `s`. An all-whitespace value yields nothing.
pub(crate) fn split_commas(s: &[u8]) -> CommaSplit<'_> {
    let done = trim_bytes(s).is_empty();
    CommaSplit { s, pos: 0, done }
}

/// Iterator returned by [`split_commas`].
pub(crate) struct CommaSplit<'a> {
    s: &'a [u8],
    pos: usize,
    done: bool,
}

impl Iterator for CommaSplit<'_> {
    type Item = Range<usize>;

    fn next(&mut self) -> Option<Range<usize>> {
        if self.done {
            return None;
        }
        let rest = self.s.get(self.pos..)?;
        let end = match find_unquoted(rest, b',') {
            Some(i) => self.pos + i,
            None => {
                self.done = true;
                self.s.len()
            }
        };
        let mut a = self.pos;
        let mut b = end;
        while a < b && self.s.get(a).is_some_and(|c| is_lws(*c)) {
            a += 1;
        }
        while b > a && self.s.get(b - 1).is_some_and(|c| is_lws(*c)) {
            b -= 1;
        }
        self.pos = end + 1;
        Some(a..b)
    }
}

/// Parses a run of ASCII digits into a `u64`; `None` on empty input, any non-digit or overflow.
pub(crate) fn parse_u64(s: &str) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let mut v: u64 = 0;
    for b in s.bytes() {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(v)
}

/// Parses delta-seconds, saturating at `u32::MAX` for very long values; `None` on non-digits.
pub(crate) fn parse_delta_seconds(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(parse_u64(s).map_or(u32::MAX, |v| u32::try_from(v).unwrap_or(u32::MAX)))
}

/// Scans a quoted string starting at `s[0] == '"'`; returns the index just past the closing
/// quote, or `None` if it is unterminated.
pub(crate) fn quoted_end(s: &[u8]) -> Option<usize> {
    let mut escape = false;
    for (i, &b) in s.iter().enumerate().skip(1) {
        if escape {
            escape = false;
        } else if b == b'\\' {
            escape = true;
        } else if b == b'"' {
            return Some(i + 1);
        }
    }
    None
}

/// Removes the backslash escapes of a quoted-string body (RFC 3261 §25.1 `quoted-pair`).
pub fn unquote(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.contains('\\') {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut escape = false;
    for c in s.chars() {
        if escape {
            out.push(c);
            escape = false;
        } else if c == '\\' {
            escape = true;
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(s: &str) -> Vec<&str> {
        split_commas(s.as_bytes())
            .map(|r| s.get(r).unwrap_or("!"))
            .collect()
    }

    #[test]
    fn comma_split_respects_quotes_and_angles() {
        assert_eq!(
            parts(r#""a, b" <sip:x;p=1,2>;q=1 , <sip:y>"#),
            vec![r#""a, b" <sip:x;p=1,2>;q=1"#, "<sip:y>"]
        );
        assert_eq!(parts(" a ,\r\n b"), vec!["a", "b"]);
        assert_eq!(parts("a,,b"), vec!["a", "", "b"]);
        assert!(parts("  ").is_empty());
        assert_eq!(parts(r#""x\", y", z"#), vec![r#""x\", y""#, "z"]);
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_u64("0009"), Some(9));
        assert_eq!(parse_u64("-1"), None);
        assert_eq!(parse_u64("36893488147419103232"), None);
        assert_eq!(parse_delta_seconds("10000000000"), Some(u32::MAX));
        assert_eq!(parse_delta_seconds("x"), None);
    }

    #[test]
    fn quoting() {
        assert_eq!(quoted_end(br#""a\"b" x"#), Some(6));
        assert_eq!(quoted_end(br#""abc"#), None);
        assert_eq!(unquote(r#"a\"b"#), "a\"b");
    }
}
