//! A simulated user agent: one AOR `sip:uN@domain` over UDP, TCP or WS. It registers and
//! refreshes, sends MESSAGE, places INVITE/ACK/BYE calls and answers them (through its
//! [`Endpoint`]). A TCP/WS agent whose connection dies reconnects to another node that is up
//! and registers again (RFC 5626 §4.2).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sipmesh_protocol::message::RequestBuilder;
use sipmesh_protocol::{Message, Method};
use tokio::time::timeout_at;

use crate::config::Transport;
use crate::endpoint::Endpoint;
use crate::error::OpFailure;
use crate::link::{self, Closed, Link};
use crate::routing::Attach;
use crate::sip::{Dialog, lists_contact};
use crate::topology::{NodeIx, Topology};

/// RFC 3261 Timer T1.
const T1: Duration = Duration::from_millis(500);

/// How long a transaction waits for its final response (shorter than Timer B/F's 32 s: a
/// chaos run wants failures counted, not hung agents).
const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(5);

/// Registration lifetime asked for.
pub const REGISTER_EXPIRES: u32 = 300;

/// The address UDP agents bind.
const AGENT_IP: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// What changes when a stream agent reconnects.
#[derive(Debug)]
struct Attachment {
    link: Option<Link>,
    /// The node the agent registered through (UDP) or is connected to (TCP/WS).
    home: NodeIx,
    /// The Via sent-by.
    sent_by: String,
    /// Bumped at every (re)connect.
    generation: u64,
    /// Expiry of the last acknowledged registration over the current connection.
    acked_until: Option<Instant>,
    /// The node holding this connection failed (killed, or frozen past its lease and declared
    /// dead): by the cluster's rules the flow died with it, whatever the socket says, until
    /// the agent registers again.
    orphaned: bool,
}

/// One simulated user.
#[derive(Debug)]
pub struct Agent {
    /// Index in the swarm.
    pub id: usize,
    /// User part of the AOR.
    pub user: String,
    /// The transport.
    pub transport: Transport,
    /// The registered Contact URI (stable across reconnects).
    pub contact: String,
    topo: Arc<Topology>,
    endpoint: Arc<Endpoint>,
    attachment: Mutex<Attachment>,
    counter: AtomicU64,
    /// REGISTER Call-ID and CSeq (RFC 3261 §10.2.4: same Call-ID, increasing CSeq).
    reg_call_id: String,
    reg_cseq: AtomicU64,
    run: u64,
}

impl Agent {
    /// Creates agent `id` and opens its link (a UDP socket, or a connection to `home`).
    pub async fn start(
        id: usize,
        transport: Transport,
        home: NodeIx,
        topo: Arc<Topology>,
        run: u64,
    ) -> Result<Arc<Self>, OpFailure> {
        let user = format!("u{id}");
        let tag = format!("t{run:x}{id}");
        let endpoint = Endpoint::new(&user, String::new(), tag);
        let (contact, attachment) = match transport {
            Transport::Udp => {
                let (link, local) = link::open_udp(AGENT_IP, Arc::clone(&endpoint))
                    .await
                    .map_err(|_| OpFailure::Send)?;
                (
                    format!("sip:{user}@{local}"),
                    Attachment {
                        link: Some(link),
                        home,
                        sent_by: local.to_string(),
                        generation: 0,
                        acked_until: None,
                        orphaned: false,
                    },
                )
            }
            Transport::Tcp | Transport::Ws => {
                let token = transport.via_token().to_ascii_lowercase();
                (
                    format!("sip:{user}@{user}-{run:x}.invalid;transport={token}"),
                    Attachment {
                        link: None,
                        home,
                        sent_by: format!("{user}-{run:x}.invalid"),
                        generation: 0,
                        acked_until: None,
                        orphaned: false,
                    },
                )
            }
        };
        endpoint.set_contact(contact.clone());
        let agent = Arc::new(Self {
            id,
            user,
            transport,
            contact,
            topo,
            endpoint,
            attachment: Mutex::new(attachment),
            counter: AtomicU64::new(0),
            reg_call_id: format!("reg-{run:x}-{id}"),
            reg_cseq: AtomicU64::new(0),
            run,
        });
        if transport.is_stream() {
            agent.connect(home).await?;
        }
        Ok(agent)
    }

    fn attachment(&self) -> std::sync::MutexGuard<'_, Attachment> {
        self.attachment
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// (Re)connects a stream agent to node `node`; the registration must be renewed after.
    pub async fn connect(&self, node: NodeIx) -> Result<Arc<Closed>, OpFailure> {
        let addrs = self.topo.node(node).ok_or(OpFailure::NoRoute)?;
        let (link, _) = match self.transport {
            Transport::Udp => return Err(OpFailure::NoRoute),
            Transport::Tcp => link::open_tcp(addrs.tcp, Arc::clone(&self.endpoint)).await?,
            Transport::Ws => link::open_ws(addrs.ws, Arc::clone(&self.endpoint)).await?,
        };
        let closed = match &link {
            Link::Stream { closed, .. } => Arc::clone(closed),
            Link::Udp(_) => return Err(OpFailure::NoRoute),
        };
        let mut a = self.attachment();
        a.link = Some(link);
        a.home = node;
        a.generation += 1;
        a.acked_until = None;
        a.orphaned = false;
        Ok(closed)
    }

    /// The current connection's end signal (stream agents).
    pub fn closed(&self) -> Option<Arc<Closed>> {
        match &self.attachment().link {
            Some(Link::Stream { closed, .. }) => Some(Arc::clone(closed)),
            _ => None,
        }
    }

    /// Drops the acknowledged registration: the connection it was bound to is gone.
    pub fn connection_lost(&self) {
        self.attachment().acked_until = None;
    }

    /// The node holding this agent's connection failed: its flow counts as gone (and its
    /// registration with it) until it registers again, even while the socket stays open.
    pub fn orphan(&self) {
        let mut a = self.attachment();
        a.orphaned = true;
        a.acked_until = None;
    }

    /// Whether the agent's socket or connection is open (whatever the cluster's rules say of
    /// its flow).
    pub fn link_open(&self) -> bool {
        self.attachment()
            .link
            .as_ref()
            .is_some_and(|l| !l.is_closed())
    }

    /// The node the agent registered through or is connected to.
    pub fn home(&self) -> NodeIx {
        self.attachment().home
    }

    /// How the agent is attached now.
    pub fn attach(&self) -> Attach {
        Attach {
            transport: self.transport,
            home: self.home(),
        }
    }

    /// Connection generation (bumped at every reconnect).
    pub fn generation(&self) -> u64 {
        self.attachment().generation
    }

    /// Whether the agent's last registration was acknowledged and has not expired.
    pub fn registered(&self, now: Instant) -> bool {
        self.attachment().acked_until.is_some_and(|t| t > now)
    }

    /// Whether the agent can be reached right now (UDP: always; stream: connection open and
    /// not orphaned by the failure of the node holding it).
    pub fn reachable(&self) -> bool {
        let a = self.attachment();
        !a.orphaned && a.link.as_ref().is_some_and(|l| !l.is_closed())
    }

    /// Takes the count of requests that reached this agent but were meant for another user.
    pub fn take_misdelivered(&self) -> u64 {
        self.endpoint.take_misdelivered()
    }

    /// Requests answered by this agent so far.
    pub fn received(&self) -> u64 {
        self.endpoint.received()
    }

    /// The AOR.
    pub fn aor(&self) -> String {
        format!("sip:{}@{}", self.user, self.topo.domain)
    }

    fn next(&self) -> u64 {
        self.counter.fetch_add(1, Ordering::Relaxed)
    }

    fn branch(&self) -> String {
        format!("z9hG4bK{:x}x{}x{}", self.run, self.id, self.next())
    }

    fn via(&self, branch: &str) -> String {
        let a = self.attachment();
        let rport = if self.transport == Transport::Udp {
            ";rport"
        } else {
            ""
        };
        format!(
            "SIP/2.0/{} {};branch={branch}{rport}",
            self.transport.via_token(),
            a.sent_by
        )
    }

    /// The link and destination for a request entering at `entry` (ignored by stream agents,
    /// whose requests go over their connection).
    fn route(&self, entry: NodeIx) -> Result<(Link, SocketAddr), OpFailure> {
        let a = self.attachment();
        let link = a.link.clone().ok_or(OpFailure::NoConnection)?;
        let node = self.topo.node(entry).ok_or(OpFailure::NoRoute)?;
        Ok((link, node.udp))
    }

    /// Sends a request built for `branch` into node `entry` and waits for its final response,
    /// retransmitting over UDP (RFC 3261 §17.1.2.2).
    async fn transaction(
        &self,
        entry: NodeIx,
        build: impl FnOnce(&str) -> Bytes,
    ) -> Result<Message, OpFailure> {
        let (link, to) = self.route(entry)?;
        let branch = self.branch();
        let bytes = build(&branch);
        let mut rx = self.endpoint.expect(&branch);
        let result = async {
            link.send(bytes.clone(), to)?;
            let deadline = tokio::time::Instant::now() + TRANSACTION_TIMEOUT;
            let mut interval = T1;
            let mut resend = tokio::time::Instant::now() + interval;
            loop {
                let wake = if link.is_unreliable() {
                    resend.min(deadline)
                } else {
                    deadline
                };
                match timeout_at(wake, rx.recv()).await {
                    Ok(Some(msg)) => {
                        if msg.status().is_some_and(|s| s.0 >= 200) {
                            return Ok(msg);
                        }
                    }
                    Ok(None) => return Err(OpFailure::NoConnection),
                    Err(_) if tokio::time::Instant::now() >= deadline => {
                        return Err(OpFailure::Timeout);
                    }
                    Err(_) => {
                        if link.is_closed() {
                            return Err(OpFailure::NoConnection);
                        }
                        link.send(bytes.clone(), to)?;
                        interval = (interval * 2).min(Duration::from_secs(4));
                        resend = tokio::time::Instant::now() + interval;
                    }
                }
            }
        }
        .await;
        self.endpoint.forget(&branch);
        result
    }

    /// REGISTERs the Contact for `expires` seconds through node `entry` (RFC 3261 §10.2).
    pub async fn register(&self, entry: NodeIx, expires: u32) -> Result<(), OpFailure> {
        let aor = self.aor();
        let cseq = self.reg_cseq.fetch_add(1, Ordering::SeqCst) + 1;
        let generation = self.generation();
        let sent = Instant::now();
        let answer = self
            .transaction(entry, |branch| {
                RequestBuilder::new(Method::Register, format!("sip:{}", self.topo.domain))
                    .header("Via", self.via(branch))
                    .header("Max-Forwards", "70")
                    .header("From", format!("<{aor}>;tag=r{}", self.next()))
                    .header("To", format!("<{aor}>"))
                    .header("Call-ID", &self.reg_call_id)
                    .header("CSeq", format!("{cseq} REGISTER"))
                    .header("Contact", format!("<{}>", self.contact))
                    .header("Expires", expires.to_string())
                    .build()
            })
            .await?;
        let code = answer.status().map_or(0, |s| s.0);
        if code != 200 {
            return Err(OpFailure::Status(code));
        }
        let mut a = self.attachment();
        if a.generation == generation {
            a.acked_until = Some(sent + Duration::from_secs(u64::from(expires)));
            a.orphaned = false;
            if self.transport == Transport::Udp {
                a.home = entry;
            }
        }
        Ok(())
    }

    /// REGISTERs `contact` for another AOR `aor` through node `entry` (fencing probes) and
    /// returns the final status.
    pub async fn register_as(
        &self,
        entry: NodeIx,
        aor: &str,
        contact: &str,
        expires: u32,
    ) -> Result<u16, OpFailure> {
        let n = self.next();
        let answer = self
            .transaction(entry, |branch| {
                RequestBuilder::new(Method::Register, format!("sip:{}", self.topo.domain))
                    .header("Via", self.via(branch))
                    .header("Max-Forwards", "70")
                    .header("From", format!("<{aor}>;tag=f{n}"))
                    .header("To", format!("<{aor}>"))
                    .header("Call-ID", format!("f-{:x}-{}-{n}", self.run, self.id))
                    .header("CSeq", "1 REGISTER")
                    .header("Contact", format!("<{contact}>"))
                    .header("Expires", expires.to_string())
                    .build()
            })
            .await?;
        Ok(answer.status().map_or(0, |s| s.0))
    }

    /// Asks node `entry` for the bindings of `aor` (a REGISTER without Contact, RFC 3261
    /// §10.2.3) and says whether `contact` is among them.
    pub async fn query_binding(
        &self,
        entry: NodeIx,
        aor: &str,
        contact: &str,
    ) -> Result<bool, OpFailure> {
        let n = self.next();
        let answer = self
            .transaction(entry, |branch| {
                RequestBuilder::new(Method::Register, format!("sip:{}", self.topo.domain))
                    .header("Via", self.via(branch))
                    .header("Max-Forwards", "70")
                    .header("From", format!("<{aor}>;tag=q{n}"))
                    .header("To", format!("<{aor}>"))
                    .header("Call-ID", format!("q-{:x}-{}-{n}", self.run, self.id))
                    .header("CSeq", "1 REGISTER")
                    .build()
            })
            .await?;
        match answer.status().map_or(0, |s| s.0) {
            200 => Ok(lists_contact(&answer, contact)),
            code => Err(OpFailure::Status(code)),
        }
    }

    /// Sends a MESSAGE to `to_user` through node `entry` (RFC 3428); `expect` is the status
    /// that counts as success (200, or 480 for a user whose flow died).
    pub async fn message(
        &self,
        entry: NodeIx,
        to_user: &str,
        expect: u16,
    ) -> Result<(), OpFailure> {
        let n = self.next();
        let domain = &self.topo.domain;
        let answer = self
            .transaction(entry, |branch| {
                RequestBuilder::new(Method::Message, format!("sip:{to_user}@{domain}"))
                    .header("Via", self.via(branch))
                    .header("Max-Forwards", "70")
                    .header("From", format!("<{}>;tag=m{n}", self.aor()))
                    .header("To", format!("<sip:{to_user}@{domain}>"))
                    .header("Call-ID", format!("m-{:x}-{}-{n}", self.run, self.id))
                    .header("CSeq", "1 MESSAGE")
                    .body("text/plain", Bytes::from(format!("hello {n}")))
                    .build()
            })
            .await?;
        match answer.status().map_or(0, |s| s.0) {
            code if code == expect => Ok(()),
            code => Err(OpFailure::Status(code)),
        }
    }

    /// Places a call to `callee` through node `entry`; on 2xx sends the ACK through node
    /// `ack_entry` and returns the dialog (RFC 3261 §13.2).
    pub async fn invite(
        &self,
        entry: NodeIx,
        ack_entry: NodeIx,
        callee: &Self,
    ) -> Result<Dialog, OpFailure> {
        let n = self.next();
        let domain = &self.topo.domain;
        let ruri = format!("sip:{}@{domain}", callee.user);
        let local = format!("<{}>;tag=i{n}", self.aor());
        let call_id = format!("i-{:x}-{}-{n}", self.run, self.id);
        let callee_generation = callee.generation();
        let mut invite_via = String::new();
        let answer = self
            .transaction(entry, |branch| {
                invite_via = self.via(branch);
                RequestBuilder::new(Method::Invite, ruri.clone())
                    .header("Via", &invite_via)
                    .header("Max-Forwards", "70")
                    .header("From", &local)
                    .header("To", format!("<{ruri}>"))
                    .header("Call-ID", &call_id)
                    .header("CSeq", "1 INVITE")
                    .header("Contact", format!("<{}>", self.contact))
                    .build()
            })
            .await?;
        let code = answer.status().map_or(0, |s| s.0);
        if code >= 300 {
            // RFC 3261 §17.1.1.3: the ACK for a non-2xx final is part of the transaction.
            let to = answer
                .header(&sipmesh_protocol::HeaderName::To)
                .and_then(|h| h.value_str())
                .unwrap_or_default()
                .to_owned();
            let ack = RequestBuilder::new(Method::Ack, ruri.clone())
                .header("Via", &invite_via)
                .header("Max-Forwards", "70")
                .header("From", &local)
                .header("To", to)
                .header("Call-ID", &call_id)
                .header("CSeq", "1 ACK")
                .build();
            if let Ok((link, to)) = self.route(entry) {
                let _ = link.send(ack, to);
            }
            return Err(OpFailure::Status(code));
        }
        let dialog =
            Dialog::from_answer(&answer, local, self.id, callee.id, callee_generation, entry)
                .ok_or(OpFailure::Malformed)?;
        self.in_dialog(&dialog, ack_entry, Method::Ack, 1)?;
        Ok(dialog)
    }

    /// Builds an in-dialog request (RFC 3261 §12.2.1.1): Request-URI the remote target, Route
    /// the route set.
    fn in_dialog_request(&self, d: &Dialog, method: Method, cseq: u32, branch: &str) -> Bytes {
        let mut b = RequestBuilder::new(method.clone(), d.remote_target.clone())
            .header("Via", self.via(branch))
            .header("Max-Forwards", "70");
        for route in &d.route_set {
            b = b.header("Route", route);
        }
        b.header("From", &d.local)
            .header("To", &d.remote)
            .header("Call-ID", &d.call_id)
            .header("CSeq", format!("{cseq} {}", method.as_str()))
            .build()
    }

    /// Sends a request that has no response (ACK) into node `entry`.
    fn in_dialog(
        &self,
        d: &Dialog,
        entry: NodeIx,
        method: Method,
        cseq: u32,
    ) -> Result<(), OpFailure> {
        let (link, to) = self.route(entry)?;
        let branch = self.branch();
        link.send(self.in_dialog_request(d, method, cseq, &branch), to)
    }

    /// Ends the dialog with a BYE entering at node `entry`; success is a 200.
    pub async fn bye(&self, d: &Dialog, entry: NodeIx) -> Result<(), OpFailure> {
        let answer = self
            .transaction(entry, |branch| {
                self.in_dialog_request(d, Method::Bye, 2, branch)
            })
            .await?;
        match answer.status().map_or(0, |s| s.0) {
            200 => Ok(()),
            code => Err(OpFailure::Status(code)),
        }
    }
}
