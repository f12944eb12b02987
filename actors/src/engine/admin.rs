//! What an operator (or a test) can see and do in a running engine: the status behind the
//! node's admin endpoint, and fault-injection hooks for tests.
//!
//! The hooks (panicking an AOR, dialog or connection actor on purpose) exist so that the
//! acceptance tests can prove the supervisors restart a failed actor from the store (or, for a
//! connection, close it and only it); the node only exposes them
//! when started with `--test-hooks`.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use serde::Serialize;
use thiserror::Error;

use sipmesh_protocol::dialog::DialogId;
use sipmesh_protocol::registrar::Aor;

use crate::dialog::Dialogs;
use crate::location::{LocationStore, StoreError, StoreStats};
use crate::registrar::Registrar;
use crate::transport::{ConnectionId, Transport, TransportHandle};

/// A boxed future returning the location store's sizes.
type StatsFuture = Pin<Box<dyn Future<Output = Result<StoreStats, StoreError>> + Send>>;

/// Reads the location store's sizes, whatever the store type.
pub(crate) type StoreStatsFn = Arc<dyn Fn() -> StatsFuture + Send + Sync>;

/// A boxed future of a hook's result.
type HookFuture = Pin<Box<dyn Future<Output = Result<(), HookError>> + Send>>;

/// The registrar actors as the admin endpoint sees them, whatever the store type.
#[derive(Clone)]
pub(crate) struct RegistrarHooks {
    /// Makes an AOR's actor panic.
    panic: Arc<dyn Fn(Aor) -> HookFuture + Send + Sync>,
    /// Stops every AOR actor.
    shutdown: Arc<dyn Fn() + Send + Sync>,
    /// Counts the live AOR actors.
    live: Arc<dyn Fn() -> usize + Send + Sync>,
}

impl RegistrarHooks {
    pub(crate) fn new<S: LocationStore>(registrar: Registrar<S>) -> Self {
        let stopper = registrar.clone();
        let counter = registrar.clone();
        Self {
            panic: Arc::new(move |aor| {
                let registrar = registrar.clone();
                Box::pin(async move { registrar.inject_panic(&aor).await })
            }),
            shutdown: Arc::new(move || stopper.shutdown()),
            live: Arc::new(move || counter.live_actors()),
        }
    }

    /// Stops every AOR actor.
    pub(crate) fn shutdown(&self) {
        (self.shutdown)();
    }
}

/// An actor a test can make panic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookTarget {
    /// The actor of this address-of-record (`sip:user@domain`).
    Aor(String),
    /// The actor of this dialog (`Call-ID;from-tag;to-tag`, see the dialog module).
    Dialog(String),
    /// The actor of a stream connection: its number (`17`), or `transport:peer` for the
    /// newest connection of that transport to that peer (`tcp:127.0.0.1:5070`,
    /// `wss:[::1]:40000`). The connection is closed, not restarted.
    Connection(String),
}

/// Why a hook could not run.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HookError {
    /// No live actor (and no stored state) for that key.
    #[error("no actor for {0}")]
    NotFound(String),
    /// The key is not well formed.
    #[error("bad key: {0}")]
    BadKey(String),
    /// This engine has no actor of that kind.
    #[error("no {0} actors in this engine")]
    Unsupported(&'static str),
}

/// The engine's state as the admin endpoint shows it.
#[derive(Debug, Clone, Serialize)]
pub struct EngineStatus {
    /// Listening transports and addresses (`udp:127.0.0.1:5060`, ...).
    pub listeners: Vec<String>,
    /// Open stream connections (TCP, TLS, WS and WSS together).
    pub connections: usize,
    /// The location store's backend (`memory` or `redis`).
    pub store: &'static str,
    /// AORs with at least one binding, or `None` when the store did not answer.
    pub aors: Option<usize>,
    /// Bindings over all AORs, or `None` when the store did not answer.
    pub bindings: Option<usize>,
    /// The store's error when it did not answer.
    pub store_error: Option<String>,
    /// Live dialog actors.
    pub dialogs: usize,
    /// Live AOR actors (AORs with recent activity, not all registered ones).
    pub aor_actors: usize,
    /// Live media sessions (issue 6), when media is relayed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media_sessions: Option<usize>,
    /// The rtpengine instances and their health, when media is relayed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rtpengine: Vec<RtpengineStatus>,
}

/// The actors this engine runs now, per kind (cheap: no store round trip).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LocalCounts {
    /// Live AOR actors.
    pub aor_actors: usize,
    /// Live dialog actors.
    pub dialogs: usize,
    /// Live media sessions (0 when media is not relayed).
    pub media_sessions: usize,
    /// Open stream connections (TCP, TLS, WS and WSS), each run by a connection actor.
    pub connections: usize,
}

/// One rtpengine instance in [`EngineStatus`].
#[derive(Debug, Clone, Serialize)]
pub struct RtpengineStatus {
    /// Its ng address.
    pub addr: String,
    /// Whether it answered its last ping.
    pub healthy: bool,
}

/// A cloneable view of a running engine for the admin endpoint.
#[derive(Clone)]
pub struct EngineAdmin {
    pub(crate) transport: TransportHandle,
    pub(crate) store_kind: &'static str,
    pub(crate) store_stats: StoreStatsFn,
    pub(crate) dialogs: Dialogs,
    pub(crate) registrar: RegistrarHooks,
    pub(crate) media: Option<crate::media::MediaSessions>,
}

impl std::fmt::Debug for EngineAdmin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineAdmin")
            .field("store_kind", &self.store_kind)
            .finish_non_exhaustive()
    }
}

impl EngineAdmin {
    /// The current status.
    pub async fn status(&self) -> EngineStatus {
        let stats = (self.store_stats)().await;
        EngineStatus {
            listeners: self
                .transport
                .local_addrs()
                .iter()
                .map(|(kind, addr)| format!("{}:{addr}", kind.to_string().to_ascii_lowercase()))
                .collect(),
            connections: self.transport.connection_count(),
            store: self.store_kind,
            aors: stats.as_ref().ok().map(|s| s.aors),
            bindings: stats.as_ref().ok().map(|s| s.bindings),
            store_error: stats.err().map(|e| e.to_string()),
            dialogs: self.dialogs.live(),
            aor_actors: (self.registrar.live)(),
            media_sessions: self.media.as_ref().map(crate::media::MediaSessions::live),
            rtpengine: self
                .media
                .as_ref()
                .map(|m| {
                    m.health()
                        .into_iter()
                        .map(|(addr, healthy)| RtpengineStatus {
                            addr: addr.to_string(),
                            healthy,
                        })
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// The actors running now, per kind.
    pub fn local_counts(&self) -> LocalCounts {
        LocalCounts {
            aor_actors: (self.registrar.live)(),
            dialogs: self.dialogs.live(),
            media_sessions: self
                .media
                .as_ref()
                .map_or(0, crate::media::MediaSessions::live),
            connections: self.transport.connection_count(),
        }
    }

    /// Makes the actor named by `target` panic (test hook). Returns once the panic was
    /// delivered; the supervisor restarts the actor from the store.
    pub async fn inject_panic(&self, target: HookTarget) -> Result<(), HookError> {
        match target {
            HookTarget::Aor(aor) => {
                let key = Aor::from_uri(aor.as_bytes())
                    .map_err(|e| HookError::BadKey(format!("{aor}: {e}")))?;
                (self.registrar.panic)(key).await
            }
            HookTarget::Dialog(key) => {
                let id = DialogId::parse_key(&key).map_err(|e| HookError::BadKey(e.to_string()))?;
                self.dialogs
                    .inject_panic(&id)
                    .await
                    .map_err(|_| HookError::NotFound(key))
            }
            HookTarget::Connection(key) => {
                let id = self.connection_by_key(&key)?;
                if self.transport.inject_connection_panic(id) {
                    Ok(())
                } else {
                    Err(HookError::NotFound(key))
                }
            }
        }
    }

    /// Resolves a [`HookTarget::Connection`] key.
    fn connection_by_key(&self, key: &str) -> Result<ConnectionId, HookError> {
        if let Ok(n) = key.parse::<u64>() {
            return Ok(ConnectionId(n));
        }
        let bad = || HookError::BadKey(format!("{key}: expected a number or transport:ip:port"));
        let (transport, peer) = key.split_once(':').ok_or_else(bad)?;
        let transport = Transport::from_token(transport).ok_or_else(bad)?;
        let peer: SocketAddr = peer.parse().map_err(|_| bad())?;
        self.transport
            .connection_to(transport, peer)
            .ok_or_else(|| HookError::NotFound(key.to_owned()))
    }
}
