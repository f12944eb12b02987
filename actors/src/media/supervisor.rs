//! [`MediaSessions`]: the supervisor of the session tasks, one per call leg pair
//! ([`SessionKey`]: Call-ID + the caller's From tag, RFC 3261 §12 and issue 6).
//!
//! Two calls that share a Call-ID but not a From tag (RFC 3261 §8.1.1.4 allows it, e.g. a
//! UA reusing Call-IDs, or a B2BUA upstream) are two sessions: each has its own task and its
//! own instance. A request finds its session by its From tag, or by its To tag (a re-INVITE
//! or BYE from the callee carries the caller's tag in To). rtpengine itself keys a call by
//! Call-ID and keeps one branch per tag pair inside it: a `delete` with both tags removes
//! only that branch, and the rtpengine call goes when no answered branch remains (measured
//! against rtpengine 10.5: deleting an answered branch also drops a still-unanswered one).

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

/// Which session a request belongs to: the call and the From tag of its first offer (the
/// caller's tag; empty when the offer had none).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionKey {
    /// The Call-ID.
    pub call_id: String,
    /// The caller's From tag.
    pub from_tag: String,
}

impl SessionKey {
    /// The key of a call leg pair.
    pub fn new(call_id: impl Into<String>, from_tag: impl Into<String>) -> Self {
        Self {
            call_id: call_id.into(),
            from_tag: from_tag.into(),
        }
    }
}

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
    sessions: Mutex<HashMap<SessionKey, Entry>>,
    /// Dialog records, to find the instance of a call set up elsewhere (`media_session`).
    pub(super) store: Option<Arc<dyn DialogStore>>,
    timeouts: mpsc::UnboundedSender<TimedOut>,
    /// This node's log of offered, unconfirmed calls in Redis (clustered nodes only).
    pub(super) pending: std::sync::OnceLock<PendingMedia>,
    /// CSeq offsets of the dialogs this node sent re-INVITEs in (media failover).
    pub(super) shifts: std::sync::RwLock<sipmesh_protocol::media::CseqShifts>,
    /// Whether `shifts` has any entry (the shards' fast path).
    pub(super) any_shift: std::sync::atomic::AtomicBool,
    /// Where the offsets are shared with the other cluster nodes (clustered nodes only).
    pub(super) shift_sync: std::sync::OnceLock<super::shift_sync::ShiftSync>,
    /// The dialog actors, told each accepted answer (set with the failover).
    pub(super) dialogs: std::sync::OnceLock<crate::dialog::Dialogs>,
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
                    shift_sync: std::sync::OnceLock::new(),
                    dialogs: std::sync::OnceLock::new(),
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

    /// The instance a live call leg pair is placed on; `tags` are tried in order (a dialog's
    /// caller tag first; either of a request's From and To tags).
    pub fn instance_of(&self, call_id: &str, tags: &[&str]) -> Option<SocketAddr> {
        let sessions = self.lock();
        let key = find(&sessions, call_id, tags)?;
        let index = sessions.get(&key)?.instance.load(Ordering::Relaxed);
        drop(sessions);
        self.inner.pool.get(index).map(|i| i.spec.addr)
    }

    /// The last accepted offer and answer of a live call leg pair, as the dialog record
    /// keeps them (`tags` as for [`Self::instance_of`]).
    pub fn negotiation_of(
        &self,
        call_id: &str,
        tags: &[&str],
    ) -> Option<sipmesh_protocol::dialog::MediaNegotiation> {
        let sessions = self.lock();
        let key = find(&sessions, call_id, tags)?;
        let n = sessions
            .get(&key)?
            .negotiated
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        drop(sessions);
        n.to_record()
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SessionKey, Entry>> {
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
        // An accepted answer in a dialog (a re-INVITE's, or the first one once the record
        // exists) goes into the dialog record, so that an adopter replays the current pair.
        let record = match (&request, self.inner.dialogs.get()) {
            (Request::Answer(r), Some(dialogs)) => r
                .call
                .from_tag
                .clone()
                .zip(r.call.to_tag.clone())
                .map(|(f, t)| (dialogs.clone(), DialogId::new(r.call.call_id.clone(), f, t))),
            _ => None,
        };
        let Some((dialogs, id)) = record else {
            self.dispatch(request, Reply::new(done), true);
            return;
        };
        let this = self.clone();
        let done = move |result: Result<Bytes, MediaFailure>| {
            if result.is_ok()
                && let Some(n) = this.negotiation_of(&id.call_id, &[&id.caller_tag, &id.callee_tag])
            {
                dialogs.set_media_negotiation(&id, n);
            }
            done(result);
        };
        self.dispatch(request, Reply::new(done), true);
    }

    fn dispatch(&self, request: Request, reply: Reply, look_up: bool) {
        let call = match &request {
            Request::Offer(r) | Request::Answer(r) => r.call.clone(),
            Request::Delete(c) | Request::Query(c) | Request::DeleteBranch { call: c, .. } => {
                c.clone()
            }
            Request::Ping | Request::List { .. } | Request::Statistics => {
                reply.send(Err(MediaFailure::Refused("not a call request".into())));
                return;
            }
        };
        if let Request::Delete(call) = request {
            self.delete(call);
            reply.send(Ok(Bytes::new()));
            return;
        }
        let mut msg = SessionMsg { request, reply };
        let mut sessions = self.lock();
        let tags = tags_of(&call);
        // A losing branch's delete goes after the call's offers and answers, in its session;
        // without one here (the call ended, or runs on another node) the call's own delete
        // removes the branch.
        if matches!(msg.request, Request::DeleteBranch { .. })
            && find(&sessions, &call.call_id, &tags).is_none()
        {
            drop(sessions);
            msg.reply.send(Ok(Bytes::new()));
            return;
        }
        let key = find(&sessions, &call.call_id, &tags).unwrap_or_else(|| {
            SessionKey::new(
                call.call_id.clone(),
                call.from_tag.clone().unwrap_or_default(),
            )
        });
        let instance = match sessions.get(&key) {
            Some(e) => match e.tx.send(msg) {
                Ok(()) => return,
                // The task died (a panic): restart it on the call's instance.
                Err(mpsc::error::SendError(back)) => {
                    debug!(call_id = %key.call_id, from_tag = %key.from_tag, "media session restarted");
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
        let entry = self.spawn(&key, Arc::new(AtomicUsize::new(instance)), None);
        let _ = entry.tx.send(msg);
        if initial_offer {
            self.pending_add(&key.call_id, instance);
        }
        sessions.insert(key, entry);
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
            let (recorded, recorded_dialog) = match load_either(store.as_ref(), &id).await {
                Ok(Some(d)) => (d.media_session, Some(d.id)),
                Ok(None) => (None, None),
                Err(e) => {
                    debug!(error = %e, "dialog record for the media session unreadable");
                    (None, None)
                }
            };
            let addr = recorded
                .as_deref()
                .and_then(|m| InstanceSpec::parse(m).ok())
                .map(|s| s.addr);
            if let (Some(addr), Some(d)) = (addr, recorded_dialog) {
                debug!(call_id = %id.call_id, %addr, "media session adopted from the dialog record");
                this.adopt(&SessionKey::new(id.call_id.clone(), d.caller_tag), addr);
            }
            this.dispatch(request, reply, false);
        });
    }

    pub(super) fn spawn(
        &self,
        key: &SessionKey,
        instance: Arc<AtomicUsize>,
        adopted: Option<(String, String)>,
    ) -> Entry {
        self.spawn_with(key, instance, adopted, Negotiated::default())
    }

    /// [`Self::spawn`] with the call's last offer and answer already known (an adopted call).
    pub(super) fn spawn_with(
        &self,
        key: &SessionKey,
        instance: Arc<AtomicUsize>,
        adopted: Option<(String, String)>,
        negotiated: Negotiated,
    ) -> Entry {
        let (tx, rx) = mpsc::unbounded_channel();
        let negotiated = Arc::new(Mutex::new(negotiated));
        let args = SessionArgs {
            key: key.clone(),
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

    /// Deletes a call leg pair through its session (found by either tag), or, with no tags,
    /// every session of the Call-ID. Without a local session the delete goes to every
    /// instance (the call may have been set up by another node or before a restart).
    fn delete(&self, call: CallRef) {
        self.pending_remove(&call.call_id);
        self.forget_shifts_later(&call.call_id);
        let entries: Vec<(SessionKey, Entry)> = {
            let mut sessions = self.lock();
            if call.from_tag.is_none() && call.to_tag.is_none() {
                let keys: Vec<SessionKey> = sessions
                    .keys()
                    .filter(|k| k.call_id == call.call_id)
                    .cloned()
                    .collect();
                keys.into_iter()
                    .filter_map(|k| sessions.remove(&k).map(|e| (k, e)))
                    .collect()
            } else {
                find(&sessions, &call.call_id, &tags_of(&call))
                    .and_then(|k| sessions.remove(&k).map(|e| (k, e)))
                    .into_iter()
                    .collect()
            }
        };
        let mut delivered = !entries.is_empty();
        for (key, e) in entries {
            // A whole-call delete is narrowed to each session's own branch.
            let request = if call.from_tag.is_none() && !key.from_tag.is_empty() {
                CallRef {
                    call_id: key.call_id.clone(),
                    from_tag: Some(key.from_tag.clone()),
                    to_tag: None,
                }
            } else {
                call.clone()
            };
            let msg = SessionMsg {
                request: Request::Delete(request),
                reply: Reply::none(),
            };
            delivered &= e.tx.send(msg).is_ok();
        }
        if delivered {
            return;
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

    /// Places a call leg pair known from elsewhere (the dialog record) on the instance at
    /// `addr`.
    pub fn adopt(&self, key: &SessionKey, addr: SocketAddr) {
        let Some(instance) = self.inner.pool.index_of(addr) else {
            return;
        };
        let mut sessions = self.lock();
        if sessions.contains_key(key) {
            return;
        }
        let entry = self.spawn(key, Arc::new(AtomicUsize::new(instance)), None);
        sessions.insert(key.clone(), entry);
    }
}

/// The tags of a request, From first.
fn tags_of(call: &CallRef) -> Vec<&str> {
    [call.from_tag.as_deref(), call.to_tag.as_deref()]
        .into_iter()
        .flatten()
        .collect()
}

/// The live session of `call_id` whose caller tag is one of `tags` (in that order).
fn find(sessions: &HashMap<SessionKey, Entry>, call_id: &str, tags: &[&str]) -> Option<SessionKey> {
    tags.iter()
        .map(|t| SessionKey::new(call_id, *t))
        .find(|k| sessions.contains_key(k))
}
