//! `name-addr` / `addr-spec` values as used by From, To, Route, Record-Route, Path and
//! Contact (RFC 3261 §20.10, §20.20, §20.39, §25.1). In the `addr-spec` form (no `<>`)
//! everything after the first `;` is a header parameter, not a URI parameter (§20).

use std::borrow::Cow;

use super::Params;
use super::params::scan_params;
use super::scan::{find_char, find_unquoted, quoted_end, trim, unquote};
use crate::message::ParseError;
use crate::uri::Uri;

/// A display name (optional), a URI and header parameters such as `tag`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NameAddr<'a> {
    /// The display name: the text inside the quotes (escapes kept) or the unquoted tokens.
    pub display_name: Option<&'a str>,
    /// True if the display name was quoted.
    pub display_quoted: bool,
    /// The URI.
    pub uri: Uri<'a>,
    /// The raw URI text (inside `<>` if those were used).
    pub uri_raw: &'a str,
    /// Header parameters after the URI (`tag`, `expires`, `q`, ...).
    pub params: Params<'a>,
    /// The whole value as written (trimmed), e.g. to copy a Contact into a response.
    pub raw: &'a str,
}

impl<'a> NameAddr<'a> {
    /// Parses one `name-addr` or `addr-spec` followed by `;params`.
    pub fn parse(s: &'a str) -> Result<Self, ParseError> {
        let s = trim(s);
        let b = s.as_bytes();
        let (display_name, display_quoted, uri_raw, after) = if b.first() == Some(&b'"') {
            let end = quoted_end(b).ok_or(ParseError::UnterminatedQuote)?;
            let dn = s.get(1..end - 1).ok_or(ParseError::UnterminatedQuote)?;
            let rest = trim(s.get(end..).unwrap_or_default());
            let (uri, after) = angle(rest)?;
            (Some(dn), true, uri, after)
        } else if let Some(lt) = find_unquoted(b, b'<') {
            let dn = trim(s.get(..lt).unwrap_or_default());
            if dn.contains('"') || dn.contains('>') {
                return Err(ParseError::MalformedNameAddr);
            }
            let (uri, after) = angle(s.get(lt..).unwrap_or_default())?;
            ((!dn.is_empty()).then_some(dn), false, uri, after)
        } else {
            if b.contains(&b'>') || b.contains(&b'"') {
                return Err(ParseError::MalformedNameAddr);
            }
            match find_char(s, b';') {
                Some(i) => (
                    None,
                    false,
                    trim(s.get(..i).unwrap_or_default()),
                    s.get(i..).unwrap_or_default(),
                ),
                None => (None, false, s, ""),
            }
        };
        let after = trim(after);
        let params = match after.strip_prefix(';') {
            Some(p) => Params::new(p),
            None if after.is_empty() => Params::new(""),
            None => return Err(ParseError::MalformedNameAddr),
        };
        if !params.raw().is_empty() && scan_params(params.raw(), |_, _| true).is_err() {
            return Err(ParseError::MalformedNameAddr);
        }
        let uri = Uri::parse(uri_raw)?;
        Ok(Self {
            display_name,
            display_quoted,
            uri,
            uri_raw,
            params,
            raw: s,
        })
    }

    /// The `tag` parameter (RFC 3261 §19.3).
    pub fn tag(&self) -> Option<&'a str> {
        self.params.get("tag").flatten()
    }

    /// A header parameter by name (case-insensitive); `Some(None)` for a flag.
    pub fn param(&self, name: &str) -> Option<Option<&'a str>> {
        self.params.get(name)
    }

    /// The display name with quoted-pair escapes removed.
    pub fn display_name_unescaped(&self) -> Option<Cow<'a, str>> {
        self.display_name.map(|d| {
            if self.display_quoted {
                unquote(d)
            } else {
                Cow::Borrowed(d)
            }
        })
    }
}

/// Splits `<uri>rest` into the URI text and the rest.
fn angle(s: &str) -> Result<(&str, &str), ParseError> {
    let inner = s.strip_prefix('<').ok_or(ParseError::MalformedNameAddr)?;
    let close = find_char(inner, b'>').ok_or(ParseError::MalformedNameAddr)?;
    Ok((
        trim(inner.get(..close).unwrap_or_default()),
        inner.get(close + 1..).unwrap_or_default(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let n = NameAddr::parse(
            r#""J Rosenberg \\\""       <sip:jdrosen@example.com>
  ;
  tag = 98asjd8"#,
        )
        .unwrap();
        assert_eq!(n.display_name, Some(r#"J Rosenberg \\\""#));
        assert_eq!(n.display_name_unescaped().unwrap(), r#"J Rosenberg \""#);
        assert_eq!(n.tag(), Some("98asjd8"));
        let n =
            NameAddr::parse("sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n").unwrap();
        assert_eq!(n.tag(), Some("1918181833n"));
        assert!(n.display_name.is_none());
        let n = NameAddr::parse("Bob <sip:bob@biloxi.com;transport=tcp>;tag=a6c85cf").unwrap();
        assert_eq!(n.display_name, Some("Bob"));
        assert_eq!(n.tag(), Some("a6c85cf"));
        assert_eq!(n.uri.as_sip().unwrap().transport(), Some("tcp"));
        let n = NameAddr::parse("sip:a@b;user=phone").unwrap();
        assert!(n.uri.as_sip().unwrap().params.is_empty());
        assert_eq!(n.param("user"), Some(Some("phone")));
    }

    #[test]
    fn errors() {
        assert_eq!(
            NameAddr::parse(r#""Mr. J. User <sip:j.user@example.com>"#),
            Err(ParseError::UnterminatedQuote)
        );
        assert!(NameAddr::parse("<sip:a@b").is_err());
        assert!(NameAddr::parse("<sip:a@b> junk").is_err());
        assert!(NameAddr::parse("").is_err());
        assert!(NameAddr::parse("<sip:a@b>;;").is_err());
    }
}
