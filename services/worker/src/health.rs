//! Probes for a worker process, which otherwise listens on nothing:
//! `GET /healthz` answers 200 while the process runs (liveness), `GET
//! /readyz` 200 while it is connected to the bus and taking work, 503 once
//! shutdown began or the bus is down (readiness). Opt-in with `switchyard
//! worker --health-addr`, for Kubernetes probes.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use tokio_util::sync::CancellationToken;

/// Whether the worker can take work: its bus connection is up.
pub type Connected = Arc<dyn Fn() -> bool + Send + Sync>;

#[derive(Clone)]
struct Probe {
    stopping: CancellationToken,
    connected: Connected,
}

/// Binds `addr` and serves the probes until `stopping` fires and the
/// process ends (the listener lives with the returned task). Returns the
/// bound address (port 0 picks a free one).
pub async fn serve_health(
    addr: SocketAddr,
    stopping: CancellationToken,
    connected: Connected,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = Router::new()
        .route("/healthz", get(|| async { (StatusCode::OK, "ok") }))
        .route("/readyz", get(readyz))
        .with_state(Probe {
            stopping,
            connected,
        });
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!(error = %e, "worker health listener failed");
        }
    });
    tracing::info!(health_addr = %bound, "worker health listening");
    Ok((bound, task))
}

async fn readyz(State(p): State<Probe>) -> (StatusCode, &'static str) {
    if p.stopping.is_cancelled() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down")
    } else if !(p.connected)() {
        (StatusCode::SERVICE_UNAVAILABLE, "bus disconnected")
    } else {
        (StatusCode::OK, "ready")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    async fn status(addr: SocketAddr, path: &str) -> u16 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out[9..12].parse().unwrap()
    }

    #[tokio::test]
    async fn readiness_follows_the_bus_and_shutdown() {
        let stopping = CancellationToken::new();
        let up = Arc::new(AtomicBool::new(true));
        let flag = up.clone();
        let (addr, _task) = serve_health(
            "127.0.0.1:0".parse().unwrap(),
            stopping.clone(),
            Arc::new(move || flag.load(Ordering::Relaxed)),
        )
        .await
        .unwrap();
        assert_eq!(status(addr, "/readyz").await, 200);
        up.store(false, Ordering::Relaxed);
        assert_eq!(status(addr, "/readyz").await, 503);
        up.store(true, Ordering::Relaxed);
        stopping.cancel();
        assert_eq!(status(addr, "/readyz").await, 503);
        // Alive all the same: liveness must not kill a draining worker.
        assert_eq!(status(addr, "/healthz").await, 200);
    }
}
