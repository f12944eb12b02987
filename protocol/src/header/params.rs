//! Generic `;name=value` parameter lists (RFC 3261 §25.1 `generic-param`), kept as a borrowed
//! slice and parsed lazily on lookup: no allocation.

use super::scan::{find_unquoted, is_token, trim};

/// A borrowed parameter list, e.g. the `;branch=z9hG4bK1;rport` part of a Via value.
/// The stored text excludes the leading `;`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Params<'a> {
    raw: &'a str,
}

impl<'a> Params<'a> {
    /// Wraps the text after the first `;` (an empty string means no parameters).
    pub fn new(raw: &'a str) -> Self {
        Self { raw }
    }

    /// The raw text (without the leading `;`).
    pub fn raw(&self) -> &'a str {
        self.raw
    }

    /// True if there are no parameters.
    pub fn is_empty(&self) -> bool {
        trim(self.raw).is_empty()
    }

    /// Iterates `(name, value)` pairs; values keep their quotes if quoted.
    pub fn iter(&self) -> ParamIter<'a> {
        ParamIter {
            rest: if self.raw.is_empty() {
                None
            } else {
                Some(self.raw)
            },
        }
    }

    /// Looks a parameter up by name, case-insensitively. `Some(None)` for a flag parameter.
    pub fn get(&self, name: &str) -> Option<Option<&'a str>> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// True if a parameter with this name is present (with or without a value).
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Checks that every parameter name is a token and every value is a token, a quoted
    /// string or a bracketed IPv6 reference (the latter for Via `received`, RFC 5118 §4.5).
    pub fn is_well_formed(&self) -> bool {
        self.iter().all(|(n, v)| {
            is_token(n)
                && v.is_none_or(|v| {
                    (v.starts_with('"') && v.ends_with('"') && v.len() >= 2)
                        || (v.starts_with('[') && v.ends_with(']'))
                        || (!v.is_empty()
                            && v.bytes().all(|b| {
                                super::scan::is_token_char(b) || b":[]/@?&=$+".contains(&b)
                            }))
                })
        })
    }
}

/// Iterator over `(name, value)` pairs of a [`Params`].
#[derive(Clone, Debug)]
pub struct ParamIter<'a> {
    rest: Option<&'a str>,
}

impl<'a> Iterator for ParamIter<'a> {
    type Item = (&'a str, Option<&'a str>);

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.rest?;
        let (item, next) = match find_unquoted(rest.as_bytes(), b';') {
            Some(i) => (rest.get(..i)?, rest.get(i + 1..)),
            None => (rest, None),
        };
        self.rest = next;
        Some(match item.find('=') {
            Some(i) => (trim(item.get(..i)?), Some(trim(item.get(i + 1..)?))),
            None => (trim(item), None),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup() {
        let p = Params::new("branch=z9hG4bK1 ; RPORT;received=\"a;b\"");
        assert_eq!(p.get("Branch"), Some(Some("z9hG4bK1")));
        assert_eq!(p.get("rport"), Some(None));
        assert_eq!(p.get("received"), Some(Some("\"a;b\"")));
        assert_eq!(p.get("x"), None);
        assert!(p.is_well_formed());
        assert!(!Params::new(";").is_well_formed());
        assert!(Params::new("").is_empty());
        assert_eq!(Params::new("").iter().count(), 0);
    }
}
