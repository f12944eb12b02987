//! Errors of an ng request made through [`NgClient`](super::NgClient).

use std::time::Duration;

use sipmesh_protocol::ng::ReplyError;

/// Why an ng request failed.
#[derive(Debug, thiserror::Error)]
pub enum NgError {
    /// The client's UDP socket could not be bound or connected.
    #[error("cannot open the ng socket to {peer}: {source}")]
    Socket {
        /// The rtpengine address.
        peer: std::net::SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Too many requests are outstanding on this client; try another instance or later.
    #[error("{0} ng requests outstanding")]
    Busy(usize),
    /// No reply within the deadline (rtpengine dead, overloaded or unreachable).
    #[error("no ng reply within {0:?}")]
    Timeout(Duration),
    /// rtpengine answered `result: error` with this `error-reason`.
    #[error("rtpengine refused: {0}")]
    Refused(String),
    /// rtpengine answered `result: load limit`.
    #[error("rtpengine is at its load limit")]
    LoadLimit,
    /// The reply was not one this client understands.
    #[error("bad ng reply: {0}")]
    BadReply(ReplyError),
    /// A `ping` was answered with something other than `result: pong`.
    #[error("rtpengine answered a ping without pong")]
    NotPong,
    /// The client's driver task has stopped (the client is shutting down).
    #[error("ng client stopped")]
    Stopped,
}

impl From<ReplyError> for NgError {
    fn from(e: ReplyError) -> Self {
        match e {
            ReplyError::Refused { reason } => Self::Refused(reason),
            ReplyError::LoadLimit => Self::LoadLimit,
            other => Self::BadReply(other),
        }
    }
}
