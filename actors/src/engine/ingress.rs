//! Ingress: every byte the transports read passes here once, on the reader's task.
//!
//! It parses the message, answers what cannot go further (RFC 3261 §21.4.1 400 for a request
//! whose first line and Via parse but whose framing does not; 513 for an oversized request),
//! drops what RFC 3261 says to drop silently (malformed responses, requests with no usable Via),
//! and hands every other message to the shard that owns its transaction.

use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use tokio::sync::mpsc;
use tracing::{debug, trace};

use sipmesh_protocol::message::{Message, StatusCode, response_to};
use sipmesh_protocol::peer::{Origin, Transport};
use sipmesh_protocol::proxy::shard_of_branch;

use crate::transport::{Destination, Inbound, InboundEvent, InboundSink, TransportHandle};

use super::remote::Flows;
use super::shard::ShardInput;

/// The parse-and-dispatch stage between the transports and the shards.
pub(crate) struct Ingress {
    shards: Vec<mpsc::Sender<ShardInput>>,
    /// Responses for requests written here for another node go back to it.
    flows: Arc<Flows>,
    transport: OnceLock<TransportHandle>,
    hasher: std::collections::hash_map::RandomState,
    /// Responses to the node's own requests (media failover re-INVITEs), when media is on.
    own_replies: OnceLock<Arc<crate::media::OwnReplies>>,
}

impl Ingress {
    pub(crate) fn new(shards: Vec<mpsc::Sender<ShardInput>>, flows: Arc<Flows>) -> Self {
        Self {
            shards,
            flows,
            transport: OnceLock::new(),
            hasher: std::collections::hash_map::RandomState::new(),
            own_replies: OnceLock::new(),
        }
    }

    /// Gives the ingress the handle it answers errors through (set once, right after start).
    pub(crate) fn set_transport(&self, handle: TransportHandle) {
        let _ = self.transport.set(handle);
    }

    /// Routes responses to the node's own requests to `replies` (set once, at start).
    pub(crate) fn set_own_replies(&self, replies: Arc<crate::media::OwnReplies>) {
        let _ = self.own_replies.set(replies);
    }

    fn shard_for(&self, msg: &Message) -> usize {
        let n = self.shards.len().max(1);
        let via = msg.top_via().ok();
        let branch = via
            .as_ref()
            .and_then(|v| v.branch)
            .filter(|b| b.starts_with("z9hG4bK"));
        if !msg.is_request()
            && let Some(s) = branch.and_then(shard_of_branch)
        {
            return usize::from(s) % n;
        }
        let mut h = self.hasher.build_hasher();
        match branch {
            Some(b) => b.hash(&mut h),
            // RFC 2543 peers: every request of a transaction shares the Call-ID.
            None => msg.call_id().unwrap_or_default().hash(&mut h),
        }
        usize::try_from(h.finish() % n as u64).unwrap_or(0)
    }

    pub(crate) fn handle(&self, inbound: Inbound) {
        let origin = Origin {
            transport: inbound.transport,
            source: inbound.source,
            local: inbound.local,
            connection: inbound.connection,
        };
        match Message::parse(inbound.data.clone()) {
            Ok(msg) => {
                if self.own_replies.get().is_some_and(|r| r.deliver(&msg)) {
                    return;
                }
                if self.flows.relay_response(&msg, &inbound) {
                    return;
                }
                let shard = self.shard_for(&msg);
                if let Some(tx) = self.shards.get(shard) {
                    match tx.try_send(ShardInput::Message(Box::new((msg, origin)))) {
                        Ok(()) => {}
                        Err(mpsc::error::TrySendError::Full(_)) => {
                            debug!(shard, "shard queue full: message dropped (overload)");
                        }
                        Err(mpsc::error::TrySendError::Closed(_)) => {
                            trace!(shard, "shard stopped: message dropped");
                        }
                    }
                }
            }
            Err(e) => {
                trace!(error = %e, "unparsable message");
                self.answer_unparsable(&inbound.data, &origin, e.status(), &e.reason_phrase());
            }
        }
    }

    /// Answers a request that failed to parse when its start line and Via can still be read;
    /// drops everything else (responses are never answered, §21.4.1 / RFC 4475 §3.1.2.19).
    fn answer_unparsable(&self, data: &Bytes, origin: &Origin, code: StatusCode, reason: &str) {
        let Some(head) = salvage_head(data) else {
            return;
        };
        let Ok(msg) = Message::parse(head) else {
            return;
        };
        if !msg.is_request() || msg.header(&sipmesh_protocol::HeaderName::Via).is_none() {
            return;
        }
        self.reply(&msg, origin, code, reason);
    }

    fn reply(&self, msg: &Message, origin: &Origin, code: StatusCode, reason: &str) {
        let Some(transport) = self.transport.get() else {
            return;
        };
        // RFC 3261 §18.2.2 / RFC 3581; a Via we cannot read (`SIP/7.0/UDP`) gets the answer at
        // the packet's source, as with rport.
        let port = match msg.top_via() {
            Ok(via) if origin.transport == Transport::Udp && via.rport.is_none() => {
                via.port.unwrap_or(5060)
            }
            _ => origin.source.port(),
        };
        let tag = format!("{:016x}", rand::random::<u64>());
        let bytes = response_to(msg, code, reason).to_tag(&tag).build();
        transport.send(
            Destination {
                transport: origin.transport,
                addr: std::net::SocketAddr::new(origin.source.ip(), port),
                connection: origin.connection,
                local: Some(origin.local),
            },
            bytes,
        );
    }
}

/// The header section of `data` with an empty body, so a request whose body or Content-Length
/// is broken can still be answered. `None` when there is no complete header section.
fn salvage_head(data: &Bytes) -> Option<Bytes> {
    let end = memchr::memmem::find(data, b"\r\n\r\n")?;
    let head = data.slice(..end + 2);
    let mut out = Vec::with_capacity(head.len() + 24);
    for (i, line) in head.split(|b| *b == b'\n').enumerate() {
        let l = line.strip_suffix(b"\r").unwrap_or(line);
        if l.is_empty() {
            continue;
        }
        if i == 0 {
            // A Request-Line with another SIP version (RFC 4475 `badvers`) is answered 505 in
            // SIP/2.0: rewrite the version so the rest of the head can be read.
            if let Some(sp) = l.iter().rposition(|b| *b == b' ') {
                let (start, version) = l.split_at(sp + 1);
                if version.starts_with(b"SIP/") && version != b"SIP/2.0" {
                    out.extend_from_slice(start);
                    out.extend_from_slice(b"SIP/2.0\r\n");
                    continue;
                }
            }
        }
        let name = l.split(|b| *b == b':').next().unwrap_or_default();
        let name = name.trim_ascii();
        if name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l") {
            continue;
        }
        out.extend_from_slice(l);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
    Some(Bytes::from(out))
}

impl InboundSink for Arc<Ingress> {
    fn deliver(&self, event: InboundEvent) {
        match event {
            InboundEvent::Message(inbound) => self.handle(inbound),
            InboundEvent::TooLarge {
                partial,
                source,
                local,
                transport,
                connection,
            } => {
                let origin = Origin {
                    transport,
                    source,
                    local,
                    connection,
                };
                if let Some(head) = salvage_head(&partial)
                    && let Ok(msg) = Message::parse(head)
                    && msg.is_request()
                {
                    self.reply(&msg, &origin, StatusCode(513), "Message Too Large");
                }
            }
            InboundEvent::ConnectionClosed { connection, peer } => {
                trace!(?connection, %peer, "connection closed");
                self.flows.connection_closed(connection);
                // Every shard fails its transactions over the connection; one of them (spread
                // by connection number) removes the bindings. Blocking here is not an option
                // (this is a reader task), and a full queue must not lose the event: retry
                // from a task.
                let n = self.shards.len().max(1) as u64;
                let remover = usize::try_from(connection.0 % n).unwrap_or(0);
                for (index, tx) in self.shards.iter().enumerate() {
                    let input = ShardInput::ConnectionClosed {
                        connection,
                        peer,
                        remove_bindings: index == remover,
                    };
                    if let Err(mpsc::error::TrySendError::Full(input)) = tx.try_send(input) {
                        let tx = tx.clone();
                        tokio::spawn(async move {
                            let _ = tx.send(input).await;
                        });
                    }
                }
            }
        }
    }
}
