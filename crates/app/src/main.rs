use std::process::ExitCode;

/// Allocation was about a quarter of payhook's CPU under load with the system
/// allocator (docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    payhook_app::cli::run().await
}
