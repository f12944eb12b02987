//! What the proxy core tells the dialog layer. Every event carries all the core knows at that
//! point, because the in-dialog requests of one dialog may be handled by other shards (or, in a
//! cluster, other nodes) than its INVITE: the dialog actor merges them.

use std::time::Duration;

use crate::message::Method;
use crate::peer::Destination;

use super::id::DialogId;
use super::state::Leg;

/// One dialog event, emitted through [`Output::Dialog`](crate::proxy::Output::Dialog).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DialogEvent {
    /// A provisional response with a To tag created (or updated) an early dialog
    /// (RFC 3261 §12.1, §13.2.2.4).
    Early(Box<DialogSnapshot>),
    /// A 2xx to the INVITE confirmed the dialog.
    Confirmed(Box<DialogSnapshot>),
    /// A target refresh request (re-INVITE, UPDATE; RFC 3261 §12.2, RFC 3311) got a 2xx.
    Refreshed(Box<InDialogUpdate>),
    /// The dialog ended.
    Terminated {
        /// The dialog. When the end came from an in-dialog request (BYE) the id is oriented
        /// from that request (its From tag first), which is [`DialogId::reversed`] when the
        /// callee sent it.
        id: DialogId,
        /// Why.
        reason: EndReason,
    },
}

impl DialogEvent {
    /// The dialog the event is about (see [`DialogEvent::Terminated`] for orientation).
    pub fn id(&self) -> &DialogId {
        match self {
            Self::Early(s) | Self::Confirmed(s) => &s.id,
            Self::Refreshed(u) => &u.id,
            Self::Terminated { id, .. } => id,
        }
    }
}

/// Why a dialog ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// A BYE was forwarded and answered (RFC 3261 §15).
    Bye,
    /// The INVITE got this failure final response (an early dialog ends, §12.3).
    Rejected(u16),
    /// Another fork's 2xx confirmed another dialog of the same call (§16.7 step 10 cancels
    /// the others).
    OtherForkAnswered,
    /// Nothing refreshed the dialog within its timeout (RFC 4028 §10, or the default).
    Timeout,
}

/// What one response to a dialog-creating INVITE tells about the dialog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialogSnapshot {
    /// The dialog.
    pub id: DialogId,
    /// The caller: From URI, tag, Contact of the INVITE, the route set it uses (the
    /// Record-Route of the response, reversed, RFC 3261 §12.1.2), its CSeq, its flow.
    pub caller: Leg,
    /// The callee: To URI, tag, Contact of the response, the route set it uses (the
    /// Record-Route in order, §12.1.1), no CSeq yet, the flow the INVITE went out on.
    pub callee: Leg,
    /// The session interval negotiated (RFC 4028 §7: the Session-Expires of the 2xx), if any.
    pub session_expires: Option<Duration>,
}

/// What a target refresh request and its 2xx tell about the dialog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InDialogUpdate {
    /// The dialog, oriented from the request (its From tag as `caller_tag`).
    pub id: DialogId,
    /// The request's method (INVITE or UPDATE).
    pub method: Method,
    /// The request's CSeq number.
    pub cseq: u32,
    /// The requester's new remote target (the request's Contact URI).
    pub requester_target: Option<String>,
    /// The responder's new remote target (the 2xx's Contact URI).
    pub responder_target: Option<String>,
    /// Where the request came from.
    pub requester_flow: Option<Destination>,
    /// The session interval the 2xx sets (RFC 4028 §9), if any.
    pub session_expires: Option<Duration>,
}
