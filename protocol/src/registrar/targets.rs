//! Ordering bindings for forking: highest q first (RFC 3261 §16.6, §20.10).

use crate::registrar::binding::Binding;

/// Groups `bindings` by q-value, highest first. Each group holds the bindings of equal q in
/// their stored order: a caller forking sequentially tries the groups in turn and forks each
/// group in parallel (the usual reading of §16.6 "in order of q-value").
pub fn targets_in_order(bindings: &[Binding]) -> Vec<Vec<&Binding>> {
    let mut sorted: Vec<&Binding> = bindings.iter().collect();
    // Stable: equal q keeps registration order.
    sorted.sort_by_key(|b| std::cmp::Reverse(b.q));
    let mut groups: Vec<Vec<&Binding>> = Vec::new();
    for b in sorted {
        match groups.last_mut() {
            Some(group) if group.first().is_some_and(|first| first.q == b.q) => group.push(b),
            _ => groups.push(vec![b]),
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::registrar::binding::tests::source;

    fn b(uri: &'static str, q: u16) -> Binding {
        Binding::compact(
            uri.as_bytes(),
            q,
            SystemTime::UNIX_EPOCH,
            b"c",
            1,
            &[],
            None,
            None,
            source(),
        )
    }

    #[test]
    fn groups_by_descending_q() {
        let all = [
            b("sip:a@h", 500),
            b("sip:b@h", 1000),
            b("sip:c@h", 500),
            b("sip:d@h", 100),
        ];
        let groups: Vec<Vec<&[u8]>> = targets_in_order(&all)
            .into_iter()
            .map(|g| g.into_iter().map(|b| &b.contact[..]).collect())
            .collect();
        assert_eq!(
            groups,
            vec![
                vec![&b"sip:b@h"[..]],
                vec![&b"sip:a@h"[..], &b"sip:c@h"[..]],
                vec![&b"sip:d@h"[..]]
            ]
        );
        assert!(targets_in_order(&[]).is_empty());
    }
}
