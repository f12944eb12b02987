//! A transaction shard: a tokio task that drives one sans-IO [`Core`].
//!
//! The loop does only glue: feed inbound messages and store results in, drain the core's outputs
//! to the transport and the registrar actors, and sleep until the core's next deadline. It makes no SIP
//! decision of its own.

use std::net::SocketAddr;
use std::time::{Instant, SystemTime};

use tokio::sync::mpsc;
use tracing::{debug, warn};

use sipmesh_protocol::message::Message;
use sipmesh_protocol::peer::ConnectionId;
use sipmesh_protocol::proxy::{Core, CoreConfig, Listener, Origin, Output, StoreFailure};
use sipmesh_protocol::registrar::{Binding, RegisterOutcome, RegistrarPolicy};

use crate::dialog::Dialogs;
use crate::location::LocationStore;
use crate::media::MediaSessions;
use crate::registrar::{Driver, Registrar};
use crate::transport::{Destination, TransportHandle};

/// Most inbound messages handled before the outputs are flushed.
const BATCH: usize = 64;

/// Longest wait for a host name lookup.
const RESOLVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Input of a shard.
#[derive(Debug)]
pub(crate) enum ShardInput {
    /// A parsed message from the network (boxed: the parsed header index is large, and the
    /// channel's slots are sized for the largest variant).
    Message(Box<(Message, Origin)>),
    /// Stop taking new requests (they get 503); report on `quiescent` once no transaction is
    /// waiting for a final response. The shard keeps answering until [`ShardInput::Stop`].
    Drain {
        /// Gets this shard's number once it is quiescent.
        quiescent: mpsc::UnboundedSender<u8>,
    },
    /// A stream connection closed (every shard gets it): fail the transactions waiting on it
    /// and, in the one shard with `remove_bindings`, remove the flow bindings registered over
    /// it (RFC 5626 §5.4, RFC 7118 §5), at once rather than at their expiry.
    ConnectionClosed {
        /// The connection.
        connection: ConnectionId,
        /// Its peer (a request redialled there fails when the dial fails).
        peer: SocketAddr,
        /// This shard removes its bindings from the store.
        remove_bindings: bool,
    },
    /// The other cluster members' SIP listeners (see `Core::set_cluster_peers`).
    ClusterPeers(Vec<Listener>),
    /// A connection held by another node closed (see `Core::handle_flow_unreachable`).
    FlowUnreachable(ConnectionId),
    /// A request of the node's own (the BYEs ending a timed-out call, issue 6), sent in its
    /// own client transaction (`Core::send_request`: retransmitted over UDP until answered).
    /// Its branch must name this shard (`sipmesh_protocol::proxy::origin_branch`).
    SendRequest(Box<(sipmesh_protocol::peer::Destination, bytes::Bytes)>),
    /// Exit now.
    Stop,
}

/// What a shard hands its core's outputs to: the I/O side of every output kind.
pub(crate) struct ShardServices<S: LocationStore> {
    /// Sends on this node's sockets and connections.
    pub(crate) transport: TransportHandle,
    /// REGISTERs and lookups (AOR actors over the location store).
    pub(crate) registrar: Registrar<S>,
    /// The registrar rules (expiry bounds, contact limits).
    pub(crate) policy: RegistrarPolicy,
    /// Dialog actors and their store.
    pub(crate) dialogs: Dialogs,
    /// Connections held by other cluster members.
    pub(crate) flows: std::sync::Arc<super::remote::Flows>,
    /// Media sessions through rtpengine, with the profiles the core applies (None: SDP passes
    /// untouched).
    pub(crate) media: Option<(MediaSessions, sipmesh_protocol::media::MediaProfiles)>,
}

/// Runs a shard until it is told to stop (or every sender is gone).
pub(crate) async fn run<S: LocationStore>(
    config: CoreConfig,
    mut rx: mpsc::Receiver<ShardInput>,
    mut services: ShardServices<S>,
) {
    let shard = config.shard;
    let mut core = Core::new(config, Instant::now());
    if let Some((_, profiles)) = services.media.as_mut() {
        core.enable_media(std::mem::take(profiles));
    }
    let registrar = services.registrar.clone();
    // Issue 6: requests of a side whose CSeq space the proxy used (media failover) are raised.
    let shift = services.media.as_ref().map(|(m, _)| m.clone());
    let shift = move |input: ShardInput| match (input, &shift) {
        (ShardInput::Message(m), Some(media)) if m.0.is_request() => {
            let (msg, origin) = *m;
            ShardInput::Message(Box::new((media.shift_request(msg), origin)))
        }
        (input, _) => input,
    };
    let mut drain: Option<mpsc::UnboundedSender<u8>> = None;
    let mut closed = Vec::new();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<StoreDone>();
    // Registrar calls this task drives itself (an idle AOR actor's job over Redis): their
    // answers land in `done` like the actors' do.
    let mut driver = Driver::new();
    loop {
        if drain.is_some() && core.is_quiescent() {
            debug!(shard, "drained");
            if let Some(tx) = drain.take() {
                let _ = tx.send(shard);
            }
        }
        let deadline = core.poll_timeout();
        let sleep = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            input = rx.recv() => {
                let Some(input) = input else { return };
                if handle(&mut core, shift(input), &mut drain, &mut closed) == Flow::Stop {
                    return;
                }
                for _ in 1..BATCH {
                    match rx.try_recv() {
                        Ok(input) => {
                            if handle(&mut core, shift(input), &mut drain, &mut closed) == Flow::Stop {
                                return;
                            }
                        }
                        Err(_) => break,
                    }
                }
            }
            () = sleep => core.handle_timeout(Instant::now()),
            () = driver.advance(), if !driver.is_empty() => {}
            Some(done) = done_rx.recv() => {
                apply(&mut core, done);
                while let Ok(done) = done_rx.try_recv() {
                    apply(&mut core, done);
                }
            }
        }
        // Closed flows first: a lookup in the same batch must not pick their bindings.
        for connection in closed.drain(..) {
            match registrar.connection_closed(connection).await {
                Ok(0) => {}
                Ok(n) => debug!(%connection, removed = n, "flow closed: its bindings removed"),
                Err(e) => {
                    warn!(%connection, error = %e, "removing the bindings of a closed flow failed: queued for a retry")
                }
            }
        }
        flush(&mut core, &services, &done_tx, &mut driver);
        // Requests the registrar answered on this task (an idle AOR actor over the memory store)
        // are already in `done`: feed them back now, so their answers leave in this pass.
        while let Ok(done) = done_rx.try_recv() {
            apply(&mut core, done);
            while let Ok(done) = done_rx.try_recv() {
                apply(&mut core, done);
            }
            flush(&mut core, &services, &done_tx, &mut driver);
        }
    }
}

/// The result of a store operation that ran on its own task.
#[derive(Debug)]
enum StoreDone {
    Register {
        token: u64,
        result: Result<RegisterOutcome, StoreFailure>,
    },
    Lookup {
        token: u64,
        result: Result<Vec<Binding>, StoreFailure>,
    },
    Resolve {
        token: u64,
        addresses: Vec<SocketAddr>,
    },
    DialogStored {
        token: u64,
        stored: bool,
    },
    /// A connection held by another node could not be reached.
    FlowUnreachable {
        connection: ConnectionId,
    },
    /// rtpengine's answer to a parked offer/answer.
    Media {
        token: u64,
        result: Result<bytes::Bytes, sipmesh_protocol::proxy::MediaFailure>,
    },
}

fn apply(core: &mut Core, done: StoreDone) {
    match done {
        StoreDone::Register { token, result } => {
            core.handle_register_result(Instant::now(), SystemTime::now(), token, result);
        }
        StoreDone::Lookup { token, result } => {
            core.handle_lookup_result(Instant::now(), token, result);
        }
        StoreDone::Resolve { token, addresses } => {
            core.handle_resolve_result(Instant::now(), token, addresses);
        }
        StoreDone::DialogStored { token, stored } => {
            core.handle_dialog_stored(Instant::now(), token, stored);
        }
        StoreDone::FlowUnreachable { connection } => {
            core.handle_flow_unreachable(Instant::now(), connection);
        }
        StoreDone::Media { token, result } => {
            core.handle_media_result(Instant::now(), token, result);
        }
    }
}

/// Whether the shard goes on after an input.
#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    Stop,
}

fn handle(
    core: &mut Core,
    input: ShardInput,
    drain: &mut Option<mpsc::UnboundedSender<u8>>,
    closed: &mut Vec<ConnectionId>,
) -> Flow {
    match input {
        ShardInput::Message(m) => {
            let (msg, origin) = *m;
            // One span per message, carrying the transaction's keys (STYLE: spans at the
            // boundaries with protocol fields); everything the core logs nests under it.
            let span = tracing::debug_span!(
                "sip",
                call_id = msg.call_id().unwrap_or_default(),
                branch = msg
                    .top_via()
                    .ok()
                    .and_then(|v| v.branch)
                    .unwrap_or_default(),
                cseq = msg.cseq().map(|c| c.seq).unwrap_or_default(),
                method = msg.method().map(|m| m.as_str()).unwrap_or_default(),
                status = msg.status().map(|s| s.0).unwrap_or_default(),
            );
            let _entered = span.enter();
            core.handle_message(Instant::now(), msg, origin);
        }
        ShardInput::Drain { quiescent } => {
            core.begin_shutdown();
            *drain = Some(quiescent);
        }
        ShardInput::ConnectionClosed {
            connection,
            peer,
            remove_bindings,
        } => {
            core.handle_connection_closed(Instant::now(), connection);
            core.handle_redial_closed(Instant::now(), peer);
            if remove_bindings {
                closed.push(connection);
            }
        }
        ShardInput::ClusterPeers(peers) => core.set_cluster_peers(peers),
        ShardInput::FlowUnreachable(connection) => {
            core.handle_flow_unreachable(Instant::now(), connection);
        }
        ShardInput::SendRequest(request) => {
            let (destination, payload) = *request;
            if let Err(e) = core.send_request(Instant::now(), destination, payload) {
                warn!(error = %e, "request of our own not sent");
            }
        }
        ShardInput::Stop => return Flow::Stop,
    }
    Flow::Continue
}

/// Drains the core's outputs. REGISTERs and lookups go to the AOR's actor, whose answer comes
/// back through `done`, so a slow store never stalls this shard.
fn flush<S: LocationStore>(
    core: &mut Core,
    services: &ShardServices<S>,
    done: &mpsc::UnboundedSender<StoreDone>,
    driver: &mut Driver,
) {
    let ShardServices {
        transport,
        registrar,
        policy,
        dialogs,
        flows,
        media,
    } = services;
    let policy = *policy;
    let media = media.as_ref().map(|(sessions, _)| sessions);
    while let Some(out) = core.poll_output() {
        match out {
            // rtpengine work runs on the call's session task; the result comes back as a
            // `StoreDone::Media`, so a slow or dead instance never stalls this shard.
            Output::Media { token, request } => {
                let done = done.clone();
                let reply = move |result| {
                    if let Some(token) = token {
                        let _ = done.send(StoreDone::Media { token, result });
                    }
                };
                match media {
                    Some(m) => m.request(request, reply),
                    None => reply(Err(sipmesh_protocol::proxy::MediaFailure::Unavailable)),
                }
            }
            // The dialog's actor keeps the record; routing does not wait for it.
            Output::Dialog(ev) => dialogs.handle(ev),
            // A confirmed dialog: its 2xx is held in the core until the record is stored.
            Output::StoreDialog { token, event } => {
                let done = done.clone();
                // Issue 6: the call's rtpengine instance goes into the dialog record, once the
                // record exists, so that any node can reach it.
                // With it, the call's last offer and answer (a node adopting the call can
                // then move it to another instance).
                let media_session = media.and_then(|m| {
                    let id = event.id().clone();
                    let tags = [id.caller_tag.as_str(), id.callee_tag.as_str()];
                    let negotiation = m.negotiation_of(&id.call_id, &tags);
                    m.instance_of(&id.call_id, &tags)
                        .map(|addr| (id, format!("udp:{addr}"), negotiation, dialogs.clone()))
                });
                // Once stored, the record names the call's instance: off the pending log.
                let confirmed = media.map(|m| (m.clone(), event.id().call_id.clone()));
                dialogs.handle_acked(event, move |stored| {
                    let _ = done.send(StoreDone::DialogStored { token, stored });
                    if let Some((m, call_id)) = confirmed {
                        m.confirmed(&call_id);
                    }
                    if let Some((id, value, negotiation, dialogs)) = media_session {
                        dialogs.set_media(&id, Some(value), negotiation);
                    }
                });
            }
            Output::Transmit(t) => {
                let d = t.destination;
                let payload = match media {
                    Some(m) => m.shift_response(t.payload),
                    None => t.payload,
                };
                transport.send(
                    Destination {
                        transport: d.transport,
                        addr: d.addr,
                        connection: d.connection,
                        local: d.local,
                    },
                    payload,
                );
            }
            Output::RemoteTransmit { holder, transmit } => {
                let done = done.clone();
                flows.send_remote(holder, transmit, move |connection| {
                    let _ = done.send(StoreDone::FlowUnreachable { connection });
                });
            }
            Output::Register { token, request } => {
                let done = done.clone();
                registrar.register_driven(request, policy, driver, move |result| {
                    let _ = done.send(StoreDone::Register { token, result });
                });
            }
            // Host names (relaying, Route values): the system resolver (A/AAAA; /etc/hosts
            // included) on a blocking thread, bounded so a dead DNS server cannot hold a
            // transaction past its own timers.
            Output::Resolve { token, host, port } => {
                let done = done.clone();
                tokio::spawn(async move {
                    let lookup = tokio::net::lookup_host((host.as_str(), port));
                    let addresses = match tokio::time::timeout(RESOLVE_TIMEOUT, lookup).await {
                        Ok(Ok(found)) => found.collect(),
                        Ok(Err(e)) => {
                            debug!(%host, error = %e, "host name lookup failed");
                            Vec::new()
                        }
                        Err(_) => {
                            warn!(%host, ?RESOLVE_TIMEOUT, "host name lookup timed out");
                            Vec::new()
                        }
                    };
                    let _ = done.send(StoreDone::Resolve { token, addresses });
                });
            }
            Output::Lookup { token, aor } => {
                let done = done.clone();
                registrar.lookup_driven(aor, driver, move |result| {
                    let _ = done.send(StoreDone::Lookup { token, result });
                });
            }
        }
    }
}
