//! Names and numbers that identify a member: [`NodeId`] and the fencing [`Epoch`].

use std::fmt;

use serde::Serialize;

/// Longest accepted node id, in bytes (it is part of Redis keys and heartbeat datagrams).
pub const MAX_NODE_ID_LEN: usize = 64;

/// The name of a cluster member (`--node-id`), unique in the cluster and stable across restarts.
///
/// Made of ASCII letters, digits and `.`, `-`, `_`, `:`, so that it can appear unquoted in Redis
/// keys, in the text heartbeat and in ractor_cluster's `name@host` node names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct NodeId(String);

/// Why a string is not a [`NodeId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeIdError {
    /// The id is empty.
    #[error("a node id must not be empty")]
    Empty,
    /// The id is longer than [`MAX_NODE_ID_LEN`].
    #[error("node id is {0} bytes long; at most {MAX_NODE_ID_LEN} are allowed")]
    TooLong(usize),
    /// The id holds a character outside `[A-Za-z0-9.-_:]`.
    #[error("node id holds {0:?}; only ASCII letters, digits and . - _ : are allowed")]
    BadChar(char),
}

impl NodeId {
    /// Validates `s` as a node id.
    pub fn new(s: &str) -> Result<Self, NodeIdError> {
        if s.is_empty() {
            return Err(NodeIdError::Empty);
        }
        if s.len() > MAX_NODE_ID_LEN {
            return Err(NodeIdError::TooLong(s.len()));
        }
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':')))
        {
            return Err(NodeIdError::BadChar(c));
        }
        Ok(Self(s.to_owned()))
    }

    /// The default id of a node listening for the cluster on `addr`: `n-<ip>-<port>` with the
    /// IP's separators replaced so that it is a valid id (`n-127.0.0.11-7000`, `n-__1-7000`).
    pub fn from_listen_addr(addr: std::net::SocketAddr) -> Self {
        let ip: String = addr
            .ip()
            .to_string()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        Self(format!("n-{ip}-{}", addr.port()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A fencing epoch: the number Redis handed out when a node (re)acquired its lease.
///
/// Epochs of one node only grow (`INCR sipmesh:epoch:<id>`), so a write tagged with an older
/// epoch than the node's current lease comes from a stale incarnation and is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Epoch(pub u64);

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_validated() {
        assert_eq!(
            NodeId::new("a-1.b_c:2").map(|n| n.to_string()),
            Ok("a-1.b_c:2".to_owned())
        );
        assert_eq!(NodeId::new(""), Err(NodeIdError::Empty));
        assert_eq!(NodeId::new("a b"), Err(NodeIdError::BadChar(' ')));
        assert_eq!(NodeId::new("a@b"), Err(NodeIdError::BadChar('@')));
        assert_eq!(NodeId::new(&"x".repeat(65)), Err(NodeIdError::TooLong(65)));
    }

    #[test]
    fn default_ids_come_from_the_listen_address() {
        let v4 = NodeId::from_listen_addr("127.0.0.11:7000".parse().unwrap());
        assert_eq!(v4.as_str(), "n-127.0.0.11-7000");
        let v6 = NodeId::from_listen_addr("[::1]:7000".parse().unwrap());
        assert_eq!(v6.as_str(), "n-__1-7000");
        assert!(NodeId::new(v6.as_str()).is_ok());
    }
}
