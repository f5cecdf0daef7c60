//! HTTP client for the PG.

use crate::protocol::{Operation, PgReply, PgRequest};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// No answer in time: the PG may or may not have applied the operation.
    #[error("pg did not answer within the timeout")]
    Timeout,
    /// The PG could not be reached or answered 5xx.
    #[error("pg unavailable: {0}")]
    Unavailable(String),
    /// The PG answered something we cannot read: treat like unavailable, but log it.
    #[error("pg answered with an unreadable body: {0}")]
    Protocol(String),
}

#[derive(Clone)]
pub struct PgClient {
    client: Client<HttpConnector, Full<Bytes>>,
    base_url: String,
    timeout: Duration,
}

impl PgClient {
    /// `base_url` like `http://127.0.0.1:8090`; `pool_idle_max` bounds idle keep-alive
    /// connections kept to the PG.
    pub fn new(
        base_url: &str,
        timeout: Duration,
        connect_timeout: Duration,
        pool_idle_max: usize,
    ) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(connect_timeout));
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(pool_idle_max)
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Self {
            client,
            base_url: base_url.trim_end_matches('/').to_owned(),
            timeout,
        }
    }

    /// The PG's own records (`GET /v1/records`), for reconciliation.
    pub async fn records(&self) -> Result<Vec<crate::protocol::PgRecord>, PgError> {
        let request = hyper::Request::builder()
            .method(hyper::Method::GET)
            .uri(format!("{}/v1/records", self.base_url))
            .body(Full::new(Bytes::new()))
            .map_err(|e| PgError::Protocol(e.to_string()))?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| PgError::Unavailable(e.to_string()))?;
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| PgError::Unavailable(e.to_string()))?
            .to_bytes();
        #[derive(serde::Deserialize)]
        struct Records {
            records: Vec<crate::protocol::PgRecord>,
        }
        serde_json::from_slice::<Records>(&bytes)
            .map(|r| r.records)
            .map_err(|e| PgError::Protocol(e.to_string()))
    }

    pub async fn call(
        &self,
        operation: Operation,
        request: &PgRequest,
    ) -> Result<PgReply, PgError> {
        let body = serde_json::to_vec(request).map_err(|e| PgError::Protocol(e.to_string()))?;
        let http_request = hyper::Request::builder()
            .method(hyper::Method::POST)
            .uri(format!("{}{}", self.base_url, operation.path()))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| PgError::Protocol(e.to_string()))?;
        let exchange = async {
            let response = self
                .client
                .request(http_request)
                .await
                .map_err(|e| PgError::Unavailable(e.to_string()))?;
            let status = response.status();
            let bytes = response
                .into_body()
                .collect()
                .await
                .map_err(|e| PgError::Unavailable(e.to_string()))?
                .to_bytes();
            if !status.is_success() {
                return Err(PgError::Unavailable(format!("status {status}")));
            }
            serde_json::from_slice::<PgReply>(&bytes).map_err(|e| PgError::Protocol(e.to_string()))
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(PgError::Timeout),
        }
    }
}
