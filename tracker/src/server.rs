//! The HTTP side: one router for the WebSocket endpoint, `/stats`, `/metrics` and the page.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, State, WebSocketUpgrade};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use tower_http::services::ServeDir;

use crate::admission::Refused;
use crate::client_address::client_address;
use crate::connection;
use crate::metered::Client;
use crate::state::Tracker;

/// The tracker's routes.
pub fn app(tracker: Arc<Tracker>) -> Router {
    Router::new()
        .route("/ws", get(upgrade))
        .route("/stats", get(stats))
        .route("/metrics", get(metrics))
        .fallback_service(ServeDir::new(&tracker.config.www))
        .with_state(tracker)
}

async fn upgrade(
    State(tracker): State<Arc<Tracker>>,
    ConnectInfo(peer): ConnectInfo<Client>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let client = client_address(peer.addr.ip(), &headers, &tracker.config.trusted_proxies);
    let slot = match tracker.admission.admit(client) {
        Ok(slot) => slot,
        Err(Refused::Full) => {
            return (StatusCode::SERVICE_UNAVAILABLE, "too many connections").into_response()
        }
        Err(Refused::AddressFull) => {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                "too many connections from this address",
            )
                .into_response()
        }
    };
    let limit = tracker.config.max_message_bytes;
    // tungstenite's default buffers are 128 KiB each way per connection; tracker messages are
    // small, and at 10,000 connections those defaults alone would take gigabytes.
    ws.max_message_size(limit)
        .max_frame_size(limit)
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .on_upgrade(move |socket| connection::run(tracker, socket, client, peer.received, slot))
}

/// What `/stats` returns.
#[derive(Debug, Serialize)]
pub struct Stats {
    swarms: usize,
    peers: usize,
    seeders: usize,
    leechers: usize,
    files: usize,
    connections: usize,
    peer_connections: usize,
    messages_per_second: u64,
    messages_total: u64,
    twin: TwinStats,
}

#[derive(Debug, Serialize)]
struct TwinStats {
    url: Option<String>,
    link: &'static str,
}

fn collect(tracker: &Tracker) -> Stats {
    let (counts, files) = tracker.counts();
    Stats {
        swarms: counts.swarms,
        peers: counts.peers,
        seeders: counts.seeders,
        leechers: counts.peers - counts.seeders,
        files,
        connections: tracker.admission.open(),
        peer_connections: counts.peer_connections,
        messages_per_second: tracker.messages_per_second.load(Ordering::Relaxed),
        messages_total: tracker.messages.load(Ordering::Relaxed),
        twin: TwinStats {
            url: tracker.config.twin.clone(),
            link: if tracker.twin_link_up() { "up" } else { "down" },
        },
    }
}

async fn stats(State(tracker): State<Arc<Tracker>>) -> Json<Stats> {
    Json(collect(&tracker))
}

async fn metrics(State(tracker): State<Arc<Tracker>>) -> impl IntoResponse {
    let s = collect(&tracker);
    let gauges = [
        ("swarms", "Swarms with at least one peer.", s.swarms as u64),
        ("peers", "Peers in all swarms.", s.peers as u64),
        ("seeders", "Peers with the whole file.", s.seeders as u64),
        ("leechers", "Peers still downloading.", s.leechers as u64),
        ("files", "Files in the catalog.", s.files as u64),
        (
            "connections",
            "Open WebSocket connections.",
            s.connections as u64,
        ),
        (
            "peer_connections",
            "Connections in at least one swarm: one per peer node.",
            s.peer_connections as u64,
        ),
        (
            "messages_per_second",
            "Messages received in the last second.",
            s.messages_per_second,
        ),
        (
            "twin_link_up",
            "1 when the link to the twin tracker is up.",
            u64::from(s.twin.link == "up"),
        ),
    ];
    let mut text = String::new();
    for (name, help, value) in gauges {
        text.push_str(&format!(
            "# HELP mtorrent_tracker_{name} {help}\n# TYPE mtorrent_tracker_{name} gauge\nmtorrent_tracker_{name} {value}\n"
        ));
    }
    text.push_str(&format!(
        "# HELP mtorrent_tracker_messages_total Messages received since start.\n# TYPE mtorrent_tracker_messages_total counter\nmtorrent_tracker_messages_total {}\n",
        s.messages_total
    ));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

/// Expires silent peers and samples the message rate, once a second, for as long as it runs.
pub async fn maintenance(tracker: Arc<Tracker>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut last = tracker.messages.load(Ordering::Relaxed);
    loop {
        tick.tick().await;
        let total = tracker.messages.load(Ordering::Relaxed);
        tracker
            .messages_per_second
            .store(total - last, Ordering::Relaxed);
        last = total;
        tracker.expire();
    }
}
