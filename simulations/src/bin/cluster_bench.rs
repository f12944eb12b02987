//! `cluster-bench`: REGISTER/s and calls/s of a sipmesh cluster with every request entering at
//! a random node, for each cluster size given (default 1 and 3), and the time from SIGKILL to
//! full service over `--kills` kills. Run through `bench/cluster/run.sh`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use sipmesh_simulations::bench::{BenchConfig, BenchFigures, measure};

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
    for &nodes in &args.nodes {
        let cfg = BenchConfig {
            nodes,
            agents: args.agents,
            seconds: args.seconds,
            kills: args.kills,
            sipmesh: sipmesh.clone(),
            any_node_in_dialog: args.any_node_in_dialog,
            seed: args.seed,
        };
        match runtime.block_on(measure(&cfg)) {
            Ok(f) => all.push(f),
            Err(e) => {
                eprintln!("cluster-bench: {nodes} nodes: {e}");
                return ExitCode::from(2);
            }
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&all).unwrap_or_default());
    } else {
        println!(
            "{:>5} {:>7} {:>12} {:>8} {:>9} {:>8} {:>17} {:>14}",
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
                "{:>5} {:>7} {:>12.0} {:>8} {:>9.0} {:>8} {:>17} {:>14}",
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
        if let Some(one) = all.iter().find(|f| f.nodes == 1) {
            for f in all.iter().filter(|f| f.nodes > 1) {
                println!(
                    "{} nodes / 1 node: REGISTER/s {:.2}, calls/s {:.2}",
                    f.nodes,
                    f.register_per_s / one.register_per_s.max(f64::MIN_POSITIVE),
                    f.calls_per_s / one.calls_per_s.max(f64::MIN_POSITIVE)
                );
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
