//! The kit's webhook receiver: records every delivery as it arrived, raw, so the signature is
//! checked over exactly the bytes that were signed.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use chrono::{DateTime, Utc};
use tokio::net::TcpListener;

use crate::edges::webhook::{SIGNATURE_HEADER, TIMESTAMP_HEADER};

#[derive(Debug, Clone)]
pub struct Received {
    pub timestamp: Option<String>,
    pub signature: Option<String>,
    pub body: Vec<u8>,
    pub received_at: DateTime<Utc>,
}

type Log = Arc<Mutex<Vec<Received>>>;

pub struct Receiver {
    addr: SocketAddr,
    log: Log,
    task: tokio::task::JoinHandle<()>,
}

async fn deliver(State(log): State<Log>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    log.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(Received {
            timestamp: header(TIMESTAMP_HEADER),
            signature: header(SIGNATURE_HEADER),
            body: body.to_vec(),
            received_at: Utc::now(),
        });
    StatusCode::ACCEPTED
}

impl Receiver {
    pub async fn start(addr: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let log: Log = Arc::default();
        let app = crate::common::http_errors::json_errors(
            Router::new()
                .route("/webhook", post(deliver))
                .with_state(log.clone()),
        );
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "conformance webhook receiver stopped");
            }
        });
        Ok(Receiver { addr, log, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn received(&self) -> Vec<Received> {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}
