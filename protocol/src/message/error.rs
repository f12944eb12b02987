//! Parse and validation errors. Each variant maps to a reason phrase and a status code for the
//! stateless error response (RFC 3261 §8.2, §21.4.1, §21.5.6).

use crate::header::HeaderName;
use crate::message::StatusCode;

/// Why a message (or one of its header values) could not be parsed or was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The buffer is 4 GiB or larger (offsets are stored as `u32`).
    #[error("Message too large")]
    TooLarge,
    /// The buffer held nothing but whitespace.
    #[error("Empty message")]
    Empty,
    /// The start line is neither a Request-Line nor a Status-Line.
    #[error("Malformed start line")]
    InvalidStartLine,
    /// The method is not a token.
    #[error("Invalid method")]
    InvalidMethod,
    /// The SIP-Version is not SIP/2.0 (RFC 3261 §8.2.2 says 505).
    #[error("Unsupported SIP version")]
    UnsupportedVersion,
    /// The Status-Code is not three digits.
    #[error("Invalid status code")]
    InvalidStatusCode,
    /// `INVITE <sip:...> SIP/2.0` (RFC 4475 §3.1.2.5).
    #[error("Request-URI must not be enclosed in <>")]
    RequestUriInAngleBrackets,
    /// The Request-URI is not a URI.
    #[error("Invalid Request-URI")]
    InvalidRequestUri,
    /// The header section is not terminated by an empty line.
    #[error("Unterminated header section")]
    UnterminatedHeaders,
    /// A header line has no colon or an invalid name.
    #[error("Malformed header line")]
    InvalidHeaderLine,
    /// A mandatory header is absent.
    #[error("Missing {0} header")]
    Missing(HeaderName),
    /// A header that may appear only once appears several times.
    #[error("Duplicate {0} header")]
    Duplicate(HeaderName),
    /// A header value does not follow its grammar.
    #[error("Malformed {0} header")]
    Malformed(HeaderName),
    /// A name-addr/addr-spec value is malformed (stray `<`, `>` or text).
    #[error("Malformed name-addr")]
    MalformedNameAddr,
    /// A quoted string never closes.
    #[error("Unterminated quoted string")]
    UnterminatedQuote,
    /// A URI does not follow RFC 3261 §19.1 / RFC 3966 / RFC 3986 syntax.
    #[error("Malformed URI")]
    InvalidUri,
    /// A host is neither a hostname nor an IP address (e.g. IPv6 without brackets).
    #[error("Invalid host")]
    InvalidHost,
    /// A port is not a number in 0..=65535.
    #[error("Invalid port")]
    InvalidPort,
    /// The CSeq method differs from the request method (RFC 3261 §8.1.1.5).
    #[error("CSeq method does not match request method")]
    CSeqMethodMismatch,
    /// The CSeq number is not below 2^31 (RFC 3261 §8.1.1.5).
    #[error("CSeq number out of range")]
    CSeqOutOfRange,
    /// Max-Forwards is not an integer in 0..=255 (RFC 3261 §20.22).
    #[error("Invalid Max-Forwards")]
    InvalidMaxForwards,
    /// Content-Length is negative.
    #[error("Negative Content-Length")]
    NegativeContentLength,
    /// Content-Length is not a number.
    #[error("Invalid Content-Length")]
    InvalidContentLength,
    /// Content-Length is larger than the bytes that follow the header section.
    #[error("Content-Length exceeds body")]
    ContentLengthExceedsBody,
    /// `Contact: *` mixed with other contacts (RFC 3261 §10.2.2).
    #[error("Contact * must be the only contact")]
    StarContactMixed,
    /// A header value is not valid UTF-8 where text is required.
    #[error("Non-UTF-8 {0} header")]
    NotUtf8(HeaderName),
}

impl ParseError {
    /// The reason phrase for the error response, e.g. `Bad Request: Missing Call-ID header`
    /// is built by the core as `400` + this text.
    pub fn reason_phrase(&self) -> String {
        self.to_string()
    }

    /// The status code of the error response: 505 for a bad version, 400 otherwise.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::UnsupportedVersion => StatusCode::VERSION_NOT_SUPPORTED,
            Self::TooLarge => StatusCode::MESSAGE_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}
