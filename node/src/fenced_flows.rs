//! Flows of a node that may have been declared dead (issue 5, freeze): when a node that held
//! its lease finds itself fenced because the lease lapsed (it was frozen, or cut off from
//! Redis) or because it is isolated from the majority, its peers may already have declared it
//! dead and removed the bindings of its connections (`lost_flows`). Its connections still
//! being open would leave those clients unreachable: their flow looks alive to them, so they
//! never re-register (RFC 5626 §4.4.1 recovers a flow only when it fails).
//!
//! So the node closes every stream connection (TCP, TLS, WS, WSS) at that transition, and the
//! clients reconnect and register again (at this node once it is live, or at another). It never
//! serves an old flow again: once it may act as an owner again (new epoch, settled), it removes
//! the bindings of its own scope whose connection is no longer open here, in case no survivor
//! did (a short isolation, or the cleanup write failed), so requests to those users get 480
//! until they register again instead of being sent to a closed connection.
//!
//! Closing on isolation is conservative: a node isolated for a moment may not have been
//! declared dead, but it cannot know, and a reconnect costs the clients one REGISTER.

use std::time::Duration;

use tokio::task::JoinHandle;
use tracing::{info, warn};

use sipmesh_actors::engine::EngineFlows;
use sipmesh_actors::location::RedisLocationStore;
use sipmesh_cluster::{FenceReason, Membership};

/// How often the fence state is read (a thawed process is fenced on its first look, so its
/// connections close within this after SIGCONT).
const EVERY: Duration = Duration::from_millis(100);

/// What to do after looking at the fence state once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Nothing.
    Nothing,
    /// Close every stream connection: peers may have declared this node dead.
    CloseAll,
    /// Remove this node's bindings whose connection is no longer open (owner again after a
    /// fence that closed the connections).
    Sweep,
}

/// The transitions of a node's fence state that matter to its flows; pure, so it is tested
/// without a cluster.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FenceWatch {
    /// A lease has been held since the last close (so a fence now may mean "declared dead").
    armed: bool,
    /// Connections were closed and the own-scope sweep has not succeeded yet.
    sweep_pending: bool,
}

impl FenceWatch {
    /// Takes the current fence reason (`None`: may act as owner) and says what to do.
    pub fn observe(&mut self, reason: Option<FenceReason>) -> Action {
        match reason {
            Some(FenceReason::Lease | FenceReason::Isolated) => {
                if self.armed {
                    self.armed = false;
                    self.sweep_pending = true;
                    Action::CloseAll
                } else {
                    Action::Nothing
                }
            }
            Some(FenceReason::Settling) => {
                self.armed = true;
                Action::Nothing
            }
            None => {
                self.armed = true;
                if self.sweep_pending {
                    Action::Sweep
                } else {
                    Action::Nothing
                }
            }
        }
    }

    /// The sweep succeeded.
    pub fn swept(&mut self) {
        self.sweep_pending = false;
    }
}

/// Starts the watcher; it runs until aborted.
pub fn start(
    membership: Membership,
    flows: EngineFlows,
    store: RedisLocationStore,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let me = membership.node_id().clone();
        let mut watch = FenceWatch::default();
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let reason = membership.fence_reason();
            match watch.observe(reason) {
                Action::Nothing => {}
                Action::CloseAll => {
                    let closed = flows.close_all_streams();
                    warn!(
                        ?reason,
                        closed,
                        "fenced after holding the lease: peers may have declared this node dead; stream connections closed so their clients recover their flows"
                    );
                }
                Action::Sweep => {
                    match store
                        .remove_scope_connections(me.as_str(), |c| flows.holds(c))
                        .await
                    {
                        Ok(removed) => {
                            watch.swept();
                            info!(
                                removed,
                                "bindings of connections closed while fenced removed"
                            );
                        }
                        Err(e) => {
                            warn!(error = %e, "removing the bindings of closed connections failed")
                        }
                    }
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_closed_before_the_first_lease() {
        let mut w = FenceWatch::default();
        assert_eq!(w.observe(Some(FenceReason::Lease)), Action::Nothing);
        assert_eq!(w.observe(Some(FenceReason::Isolated)), Action::Nothing);
        assert_eq!(w.observe(Some(FenceReason::Settling)), Action::Nothing);
        assert_eq!(w.observe(None), Action::Nothing);
    }

    #[test]
    fn losing_the_lease_closes_once_then_sweeps_when_owner_again() {
        let mut w = FenceWatch::default();
        assert_eq!(w.observe(None), Action::Nothing);
        assert_eq!(w.observe(Some(FenceReason::Lease)), Action::CloseAll);
        // Still fenced, then isolated while waiting: closed once only.
        assert_eq!(w.observe(Some(FenceReason::Lease)), Action::Nothing);
        assert_eq!(w.observe(Some(FenceReason::Isolated)), Action::Nothing);
        // Settling is not yet owner: no sweep (its writes are fenced).
        assert_eq!(w.observe(Some(FenceReason::Settling)), Action::Nothing);
        assert_eq!(w.observe(None), Action::Sweep);
        // A failed sweep is retried.
        assert_eq!(w.observe(None), Action::Sweep);
        w.swept();
        assert_eq!(w.observe(None), Action::Nothing);
    }

    #[test]
    fn isolation_closes_and_a_fence_while_settling_closes_again() {
        let mut w = FenceWatch::default();
        assert_eq!(w.observe(Some(FenceReason::Settling)), Action::Nothing);
        assert_eq!(w.observe(Some(FenceReason::Isolated)), Action::CloseAll);
        assert_eq!(w.observe(Some(FenceReason::Settling)), Action::Nothing);
        // Fenced again before it ever acted as owner: connections accepted meanwhile close too.
        assert_eq!(w.observe(Some(FenceReason::Lease)), Action::CloseAll);
        assert_eq!(w.observe(None), Action::Sweep);
    }
}
