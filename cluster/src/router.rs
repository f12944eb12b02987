//! Service routers: one actor per service per node, joined to the ractor process group
//! `sipmesh.<service>` (for example `sipmesh.registrar`).
//!
//! Process groups hold routers, never per-entity actors: an AOR, dialog or media-session actor
//! stays a local actor on its owner, found through placement; the group only answers "which
//! nodes run service X" and gives a remote-capable address to forward to. ractor_cluster
//! synchronises the groups across sessions, so a node sees its peers' routers as remote actors.
//! The `transport` service, which carries SIP messages to the node holding a connection, has
//! its own router ([`crate::flow::FlowRouter`]) in the same naming scheme.

use std::time::{Duration, Instant};

use ractor::rpc::CallResult;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::RactorClusterMessage;

use crate::id::NodeId;

/// The process group of `service`.
pub fn group_name(service: &str) -> String {
    format!("sipmesh.{service}")
}

/// Messages of a [`ServiceRouter`]; serialisable, so peers can reach it over the mesh.
#[derive(Debug, RactorClusterMessage)]
pub enum RouterMsg {
    /// Which node runs this router (a liveness and identity probe between nodes).
    #[rpc]
    Whoami(RpcReplyPort<String>),
}

/// The router of one service on one node.
#[derive(Debug)]
pub struct ServiceRouter;

/// Start-up arguments of a [`ServiceRouter`].
#[derive(Debug)]
pub struct RouterArgs {
    /// The node it runs on.
    pub node: NodeId,
    /// The service it routes (`registrar`, `dialog`, …).
    pub service: String,
}

impl Actor for ServiceRouter {
    type Msg = RouterMsg;
    type State = RouterArgs;
    type Arguments = RouterArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: RouterArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        ractor::pg::join(group_name(&args.service), vec![myself.get_cell()]);
        Ok(args)
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: RouterMsg,
        state: &mut RouterArgs,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            RouterMsg::Whoami(reply) => {
                // The caller may have given up; nothing to do then.
                let _ = reply.send(state.node.to_string());
            }
        }
        Ok(())
    }
}

/// The round trip of a `Whoami` call to one remote router.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RouterPing {
    /// The node the router says it runs on (`None` when it did not answer).
    pub node: Option<String>,
    /// Median round trip in microseconds over the answered calls.
    pub median_us: Option<u64>,
    /// Slowest answered round trip in microseconds.
    pub max_us: Option<u64>,
    /// Calls that failed or timed out.
    pub failed: usize,
}

/// Calls `Whoami` `rounds` times on every remote router of `service`, one after another: the
/// cost of one node-to-node request over ractor_cluster (serialisation, TCP, reply), which is
/// what forwarding a request to its owner adds.
pub async fn ping_remote_routers(
    service: &str,
    rounds: usize,
    timeout: Duration,
) -> Vec<RouterPing> {
    let mut out = Vec::new();
    for cell in ractor::pg::get_members(&group_name(service)) {
        if cell.get_id().is_local() {
            continue;
        }
        let router: ActorRef<RouterMsg> = cell.into();
        let mut rtts = Vec::with_capacity(rounds);
        let mut node = None;
        let mut failed = 0;
        for _ in 0..rounds {
            let start = Instant::now();
            match router.call(RouterMsg::Whoami, Some(timeout)).await {
                Ok(CallResult::Success(name)) => {
                    rtts.push(start.elapsed());
                    node = Some(name);
                }
                _ => failed += 1,
            }
        }
        rtts.sort();
        let us = |d: &Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        out.push(RouterPing {
            node,
            median_us: rtts.get(rtts.len() / 2).map(us),
            max_us: rtts.last().map(us),
            failed,
        });
    }
    out.sort_by(|a, b| a.node.cmp(&b.node));
    out
}

/// How many routers of `service` this node knows: its own plus its peers' (remote).
pub fn router_count(service: &str) -> (usize, usize) {
    let members = ractor::pg::get_members(&group_name(service));
    let local = members.iter().filter(|a| a.get_id().is_local()).count();
    (local, members.len() - local)
}
