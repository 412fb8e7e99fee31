//! The `payhook` command line.

mod maintenance;
pub mod simulate;
mod stripe;

use crate::api::payment_requests::GATEWAY_TIMEOUT;
use crate::cli::simulate::{as_expected, look_up_payment, merchant_base, send, webhook_url, SimulateError};
use crate::settings::{Settings, StoreKind};
use crate::startup::providers::Providers;
use crate::startup::{Application, StartupError, Stores};
use clap::{Parser, Subcommand};
use payhook_domain::{ConnectOptions, InboxId, InboxStatus, PaymentId, Provider, Replay, ReplayFilter, SampleRequest};
use payhook_postgres::PgStore;
use payhook_sqlite::SqliteStore;
use secrecy::ExposeSecret;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

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
    /// Make inbox events due again: one by id, or every event with a status.
    Replay(ReplayArgs),
    /// Send a realistic, correctly authenticated provider webhook to a running gateway.
    Simulate(SimulateArgs),
    /// Apply the retention policy (retention.*) now and print how much was deleted.
    Purge(maintenance::PurgeArgs),
    /// Ask providers now: about one payment, or about every payment whose check is due.
    Reconcile(maintenance::ReconcileArgs),
    /// Fill the Stripe mirror from Stripe's API: `resync <type> <id>`, `backfill <type>`.
    Stripe(stripe::StripeArgs),
}

#[derive(clap::Args)]
struct SimulateArgs {
    /// stripe, xendit, qpay or junglepay.
    provider: Provider,
    /// stripe: payment_intent.succeeded|payment_failed|canceled|requires_action, charge.refunded,
    /// charge.dispute.created|closed, customer.created|updated|deleted,
    /// product.created|updated|deleted, price.created, invoice.created|finalized|paid|payment_failed,
    /// customer.subscription.created|updated|deleted. xendit: paid|settled|expired. qpay: paid.
    /// junglepay: paid|refused|refunded|chargedback.
    event: String,
    /// The payhook payment the event is about (required for xendit, qpay, junglepay).
    #[arg(long)]
    payment: Option<String>,
    /// qpay, junglepay: the payment's callback token (payhook keeps only its hash; the
    /// provider, or `payhook-fakes` at GET /_fake/callback-url/{id}, has it).
    #[arg(long)]
    token: Option<String>,
    /// Amount in minor units (default: the payment's, else 2000).
    #[arg(long)]
    amount: Option<i64>,
    /// ISO currency (default: the payment's, else USD).
    #[arg(long)]
    currency: Option<String>,
    /// Where to send it: the gateway's base URL (http://127.0.0.1:8080) or a full
    /// webhook URL (default: the configured server.bind).
    #[arg(long)]
    to: Option<String>,
    /// Sign (or token) it wrongly, to see the rejection.
    #[arg(long)]
    bad_signature: bool,
    /// charge.refunded: refund half; xendit paid: pay half.
    #[arg(long)]
    partial: bool,
    /// stripe: the connected account the event is about (acct_…), signed with the
    /// first connect_webhook_secrets secret when one is set.
    #[arg(long)]
    account: Option<String>,
    /// stripe customer.*, product.*, price.*, invoice.*, customer.subscription.*: the
    /// object's id, to update one object across runs (a fresh one when absent).
    #[arg(long)]
    object: Option<String>,
    /// stripe customer.subscription.*, invoice.paid, invoice.payment_failed: the payhook
    /// subscription (its id) the event is about; the Stripe subscription is named
    /// after it, so runs drive one subscription (activation, renewal, failure, end).
    #[arg(long)]
    subscription: Option<String>,
    /// Send the same delivery this many times (to watch deduplication).
    #[arg(long, default_value_t = 1)]
    replay: u32,
}

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["id", "status"])))]
struct ReplayArgs {
    /// The inbox id (`webhook_events.id`, as listed by GET /admin/webhooks).
    id: Option<i64>,
    /// Replay every event with this status: dead, failed or processed.
    #[arg(long)]
    status: Option<InboxStatus>,
    /// With --status: only this provider's events.
    #[arg(long, requires = "status")]
    provider: Option<Provider>,
    /// With --status: only events received at or after this time (RFC 3339).
    #[arg(long, requires = "status")]
    since: Option<chrono::DateTime<chrono::Utc>>,
}

pub async fn run() -> ExitCode {
    let cli = Cli::parse();
    crate::startup::telemetry::init();
    crate::startup::install_crypto_provider();
    let result = match Settings::load(cli.config.as_deref(), None) {
        Ok(settings) => match cli.command {
            Command::Serve => serve(settings).await,
            Command::Migrate => migrate(settings).await,
            Command::Replay(args) => replay(settings, args).await,
            Command::Simulate(args) => simulate(settings, args).await,
            Command::Purge(args) => maintenance::purge(settings, args).await,
            Command::Reconcile(args) => maintenance::reconcile(settings, args).await,
            Command::Stripe(args) => stripe::stripe(settings, args).await,
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
    raise_open_file_limit();
    let bind = settings.server.bind.clone();
    let store = settings.store_location();
    let providers = settings.providers.enabled_names().join(",");
    let internal = settings.server.internal_bind.clone();
    let app = Application::build(settings).await?;
    // One line that says what this process is: where it stores, whom it speaks to,
    // where it listens.
    tracing::info!(
        store,
        providers = if providers.is_empty() { "none" } else { providers.as_str() },
        %bind,
        port = app.port(),
        internal = internal.as_deref().unwrap_or("-"),
        internal_port = app.internal_port(),
        "payhook serving"
    );
    app.run_until_stopped()
        .await
        .map_err(|source| StartupError::Bind { addr: bind, source })
}

/// Every connection holds a file descriptor, and the usual soft limit (1,024) is a
/// few hundred slow clients away from refusing providers; the hard limit is what
/// the operator allows.
fn raise_open_file_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::info!(limit, "open-file limit"),
        Err(error) => tracing::warn!(%error, "could not raise the open-file limit"),
    }
}

async fn migrate(settings: Settings) -> Result<(), StartupError> {
    let url = settings.database.url.expose_secret();
    let applied = match settings.store_kind()? {
        StoreKind::Postgres => PgStore::migrate(url).await,
        StoreKind::Sqlite => SqliteStore::migrate(url).await,
    }
    .map_err(|source| StartupError::Database {
        location: settings.store_location(),
        source,
    })?;
    tracing::info!(count = applied.len(), ?applied, "migrations applied");
    Ok(())
}

async fn replay(settings: Settings, args: ReplayArgs) -> Result<(), StartupError> {
    let stores = Stores::open(&settings).await?;
    let now = chrono::Utc::now();
    match (args.id, args.status) {
        (Some(id), _) => match stores.inbox.replay(InboxId(id), now).await? {
            Replay::Requeued => println!("event {id} is due again"),
            Replay::AlreadyPending => println!("event {id} is already waiting to be processed"),
            Replay::NotFound => return Err(StartupError::Usage(format!("no inbox event with id {id}"))),
        },
        (None, Some(status)) => {
            let filter = ReplayFilter {
                status,
                provider: args.provider,
                since: args.since,
            };
            let n = crate::processing::replay::replay_matching(stores.inbox.as_ref(), &filter, now).await?;
            println!("{n} {status} event(s) are due again");
        }
        (None, None) => return Err(StartupError::Usage("name an inbox id or --status".into())),
    }
    Ok(())
}

/// The payment a simulated event touched.
enum Touched {
    Payment(PaymentId),
    /// The event names a payment the store does not hold (yet).
    NotYet {
        provider_ref: String,
    },
}

/// The payment an event sent without `--payment` made or moved: the provider's own
/// parser reads its reference, then the configured store is asked for it for a few
/// seconds while the gateway's worker applies the event. `None` when the store is not
/// this machine's (an SQLite file that is not there) or the event names no payment.
async fn find_touched(
    settings: &Settings,
    source: &Arc<dyn payhook_domain::source::WebhookSource>,
    delivery: &payhook_domain::SampleDelivery,
) -> Option<Touched> {
    use payhook_domain::source::{Delivery, Parsed};
    let at = chrono::Utc::now();
    let parsed = source.parse(&Delivery {
        headers: &delivery.headers,
        query: &delivery.query,
        body: &delivery.body,
        received_at: at,
    });
    let Ok(Parsed::Event(event)) = parsed else { return None };
    let provider_ref = event.payment.provider_ref.clone()?;
    if settings.store_kind().ok()? == StoreKind::Sqlite {
        let path = settings
            .database
            .url
            .expose_secret()
            .trim_start_matches("sqlite://")
            .to_owned();
        if !std::path::Path::new(&path).exists() {
            return None;
        }
    }
    let stores = Stores::open(settings).await.ok()?;
    for _ in 0..50 {
        if let Ok(Some(payment)) = stores.payments.find_payment(event.provider, &event.payment).await {
            return Some(Touched::Payment(payment.id));
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    Some(Touched::NotYet { provider_ref })
}

async fn simulate(settings: Settings, args: SimulateArgs) -> Result<(), StartupError> {
    let payment = match args.payment.as_deref() {
        Some(raw) => Some(
            PaymentId::parse(raw)
                .ok_or_else(|| StartupError::Usage(format!("--payment {raw:?} is not a payment id")))?,
        ),
        None => None,
    };
    let usage = |e: SimulateError| StartupError::Usage(e.to_string());
    let options = ConnectOptions {
        api_timeout: GATEWAY_TIMEOUT,
    };
    let unit = Providers::connect_one(&settings.providers, args.provider, &options)?;
    let url = webhook_url(args.to.as_deref(), &settings.server.bind, args.provider);
    // A payment the gateway knows: events about it use its real reference and amount.
    let (provider_ref, known_amount, known_currency) = match payment {
        Some(id) => {
            let merchant = merchant_base(&url, settings.server.internal_bind.as_deref());
            let (r, a, c) = look_up_payment(&merchant, settings.api.keys.first(), id)
                .await
                .map_err(usage)?;
            (r, Some(a), Some(c))
        }
        None => (None, None, None),
    };
    let request = SampleRequest {
        event: args.event,
        payment,
        provider_ref,
        amount: args.amount.or(known_amount).unwrap_or(2000),
        currency: args.currency.or(known_currency).unwrap_or_else(|| "USD".into()),
        token: args.token,
        bad_signature: args.bad_signature,
        partial: args.partial,
        account: args.account,
        object: args.object,
        subscription: args
            .subscription
            .as_deref()
            .map(|id| {
                payhook_domain::SubscriptionId::parse(id)
                    .ok_or_else(|| StartupError::Usage(format!("--subscription {id:?} is not a subscription id")))
            })
            .transpose()?,
        now: chrono::Utc::now(),
    };
    let delivery = unit
        .simulator
        .sample(&request)
        .map_err(|e| usage(SimulateError::Sample(e)))?;
    let mut unexpected = None;
    for (status, body) in send(&url, &delivery, args.replay).await.map_err(usage)? {
        println!("HTTP {status} {body}");
        if !as_expected(status, request.bad_signature) {
            unexpected.get_or_insert(status);
        }
    }
    if unexpected.is_none() && !request.bad_signature {
        let merchant = merchant_base(&url, settings.server.internal_bind.as_deref());
        let found = match payment {
            Some(id) => Some(Touched::Payment(id)),
            None if args.to.is_none() => find_touched(&settings, &unit.webhooks, &delivery).await,
            None => None,
        };
        match found {
            Some(Touched::Payment(id)) => {
                println!("payment {id}");
                println!("next: curl -H 'Authorization: Bearer <api key>' {merchant}/payments/{id}");
            }
            Some(Touched::NotYet { provider_ref }) => {
                println!("payment with provider_ref {provider_ref}: not applied yet (is the worker running?)")
            }
            None => {}
        }
    }
    match unexpected {
        None => Ok(()),
        Some(status) => Err(StartupError::Usage(format!(
            "the gateway at {url} answered {status}, not what this delivery should get ({})",
            if request.bad_signature { "401" } else { "2xx" }
        ))),
    }
}
