//! A real Redis Cluster for one test: N masters (`redis-server --cluster-enabled yes`, no
//! replicas) on free loopback ports, joined with `redis-cli --cluster create`, ready once every
//! node reports `cluster_state:ok`. Node files, configs and logs go to the test directory
//! `<test_name>-rcluster`; everything is killed when dropped. Missing binaries fail the test.

use std::time::{Duration, Instant};

use crate::dir::TestDir;
use crate::redis_server::{RedisServer, free_port, redis_cli};

/// The running masters; see the module documentation.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
    _dir: TestDir,
}

impl RedisCluster {
    /// Starts `masters` (at least 3, which `redis-cli --cluster create` requires) and waits (at
    /// most 15 s) until the cluster is formed and every node agrees it is `ok`.
    pub fn start(test_name: &str, masters: usize) -> Self {
        assert!(masters >= 3, "a Redis Cluster needs at least 3 masters");
        let dir = TestDir::new(&format!("{test_name}-rcluster")).unwrap_or_else(|e| panic!("{e}"));
        let nodes: Vec<RedisServer> = (0..masters)
            .map(|i| {
                let data = dir.file(&format!("node{i}"));
                std::fs::create_dir_all(&data)
                    .unwrap_or_else(|e| panic!("creating {}: {e}", data.display()));
                let data = data.display().to_string();
                // The bus port is chosen too: port + 10000 (the default) may not exist.
                let bus = free_port().to_string();
                RedisServer::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-port",
                    &bus,
                    "--cluster-node-timeout",
                    "2000",
                    // The other masters keep serving their slots while one is down.
                    "--cluster-require-full-coverage",
                    "no",
                    "--dir",
                    &data,
                    "--logfile",
                    &format!("{data}/redis.log"),
                ])
            })
            .collect();
        let cluster = Self { nodes, _dir: dir };
        let addrs: Vec<String> = cluster
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        let out = std::process::Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run redis-cli ({e}): install the Debian package with \
                     `apt-get install redis-tools`"
                )
            });
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        cluster.wait_ok(Duration::from_secs(15));
        cluster
    }

    fn wait_ok(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        let want_nodes = format!("cluster_known_nodes:{}", self.nodes.len());
        loop {
            let ready = self.nodes.iter().all(|n| {
                let info = n.cli(&["CLUSTER", "INFO"]);
                info.contains("cluster_state:ok")
                    && info.contains(&want_nodes)
                    && info.contains("cluster_slots_assigned:16384")
            });
            if ready {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the Redis Cluster was not ok within {limit:?}: {}",
                self.nodes
                    .first()
                    .map(|n| n.cli(&["CLUSTER", "INFO"]))
                    .unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The `redis+cluster://` URL naming every node as a seed.
    pub fn url(&self) -> String {
        let seeds: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        format!("redis+cluster://{}/", seeds.join(","))
    }

    /// The masters.
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// Kills master `i` (its slots stay unserved: there are no replicas).
    pub fn stop_node(&mut self, i: usize) {
        if let Some(node) = self.nodes.get_mut(i) {
            node.stop();
        }
    }

    /// The hash slot of `key` (`CLUSTER KEYSLOT`).
    pub fn keyslot(&self, key: &str) -> u16 {
        let out = self.nodes[0].cli(&["CLUSTER", "KEYSLOT", key]);
        out.trim()
            .parse()
            .unwrap_or_else(|_| panic!("CLUSTER KEYSLOT {key}: {out:?}"))
    }

    /// `DBSIZE` of each master, in order.
    pub fn dbsizes(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .map(|n| {
                let out = n.cli(&["DBSIZE"]);
                out.trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("DBSIZE: {out:?}"))
            })
            .collect()
    }

    /// Runs a command with `redis-cli -c` (follows `MOVED`) through the first node and returns
    /// the raw output.
    pub fn cli(&self, args: &[&str]) -> String {
        let mut all = vec!["-c"];
        all.extend_from_slice(args);
        redis_cli(self.nodes[0].port(), &all)
    }
}
