//! A real cluster for the `cluster*` tests: one `redis-server` and `sipmesh` processes on
//! 127.0.K.11.. (K from the test's name, see [`member_ip`]), observed through each node's
//! `GET /cluster`.

#![allow(dead_code)]

pub(crate) mod calls;

use std::net::{IpAddr, Ipv4Addr};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use sipmesh_test_support::{
    NodeOptions, RawMessage, RawRequest, RedisCluster, RedisServer, SipmeshNode, Target, TcpPeer,
    TestDir, UdpPeer, ViaTransport,
};

/// The binary under test.
pub(crate) const SIPMESH: &str = env!("CARGO_BIN_EXE_sipmesh");

/// The SIP domain every member serves.
pub(crate) const DOMAIN: &str = "cluster.example.com";

/// The failure detector's promise.
pub(crate) const DETECTION_LIMIT: Duration = Duration::from_secs(3);

/// The address of member `i` (0-based) of `test`'s cluster: 127.0.K.(11 + i), with K in 1..=250
/// derived from the test's name. Cluster tests run in parallel; on addresses of their own, one
/// test's nodes can never take a port another test's nodes picked (a shared 127.0.0.11..13 let
/// an outgoing socket of one cluster land on a heartbeat port chosen by another).
pub(crate) fn member_ip(test: &str, i: u8) -> IpAddr {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    test.hash(&mut hasher);
    let k = u8::try_from(1 + hasher.finish() % 250).unwrap_or(1);
    IpAddr::V4(Ipv4Addr::new(127, 0, k, 11 + i))
}

/// A running cluster; everything is killed on drop.
pub(crate) struct Cluster {
    pub(crate) nodes: Vec<SipmeshNode>,
    _dirs: Vec<TestDir>,
    pub(crate) redis: RedisServer,
    /// With [`Self::start_on_redis_cluster`]: the Redis Cluster every node uses (`redis` is
    /// then unused).
    pub(crate) rcluster: Option<RedisCluster>,
}

impl Cluster {
    /// Starts Redis and `n` nodes `node1..noden` on [`member_ip`]s; every node but the first
    /// is seeded with the first only, so the full mesh has to be learned.
    pub(crate) fn start(test: &str, n: u8) -> Self {
        Self::start_with(test, n, &[])
    }

    /// Like [`Self::start`], with `args` added to every node's command line.
    pub(crate) fn start_with(test: &str, n: u8, args: &[String]) -> Self {
        Self::start_each(test, n, |_, _| args.to_vec())
    }

    /// Like [`Self::start`], with `args(i, ip)` added to node `i`'s (0-based) command line.
    pub(crate) fn start_each(
        test: &str,
        n: u8,
        args: impl Fn(usize, IpAddr) -> Vec<String>,
    ) -> Self {
        Self::start_on(test, n, None, args)
    }

    /// Like [`Self::start_with`], every node on a 3-master Redis Cluster
    /// (`--redis redis+cluster://…`, also the cluster layer's store).
    pub(crate) fn start_on_redis_cluster(test: &str, n: u8, args: &[String]) -> Self {
        let rcluster = RedisCluster::start(test, 3);
        Self::start_on(test, n, Some(rcluster), |_, _| args.to_vec())
    }

    fn start_on(
        test: &str,
        n: u8,
        rcluster: Option<RedisCluster>,
        args: impl Fn(usize, IpAddr) -> Vec<String>,
    ) -> Self {
        let redis = RedisServer::start();
        let url = rcluster
            .as_ref()
            .map_or_else(|| redis.url(), RedisCluster::url);
        let mut options: Vec<NodeOptions> = Vec::new();
        for i in 0..n {
            let ip = member_ip(test, i);
            let seeds = options
                .first()
                .and_then(NodeOptions::cluster_addr)
                .into_iter()
                .collect();
            let mut o = NodeOptions::on(ip)
                .with_test_hooks()
                .with_cluster(&format!("node{}", i + 1), seeds);
            o.log_filter = "info,sipmesh_cluster=debug".to_owned();
            o.domains.push(DOMAIN.to_owned());
            o.extra_args.extend(["--redis".to_owned(), url.clone()]);
            o.extra_args.extend(args(usize::from(i), ip));
            options.push(o);
        }
        let mut nodes = Vec::new();
        let mut dirs = Vec::new();
        for (i, o) in options.into_iter().enumerate() {
            let dir = TestDir::new(&format!("{test}-node{}", i + 1))
                .unwrap_or_else(|e| panic!("test dir: {e}"));
            let node = SipmeshNode::start(SIPMESH.as_ref(), Target::Sipmesh, &dir, o)
                .unwrap_or_else(|e| panic!("starting node{}: {e}", i + 1));
            nodes.push(node);
            dirs.push(dir);
        }
        Self {
            nodes,
            _dirs: dirs,
            redis,
            rcluster,
        }
    }

    /// `GET /cluster` of node `i` (0-based); `None` while it does not answer.
    pub(crate) fn view(&self, i: usize) -> Option<Value> {
        let (code, body) = self.nodes[i].admin("GET", "/cluster").ok()?;
        assert_eq!(code, 200, "GET /cluster: {body}");
        Some(serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}")))
    }

    /// Polls every 50 ms until `ok` holds or `limit` passes; panics with every node's log.
    pub(crate) fn wait(
        &self,
        what: &str,
        limit: Duration,
        mut ok: impl FnMut(&Self) -> bool,
    ) -> Duration {
        let start = Instant::now();
        while !ok(self) {
            if start.elapsed() > limit {
                let views: Vec<String> = (0..self.nodes.len())
                    .map(|i| format!("node{}: {:?}", i + 1, self.view(i)))
                    .collect();
                let logs: Vec<String> = self.nodes.iter().map(SipmeshNode::log_tail).collect();
                panic!(
                    "timed out after {limit:?} waiting for {what}\n{}\n\n{}",
                    views.join("\n"),
                    logs.join("\n-----\n")
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
        start.elapsed()
    }
}

/// The entry for member `id` in a view.
pub(crate) fn member<'a>(view: &'a Value, id: &str) -> Option<&'a Value> {
    view["members"].as_array()?.iter().find(|m| m["id"] == id)
}

pub(crate) fn state(view: &Value, id: &str) -> Option<String> {
    member(view, id).and_then(|m| m["state"].as_str().map(str::to_owned))
}

pub(crate) fn epoch(view: &Value, id: &str) -> Option<u64> {
    member(view, id).and_then(|m| m["epoch"].as_u64())
}

/// Every node answers and sees all `ids` live; peers have a ractor_cluster session and their
/// service routers are visible through the process groups.
pub(crate) fn all_live(c: &Cluster, ids: &[&str]) -> bool {
    (0..c.nodes.len()).all(|i| {
        c.view(i).is_some_and(|v| {
            ids.iter().all(|id| {
                state(&v, id).as_deref() == Some("live")
                    && member(&v, id)
                        .is_some_and(|m| m["is_self"] == true || m["connected"] == true)
            }) && v["live"].as_array().map(Vec::len) == Some(ids.len())
                && v["routers"][0]["remote"].as_u64() == Some(ids.len() as u64 - 1)
        })
    })
}

pub(crate) const IDS: [&str; 3] = ["node1", "node2", "node3"];

/// Connects to node `i` over TCP and registers `user` there as a flow (`;ob`, Call-ID from
/// `callid_prefix`); returns the connection.
pub(crate) fn register_tcp(
    c: &Cluster,
    i: usize,
    user: &str,
    cseq: u32,
    callid_prefix: &str,
    wait: Duration,
) -> TcpPeer {
    let mut peer = TcpPeer::connect(c.nodes[i].tcp_addr(), wait).unwrap_or_else(|e| panic!("{e}"));
    let local = peer.local_addr();
    let register = RawRequest::register(DOMAIN, user, local, callid_prefix, cseq)
        .set(
            "Via",
            format!("SIP/2.0/TCP {local};rport;branch=z9hG4bK-reg-{user}-{cseq}"),
        )
        .set("Contact", format!("<sip:{user}@{local};transport=tcp;ob>"));
    let ok = peer
        .request(&register, wait)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        ok.as_ref().and_then(RawMessage::status),
        Some(200),
        "REGISTER over TCP at node{}: {ok:?}",
        i + 1
    );
    peer
}

/// A MESSAGE to bob from `alice` (over UDP).
pub(crate) fn message(alice: &UdpPeer, text: &str) -> RawRequest {
    RawRequest::new(
        "MESSAGE",
        &format!("sip:bob@{DOMAIN}"),
        ViaTransport::Udp,
        alice.local_addr(),
    )
    .body("text/plain", text)
}

/// Sends a MESSAGE into `node` until bob (on `bob`) gets it and answers 200, which must reach
/// the sender; panics after `settle`. Returns the time of the successful round.
pub(crate) fn message_reaches(
    c: &Cluster,
    node: usize,
    bob: &mut TcpPeer,
    text: &str,
    settle: Duration,
) -> Duration {
    let wait = Duration::from_secs(3);
    let alice = UdpPeer::bind(c.nodes[node].ip()).unwrap_or_else(|e| panic!("{e}"));
    let start = Instant::now();
    loop {
        let sent = Instant::now();
        alice
            .send(c.nodes[node].udp_addr(), &message(&alice, text).to_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
        if let Some(m) = bob.recv(Duration::from_millis(1500)) {
            assert_eq!(m.method(), Some("MESSAGE"), "{m:?}");
            assert_eq!(m.body(), text.as_bytes());
            bob.send(&m.reply(200, "OK"))
                .unwrap_or_else(|e| panic!("{e}"));
            let answer = alice.recv_final(wait);
            assert_eq!(
                answer.as_ref().and_then(RawMessage::status),
                Some(200),
                "{answer:?}"
            );
            return sent.elapsed();
        }
        let answer = alice.recv_final(Duration::from_millis(200));
        assert!(
            start.elapsed() < settle,
            "the MESSAGE via node{} never reached bob (last answer {answer:?})\n{}\n-----\n{}",
            node + 1,
            c.nodes[node].log_tail(),
            c.nodes[0].log_tail()
        );
    }
}

/// Registers `user` over TCP (a flow, `;ob`) at node `i` until it is answered 200 (a node
/// that just rejoined answers 503 while it settles); panics after `settle`.
pub(crate) fn register_until_ok(
    c: &Cluster,
    i: usize,
    user: &str,
    cseq: u32,
    callid_prefix: &str,
    settle: Duration,
) -> TcpPeer {
    let wait = Duration::from_secs(3);
    let start = Instant::now();
    let mut cseq = cseq;
    loop {
        let mut peer =
            TcpPeer::connect(c.nodes[i].tcp_addr(), wait).unwrap_or_else(|e| panic!("{e}"));
        let local = peer.local_addr();
        let register = RawRequest::register(DOMAIN, user, local, callid_prefix, cseq)
            .set(
                "Via",
                format!("SIP/2.0/TCP {local};rport;branch=z9hG4bK-reg-{user}-{cseq}"),
            )
            .set("Contact", format!("<sip:{user}@{local};transport=tcp;ob>"));
        let answer = peer
            .request(&register, wait)
            .unwrap_or_else(|e| panic!("{e}"));
        let status = answer.as_ref().and_then(RawMessage::status);
        if status == Some(200) {
            return peer;
        }
        assert!(
            start.elapsed() < settle,
            "REGISTER at node{} still answered {answer:?}",
            i + 1
        );
        cseq += 1;
        thread::sleep(Duration::from_millis(200));
    }
}
