//! Ending a dialog at its timeout from the middle (RFC 3261 §15: the proxy sends a BYE to both
//! ends, built from the dialog record by [`sipmesh_protocol::media::byes_for`]): the hook the
//! dialog actors call when their timer fires, also on a node that adopted the dialog after its
//! owner died (issue 5). A Record-Route entry naming this node or any cluster member's
//! listener counts as ours, so the BYEs skip a dead member's Route.

use std::net::SocketAddr;
use std::sync::{Arc, PoisonError, RwLock};

use sipmesh_protocol::dialog::DialogState;
use sipmesh_protocol::peer::Transport;
use sipmesh_protocol::proxy::Listener;

use crate::dialog::TimeoutHook;
use crate::transport::{self, TransportHandle};

/// The hook: BYEs to both ends over `transport`, from this node's `local` listeners.
pub(crate) fn bye_both_ends(
    transport: TransportHandle,
    local: Vec<(Transport, SocketAddr)>,
    peers: Arc<RwLock<Vec<Listener>>>,
) -> TimeoutHook {
    Arc::new(move |dialog: &DialogState| {
        let peers = peers.read().unwrap_or_else(PoisonError::into_inner).clone();
        let ours = |route: &str| {
            local.iter().any(|(_, a)| route.contains(&a.to_string()))
                || peers.iter().any(|p| route.contains(&p.addr.to_string()))
        };
        let byes = sipmesh_protocol::media::byes_for(
            dialog,
            |kind| local.iter().find(|(k, _)| *k == kind).map(|(_, a)| *a),
            ours,
            || format!("z9hG4bKdt{:016x}", rand::random::<u64>()),
        );
        tracing::info!(byes = byes.len(), "dialog timeout: BYE to both ends");
        for bye in byes {
            let d = bye.destination;
            transport.send(
                transport::Destination {
                    transport: d.transport,
                    addr: d.addr,
                    connection: d.connection,
                    local: d.local,
                },
                bye.payload,
            );
        }
    })
}
