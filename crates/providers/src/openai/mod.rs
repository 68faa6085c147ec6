//! OpenAI chat completions (`POST {base_url}/chat/completions`), which also
//! serves every OpenAI-compatible vendor by `base_url`: vLLM, Ollama,
//! Mistral, DeepSeek, Groq, Together, xAI, Azure OpenAI (with an `api-key`
//! header in `headers`), ...
//!
//! [`wire`] holds the wire structs (also used by the router for its
//! OpenAI-compatible HTTP API), [`convert`] the translations to and from the
//! canonical model, [`stream`] the SSE adapter, [`error`] the failure
//! classification.

use std::time::Duration;

use futures_util::StreamExt;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue};
use switchyard_config::{ProviderConfig, ProviderKind, Secret, WireFormat};
use switchyard_proto::gateway::v1::{ChatChunk, ChatResult};
use tracing::Instrument;
use url::Url;

use crate::registry::BuildError;
use crate::upstream::{ERROR_BODY_LIMIT, body_excerpt, from_reqwest, read_limited};
use crate::{ChatCall, ChunkStream, Provider, ProviderError};

pub mod convert;
pub mod embeddings;
pub mod error;
pub mod images;
pub mod presets;
pub mod stream;
pub mod wire;

pub use convert::{ConvertError, MaxTokensField};
pub use error::{classify_error, classify_error_body};
pub use presets::Preset;

/// Where `kind: openai` goes when the config names no `base_url`.
pub const DEFAULT_BASE_URL: &str = switchyard_config::DEFAULT_OPENAI_BASE_URL;

pub struct OpenAiProvider {
    name: String,
    kind: ProviderKind,
    /// The chat completions URL. Azure: the resource URL; the deployment
    /// (the call's upstream model) goes into the path per call.
    endpoint: Url,
    /// Azure OpenAI: the `api-version` query parameter.
    azure_api_version: Option<String>,
    /// Authorization or `api-key` (marked sensitive) and the configured
    /// extra headers.
    headers: HeaderMap,
    /// Kept only to scrub it from upstream error messages that echo it.
    api_key: Option<Secret>,
    timeout: Duration,
    preset: Preset,
    http: reqwest::Client,
}

/// Azure OpenAI's GA data-plane API version, used when the config names
/// none.
pub const AZURE_DEFAULT_API_VERSION: &str = "2024-10-21";

impl std::fmt::Debug for OpenAiProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiProvider")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("endpoint", &self.endpoint.as_str())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl OpenAiProvider {
    /// Serves `kind: openai`, `azure-openai` and every OpenAI-compatible
    /// vendor kind (its dialect from [`Preset::of`]).
    pub fn new(cfg: &ProviderConfig, http: reqwest::Client) -> Result<Self, BuildError> {
        let azure = cfg.kind.wire_format() == WireFormat::AzureOpenai;
        let base = cfg
            .base_url
            .as_deref()
            .or(cfg.kind.default_base_url())
            .unwrap_or(DEFAULT_BASE_URL);
        let invalid_url = |reason: String| BuildError::InvalidBaseUrl {
            provider: cfg.name.clone(),
            url: base.to_owned(),
            reason,
        };
        let mut endpoint = Url::parse(base).map_err(|e| invalid_url(e.to_string()))?;
        if !matches!(endpoint.scheme(), "http" | "https") {
            return Err(invalid_url("the scheme must be http or https".into()));
        }
        if endpoint.cannot_be_a_base() {
            return Err(invalid_url("the URL cannot have a path".into()));
        }
        if !azure {
            endpoint
                .path_segments_mut()
                .map_err(|()| invalid_url("the URL cannot have a path".into()))?
                .pop_if_empty()
                .extend(["chat", "completions"]);
        }

        let mut headers = HeaderMap::new();
        let api_key = cfg.resolve_api_key();
        match &api_key {
            Some(key) => {
                // Azure takes the key in `api-key`; everyone else as a
                // bearer token.
                let (name, text) = if azure {
                    (HeaderName::from_static("api-key"), key.expose().to_owned())
                } else {
                    (AUTHORIZATION, format!("Bearer {}", key.expose()))
                };
                let mut value =
                    HeaderValue::from_str(&text).map_err(|_| BuildError::InvalidApiKey {
                        provider: cfg.name.clone(),
                    })?;
                value.set_sensitive(true);
                headers.insert(name, value);
            }
            None => {
                if let Some(var) = cfg.api_key_env.as_deref().or(cfg.kind.key_env()) {
                    tracing::warn!(provider = %cfg.name, env = %var, "no API key: the environment variable is unset or empty; calling upstream without one");
                }
            }
        }
        // Configured headers come last so they can replace Authorization
        // (e.g. a proxy with its own scheme).
        for (name, value) in &cfg.headers {
            let invalid = |reason: String| BuildError::InvalidHeader {
                provider: cfg.name.clone(),
                name: name.clone(),
                reason,
            };
            let n = HeaderName::from_bytes(name.as_bytes()).map_err(|e| invalid(e.to_string()))?;
            let mut v = HeaderValue::from_str(value).map_err(|e| invalid(e.to_string()))?;
            // Configured headers often carry credentials (`api-key`).
            v.set_sensitive(true);
            headers.insert(n, v);
        }

        Ok(Self {
            name: cfg.name.clone(),
            kind: cfg.kind,
            preset: Preset::of(cfg.kind, &endpoint),
            azure_api_version: azure.then(|| {
                cfg.api_version
                    .clone()
                    .unwrap_or_else(|| AZURE_DEFAULT_API_VERSION.to_owned())
            }),
            endpoint,
            headers,
            api_key,
            timeout: cfg.timeout,
            http,
        })
    }

    /// Where an operation (`["chat", "completions"]`, `["embeddings"]`) of
    /// `model` is called: `{base_url}/{operation}`, or for Azure
    /// `{base_url}/openai/deployments/{model}/{operation}?api-version=...`.
    pub(crate) fn operation_url(&self, model: &str, operation: &[&str]) -> Url {
        let mut url = self.endpoint.clone();
        let Some(version) = &self.azure_api_version else {
            if let Ok(mut path) = url.path_segments_mut() {
                // The endpoint ends with chat/completions.
                path.pop().pop().extend(operation);
            }
            return url;
        };
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty()
                .extend(["openai", "deployments", model])
                .extend(operation);
        }
        url.query_pairs_mut().append_pair("api-version", version);
        url
    }

    /// The chat completions URL for `model`.
    fn chat_url(&self, model: &str) -> Url {
        if self.azure_api_version.is_none() {
            return self.endpoint.clone();
        }
        self.operation_url(model, &["chat", "completions"])
    }

    /// The deadline of one call: the configured timeout, or the caller's
    /// when shorter.
    fn deadline(&self, call: &ChatCall) -> Duration {
        call.timeout.map_or(self.timeout, |t| t.min(self.timeout))
    }

    /// Sends the request; a non-2xx answer comes back classified.
    async fn send(
        &self,
        call: &ChatCall,
        stream: bool,
        deadline: Duration,
    ) -> Result<reqwest::Response, ProviderError> {
        let mut body = convert::spec_to_request_with(
            &call.spec,
            &call.upstream_model,
            stream,
            self.preset.max_tokens_field,
        );
        self.preset.apply(&mut body);
        let body = serde_json::to_vec(&body).map_err(|e| ProviderError::BadRequest {
            message: format!("could not encode the upstream request: {e}"),
            status: 400,
            param: None,
            code: None,
        })?;
        tracing::debug!(provider = %self.name, request_id = %call.request_id, model = %call.upstream_model, stream, "calling upstream");
        let resp = self
            .http
            .post(self.chat_url(&call.upstream_model))
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
            return Ok(resp);
        }
        let headers = resp.headers().clone();
        let body = read_limited(resp, ERROR_BODY_LIMIT).await;
        let err = classify_error(status, &headers, &body);
        tracing::debug!(provider = %self.name, request_id = %call.request_id, %status, error = %err, "upstream refused");
        Err(err)
    }

    /// Upstream messages are quoted in errors; never let one carry our key.
    fn scrub(&self, e: ProviderError) -> ProviderError {
        crate::http_call::scrub(self.api_key.as_ref(), e)
    }

    async fn chat_inner(
        &self,
        call: &ChatCall,
        deadline: Duration,
    ) -> Result<ChatResult, ProviderError> {
        let resp = self.send(call, false, deadline).await?;
        let body = resp.bytes().await.map_err(|e| from_reqwest(&e, deadline))?;
        parse_response(&body)
    }

    /// Everything up to the first chunk: the part the deadline covers.
    async fn open_stream(
        &self,
        call: &ChatCall,
        deadline: Duration,
    ) -> Result<Opened, ProviderError> {
        let resp = self.send(call, true, deadline).await?;
        let is_json = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().starts_with("application/json"));
        if is_json {
            // Some OpenAI-compatible servers ignore `stream: true`.
            let body = resp.bytes().await.map_err(|e| from_reqwest(&e, deadline))?;
            let result = parse_response(&body)?;
            return Ok(Opened::Complete(convert::result_to_chunks(&result)));
        }
        let mut chunks = stream::SseChunks::new(resp.bytes_stream().boxed());
        let first = chunks.next().await;
        Ok(Opened::Streaming(first, Box::new(chunks)))
    }
}

impl OpenAiProvider {
    /// The client span of one upstream call (GenAI and HTTP client
    /// conventions). The URL's host and path only: never its query or
    /// credentials.
    fn upstream_span(&self, call: &ChatCall) -> tracing::Span {
        crate::http_call::upstream_span(&self.name, call, &self.endpoint)
    }
}

use crate::http_call::failed;

/// reqwest's body stream type is unnameable; boxed.
type BodyChunks = stream::SseChunks<
    futures_util::stream::BoxStream<'static, Result<bytes::Bytes, reqwest::Error>>,
>;

enum Opened {
    Complete(Vec<ChatChunk>),
    Streaming(Option<Result<ChatChunk, ProviderError>>, Box<BodyChunks>),
}

/// A 2xx body: the answer, or an error object some proxies send with 200.
fn parse_response(body: &[u8]) -> Result<ChatResult, ProviderError> {
    match serde_json::from_slice::<wire::ChatCompletionResponse>(body) {
        Ok(resp) => Ok(convert::response_to_result(resp)),
        Err(e) => {
            let is_error = serde_json::from_slice::<serde_json::Value>(body)
                .is_ok_and(|v| v.get("error").is_some());
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
impl Provider for OpenAiProvider {
    fn kind(&self) -> &'static str {
        self.kind.as_str()
    }

    async fn chat(&self, call: &ChatCall) -> Result<ChatResult, ProviderError> {
        let deadline = self.deadline(call);
        let span = self.upstream_span(call);
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
        let deadline = self.deadline(call);
        let span = self.upstream_span(call);
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
                        let e = match &key {
                            Some(k) if !k.expose().is_empty() => {
                                e.map_message(|m| m.replace(k.expose(), "[redacted]"))
                            }
                            _ => e,
                        };
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

    async fn embed(
        &self,
        call: &crate::EmbedCall,
    ) -> Result<switchyard_proto::gateway::v1::EmbedResult, ProviderError> {
        self.embed_call(call).await
    }

    async fn images(
        &self,
        call: &crate::ImageCall,
    ) -> Result<switchyard_proto::gateway::v1::ImageResult, ProviderError> {
        self.images_call(call).await
    }
}

#[cfg(test)]
mod double;

#[cfg(test)]
mod tests;
