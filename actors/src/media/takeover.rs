//! Media of calls whose node died (issue 6, point 2: "delete on node takeover of an orphaned
//! call"; issue 5: "media polling not restarted on the adopting node").
//!
//! - **Confirmed calls.** The survivor that adopts a dead node's dialog (the dialog takeover,
//!   `dialog::takeover`) calls [`MediaSessions::watch_adopted`]: a session task starts on the
//!   instance named in the record's `media_session`, already answered, so it polls `query`
//!   and reports a silent call ([`TimedOut`](super::TimedOut)) like one set up here: BYE to
//!   both ends, dialog ended, session deleted. A dialog handed back to a restarted node is
//!   [`forget`](MediaSessions::forget)-ten here (its task stops, the session stays).
//! - **Offered, unconfirmed calls.** Each node logs them in Redis ([`PendingMedia`]). The
//!   survivor that owns a call's placement key sweeps a dead node's log
//!   ([`MediaSessions::sweep_orphans`]): after a grace counted from the offer, a call with no
//!   live dialog here gets an ng `delete` on its instance, and its entry is removed (one with
//!   a live dialog, adopted because the node died between the 2xx and its log removal, only
//!   loses its entry). A node also sweeps entries of its own log left by its previous run.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::{Duration, SystemTime};

use sipmesh_protocol::dialog::{DialogPhase, DialogState};
use sipmesh_protocol::ng::{CallRef, Request};
use tracing::{debug, info, warn};

use super::pending::{PendingError, PendingMedia};
use super::pool::InstanceSpec;
use super::supervisor::{MediaSessions, SessionKey};

/// What one [`MediaSessions::sweep_orphans`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sweep {
    /// Entries read.
    pub scanned: usize,
    /// rtpengine sessions deleted (calls that were never confirmed).
    pub deleted: usize,
    /// Entries removed without a delete (their dialog lives here).
    pub kept: usize,
    /// Entries left for a later sweep (too young, or another node's to sweep).
    pub left: usize,
}

impl MediaSessions {
    /// Logs this node's offered, unconfirmed calls in `pending` from now on (a clustered node
    /// with Redis; a second call is ignored).
    pub fn set_pending(&self, pending: PendingMedia) {
        let _ = self.inner.pending.set(pending);
    }

    /// This node's pending log, if any.
    pub fn pending(&self) -> Option<&PendingMedia> {
        self.inner.pending.get()
    }

    /// A new call's first offer was placed on instance `index`.
    pub(super) fn pending_add(&self, call_id: &str, index: usize) {
        if let (Some(p), Some(i)) = (self.inner.pending.get(), self.inner.pool.get(index)) {
            p.add(call_id, i.spec.addr);
        }
    }

    /// The call ended (its session is deleted).
    pub(super) fn pending_remove(&self, call_id: &str) {
        if let Some(p) = self.inner.pending.get() {
            p.remove(call_id);
        }
    }

    /// The call's dialog is confirmed and stored (its record names the instance now).
    pub fn confirmed(&self, call_id: &str) {
        self.pending_remove(call_id);
    }

    /// Watches the media of a confirmed dialog adopted from another node (see the module
    /// doc); true when a watching session was started. Nothing happens when the record names
    /// no instance of this node's pool or a session already runs for the call.
    pub fn watch_adopted(&self, dialog: &DialogState) -> bool {
        if dialog.phase != DialogPhase::Confirmed {
            return false;
        }
        let Some(addr) = dialog
            .media_session
            .as_deref()
            .and_then(|m| InstanceSpec::parse(m).ok())
            .map(|s| s.addr)
        else {
            return false;
        };
        let Some(index) = self.inner.pool.index_of(addr) else {
            warn!(call_id = %dialog.id.call_id, %addr, "adopted call on an unknown rtpengine instance");
            return false;
        };
        let call_id = &dialog.id.call_id;
        let key = SessionKey::new(call_id.clone(), dialog.caller.tag.clone());
        let mut sessions = self.lock();
        if sessions.contains_key(&key) {
            return false;
        }
        let tags = (dialog.caller.tag.clone(), dialog.callee.tag.clone());
        // The record's last offer and answer: the adopted call can be failed over too.
        let negotiated = dialog
            .media_negotiation
            .as_ref()
            .map(super::Negotiated::from_record)
            .unwrap_or_default();
        let entry = self.spawn_with(
            &key,
            Arc::new(AtomicUsize::new(index)),
            Some(tags),
            negotiated,
        );
        sessions.insert(key, entry);
        debug!(%call_id, %addr, "media watch of an adopted call started");
        true
    }

    /// Stops this node's session tasks of `call_id` without deleting the sessions (another
    /// node runs the call now); true when there was one.
    pub fn forget(&self, call_id: &str) -> bool {
        let mut sessions = self.lock();
        let before = sessions.len();
        sessions.retain(|k, _| k.call_id != call_id);
        sessions.len() != before
    }

    /// Deletes the orphaned sessions in the pending logs `keys` (dead nodes' logs; this
    /// node's own is swept only for entries older than its start). `owns(call_id)` says
    /// whether this node sweeps the call (its placement owner); `live(call_id)` whether a
    /// dialog of the call lives here. Entries younger than `grace` wait for a later sweep.
    pub async fn sweep_orphans(
        &self,
        keys: &[String],
        grace: Duration,
        owns: impl Fn(&str) -> bool,
        live: impl Fn(&str) -> bool,
    ) -> Result<Sweep, PendingError> {
        let mut report = Sweep::default();
        let Some(pending) = self.inner.pending.get() else {
            return Ok(report);
        };
        let now = SystemTime::now();
        for key in keys {
            let own = key == pending.own_key();
            let mut done = Vec::new();
            for e in pending.entries(key).await? {
                report.scanned += 1;
                let old = now.duration_since(e.created).unwrap_or_default() >= grace;
                let previous_run = !own || e.created < pending.started();
                if !old || !previous_run || !owns(&e.call_id) {
                    report.left += 1;
                    continue;
                }
                if live(&e.call_id) {
                    report.kept += 1;
                } else {
                    self.delete_orphan(&e.call_id, e.instance).await;
                    report.deleted += 1;
                }
                done.push(e.call_id);
            }
            pending.remove_from(key, &done).await?;
        }
        if report.deleted > 0 {
            info!(
                deleted = report.deleted,
                kept = report.kept,
                "orphaned media sessions of a dead node deleted"
            );
        }
        Ok(report)
    }

    /// An ng `delete` of a whole call on `addr` (every instance when `addr` is not in this
    /// node's pool), bounded by the client's timeout.
    async fn delete_orphan(&self, call_id: &str, addr: SocketAddr) {
        let pool = &self.inner.pool;
        let call = CallRef {
            call_id: call_id.to_owned(),
            from_tag: None,
            to_tag: None,
        };
        let targets: Vec<usize> = match pool.index_of(addr) {
            Some(i) => vec![i],
            None => (0..pool.len()).collect(),
        };
        for index in targets {
            if let Some(i) = pool.get(index)
                && let Err(e) = i.client.request(Request::Delete(call.clone())).await
            {
                debug!(%call_id, error = %e, "delete of an orphaned session failed");
            }
        }
    }
}
