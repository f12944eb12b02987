//! [`MediaSessions`]: the supervisor of the session tasks, one per Call-ID.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use sipmesh_protocol::ng::{CallRef, Request};
use sipmesh_protocol::proxy::MediaFailure;
use tokio::sync::mpsc;
use tracing::debug;

use super::pool::{InstanceSpec, MediaConfig, RtpenginePool};
use super::session::{self, Reply, SessionArgs, SessionMsg, Tags, TimedOut};
use crate::dialog::DialogStore;
use crate::dialog::store::load_either;
use crate::rtpengine::NgError;
use sipmesh_protocol::dialog::DialogId;

/// A live session: its queue and the instance it is placed on.
#[derive(Debug)]
struct Entry {
    tx: mpsc::UnboundedSender<SessionMsg>,
    /// Shared with the task, which may move a call whose first offer failed.
    instance: Arc<AtomicUsize>,
    /// A session with no task yet (its first offer ran inline and nothing else came): the
    /// task starts with the next request.
    idle: Option<Idle>,
}

/// What starts the task of an idle session.
struct Idle {
    args: SessionArgs,
    rx: mpsc::UnboundedReceiver<SessionMsg>,
    tags: Tags,
}

impl std::fmt::Debug for Idle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Idle")
    }
}

/// The first offer of a new call, for the caller to poll (see
/// [`MediaSessions::request_inline`]). Dropped unpolled, the offer fails as
/// [`MediaFailure::Unavailable`].
#[must_use = "the offer runs only when the job is polled"]
pub struct MediaJob(Pin<Box<dyn Future<Output = ()> + Send>>);

impl std::fmt::Debug for MediaJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MediaJob")
    }
}

impl Future for MediaJob {
    type Output = ();

    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        self.0.as_mut().poll(cx)
    }
}

struct Inner {
    pool: Arc<RtpenginePool>,
    config: MediaConfig,
    sessions: Mutex<HashMap<String, Entry>>,
    /// Dialog records, to find the instance of a call set up elsewhere (`media_session`).
    store: Option<Arc<dyn DialogStore>>,
    timeouts: mpsc::UnboundedSender<TimedOut>,
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
    inner: Arc<Inner>,
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

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
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
        if let Some(job) = self.request_inline(request, done) {
            tokio::spawn(job);
        }
    }

    /// [`MediaSessions::request`], except that the first offer of a new call comes back as a
    /// job for the caller to poll (issue 6: the shard polls it, so the ng request leaves from
    /// the shard's task and its reply wakes the shard directly; no session task is spawned
    /// until the call has a second request). Later requests of the call queue behind it.
    pub fn request_inline(
        &self,
        request: Request,
        done: impl FnOnce(Result<Bytes, MediaFailure>) + Send + 'static,
    ) -> Option<MediaJob> {
        self.dispatch(request, Reply::new(done), true)
    }

    fn dispatch(&self, request: Request, reply: Reply, look_up: bool) -> Option<MediaJob> {
        let call_id = match &request {
            Request::Offer(r) | Request::Answer(r) => r.call.call_id.clone(),
            Request::Delete(c) | Request::Query(c) => c.call_id.clone(),
            Request::Ping | Request::List { .. } | Request::Statistics => {
                reply.send(Err(MediaFailure::Refused("not a call request".into())));
                return None;
            }
        };
        if let Request::Delete(call) = request {
            self.delete(&call_id, call);
            reply.send(Ok(Bytes::new()));
            return None;
        }
        let mut msg = SessionMsg { request, reply };
        let mut sessions = self.lock();
        let instance = match sessions.get_mut(&call_id) {
            Some(e) => {
                if let Some(idle) = e.idle.take() {
                    tokio::spawn(session::run(idle.args, idle.rx, idle.tags));
                }
                match e.tx.send(msg) {
                    Ok(()) => return None,
                    // The task died (a panic): restart it on the call's instance.
                    Err(mpsc::error::SendError(back)) => {
                        debug!(%call_id, "media session restarted");
                        msg = back;
                        e.instance.load(Ordering::Relaxed)
                    }
                }
            }
            None if look_up && self.recorded_elsewhere(&msg.request) => {
                drop(sessions);
                self.look_up_then_dispatch(msg.request, msg.reply);
                return None;
            }
            None => match self.inner.pool.pick() {
                Some(i) => {
                    // A new call: its first offer runs inline.
                    let instance = Arc::new(AtomicUsize::new(i));
                    let (tx, rx) = mpsc::unbounded_channel();
                    let args = self.args(&call_id, instance.clone());
                    sessions.insert(
                        call_id,
                        Entry {
                            tx,
                            instance,
                            idle: None,
                        },
                    );
                    drop(sessions);
                    let this = self.clone();
                    let then = move |args, tags| this.after_first_offer(args, rx, tags);
                    return Some(MediaJob(Box::pin(session::first_offer(args, msg, then))));
                }
                None => {
                    drop(sessions);
                    msg.reply.send(Err(MediaFailure::Unavailable));
                    return None;
                }
            },
        };
        let instance = Arc::new(AtomicUsize::new(instance));
        let tx = self.spawn(&call_id, instance.clone());
        let _ = tx.send(msg);
        sessions.insert(
            call_id,
            Entry {
                tx,
                instance,
                idle: None,
            },
        );
        None
    }

    /// After an inline first offer: the session stays idle (no task) when nothing queued
    /// behind the offer, else its task starts on the queue (a delete after a CANCEL, an
    /// answer). A session deleted or replaced meanwhile gets its task too, which runs what
    /// queued and ends.
    fn after_first_offer(
        &self,
        args: SessionArgs,
        rx: mpsc::UnboundedReceiver<SessionMsg>,
        tags: Tags,
    ) {
        let mut sessions = self.lock();
        match sessions.get_mut(&args.call_id) {
            Some(e) if Arc::ptr_eq(&e.instance, &args.instance) && rx.is_empty() => {
                e.idle = Some(Idle { args, rx, tags });
            }
            _ => {
                drop(sessions);
                tokio::spawn(session::run(args, rx, tags));
            }
        }
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
            if let Some(job) = this.dispatch(request, reply, false) {
                job.await;
            }
        });
    }

    fn args(&self, call_id: &str, instance: Arc<AtomicUsize>) -> SessionArgs {
        SessionArgs {
            call_id: call_id.to_owned(),
            instance,
            pool: self.inner.pool.clone(),
            media_timeout: self.inner.config.media_timeout,
            poll_interval: self.inner.config.poll_interval,
            timeouts: self.inner.timeouts.clone(),
        }
    }

    fn spawn(
        &self,
        call_id: &str,
        instance: Arc<AtomicUsize>,
    ) -> mpsc::UnboundedSender<SessionMsg> {
        let (tx, rx) = mpsc::unbounded_channel();
        let args = self.args(call_id, instance);
        tokio::spawn(session::run(args, rx, Tags::default()));
        tx
    }

    /// Deletes a call: through its session when it has one, else on every instance (the
    /// call may have been set up by another node or before a restart).
    fn delete(&self, call_id: &str, call: CallRef) {
        let entry = self.lock().remove(call_id);
        if let Some(mut e) = entry {
            if let Some(idle) = e.idle.take() {
                tokio::spawn(session::run(idle.args, idle.rx, idle.tags));
            }
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
        let instance = Arc::new(AtomicUsize::new(instance));
        let tx = self.spawn(call_id, instance.clone());
        sessions.insert(
            call_id.to_owned(),
            Entry {
                tx,
                instance,
                idle: None,
            },
        );
    }
}
