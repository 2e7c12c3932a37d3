//! `mtorrent-tracker`: the WebSocket tracker of mtorrent. See `--help`.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Parser;

mod admission;
mod advertised;
mod catalog;
mod client_address;
mod config;
mod connection;
mod http_server;
mod metered;
mod outbox;
mod registry;
mod server;
mod state;
mod tls_listener;
mod twin;
mod twin_auth;
mod twin_sync;

fn main() -> ExitCode {
    let config = config::Config::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "mtorrent_tracker=info".into()),
        )
        .init();
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(config: config::Config) -> Result<()> {
    config.validate()?;
    let catalog = match &config.data_dir {
        Some(dir) => catalog::Catalog::open(&dir.join("catalog"))?,
        None => {
            tracing::warn!("no --data-dir: the catalog will not survive a restart");
            catalog::Catalog::ephemeral()
        }
    };
    // A certificate or key that cannot be used is an error before anything listens.
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(mtorrent_tls::ServerTls::from_pem_files(cert, key)?),
        _ => None,
    };
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let address = listener.local_addr()?;
    let tracker = Arc::new(state::Tracker::new(config, catalog));
    tokio::spawn(server::maintenance(tracker.clone()));
    if let Some(url) = tracker.config.twin.clone() {
        tokio::spawn(twin::maintain_link(tracker.clone(), url));
    }
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "listening on {address}")?;
        stdout.flush()?;
    }
    tracing::info!("tracker {} on {address}", tracker.tracker_id);
    // Peers' source addresses complete the announces of peers that give only their port.
    let app = server::app(tracker);
    // Connections count the bytes they receive, so that a message that stops arriving halfway
    // is noticed (see `connection`).
    let serve: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> = match tls {
        None => {
            // Replies are small and latency matters more than packet count.
            let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
                if let Err(e) = tcp.set_nodelay(true) {
                    tracing::debug!("cannot set TCP_NODELAY: {e}");
                }
                // A peer that does not read holds little of the machine's TCP memory.
                mtorrent_tls::bound_unsent(tcp);
            });
            Box::pin(http_server::serve(metered::MeteredListener(listener), app))
        }
        Some(tls) => {
            // Handshakes run beside the accept loop (TCP_NODELAY and the bound on unsent bytes
            // are set there).
            let incoming = mtorrent_tls::Incoming::start(listener, tls, Default::default())?;
            let listener = metered::MeteredListener(tls_listener::TlsListener(incoming));
            Box::pin(http_server::serve(listener, app))
        }
    };
    tokio::select! {
        () = serve => Ok(()),
        () = shutdown_signal() => {
            tracing::info!("stopping");
            Ok(())
        }
    }
}

async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}
