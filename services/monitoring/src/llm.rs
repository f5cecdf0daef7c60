//! The optional LLM summary of a report: the deterministic report, sent to the Anthropic
//! Messages API when an API key file is configured. Without a key the feature says so and
//! the deterministic report stands alone; an API failure is reported, never fatal.

use crate::config::LlmConfig;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value as Json};
use std::time::Duration;

pub struct Llm {
    key: Option<String>,
    model: String,
    base_url: String,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl Llm {
    pub fn new(config: &LlmConfig) -> Result<Self, String> {
        let key = match &config.api_key_file {
            Some(path) => Some(payrail_core::config::read_secret(path).map_err(|e| e.to_string())?),
            None => None,
        };
        // Roots compiled in: the static binary needs no CA bundle on the host.
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Self {
            key,
            model: config.model.clone(),
            base_url: config.base_url.trim_end_matches('/').to_owned(),
            client: Client::builder(TokioExecutor::new()).build(connector),
        })
    }

    /// A summary of `report` for an operator, or why there is none.
    pub async fn summarize(&self, report: &Json) -> Json {
        let Some(key) = &self.key else {
            return json!({
                "available": false,
                "reason": "no LLM API key configured (llm.api_key_file); the deterministic report above is complete",
            });
        };
        match self.ask(key, report).await {
            Ok(text) => json!({ "available": true, "model": self.model, "summary": text }),
            Err(e) => json!({ "available": false, "reason": format!("LLM call failed: {e}") }),
        }
    }

    async fn ask(&self, key: &str, report: &Json) -> Result<String, String> {
        let body = json!({
            "model": self.model,
            "max_tokens": 600,
            "messages": [{
                "role": "user",
                "content": format!(
                    "You are reviewing a payment system's operations report. In at most six short \
                     bullet points, say what happened, what is wrong if anything, and what to do next. \
                     Use only the numbers in the report.\n\n{report}"
                ),
            }],
        });
        let request = hyper::Request::post(format!("{}/v1/messages", self.base_url))
            .header("content-type", "application/json")
            .header("x-api-key", key)
            .header("anthropic-version", "2023-06-01")
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| e.to_string())?;
        let call = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| e.to_string())?;
            let status = response.status().as_u16();
            let bytes = response
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            let answer: Json = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
            if status != 200 {
                return Err(format!("HTTP {status}: {}", answer["error"]["message"]));
            }
            let text: Vec<&str> = answer["content"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c["text"].as_str())
                .collect();
            Ok(text.join("\n"))
        };
        tokio::time::timeout(Duration::from_secs(30), call)
            .await
            .map_err(|_| "no answer within 30 s".to_owned())?
    }
}
