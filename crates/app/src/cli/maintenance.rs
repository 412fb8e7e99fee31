//! The maintenance commands: `payhook purge` (retention now) and `payhook reconcile`
//! (ask providers now).

use crate::retention::Purger;
use crate::settings::Settings;
use crate::startup::clock::SystemClock;
use crate::startup::{StartupError, Stores};
use payhook_domain::{PaymentId, Provider, Retained, CREATION_INTERRUPTED};
use std::sync::Arc;

#[derive(clap::Args)]
pub(super) struct PurgeArgs {
    /// Only count what would be deleted.
    #[arg(long)]
    dry_run: bool,
}

#[derive(clap::Args)]
pub(super) struct ReconcileArgs {
    /// The payhook payment to ask about, whatever its schedule.
    #[arg(long, conflicts_with_all = ["provider", "older_than"])]
    payment: Option<String>,
    /// Ask about every open payment of this provider now, whatever its schedule.
    #[arg(long)]
    provider: Option<Provider>,
    /// Ask about every open payment created at least this long ago (90s, 30m, 2h, 3d).
    #[arg(long, value_parser = parse_age)]
    older_than: Option<chrono::Duration>,
}

/// `90s`, `30m`, `2h`, `3d`.
fn parse_age(text: &str) -> Result<chrono::Duration, String> {
    let bad = || format!("{text:?} is not an age like 90s, 30m, 2h or 3d");
    let (number, unit) = text.split_at(text.len().saturating_sub(1));
    let n: i64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    n.checked_mul(seconds)
        .filter(|s| *s >= 0)
        .and_then(chrono::Duration::try_seconds)
        .ok_or_else(bad)
}

pub(super) async fn purge(settings: Settings, args: PurgeArgs) -> Result<(), StartupError> {
    let stores = Stores::open(&settings).await?;
    let purger = Purger::new(stores.retention, settings.retention.policy(), Arc::new(SystemClock));
    let (report, verb) = if args.dry_run {
        (purger.count().await?, "would delete")
    } else {
        // Never stopped from outside: Ctrl-C ends the process between two batches,
        // and each batch is one statement.
        let (_keep_going, stop) = tokio::sync::watch::channel(false);
        (purger.purge(&stop).await?, "deleted")
    };
    let policy = settings.retention.policy();
    for kind in Retained::ALL {
        match policy.days(kind) {
            0 => println!("{:<13} kept for ever (retention days = 0)", kind.as_str()),
            days => println!(
                "{:<13} {verb} {} older than {days} days",
                kind.as_str(),
                report.get(kind)
            ),
        }
    }
    Ok(())
}

pub(super) async fn reconcile(settings: Settings, args: ReconcileArgs) -> Result<(), StartupError> {
    let stores = Stores::open(&settings).await?;
    let providers = crate::startup::connect_providers(&settings)?;
    let reconciler = crate::startup::reconciler(
        &settings,
        &stores,
        &providers,
        Arc::new(SystemClock),
        Arc::new(tokio::sync::Notify::new()),
    );
    match args.payment {
        Some(raw) => {
            let id = PaymentId::parse(&raw)
                .ok_or_else(|| StartupError::Usage(format!("--payment {raw:?} is not a payment id")))?;
            let asked = reconciler
                .ask_now(id)
                .await
                .map_err(|e| StartupError::Usage(e.to_string()))?;
            if asked.payment.provider_ref.is_none() {
                println!(
                    "payment {id}: its creation was interrupted and {} has no payment for it",
                    asked.payment.provider
                );
                println!("stored as an event: a running payhook fails it (history reason {CREATION_INTERRUPTED})");
            } else {
                println!(
                    "payment {id}: payhook holds {}, {} says {}",
                    asked.payment.status.as_str(),
                    asked.payment.provider,
                    asked.found.status.as_str()
                );
                if asked.drift {
                    println!("stored as an event: a running payhook applies it (history reason reconciled)");
                }
            }
        }
        None => {
            let report = match (args.provider, args.older_than) {
                (None, None) => reconciler.run_once().await?,
                (provider, older_than) => {
                    let before = chrono::Utc::now() - older_than.unwrap_or_else(chrono::Duration::zero);
                    reconciler.ask_open(provider, before).await?
                }
            };
            println!(
                "asked {}: {} changed (stored as events), {} did not answer, {} skipped",
                report.checked + report.failed,
                report.drifted,
                report.failed,
                report.skipped
            );
        }
    }
    Ok(())
}
