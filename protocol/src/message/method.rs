//! SIP request methods (RFC 3261 §7.1, §27.4 and the extension RFCs). Methods are
//! case-sensitive tokens.

use std::fmt;

use bytes::Bytes;

use crate::header::scan::is_token_char;
use crate::message::ParseError;

/// A request method.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    /// INVITE (RFC 3261)
    Invite,
    /// ACK (RFC 3261)
    Ack,
    /// BYE (RFC 3261)
    Bye,
    /// CANCEL (RFC 3261)
    Cancel,
    /// REGISTER (RFC 3261)
    Register,
    /// OPTIONS (RFC 3261)
    Options,
    /// MESSAGE (RFC 3428)
    Message,
    /// INFO (RFC 6086)
    Info,
    /// PRACK (RFC 3262)
    Prack,
    /// UPDATE (RFC 3311)
    Update,
    /// SUBSCRIBE (RFC 6665)
    Subscribe,
    /// NOTIFY (RFC 6665)
    Notify,
    /// REFER (RFC 3515)
    Refer,
    /// PUBLISH (RFC 3903)
    Publish,
    /// Any other token.
    Extension(Bytes),
}

impl Method {
    /// Classifies a method token; unknown tokens are copied into [`Method::Extension`].
    pub fn from_bytes(b: &[u8]) -> Self {
        Self::known(b).unwrap_or_else(|| Self::Extension(Bytes::copy_from_slice(b)))
    }

    /// Like [`Method::from_bytes`] but shares the bytes of `buf[range]` for extensions.
    pub(crate) fn from_shared(buf: &Bytes, start: usize, end: usize) -> Self {
        let b = buf.get(start..end).unwrap_or_default();
        Self::known(b).unwrap_or_else(|| Self::Extension(buf.slice(start..end)))
    }

    /// The method for a well-known token (exact, case-sensitive match), else `None`.
    pub(crate) fn known(b: &[u8]) -> Option<Self> {
        Some(match b {
            b"INVITE" => Self::Invite,
            b"ACK" => Self::Ack,
            b"BYE" => Self::Bye,
            b"CANCEL" => Self::Cancel,
            b"REGISTER" => Self::Register,
            b"OPTIONS" => Self::Options,
            b"MESSAGE" => Self::Message,
            b"INFO" => Self::Info,
            b"PRACK" => Self::Prack,
            b"UPDATE" => Self::Update,
            b"SUBSCRIBE" => Self::Subscribe,
            b"NOTIFY" => Self::Notify,
            b"REFER" => Self::Refer,
            b"PUBLISH" => Self::Publish,
            _ => return None,
        })
    }

    /// Parses a method token, rejecting non-token characters.
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        if s.is_empty() || !s.bytes().all(is_token_char) {
            return Err(ParseError::InvalidMethod);
        }
        Ok(Self::from_bytes(s.as_bytes()))
    }

    /// The method as written on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Invite => "INVITE",
            Self::Ack => "ACK",
            Self::Bye => "BYE",
            Self::Cancel => "CANCEL",
            Self::Register => "REGISTER",
            Self::Options => "OPTIONS",
            Self::Message => "MESSAGE",
            Self::Info => "INFO",
            Self::Prack => "PRACK",
            Self::Update => "UPDATE",
            Self::Subscribe => "SUBSCRIBE",
            Self::Notify => "NOTIFY",
            Self::Refer => "REFER",
            Self::Publish => "PUBLISH",
            Self::Extension(b) => std::str::from_utf8(b).unwrap_or("?"),
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Method {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        assert_eq!(Method::parse("INVITE").unwrap(), Method::Invite);
        assert_eq!(Method::parse("invite").unwrap().as_str(), "invite");
        assert_ne!(Method::parse("invite").unwrap(), Method::Invite);
        assert_eq!(
            Method::parse("RE%47IST%45R").unwrap().as_str(),
            "RE%47IST%45R"
        );
        assert!(Method::parse("BAD METHOD").is_err());
    }
}
