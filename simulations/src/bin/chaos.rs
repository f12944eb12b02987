//! `chaos`: a chaos run against a real sipmesh cluster (see the `sipmesh-simulations` crate
//! docs). Prints the report; exit status 0 when every invariant held, 1 when one broke, 2 when
//! the run could not be set up.

use std::process::ExitCode;

use clap::Parser;
use sipmesh_simulations::{Cli, ReportFormat};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("chaos: tokio runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let format = cli.report;
    match runtime.block_on(sipmesh_simulations::run(cli)) {
        Ok(report) => {
            match format {
                ReportFormat::Text => print!("{}", report.to_text()),
                ReportFormat::Json => println!("{}", report.to_json()),
            }
            if report.passed {
                ExitCode::SUCCESS
            } else {
                for v in report.violations() {
                    eprintln!("chaos: invariant broken: {v}");
                }
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("chaos: {e}");
            ExitCode::from(2)
        }
    }
}
