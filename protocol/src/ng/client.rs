//! The sans-IO ng client: outstanding requests keyed by cookie, retransmission over UDP and a
//! per-request deadline, all driven by explicit `Instant`s.
//!
//! ng runs over UDP, so a request or its reply may be lost. The client sends a request, resends
//! the same datagram (same cookie: rtpengine answers a retransmission from its reply cache
//! rather than running the command twice) at growing intervals, and gives up at the request's
//! deadline. The first reply for a cookie completes the request; a second one (a reply to a
//! retransmission) and any reply after the deadline are dropped and reported as such.
//!
//! The I/O shell calls [`NgClientState::start`] and sends the datagram, feeds every received
//! datagram to [`NgClientState::on_datagram`], and calls [`NgClientState::poll`] at
//! [`NgClientState::next_deadline`].

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::frame::{Cookie, FrameError, decode_datagram, encode_datagram};
use super::request::Request;
use super::response::{ReplyError, Response};

/// Timing and bounds of the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetransmitPolicy {
    /// Wait before the first retransmission; doubled after each one.
    pub first_interval: Duration,
    /// Longest wait between two sends.
    pub max_interval: Duration,
    /// How long a request may take, from its first send, before it fails.
    pub timeout: Duration,
    /// Most requests outstanding at once; further ones are refused at once.
    pub max_outstanding: usize,
}

impl Default for RetransmitPolicy {
    /// 250 ms, 500 ms, 1 s, 1 s…, giving up after 2 s; 1024 outstanding requests.
    fn default() -> Self {
        Self {
            first_interval: Duration::from_millis(250),
            max_interval: Duration::from_secs(1),
            timeout: Duration::from_secs(2),
            max_outstanding: 1024,
        }
    }
}

/// Why a request could not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StartError {
    /// [`RetransmitPolicy::max_outstanding`] requests are already waiting.
    #[error("{0} ng requests outstanding")]
    TooManyOutstanding(usize),
    /// The cookie is in use by an outstanding request.
    #[error("ng cookie {0} is already in use")]
    CookieInUse(Cookie),
}

/// What a received datagram meant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// The first reply to an outstanding request: it is complete.
    Reply {
        /// The request's cookie.
        cookie: Cookie,
        /// The reply, or why it is not a success.
        outcome: Result<Response, ReplyError>,
    },
    /// Another reply to a request already answered: ignored.
    Duplicate(Cookie),
    /// A reply to a request that timed out (or was cancelled): ignored.
    Late(Cookie),
    /// A reply whose cookie this client never sent (or forgot): ignored.
    Unknown(Cookie),
    /// Not an ng datagram.
    Malformed(FrameError),
}

/// What a timer did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Timer {
    /// Send this datagram again.
    Retransmit {
        /// The request's cookie.
        cookie: Cookie,
        /// The datagram, identical to the first send.
        datagram: Bytes,
    },
    /// The request's deadline passed without a reply: it failed.
    TimedOut(Cookie),
}

#[derive(Debug)]
struct Pending {
    datagram: Bytes,
    next_send: Instant,
    interval: Duration,
    deadline: Instant,
}

/// How a finished cookie ended, remembered to classify stray replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    Answered,
    Expired,
}

/// How many finished cookies are remembered (oldest forgotten first).
const REMEMBERED: usize = 4096;

/// The client's outstanding requests.
#[derive(Debug)]
pub struct NgClientState {
    policy: RetransmitPolicy,
    pending: HashMap<Cookie, Pending>,
    ended: HashMap<Cookie, Ended>,
    ended_order: VecDeque<Cookie>,
}

impl NgClientState {
    /// An idle client.
    pub fn new(policy: RetransmitPolicy) -> Self {
        Self {
            policy,
            pending: HashMap::new(),
            ended: HashMap::new(),
            ended_order: VecDeque::new(),
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> RetransmitPolicy {
        self.policy
    }

    /// Requests waiting for a reply.
    pub fn outstanding(&self) -> usize {
        self.pending.len()
    }

    /// Starts `request` under `cookie` at `now` with the policy's timeout; returns the
    /// datagram to send.
    pub fn start(
        &mut self,
        cookie: Cookie,
        request: &Request,
        now: Instant,
    ) -> Result<Bytes, StartError> {
        self.start_within(cookie, request, now, self.policy.timeout)
    }

    /// Starts `request` under `cookie` at `now`, failing it after `timeout` (a health ping may
    /// want less than an offer); returns the datagram to send.
    pub fn start_within(
        &mut self,
        cookie: Cookie,
        request: &Request,
        now: Instant,
        timeout: Duration,
    ) -> Result<Bytes, StartError> {
        if self.pending.len() >= self.policy.max_outstanding {
            return Err(StartError::TooManyOutstanding(self.pending.len()));
        }
        if self.pending.contains_key(&cookie) {
            return Err(StartError::CookieInUse(cookie));
        }
        let datagram = Bytes::from(encode_datagram(&cookie, &request.to_dict()));
        self.forget(&cookie);
        self.pending.insert(
            cookie,
            Pending {
                datagram: datagram.clone(),
                next_send: now + self.policy.first_interval,
                interval: self.policy.first_interval,
                deadline: now + timeout,
            },
        );
        Ok(datagram)
    }

    /// Gives up on a request (its caller went away); a later reply counts as late.
    pub fn cancel(&mut self, cookie: &Cookie) {
        if self.pending.remove(cookie).is_some() {
            self.remember(cookie.clone(), Ended::Expired);
        }
    }

    /// Handles one received datagram at `now`.
    pub fn on_datagram(&mut self, datagram: &Bytes, now: Instant) -> Incoming {
        let (cookie, dict) = match decode_datagram(datagram) {
            Ok(parts) => parts,
            Err(e) => return Incoming::Malformed(e),
        };
        match self.pending.remove(&cookie) {
            Some(p) if now >= p.deadline => {
                self.remember(cookie.clone(), Ended::Expired);
                Incoming::Late(cookie)
            }
            Some(_) => {
                self.remember(cookie.clone(), Ended::Answered);
                Incoming::Reply {
                    cookie,
                    outcome: Response::from_dict(dict),
                }
            }
            None => match self.ended.get(&cookie) {
                Some(Ended::Answered) => Incoming::Duplicate(cookie),
                Some(Ended::Expired) => Incoming::Late(cookie),
                None => Incoming::Unknown(cookie),
            },
        }
    }

    /// Runs the timers due at `now`: retransmissions and timeouts.
    pub fn poll(&mut self, now: Instant) -> Vec<Timer> {
        let mut out = Vec::new();
        let mut expired = Vec::new();
        for (cookie, p) in &mut self.pending {
            if now >= p.deadline {
                expired.push(cookie.clone());
            } else if now >= p.next_send {
                p.interval = (p.interval * 2).min(self.policy.max_interval);
                p.next_send = now + p.interval;
                out.push(Timer::Retransmit {
                    cookie: cookie.clone(),
                    datagram: p.datagram.clone(),
                });
            }
        }
        // HashMap order is arbitrary: sort, so the output depends on the input only.
        // HashMap order is arbitrary: sort, so that the output depends on the input only.
        out.sort_by(|a, b| timer_cookie(a).cmp(timer_cookie(b)));
        expired.sort();
        for cookie in expired {
            self.pending.remove(&cookie);
            self.remember(cookie.clone(), Ended::Expired);
            out.push(Timer::TimedOut(cookie));
        }
        out
    }

    /// When [`NgClientState::poll`] next has work, if any request is outstanding.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.pending
            .values()
            .map(|p| p.next_send.min(p.deadline))
            .min()
    }

    fn forget(&mut self, cookie: &Cookie) {
        if self.ended.remove(cookie).is_some() {
            self.ended_order.retain(|c| c != cookie);
        }
    }

    fn remember(&mut self, cookie: Cookie, how: Ended) {
        if self.ended.insert(cookie.clone(), how).is_none() {
            self.ended_order.push_back(cookie);
        }
        while self.ended_order.len() > REMEMBERED {
            if let Some(old) = self.ended_order.pop_front() {
                self.ended.remove(&old);
            }
        }
    }
}

fn timer_cookie(t: &Timer) -> &Cookie {
    match t {
        Timer::Retransmit { cookie, .. } | Timer::TimedOut(cookie) => cookie,
    }
}

/// Cookies seen, for tests that check uniqueness (kept tiny on purpose).
#[cfg(test)]
fn unique(cookies: &[Cookie]) -> bool {
    use std::collections::HashSet;
    cookies.iter().collect::<HashSet<_>>().len() == cookies.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cookie(s: &'static str) -> Cookie {
        Cookie::new(Bytes::from_static(s.as_bytes())).unwrap()
    }

    fn reply(c: &str, body: &str) -> Bytes {
        Bytes::from(format!("{c} {body}"))
    }

    #[test]
    fn reply_completes_and_duplicate_is_ignored() {
        let t0 = Instant::now();
        let mut c = NgClientState::new(RetransmitPolicy::default());
        let d = c.start(cookie("a1"), &Request::Ping, t0).unwrap();
        assert_eq!(&d[..], b"a1 d7:command4:pinge");
        assert_eq!(c.outstanding(), 1);
        let r = c.on_datagram(&reply("a1", "d6:result4:ponge"), t0);
        assert!(matches!(r, Incoming::Reply { outcome: Ok(ref resp), .. } if resp.pong));
        assert_eq!(c.outstanding(), 0);
        assert_eq!(
            c.on_datagram(&reply("a1", "d6:result4:ponge"), t0),
            Incoming::Duplicate(cookie("a1"))
        );
        assert_eq!(
            c.on_datagram(&reply("zz", "d6:result4:ponge"), t0),
            Incoming::Unknown(cookie("zz"))
        );
        assert!(matches!(
            c.on_datagram(&Bytes::from_static(b"garbage"), t0),
            Incoming::Malformed(FrameError::NoSeparator)
        ));
        assert_eq!(c.next_deadline(), None);
    }

    #[test]
    fn retransmits_on_schedule_then_times_out() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut c = NgClientState::new(RetransmitPolicy::default());
        let first = c.start(cookie("r"), &Request::Ping, t0).unwrap();
        assert_eq!(c.next_deadline(), Some(t0 + ms(250)));
        assert!(c.poll(t0 + ms(249)).is_empty());
        let mut sends = Vec::new();
        let mut now = t0;
        while let Some(next) = c.next_deadline() {
            now = next;
            for t in c.poll(now) {
                match t {
                    Timer::Retransmit { datagram, .. } => {
                        assert_eq!(datagram, first);
                        sends.push(now - t0);
                    }
                    Timer::TimedOut(k) => assert_eq!(k, cookie("r")),
                }
            }
        }
        assert_eq!(sends, [ms(250), ms(750), ms(1750)]);
        assert_eq!(now - t0, ms(2000));
        assert_eq!(c.outstanding(), 0);
        assert_eq!(
            c.on_datagram(&reply("r", "d6:result4:ponge"), now),
            Incoming::Late(cookie("r"))
        );
    }

    #[test]
    fn several_requests_poll_in_cookie_order() {
        let t0 = Instant::now();
        let mut c = NgClientState::new(RetransmitPolicy::default());
        for k in ["c", "a", "b"] {
            c.start(cookie(k), &Request::Statistics, t0).unwrap();
        }
        let order: Vec<Cookie> = c
            .poll(t0 + Duration::from_millis(250))
            .into_iter()
            .map(|t| match t {
                Timer::Retransmit { cookie, .. } | Timer::TimedOut(cookie) => cookie,
            })
            .collect();
        assert_eq!(order, [cookie("a"), cookie("b"), cookie("c")]);
        let r = c.on_datagram(&reply("b", "d6:result2:oke"), t0);
        assert!(matches!(r, Incoming::Reply { .. }));
        let timed_out = c.poll(t0 + Duration::from_secs(2));
        assert_eq!(
            timed_out,
            [Timer::TimedOut(cookie("a")), Timer::TimedOut(cookie("c"))]
        );
    }

    #[test]
    fn shorter_timeout_per_request() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut c = NgClientState::new(RetransmitPolicy::default());
        c.start_within(cookie("p"), &Request::Ping, t0, ms(400))
            .unwrap();
        assert!(matches!(
            c.poll(t0 + ms(250)).as_slice(),
            [Timer::Retransmit { .. }]
        ));
        assert_eq!(c.next_deadline(), Some(t0 + ms(400)));
        assert_eq!(c.poll(t0 + ms(400)), [Timer::TimedOut(cookie("p"))]);
    }

    #[test]
    fn reply_after_deadline_before_poll_is_late() {
        let t0 = Instant::now();
        let mut c = NgClientState::new(RetransmitPolicy::default());
        c.start(cookie("x"), &Request::Ping, t0).unwrap();
        assert_eq!(
            c.on_datagram(&reply("x", "d6:result4:ponge"), t0 + Duration::from_secs(2)),
            Incoming::Late(cookie("x"))
        );
        assert!(c.poll(t0 + Duration::from_secs(3)).is_empty());
    }

    #[test]
    fn bounds_outstanding_and_cookie_reuse() {
        let t0 = Instant::now();
        let mut c = NgClientState::new(RetransmitPolicy {
            max_outstanding: 2,
            ..RetransmitPolicy::default()
        });
        c.start(cookie("a"), &Request::Ping, t0).unwrap();
        assert_eq!(
            c.start(cookie("a"), &Request::Ping, t0),
            Err(StartError::CookieInUse(cookie("a")))
        );
        c.start(cookie("b"), &Request::Ping, t0).unwrap();
        assert_eq!(
            c.start(cookie("c"), &Request::Ping, t0),
            Err(StartError::TooManyOutstanding(2))
        );
        c.cancel(&cookie("a"));
        assert_eq!(
            c.on_datagram(&reply("a", "d6:result4:ponge"), t0),
            Incoming::Late(cookie("a"))
        );
        c.start(cookie("c"), &Request::Ping, t0).unwrap();
        assert!(unique(&[cookie("b"), cookie("c")]));
    }

    #[test]
    fn error_reply_is_surfaced() {
        let t0 = Instant::now();
        let mut c = NgClientState::new(RetransmitPolicy::default());
        c.start(cookie("e"), &Request::Ping, t0).unwrap();
        let r = c.on_datagram(
            &reply("e", "d12:error-reason12:Unknown call6:result5:errore"),
            t0,
        );
        assert_eq!(
            r,
            Incoming::Reply {
                cookie: cookie("e"),
                outcome: Err(ReplyError::Refused {
                    reason: "Unknown call".into()
                })
            }
        );
    }
}
