//! Building and running the service: `App::build(config)` binds its listener (port 0 in
//! tests), `run_until_stopped` serves until the shutdown future completes.

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::config::Config;
use crate::fetcher;
use crate::gateway::Gateway;
use crate::http::{AppState, router};
use crate::partners::auth::AuthScheme;
use crate::store::{self, SqlStoreHandle};

/// A built, bound, not yet serving instance.
#[derive(Debug)]
pub struct App {
    listener: TcpListener,
    router: axum::Router,
    store: SqlStoreHandle,
    gateway: Arc<Gateway>,
    fetch: fetcher::Cadence,
    retention: Option<std::time::Duration>,
}

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot open the store")]
    Store(#[from] store::StoreError),
    #[error("cannot listen on the configured address")]
    Listen(#[from] std::io::Error),
}

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
        let store = store::open(&config.database_url).await?;
        let listener = TcpListener::bind(config.listen).await?;
        let fetch = config.fetch;
        let admin_token = Arc::new(config.admin_token.clone());
        let max_body_bytes = config.max_body_bytes;
        let partner_names = Arc::new(config.partners.iter().map(|p| p.name.clone()).collect());
        let retention = config.retention;
        let gateway = Arc::new(Gateway::new(config, Arc::new(store.clone())));
        let state = AppState {
            retention,
            sessions: Arc::new(crate::http::session::Sessions::new(&admin_token)),
            admin_token,
            max_body_bytes,
            partner_names,
            gateway: Arc::clone(&gateway),
        };
        Ok(App {
            listener,
            router: router(state),
            store,
            gateway,
            fetch,
            retention,
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
    /// requests, stops the fetcher and closes the store.
    ///
    /// # Errors
    /// When the server fails.
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
        let fetcher = tokio::spawn(fetcher::run(self.gateway, self.fetch, stopped));
        let served = axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await;
        let _ = stop.send(true);
        let _ = fetcher.await;
        if let Some(purger) = purger {
            let _ = purger.await;
        }
        self.store.close().await;
        served
    }
}
