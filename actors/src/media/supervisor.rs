//! [`MediaSessions`]: the supervisor of the session tasks, one per Call-ID.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use sipmesh_protocol::ng::{CallRef, Request};
use sipmesh_protocol::proxy::MediaFailure;
use tokio::sync::mpsc;
use tracing::debug;

use super::pending::PendingMedia;
use super::pool::{InstanceSpec, MediaConfig, RtpenginePool};
use super::session::{self, Negotiated, Reply, SessionArgs, SessionMsg, TimedOut};
use crate::dialog::DialogStore;
use crate::dialog::store::load_either;
use crate::rtpengine::NgError;
use sipmesh_protocol::dialog::DialogId;

/// A live session: its queue and the instance it is placed on.
#[derive(Debug)]
pub(super) struct Entry {
    pub(super) tx: mpsc::UnboundedSender<SessionMsg>,
    /// Shared with the task, which may move a call whose first offer failed.
    pub(super) instance: Arc<AtomicUsize>,
    /// The call's last offer and answer, kept by the task (for a failover).
    pub(super) negotiated: Arc<Mutex<Negotiated>>,
}

pub(super) struct Inner {
    pub(super) pool: Arc<RtpenginePool>,
    pub(super) config: MediaConfig,
    sessions: Mutex<HashMap<String, Entry>>,
    /// Dialog records, to find the instance of a call set up elsewhere (`media_session`).
    pub(super) store: Option<Arc<dyn DialogStore>>,
    timeouts: mpsc::UnboundedSender<TimedOut>,
    /// This node's log of offered, unconfirmed calls in Redis (clustered nodes only).
    pub(super) pending: std::sync::OnceLock<PendingMedia>,
    /// CSeq offsets of the dialogs this node sent re-INVITEs in (media failover).
    pub(super) shifts: std::sync::RwLock<sipmesh_protocol::media::CseqShifts>,
    /// Whether `shifts` has any entry (the shards' fast path).
    pub(super) any_shift: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaSessions")
            .field("instances", &self.pool.len())
            .field("store", &self.store.as_ref().map(|s| s.kind()))
            .finish_non_exhaustive()
    }
}

/// The media sessions of a node (cheap to clone).
#[derive(Debug, Clone)]
pub struct MediaSessions {
    pub(super) inner: Arc<Inner>,
}

impl MediaSessions {
    /// Opens the pool; the receiver gets every call whose media timed out.
    pub async fn start(
        config: MediaConfig,
        store: Option<Arc<dyn DialogStore>>,
    ) -> Result<(Self, mpsc::UnboundedReceiver<TimedOut>), NgError> {
        let pool = RtpenginePool::start(&config).await?;
        let (timeouts, rx) = mpsc::unbounded_channel();
        Ok((
            Self {
                inner: Arc::new(Inner {
                    pool,
                    config,
                    sessions: Mutex::new(HashMap::new()),
                    store,
                    timeouts,
                    pending: std::sync::OnceLock::new(),
                    shifts: std::sync::RwLock::default(),
                    any_shift: std::sync::atomic::AtomicBool::new(false),
                }),
            },
            rx,
        ))
    }

    /// The instances and their health.
    pub fn health(&self) -> Vec<(SocketAddr, bool)> {
        self.inner.pool.health()
    }

    /// Number of live sessions.
    pub fn live(&self) -> usize {
        self.lock().len()
    }

    /// The instance a live call is placed on.
    pub fn instance_of(&self, call_id: &str) -> Option<SocketAddr> {
        let index = self
            .lock()
            .get(call_id)
            .map(|e| e.instance.load(Ordering::Relaxed))?;
        self.inner.pool.get(index).map(|i| i.spec.addr)
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.inner
            .sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs `request` in its call's session; `done` gets the SDP of an offer or answer (it is
    /// not called for a delete). Never blocks: the work runs on the session's task.
    pub fn request(
        &self,
        request: Request,
        done: impl FnOnce(Result<Bytes, MediaFailure>) + Send + 'static,
    ) {
        self.dispatch(request, Reply::new(done), true);
    }

    fn dispatch(&self, request: Request, reply: Reply, look_up: bool) {
        let call_id = match &request {
            Request::Offer(r) | Request::Answer(r) => r.call.call_id.clone(),
            Request::Delete(c) | Request::Query(c) => c.call_id.clone(),
            Request::Ping | Request::List { .. } | Request::Statistics => {
                reply.send(Err(MediaFailure::Refused("not a call request".into())));
                return;
            }
        };
        if let Request::Delete(call) = request {
            self.delete(&call_id, call);
            reply.send(Ok(Bytes::new()));
            return;
        }
        let mut msg = SessionMsg { request, reply };
        let mut sessions = self.lock();
        let instance = match sessions.get(&call_id) {
            Some(e) => match e.tx.send(msg) {
                Ok(()) => return,
                // The task died (a panic): restart it on the call's instance.
                Err(mpsc::error::SendError(back)) => {
                    debug!(%call_id, "media session restarted");
                    msg = back;
                    e.instance.load(Ordering::Relaxed)
                }
            },
            None if look_up && self.recorded_elsewhere(&msg.request) => {
                drop(sessions);
                self.look_up_then_dispatch(msg.request, msg.reply);
                return;
            }
            None => match self.inner.pool.pick() {
                Some(i) => i,
                None => {
                    drop(sessions);
                    msg.reply.send(Err(MediaFailure::Unavailable));
                    return;
                }
            },
        };
        let initial_offer = matches!(&msg.request, Request::Offer(r) if r.call.to_tag.is_none());
        let entry = self.spawn(&call_id, Arc::new(AtomicUsize::new(instance)), None);
        let _ = entry.tx.send(msg);
        if initial_offer {
            self.pending_add(&call_id, instance);
        }
        sessions.insert(call_id, entry);
    }

    /// A request inside a dialog (it has both tags) for a call with no session here: its
    /// instance may be recorded in the dialog record by the node that set it up.
    fn recorded_elsewhere(&self, request: &Request) -> bool {
        let (Request::Offer(r) | Request::Answer(r)) = request else {
            return false;
        };
        self.inner.store.is_some() && r.call.from_tag.is_some() && r.call.to_tag.is_some()
    }

    fn look_up_then_dispatch(&self, request: Request, reply: Reply) {
        let (Request::Offer(r) | Request::Answer(r)) = &request else {
            return;
        };
        let (Some(store), Some(from), Some(to)) = (
            self.inner.store.clone(),
            r.call.from_tag.clone(),
            r.call.to_tag.clone(),
        ) else {
            return;
        };
        let id = DialogId::new(r.call.call_id.clone(), from, to);
        let this = self.clone();
        tokio::spawn(async move {
            let recorded = match load_either(store.as_ref(), &id).await {
                Ok(Some(d)) => d.media_session,
                Ok(None) => None,
                Err(e) => {
                    debug!(error = %e, "dialog record for the media session unreadable");
                    None
                }
            };
            let addr = recorded
                .as_deref()
                .and_then(|m| InstanceSpec::parse(m).ok())
                .map(|s| s.addr);
            if let Some(addr) = addr {
                debug!(call_id = %id.call_id, %addr, "media session adopted from the dialog record");
                this.adopt(&id.call_id, addr);
            }
            this.dispatch(request, reply, false);
        });
    }

    pub(super) fn spawn(
        &self,
        call_id: &str,
        instance: Arc<AtomicUsize>,
        adopted: Option<(String, String)>,
    ) -> Entry {
        let (tx, rx) = mpsc::unbounded_channel();
        let negotiated = Arc::new(Mutex::new(Negotiated::default()));
        let args = SessionArgs {
            call_id: call_id.to_owned(),
            instance: instance.clone(),
            pool: self.inner.pool.clone(),
            media_timeout: self.inner.config.media_timeout,
            poll_interval: self.inner.config.poll_interval,
            timeouts: self.inner.timeouts.clone(),
            adopted,
            negotiated: negotiated.clone(),
        };
        tokio::spawn(session::run(args, rx));
        Entry {
            tx,
            instance,
            negotiated,
        }
    }

    /// Deletes a call: through its session when it has one, else on every instance (the
    /// call may have been set up by another node or before a restart).
    fn delete(&self, call_id: &str, call: CallRef) {
        self.pending_remove(call_id);
        self.forget_shifts_later(call_id);
        let entry = self.lock().remove(call_id);
        if let Some(e) = entry {
            let msg = SessionMsg {
                request: Request::Delete(call.clone()),
                reply: Reply::none(),
            };
            if e.tx.send(msg).is_ok() {
                return;
            }
        }
        let pool = self.inner.pool.clone();
        tokio::spawn(async move {
            for index in 0..pool.len() {
                if let Some(i) = pool.get(index) {
                    let _ = i.client.request(Request::Delete(call.clone())).await;
                }
            }
        });
    }

    /// Places a call known from elsewhere (the dialog record) on the instance at `addr`.
    pub fn adopt(&self, call_id: &str, addr: SocketAddr) {
        let Some(instance) = self.inner.pool.index_of(addr) else {
            return;
        };
        let mut sessions = self.lock();
        if sessions.contains_key(call_id) {
            return;
        }
        let entry = self.spawn(call_id, Arc::new(AtomicUsize::new(instance)), None);
        sessions.insert(call_id.to_owned(), entry);
    }
}
