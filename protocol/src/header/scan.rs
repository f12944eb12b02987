//! Small lexical helpers shared by the typed header parsers (RFC 3261 §25.1 basic rules):
//! linear whitespace (including line folding), comma splitting that respects quoted strings
//! and `<...>`, token checks and bounded decimal numbers.

use std::ops::Range;

const TOKEN: u8 = 1;
const LWS: u8 = 2;
const HOST: u8 = 4;
const URI_BAD: u8 = 8;
const PVALUE: u8 = 16;

/// Character classes for the hot loops (one table lookup per byte).
static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        let mut f = 0;
        if c.is_ascii_alphanumeric() {
            f |= TOKEN | HOST;
        }
        if matches!(
            c,
            b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
        ) {
            f |= TOKEN;
        }
        if matches!(c, b'-' | b'.' | b'_') {
            f |= HOST;
        }
        if f & TOKEN != 0
            || matches!(
                c,
                b':' | b'[' | b']' | b'/' | b'@' | b'?' | b'&' | b'=' | b'$' | b'+'
            )
        {
            f |= PVALUE;
        }
        if matches!(c, b' ' | b'\t' | b'\r' | b'\n') {
            f |= LWS;
        }
        if c < 0x21 || c == 0x7f || matches!(c, b'<' | b'>' | b'"') {
            f |= URI_BAD;
        }
        t[i] = f;
        i += 1;
    }
    t
};

fn class(b: u8) -> u8 {
    CLASS.get(usize::from(b)).copied().unwrap_or(0)
}

/// Whitespace inside a header value: SP, HT, and the CR/LF of a folded line (RFC 3261 §7.3.1).
pub(crate) fn is_lws(b: u8) -> bool {
    class(b) & LWS != 0
}

/// Characters of an unquoted parameter value (token plus `:[]/@?&=$+`).
pub(crate) fn is_pvalue_char(b: u8) -> bool {
    class(b) & PVALUE != 0
}

/// Hostname characters (alphanumerics, `-`, `.`, `_`).
pub(crate) fn is_host_char(b: u8) -> bool {
    class(b) & HOST != 0
}

/// Bytes that may not appear unescaped anywhere in a URI (controls, SP, `<`, `>`, `"`).
pub(crate) fn is_uri_bad(b: u8) -> bool {
    class(b) & URI_BAD != 0
}

/// Trims linear whitespace (including folding) from both ends.
pub(crate) fn trim(s: &str) -> &str {
    let b = s.as_bytes();
    let start = b.iter().position(|c| !is_lws(*c)).unwrap_or(b.len());
    let end = b.iter().rposition(|c| !is_lws(*c)).map_or(start, |e| e + 1);
    // LWS bytes are ASCII, so these are char boundaries.
    s.get(start..end).unwrap_or_default()
}

/// Trims linear whitespace from a byte slice.
pub(crate) fn trim_bytes(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|b| !is_lws(*b)).unwrap_or(s.len());
    let end = s.iter().rposition(|b| !is_lws(*b)).map_or(start, |e| e + 1);
    s.get(start..end).unwrap_or_default()
}

/// Case-insensitive comparison of `s` with a lower-case keyword made of letters only (such as
/// a parameter name). Branch-free: for a letter, `c | 0x20` equals it only for its two cases,
/// so the fold is exact.
pub(crate) fn eq_letters<const N: usize>(s: &str, lower: &[u8; N]) -> bool {
    <[u8; N]>::try_from(s.as_bytes()).is_ok_and(|a| {
        a.iter()
            .zip(lower)
            .fold(0u8, |d, (c, l)| d | ((c | 0x20) ^ l))
            == 0
    })
}

/// RFC 3261 §25.1 `token` characters.
pub(crate) fn is_token_char(b: u8) -> bool {
    class(b) & TOKEN != 0
}

/// True if `s` is a non-empty RFC 3261 token.
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token_char)
}

/// Position of the first `c` in `s`: a plain loop for very short strings (cheaper than a SIMD
/// search's set-up), `memchr` for the rest (from about 16 bytes it wins, measured).
pub(crate) fn find_byte(s: &[u8], c: u8) -> Option<usize> {
    if s.len() < 16 {
        s.iter().position(|b| *b == c)
    } else {
        memchr::memchr(c, s)
    }
}

/// [`find_byte`] on a `str`.
pub(crate) fn find_char(s: &str, c: u8) -> Option<usize> {
    find_byte(s.as_bytes(), c)
}

/// Position of the first `needle` in `s` that is outside quoted strings and `<...>`.
/// Returns `None` if an unterminated quote or `<` hides the rest.
pub(crate) fn find_unquoted(s: &[u8], needle: u8) -> Option<usize> {
    let mut i = 0;
    while let Some(&c) = s.get(i) {
        if c == needle {
            return Some(i);
        }
        if i >= 16 && s.len() - i >= 32 {
            // Long remainder after a short prefix (display names and the like are usually
            // short, and a match there is found cheaper by this loop): jump to the next
            // interesting byte with a SIMD search.
            let rest = s.get(i..)?;
            match memchr::memchr3(needle, b'"', b'<', rest) {
                Some(0) => {}
                Some(j) => {
                    i += j;
                    continue;
                }
                None => return None,
            }
        }
        match c {
            b'"' => i += quoted_end(s.get(i..)?)?,
            b'<' => i += find_byte(s.get(i..)?, b'>')? + 1,
            _ => i += 1,
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
    parse_u64_bytes(s.as_bytes())
}

/// [`parse_u64`] on bytes (anything but ASCII digits fails, so no UTF-8 check is needed).
pub(crate) fn parse_u64_bytes(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let mut v: u64 = 0;
    for &b in s {
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
    fn letters() {
        assert!(eq_letters("BrAnch", b"branch"));
        assert!(!eq_letters("branc", b"branch"));
        assert!(!eq_letters("bran\x03h", b"branch"));
        assert!(!eq_letters("tag", b"tab"));
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
