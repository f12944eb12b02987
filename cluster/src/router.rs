//! Service routers: one actor per service per node, joined to the ractor process group
//! `sipmesh.<service>` (for example `sipmesh.registrar`).
//!
//! Process groups hold routers, never per-entity actors: an AOR, dialog or media-session actor
//! stays a local actor on its owner, found through placement; the group only answers "which
//! nodes run service X" and gives a remote-capable address to forward to. ractor_cluster
//! synchronises the groups across sessions, so a node sees its peers' routers as remote actors.
//! Request forwarding through them is the next part of the cluster work.

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

/// How many routers of `service` this node knows: its own plus its peers' (remote).
pub fn router_count(service: &str) -> (usize, usize) {
    let members = ractor::pg::get_members(&group_name(service));
    let local = members.iter().filter(|a| a.get_id().is_local()).count();
    (local, members.len() - local)
}
