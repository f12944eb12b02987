//! What a transaction tells its transaction user (TU), drained with `poll_event`.

/// An event from a transaction to its transaction user (RFC 3261 §17: the messages and
/// conditions the figures label "to TU" / "inform TU").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TxEvent {
    /// A provisional (1xx) response was received and is passed to the TU (client machines).
    Provisional(u16),
    /// The first final response was received and is passed to the TU (client machines).
    Final(u16),
    /// A further 2xx received in the INVITE client's Accepted state: a retransmission or a 2xx
    /// from another fork, passed to the TU (RFC 6026 §8.4) which must ACK it.
    RetransmittedSuccess(u16),
    /// An ACK for a 2xx arrived at an INVITE server transaction in the Accepted state and is
    /// passed to the TU (RFC 6026 §8.7).
    AckForSuccess,
    /// A provisional response arrived after the TU asked to cancel before any provisional: the
    /// TU may now send its CANCEL (RFC 3261 §9.1).
    CancelAllowed,
    /// The transaction timed out (Timer B, F or H): no response, or no ACK for a non-2xx final.
    Timeout,
    /// The transport reported a fatal error sending one of this transaction's messages
    /// (RFC 3261 §17.1.4, §17.2.4).
    TransportError,
    /// The transaction reached the Terminated state; the owner may drop it once its transmit
    /// queue is drained.
    Terminated,
}
