//! Dialog failover and hand-back between cluster nodes (issue 5, point 4).
//!
//! Every clustered node watches its placement set ([`Membership::live_members`]). When it
//! changes (a member declared dead or left, a member (re)joined), and once when this node first
//! holds its lease, the node runs [`rebalance`]: it reads the dialog owner indexes in Redis,
//! adopts the stored dialogs whose rendezvous owner ([`placement_key`]) it now is and runs no
//! actor for (a dead node's share: actor, timer for the time left, record moved to this node's
//! index under its fence), and releases the actors of dialogs another node now owns (a
//! restarted node's share goes back to it; the record stays, so requests in between are served
//! from Redis). A node that adopted or released anything bumps `sipmesh:dlg:rebalance`; every node
//! rebalances when that generation changes too, so the node that ran a moved dialog stops its
//! actor within a tick. A failed rebalance is retried on the next tick; nothing runs while
//! fenced.
//!
//! Media (issue 6): the media watch of an adopted call moves with its dialog
//! ([`MediaSessions::watch_adopted`], [`MediaSessions::forget`]), and every second the node
//! sweeps the pending media logs of dead members ([`sweep_media`]): an INVITE a dead node had
//! offered to rtpengine but never confirmed gets its session deleted by the call's placement
//! owner.
//!
//! Owner notices (issue 5, per-key ownership; [`follow_notices`]): a node subscribed to its
//! owner-index channel adopts at once a dialog that another node confirmed and handed over
//! (`adopt`), and stops at once the actor of a dialog another node removed (`ended`, a BYE
//! through a visitor), rather than at the next rebalance or its own timer.
//!
//! The admin view's per-member actor counts are published by `actor_counts`, not here.

use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tracing::{info, warn};

use sipmesh_actors::dialog::redis::notice::Notice;
use sipmesh_actors::dialog::takeover::{Moved, placement_key, rebalance_with};
use sipmesh_actors::dialog::{Dialogs, RedisDialogStore};
use sipmesh_actors::media::{MediaSessions, PendingMedia};
use sipmesh_cluster::{Membership, NodeId};

/// How often the placement set is compared.
const EVERY: Duration = Duration::from_millis(200);
/// How often dead members' pending media logs are swept (issue 6).
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// Age an offered call must reach before a survivor deletes its session: well past any
/// in-flight ng offer of the dead node (its death is declared about 2.4 s after it stops).
const SWEEP_GRACE: Duration = Duration::from_secs(1);

/// Starts the watcher; it runs until aborted. `lease_prefix` is the cluster key prefix (lease
/// keys are `<prefix>node:<id>`).
pub fn start(
    membership: Membership,
    store: RedisDialogStore,
    dialogs: Dialogs,
    media: Option<MediaSessions>,
    lease_prefix: String,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut placed: Option<Vec<NodeId>> = None;
        let mut generation: Option<u64> = None;
        let mut last_sweep = Instant::now();
        // This node's own log holds entries of its previous run until one sweep went through.
        let mut own_swept = false;
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if membership.is_fenced() {
                // Whatever changed meanwhile, look again once the lease is back.
                placed = None;
                continue;
            }
            if let Some(media) = &media
                && last_sweep.elapsed() >= SWEEP_EVERY
            {
                last_sweep = Instant::now();
                own_swept |=
                    sweep_media(&membership, &dialogs, media, &lease_prefix, own_swept).await;
            }
            let live = membership.live_members();
            let seen = match store.rebalance_generation().await {
                Ok(g) => g,
                Err(e) => {
                    warn!(error = %e, "reading the rebalance generation failed");
                    continue;
                }
            };
            if placed.as_ref() == Some(&live) && generation == Some(seen) {
                continue;
            }
            let owns = |id: &_| membership.is_owner(&placement_key(id));
            // Issue 6: an adopted call's media is watched here; a released one's is not.
            let moved = |m: Moved<'_>| {
                if let Some(media) = &media {
                    match m {
                        Moved::Adopted(d) => {
                            media.watch_adopted(d);
                        }
                        Moved::Released(d) => {
                            media.forget(&d.id.call_id);
                        }
                    }
                }
            };
            match rebalance_with(&store, &dialogs, owns, moved).await {
                Ok(r) => {
                    generation = Some(seen);
                    if r.adopted > 0 || r.released > 0 {
                        // The nodes that ran these dialogs release them on seeing the bump;
                        // after a release, the owner adopts what it does not run yet (an
                        // owner actor that became a visitor when another node held the
                        // claim, issue 5 per-dialog claims).
                        if let Err(e) = store.bump_rebalance().await {
                            warn!(error = %e, "bumping the rebalance generation failed");
                        }
                    }
                    if r.adopted > 0 || r.released > 0 {
                        info!(
                            members = ?live,
                            scanned = r.scanned,
                            adopted = r.adopted,
                            released = r.released,
                            took_ms = r.took.as_millis(),
                            "dialog actors rebalanced"
                        );
                    }
                    placed = Some(live);
                }
                Err(e) => warn!(error = %e, "dialog rebalance failed; retrying"),
            }
        }
    })
}

/// Follows this node's owner notices (on the single server or the Sentinel master of the
/// store's URL) until aborted: an `adopt` reads
/// the record and adopts it (its media watch moves here too), an `ended` stops the dialog's
/// actor (no BYE, no write: the record is gone). Also makes a dialog handed over from here
/// stop its media session tasks here.
pub fn follow_notices(
    store: RedisDialogStore,
    dialogs: Dialogs,
    media: Option<MediaSessions>,
) -> JoinHandle<()> {
    // A call handed over from here is watched by its owner (issue 6): stop watching it here.
    if let Some(media) = media.clone() {
        dialogs.set_hand_over_hook(std::sync::Arc::new(move |d| {
            media.forget(&d.id.call_id);
        }));
    }
    tokio::spawn(async move {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let reader = store.clone();
        // The subscription only queues; reading a record is done here, one at a time.
        let follow = tokio::spawn(async move {
            reader
                .follow_notices(|n| {
                    let _ = tx.send(n);
                })
                .await;
        });
        while let Some(notice) = rx.recv().await {
            match notice {
                Notice::Adopt(key) => match store.record_at(&key).await {
                    Ok(Some(record)) => {
                        if let Some(media) = &media {
                            media.watch_adopted(&record.state);
                        }
                        dialogs.adopt(record.state, record.remaining);
                    }
                    Ok(None) => {}
                    Err(e) => warn!(error = %e, %key, "reading a handed-over dialog failed"),
                },
                Notice::Ended(id) => {
                    if dialogs.ended_elsewhere(&id)
                        && let Some(media) = &media
                    {
                        media.forget(&id.call_id);
                    }
                }
            }
        }
        follow.abort();
    })
}

/// Deletes the rtpengine sessions that dead members offered and never confirmed (their
/// pending media logs, see `sipmesh_actors::media::PendingMedia`), for the calls this node
/// owns; with `own_swept` false, also this node's entries left by its previous run. Returns
/// whether this node's own log was swept.
async fn sweep_media(
    membership: &Membership,
    dialogs: &Dialogs,
    media: &MediaSessions,
    lease_prefix: &str,
    own_swept: bool,
) -> bool {
    let Some(pending) = media.pending() else {
        return true;
    };
    let live = membership.live_members();
    let mut keys: Vec<String> = membership
        .view()
        .members
        .into_iter()
        .filter(|m| !m.is_self && !live.contains(&m.id))
        .map(|m| PendingMedia::key_of(&format!("{lease_prefix}node:{}", m.id)))
        .collect();
    let sweep_own = !own_swept && pending.started().elapsed().unwrap_or_default() >= SWEEP_GRACE;
    if sweep_own {
        keys.push(pending.own_key().to_owned());
    }
    if keys.is_empty() {
        return false;
    }
    let calls: std::collections::HashSet<String> = dialogs
        .live_ids()
        .into_iter()
        .map(|id| id.call_id)
        .collect();
    let owns = |call_id: &str| membership.is_owner(format!("dlg:{call_id}").as_bytes());
    match media
        .sweep_orphans(&keys, SWEEP_GRACE, owns, |c| calls.contains(c))
        .await
    {
        Ok(r) => {
            if r.deleted > 0 || r.kept > 0 {
                info!(
                    deleted = r.deleted,
                    kept = r.kept,
                    left = r.left,
                    "pending media sessions of dead members swept"
                );
            }
            sweep_own
        }
        Err(e) => {
            warn!(error = %e, "sweeping pending media sessions failed");
            false
        }
    }
}
