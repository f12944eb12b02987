//! [`NgClient`]: one UDP socket to one rtpengine, a driver task, bounded async requests.
//!
//! A request is sent from the caller's own task (no hop through the driver on the way out:
//! issue 6, the media call-setup tail); the driver task reads the replies and runs the
//! retransmission and timeout timers of the shared [`NgClientState`].

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use sipmesh_protocol::ng::{
    Cookie, Incoming, NgClientState, Request, Response, RetransmitPolicy, StartError, Timer,
};
use tokio::net::UdpSocket;
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::error::NgError;

/// Largest ng reply accepted (a `list` or `query` reply can be large; 64 KiB is UDP's limit).
const MAX_DATAGRAM: usize = 65_535;

/// Extra time the caller waits past the request timeout for the driver's own verdict, so that
/// a stalled driver still cannot hold a caller longer than this.
const GRACE: Duration = Duration::from_millis(200);

type Reply = oneshot::Sender<Result<Response, NgError>>;

/// What the callers and the driver share.
struct Shared {
    state: NgClientState,
    /// Each outstanding request's caller and its own timeout (for the error it fails with).
    waiting: HashMap<Cookie, (Reply, Duration)>,
    cookies: Cookies,
    /// The deadline the driver's timer is set for: a request due earlier wakes it.
    armed: Option<std::time::Instant>,
}

type SharedRef = Arc<Mutex<Shared>>;

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A client of one rtpengine instance over ng (UDP). Cheap to share behind an `Arc`; the
/// driver task stops when the client is dropped.
#[derive(Debug)]
pub struct NgClient {
    peer: SocketAddr,
    policy: RetransmitPolicy,
    socket: Arc<UdpSocket>,
    shared: SharedRef,
    /// Wakes the driver to set its timer again.
    rearm: Arc<Notify>,
    driver: JoinHandle<()>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("outstanding", &self.waiting.len())
            .finish_non_exhaustive()
    }
}

impl NgClient {
    /// Opens a socket connected to `peer` (the daemon's `--listen-ng`) and starts the driver.
    pub async fn connect(peer: SocketAddr, policy: RetransmitPolicy) -> Result<Self, NgError> {
        let local: SocketAddr = if peer.is_ipv4() {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let socket = UdpSocket::bind(local)
            .await
            .map_err(|source| NgError::Socket { peer, source })?;
        socket
            .connect(peer)
            .await
            .map_err(|source| NgError::Socket { peer, source })?;
        let socket = Arc::new(socket);
        let shared = Arc::new(Mutex::new(Shared {
            state: NgClientState::new(policy),
            waiting: HashMap::new(),
            cookies: Cookies {
                prefix: rand::random(),
                next: 0,
            },
            armed: None,
        }));
        let rearm = Arc::new(Notify::new());
        let driver = tokio::spawn(drive(
            socket.clone(),
            shared.clone(),
            rearm.clone(),
            policy.first_interval,
        ));
        Ok(Self {
            peer,
            policy,
            socket,
            shared,
            rearm,
            driver,
        })
    }

    /// The rtpengine address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Sends `request` and waits for its reply, at most the policy's timeout (plus a small
    /// grace). `result: error` becomes [`NgError::Refused`] with the daemon's reason.
    pub async fn request(&self, request: Request) -> Result<Response, NgError> {
        self.request_within(request, self.policy.timeout).await
    }

    /// [`NgClient::request`] with its own timeout instead of the policy's (a health ping
    /// wants a short one).
    pub async fn request_within(
        &self,
        request: Request,
        timeout: Duration,
    ) -> Result<Response, NgError> {
        if self.driver.is_finished() {
            return Err(NgError::Stopped);
        }
        let (reply, rx) = oneshot::channel();
        let rearm = {
            let mut shared = lock(&self.shared);
            let now = Instant::now().into_std();
            let cookie = shared.cookies.next();
            let datagram = match shared
                .state
                .start_within(cookie.clone(), &request, now, timeout)
            {
                Ok(datagram) => datagram,
                Err(StartError::TooManyOutstanding(n)) => return Err(NgError::Busy(n)),
                Err(StartError::CookieInUse(_)) => {
                    return Err(NgError::Busy(shared.state.outstanding()));
                }
            };
            shared.waiting.insert(cookie, (reply, timeout));
            let next = shared.state.next_deadline();
            let rearm = match (next, shared.armed) {
                (Some(next), Some(armed)) => next < armed,
                (Some(_), None) => true,
                (None, _) => false,
            };
            (datagram, rearm)
        };
        let (datagram, rearm) = rearm;
        // Sent after the lock is released (a fresh socket may not be known writable yet, so
        // this can wait); a failure is lost like a dropped datagram: the retransmission retries.
        if let Err(e) = self.socket.send(&datagram).await {
            tracing::debug!(error = %e, "ng send failed");
        }
        if rearm {
            self.rearm.notify_one();
        }
        match tokio::time::timeout(timeout + GRACE, rx).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => Err(NgError::Stopped),
            Err(_) => Err(NgError::Timeout(timeout)),
        }
    }

    /// `ping`: `Ok(())` when the daemon answers `pong` in time.
    pub async fn ping(&self) -> Result<(), NgError> {
        let r = self.request(Request::Ping).await?;
        if r.pong {
            Ok(())
        } else {
            Err(NgError::NotPong)
        }
    }
}

impl Drop for NgClient {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// Cookies: a random per-client prefix and a counter, so two clients (or two runs of sipmesh)
/// do not collide in rtpengine's reply cache.
struct Cookies {
    prefix: u32,
    next: u64,
}

impl Cookies {
    fn next(&mut self) -> Cookie {
        self.next += 1;
        Cookie::numbered(self.prefix, self.next)
    }
}

/// The driver: replies in, retransmissions and timeouts out. Callers' replies are sent after
/// the lock is released.
///
/// The driver never sleeps longer than `tick` (the first retransmission interval): a new
/// request's first deadline is then no earlier than the driver's own, so a caller has no
/// reason to wake it (issue 6: one task wake-up fewer per request; an idle client costs ten
/// timer wake-ups a second). Only a request with a shorter timeout rearms it.
async fn drive(socket: Arc<UdpSocket>, shared: SharedRef, rearm: Arc<Notify>, tick: Duration) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut answers: Vec<(Reply, Result<Response, NgError>)> = Vec::new();
    let mut resend: Vec<Bytes> = Vec::new();
    loop {
        let wake = {
            let mut s = lock(&shared);
            let idle = std::time::Instant::now() + tick.max(Duration::from_millis(1));
            let next = s.state.next_deadline().map_or(idle, |d| d.min(idle));
            s.armed = Some(next);
            Some(Instant::from_std(next))
        };
        tokio::select! {
            () = rearm.notified() => {}
            received = socket.recv(&mut buf) => match received {
                Ok(n) => {
                    let datagram = Bytes::copy_from_slice(buf.get(..n).unwrap_or_default());
                    let mut s = lock(&shared);
                    match s.state.on_datagram(&datagram, Instant::now().into_std()) {
                        Incoming::Reply { cookie, outcome } => {
                            if let Some((reply, _)) = s.waiting.remove(&cookie) {
                                answers.push((reply, outcome.map_err(NgError::from)));
                            }
                        }
                        // Past its deadline before the timer ran: it failed all the same.
                        Incoming::Late(cookie) => {
                            if let Some((reply, after)) = s.waiting.remove(&cookie) {
                                answers.push((reply, Err(NgError::Timeout(after))));
                            }
                        }
                        other => tracing::debug!(?other, "ng datagram ignored"),
                    }
                }
                // ICMP port unreachable (daemon down) and the like: the request times out.
                Err(e) => tracing::debug!(error = %e, "ng receive failed"),
            },
            () = sleep_until(wake) => {
                let mut s = lock(&shared);
                for timer in s.state.poll(Instant::now().into_std()) {
                    match timer {
                        Timer::Retransmit { datagram, .. } => resend.push(datagram),
                        Timer::TimedOut(cookie) => {
                            if let Some((reply, after)) = s.waiting.remove(&cookie) {
                                answers.push((reply, Err(NgError::Timeout(after))));
                            }
                        }
                    }
                }
            }
        }
        for (reply, outcome) in answers.drain(..) {
            let _ = reply.send(outcome);
        }
        for datagram in resend.drain(..) {
            if let Err(e) = socket.send(&datagram).await {
                tracing::debug!(error = %e, "ng retransmission failed");
            }
        }
        // Callers that gave up (dropped their future): stop retransmitting for them.
        let mut s = lock(&shared);
        let gone: Vec<Cookie> = s
            .waiting
            .iter()
            .filter(|(_, (r, _))| r.is_closed())
            .map(|(c, _)| c.clone())
            .collect();
        for cookie in gone {
            s.waiting.remove(&cookie);
            s.state.cancel(&cookie);
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sipmesh_protocol::ng::CallRef;

    /// A fake daemon on loopback: answers each datagram's cookie with `body`, `copies` times,
    /// after ignoring the first `drop_first` datagrams.
    async fn fake(body: &'static str, copies: usize, drop_first: usize) -> SocketAddr {
        let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = sock.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65_535];
            let mut seen = 0;
            while let Ok((n, from)) = sock.recv_from(&mut buf).await {
                seen += 1;
                if seen <= drop_first {
                    continue;
                }
                let cookie_end = buf[..n].iter().position(|b| *b == b' ').unwrap();
                let mut out = buf[..cookie_end].to_vec();
                out.push(b' ');
                out.extend_from_slice(body.as_bytes());
                for _ in 0..copies {
                    sock.send_to(&out, from).await.unwrap();
                }
            }
        });
        addr
    }

    fn fast() -> RetransmitPolicy {
        RetransmitPolicy {
            first_interval: Duration::from_millis(20),
            max_interval: Duration::from_millis(50),
            timeout: Duration::from_millis(300),
            max_outstanding: 4,
        }
    }

    #[tokio::test]
    async fn pong_with_duplicates_and_loss() {
        let addr = fake("d6:result4:ponge", 3, 2).await;
        let c = NgClient::connect(addr, fast()).await.unwrap();
        c.ping().await.unwrap();
        c.ping().await.unwrap();
    }

    #[tokio::test]
    async fn error_reason_is_surfaced() {
        let addr = fake("d12:error-reason12:Unknown call6:result5:errore", 1, 0).await;
        let c = NgClient::connect(addr, fast()).await.unwrap();
        let e = c
            .request(Request::Query(CallRef::new("x", "y")))
            .await
            .unwrap_err();
        assert!(
            matches!(e, NgError::Refused(ref r) if r == "Unknown call"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn silence_times_out_and_excess_is_busy() {
        let addr = fake("", 0, usize::MAX).await;
        let c = Arc::new(NgClient::connect(addr, fast()).await.unwrap());
        let started = std::time::Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let c = c.clone();
            tasks.push(tokio::spawn(async move { c.ping().await }));
        }
        let mut busy = 0;
        let mut timeouts = 0;
        for t in tasks {
            match t.await.unwrap() {
                Err(NgError::Busy(_)) => busy += 1,
                Err(NgError::Timeout(_)) => timeouts += 1,
                other => panic!("{other:?}"),
            }
        }
        assert!(
            busy >= 1 && timeouts >= 1,
            "busy {busy} timeouts {timeouts}"
        );
        assert!(
            started.elapsed() < Duration::from_millis(300) + GRACE + Duration::from_millis(200)
        );
    }
}
