//! A Redis Sentinel deployment for one test: a master, one replica (`--replicaof`) and one
//! sentinel (`redis-server CONF --sentinel`, quorum 1) on free loopback ports, tuned to fail
//! over fast (`down-after-milliseconds` 1000). Everything is killed when dropped.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::dir::TestDir;
use crate::redis_server::{RedisServer, free_port, redis_cli, wait_listening};

/// The service name the sentinel monitors.
pub const SENTINEL_SERVICE: &str = "mymaster";

/// Master, replica and sentinel; see the module documentation.
#[derive(Debug)]
pub struct RedisSentinelSetup {
    /// The first master (killed by [`RedisSentinelSetup::kill_master`]).
    master: RedisServer,
    /// The replica, promoted by a failover.
    replica: RedisServer,
    sentinel_port: u16,
    sentinel: Option<Child>,
    /// Holds the sentinel's config file (Sentinel rewrites it) and log.
    _dir: TestDir,
}

impl RedisSentinelSetup {
    /// Starts the three processes and waits (at most 10 s) until the replica is in sync and
    /// the sentinel knows it, so that a failover can happen. Config, logs and RDB files go to
    /// the test directory `<test_name>-redis`. Missing binaries fail the test.
    pub fn start(test_name: &str) -> Self {
        // Its own directory: a `Harness` of the same test name starts from an empty one.
        let dir = TestDir::new(&format!("{test_name}-redis")).unwrap_or_else(|e| panic!("{e}"));
        // Replication writes RDB files: keep them in the test directory, not the crate's.
        let data_dir = |name: &str| {
            let path = dir.file(name);
            std::fs::create_dir_all(&path)
                .unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
            path.display().to_string()
        };
        let (master_dir, replica_dir) = (data_dir("master"), data_dir("replica"));
        let master = RedisServer::start_with(&["--dir", &master_dir]);
        let master_port = master.port().to_string();
        let replica = RedisServer::start_with(&[
            "--dir",
            &replica_dir,
            "--replicaof",
            "127.0.0.1",
            &master_port,
        ]);
        let sentinel_port = free_port();
        let conf = dir.file("sentinel.conf");
        let text = format!(
            "port {sentinel_port}\nbind 127.0.0.1\ndaemonize no\n\
             logfile \"{log}\"\n\
             sentinel monitor {SENTINEL_SERVICE} 127.0.0.1 {master_port} 1\n\
             sentinel down-after-milliseconds {SENTINEL_SERVICE} 1000\n\
             sentinel failover-timeout {SENTINEL_SERVICE} 3000\n\
             sentinel parallel-syncs {SENTINEL_SERVICE} 1\n",
            log = dir.file("sentinel.log").display(),
        );
        std::fs::write(&conf, text).unwrap_or_else(|e| panic!("writing {}: {e}", conf.display()));
        let sentinel = Command::new("redis-server")
            .arg(&conf)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start redis-server --sentinel ({e}): install the Debian package \
                     with `apt-get install redis-server`"
                )
            });
        wait_listening(sentinel_port);
        let setup = Self {
            master,
            replica,
            sentinel_port,
            sentinel: Some(sentinel),
            _dir: dir,
        };
        setup.wait_ready(Duration::from_secs(10));
        setup
    }

    fn wait_ready(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let synced = self
                .replica
                .cli(&["INFO", "replication"])
                .contains("master_link_status:up");
            let replicas = redis_cli(
                self.sentinel_port,
                &["SENTINEL", "replicas", SENTINEL_SERVICE],
            );
            let known = replicas.contains(&self.replica.port().to_string())
                && !replicas.contains("disconnected");
            if synced && known {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "sentinel setup not ready within {limit:?} (replica synced: {synced}, \
                 sentinel knows it: {known}): {replicas}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `redis+sentinel://127.0.0.1:PORT/mymaster`.
    pub fn url(&self) -> String {
        format!(
            "redis+sentinel://127.0.0.1:{}/{SENTINEL_SERVICE}",
            self.sentinel_port
        )
    }

    /// The master.
    pub fn master(&self) -> &RedisServer {
        &self.master
    }

    /// The replica (the master after a failover).
    pub fn replica(&self) -> &RedisServer {
        &self.replica
    }

    /// Runs a command on the sentinel with `redis-cli` and returns the raw output.
    pub fn sentinel_cli(&self, args: &[&str]) -> String {
        redis_cli(self.sentinel_port, args)
    }

    /// The port the sentinel names as master right now.
    pub fn master_port_by_sentinel(&self) -> Option<u16> {
        let out = redis_cli(
            self.sentinel_port,
            &["SENTINEL", "get-master-addr-by-name", SENTINEL_SERVICE],
        );
        out.lines().nth(1).and_then(|p| p.trim().parse().ok())
    }

    /// Waits until the replica has everything the master has written (`master_repl_offset`
    /// equal on both, at most 5 s).
    pub fn wait_replicated(&self) {
        let offset = |s: &RedisServer| {
            s.cli(&["INFO", "replication"]).lines().find_map(|l| {
                l.trim()
                    .strip_prefix("master_repl_offset:")?
                    .parse::<u64>()
                    .ok()
            })
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let (m, r) = (offset(&self.master), offset(&self.replica));
            if m.is_some() && m == r {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "replica not caught up within 5 s (master {m:?}, replica {r:?})"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILLs the replica (the master then has none to `WAIT` for).
    pub fn kill_replica(&mut self) {
        self.replica.stop();
    }

    /// SIGKILLs the master (no shutdown, no final sync).
    pub fn kill_master(&mut self) {
        self.master.stop();
    }
}

impl Drop for RedisSentinelSetup {
    fn drop(&mut self) {
        if let Some(mut child) = self.sentinel.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
