//! [`NgClient`]: one UDP socket to one rtpengine, a driver task, bounded async requests.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use sipmesh_protocol::ng::{
    Cookie, Incoming, NgClientState, Request, Response, RetransmitPolicy, StartError, Timer,
};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::error::NgError;

/// Largest ng reply accepted (a `list` or `query` reply can be large; 64 KiB is UDP's limit).
const MAX_DATAGRAM: usize = 65_535;

/// Extra time the caller waits past the request timeout for the driver's own verdict, so that
/// a stalled driver still cannot hold a caller longer than this.
const GRACE: Duration = Duration::from_millis(200);

type Reply = oneshot::Sender<Result<Response, NgError>>;

struct Start {
    request: Request,
    timeout: Duration,
    reply: Reply,
}

/// A client of one rtpengine instance over ng (UDP). Cheap to share behind an `Arc`; the
/// driver task stops when the client is dropped.
#[derive(Debug)]
pub struct NgClient {
    peer: SocketAddr,
    policy: RetransmitPolicy,
    tx: mpsc::Sender<Start>,
    driver: JoinHandle<()>,
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
        let (tx, rx) = mpsc::channel(policy.max_outstanding.max(1));
        let driver = tokio::spawn(drive(socket, NgClientState::new(policy), rx));
        Ok(Self {
            peer,
            policy,
            tx,
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
        let (reply, rx) = oneshot::channel();
        self.tx
            .try_send(Start {
                request,
                timeout,
                reply,
            })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => NgError::Busy(self.policy.max_outstanding),
                mpsc::error::TrySendError::Closed(_) => NgError::Stopped,
            })?;
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

async fn drive(socket: UdpSocket, mut state: NgClientState, mut rx: mpsc::Receiver<Start>) {
    // Each outstanding request's caller and its own timeout (for the error it fails with).
    let mut waiting: HashMap<Cookie, (Reply, Duration)> = HashMap::new();
    let mut cookies = Cookies {
        prefix: rand::random(),
        next: 0,
    };
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut open = true;
    loop {
        let wake = state.next_deadline().map(Instant::from_std);
        tokio::select! {
            start = rx.recv(), if open => match start {
                Some(Start { request, timeout, reply }) => {
                    let now = Instant::now().into_std();
                    let cookie = cookies.next();
                    match state.start_within(cookie.clone(), &request, now, timeout) {
                        Ok(datagram) => {
                            if let Err(e) = socket.send(&datagram).await {
                                // Lost like a dropped datagram: the retransmission retries.
                                tracing::debug!(error = %e, "ng send failed");
                            }
                            waiting.insert(cookie, (reply, timeout));
                        }
                        Err(StartError::TooManyOutstanding(n)) => {
                            let _ = reply.send(Err(NgError::Busy(n)));
                        }
                        Err(StartError::CookieInUse(_)) => {
                            let _ = reply.send(Err(NgError::Busy(state.outstanding())));
                        }
                    }
                }
                None => open = false,
            },
            received = socket.recv(&mut buf) => match received {
                Ok(n) => {
                    let datagram = Bytes::copy_from_slice(buf.get(..n).unwrap_or_default());
                    match state.on_datagram(&datagram, Instant::now().into_std()) {
                        Incoming::Reply { cookie, outcome } => {
                            if let Some((reply, _)) = waiting.remove(&cookie) {
                                let _ = reply.send(outcome.map_err(NgError::from));
                            }
                        }
                        // Past its deadline before the timer ran: it failed all the same.
                        Incoming::Late(cookie) => {
                            if let Some((reply, after)) = waiting.remove(&cookie) {
                                let _ = reply.send(Err(NgError::Timeout(after)));
                            }
                        }
                        other => tracing::debug!(?other, "ng datagram ignored"),
                    }
                }
                // ICMP port unreachable (daemon down) and the like: the request times out.
                Err(e) => tracing::debug!(error = %e, "ng receive failed"),
            },
            () = sleep_until(wake) => {
                for timer in state.poll(Instant::now().into_std()) {
                    match timer {
                        Timer::Retransmit { datagram, .. } => {
                            if let Err(e) = socket.send(&datagram).await {
                                tracing::debug!(error = %e, "ng retransmission failed");
                            }
                        }
                        Timer::TimedOut(cookie) => {
                            if let Some((reply, after)) = waiting.remove(&cookie) {
                                let _ = reply.send(Err(NgError::Timeout(after)));
                            }
                        }
                    }
                }
            }
        }
        // Callers that gave up (dropped their future): stop retransmitting for them.
        let gone: Vec<Cookie> = waiting
            .iter()
            .filter(|(_, (r, _))| r.is_closed())
            .map(|(c, _)| c.clone())
            .collect();
        for cookie in gone {
            waiting.remove(&cookie);
            state.cancel(&cookie);
        }
        if !open && waiting.is_empty() {
            return;
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
        let c = std::sync::Arc::new(NgClient::connect(addr, fast()).await.unwrap());
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
