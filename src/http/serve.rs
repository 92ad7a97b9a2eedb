//! Serving connections with deadlines: hyper's own HTTP/1 server, configured.
//!
//! `axum::serve` has no knobs for a header timeout or a connection cap, and an idle or
//! half-sent connection was never closed: 20,000 of them took the service down. Here:
//! - hyper's `header_read_timeout` bounds the time to a request's headers; hyper starts it
//!   when a connection opens and again when a kept-alive one goes idle, so it also closes
//!   idle keep-alive connections;
//! - tower-http's body timeout bounds each pause while a body arrives (the partner route
//!   adds a minimum average rate, `http::partners`);
//! - at most `max_connections` connections are served at once; beyond that the listener
//!   stops accepting and new ones wait in the kernel's queue;
//! - on shutdown, requests in progress get `shutdown_timeout` to finish (hyper-util's
//!   graceful shutdown), then their connections are dropped.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt as _;
use tower_http::timeout::TimeoutBody;

use crate::config::ConnectionLimits;

/// How long to wait after the listener fails to accept (out of file descriptors) before
/// trying again, so the loop never spins.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Serves `router` on `listener` until `shutdown` completes, then lets requests in progress
/// finish for at most `limits.shutdown_timeout`.
///
/// # Errors
/// None today: a failed accept is logged and retried; the signature leaves room for fatal
/// listener errors.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    if !is_connection_error(&error) {
                        tracing::warn!(%error, "accepting a connection failed; trying again shortly");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                    }
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let body_timeout = limits.body_read_timeout;
        let service =
            hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
                let mut request =
                    request.map(|body| axum::body::Body::new(TimeoutBody::new(body_timeout, body)));
                request.extensions_mut().insert(ConnectInfo(peer));
                router.clone().oneshot(request)
            });
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, %peer, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(limits.shutdown_timeout) => {
            tracing::warn!(
                timeout_ms = limits.shutdown_timeout.as_millis(),
                "requests still in progress at the shutdown deadline are cut"
            );
        }
    }
    Ok(())
}

/// Errors that concern one connection only (it was reset before it was accepted).
fn is_connection_error(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}

/// The address a request came from: the connection's peer, or with `header` set (behind a
/// proxy that appends it, such as `X-Forwarded-For`) the last address in that header.
pub fn client_address(
    request_peer: Option<SocketAddr>,
    headers: &http::HeaderMap,
    header: Option<&http::HeaderName>,
) -> Option<std::net::IpAddr> {
    if let Some(header) = header {
        let forwarded = headers
            .get_all(header)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|a| a.trim().parse::<std::net::IpAddr>().ok())
            .next_back();
        if forwarded.is_some() {
            return forwarded;
        }
    }
    request_peer.map(|peer| peer.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_is_the_peer_unless_a_trusted_proxy_header_names_it() {
        let peer: SocketAddr = "10.0.0.9:5000".parse().expect("addr");
        let mut headers = http::HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            "203.0.113.7, 198.51.100.2".parse().expect("value"),
        );
        assert_eq!(
            client_address(Some(peer), &headers, None),
            Some(peer.ip()),
            "not trusted unless configured"
        );
        let header = http::HeaderName::from_static("x-forwarded-for");
        assert_eq!(
            client_address(Some(peer), &headers, Some(&header)),
            "198.51.100.2".parse().ok(),
            "the address the proxy appended"
        );
        headers.insert("x-forwarded-for", "garbage".parse().expect("value"));
        assert_eq!(
            client_address(Some(peer), &headers, Some(&header)),
            Some(peer.ip())
        );
    }
}
