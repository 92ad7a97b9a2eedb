//! Building and running the service: `App::build(config)` binds its listener (port 0 in
//! tests), `run_until_stopped` serves until the shutdown future completes.

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::config::Config;
use crate::fetcher;
use crate::gateway::Gateway;
use crate::gateway::registry::PartnerSync;
use crate::http::{AppState, router};
use crate::partners::auth::AuthScheme;
use crate::store::{self, SqlStoreHandle};
use crate::webhooks::dispatch::Dispatcher;

/// A built, bound, not yet serving instance.
#[derive(Debug)]
pub struct App {
    listener: TcpListener,
    router: axum::Router,
    store: SqlStoreHandle,
    gateway: Arc<Gateway>,
    fetch: fetcher::Cadence,
    retention: Option<std::time::Duration>,
    connections: crate::config::ConnectionLimits,
    dispatcher: Dispatcher,
    silence: crate::config::SilenceSettings,
    partner_sync: Arc<PartnerSync>,
}

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot open the store")]
    Store(#[from] store::StoreError),
    #[error("cannot listen on the configured address")]
    Listen(#[from] std::io::Error),
    #[error("cannot build the webhook client: {0}")]
    Webhooks(String),
}

/// How often expired page sessions are deleted (they are refused as soon as they expire;
/// this only keeps the table small).
const SESSION_SWEEP: std::time::Duration = std::time::Duration::from_secs(3600);

impl App {
    /// Opens the store (running migrations), builds the pipeline and binds the listener.
    ///
    /// # Errors
    /// When the database cannot be opened or migrated, or the address cannot be bound.
    pub async fn build(config: Config) -> Result<App, StartError> {
        for partner in &config.partners {
            if matches!(partner.auth, AuthScheme::None) {
                tracing::warn!(partner = %partner.name, "partner has auth scheme \"none\": anyone can post events as this partner");
            }
        }
        crate::telemetry::metrics();
        let options = store::OpenOptions {
            connect_for: config.database_connect_timeout,
            exclusive: true,
            writers: config.database_writers,
            synchronous: config.sqlite_synchronous,
        };
        let store = store::open_with(&config.database_url, options).await?;
        let listener = TcpListener::bind(config.listen).await?;
        let fetch = config.fetch;
        let admin_token = Arc::new(config.admin_token.clone());
        let max_body_bytes = config.max_body_bytes;
        let connections = config.connections;
        let client_ip_header = config.client_ip_header.clone();
        let readiness_timeout = config.readiness_timeout;
        let retention = config.retention;
        let webhooks = config.webhooks.clone();
        let silence = config.silence.clone();
        let secure_cookies = config.public_url.starts_with("https://");
        let sealer = config
            .secret_key
            .as_ref()
            .and_then(|key| crate::sealed::Sealer::from_base64(key).ok());
        let gateway = Arc::new(Gateway::new(config, Arc::new(store.clone())));
        let partner_sync = Arc::new(PartnerSync::new(
            Arc::clone(&gateway),
            Arc::new(store.clone()),
            sealer,
        ));
        // The database's partners take deliveries from the first request on.
        partner_sync.poll().await?;
        let dispatcher =
            Dispatcher::new(Arc::clone(gateway.store()), webhooks).map_err(StartError::Webhooks)?;
        let operators: Arc<dyn crate::store::operators::Operators> = Arc::new(store.clone());
        let state = AppState {
            retention,
            operators,
            passwords: Arc::new(crate::accounts::PasswordWork::default()),
            secure_cookies,
            admin_token,
            max_body_bytes,
            partner_sync: Arc::clone(&partner_sync),
            gateway: Arc::clone(&gateway),
            connections,
            client_ip_header,
            readiness_timeout,
            webhook_ranges: Arc::new(dispatcher.ranges().clone()),
        };
        Ok(App {
            listener,
            router: router(state),
            store,
            gateway,
            fetch,
            retention,
            connections,
            dispatcher,
            silence,
            partner_sync,
        })
    }

    pub fn port(&self) -> u16 {
        self.listener
            .local_addr()
            .map(|a| a.port())
            .unwrap_or_default()
    }

    /// The store this instance writes to.
    pub fn store(&self) -> &SqlStoreHandle {
        &self.store
    }

    /// Serves (and runs the fetcher) until `shutdown` completes, then finishes in-flight
    /// requests (for at most the configured `shutdown_timeout_ms`), stops the fetcher and
    /// closes the store, within a bounded time even when the database is unreachable.
    ///
    /// # Errors
    /// When the server fails, or when the store died under it (the SQLite writer thread
    /// stopped): the service then stops at once, so the process exits non-zero and a
    /// supervisor restarts it, rather than answer every write with a 500.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let purger = self.retention.map(|keep| {
            tokio::spawn(crate::retention::run(
                Arc::clone(&self.gateway),
                keep,
                stopped.clone(),
            ))
        });
        let dispatcher = tokio::spawn(self.dispatcher.run(stopped.clone()));
        let watcher = tokio::spawn(crate::silence::run(
            Arc::clone(self.gateway.store()),
            self.silence,
            stopped.clone(),
        ));
        let operators: Arc<dyn crate::store::operators::Operators> = Arc::new(self.store.clone());
        let sweeper = tokio::spawn(crate::schedule::every(
            SESSION_SWEEP,
            SESSION_SWEEP,
            stopped.clone(),
            "expired sessions were not deleted",
            move || {
                let operators = Arc::clone(&operators);
                async move { operators.delete_expired_sessions(chrono::Utc::now()).await }
            },
        ));
        let partner_sync = Arc::clone(&self.partner_sync);
        let reloader = tokio::spawn(crate::schedule::every(
            PartnerSync::POLL,
            PartnerSync::POLL,
            stopped.clone(),
            "the database's partners were not reloaded",
            move || {
                let partner_sync = Arc::clone(&partner_sync);
                async move { partner_sync.poll().await }
            },
        ));
        let fetcher = tokio::spawn(fetcher::run(self.gateway, self.fetch, stopped));
        let (died_tx, died_rx) = tokio::sync::oneshot::channel::<String>();
        let store = self.store.clone();
        // When stopping began: serving and cleaning up share one shutdown_timeout from it.
        let began = Arc::new(std::sync::OnceLock::new());
        let began_at = Arc::clone(&began);
        let stopping = async move {
            tokio::select! {
                () = shutdown => {}
                reason = store.died() => {
                    let _ = died_tx.send(reason);
                }
            }
            let _ = began_at.set(tokio::time::Instant::now());
        };
        let served =
            crate::http::serve::serve(self.listener, self.router, self.connections, stopping).await;
        let _ = stop.send(true);
        let cleanup = async {
            let _ = fetcher.await;
            let _ = dispatcher.await;
            let _ = watcher.await;
            let _ = sweeper.await;
            let _ = reloader.await;
            if let Some(purger) = purger {
                let _ = purger.await;
            }
            self.store.close().await;
        };
        let deadline = began
            .get()
            .map_or_else(tokio::time::Instant::now, |began| *began)
            + self.connections.shutdown_timeout;
        // At least a moment to close the store cleanly, even if serving used it all.
        let deadline =
            deadline.max(tokio::time::Instant::now() + std::time::Duration::from_millis(250));
        if tokio::time::timeout_at(deadline, cleanup).await.is_err() {
            tracing::warn!("background work or the store did not stop in time; exiting anyway");
        }
        if let Ok(reason) = died_rx.await {
            return Err(std::io::Error::other(format!(
                "the store can no longer write ({reason}); exiting so a supervisor restarts the service"
            )));
        }
        served
    }
}
