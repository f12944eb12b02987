//! `SipPair`: a client transaction and a server transaction joined by a simulated lossy link,
//! driven on a virtual clock (after quinn-proto's `tests/util.rs` `Pair`).
//!
//! Messages are tiny stand-ins for SIP: a request is its method (`INVITE`, `ACK`, `OPTIONS`), a
//! response is its status code in ASCII (`180`). The clock jumps straight to the earliest of the
//! machines' `poll_timeout` and the in-flight packets' arrival, so runs are exact and instant.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::transaction::{
    ClientInviteTx, ClientNonInviteTx, ServerInviteTx, ServerNonInviteTx, TimerConfig, TxEvent,
};

/// The side of the pair a machine sits on, seen from the harness.
pub(super) trait Machine {
    /// Next message to send.
    fn poll_transmit(&mut self) -> Option<Bytes>;
    /// Next deadline.
    fn poll_timeout(&self) -> Option<Instant>;
    /// Fire expired timers.
    fn handle_timeout(&mut self, now: Instant);
    /// Next event for the TU.
    fn poll_event(&mut self) -> Option<TxEvent>;
    /// A packet from the peer arrived (never the one that created a server transaction).
    fn receive(&mut self, now: Instant, packet: &Bytes);
}

/// The status code a stand-in response carries, `None` for a request.
fn status(packet: &Bytes) -> Option<u16> {
    std::str::from_utf8(packet).ok()?.parse().ok()
}

/// An INVITE client transaction plus a count of the ACKs its closure built.
#[derive(Debug)]
pub(super) struct InviteUac {
    /// The machine under test.
    pub(super) tx: ClientInviteTx,
    /// How many times the transaction asked for the ACK to be built.
    pub(super) acks_built: usize,
}

impl InviteUac {
    /// An INVITE client transaction started at `now`.
    pub(super) fn new(now: Instant, reliable: bool) -> Self {
        Self {
            tx: ClientInviteTx::new(
                now,
                Bytes::from_static(b"INVITE"),
                reliable,
                &TimerConfig::default(),
            ),
            acks_built: 0,
        }
    }
}

impl Machine for InviteUac {
    fn poll_transmit(&mut self) -> Option<Bytes> {
        self.tx.poll_transmit()
    }
    fn poll_timeout(&self) -> Option<Instant> {
        self.tx.poll_timeout()
    }
    fn handle_timeout(&mut self, now: Instant) {
        self.tx.handle_timeout(now);
    }
    fn poll_event(&mut self) -> Option<TxEvent> {
        self.tx.poll_event()
    }
    fn receive(&mut self, now: Instant, packet: &Bytes) {
        if let Some(code) = status(packet) {
            let built = &mut self.acks_built;
            self.tx.handle_response(now, code, || {
                *built += 1;
                Bytes::from_static(b"ACK")
            });
        }
    }
}

impl Machine for ClientNonInviteTx {
    fn poll_transmit(&mut self) -> Option<Bytes> {
        self.poll_transmit()
    }
    fn poll_timeout(&self) -> Option<Instant> {
        self.poll_timeout()
    }
    fn handle_timeout(&mut self, now: Instant) {
        self.handle_timeout(now);
    }
    fn poll_event(&mut self) -> Option<TxEvent> {
        self.poll_event()
    }
    fn receive(&mut self, now: Instant, packet: &Bytes) {
        if let Some(code) = status(packet) {
            self.handle_response(now, code);
        }
    }
}

impl Machine for ServerInviteTx {
    fn poll_transmit(&mut self) -> Option<Bytes> {
        self.poll_transmit()
    }
    fn poll_timeout(&self) -> Option<Instant> {
        self.poll_timeout()
    }
    fn handle_timeout(&mut self, now: Instant) {
        self.handle_timeout(now);
    }
    fn poll_event(&mut self) -> Option<TxEvent> {
        self.poll_event()
    }
    fn receive(&mut self, now: Instant, packet: &Bytes) {
        if packet.as_ref() == b"ACK" {
            self.handle_ack(now);
        } else {
            self.handle_retransmission(now);
        }
    }
}

impl Machine for ServerNonInviteTx {
    fn poll_transmit(&mut self) -> Option<Bytes> {
        self.poll_transmit()
    }
    fn poll_timeout(&self) -> Option<Instant> {
        self.poll_timeout()
    }
    fn handle_timeout(&mut self, now: Instant) {
        self.handle_timeout(now);
    }
    fn poll_event(&mut self) -> Option<TxEvent> {
        self.poll_event()
    }
    fn receive(&mut self, now: Instant, _packet: &Bytes) {
        self.handle_retransmission(now);
    }
}

/// Direction of a packet on the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dir {
    /// Client to server.
    ToServer,
    /// Server to client.
    ToClient,
}

/// One packet put on the link.
#[derive(Debug, Clone)]
pub(super) struct Packet {
    /// When it was sent, relative to the start.
    pub(super) at: Duration,
    /// Its direction.
    pub(super) dir: Dir,
    /// Its payload.
    pub(super) data: Bytes,
    /// Whether the link dropped it.
    pub(super) dropped: bool,
}

/// A link that delivers after a fixed latency and drops a scripted set of packets, counted per
/// direction from 0 in sending order.
#[derive(Debug, Default)]
pub(super) struct LossyLink {
    /// One-way latency.
    pub(super) latency: Duration,
    /// Indices of client-to-server packets to drop.
    pub(super) drop_to_server: BTreeSet<usize>,
    /// Indices of server-to-client packets to drop.
    pub(super) drop_to_client: BTreeSet<usize>,
    /// Drop every client-to-server packet from this index on.
    pub(super) drop_to_server_from: Option<usize>,
    /// Drop every server-to-client packet from this index on.
    pub(super) drop_to_client_from: Option<usize>,
    /// Packets sent so far to the server.
    sent_to_server: usize,
    /// Packets sent so far to the client.
    sent_to_client: usize,
}

impl LossyLink {
    /// Counts a packet in `dir` and says whether it is dropped.
    fn drops(&mut self, dir: Dir) -> bool {
        let (set, from, count) = match dir {
            Dir::ToServer => (
                &self.drop_to_server,
                self.drop_to_server_from,
                &mut self.sent_to_server,
            ),
            Dir::ToClient => (
                &self.drop_to_client,
                self.drop_to_client_from,
                &mut self.sent_to_client,
            ),
        };
        let index = *count;
        *count += 1;
        set.contains(&index) || from.is_some_and(|f| index >= f)
    }
}

/// Builds the server transaction when the first request reaches the server; may make the TU
/// answer at once through the machine's `send_response`.
pub(super) type NewServer<S> = Box<dyn FnMut(Instant) -> S>;

/// Upper bound on simulated time for [`SipPair::run`], so a bug cannot loop forever.
const RUN_LIMIT: Duration = Duration::from_secs(600);

/// A client and a server transaction over a [`LossyLink`], on a virtual clock.
pub(super) struct SipPair<C, S> {
    /// Time zero of the run.
    pub(super) start: Instant,
    /// Current virtual time.
    pub(super) now: Instant,
    /// The client transaction.
    pub(super) client: C,
    /// The server transaction, once the first request arrived.
    pub(super) server: Option<S>,
    /// Creates the server transaction.
    new_server: NewServer<S>,
    /// The link.
    pub(super) link: LossyLink,
    /// Packets in flight: arrival time, direction, payload.
    in_flight: Vec<(Instant, Dir, Bytes)>,
    /// Every packet sent, in order.
    pub(super) log: Vec<Packet>,
    /// Client events with the time (ms) they were drained.
    pub(super) client_events: Vec<(u64, TxEvent)>,
    /// Server events with the time (ms) they were drained.
    pub(super) server_events: Vec<(u64, TxEvent)>,
}

impl<C: Machine, S: Machine> SipPair<C, S> {
    /// A pair whose client is built by `client` at the start instant.
    pub(super) fn new(client: impl FnOnce(Instant) -> C, new_server: NewServer<S>) -> Self {
        let start = Instant::now();
        Self {
            start,
            now: start,
            client: client(start),
            server: None,
            new_server,
            link: LossyLink::default(),
            in_flight: Vec::new(),
            log: Vec::new(),
            client_events: Vec::new(),
            server_events: Vec::new(),
        }
    }

    /// Milliseconds since the start.
    pub(super) fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.now.duration_since(self.start).as_millis()).unwrap_or(u64::MAX)
    }

    /// The instant `ms` milliseconds after the start.
    pub(super) fn at(&self, ms: u64) -> Instant {
        self.start + Duration::from_millis(ms)
    }

    /// The server transaction; panics if no request reached the server yet.
    pub(super) fn server(&mut self) -> &mut S {
        self.server
            .as_mut()
            .expect("no request reached the server yet")
    }

    /// Puts a packet on the link, as the TU of the `dir` sender would (e.g. an ACK for a 2xx).
    pub(super) fn inject(&mut self, dir: Dir, data: &'static [u8]) {
        self.send(dir, Bytes::from_static(data));
        self.drive();
    }

    /// Times (ms) at which packets with payload `data` were sent in `dir`, dropped or not.
    pub(super) fn sent_ms(&self, dir: Dir, data: &[u8]) -> Vec<u64> {
        self.log
            .iter()
            .filter(|p| p.dir == dir && p.data.as_ref() == data)
            .map(|p| u64::try_from(p.at.as_millis()).unwrap_or(u64::MAX))
            .collect()
    }

    /// Times (ms) at which packets with payload `data` sent in `dir` were dropped by the link.
    pub(super) fn dropped_ms(&self, dir: Dir, data: &[u8]) -> Vec<u64> {
        self.log
            .iter()
            .filter(|p| p.dir == dir && p.dropped && p.data.as_ref() == data)
            .map(|p| u64::try_from(p.at.as_millis()).unwrap_or(u64::MAX))
            .collect()
    }

    /// Advances the virtual clock to `ms` after the start, processing everything due.
    pub(super) fn run_until(&mut self, ms: u64) {
        let limit = self.at(ms);
        loop {
            self.drive();
            match self.next_wakeup() {
                Some(t) if t <= limit => self.wake(t),
                _ => break,
            }
        }
        self.now = self.now.max(limit);
        self.drive();
    }

    /// Runs until nothing is pending on either side or on the link.
    pub(super) fn run(&mut self) {
        loop {
            self.drive();
            let Some(t) = self.next_wakeup() else { return };
            assert!(t <= self.start + RUN_LIMIT, "simulation did not settle");
            self.wake(t);
        }
    }

    /// The earliest timer deadline or packet arrival.
    fn next_wakeup(&self) -> Option<Instant> {
        let server = self.server.as_ref().and_then(Machine::poll_timeout);
        let link = self.in_flight.iter().map(|(t, _, _)| *t).min();
        [self.client.poll_timeout(), server, link]
            .into_iter()
            .flatten()
            .min()
    }

    /// Moves the clock to `t` and fires what is due there.
    fn wake(&mut self, t: Instant) {
        self.now = self.now.max(t);
        let now = self.now;
        if self.client.poll_timeout().is_some_and(|d| d <= now) {
            self.client.handle_timeout(now);
        }
        if let Some(server) = &mut self.server
            && server.poll_timeout().is_some_and(|d| d <= now)
        {
            server.handle_timeout(now);
        }
    }

    /// Records a packet and puts it in flight unless the link drops it.
    fn send(&mut self, dir: Dir, data: Bytes) {
        let dropped = self.link.drops(dir);
        self.log.push(Packet {
            at: self.now.duration_since(self.start),
            dir,
            data: data.clone(),
            dropped,
        });
        if !dropped {
            self.in_flight
                .push((self.now + self.link.latency, dir, data));
        }
    }

    /// Drains transmits and events and delivers due packets until nothing changes.
    fn drive(&mut self) {
        loop {
            let mut progress = false;
            while let Some(p) = self.client.poll_transmit() {
                self.send(Dir::ToServer, p);
                progress = true;
            }
            let mut out = Vec::new();
            if let Some(server) = &mut self.server {
                while let Some(p) = server.poll_transmit() {
                    out.push(p);
                }
            }
            for p in out {
                self.send(Dir::ToClient, p);
                progress = true;
            }
            let ms = self.elapsed_ms();
            while let Some(e) = self.client.poll_event() {
                self.client_events.push((ms, e));
            }
            if let Some(server) = &mut self.server {
                while let Some(e) = server.poll_event() {
                    self.server_events.push((ms, e));
                }
            }
            // Deliver the first due packet (in sending order), then loop to drain its effects.
            if let Some(i) = self.in_flight.iter().position(|(t, _, _)| *t <= self.now) {
                let (_, dir, data) = self.in_flight.remove(i);
                let now = self.now;
                match dir {
                    Dir::ToClient => self.client.receive(now, &data),
                    Dir::ToServer => match &mut self.server {
                        Some(server) => server.receive(now, &data),
                        None => self.server = Some((self.new_server)(now)),
                    },
                }
                progress = true;
            }
            if !progress {
                return;
            }
        }
    }
}

/// A server INVITE transaction whose TU sends nothing on its own.
pub(super) fn silent_invite_server() -> NewServer<ServerInviteTx> {
    Box::new(|now| ServerInviteTx::new(now, false, &TimerConfig::default()))
}

/// A server INVITE transaction whose TU answers `status` at once.
pub(super) fn invite_server_answering(
    status: u16,
    data: &'static [u8],
    reliable: bool,
) -> NewServer<ServerInviteTx> {
    Box::new(move |now| {
        let mut tx = ServerInviteTx::new(now, reliable, &TimerConfig::default());
        tx.send_response(now, status, Bytes::from_static(data))
            .expect("a fresh server transaction takes any response");
        tx
    })
}

/// A server non-INVITE transaction whose TU answers `status` at once, or stays silent.
pub(super) fn non_invite_server(
    answer: Option<(u16, &'static [u8])>,
    reliable: bool,
) -> NewServer<ServerNonInviteTx> {
    Box::new(move |now| {
        let mut tx = ServerNonInviteTx::new(now, reliable, &TimerConfig::default());
        if let Some((status, data)) = answer {
            tx.send_response(now, status, Bytes::from_static(data))
                .expect("a fresh server transaction takes any response");
        }
        tx
    })
}

/// A non-INVITE client transaction sending `OPTIONS`.
pub(super) fn options_client(reliable: bool) -> impl FnOnce(Instant) -> ClientNonInviteTx {
    move |now| {
        ClientNonInviteTx::new(
            now,
            Bytes::from_static(b"OPTIONS"),
            reliable,
            &TimerConfig::default(),
        )
    }
}
