//! The `transport` service: handing SIP messages to the node that holds a stream connection.
//!
//! A TCP, TLS, WS or WSS connection exists on one node only, but a request for the UA behind it
//! can enter at any node (issue 5). Each node runs one [`FlowRouter`] in the process groups
//! `sipmesh.transport` (every holder) and `sipmesh.transport.<incarnation>` (this process: the
//! incarnation is in every connection id it hands out, see
//! `sipmesh_protocol::proxy::Incarnation`), so the holder of a connection is found by a group
//! lookup, without a registry.
//!
//! - [`FlowMsg::Deliver`] (an RPC): node A asks the holder C to write a message on one of its
//!   connections; C answers whether the connection was still there, so A can answer 480 at once
//!   when it is not (and when C is gone from the group, or does not answer within the timeout).
//! - [`FlowMsg::Relay`]: the responses coming back on C's connection belong to A's client
//!   transaction (the top Via is A's): C relays them to A over the same mesh. The mesh is
//!   already an authenticated (cookie, optionally mutual TLS) ordered stream between every
//!   pair; UDP to A's SIP address would need no session, but a large response would fragment
//!   and A's UDP socket would accept it from anyone.
//! - [`FlowMsg::Listeners`] (an RPC): the holder's SIP listeners, so every node can accept every
//!   member's Record-Route as its own (RFC 3261 §16.4).
//!
//! The node implements [`FlowHost`] with its engine; this module does no SIP.

use std::sync::Arc;
use std::time::Duration;

use ractor::rpc::CallResult;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::RactorClusterMessage;

/// The service name: group `sipmesh.transport`.
pub const SERVICE: &str = "transport";

/// The process group of the router of incarnation `incarnation`.
pub fn holder_group(incarnation: u16) -> String {
    format!("{}.{incarnation}", crate::router::group_name(SERVICE))
}

/// A message for a connection, as it crosses the mesh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowFrame {
    /// The sender's incarnation (where responses are relayed).
    pub from: u16,
    /// Transport token of the connection (`TCP`, `TLS`, `WS`, `WSS`).
    pub transport: String,
    /// The connection id (the holder's).
    pub connection: u64,
    /// The peer at the far end, `IP:port`.
    pub peer: String,
    /// The SIP message.
    pub payload: Vec<u8>,
}

/// What a node does with frames for its own connections (implemented by the node over its
/// SIP engine).
pub trait FlowHost: Send + Sync + 'static {
    /// Writes a message on one of this node's connections; `false` when it is gone.
    fn deliver(&self, frame: FlowFrame) -> bool;
    /// A response relayed by the holder of a connection to this node's transaction.
    fn relayed(&self, frame: FlowFrame);
    /// This node's SIP listeners as `TRANSPORT IP:port`, one per line.
    fn listeners(&self) -> String;
    /// The holder of `connection` says it closed while this node had requests over it.
    fn closed(&self, connection: u64);
}

/// Messages of a [`FlowRouter`]; serialisable, so peers reach it over the mesh.
#[derive(Debug, RactorClusterMessage)]
pub enum FlowMsg {
    /// Write a message on one of this node's connections; answers whether it was there.
    #[rpc]
    Deliver(u16, String, u64, String, Vec<u8>, RpcReplyPort<bool>),
    /// A response for a transaction of this node, relayed from a connection's holder.
    Relay(u16, String, u64, String, Vec<u8>),
    /// This node's SIP listeners (see [`FlowHost::listeners`]).
    #[rpc]
    Listeners(RpcReplyPort<String>),
    /// A connection of the sender closed while this node had requests over it.
    Closed(u64),
}

fn frame(
    from: u16,
    transport: String,
    connection: u64,
    peer: String,
    payload: Vec<u8>,
) -> FlowFrame {
    FlowFrame {
        from,
        transport,
        connection,
        peer,
        payload,
    }
}

/// The transport router of one node.
#[derive(Debug)]
pub struct FlowRouter;

/// Start-up arguments of a [`FlowRouter`].
pub struct FlowRouterArgs {
    /// This process's incarnation.
    pub incarnation: u16,
    /// The engine side.
    pub host: Arc<dyn FlowHost>,
}

impl std::fmt::Debug for FlowRouterArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlowRouterArgs")
            .field("incarnation", &self.incarnation)
            .finish_non_exhaustive()
    }
}

impl Actor for FlowRouter {
    type Msg = FlowMsg;
    type State = FlowRouterArgs;
    type Arguments = FlowRouterArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: FlowRouterArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        ractor::pg::join(crate::router::group_name(SERVICE), vec![myself.get_cell()]);
        ractor::pg::join(holder_group(args.incarnation), vec![myself.get_cell()]);
        Ok(args)
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: FlowMsg,
        state: &mut FlowRouterArgs,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            FlowMsg::Deliver(from, transport, connection, peer, payload, reply) => {
                let ok = state
                    .host
                    .deliver(frame(from, transport, connection, peer, payload));
                // The caller may have given up; nothing to do then.
                let _ = reply.send(ok);
            }
            FlowMsg::Relay(from, transport, connection, peer, payload) => {
                state
                    .host
                    .relayed(frame(from, transport, connection, peer, payload));
            }
            FlowMsg::Listeners(reply) => {
                let _ = reply.send(state.host.listeners());
            }
            FlowMsg::Closed(connection) => state.host.closed(connection),
        }
        Ok(())
    }
}

/// Why a frame did not reach its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FlowError {
    /// No live node runs that incarnation (it died, restarted, or never joined the mesh).
    #[error("no node holds incarnation {0}")]
    NoHolder(u16),
    /// The holder answered that the connection is gone.
    #[error("the holder no longer has the connection")]
    Gone,
    /// The holder did not answer in time (or the session broke).
    #[error("the holder did not answer in time")]
    NoAnswer,
}

/// The remote router of incarnation `holder`, if a live session carries it.
fn remote_router(holder: u16) -> Option<ActorRef<FlowMsg>> {
    ractor::pg::get_members(&holder_group(holder))
        .into_iter()
        .find(|c| !c.get_id().is_local())
        .map(ActorRef::from)
}

/// Asks incarnation `holder` to write `frame` on its connection, waiting at most `timeout`.
pub async fn deliver(holder: u16, frame: FlowFrame, timeout: Duration) -> Result<(), FlowError> {
    let router = remote_router(holder).ok_or(FlowError::NoHolder(holder))?;
    let FlowFrame {
        from,
        transport,
        connection,
        peer,
        payload,
    } = frame;
    let call = router.call(
        |reply| FlowMsg::Deliver(from, transport, connection, peer, payload, reply),
        Some(timeout),
    );
    match call.await {
        Ok(CallResult::Success(true)) => Ok(()),
        Ok(CallResult::Success(false)) => Err(FlowError::Gone),
        _ => Err(FlowError::NoAnswer),
    }
}

/// Relays a response to incarnation `to` (fire and forget: a lost response is retransmitted
/// by the UA on UDP paths, and a stream UA's transaction times out at the sender).
pub fn relay(to: u16, frame: FlowFrame) -> Result<(), FlowError> {
    let router = remote_router(to).ok_or(FlowError::NoHolder(to))?;
    router
        .cast(FlowMsg::Relay(
            frame.from,
            frame.transport,
            frame.connection,
            frame.peer,
            frame.payload,
        ))
        .map_err(|_| FlowError::NoAnswer)
}

/// Tells incarnation `to` that this node's `connection` closed (fire and forget).
pub fn closed(to: u16, connection: u64) -> Result<(), FlowError> {
    let router = remote_router(to).ok_or(FlowError::NoHolder(to))?;
    router
        .cast(FlowMsg::Closed(connection))
        .map_err(|_| FlowError::NoAnswer)
}

/// Whether incarnation `holder` answers an RPC (its listeners) within `timeout`: the probe
/// that clears a suspect holder ([`crate::suspects`]).
pub async fn probe(holder: u16, timeout: Duration) -> Result<(), FlowError> {
    let router = remote_router(holder).ok_or(FlowError::NoHolder(holder))?;
    match router.call(FlowMsg::Listeners, Some(timeout)).await {
        Ok(CallResult::Success(_)) => Ok(()),
        _ => Err(FlowError::NoAnswer),
    }
}

/// The SIP listeners of every remote transport router that answers within `timeout`.
pub async fn peer_listeners(timeout: Duration) -> Vec<String> {
    let mut out = Vec::new();
    for cell in ractor::pg::get_members(&crate::router::group_name(SERVICE)) {
        if cell.get_id().is_local() {
            continue;
        }
        let router: ActorRef<FlowMsg> = cell.into();
        if let Ok(CallResult::Success(text)) = router.call(FlowMsg::Listeners, Some(timeout)).await
        {
            out.push(text);
        }
    }
    out
}

/// A running router.
pub type FlowRouterRef = ActorRef<FlowMsg>;

/// Starts this node's router.
pub async fn start_router(args: FlowRouterArgs) -> Result<FlowRouterRef, ractor::SpawnErr> {
    Actor::spawn(None, FlowRouter, args).await.map(|(r, _)| r)
}

/// A 32-octet key derived from the cluster cookie for `label` (HMAC-SHA-256 keyed with the
/// cookie, RFC 2104), so every member derives the same secret without configuring it twice:
/// the flow-token key, which must be shared for a Record-Route flow token written by one node
/// to verify at another.
pub fn derived_key(cookie: &str, label: &str) -> [u8; 32] {
    use hmac::{Hmac, Mac};
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(cookie.as_bytes())
        .unwrap_or_else(|_| <Hmac<sha2::Sha256> as Mac>::new(&Default::default()));
    mac.update(label.as_bytes());
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_keys_depend_on_cookie_and_label() {
        let a = derived_key("secret", "flow-token");
        assert_eq!(a, derived_key("secret", "flow-token"));
        assert_ne!(a, derived_key("secret2", "flow-token"));
        assert_ne!(a, derived_key("secret", "other"));
    }

    #[test]
    fn holder_groups_name_the_incarnation() {
        assert_eq!(holder_group(7), "sipmesh.transport.7");
    }
}
