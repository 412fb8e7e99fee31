//! `payhook stripe resync <type> <id>` and `payhook stripe backfill <type>`: fill the
//! Stripe mirror from Stripe's API (`providers.stripe.api_key`), as the platform or a
//! connected account (`--account acct_…`).

use crate::processing::mirror_fill::{FillError, MirrorFiller};
use crate::settings::Settings;
use crate::startup::clock::SystemClock;
use crate::startup::{StartupError, Stores};
use payhook_domain::{MirrorOutcome, StripeObjectType};
use std::sync::Arc;

#[derive(clap::Args)]
pub(super) struct StripeArgs {
    #[command(subcommand)]
    command: StripeCommand,
}

#[derive(clap::Subcommand)]
enum StripeCommand {
    /// Read one object from Stripe and write it into the mirror.
    Resync {
        /// customer, product, price, invoice, subscription, charge, refund, dispute,
        /// payment_intent or checkout.session.
        #[arg(value_parser = parse_type)]
        object_type: StripeObjectType,
        /// Stripe's id of the object.
        id: String,
        /// The connected account (acct_…); the platform's own object when absent.
        #[arg(long)]
        account: Option<String>,
    },
    /// Read every object of a type from Stripe, a page at a time, into the mirror;
    /// run again after an interruption, it goes on from the last page stored.
    Backfill {
        #[arg(value_parser = parse_type)]
        object_type: StripeObjectType,
        /// Only objects created on or after this day (YYYY-MM-DD) or time (RFC 3339).
        #[arg(long, value_parser = parse_since)]
        since: Option<i64>,
        #[arg(long)]
        account: Option<String>,
    },
}

fn parse_type(text: &str) -> Result<StripeObjectType, String> {
    text.parse()
}

/// A day (its midnight UTC) or an RFC 3339 time, as unix seconds.
fn parse_since(text: &str) -> Result<i64, String> {
    if let Ok(day) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(day.and_time(chrono::NaiveTime::MIN).and_utc().timestamp());
    }
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp())
        .map_err(|_| format!("{text:?} is not a day (2026-01-31) or an RFC 3339 time"))
}

fn fill_error(e: FillError) -> StartupError {
    StartupError::Usage(format!("stripe: {e}"))
}

pub(super) async fn stripe(settings: Settings, args: StripeArgs) -> Result<(), StartupError> {
    let stores = Stores::open(&settings).await?;
    let providers = crate::startup::connect_providers(&settings)?;
    let filler: MirrorFiller = crate::startup::mirror_filler(&settings, &stores, &providers, Arc::new(SystemClock))
        .ok_or_else(|| {
            StartupError::Usage(
                "stripe: set providers.stripe.enabled and providers.stripe.api_key to read from Stripe's API".into(),
            )
        })?;
    match args.command {
        StripeCommand::Resync {
            object_type,
            id,
            account,
        } => {
            let account = account.unwrap_or_default();
            let outcome = filler.resync(&account, object_type, &id).await.map_err(fill_error)?;
            let what = match outcome {
                MirrorOutcome::Written => "written",
                MirrorOutcome::Same => "unchanged",
                MirrorOutcome::Older | MirrorOutcome::Tie => "kept: the mirror holds a newer write",
            };
            println!("{object_type} {id}{}: {what}", shown(&account));
        }
        StripeCommand::Backfill {
            object_type,
            since,
            account,
        } => {
            let account = account.unwrap_or_default();
            let report = filler
                .backfill(&account, object_type, since, |cursor, report| {
                    println!(
                        "page {}: {} read, {} stored so far (last {})",
                        report.pages,
                        report.read,
                        cursor.stored,
                        cursor.starting_after.as_deref().unwrap_or("-"),
                    );
                })
                .await
                .map_err(fill_error)?;
            if let Some(after) = &report.resumed_after {
                println!("went on after {after}, where the last run stopped");
            }
            println!(
                "{object_type}{}: {} read in {} pages, {} written; {} stored in all",
                shown(&account),
                report.read,
                report.pages,
                report.written,
                report.stored_in_all
            );
        }
    }
    Ok(())
}

fn shown(account: &str) -> String {
    if account.is_empty() {
        String::new()
    } else {
        format!(" ({account})")
    }
}
