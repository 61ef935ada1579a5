//! The `agora` command: parses the command line, sets up logging, and runs a node until
//! SIGINT or SIGTERM.

use clap::Parser;

use agora::config::{Cli, Command};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,librdkafka=warn,rdkafka=warn".into());
    tracing_subscriber::registry()
        .with(filter)
        .with(tracing_subscriber::fmt::layer())
        .with(agora::cluster::trace::RequestIdLayer)
        .init();
    match Cli::parse().command {
        Command::Serve(config) => {
            agora::app::start(config)
                .await?
                .run_until(shutdown_signal())
                .await
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
