//! HTTP adapter for an intermediary that speaks the simulator's API (`/sim/...`):
//! per-call timeouts, and a few quick retries with backoff for transient errors.

use std::time::Duration;

use async_trait::async_trait;
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::*;

/// Settings of the HTTP adapter.
#[derive(Debug, Clone)]
pub struct HttpIntermediaryConfig {
    /// Base URL, e.g. `http://127.0.0.1:8080/sim`.
    pub base_url: String,
    /// Time limit of one call.
    pub timeout: Duration,
    /// Extra attempts after a transient failure, within one call.
    pub retries: u32,
    /// First backoff between attempts (doubled each time).
    pub backoff: Duration,
    /// How to authenticate (HTTP basic and/or `X-Api-Key`), opened from the service's
    /// sealed credentials.
    pub credentials: Option<super::Credentials>,
}

impl HttpIntermediaryConfig {
    /// Defaults for a base URL: 5 s timeout, 2 retries from 200 ms.
    pub fn new(base_url: impl Into<String>) -> Self {
        HttpIntermediaryConfig {
            base_url: base_url.into().trim_end_matches('/').to_string(),
            timeout: Duration::from_secs(5),
            retries: 2,
            backoff: Duration::from_millis(200),
            credentials: None,
        }
    }
}

/// The simulator-API client.
#[derive(Debug, Clone)]
pub struct HttpIntermediary {
    config: HttpIntermediaryConfig,
    client: reqwest::Client,
}

impl HttpIntermediary {
    /// An adapter calling through `client`, one that `outbound::Outbound` built and
    /// admitted this base URL for (redirects not followed, names resolved by the guard).
    pub fn new(config: HttpIntermediaryConfig, client: reqwest::Client) -> Self {
        HttpIntermediary { config, client }
    }

    async fn call<B: Serialize + Sync, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, IntermediaryError> {
        let url = format!("{}{}", self.config.base_url, path);
        let mut delay = self.config.backoff;
        let mut attempt = 0;
        loop {
            match self.once(method.clone(), &url, body).await {
                Err(IntermediaryError::Transient(reason)) if attempt < self.config.retries => {
                    tracing::debug!(%url, %reason, attempt, "transient intermediary error, retrying");
                    attempt += 1;
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                other => return other,
            }
        }
    }

    async fn once<B: Serialize + Sync, T: DeserializeOwned>(
        &self,
        method: Method,
        url: &str,
        body: Option<&B>,
    ) -> Result<T, IntermediaryError> {
        let mut request = self
            .client
            .request(method, url)
            .timeout(self.config.timeout);
        if let Some(credentials) = &self.config.credentials {
            if let Some(username) = &credentials.username {
                // reqwest marks the Authorization header sensitive (never in its Debug).
                request = request.basic_auth(username, credentials.password.as_ref());
            }
            if let Some(key) = &credentials.api_key {
                let mut value = reqwest::header::HeaderValue::from_str(key).map_err(|_| {
                    IntermediaryError::Refused(
                        "the configured api_key is not a valid header value".into(),
                    )
                })?;
                value.set_sensitive(true);
                request = request.header("X-Api-Key", value);
            }
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| {
            IntermediaryError::Transient(if e.is_timeout() {
                format!("no answer within {:?}", self.config.timeout)
            } else {
                format!(
                    "cannot reach the intermediary: {}",
                    crate::outbound::describe(&e)
                )
            })
        })?;
        let status = response.status();
        // Capped: an intermediary (or whoever answers in its place) cannot exhaust memory.
        let body = crate::outbound::read_capped(response)
            .await
            .map_err(|e| IntermediaryError::Transient(e.to_string()))?;
        if status.is_success() {
            return serde_json::from_slice::<T>(&body)
                .map_err(|e| IntermediaryError::Transient(format!("unreadable answer: {e}")));
        }
        let text = String::from_utf8_lossy(&body);
        Err(match status {
            StatusCode::NOT_FOUND => IntermediaryError::NotFound,
            StatusCode::CONFLICT => IntermediaryError::AlreadyPaid,
            StatusCode::TOO_MANY_REQUESTS | StatusCode::REQUEST_TIMEOUT => {
                IntermediaryError::Transient(format!("{status}: {text}"))
            }
            s if s.is_server_error() => IntermediaryError::Transient(format!("{status}: {text}")),
            _ => IntermediaryError::Refused(format!("{status}: {text}")),
        })
    }
}

#[async_trait]
impl Intermediary for HttpIntermediary {
    async fn create_position(
        &self,
        request: &PositionRequest,
    ) -> Result<Position, IntermediaryError> {
        self.call(Method::POST, "/positions", Some(request)).await
    }

    async fn position(&self, iuv: &str) -> Result<Position, IntermediaryError> {
        self.call::<(), _>(Method::GET, &format!("/positions/{iuv}"), None)
            .await
    }

    async fn cancel_position(&self, iuv: &str) -> Result<(), IntermediaryError> {
        self.call::<(), serde_json::Value>(Method::DELETE, &format!("/positions/{iuv}"), None)
            .await
            .map(|_| ())
    }

    async fn execute_payment(
        &self,
        request: &GatewayRequest,
    ) -> Result<GatewayResult, IntermediaryError> {
        self.call(Method::POST, "/payments", Some(request)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn https_intermediaries_are_reachable_in_principle() {
        // Nothing listens there: the call must fail as a connection problem (transient),
        // not because the client cannot speak TLS.
        let mut config = HttpIntermediaryConfig::new("https://127.0.0.1:9/sim");
        config.retries = 0;
        let outbound = crate::outbound::Outbound::new(
            crate::outbound::AllowList::default(),
            std::time::Duration::from_secs(1),
        );
        let client = HttpIntermediary::new(config, outbound.client(None).unwrap());
        let error = client
            .client
            .get("https://127.0.0.1:9/")
            .send()
            .await
            .unwrap_err();
        let detail = format!("{error:?}");
        assert!(
            !detail.contains("scheme is not http"),
            "TLS support missing: {detail}"
        );
        assert!(detail.contains("Connection refused"), "{detail}");
        assert!(matches!(
            client.position("1").await,
            Err(IntermediaryError::Transient(_))
        ));
    }
}
