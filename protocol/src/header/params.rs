//! Generic `;name=value` parameter lists (RFC 3261 §25.1 `generic-param`), kept as a borrowed
//! slice and parsed lazily on lookup: no allocation.

use super::scan::{find_byte, is_lws, is_pvalue_char, is_token, is_token_char, quoted_end, trim};

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
        self.iter().all(|(n, v)| param_ok(n, v))
    }
}

/// One validating pass over a parameter list (text after the first `;`): calls `f` with each
/// `(name, value)` until it returns `false`. Fails on the first parameter that
/// [`param_ok`] would reject (empty name, bad characters, unterminated quote).
pub(crate) fn scan_params<'a>(
    raw: &'a str,
    mut f: impl FnMut(&'a str, Option<&'a str>) -> bool,
) -> Result<(), ()> {
    let b = raw.as_bytes();
    let mut i = 0;
    let skip = |i: &mut usize| {
        while b.get(*i).is_some_and(|c| is_lws(*c)) {
            *i += 1;
        }
    };
    loop {
        skip(&mut i);
        let ns = i;
        while b.get(i).is_some_and(|c| is_token_char(*c)) {
            i += 1;
        }
        let name = raw.get(ns..i).ok_or(())?;
        if name.is_empty() {
            return Err(());
        }
        skip(&mut i);
        let mut value = None;
        if b.get(i) == Some(&b'=') {
            i += 1;
            skip(&mut i);
            let vs = i;
            match b.get(i) {
                Some(b'"') => i += quoted_end(b.get(i..).ok_or(())?).ok_or(())?,
                Some(b'[') => i += find_byte(b.get(i..).ok_or(())?, b']').ok_or(())? + 1,
                _ => {
                    while b.get(i).is_some_and(|c| is_pvalue_char(*c)) {
                        i += 1;
                    }
                }
            }
            if i == vs {
                return Err(());
            }
            value = Some(raw.get(vs..i).ok_or(())?);
            skip(&mut i);
        }
        if !f(name, value) {
            return Ok(());
        }
        match b.get(i) {
            None => return Ok(()),
            Some(b';') => i += 1,
            Some(_) => return Err(()),
        }
    }
}

/// Whether one `name[=value]` pair is well formed (see [`Params::is_well_formed`]).
pub(crate) fn param_ok(n: &str, v: Option<&str>) -> bool {
    is_token(n)
        && v.is_none_or(|v| {
            let b = v.as_bytes();
            match (b.first(), b.last()) {
                (Some(b'"'), Some(b'"')) => b.len() >= 2,
                (Some(b'['), Some(b']')) => true,
                (Some(_), _) => b
                    .iter()
                    .all(|c| is_token_char(*c) || b":[]/@?&=$+".contains(c)),
                (None, _) => false,
            }
        })
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
        let b = rest.as_bytes();
        // One pass: the first `=` and the `;` ending this parameter, skipping quoted strings.
        let mut eq = None;
        let mut end = None;
        let mut i = 0;
        while let Some(&c) = b.get(i) {
            match c {
                b';' => {
                    end = Some(i);
                    break;
                }
                b'=' if eq.is_none() => eq = Some(i),
                b'"' => match quoted_end(b.get(i..).unwrap_or_default()) {
                    Some(len) => {
                        i += len;
                        continue;
                    }
                    None => break,
                },
                _ => {}
            }
            i += 1;
        }
        let item_end = end.unwrap_or(b.len());
        self.rest = end.and_then(|e| rest.get(e + 1..));
        Some(match eq.filter(|e| *e < item_end) {
            Some(e) => (trim(rest.get(..e)?), Some(trim(rest.get(e + 1..item_end)?))),
            None => (trim(rest.get(..item_end)?), None),
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
        let mut seen = Vec::new();
        assert!(
            scan_params("a=1 ; b ;c=\"x;y\";d=[::1]", |n, v| {
                seen.push((n, v));
                true
            })
            .is_ok()
        );
        assert_eq!(
            seen,
            vec![
                ("a", Some("1")),
                ("b", None),
                ("c", Some("\"x;y\"")),
                ("d", Some("[::1]"))
            ]
        );
        assert!(scan_params(";", |_, _| true).is_err());
        assert!(scan_params("a=", |_, _| true).is_err());
        assert!(scan_params("a=\"x", |_, _| true).is_err());
        assert!(scan_params("a b", |_, _| true).is_err());
        assert!(Params::new("").is_empty());
        assert_eq!(Params::new("").iter().count(), 0);
    }
}
