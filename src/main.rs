use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use diarysync::app::App;
use diarysync::config::Config;

/// diarysync: partner webhooks into a venue's diary.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the service.
    Serve {
        /// The configuration file (TOML); DIARYSYNC_* variables override its keys.
        #[arg(long, env = "DIARYSYNC_CONFIG", default_value = "diarysync.toml")]
        config: PathBuf,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Serve { config } => serve(config).await,
    }
}

async fn serve(path: PathBuf) -> anyhow::Result<()> {
    let config =
        Config::load(&path).with_context(|| format!("configuration {}", path.display()))?;
    diarysync::telemetry::init(config.log_format);
    let listen = config.listen;
    let app = App::build(config).await.context("starting diarysync")?;
    tracing::info!(%listen, "diarysync listening");
    app.run_until_stopped(shutdown_signal())
        .await
        .context("serving")
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}
