//! Unit tests for [`StreamFramer`](super::StreamFramer): every split point, pipelining,
//! keep-alives, limits and the RFC 4475 `dblreq` stream.

use super::*;

const REGISTER: &[u8] = b"REGISTER sip:example.com SIP/2.0\r\n\
Via: SIP/2.0/TCP 192.0.2.1;branch=z9hG4bK1\r\n\
Content-Length: 0\r\n\r\n";

const MESSAGE: &[u8] = b"MESSAGE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/TCP 192.0.2.1;branch=z9hG4bK2\r\n\
content-length  :\r\n   11\r\n\
Content-Type: text/plain\r\n\r\n\
hello\r\nbob!";

const COMPACT: &[u8] =
    b"SIP/2.0 200 OK\r\nv: SIP/2.0/TCP 192.0.2.1;branch=z9hG4bK3\r\nL:4\r\n\r\nabcd";

/// Feeds `chunks` one by one, draining frames after each, and collects the outcome.
fn run(framer: &mut StreamFramer, chunks: &[&[u8]]) -> Vec<Result<Frame, FramingError>> {
    let mut out = Vec::new();
    for chunk in chunks {
        framer.push(chunk);
        loop {
            match framer.next_frame() {
                Ok(Some(frame)) => out.push(Ok(frame)),
                Ok(None) => break,
                Err(e) => {
                    out.push(Err(e));
                    return out;
                }
            }
        }
    }
    out
}

fn msg(bytes: &[u8]) -> Result<Frame, FramingError> {
    Ok(Frame::Message(Bytes::copy_from_slice(bytes)))
}

fn stream() -> Vec<u8> {
    let mut s = Vec::new();
    s.extend_from_slice(b"\r\n\r\n");
    s.extend_from_slice(REGISTER);
    s.extend_from_slice(MESSAGE);
    s.extend_from_slice(b"\r\n");
    s.extend_from_slice(COMPACT);
    s.extend_from_slice(b"\r\n\r\n");
    s.extend_from_slice(REGISTER);
    s
}

fn expected() -> Vec<Result<Frame, FramingError>> {
    vec![
        Ok(Frame::KeepAlivePing),
        msg(REGISTER),
        msg(MESSAGE),
        Ok(Frame::KeepAlivePong),
        msg(COMPACT),
        Ok(Frame::KeepAlivePing),
        msg(REGISTER),
    ]
}

#[test]
fn whole_stream_pipelined() {
    let s = stream();
    assert_eq!(run(&mut StreamFramer::new(4096), &[&s]), expected());
}

#[test]
fn split_at_every_offset() {
    let s = stream();
    for at in 0..=s.len() {
        let (a, b) = s.split_at(at);
        let mut framer = StreamFramer::new(4096);
        assert_eq!(run(&mut framer, &[a, b]), expected(), "split at {at}");
        assert_eq!(framer.buffered(), 0);
    }
}

#[test]
fn split_at_every_pair_of_offsets() {
    let s = stream();
    for i in 0..=s.len() {
        for j in i..=s.len() {
            let chunks = [&s[..i], &s[i..j], &s[j..]];
            assert_eq!(
                run(&mut StreamFramer::new(4096), &chunks),
                expected(),
                "{i}/{j}"
            );
        }
    }
}

#[test]
fn byte_at_a_time() {
    let s = stream();
    let chunks: Vec<&[u8]> = s.chunks(1).collect();
    assert_eq!(run(&mut StreamFramer::new(4096), &chunks), expected());
}

#[test]
fn incomplete_is_not_an_error() {
    let mut framer = StreamFramer::new(4096);
    framer.push(&MESSAGE[..MESSAGE.len() - 1]);
    assert_eq!(framer.next_frame(), Ok(None));
    assert_eq!(framer.next_frame(), Ok(None));
    framer.push(&MESSAGE[MESSAGE.len() - 1..]);
    assert_eq!(framer.next_frame(), msg(MESSAGE).map(Some));
    framer.push(b"\r\n");
    assert_eq!(
        framer.next_frame(),
        Ok(None),
        "a lone CRLF may be half a ping"
    );
    framer.push(b"\r");
    assert_eq!(framer.next_frame(), Ok(None));
    framer.push(b"\n");
    assert_eq!(framer.next_frame(), Ok(Some(Frame::KeepAlivePing)));
}

#[test]
fn bare_lf_line_ends() {
    let m: &[u8] = b"OPTIONS sip:a@b SIP/2.0\nl: 3\n\nxyz";
    let mut s = b"\n".to_vec();
    s.extend_from_slice(m);
    assert_eq!(run(&mut StreamFramer::new(4096), &[&s]), vec![msg(m)]);
}

#[test]
fn missing_content_length() {
    let m: &[u8] = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h\r\n\r\n";
    let mut framer = StreamFramer::new(4096);
    assert_eq!(
        run(&mut framer, &[m]),
        vec![Err(FramingError::MissingContentLength)]
    );
    assert!(framer.is_failed());
    framer.push(REGISTER);
    assert_eq!(framer.next_frame(), Err(FramingError::Poisoned));
    assert_eq!(framer.buffered(), 0);
}

#[test]
fn content_length_in_start_line_does_not_count() {
    let m: &[u8] = b"l: 3 SIP/2.0\r\nX: y\r\n\r\n";
    assert_eq!(
        run(&mut StreamFramer::new(4096), &[m]),
        vec![Err(FramingError::MissingContentLength)]
    );
}

#[test]
fn invalid_content_lengths() {
    for value in ["-1", "abc", "12a", "", "1 2", "+5", "0x10"] {
        let m = format!("OPTIONS sip:a@b SIP/2.0\r\nContent-Length: {value}\r\n\r\n");
        assert_eq!(
            run(&mut StreamFramer::new(4096), &[m.as_bytes()]),
            vec![Err(FramingError::InvalidContentLength)],
            "{value:?}"
        );
    }
}

#[test]
fn conflicting_and_repeated_content_lengths() {
    let conflicting: &[u8] = b"OPTIONS sip:a@b SIP/2.0\r\nl: 1\r\nContent-Length: 2\r\n\r\nab";
    assert_eq!(
        run(&mut StreamFramer::new(4096), &[conflicting]),
        vec![Err(FramingError::InvalidContentLength)]
    );
    let repeated: &[u8] = b"OPTIONS sip:a@b SIP/2.0\r\nl: 2\r\nContent-Length: 2\r\n\r\nab";
    assert_eq!(
        run(&mut StreamFramer::new(4096), &[repeated]),
        vec![msg(repeated)]
    );
}

#[test]
fn huge_content_length_is_too_large_not_invalid() {
    let m: &[u8] = b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 99999999999999999999999\r\n\r\n";
    let out = run(&mut StreamFramer::new(4096), &[m]);
    assert!(matches!(
        out.as_slice(),
        [Err(FramingError::TooLarge {
            headers_complete: true,
            size: Some(usize::MAX),
            ..
        })]
    ));
}

#[test]
fn too_large_body_reports_complete_headers_without_waiting_for_body() {
    let head: &[u8] = b"MESSAGE sip:a@b SIP/2.0\r\nContent-Length: 100\r\n\r\n";
    let limit = head.len() + 99;
    let mut framer = StreamFramer::new(limit);
    framer.push(head);
    assert_eq!(
        framer.next_frame(),
        Err(FramingError::TooLarge {
            partial: Bytes::copy_from_slice(head),
            headers_complete: true,
            size: Some(head.len() + 100),
            limit,
        })
    );
    // Exactly at the limit is fine.
    let mut framer = StreamFramer::new(limit + 1);
    let mut full = head.to_vec();
    full.extend_from_slice(&[b'x'; 100]);
    assert_eq!(run(&mut framer, &[&full]), vec![msg(&full)]);
}

#[test]
fn too_large_header_section() {
    let limit = 64;
    let mut s = b"OPTIONS sip:a@b SIP/2.0\r\n".to_vec();
    for _ in 0..10 {
        s.extend_from_slice(b"X-Filler: 0123456789\r\n");
    }
    let mut framer = StreamFramer::new(limit);
    let mut out = Vec::new();
    for chunk in s.chunks(16) {
        framer.push(chunk);
        assert!(framer.buffered() <= limit + 16, "buffer stays bounded");
        match framer.next_frame() {
            Ok(None) => {}
            other => {
                out.push(other);
                break;
            }
        }
    }
    assert_eq!(
        out,
        vec![Err(FramingError::TooLarge {
            partial: Bytes::copy_from_slice(&s[..limit]),
            headers_complete: false,
            size: None,
            limit,
        })]
    );
}

#[test]
fn header_section_completed_beyond_limit_in_one_chunk() {
    let m: &[u8] = b"OPTIONS sip:a@b SIP/2.0\r\nX-Filler: 0123456789\r\nl: 0\r\n\r\n";
    let out = run(&mut StreamFramer::new(20), &[m]);
    assert!(matches!(
        out.as_slice(),
        [Err(FramingError::TooLarge { headers_complete: false, partial, .. })] if partial.len() == 20
    ));
}

#[test]
fn rfc4475_dblreq_over_a_stream() {
    // RFC 4475 §3.1.1.8: over a stream the REGISTER (Content-Length 0) is followed by a stray
    // CRLF and a second request, the INVITE. The INVITE declares a 150-octet body but 155
    // octets follow; the extra 5 octets start a third "message" without Content-Length.
    let data = include_bytes!("../../testdata/framing/dblreq.dat");
    let invite_at = data.windows(6).position(|w| w == b"INVITE").unwrap();
    let invite_head = data[invite_at..]
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap()
        + 4;
    let invite_end = invite_at + invite_head + 150;
    let want = vec![
        msg(&data[..invite_at - 2]),
        Ok(Frame::KeepAlivePong),
        msg(&data[invite_at..invite_end]),
        Err(FramingError::MissingContentLength),
    ];
    for at in 0..=data.len() {
        let (a, b) = data.split_at(at);
        assert_eq!(
            run(&mut StreamFramer::new(4096), &[a, b]),
            want,
            "split at {at}"
        );
    }
}
