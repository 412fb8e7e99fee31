use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    payhook_app::cli::run().await
}
