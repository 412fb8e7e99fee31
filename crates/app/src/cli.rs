//! The `payhook` command line.

use crate::settings::{Settings, StoreKind};
use crate::startup::{Application, StartupError};
use clap::{Parser, Subcommand};
use payhook_postgres::PgStore;
use payhook_sqlite::SqliteStore;
use secrecy::ExposeSecret;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "payhook", version, about = "Payment webhook gateway")]
pub struct Cli {
    /// Configuration file layered over config/default.toml.
    #[arg(long, env = "PAYHOOK_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server and the worker until SIGTERM/SIGINT.
    Serve,
    /// Apply pending migrations to database.url and exit.
    Migrate,
}

pub async fn run() -> ExitCode {
    let cli = Cli::parse();
    crate::telemetry::init();
    crate::startup::install_crypto_provider();
    let result = match Settings::load(cli.config.as_deref(), None) {
        Ok(settings) => match cli.command {
            Command::Serve => serve(settings).await,
            Command::Migrate => migrate(settings).await,
        },
        Err(e) => Err(e.into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("payhook: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(settings: Settings) -> Result<(), StartupError> {
    let bind = settings.server.bind.clone();
    let app = Application::build(settings).await?;
    tracing::info!(%bind, port = app.port(), "payhook serving");
    app.run_until_stopped()
        .await
        .map_err(|source| StartupError::Bind { addr: bind, source })
}

async fn migrate(settings: Settings) -> Result<(), StartupError> {
    let url = settings.database.url.expose_secret();
    let applied = match settings.store_kind()? {
        StoreKind::Postgres => PgStore::migrate(url).await?,
        StoreKind::Sqlite => SqliteStore::migrate(url).await?,
    };
    tracing::info!(count = applied.len(), ?applied, "migrations applied");
    Ok(())
}
