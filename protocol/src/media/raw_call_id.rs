//! Finding a message's Call-ID in its raw bytes, without parsing it (issue 6: the CSeq-shift
//! hot path).
//!
//! Once any dialog in the cluster has a CSeq offset (after an rtpengine failover,
//! [`CseqShifts`](super::CseqShifts)), every response leaving a node would have to be parsed
//! to learn whether its Call-ID is one of the shifted calls. [`scan`] looks for the Call-ID
//! header line (RFC 3261 §20.8, long form `Call-ID` or compact form `i`, any case, optional
//! whitespace before the colon, §7.3.1) in the header section and returns its value, so that
//! a message of another call skips the parse.
//!
//! The scan is conservative: whenever it cannot be sure that the value it found is the one
//! the parser would report ([`Message::call_id`](crate::message::Message::call_id): the first
//! Call-ID line's value, trimmed), it says [`Scan::Unsure`] and the caller parses. That covers
//! a folded value (§7.3.1 continuation lines), a bare LF before the Call-ID line (a parser
//! that splits on CRLF only would see other lines), a value with whitespace inside, and no
//! Call-ID line found before the end of the header section. The scan stops at the first
//! Call-ID line (the parser reports the first one; a message with two is refused by
//! validation but its first is still the one a rewrite would use).

/// What [`scan`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan<'a> {
    /// The Call-ID value, trimmed: the parser reports this one if it reports any.
    Found(&'a [u8]),
    /// No safe answer: parse the message to know.
    Unsure,
}

/// The Call-ID of the raw message `bytes` (see the module doc).
///
/// Line ends are found with `memchr`; only lines starting with `c` or `i` (any case) are
/// looked at further, so the cost is a vectorised pass over the header section.
pub fn scan(bytes: &[u8]) -> Scan<'_> {
    let mut ends = memchr::memchr_iter(b'\n', bytes);
    // The start line is skipped; each line must end with CRLF.
    let Some(first) = ends.next() else {
        return Scan::Unsure;
    };
    if first == 0 || bytes.get(first - 1) != Some(&b'\r') {
        return Scan::Unsure;
    }
    let mut start = first + 1;
    for end in ends {
        let Some(line) = bytes.get(start..end).and_then(|l| l.strip_suffix(b"\r")) else {
            // A bare LF.
            return Scan::Unsure;
        };
        start = end + 1;
        match line.first() {
            // The end of the header section, without a Call-ID line.
            None => return Scan::Unsure,
            Some(b'c' | b'C' | b'i' | b'I') => {}
            // Another header, or a continuation line of one.
            Some(_) => continue,
        }
        let Some(value) = call_id_value(line) else {
            continue;
        };
        let value = trim(value);
        if value.is_empty() || value.iter().any(|b| matches!(b, b' ' | b'\t')) {
            return Scan::Unsure;
        }
        // The first Call-ID line is the parser's; it must not continue on the next line.
        return match bytes.get(start) {
            Some(b' ' | b'\t') | None => Scan::Unsure,
            Some(_) => Scan::Found(value),
        };
    }
    // No Call-ID line, or no blank line: the data ends inside the header section.
    Scan::Unsure
}

/// The value of `line` (after the colon) when it is a Call-ID line.
fn call_id_value(line: &[u8]) -> Option<&[u8]> {
    let colon = line.iter().position(|b| *b == b':')?;
    let (name, rest) = line.split_at(colon);
    // A line starting with whitespace is a continuation (the caller skips it), so only
    // whitespace before the colon is trimmed here.
    let name = trim(name);
    let is_call_id = name.eq_ignore_ascii_case(b"call-id") || name.eq_ignore_ascii_case(b"i");
    is_call_id.then(|| rest.get(1..).unwrap_or_default())
}

fn trim(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))
        .map_or(start, |e| e + 1);
    v.get(start..end).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(headers: &str) -> Vec<u8> {
        format!("SIP/2.0 200 OK\r\n{headers}\r\n\r\nbody").into_bytes()
    }

    #[test]
    fn long_and_compact_forms_any_case_with_spaces() {
        for h in [
            "Via: x\r\nCall-ID: abc@h",
            "call-id:abc@h",
            "CALL-ID \t:  abc@h  ",
            "To: x\r\ni: abc@h",
            "I : abc@h",
        ] {
            assert_eq!(scan(&msg(h)), Scan::Found(b"abc@h"), "{h:?}");
        }
    }

    #[test]
    fn doubtful_cases_are_unsure() {
        for h in [
            "Call-ID:\r\n abc@h",
            "Call-ID: abc\r\n @h",
            "Call-ID: a b",
            "Call-ID:",
            "Via: x\nCall-ID: a",
            "To: x",
        ] {
            assert_eq!(scan(&msg(h)), Scan::Unsure, "{h:?}");
        }
        assert_eq!(scan(b"SIP/2.0 200 OK\r\nCall-ID: a\r\n"), Scan::Unsure);
    }

    #[test]
    fn lookalikes_are_not_the_call_id() {
        let m = msg("X-Call-ID: no\r\nIn-Reply-To: no\r\nid: no\r\nCall-ID: yes");
        assert_eq!(scan(&m), Scan::Found(b"yes"));
        // A folded other header that mentions Call-ID on its continuation line.
        let m = msg("Subject: x\r\n Call-ID: no\r\ni: yes");
        assert_eq!(scan(&m), Scan::Found(b"yes"));
        // The first of two Call-ID lines is the parser's.
        assert_eq!(scan(&msg("Call-ID: a\r\ni: b")), Scan::Found(b"a"));
        // The body is not scanned.
        let m = b"SIP/2.0 200 OK\r\ni: yes\r\n\r\nCall-ID: no\r\n";
        assert_eq!(scan(m), Scan::Found(b"yes"));
    }

    /// Every torture message of RFC 4475 / RFC 5118 (`protocol/testdata`, the same files as
    /// `shared/corpus`), as it is, with its Call-ID line in compact form, and as a response:
    /// whenever the parser reports a Call-ID, the scan finds the same one or is unsure, so
    /// `may_shift_raw` never skips a shifted call.
    #[test]
    fn never_disagrees_with_the_parser_on_the_torture_corpus() {
        use crate::media::CseqShifts;
        use crate::message::Message;
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
        let mut checked = 0;
        let mut fast = 0;
        for dir in ["rfc4475", "rfc5118"] {
            let entries = std::fs::read_dir(root.join(dir)).expect("corpus directory");
            for entry in entries {
                let path = entry.expect("corpus entry").path();
                let original = std::fs::read(&path).expect("corpus file");
                for bytes in variants(&original) {
                    let Ok(parsed) = Message::parse(bytes::Bytes::from(bytes.clone())) else {
                        continue;
                    };
                    let Ok(id) = parsed.call_id() else {
                        continue;
                    };
                    checked += 1;
                    match scan(&bytes) {
                        Scan::Found(found) => {
                            fast += 1;
                            assert_eq!(found, id.as_bytes(), "{}", path.display());
                        }
                        Scan::Unsure => {}
                    }
                    let mut shifted = CseqShifts::new();
                    shifted.raise_to(id, "t", 100);
                    assert!(shifted.may_shift_raw(&bytes), "{}", path.display());
                    let mut other = CseqShifts::new();
                    other.raise_to("not-this-call", "t", 100);
                    assert_eq!(
                        other.may_shift_raw(&bytes),
                        scan(&bytes) == Scan::Unsure,
                        "{}",
                        path.display()
                    );
                }
            }
        }
        eprintln!("{checked} corpus messages with a Call-ID, {fast} on the fast path");
        assert!(checked > 60, "only {checked} messages with a Call-ID");
        assert!(fast * 4 > checked * 3, "fast path for {fast} of {checked}");
    }

    /// `msg`, with its first Call-ID line in compact form, and with its start line replaced
    /// by a status line.
    fn variants(msg: &[u8]) -> Vec<Vec<u8>> {
        let text = String::from_utf8_lossy(msg).into_owned();
        let mut out = vec![msg.to_vec()];
        if let Some(at) = text.find("\nCall-ID") {
            let mut compact = text.clone();
            compact.replace_range(at + 1..at + 8, "i");
            out.push(compact.into_bytes());
        }
        if let Some(end) = text.find("\r\n") {
            out.push(format!("SIP/2.0 200 OK{}", &text[end..]).into_bytes());
        }
        out
    }
}
