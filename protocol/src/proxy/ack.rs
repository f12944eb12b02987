//! ACK handling: the hop-by-hop ACK for a non-2xx we sent is absorbed by its transaction; the
//! end-to-end ACK for a 2xx is forwarded statelessly along its route set (RFC 3261 §16.11).

use std::time::Instant;

use crate::message::Message;
use crate::peer::{Destination, Origin};
use crate::transaction::TransactionKey;
use crate::uri::Uri;

use super::core::{Core, ServerFsm};
use super::flow::flow_from_routes;
use super::forward::{ForwardPlan, Target};
use super::routing::{Resolve, resolve};
use super::wire::{OUR_BRANCH_PREFIX, build_forwarded};

impl Core {
    /// An ACK: hop-by-hop for a non-2xx we sent (absorbed by its transaction), otherwise the
    /// end-to-end ACK for a 2xx, forwarded statelessly along its route set.
    pub(super) fn handle_ack(
        &mut self,
        now: Instant,
        msg: Message,
        origin: Origin,
        key: TransactionKey,
    ) {
        if let Some(&id) = self.server_keys.get(&key)
            && let Some(entry) = self.servers.get_mut(&id)
        {
            if let ServerFsm::Invite(tx) = &mut entry.fsm {
                tx.handle_ack(now);
            }
            self.drive_server(now, id);
            return;
        }
        if msg.validate_request().is_err() || matches!(msg.max_forwards(), Ok(Some(0)) | Err(_)) {
            return;
        }
        let Ok(routes) = msg.routes() else { return };
        let mut popped = 0;
        for r in &routes {
            match r.uri.as_sip() {
                Some(u) if self.uri_is_self(u) => popped += 1,
                _ => break,
            }
        }
        let next_uri = match routes.get(popped) {
            Some(r) => r.uri,
            None => match msg.request_uri() {
                Some(Ok(u)) => u,
                _ => return,
            },
        };
        let Uri::Sip(sip) = next_uri else { return };
        // A forged or altered flow token: the ACK has no response to carry a 403; drop it.
        let Ok(flow) = flow_from_routes(
            routes.get(..popped).unwrap_or_default(),
            &origin,
            &self.cfg.flow_token_key,
        ) else {
            return;
        };
        if flow.is_none() && routes.get(popped).is_none() && self.uri_is_self(&sip) {
            return; // an ACK for a response we generated ourselves
        }
        let (transport, addr, connection) = match flow {
            Some(d) => (d.transport, d.addr, d.connection),
            None => {
                let Resolve::Ok(transport, addr) = resolve(&sip) else {
                    return;
                };
                (transport, addr, None)
            }
        };
        let inbound = self.inbound_listener(&origin);
        let Some(out) = self
            .locality
            .outbound_listener(transport, addr.ip(), inbound.as_ref())
        else {
            return;
        };
        // The same ACK retransmitted must get the same branch (stateless forwarding, §16.11).
        let incoming = msg
            .top_via()
            .ok()
            .and_then(|v| v.branch)
            .unwrap_or_default();
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in incoming.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        let branch = format!("{OUR_BRANCH_PREFIX}{:02x}{:016x}ack", self.cfg.shard, h);
        let mut plan = ForwardPlan::new(origin);
        plan.pop_routes = popped;
        let destination = Destination {
            transport,
            addr,
            local: Some(out.addr),
            connection,
        };
        // Issue 6: the answer to a late offer is in this ACK; rtpengine rewrites it first.
        if self.media_ack_gate(now, &msg, &origin, &key, transport) {
            return;
        }
        let target = Target {
            request_uri: None,
            destination,
            path: Vec::new(),
            redial: false,
        };
        let bytes = build_forwarded(
            &msg,
            &plan,
            &target,
            &branch,
            (out, inbound),
            &self.cfg.flow_token_key,
        );
        self.transmit(destination, bytes);
    }
}
