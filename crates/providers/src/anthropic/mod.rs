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

use http::{HeaderMap, HeaderValue};
use switchyard_config::ProviderConfig;
use switchyard_proto::gateway::v1::ChatResult;
use url::Url;

use crate::http_call::{self, Opened, Upstream};
use crate::registry::BuildError;
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
    /// x-api-key and anthropic-version in its headers.
    up: Upstream,
    endpoint: Url,
}

impl std::fmt::Debug for AnthropicProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnthropicProvider")
            .field("name", &self.up.name)
            .field("endpoint", &self.endpoint.as_str())
            .field("timeout", &self.up.timeout)
            .finish_non_exhaustive()
    }
}

impl AnthropicProvider {
    pub fn new(cfg: &ProviderConfig, http: reqwest::Client) -> Result<Self, BuildError> {
        let endpoint = http_call::endpoint(cfg, DEFAULT_BASE_URL, &["messages"])?;
        let mut headers = HeaderMap::new();
        let mut secrets = Vec::new();
        if let Some((key, value)) =
            http_call::api_key(cfg, cfg.api_key_env.as_deref(), str::to_owned)?
        {
            headers.insert("x-api-key", value);
            secrets.push(key);
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
            up: Upstream::new(cfg, http, headers, secrets, classify_error),
            endpoint,
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
        let url = self.endpoint.clone();
        let accept = http_call::accept(stream);
        let resp = self
            .up
            .post_json(&call.request_id, url, &req.body, accept, deadline)
            .await?;
        Ok((resp, req.answer_tool))
    }

    async fn chat_inner(
        &self,
        call: &ChatCall,
        deadline: Duration,
    ) -> Result<ChatResult, ProviderError> {
        let (resp, answer_tool) = self.send(call, false, deadline).await?;
        let body = http_call::read_body(resp, deadline).await?;
        parse_response(&body, answer_tool.as_deref())
    }

    /// Everything up to the stream: the part the deadline covers.
    async fn open_stream(
        &self,
        call: &ChatCall,
        deadline: Duration,
    ) -> Result<Opened, ProviderError> {
        let (resp, answer_tool) = self.send(call, true, deadline).await?;
        if http_call::is_json(&resp) {
            // A proxy that ignored `stream: true`.
            let body = http_call::read_body(resp, deadline).await?;
            let result = parse_response(&body, answer_tool.as_deref())?;
            return Ok(Opened::Complete(crate::openai::convert::result_to_chunks(
                &result,
            )));
        }
        Ok(Opened::Streaming(Box::pin(stream::SseChunks::new(
            resp.bytes_stream(),
            answer_tool,
            convert::now_unix(),
        ))))
    }
}

/// A 2xx body: the answer, or an error body a proxy sent with 200.
fn parse_response(body: &[u8], answer_tool: Option<&str>) -> Result<ChatResult, ProviderError> {
    let is_error = |v: &serde_json::Value| v.get("type").and_then(|t| t.as_str()) == Some("error");
    let resp: wire::MessagesResponse = http_call::parse_2xx(body, is_error, classify_error_body)?;
    if resp.kind == "error" {
        return Err(classify_error_body(body));
    }
    Ok(convert::response_to_result(resp, answer_tool))
}

#[async_trait::async_trait]
impl Provider for AnthropicProvider {
    fn kind(&self) -> &'static str {
        "anthropic"
    }

    async fn chat(&self, call: &ChatCall) -> Result<ChatResult, ProviderError> {
        let chat = async |deadline| self.chat_inner(call, deadline).await;
        self.up
            .unary(
                "chat",
                &call.upstream_model,
                &self.endpoint,
                call.timeout,
                chat,
            )
            .await
    }

    async fn chat_stream(&self, call: &ChatCall) -> Result<ChunkStream, ProviderError> {
        let open = async |deadline| self.open_stream(call, deadline).await;
        self.up
            .stream(&call.upstream_model, &self.endpoint, call.timeout, open)
            .await
    }
}

#[cfg(any(test, feature = "doubles"))]
pub mod double;

#[cfg(test)]
mod tests;
