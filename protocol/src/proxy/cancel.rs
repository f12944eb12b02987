//! CANCEL (RFC 3261 §9.1, §16.10): cancelling pending branches when the client cancels or a
//! 2xx/6xx ends the search, answering an incoming CANCEL, and Timer C (§16.8).

use std::time::Instant;

use tracing::debug;

use crate::message::StatusCode;
use crate::transaction::{CancelPermit, TransactionKey};

use super::core::{ClientFsm, Core};
use super::matching::server_key;
use super::wire::build_cancel;

impl Core {
    /// Cancels branches still pending when the context asks for it (§16.10, §16.7 step 10).
    pub(super) fn cancel_pending(&mut self, now: Instant, ctx_id: u64) {
        let Some(ctx) = self.contexts.get(&ctx_id) else {
            return;
        };
        if !ctx.rc.should_cancel_pending() {
            return;
        }
        let pending: Vec<(u64, bool)> = ctx
            .rc
            .pending_branches()
            .filter_map(|(i, proceeding)| ctx.branches.get(i).map(|id| (*id, proceeding)))
            .collect();
        for (id, _proceeding) in pending {
            let Some(entry) = self.clients.get_mut(&id) else {
                continue;
            };
            if entry.cancel_sent || entry.cancel_pending {
                continue;
            }
            let ClientFsm::Invite(tx) = &mut entry.fsm else {
                continue;
            };
            match tx.cancel_requested() {
                CancelPermit::SendNow => self.send_cancel(now, id),
                CancelPermit::AfterProvisional => entry.cancel_pending = true,
                CancelPermit::TooLate => {}
            }
        }
    }

    /// Sends a CANCEL for the INVITE of client transaction `id` (§9.1: same Request-URI,
    /// Call-ID, From, To, CSeq number, Route and top Via).
    pub(super) fn send_cancel(&mut self, now: Instant, id: u64) {
        let Some(entry) = self.clients.get_mut(&id) else {
            return;
        };
        let Some(req) = entry.request.as_ref() else {
            return;
        };
        entry.cancel_sent = true;
        let Some(bytes) = build_cancel(req) else {
            return;
        };
        let Ok(branch) = req
            .top_via()
            .map(|v| v.branch.unwrap_or_default().to_owned())
        else {
            return;
        };
        let destination = entry.destination;
        let key = TransactionKey::client(&branch, "CANCEL");
        self.start_non_invite_client(now, key, bytes, destination);
    }

    /// Timer C fired for a branch: cancel it if it is ringing (§16.8).
    pub(super) fn fire_timer_c(&mut self, now: Instant, ctx_id: u64, index: usize) {
        let Some(ctx) = self.contexts.get(&ctx_id) else {
            return;
        };
        let due = ctx
            .timer_c
            .get(index)
            .copied()
            .flatten()
            .is_some_and(|at| at <= now);
        let Some(&id) = ctx.branches.get(index) else {
            return;
        };
        if !due {
            return;
        }
        if let Some(c) = self.contexts.get_mut(&ctx_id)
            && let Some(slot) = c.timer_c.get_mut(index)
        {
            *slot = None;
        }
        if self.clients.get(&id).is_some_and(|e| !e.cancel_sent) {
            debug!("Timer C fired: cancelling branch");
            self.send_cancel(now, id);
        }
    }

    /// A CANCEL arrived and has its own server transaction `cancel_id` (§16.10).
    pub(super) fn handle_cancel(&mut self, now: Instant, cancel_id: u64) {
        let Some(entry) = self.servers.get(&cancel_id) else {
            return;
        };
        let Some(request) = entry.request.as_ref() else {
            return;
        };
        let invite_key = server_key(request, "INVITE");
        let invite = invite_key
            .ok()
            .and_then(|k| self.server_keys.get(&k).copied());
        let Some(invite) = invite else {
            self.respond_local(
                now,
                cancel_id,
                StatusCode(481),
                "Call/Transaction Does Not Exist",
                &[],
            );
            return;
        };
        self.respond_local(now, cancel_id, StatusCode::OK, "OK", &[]);
        let Some(inv) = self.servers.get_mut(&invite) else {
            return;
        };
        if inv.finished {
            return;
        }
        match inv.context {
            Some(ctx) => {
                if let Some(c) = self.contexts.get_mut(&ctx) {
                    c.rc.request_cancel();
                }
                self.cancel_pending(now, ctx);
            }
            None => {
                inv.cancelled = true;
                self.respond_local(now, invite, StatusCode(487), "Request Terminated", &[]);
            }
        }
    }
}
