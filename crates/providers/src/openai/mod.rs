//! OpenAI chat completions (`POST {base_url}/chat/completions`), which also
//! serves every OpenAI-compatible vendor by `base_url`: vLLM, Ollama,
//! Mistral, DeepSeek, Groq, Together, xAI, Azure OpenAI (with an `api-key`
//! header in `headers`), ...
//!
//! [`wire`] holds the wire structs (also used by the router for its
//! OpenAI-compatible HTTP API), [`convert`] the translations to and from the
//! canonical model, [`stream`] the SSE adapter, [`error`] the failure
//! classification, [`native`] the Responses API pass-through of a provider
//! with `responses: native` (`POST {base_url}/responses`).

use std::time::Duration;

use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderName};
use switchyard_config::{ProviderConfig, ProviderKind, WireFormat};
use switchyard_proto::gateway::v1::ChatResult;
use url::Url;

use crate::http_call::{self, Opened, Upstream};
use crate::registry::BuildError;
use crate::{ChatCall, ChunkStream, Provider, ProviderError};

pub mod convert;
pub mod embeddings;
pub mod error;
pub mod images;
pub mod native;
pub mod presets;
pub mod responses;
pub mod stream;
pub mod wire;

pub use convert::{ConvertError, MaxTokensField};
pub use error::{classify_error, classify_error_body};
pub use presets::Preset;

/// Where `kind: openai` goes when the config names no `base_url`.
pub const DEFAULT_BASE_URL: &str = switchyard_config::DEFAULT_OPENAI_BASE_URL;

pub struct OpenAiProvider {
    /// Authorization or `api-key` in its headers, the key in its secrets.
    up: Upstream,
    kind: ProviderKind,
    /// The chat completions URL. Azure: the resource URL; the deployment
    /// (the call's upstream model) goes into the path per call.
    endpoint: Url,
    /// Azure OpenAI: the `api-version` query parameter.
    azure_api_version: Option<String>,
    preset: Preset,
    /// `responses: native`: a Responses API request goes to the upstream's
    /// own `/responses` endpoint as the client sent it ([`native`]).
    responses_native: bool,
}

/// Azure OpenAI's GA data-plane API version, used when the config names
/// none.
pub const AZURE_DEFAULT_API_VERSION: &str = "2024-10-21";

impl std::fmt::Debug for OpenAiProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiProvider")
            .field("name", &self.up.name)
            .field("kind", &self.kind)
            .field("endpoint", &self.endpoint.as_str())
            .field("timeout", &self.up.timeout)
            .finish_non_exhaustive()
    }
}

impl OpenAiProvider {
    /// Serves `kind: openai`, `azure-openai` and every OpenAI-compatible
    /// vendor kind (its dialect from [`Preset::of`]).
    pub fn new(cfg: &ProviderConfig, http: reqwest::Client) -> Result<Self, BuildError> {
        let azure = cfg.kind.wire_format() == WireFormat::AzureOpenai;
        let default_base = cfg.kind.default_base_url().unwrap_or(DEFAULT_BASE_URL);
        let mut endpoint = http_call::base_url(cfg, default_base)?;
        if !azure && let Ok(mut path) = endpoint.path_segments_mut() {
            path.pop_if_empty().extend(["chat", "completions"]);
        }

        let mut headers = HeaderMap::new();
        // Azure takes the key in `api-key`; everyone else as a bearer token.
        let (name, value): (_, fn(&str) -> String) = if azure {
            (HeaderName::from_static("api-key"), str::to_owned)
        } else {
            (AUTHORIZATION, |k| format!("Bearer {k}"))
        };
        let key_env = cfg.api_key_env.as_deref().or(cfg.kind.key_env());
        let mut secrets = Vec::new();
        if let Some((key, value)) = http_call::api_key(cfg, key_env, value)? {
            headers.insert(name, value);
            secrets.push(key);
        }
        // Last, so they can replace Authorization (a proxy with its own
        // scheme).
        http_call::add_configured_headers(cfg, &mut headers)?;

        Ok(Self {
            up: Upstream::new(cfg, http, headers, secrets, classify_error),
            kind: cfg.kind,
            preset: Preset::of(cfg.kind, &endpoint),
            responses_native: cfg.responses == switchyard_config::ResponsesMode::Native,
            azure_api_version: azure.then(|| {
                cfg.api_version
                    .clone()
                    .unwrap_or_else(|| AZURE_DEFAULT_API_VERSION.to_owned())
            }),
            endpoint,
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

    /// Where `call` goes: the Responses endpoint for a native Responses
    /// request, else chat completions (for logs and spans).
    fn call_url(&self, call: &ChatCall) -> Url {
        if self.is_native(call) {
            return self.responses_url(&call.upstream_model);
        }
        self.chat_url(&call.upstream_model)
    }

    /// The chat completions URL for `model`.
    fn chat_url(&self, model: &str) -> Url {
        if self.azure_api_version.is_none() {
            return self.endpoint.clone();
        }
        self.operation_url(model, &["chat", "completions"])
    }

    /// The Responses endpoint: `{base_url}/responses`; Azure: its v1 API,
    /// `{base_url}/openai/v1/responses` (the deployment in the body's
    /// `model`; the v1 API takes no `api-version`, and the dated ones
    /// serve Responses only in previews).
    fn responses_url(&self, model: &str) -> Url {
        if self.azure_api_version.is_none() {
            return self.operation_url(model, &["responses"]);
        }
        let mut url = self.endpoint.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(["openai", "v1", "responses"]);
        }
        url
    }

    /// The client's Responses request, when this call goes to the
    /// upstream's Responses endpoint rather than chat completions.
    fn native_body(&self, call: &ChatCall, stream: bool) -> Option<serde_json::Value> {
        if !self.responses_native {
            return None;
        }
        native::request_body(&call.spec, &call.upstream_model, stream)
    }

    fn is_native(&self, call: &ChatCall) -> bool {
        self.responses_native && call.spec.responses_request.is_some()
    }

    /// Sends the request; a non-2xx answer comes back classified.
    async fn send(
        &self,
        call: &ChatCall,
        stream: bool,
        deadline: Duration,
    ) -> Result<reqwest::Response, ProviderError> {
        let accept = http_call::accept(stream);
        if let Some(body) = self.native_body(call, stream) {
            let url = self.responses_url(&call.upstream_model);
            return self
                .up
                .post_json(&call.request_id, url, &body, accept, deadline)
                .await;
        }
        let mut body = convert::spec_to_request_with(
            &call.spec,
            &call.upstream_model,
            stream,
            self.preset.max_tokens_field,
        );
        self.preset.apply(&mut body);
        let url = self.chat_url(&call.upstream_model);
        self.up
            .post_json(&call.request_id, url, &body, accept, deadline)
            .await
    }

    async fn chat_inner(
        &self,
        call: &ChatCall,
        deadline: Duration,
    ) -> Result<ChatResult, ProviderError> {
        let resp = self.send(call, false, deadline).await?;
        let body = http_call::read_body(resp, deadline).await?;
        if self.is_native(call) {
            return parse_json(&body).map(native::response_to_result);
        }
        parse_json(&body).map(convert::response_to_result)
    }

    /// Everything up to the stream: the part the deadline covers.
    async fn open_stream(
        &self,
        call: &ChatCall,
        deadline: Duration,
    ) -> Result<Opened, ProviderError> {
        let resp = self.send(call, true, deadline).await?;
        let native = self.is_native(call);
        if http_call::is_json(&resp) {
            // Some OpenAI-compatible servers ignore `stream: true`.
            let body = http_call::read_body(resp, deadline).await?;
            let result = if native {
                parse_json(&body).map(native::response_to_result)?
            } else {
                parse_json(&body).map(convert::response_to_result)?
            };
            return Ok(Opened::Complete(convert::result_to_chunks(&result)));
        }
        if native {
            return Ok(Opened::Streaming(Box::pin(native::NativeChunks::new(
                resp.bytes_stream(),
            ))));
        }
        Ok(Opened::Streaming(Box::pin(stream::SseChunks::new(
            resp.bytes_stream(),
        ))))
    }
}

/// A 2xx body: the answer, or an error object some proxies send with 200.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ProviderError> {
    http_call::parse_2xx(body, |v| v.get("error").is_some(), classify_error_body)
}

#[async_trait::async_trait]
impl Provider for OpenAiProvider {
    fn kind(&self) -> &'static str {
        self.kind.as_str()
    }

    fn responses_native(&self) -> bool {
        self.responses_native
    }

    async fn chat(&self, call: &ChatCall) -> Result<ChatResult, ProviderError> {
        let url = self.call_url(call);
        let chat = async |deadline| self.chat_inner(call, deadline).await;
        self.up
            .unary("chat", &call.upstream_model, &url, call.timeout, chat)
            .await
    }

    async fn chat_stream(&self, call: &ChatCall) -> Result<ChunkStream, ProviderError> {
        let url = self.call_url(call);
        let open = async |deadline| self.open_stream(call, deadline).await;
        self.up
            .stream(&call.upstream_model, &url, call.timeout, open)
            .await
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
