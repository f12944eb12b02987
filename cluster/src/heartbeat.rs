//! The application heartbeat: one small UDP datagram per member per interval.
//!
//! Wire format (ASCII, one line): `SMHB1 <node-id> <epoch or -> <L|F> <mac>`, `L` for a node
//! that holds its lease, `F` for one that is fenced; `<mac>` is HMAC-SHA-256 of everything
//! before the last space, keyed with the cluster cookie, truncated to 128 bits, in hex. Without
//! it anyone who can reach the cluster port could declare members fenced (keys would move) or
//! keep a dead one looking alive while its lease lasts. A replayed heartbeat can at most keep a
//! dead node alive until its lease lapses (3 s): the lease bounds it. UDP rather than the ractor_cluster TCP session:
//! a heartbeat must not queue behind a stalled stream, and losing one is harmless. The
//! datagram goes to the member's cluster address (the ractor_cluster TCP port, on UDP).

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::id::{Epoch, NodeId};

/// Magic word and version of the heartbeat format.
const MAGIC: &str = "SMHB1";

/// Bytes of the HMAC kept on the wire.
const MAC_LEN: usize = 16;

/// Largest datagram read (a heartbeat is under 150 bytes).
pub const MAX_DATAGRAM: usize = 256;

/// One heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    /// The sender.
    pub node: NodeId,
    /// The lease epoch the sender holds, if any.
    pub epoch: Option<Epoch>,
    /// The sender knows it is fenced.
    pub fenced: bool,
}

/// Why a datagram is not a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeartbeatError {
    /// Not UTF-8, wrong magic or wrong number of fields.
    #[error("not a sipmesh heartbeat")]
    NotAHeartbeat,
    /// The node id field is invalid.
    #[error("bad node id in heartbeat: {0}")]
    BadNode(#[from] crate::id::NodeIdError),
    /// The epoch field is neither `-` nor a number.
    #[error("bad epoch in heartbeat")]
    BadEpoch,
    /// The flag is neither `L` nor `F`.
    #[error("bad flag in heartbeat")]
    BadFlag,
    /// The MAC does not match: another cookie, or a forged or corrupted datagram.
    #[error("heartbeat MAC mismatch (wrong cookie or forged)")]
    BadMac,
}

/// The key heartbeats are authenticated with (derived from the cluster cookie).
#[derive(Clone)]
pub struct HeartbeatKey(Vec<u8>);

impl std::fmt::Debug for HeartbeatKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HeartbeatKey(..)")
    }
}

impl HeartbeatKey {
    /// The key of a cluster with `cookie`.
    pub fn new(cookie: &str) -> Self {
        Self(cookie.as_bytes().to_vec())
    }

    fn mac(&self, text: &str) -> Hmac<Sha256> {
        // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.0) else {
            unreachable!("HMAC takes any key length")
        };
        mac.update(text.as_bytes());
        mac
    }

    fn tag(&self, text: &str) -> String {
        let full = self.mac(text).finalize().into_bytes();
        full.iter()
            .take(MAC_LEN)
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn verify(&self, text: &str, hex: &str) -> bool {
        let Some(tag) = decode_hex(hex) else {
            return false;
        };
        tag.len() == MAC_LEN && self.mac(text).verify_truncated_left(&tag).is_ok()
    }
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) || !hex.is_ascii() {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
        })
        .collect()
}

impl Heartbeat {
    /// The datagram, authenticated with `key`.
    pub fn encode(&self, key: &HeartbeatKey) -> Vec<u8> {
        let epoch = self
            .epoch
            .map_or_else(|| "-".to_owned(), |e| e.0.to_string());
        let flag = if self.fenced { 'F' } else { 'L' };
        let text = format!("{MAGIC} {} {epoch} {flag}", self.node);
        let tag = key.tag(&text);
        format!("{text} {tag}").into_bytes()
    }

    /// Parses and authenticates a datagram.
    pub fn decode(bytes: &[u8], key: &HeartbeatKey) -> Result<Self, HeartbeatError> {
        let text = std::str::from_utf8(bytes).map_err(|_| HeartbeatError::NotAHeartbeat)?;
        let (signed, tag) = text
            .trim_end()
            .rsplit_once(' ')
            .ok_or(HeartbeatError::NotAHeartbeat)?;
        let mut fields = signed.split(' ');
        let (Some(MAGIC), Some(node), Some(epoch), Some(flag), None) = (
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
        ) else {
            return Err(HeartbeatError::NotAHeartbeat);
        };
        if !key.verify(signed, tag) {
            return Err(HeartbeatError::BadMac);
        }
        let epoch = match epoch {
            "-" => None,
            n => Some(Epoch(n.parse().map_err(|_| HeartbeatError::BadEpoch)?)),
        };
        let fenced = match flag {
            "L" => false,
            "F" => true,
            _ => return Err(HeartbeatError::BadFlag),
        };
        Ok(Self {
            node: NodeId::new(node)?,
            epoch,
            fenced,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> HeartbeatKey {
        HeartbeatKey::new("cookie")
    }

    fn sample() -> Heartbeat {
        Heartbeat {
            node: NodeId::new("n1").unwrap(),
            epoch: Some(Epoch(42)),
            fenced: false,
        }
    }

    /// Signs `text` the way the encoder does, for hand-built datagrams.
    fn signed(text: &str) -> Vec<u8> {
        format!("{text} {}", key().tag(text)).into_bytes()
    }

    #[test]
    fn heartbeats_round_trip() {
        for hb in [
            sample(),
            Heartbeat {
                node: NodeId::new("n-127.0.0.1-7000").unwrap(),
                epoch: None,
                fenced: true,
            },
        ] {
            assert_eq!(Heartbeat::decode(&hb.encode(&key()), &key()), Ok(hb));
        }
        let wire = String::from_utf8(sample().encode(&key())).unwrap();
        assert!(wire.starts_with("SMHB1 n1 42 L "), "{wire}");
        assert_eq!(wire.len(), "SMHB1 n1 42 L ".len() + 2 * MAC_LEN);
    }

    #[test]
    fn another_cookie_or_a_forgery_is_refused() {
        let wire = sample().encode(&key());
        assert_eq!(
            Heartbeat::decode(&wire, &HeartbeatKey::new("other")),
            Err(HeartbeatError::BadMac)
        );
        let mut text = String::from_utf8(wire).unwrap();
        text = text.replacen(" L ", " F ", 1);
        assert_eq!(
            Heartbeat::decode(text.as_bytes(), &key()),
            Err(HeartbeatError::BadMac)
        );
        assert_eq!(
            Heartbeat::decode(b"SMHB1 n1 42 L 00ff", &key()),
            Err(HeartbeatError::BadMac)
        );
        assert_eq!(
            Heartbeat::decode(b"SMHB1 n1 42 L zz", &key()),
            Err(HeartbeatError::BadMac)
        );
    }

    #[test]
    fn garbage_is_refused() {
        for bad in [
            &b""[..],
            b"SMHB1",
            b"SMHB1 n1 42",
            b"SMHB1 n1 42 L extra 00",
            b"SMHB2 n1 42 L 00",
            b"\xff\xfe",
        ] {
            assert_eq!(
                Heartbeat::decode(bad, &key()),
                Err(HeartbeatError::NotAHeartbeat),
                "{bad:?}"
            );
        }
        assert_eq!(
            Heartbeat::decode(&signed("SMHB1 n1 x L"), &key()),
            Err(HeartbeatError::BadEpoch)
        );
        assert_eq!(
            Heartbeat::decode(&signed("SMHB1 n1 1 Q"), &key()),
            Err(HeartbeatError::BadFlag)
        );
        assert!(matches!(
            Heartbeat::decode(&signed("SMHB1 n@1 1 L"), &key()),
            Err(HeartbeatError::BadNode(_))
        ));
    }
}
