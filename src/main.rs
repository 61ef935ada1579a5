//! The `agora` command: parses the command line, sets up logging (and span export), and runs a
//! node until SIGINT or SIGTERM.

use clap::Parser;

use agora::config::{Cli, Command};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Serve(config) => {
            let telemetry = agora::telemetry::init(config.otlp_endpoint.as_deref(), &config.node)?;
            let run = async {
                agora::app::Node::build(config)
                    .await?
                    .run_until_stopped(shutdown_signal())
                    .await
            };
            let result = run.await;
            // Sending the last spans blocks, and needs the runtime's workers free.
            tokio::task::spawn_blocking(move || telemetry.shutdown()).await?;
            result
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("can listen for SIGTERM");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down: finishing requests in flight");
}
