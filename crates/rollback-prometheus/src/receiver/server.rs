//! The receiver's own HTTP server.

use std::net::SocketAddr;

use super::{AlertmanagerReceiver, WEBHOOK_PATH};
use crate::error::PrometheusError;

impl AlertmanagerReceiver {
    /// Serve the webhook on `addr` (port 0 picks a free port) until the
    /// returned handle is shut down or dropped.
    pub async fn serve(&self, addr: SocketAddr) -> Result<ReceiverServer, PrometheusError> {
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            PrometheusError::config("listen", format!("cannot listen on {addr}: {e}"))
        })?;
        let local = listener.local_addr().map_err(|e| {
            PrometheusError::config("listen", format!("no local address for {addr}: {e}"))
        })?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let router = self.router();
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = rx.await;
            };
            if let Err(e) = axum::serve(listener, router)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::error!(error = %e, "the Alertmanager receiver stopped");
            }
        });
        tracing::info!(addr = %local, path = WEBHOOK_PATH, "Alertmanager receiver listening");
        Ok(ReceiverServer {
            addr: local,
            shutdown: Some(tx),
            task: Some(task),
        })
    }
}

/// A running receiver; stops when shut down or dropped.
#[derive(Debug)]
pub struct ReceiverServer {
    addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl ReceiverServer {
    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The webhook URL to give Alertmanager.
    pub fn url(&self) -> String {
        format!("http://{}{}", self.addr, WEBHOOK_PATH)
    }

    /// Stop accepting requests and wait for those in progress.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for ReceiverServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
