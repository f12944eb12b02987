//! # sipmesh-node: a node's startup, configuration and shutdown
//!
//! [`run`] takes a validated [`config::NodeConfig`] and a shutdown future, starts the SIP engine
//! (transports, transaction shards, registrar and proxy) and, when the future completes, stops
//! accepting new requests and gives running transactions a bounded time to finish. A node with
//! `[cluster] listen` also starts its cluster layer ([`sipmesh_cluster::Membership`]) and serves
//! it on the admin endpoint's `GET /cluster`, and fences the Redis stores' owner writes with
//! its lease epoch ([`MembershipEpoch`]).

pub mod actor_counts;
pub mod admin;
pub mod cluster_flows;
pub mod config;
pub mod dev_cert;
pub mod fenced_flows;
pub mod index_repair;
pub mod lost_flows;
pub mod memory;
pub mod signalling;
pub mod takeover;

use std::future::Future;
use std::sync::{Arc, OnceLock};

use anyhow::Context;
use tracing::info;

use sipmesh_actors::engine::Engine;
use sipmesh_actors::fence::{EpochSource, Fence};
use sipmesh_actors::transport::TlsConfig;
use sipmesh_cluster::{ClusterConfig, Membership};
use sipmesh_protocol::proxy::{FlowTokenKey, Incarnation};

/// The stores' [`EpochSource`] on a clustered node: [`Membership::owner_epoch`] once the cluster
/// layer runs, fenced before (the engine starts first, and no lease exists yet).
#[derive(Debug, Clone, Default)]
pub struct MembershipEpoch(Arc<OnceLock<Membership>>);

impl MembershipEpoch {
    /// Starts answering from `membership` (a second call is ignored).
    pub fn set(&self, membership: Membership) {
        let _ = self.0.set(membership);
    }
}

impl EpochSource for MembershipEpoch {
    fn owner_epoch(&self) -> Option<u64> {
        self.0.get()?.owner_epoch().map(|e| e.0)
    }
}

/// The fence of a node clustered with `cluster`: its lease key `<prefix>node:<id>` (the layout
/// of `sipmesh_cluster::store`, docs/REDIS.md "Cluster keys") and `source`.
pub fn cluster_fence(cluster: &ClusterConfig, source: MembershipEpoch) -> Fence {
    Fence::new(
        format!("{}node:{}", cluster.key_prefix, cluster.node_id),
        Arc::new(source),
    )
}

/// What a clustered node's engine needs from the cluster before it starts: a fresh incarnation
/// (its connection ids say which process holds them), connection ids in Redis scoped by the
/// node id, and a flow-token key shared by every member (derived from the cookie unless
/// configured), so a Record-Route flow token written at one node verifies at any other.
async fn clustered_engine(
    cluster: &ClusterConfig,
    engine: &mut sipmesh_actors::engine::EngineConfig,
) -> anyhow::Result<()> {
    let store = sipmesh_cluster::store::ClusterStore::new(
        &cluster.redis_url,
        &cluster.key_prefix,
        cluster.timing.redis_timeout,
    )
    .context("cluster store")?;
    let counter = store
        .next_incarnation()
        .await
        .context("taking an incarnation number from Redis")?;
    engine.incarnation = Incarnation::from_counter(counter);
    info!(incarnation = %engine.incarnation, "cluster incarnation");
    if let Some(redis) = &mut engine.redis {
        redis.connection_scope = cluster.node_id.to_string();
    }
    if engine.flow_token_key.is_none() {
        engine.flow_token_key = Some(FlowTokenKey::new(sipmesh_cluster::flow::derived_key(
            &cluster.cookie,
            "sipmesh flow-token key",
        )));
    }
    Ok(())
}

/// Runs a node until `shutdown` completes, then shuts down gracefully.
pub async fn run(
    config: config::NodeConfig,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let epoch = MembershipEpoch::default();
    let mut engine_config = config.engine.clone();
    let signalling = if config.signalling_thread {
        let thread =
            signalling::SignallingThread::start().context("starting the signalling thread")?;
        engine_config.signalling = Some(thread.handle());
        Some(thread)
    } else {
        None
    };
    if let Some(cluster) = &config.cluster {
        engine_config.fence = Some(cluster_fence(cluster, epoch.clone()));
        clustered_engine(cluster, &mut engine_config).await?;
    }
    let engine = Engine::start(engine_config.clone())
        .await
        .context("starting the SIP engine")?;
    for (kind, addr) in engine.local_addrs() {
        info!(%kind, %addr, "listening");
    }
    let membership = match config.cluster.clone() {
        Some(cluster) => {
            let lease_prefix = cluster.key_prefix.clone();
            let membership = Membership::start(cluster)
                .await
                .context("starting the cluster layer")?;
            epoch.set(membership.clone());
            // In-dialog requests for dialogs another member owns are applied by visitors: the
            // dialog timer stays with the owner (docs/DESIGN-NOTES.md, "Cluster").
            let owner = membership.clone();
            engine.dialogs().set_owner_check(Arc::new(move |id| {
                owner.is_owner(&sipmesh_actors::dialog::takeover::placement_key(id))
            }));
            // A dialog confirmed here that another member owns is handed to it at once.
            let placement = membership.clone();
            engine.dialogs().set_owner_of(Arc::new(move |id| {
                let owner =
                    placement.owner_of(&sipmesh_actors::dialog::takeover::placement_key(id))?;
                (&owner != placement.node_id()).then(|| format!("{lease_prefix}node:{owner}"))
            }));
            Some(membership)
        }
        None => None,
    };
    let flows = match &membership {
        Some(_) => Some(
            cluster_flows::ClusterFlows::start(engine.flows())
                .await
                .context("starting the transport router")?,
        ),
        None => None,
    };
    let lost_flows = match (&membership, &engine_config.redis) {
        (Some(membership), Some(redis)) => {
            let store = sipmesh_actors::location::RedisLocationStore::new(redis)
                .map_err(|e| anyhow::anyhow!("location store for lost flows: {e}"))?
                .with_fence(engine_config.fence.clone());
            let fenced = fenced_flows::start(membership.clone(), engine.flows(), store.clone());
            Some((
                lost_flows::start(membership.clone(), store, engine_config.incarnation),
                fenced,
            ))
        }
        _ => None,
    };
    let takeover = match (&membership, &engine_config.redis, &config.cluster) {
        (Some(membership), Some(redis), Some(cluster)) => {
            let store = sipmesh_actors::dialog::RedisDialogStore::new(
                redis,
                sipmesh_actors::dialog::redis::DEFAULT_PREFIX,
            )
            .map_err(|e| anyhow::anyhow!("dialog store for takeover: {e}"))?
            .with_fence(engine_config.fence.clone());
            // Hand-overs and "ended" notices need a subscription: single-server and Sentinel
            // URLs (not a Redis Cluster, where the store keeps no owner index).
            let notices = store
                .own_index()
                .is_some()
                .then(|| takeover::follow_notices(store.clone(), engine.dialogs(), engine.media()));
            Some((
                takeover::start(
                    membership.clone(),
                    store,
                    engine.dialogs(),
                    engine.media(),
                    cluster.key_prefix.clone(),
                ),
                notices,
            ))
        }
        _ => None,
    };
    let (lost_flows, fenced_flows) = lost_flows.unzip();
    let (takeover, notices) = takeover.unzip();
    let notices = notices.flatten();
    // On a Redis Cluster: one node rebuilds the location store's bucket indexes once.
    let index_repair = match (&membership, &engine_config.redis) {
        (Some(membership), Some(redis)) => {
            let store = sipmesh_actors::location::RedisLocationStore::new(redis)
                .map_err(|e| anyhow::anyhow!("location store for the index repair: {e}"))?;
            index_repair::start(membership.clone(), store)
        }
        _ => None,
    };
    let (counts_task, owned) = match (&membership, &config.cluster) {
        (Some(membership), Some(cluster)) => {
            let store = sipmesh_cluster::store::ClusterStore::new(
                &cluster.redis_url,
                &cluster.key_prefix,
                cluster.timing.redis_timeout,
            )
            .context("cluster store for the actor counts")?;
            let (task, counts) = actor_counts::start(membership.clone(), store, engine.admin());
            (Some(task), Some(counts))
        }
        _ => (None, None),
    };
    let admin = match config.admin {
        Some(addr) => {
            let listener = admin::bind(addr)
                .await
                .with_context(|| format!("binding the admin endpoint {addr}"))?;
            Some(tokio::spawn(admin::serve(
                listener,
                engine.admin(),
                membership.clone(),
                owned,
                config.test_hooks,
            )))
        }
        None => None,
    };
    let reloader = config
        .tls
        .clone()
        .map(|tls| tokio::spawn(reload_on_sighup(tls)));
    shutdown.await;
    for task in [
        reloader,
        admin,
        lost_flows,
        fenced_flows,
        index_repair,
        takeover,
        notices,
        counts_task,
    ]
    .into_iter()
    .flatten()
    {
        task.abort();
    }
    if let Some(flows) = &flows {
        flows.stop();
    }
    if let Some(membership) = &membership {
        membership.shutdown();
    }
    info!(grace = ?config.shutdown_grace, "shutting down");
    engine.shutdown(config.shutdown_grace).await;
    if let Some(signalling) = signalling {
        signalling.stop().await;
    }
    Ok(())
}

/// Re-reads the TLS certificate and key on every SIGHUP; new handshakes use the new pair,
/// established connections are kept. A failed reload keeps the old pair.
async fn reload_on_sighup(tls: TlsConfig) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hup = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGHUP");
                return;
            }
        };
        while hup.recv().await.is_some() {
            match tls.reload() {
                Ok(()) => info!("TLS certificate reloaded"),
                Err(e) => {
                    tracing::error!(error = %e, "TLS certificate reload failed; keeping the old one")
                }
            }
        }
    }
    #[cfg(not(unix))]
    let _ = tls;
}

/// Completes on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sipmesh_cluster::{NodeId, Timing};

    #[test]
    fn the_fence_names_the_cluster_lease_key_and_is_closed_before_membership() {
        let cluster = ClusterConfig {
            node_id: NodeId::new("node7").expect("id"),
            listen: "127.0.0.1:7000".parse().expect("addr"),
            seeds: Vec::new(),
            cookie: "c".to_owned(),
            redis_url: "redis://127.0.0.1:1".to_owned(),
            key_prefix: "pfx:".to_owned(),
            timing: Timing::default(),
            tls: None,
        };
        let source = MembershipEpoch::default();
        assert_eq!(source.owner_epoch(), None, "no cluster layer yet: fenced");
        let fence = cluster_fence(&cluster, source);
        assert_eq!(fence.lease_key(), "pfx:node:node7");
        assert!(fence.check().is_err());
    }
}
