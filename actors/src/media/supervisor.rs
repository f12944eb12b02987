//! [`MediaSessions`]: the supervisor of the session tasks, one per Call-ID.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use sipmesh_protocol::ng::{CallRef, Request};
use sipmesh_protocol::proxy::MediaFailure;
use tokio::sync::mpsc;
use tracing::debug;

use super::pool::{MediaConfig, RtpenginePool};
use super::session::{self, Reply, SessionArgs, SessionMsg, TimedOut};
use crate::rtpengine::NgError;

/// A live session: its queue and the instance it is placed on.
#[derive(Debug)]
struct Entry {
    tx: mpsc::UnboundedSender<SessionMsg>,
    instance: usize,
}

#[derive(Debug)]
struct Inner {
    pool: Arc<RtpenginePool>,
    config: MediaConfig,
    sessions: Mutex<HashMap<String, Entry>>,
    timeouts: mpsc::UnboundedSender<TimedOut>,
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
    ) -> Result<(Self, mpsc::UnboundedReceiver<TimedOut>), NgError> {
        let pool = RtpenginePool::start(&config).await?;
        let (timeouts, rx) = mpsc::unbounded_channel();
        Ok((
            Self {
                inner: Arc::new(Inner {
                    pool,
                    config,
                    sessions: Mutex::new(HashMap::new()),
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
        let index = self.lock().get(call_id).map(|e| e.instance)?;
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
        let reply = Reply::new(done);
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
                    e.instance
                }
            },
            None => match self.inner.pool.pick() {
                Some(i) => i,
                None => {
                    drop(sessions);
                    msg.reply.send(Err(MediaFailure::Unavailable));
                    return;
                }
            },
        };
        let tx = self.spawn(&call_id, instance);
        let _ = tx.send(msg);
        sessions.insert(call_id, Entry { tx, instance });
    }

    fn spawn(&self, call_id: &str, instance: usize) -> mpsc::UnboundedSender<SessionMsg> {
        let (tx, rx) = mpsc::unbounded_channel();
        let args = SessionArgs {
            call_id: call_id.to_owned(),
            instance,
            pool: self.inner.pool.clone(),
            media_timeout: self.inner.config.media_timeout,
            poll_interval: self.inner.config.poll_interval,
            timeouts: self.inner.timeouts.clone(),
        };
        tokio::spawn(session::run(args, rx));
        tx
    }

    /// Deletes a call: through its session when it has one, else on every instance (the
    /// call may have been set up by another node or before a restart).
    fn delete(&self, call_id: &str, call: CallRef) {
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
        let tx = self.spawn(call_id, instance);
        sessions.insert(call_id.to_owned(), Entry { tx, instance });
    }
}
