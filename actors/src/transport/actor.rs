//! One actor per stream connection (TCP, TLS, WS, WSS; accepted or opened by us): the shell
//! that owns the connection's lifecycle.
//!
//! - **Start**: the connection is registered first (synchronously, so that messages for an
//!   outgoing connection can be queued before it is up); the actor attaches itself to the
//!   registry entry in `pre_start` and spawns the connection's I/O future (reader and writer,
//!   `tcp/connection.rs` or `ws/connection.rs`) as a task of its own. A ractor handler must not
//!   block on socket reads, and sends keep their direct queue to the writer: the actor is not
//!   on the message path at all.
//! - **Idle timer**: one timer, re-armed with a generation number (a stale firing is ignored).
//!   When it fires the actor looks at the connection's [`Activity`]: idle for the whole
//!   timeout, it asks the I/O to close ([`CloseReason::Idle`]); otherwise it re-arms for the
//!   rest of the timeout. So an idle connection costs one timer firing per timeout, and a busy
//!   one no timer work per message.
//! - **End**: when the I/O future returns, the actor stops and `post_stop` unregisters the
//!   connection and delivers `ConnectionClosed` (the engine then removes its flow bindings,
//!   RFC 5626 §5.4, and fails the transactions over it).
//! - **Failure**: a panic in the actor, or in its I/O task (caught there and reported as
//!   [`ConnMsg::IoEnded`] with the panic), fails the actor; its
//!   [`ConnectionSupervisor`](super::supervisor::ConnectionSupervisor) then closes the
//!   connection the same way. A connection cannot be restarted: its socket is gone.

use std::any::Any;
use std::future::Future;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use ractor::concurrency::JoinHandle;
use ractor::{Actor, ActorProcessingErr, ActorRef, MessagingErr};
use tokio::time::Instant;
use tracing::{debug, warn};

use super::activity::Activity;
use super::tcp::{CloseReason, TcpShared};
use super::{ConnectionId, Transport};

/// A connection's reader and writer, run as one task until the connection ends.
pub(crate) type IoFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Messages of a [`ConnectionActor`].
#[derive(Debug)]
pub(crate) enum ConnMsg {
    /// The idle timer of this generation fired.
    IdleCheck(u64),
    /// The I/O task ended: normally (`None`), or by a panic (its message).
    IoEnded(Option<String>),
    /// Test hook: panic now (the supervisor closes the connection).
    Panic,
}

// ractor's `cluster` feature (for ractor_cluster) drops the blanket impl: local-only messages
// opt in explicitly.
impl ractor::Message for ConnMsg {}

/// Why a connection actor failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnActorError {
    /// The connection was unregistered before its actor started.
    #[error("connection {0} is not registered")]
    NotRegistered(ConnectionId),
    /// The connection's I/O task panicked.
    #[error("connection I/O task panicked: {0}")]
    IoPanicked(String),
}

/// Start-up arguments of a [`ConnectionActor`].
pub(crate) struct ConnArgs {
    shared: Arc<TcpShared>,
    transport: Transport,
    id: ConnectionId,
    peer: SocketAddr,
    activity: Arc<Activity>,
    io: IoFuture,
}

/// The actor's state: the connection's identity and its one timer.
pub(crate) struct ConnState {
    shared: Arc<TcpShared>,
    transport: Transport,
    id: ConnectionId,
    peer: SocketAddr,
    activity: Arc<Activity>,
    /// Generation of the armed idle timer; a firing with another number is stale.
    generation: u64,
    timer: Option<JoinHandle<Result<(), MessagingErr<ConnMsg>>>>,
}

/// The connection actor (stateless handler; the state is [`ConnState`]).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ConnectionActor;

/// Starts the actor of a registered connection, linked to the transport's supervisor. If it
/// cannot start, `io` is dropped unrun and the connection is reported closed.
pub(crate) async fn spawn(
    shared: Arc<TcpShared>,
    transport: Transport,
    id: ConnectionId,
    peer: SocketAddr,
    activity: Arc<Activity>,
    io: IoFuture,
) {
    let supervisor = shared.supervisor.get().cloned();
    let args = ConnArgs {
        shared: Arc::clone(&shared),
        transport,
        id,
        peer,
        activity,
        io,
    };
    let spawned = match supervisor {
        Some(supervisor) => Actor::spawn_linked(None, ConnectionActor, args, supervisor).await,
        None => Actor::spawn(None, ConnectionActor, args).await,
    };
    if let Err(e) = spawned {
        warn!(connection = %id, %peer, error = %e, "cannot start the connection actor; closing");
        shared.closed(id, peer);
    }
}

impl ConnectionActor {
    /// Arms the idle timer to fire `after` from now, as a new generation.
    fn arm(myself: &ActorRef<ConnMsg>, state: &mut ConnState, after: Duration) {
        state.generation = state.generation.wrapping_add(1);
        let generation = state.generation;
        if let Some(old) = state.timer.take() {
            old.abort();
        }
        state.timer = Some(myself.send_after(after, move || ConnMsg::IdleCheck(generation)));
    }

    /// The idle timer fired: close an idle connection, else wait for the rest of the timeout.
    fn idle_check(myself: &ActorRef<ConnMsg>, state: &mut ConnState) {
        let idle = state.shared.settings.idle_timeout;
        let deadline = state.activity.last() + idle;
        let now = Instant::now();
        if deadline <= now {
            debug!(connection = %state.id, peer = %state.peer, "idle timeout");
            state.timer = None;
            state.shared.close_for(state.id, CloseReason::Idle);
        } else {
            Self::arm(myself, state, deadline - now);
        }
    }
}

impl Actor for ConnectionActor {
    type Msg = ConnMsg;
    type State = ConnState;
    type Arguments = ConnArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<ConnMsg>,
        args: ConnArgs,
    ) -> Result<ConnState, ActorProcessingErr> {
        if !args.shared.attach(args.id, myself.clone()) {
            return Err(ConnActorError::NotRegistered(args.id).into());
        }
        let me = myself.clone();
        let io = args.io;
        tokio::spawn(async move {
            let panicked = AssertUnwindSafe(io)
                .catch_unwind()
                .await
                .err()
                .map(|p| panic_message(p.as_ref()));
            // The actor may be gone already (it failed): nothing left to tell.
            let _ = me.cast(ConnMsg::IoEnded(panicked));
        });
        let mut state = ConnState {
            shared: args.shared,
            transport: args.transport,
            id: args.id,
            peer: args.peer,
            activity: args.activity,
            generation: 0,
            timer: None,
        };
        let idle = state.shared.settings.idle_timeout;
        Self::arm(&myself, &mut state, idle);
        debug!(connection = %state.id, peer = %state.peer, transport = %state.transport, "connection actor started");
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<ConnMsg>,
        msg: ConnMsg,
        state: &mut ConnState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ConnMsg::IdleCheck(generation) if generation == state.generation => {
                Self::idle_check(&myself, state);
            }
            ConnMsg::IdleCheck(_) => {}
            ConnMsg::IoEnded(None) => myself.stop(None),
            ConnMsg::IoEnded(Some(panic)) => {
                return Err(ConnActorError::IoPanicked(panic).into());
            }
            ConnMsg::Panic => {
                warn!(connection = %state.id, "test hook: connection actor panics");
                panic!("test hook: injected connection actor panic");
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<ConnMsg>,
        state: &mut ConnState,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(timer) = state.timer.take() {
            timer.abort();
        }
        state.shared.closed(state.id, state.peer);
        Ok(())
    }
}

/// The text of a panic payload (`panic!` with a literal or a formatted message).
fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_owned())
}

#[cfg(test)]
mod tests;
