//! Anthropic Messages API (`POST {base_url}/messages`, default base
//! `https://api.anthropic.com/v1`), with `x-api-key` and `anthropic-version`
//! (`2023-06-01`, or the config's `api_version`). Configured `headers` come
//! last (`anthropic-beta`, a proxy's own auth).
//!
//! [`wire`] holds the wire structs (also used by the router's
//! Anthropic-compatible `/v1/messages`), [`convert`] the translations to and
//! from the canonical model (including the `max_tokens` default table and the
//! structured-output fallback), [`stream`] the SSE adapter, [`error`] the
//! failure classification, [`ingress`] the router-side inverse mapping.

use std::time::Duration;

use futures_util::StreamExt;
use http::header::{ACCEPT, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue};
use switchyard_config::{ProviderConfig, Secret};
use switchyard_proto::gateway::v1::{ChatChunk, ChatResult};
use tracing::Instrument;
use url::Url;

use crate::http_call::{self, failed};
use crate::registry::BuildError;
use crate::upstream::{ERROR_BODY_LIMIT, body_excerpt, from_reqwest, read_limited};
use crate::{ChatCall, ChunkStream, Provider, ProviderError};

pub mod convert;
pub mod error;
pub mod ingress;
pub mod stream;
pub mod wire;

pub use convert::default_max_tokens;
pub use error::{classify_error, classify_error_body};

/// Where `kind: anthropic` goes when the config names no `base_url`.
pub const DEFAULT_BASE_URL: &str = "https://api.anthropic.com/v1";

pub struct AnthropicProvider {
    name: String,
    endpoint: Url,
    /// x-api-key (marked sensitive), anthropic-version and the configured
    /// extra headers.
    headers: HeaderMap,
    /// Kept only to scrub it from upstream error messages that echo it.
    api_key: Option<Secret>,
    timeout: Duration,
    http: reqwest::Client,
}

impl std::fmt::Debug for AnthropicProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnthropicProvider")
            .field("name", &self.name)
            .field("endpoint", &self.endpoint.as_str())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl AnthropicProvider {
    pub fn new(cfg: &ProviderConfig, http: reqwest::Client) -> Result<Self, BuildError> {
        let endpoint = http_call::endpoint(cfg, DEFAULT_BASE_URL, &["messages"])?;
        let mut headers = HeaderMap::new();
        let api_key = cfg.resolve_api_key();
        match &api_key {
            Some(key) => {
                let mut value =
                    HeaderValue::from_str(key.expose()).map_err(|_| BuildError::InvalidApiKey {
                        provider: cfg.name.clone(),
                    })?;
                value.set_sensitive(true);
                headers.insert("x-api-key", value);
            }
            None => {
                if let Some(var) = &cfg.api_key_env {
                    tracing::warn!(provider = %cfg.name, env = %var, "no API key: the environment variable is unset or empty; calling upstream without one");
                }
            }
        }
        let version = cfg.api_version.as_deref().unwrap_or(wire::DEFAULT_VERSION);
        let version = HeaderValue::from_str(version).map_err(|e| BuildError::InvalidHeader {
            provider: cfg.name.clone(),
            name: "anthropic-version".into(),
            reason: e.to_string(),
        })?;
        headers.insert("anthropic-version", version);
        http_call::add_configured_headers(cfg, &mut headers)?;
        Ok(Self {
            name: cfg.name.clone(),
            endpoint,
            headers,
            api_key,
            timeout: cfg.timeout,
            http,
        })
    }

    /// Sends the request; a non-2xx answer comes back classified. Returns
    /// the structured-output tool's name with the response.
    async fn send(
        &self,
        call: &ChatCall,
        stream: bool,
        deadline: Duration,
    ) -> Result<(reqwest::Response, Option<String>), ProviderError> {
        let req = convert::spec_to_request(&call.spec, &call.upstream_model, stream)?;
        let body = serde_json::to_vec(&req.body).map_err(|e| ProviderError::BadRequest {
            message: format!("could not encode the upstream request: {e}"),
            status: 400,
            param: None,
            code: None,
        })?;
        tracing::debug!(provider = %self.name, request_id = %call.request_id, model = %call.upstream_model, stream, "calling upstream");
        let resp = self
            .http
            .post(self.endpoint.clone())
            .headers(self.headers.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(
                ACCEPT,
                if stream {
                    "text/event-stream"
                } else {
                    "application/json"
                },
            )
            .body(body)
            .send()
            .await
            .map_err(|e| from_reqwest(&e, deadline))?;
        let status = resp.status();
        // i64: the OpenTelemetry layer records unsigned integers as text.
        tracing::Span::current().record("http.response.status_code", i64::from(status.as_u16()));
        if status.is_success() {
            return Ok((resp, req.answer_tool));
        }
        let headers = resp.headers().clone();
        let body = read_limited(resp, ERROR_BODY_LIMIT).await;
        let err = classify_error(status, &headers, &body);
        tracing::debug!(provider = %self.name, request_id = %call.request_id, %status, error = %err, "upstream refused");
        Err(err)
    }

    fn scrub(&self, e: ProviderError) -> ProviderError {
        http_call::scrub(self.api_key.as_ref(), e)
    }

    async fn chat_inner(
        &self,
        call: &ChatCall,
        deadline: Duration,
    ) -> Result<ChatResult, ProviderError> {
        let (resp, answer_tool) = self.send(call, false, deadline).await?;
        let body = resp.bytes().await.map_err(|e| from_reqwest(&e, deadline))?;
        parse_response(&body, answer_tool.as_deref())
    }

    /// Everything up to the first chunk: the part the deadline covers.
    async fn open_stream(
        &self,
        call: &ChatCall,
        deadline: Duration,
    ) -> Result<Opened, ProviderError> {
        let (resp, answer_tool) = self.send(call, true, deadline).await?;
        let is_json = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().starts_with("application/json"));
        if is_json {
            // A proxy that ignored `stream: true`.
            let body = resp.bytes().await.map_err(|e| from_reqwest(&e, deadline))?;
            let result = parse_response(&body, answer_tool.as_deref())?;
            return Ok(Opened::Complete(crate::openai::convert::result_to_chunks(
                &result,
            )));
        }
        let mut chunks = stream::SseChunks::new(
            resp.bytes_stream().boxed(),
            answer_tool,
            convert::now_unix(),
        );
        let first = chunks.next().await;
        Ok(Opened::Streaming(first, Box::new(chunks)))
    }
}

/// reqwest's body stream type is unnameable; boxed.
type BodyChunks = stream::SseChunks<
    futures_util::stream::BoxStream<'static, Result<bytes::Bytes, reqwest::Error>>,
>;

enum Opened {
    Complete(Vec<ChatChunk>),
    Streaming(Option<Result<ChatChunk, ProviderError>>, Box<BodyChunks>),
}

/// A 2xx body: the answer, or an error body a proxy sent with 200.
fn parse_response(body: &[u8], answer_tool: Option<&str>) -> Result<ChatResult, ProviderError> {
    match serde_json::from_slice::<wire::MessagesResponse>(body) {
        Ok(resp) if resp.kind != "error" => Ok(convert::response_to_result(resp, answer_tool)),
        Ok(_) => Err(classify_error_body(body)),
        Err(e) => {
            let is_error = serde_json::from_slice::<serde_json::Value>(body)
                .is_ok_and(|v| v.get("type").and_then(|t| t.as_str()) == Some("error"));
            if is_error {
                Err(classify_error_body(body))
            } else {
                Err(ProviderError::InvalidResponse(format!(
                    "{e}: {}",
                    body_excerpt(body)
                )))
            }
        }
    }
}

#[async_trait::async_trait]
impl Provider for AnthropicProvider {
    fn kind(&self) -> &'static str {
        "anthropic"
    }

    async fn chat(&self, call: &ChatCall) -> Result<ChatResult, ProviderError> {
        let deadline = http_call::deadline(self.timeout, call);
        let span = http_call::upstream_span(&self.name, call, &self.endpoint);
        let result = match tokio::time::timeout(deadline, self.chat_inner(call, deadline))
            .instrument(span.clone())
            .await
        {
            Ok(r) => r.map_err(|e| self.scrub(e)),
            Err(_) => Err(ProviderError::Timeout(deadline)),
        };
        if let Err(e) = &result {
            failed(&span, e);
        }
        result
    }

    async fn chat_stream(&self, call: &ChatCall) -> Result<ChunkStream, ProviderError> {
        let deadline = http_call::deadline(self.timeout, call);
        let span = http_call::upstream_span(&self.name, call, &self.endpoint);
        let opened = match tokio::time::timeout(deadline, self.open_stream(call, deadline))
            .instrument(span.clone())
            .await
        {
            Ok(r) => r.map_err(|e| self.scrub(e)),
            Err(_) => Err(ProviderError::Timeout(deadline)),
        };
        let opened = opened.inspect_err(|e| failed(&span, e))?;
        match opened {
            Opened::Complete(chunks) => Ok(Box::pin(futures_util::stream::iter(
                chunks.into_iter().map(Ok),
            ))),
            Opened::Streaming(None, _) => Ok(Box::pin(futures_util::stream::empty())),
            Opened::Streaming(Some(Err(e)), _) => {
                let e = self.scrub(e);
                failed(&span, &e);
                Err(e)
            }
            Opened::Streaming(Some(Ok(first)), rest) => {
                let key = self.api_key.clone();
                // The span lives as long as the body: the upstream call ends
                // with the stream.
                let rest = rest.map(move |item| {
                    item.map_err(|e| {
                        let e = http_call::scrub(key.as_ref(), e);
                        failed(&span, &e);
                        e
                    })
                });
                Ok(Box::pin(
                    futures_util::stream::once(async { Ok(first) }).chain(rest),
                ))
            }
        }
    }
}

#[cfg(test)]
mod double;

#[cfg(test)]
mod tests;
