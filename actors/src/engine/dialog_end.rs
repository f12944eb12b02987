//! Ending a dialog at its timeout from the middle (RFC 3261 §15: the proxy sends a BYE to both
//! ends, built from the dialog record by [`sipmesh_protocol::media::byes_for`]): the hook the
//! dialog actors call when their timer fires, also on a node that adopted the dialog after its
//! owner died (issue 5). A Record-Route entry naming this node or any cluster member's
//! listener counts as ours, so the BYEs skip a dead member's Route. With media relayed, the
//! call's rtpengine session is deleted too (issue 6: delete on dialog timeout).
//!
//! Each BYE runs in a non-INVITE client transaction of shard 0 ([`Originator`]): over UDP it
//! is retransmitted on Timer E until a final response or Timer F (RFC 3261 §17.1.2); over a
//! reliable transport it is sent once.

use std::net::SocketAddr;
use std::sync::{Arc, PoisonError, RwLock};

use sipmesh_protocol::dialog::DialogState;
use sipmesh_protocol::peer::Transport;
use sipmesh_protocol::proxy::Listener;

use sipmesh_protocol::ng::{CallRef, Request};

use tokio::sync::mpsc;

use crate::dialog::TimeoutHook;
use crate::media::MediaSessions;
use crate::transport::{self, TransportHandle};

use super::shard::ShardInput;

/// Sends the node's own requests through shard 0's client transactions (the responses come
/// back to shard 0: the branch names it), or straight to the transport when the shard's queue
/// is full or gone (sent once then).
#[derive(Debug, Clone)]
pub(crate) struct Originator {
    pub(crate) shard: mpsc::Sender<ShardInput>,
    pub(crate) transport: TransportHandle,
}

impl Originator {
    fn send(&self, d: sipmesh_protocol::peer::Destination, payload: bytes::Bytes) {
        let direct = (d, payload.clone());
        if let Err(e) = self
            .shard
            .try_send(ShardInput::SendRequest(Box::new((d, payload))))
        {
            tracing::debug!(error = %e, "shard queue unavailable: BYE sent without retransmission");
            let (d, payload) = direct;
            self.transport.send(
                transport::Destination {
                    transport: d.transport,
                    addr: d.addr,
                    connection: d.connection,
                    local: d.local,
                },
                payload,
            );
        }
    }
}

/// The hook: BYEs to both ends over `transport`, from this node's `local` listeners, and the
/// call's rtpengine session deleted when media is relayed.
pub(crate) fn bye_both_ends(
    transport: Originator,
    local: Vec<(Transport, SocketAddr)>,
    peers: Arc<RwLock<Vec<Listener>>>,
    media: Option<MediaSessions>,
) -> TimeoutHook {
    Arc::new(move |dialog: &DialogState| {
        let peers = peers.read().unwrap_or_else(PoisonError::into_inner).clone();
        let ours = |route: &str| {
            local.iter().any(|(_, a)| route.contains(&a.to_string()))
                || peers.iter().any(|p| route.contains(&p.addr.to_string()))
        };
        let sent = send_byes(&transport, &local, ours, dialog);
        tracing::info!(byes = sent, "dialog timeout: BYE to both ends");
        if let Some(media) = &media {
            delete_session(
                media,
                &dialog.id.call_id,
                Some(&dialog.id.caller_tag),
                Some(&dialog.id.callee_tag),
            );
        }
    })
}

/// Sends a BYE to each end of `dialog` (built by `byes_for`; `ours` says which Route values
/// name this node); returns how many were sent.
pub(crate) fn send_byes(
    transport: &Originator,
    local: &[(Transport, SocketAddr)],
    ours: impl Fn(&str) -> bool,
    dialog: &DialogState,
) -> usize {
    let byes = sipmesh_protocol::media::byes_for(
        dialog,
        |kind| local.iter().find(|(k, _)| *k == kind).map(|(_, a)| *a),
        ours,
        || sipmesh_protocol::proxy::origin_branch(0, rand::random::<u64>()),
    );
    let sent = byes.len();
    for bye in byes {
        transport.send(bye.destination, bye.payload);
    }
    sent
}

/// Deletes a call leg pair's rtpengine session (Call-ID and tags; without tags every session
/// of the Call-ID), without waiting.
pub(crate) fn delete_session(
    media: &MediaSessions,
    call_id: &str,
    from_tag: Option<&str>,
    to_tag: Option<&str>,
) {
    media.request(
        Request::Delete(CallRef {
            call_id: call_id.to_owned(),
            from_tag: from_tag.map(str::to_owned),
            to_tag: to_tag.map(str::to_owned),
        }),
        |_| {},
    );
}
