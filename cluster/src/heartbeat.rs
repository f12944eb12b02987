//! The application heartbeat: one small UDP datagram per member per interval.
//!
//! Wire format (ASCII, one line): `SMHB1 <node-id> <epoch or -> <L|F>`, `L` for a node that
//! holds its lease, `F` for one that is fenced. UDP rather than the ractor_cluster TCP session:
//! a heartbeat must not queue behind a stalled stream, and losing one is harmless. The
//! datagram goes to the member's cluster address (the ractor_cluster TCP port, on UDP).

use crate::id::{Epoch, NodeId};

/// Magic word and version of the heartbeat format.
const MAGIC: &str = "SMHB1";

/// Largest datagram read (a heartbeat is under 100 bytes).
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
}

impl Heartbeat {
    /// The datagram.
    pub fn encode(&self) -> Vec<u8> {
        let epoch = self
            .epoch
            .map_or_else(|| "-".to_owned(), |e| e.0.to_string());
        let flag = if self.fenced { 'F' } else { 'L' };
        format!("{MAGIC} {} {epoch} {flag}", self.node).into_bytes()
    }

    /// Parses a datagram.
    pub fn decode(bytes: &[u8]) -> Result<Self, HeartbeatError> {
        let text = std::str::from_utf8(bytes).map_err(|_| HeartbeatError::NotAHeartbeat)?;
        let mut fields = text.trim_end().split(' ');
        let (Some(MAGIC), Some(node), Some(epoch), Some(flag), None) = (
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
        ) else {
            return Err(HeartbeatError::NotAHeartbeat);
        };
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

    #[test]
    fn heartbeats_round_trip() {
        for hb in [
            Heartbeat {
                node: NodeId::new("n1").unwrap(),
                epoch: Some(Epoch(42)),
                fenced: false,
            },
            Heartbeat {
                node: NodeId::new("n-127.0.0.1-7000").unwrap(),
                epoch: None,
                fenced: true,
            },
        ] {
            assert_eq!(Heartbeat::decode(&hb.encode()), Ok(hb));
        }
        assert_eq!(
            Heartbeat::new_wire_example(),
            b"SMHB1 n1 42 L".to_vec(),
            "the documented format"
        );
    }

    #[test]
    fn garbage_is_refused() {
        for bad in [
            &b""[..],
            b"SMHB1",
            b"SMHB1 n1 42",
            b"SMHB1 n1 42 L extra",
            b"SMHB2 n1 42 L",
            b"\xff\xfe",
        ] {
            assert_eq!(Heartbeat::decode(bad), Err(HeartbeatError::NotAHeartbeat));
        }
        assert_eq!(
            Heartbeat::decode(b"SMHB1 n1 x L"),
            Err(HeartbeatError::BadEpoch)
        );
        assert_eq!(
            Heartbeat::decode(b"SMHB1 n1 1 Q"),
            Err(HeartbeatError::BadFlag)
        );
        assert!(matches!(
            Heartbeat::decode(b"SMHB1 n@1 1 L"),
            Err(HeartbeatError::BadNode(_))
        ));
    }

    impl Heartbeat {
        fn new_wire_example() -> Vec<u8> {
            Self {
                node: NodeId::new("n1").unwrap(),
                epoch: Some(Epoch(42)),
                fenced: false,
            }
            .encode()
        }
    }
}
