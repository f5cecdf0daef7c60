//! HTTP client for the PG.

use crate::protocol::{Operation, PgReply, PgRequest};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use std::time::Duration;

/// Why a PG call has no answer. What matters to the caller is [`PgError::outcome_unknown`]:
/// whether the PG may have applied the operation.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// No answer in time: the PG may or may not have applied the operation.
    #[error("pg did not answer within the timeout")]
    Timeout,
    /// The request was (or may have been) sent and then the connection failed, or the PG
    /// answered 5xx: the operation may have been applied.
    #[error("pg answer lost: {0}")]
    AnswerLost(String),
    /// The PG could not be reached: no connection, so nothing was sent.
    #[error("pg unavailable: {0}")]
    Unavailable(String),
    /// The PG answered something we cannot read: treat like unavailable, but log it.
    #[error("pg answered with an unreadable body: {0}")]
    Protocol(String),
}

impl PgError {
    /// True when the PG may have applied the operation: the outcome is unknown until a
    /// status inquiry (or a retry with the same request id) says.
    pub fn outcome_unknown(&self) -> bool {
        !matches!(self, PgError::Unavailable(_))
    }
}

/// A client error before any answer: a failed connect means nothing reached the PG.
fn send_failed(error: hyper_util::client::legacy::Error) -> PgError {
    if error.is_connect() {
        PgError::Unavailable(error.to_string())
    } else {
        PgError::AnswerLost(error.to_string())
    }
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

    /// A GET with the call timeout: (status, body).
    async fn get(&self, path_and_query: &str) -> Result<(u16, Bytes), PgError> {
        let request = hyper::Request::builder()
            .method(hyper::Method::GET)
            .uri(format!("{}{path_and_query}", self.base_url))
            .body(Full::new(Bytes::new()))
            .map_err(|e| PgError::Protocol(e.to_string()))?;
        let exchange = async {
            let response = self.client.request(request).await.map_err(send_failed)?;
            let status = response.status().as_u16();
            let bytes = response
                .into_body()
                .collect()
                .await
                .map_err(|e| PgError::AnswerLost(e.to_string()))?
                .to_bytes();
            Ok((status, bytes))
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .unwrap_or(Err(PgError::Timeout))
    }

    /// The PG's records of payments with ids in `from..=to` (`GET /v1/records`), for
    /// reconciliation in bounded chunks.
    pub async fn records_between(
        &self,
        from: u64,
        to: u64,
    ) -> Result<Vec<crate::protocol::PgRecord>, PgError> {
        let (status, bytes) = self
            .get(&format!(
                "/v1/records?fromPaymentId={from}&toPaymentId={to}"
            ))
            .await?;
        if status != 200 {
            return Err(PgError::AnswerLost(format!("status {status}")));
        }
        #[derive(serde::Deserialize)]
        struct Records {
            records: Vec<crate::protocol::PgRecord>,
        }
        serde_json::from_slice::<Records>(&bytes)
            .map(|r| r.records)
            .map_err(|e| PgError::Protocol(e.to_string()))
    }

    /// The status inquiry (`GET /v1/transactions/{requestId}`): the PG's record of a
    /// request, or `None` when the PG never applied it.
    pub async fn status(
        &self,
        request_id: &str,
    ) -> Result<Option<crate::protocol::PgRecord>, PgError> {
        let (status, bytes) = self.get(&format!("/v1/transactions/{request_id}")).await?;
        match status {
            200 => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| PgError::Protocol(e.to_string())),
            404 => Ok(None),
            other => Err(PgError::AnswerLost(format!(
                "status inquiry: status {other}"
            ))),
        }
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
                .map_err(send_failed)?;
            let status = response.status();
            let bytes = response
                .into_body()
                .collect()
                .await
                .map_err(|e| PgError::AnswerLost(e.to_string()))?
                .to_bytes();
            if status.is_server_error() {
                // A 5xx does not say whether the PG applied the operation first.
                return Err(PgError::AnswerLost(format!("status {status}")));
            }
            if !status.is_success() {
                return Err(PgError::Protocol(format!("status {status}")));
            }
            serde_json::from_slice::<PgReply>(&bytes).map_err(|e| PgError::Protocol(e.to_string()))
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(PgError::Timeout),
        }
    }
}
