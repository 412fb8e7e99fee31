//! `payhook-fakes`: one of the fake provider APIs on loopback, to create and pay
//! payments offline (`make demo`, docs/testing.md). A binary of its own, so the
//! production `payhook` binary carries no fakes.

use clap::Parser;
use payhook_domain::Provider;
use payhook_testkit::{fake_junglepay, fake_qpay, fake_stripe, fake_xendit};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "payhook-fakes", version, about = "A fake payment provider API on 127.0.0.1")]
struct Args {
    /// xendit, qpay, junglepay or stripe.
    provider: Provider,
    /// Port on 127.0.0.1.
    #[arg(long)]
    port: u16,
    /// The API key the fake accepts (stripe: bearer key; xendit, junglepay: secret key).
    #[arg(long, default_value = "sk_test_payhook_fake")]
    key: String,
    /// qpay: the client id and secret the fake accepts.
    #[arg(long, default_value = "payhook-fake")]
    client_id: String,
    #[arg(long, default_value = "payhook-fake-secret")]
    client_secret: String,
    /// stripe, xendit: where `POST /_fake/pay/{id}` sends its webhook (their URL is set
    /// per account, not per payment). qpay and junglepay call the URL payhook gave.
    #[arg(long)]
    callback_url: Option<String>,
    /// stripe: the endpoint secret (whsec_…) to sign with; xendit: the callback token.
    #[arg(long)]
    callback_secret: Option<String>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    match serve(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("payhook-fakes: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Serves the fake until SIGINT/SIGTERM.
async fn serve(args: Args) -> Result<(), String> {
    let callback = args.callback_url.zip(args.callback_secret);
    let taken = |e: std::io::Error| format!("cannot listen on 127.0.0.1:{}: {e}", args.port);
    // Each fake lives as long as this function: the binding keeps it.
    let (base_url, _fake): (String, Box<dyn std::any::Any>) = match args.provider {
        Provider::Stripe => {
            let fake = fake_stripe::FakeStripe::start_on(args.port, &args.key)
                .await
                .map_err(taken)?;
            if let Some((url, secret)) = &callback {
                fake.send_webhooks_to(url, secret);
            }
            (fake.base_url.clone(), Box::new(fake))
        }
        Provider::Xendit => {
            let fake = fake_xendit::FakeXendit::start_on(args.port, &args.key)
                .await
                .map_err(taken)?;
            if let Some((url, token)) = &callback {
                fake.send_callbacks_to(url, token);
            }
            (fake.base_url.clone(), Box::new(fake))
        }
        Provider::Qpay => {
            let fake = fake_qpay::FakeQPay::start_on(args.port, &args.client_id, &args.client_secret)
                .await
                .map_err(taken)?;
            (fake.base_url.clone(), Box::new(fake))
        }
        Provider::Junglepay => {
            let fake = fake_junglepay::FakeJunglePay::start_on(args.port, &args.key)
                .await
                .map_err(taken)?;
            (fake.base_url.clone(), Box::new(fake))
        }
    };
    println!(
        "fake {} API on {base_url} (POST /_fake/pay/{{id}} pays); Ctrl-C stops it",
        args.provider
    );
    shutdown_signal().await;
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
