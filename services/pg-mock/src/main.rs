//! pg-mock: the PG stand-in.
//!
//! - [`config`]: the TOML config (listen address, latency range, failure and decline rates).
//! - [`ledger`]: the PG's own records, idempotent by request id, journaled to a file so
//!   reconciliation can compare them with the payments after a restart.
//! - [`api`]: the HTTP routes: `POST /v1/{authorize,capture,refund,void}`,
//!   `GET /v1/records` (also by payment-id range), `GET /v1/transactions/{requestId}` (the
//!   status inquiry), `GET /v1/stats`, `POST /v1/control` (per-merchant, per-operation
//!   behaviour, including the "applied, answer lost" faults, for
//!   tests), `GET /health`.

mod api;
mod config;
mod ledger;

use mimalloc::MiMalloc;
use std::sync::Arc;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

fn main() {
    if let Err(error) = run() {
        eprintln!("pg-mock: {error}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let Some((_, config)) = payrail_core::config::startup::<config::Config>("pg-mock")? else {
        return Ok(());
    };
    payrail_http::runtime::configure_may(config.worker_threads, config.coroutine_stack_words);
    let ledger = ledger::Ledger::open(config.journal_path.as_deref())?;
    let service = Arc::new(api::Api::new(config.clone(), ledger));
    let listener = payrail_http::server::bind(&config.listen)?;
    tracing::info!(listen = %listener.local_addr()?, "pg-mock listening");
    let server = payrail_http::server::serve(listener, config.http.clone(), service);
    let _ = server.join();
    Ok(())
}
