//! Measures what the AOR actors cost: memory per live actor (and whether idle ones go), a
//! REGISTER that creates an actor, and a lookup through an actor with and without its binding
//! cache, against the store called directly; memory store and a real `redis-server`.
//!
//! ```sh
//! cargo run --release -p sipmesh-actors --example registrar_lookup_cost
//! ```
//!
//! Prints, per store and path, the mean latency of one lookup at a time and the throughput with
//! 256 lookups in flight over 1,000 AORs.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use sipmesh_actors::location::{
    LocationStore, MemoryLocationStore, RedisLocationStore, RedisStoreConfig,
};
use sipmesh_actors::registrar::{Registrar, RegistrarConfig};
use sipmesh_protocol::peer::Transport;
use sipmesh_protocol::registrar::{
    Aor, ContactInput, RegisterRequest, RegistrarPolicy, RequestContacts, Source,
};
use sipmesh_test_support::RedisServer;

const AORS: usize = 1000;
const IN_FLIGHT: usize = 256;

fn aor(i: usize) -> Aor {
    Aor::from_uri(format!("sip:user{i}@example.com").as_bytes()).unwrap_or_else(|e| panic!("{e}"))
}

fn request(i: usize, c: usize) -> RegisterRequest {
    RegisterRequest {
        aor: aor(i),
        call_id: Bytes::from(format!("call-{i}-{c}")),
        cseq: 1,
        contacts: RequestContacts::List(vec![ContactInput {
            expires: Some(3600),
            ..ContactInput::new(Bytes::from(format!("sip:user{i}@192.0.2.{c}:5060")))
        }]),
        expires_header: None,
        path: Vec::new(),
        supports_path: false,
        source: Source {
            remote: "192.0.2.1:5060".parse().unwrap_or_else(|e| panic!("{e}")),
            transport: Transport::Udp,
            local: "198.51.100.1:5060"
                .parse()
                .unwrap_or_else(|e| panic!("{e}")),
            connection: None,
        },
    }
}

/// Mean latency of one lookup at a time, and lookups/s with `IN_FLIGHT` in flight.
async fn measure<F, Fut>(n: usize, lookup: F) -> (Duration, f64)
where
    F: Fn(Aor) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = usize> + Send,
{
    let started = Instant::now();
    for i in 0..n {
        assert_eq!(lookup(aor(i % AORS)).await, 2);
    }
    let latency = started.elapsed() / n as u32;
    let started = Instant::now();
    let per_task = n / IN_FLIGHT;
    let tasks: Vec<_> = (0..IN_FLIGHT)
        .map(|t| {
            let lookup = lookup.clone();
            tokio::spawn(async move {
                for i in 0..per_task {
                    assert_eq!(lookup(aor((t * 7 + i) % AORS)).await, 2);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap_or_else(|e| panic!("{e}"));
    }
    let rate = (per_task * IN_FLIGHT) as f64 / started.elapsed().as_secs_f64();
    (latency, rate)
}

async fn run<S: LocationStore>(name: &str, store: Arc<S>, config: RegistrarConfig, n: usize) {
    let registrar = Registrar::start(Arc::clone(&store), config)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for i in 0..AORS {
        for c in 0..2 {
            // A loaded machine can push a REGISTER past its deadline (503): try again.
            let mut tries = 0;
            while registrar
                .register(request(i, c), RegistrarPolicy::default())
                .await
                .is_err()
            {
                tries += 1;
                assert!(tries < 5, "REGISTER kept failing");
            }
        }
    }
    let direct = {
        let store = Arc::clone(&store);
        move |aor: Aor| {
            let store = Arc::clone(&store);
            async move {
                let found = store.lookup(&aor, SystemTime::now()).await;
                found.map(|b| b.len()).unwrap_or(0)
            }
        }
    };
    let through = {
        let registrar = registrar.clone();
        move |aor: Aor| {
            let registrar = registrar.clone();
            async move { registrar.lookup(&aor).await.map(|b| b.len()).unwrap_or(0) }
        }
    };
    let (lat, rate) = measure(n, direct).await;
    println!("{name:6} store directly             {lat:>10.1?}/lookup  {rate:>10.0} lookups/s");
    let label = format!(
        "actor, cache {}, inline {}",
        if config.cache_lookups { "on " } else { "off" },
        if config.inline_when_idle {
            "on "
        } else {
            "off"
        },
    );
    let (lat, rate) = measure(n, through).await;
    println!("{name:6} {label} {lat:>10.1?}/lookup  {rate:>10.0} lookups/s");
    registrar.shutdown();
}

/// REGISTERs of distinct AORs (each creates an actor: `inline_without_actor` is off here)
/// through the registrar, and directly.
async fn distinct_registers(n: usize) {
    let store = Arc::new(MemoryLocationStore::new());
    let started = Instant::now();
    for i in 0..n {
        let policy = RegistrarPolicy::default();
        let r = store
            .register(request(i, 0), &policy, SystemTime::now())
            .await;
        assert!(r.is_ok());
    }
    let direct = started.elapsed() / n as u32;
    let registrar = Registrar::start(
        Arc::new(MemoryLocationStore::new()),
        RegistrarConfig {
            cache_lookups: false,
            ..RegistrarConfig::default()
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let started = Instant::now();
    for i in 0..n {
        let r = registrar
            .register(request(i, 0), RegistrarPolicy::default())
            .await;
        assert!(r.is_ok());
    }
    let through = started.elapsed() / n as u32;
    let started = Instant::now();
    for i in 0..n {
        let r = registrar
            .register(request(i, 1), RegistrarPolicy::default())
            .await;
        assert!(r.is_ok());
    }
    let again = started.elapsed() / n as u32;
    println!(
        "memory REGISTER of {n} distinct AORs: store {direct:.1?}, registrar (new actor) \
         {through:.1?}, registrar (live actor) {again:.1?}; {} actors",
        registrar.live_actors()
    );
    registrar.shutdown();
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Memory of live actors, and whether idle ones go.
async fn actor_memory(n: usize) {
    let registrar = Registrar::start(
        Arc::new(MemoryLocationStore::new()),
        RegistrarConfig {
            cache_lookups: false,
            idle_after: Duration::from_secs(3600),
            ..RegistrarConfig::default()
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let before = rss_kib();
    for i in 0..n {
        let r = registrar
            .register(request(i, 0), RegistrarPolicy::default())
            .await;
        assert!(r.is_ok());
    }
    let live = registrar.live_actors();
    let with_actors = rss_kib();
    registrar.shutdown();
    tokio::time::sleep(Duration::from_secs(2)).await;
    println!(
        "{n} registrations: RSS +{} B each with {live} actors; +{} B each once they stopped",
        (with_actors - before) * 1024 / n as u64,
        rss_kib().saturating_sub(before) * 1024 / n as u64,
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    actor_memory(100_000).await;
    distinct_registers(100_000).await;
    for (cache, inline) in [(false, false), (true, false), (false, true)] {
        let config = RegistrarConfig {
            cache_lookups: cache,
            inline_when_idle: inline,
            ..RegistrarConfig::default()
        };
        run(
            "memory",
            Arc::new(MemoryLocationStore::new()),
            config,
            200_000,
        )
        .await;
    }
    let redis = RedisServer::start();
    for cache in [true, false] {
        let config = RedisStoreConfig {
            key_prefix: format!("bench:{cache}:"),
            ..RedisStoreConfig::new(redis.url())
        };
        let store = RedisLocationStore::new(&config).unwrap_or_else(|e| panic!("{e}"));
        let config = RegistrarConfig {
            cache_lookups: cache,
            ..RegistrarConfig::default()
        };
        run("redis", Arc::new(store), config, 20_000).await;
    }
}
