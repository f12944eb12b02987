//! `cluster-bench`: REGISTER/s and calls/s of a sipmesh cluster with every request entering at
//! a random node, for each cluster size given (default 1 and 3), and the time from SIGKILL to
//! full service over `--kills` kills; with `--kamailio-cfg`, the same load against one
//! Kamailio as the reference column. Run through `bench/cluster/run.sh`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use sipmesh_simulations::bench::{BenchConfig, BenchFigures, measure, measure_kamailio};

/// Command line.
#[derive(Debug, Parser)]
#[command(name = "cluster-bench")]
struct Args {
    /// Cluster sizes to measure, comma-separated.
    #[arg(long, default_value = "1,3", value_delimiter = ',')]
    nodes: Vec<u8>,
    /// Concurrent closed-loop UDP agents.
    #[arg(long, default_value_t = 200)]
    agents: usize,
    /// Seconds per rate measurement.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// SIGKILLs for the failover figure (clusters of 2 or more).
    #[arg(long, default_value_t = 20)]
    kills: usize,
    /// In-dialog requests enter at random nodes (needs the cluster Record-Route identity).
    #[arg(long)]
    any_node_in_dialog: bool,
    /// The sipmesh binary (default: next to this executable).
    #[arg(long)]
    sipmesh: Option<PathBuf>,
    /// Seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Also measure one Kamailio with this configuration (`bench/load/kamailio.cfg`).
    #[arg(long)]
    kamailio_cfg: Option<PathBuf>,
    /// Kamailio's UDP/TCP port on 127.0.0.1.
    #[arg(long, default_value_t = 15070)]
    kamailio_port: u16,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let sipmesh = match args.sipmesh.clone().map_or_else(
        || std::env::current_exe().map(|p| p.with_file_name("sipmesh")),
        Ok,
    ) {
        Ok(p) if p.is_file() => p,
        Ok(p) => {
            eprintln!("cluster-bench: no sipmesh binary at {}", p.display());
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("cluster-bench: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cluster-bench: {e}");
            return ExitCode::from(2);
        }
    };
    let mut all: Vec<BenchFigures> = Vec::new();
    let config = |nodes| BenchConfig {
        nodes,
        agents: args.agents,
        seconds: args.seconds,
        kills: args.kills,
        sipmesh: sipmesh.clone(),
        any_node_in_dialog: args.any_node_in_dialog,
        seed: args.seed,
    };
    for &nodes in &args.nodes {
        match runtime.block_on(measure(&config(nodes))) {
            Ok(f) => all.push(f),
            Err(e) => {
                eprintln!("cluster-bench: {nodes} nodes: {e}");
                return ExitCode::from(2);
            }
        }
    }
    if let Some(cfg) = &args.kamailio_cfg {
        match runtime.block_on(measure_kamailio(&config(1), cfg, args.kamailio_port)) {
            Ok(f) => all.push(f),
            Err(e) => {
                eprintln!("cluster-bench: kamailio: {e}");
                return ExitCode::from(2);
            }
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&all).unwrap_or_default());
    } else {
        println!(
            "{:<9} {:>5} {:>7} {:>12} {:>8} {:>9} {:>8} {:>17} {:>14}",
            "target",
            "nodes",
            "agents",
            "REGISTER/s",
            "reg-err",
            "calls/s",
            "call-err",
            "failover med ms",
            "failover max"
        );
        for f in &all {
            println!(
                "{:<9} {:>5} {:>7} {:>12.0} {:>8} {:>9.0} {:>8} {:>17} {:>14}",
                f.target,
                f.nodes,
                f.agents,
                f.register_per_s,
                f.register_failed,
                f.calls_per_s,
                f.calls_failed,
                f.failover_median_ms
                    .map_or_else(|| "-".to_owned(), |v| v.to_string()),
                f.failover_max_ms
                    .map_or_else(|| "-".to_owned(), |v| v.to_string()),
            );
        }
        let ratio = |a: f64, b: f64| a / b.max(f64::MIN_POSITIVE);
        let sipmesh = || all.iter().filter(|f| f.target == "sipmesh");
        if let Some(one) = sipmesh().find(|f| f.nodes == 1) {
            for f in sipmesh().filter(|f| f.nodes > 1) {
                println!(
                    "{} nodes / 1 node: REGISTER/s {:.2}, calls/s {:.2}",
                    f.nodes,
                    ratio(f.register_per_s, one.register_per_s),
                    ratio(f.calls_per_s, one.calls_per_s)
                );
            }
        }
        if let Some(k) = all.iter().find(|f| f.target == "kamailio") {
            for f in sipmesh() {
                println!(
                    "sipmesh {} node(s) / kamailio: REGISTER/s {:.2}, calls/s {:.2}",
                    f.nodes,
                    ratio(f.register_per_s, k.register_per_s),
                    ratio(f.calls_per_s, k.calls_per_s)
                );
            }
        }
        for f in &all {
            for (what, failures) in [
                ("REGISTER", &f.register_failures),
                ("call", &f.call_failures),
            ] {
                if !failures.is_empty() {
                    println!(
                        "{} ({} node(s)) failed {what}s by cause: {failures:?}",
                        f.target, f.nodes
                    );
                }
            }
        }
        for f in all.iter().filter(|f| !f.failover_ms.is_empty()) {
            println!(
                "failover ms per kill ({} nodes): {:?}",
                f.nodes, f.failover_ms
            );
        }
    }
    ExitCode::SUCCESS
}
