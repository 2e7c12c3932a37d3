//! Serves the router over HTTP/1.1, connection by connection, with the deadline axum's own
//! `serve` leaves out (it sets no timer, so hyper's is off): a request's headers must arrive
//! within [`HEADER_TIMEOUT`] of the connection opening or of the previous response, so neither
//! a connection that sends nothing nor one that sends its headers a byte at a time is held.

use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use tower::ServiceExt;

use crate::metered::Client;

/// How long a request's headers may take to arrive.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts connections from `listener` and serves `app` on each, for as long as it runs;
/// handlers find the connection's [`Client`] as `ConnectInfo<Client>`.
pub async fn serve<L>(mut listener: L, app: Router)
where
    L: axum::serve::Listener<Addr = Client>,
{
    loop {
        // The listener retries, after a pause, when accepting fails (out of descriptors).
        let (io, client) = listener.accept().await;
        let app = app.clone();
        // Each request carries the connection's client, as axum's own `serve` would put it.
        let service = hyper::service::service_fn(move |mut request: axum::extract::Request<_>| {
            request.extensions_mut().insert(ConnectInfo(client.clone()));
            app.clone().oneshot(request)
        });
        tokio::spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(io), service)
                .with_upgrades();
            if let Err(e) = connection.await {
                tracing::debug!("http connection: {e}");
            }
        });
    }
}
