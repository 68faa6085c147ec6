//! Google's Gemini API (`generativelanguage.googleapis.com/v1beta`):
//! `models/{model}:generateContent`, `:streamGenerateContent?alt=sse`,
//! `:batchEmbedContents`, and Imagen's `:predict`.
//!
//! [`wire`] holds the wire structs, [`convert`] the translations to and from
//! the canonical model, [`stream`] the SSE adapter, [`error`] the failure
//! classification. The key travels in the `x-goog-api-key` header, never in
//! the URL (URLs end up in logs and spans).
//!
//! The HTTP plumbing (deadline, span, scrubbing) mirrors `openai/mod.rs` on
//! purpose; sharing it is a later refactor.

use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use http::header::{ACCEPT, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue};
use serde::de::DeserializeOwned;
use serde_json::Value;
use switchyard_config::{ProviderConfig, Secret};
use switchyard_proto::gateway::v1::{ChatChunk, ChatResult, EmbedResult, ImageResult};
use tracing::Instrument;
use url::Url;

use crate::registry::BuildError;
use crate::upstream::{ERROR_BODY_LIMIT, body_excerpt, from_reqwest, read_limited};
use crate::{ChatCall, ChunkStream, EmbedCall, ImageCall, Provider, ProviderError};

pub mod convert;
pub mod error;
pub mod stream;
pub mod wire;

pub use error::{classify_error, classify_error_body};

/// Where `kind: gemini` goes when the config names no `base_url` (loading
/// fills it in; this covers configs built in code).
pub const DEFAULT_BASE_URL: &str = "https://generativelanguage.googleapis.com/v1beta";

/// The header Google's SDKs send the key in.
const API_KEY_HEADER: &str = "x-goog-api-key";

pub struct GeminiProvider {
    name: String,
    base: Url,
    /// x-goog-api-key (marked sensitive) and the configured extra headers.
    headers: HeaderMap,
    /// Kept only to scrub it from upstream error messages that echo it.
    api_key: Option<Secret>,
    timeout: Duration,
    http: reqwest::Client,
}

impl std::fmt::Debug for GeminiProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeminiProvider")
            .field("name", &self.name)
            .field("base", &self.base.as_str())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// What one upstream call is, for its span.
#[derive(Debug, Clone, Copy)]
enum Operation {
    Chat,
    Embeddings,
    Images,
}

impl Operation {
    /// The GenAI semantic-convention operation name.
    fn name(self) -> &'static str {
        match self {
            Operation::Chat => "chat",
            Operation::Embeddings => "embeddings",
            Operation::Images => "generate_content",
        }
    }
}

impl GeminiProvider {
    pub fn new(cfg: &ProviderConfig, http: reqwest::Client) -> Result<Self, BuildError> {
        let base_str = cfg.base_url.as_deref().unwrap_or(DEFAULT_BASE_URL);
        let invalid_url = |reason: String| BuildError::InvalidBaseUrl {
            provider: cfg.name.clone(),
            url: base_str.to_owned(),
            reason,
        };
        let base = Url::parse(base_str).map_err(|e| invalid_url(e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(invalid_url("the scheme must be http or https".into()));
        }
        if base.cannot_be_a_base() {
            return Err(invalid_url("the URL cannot have a path".into()));
        }

        let mut headers = HeaderMap::new();
        let api_key = cfg.resolve_api_key();
        match &api_key {
            Some(key) => {
                let mut value =
                    HeaderValue::from_str(key.expose()).map_err(|_| BuildError::InvalidApiKey {
                        provider: cfg.name.clone(),
                    })?;
                value.set_sensitive(true);
                headers.insert(HeaderName::from_static(API_KEY_HEADER), value);
            }
            None => {
                if let Some(var) = &cfg.api_key_env {
                    tracing::warn!(provider = %cfg.name, env = %var, "no API key: the environment variable is unset or empty; calling upstream without one");
                }
            }
        }
        // Configured headers come last so they can replace the key header
        // (a proxy with its own scheme, `Authorization: Bearer` for Vertex).
        for (name, value) in &cfg.headers {
            let invalid = |reason: String| BuildError::InvalidHeader {
                provider: cfg.name.clone(),
                name: name.clone(),
                reason,
            };
            let n = HeaderName::from_bytes(name.as_bytes()).map_err(|e| invalid(e.to_string()))?;
            let mut v = HeaderValue::from_str(value).map_err(|e| invalid(e.to_string()))?;
            // Configured headers often carry credentials.
            v.set_sensitive(true);
            headers.insert(n, v);
        }

        Ok(Self {
            name: cfg.name.clone(),
            base,
            headers,
            api_key,
            timeout: cfg.timeout,
            http,
        })
    }

    /// `{base}/models/{model}:{method}` (`tunedModels/x` keeps its
    /// collection). The id is one percent-encoded segment that always ends
    /// in `:{method}`: a model name (which clients choose) cannot add a
    /// query, or climb with `..` to another API under our key.
    fn endpoint(&self, model: &str, method: &str, sse: bool) -> Url {
        let (collection, id) = convert::split_model(model);
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty()
                .push(collection)
                .push(&format!("{id}:{method}"));
        }
        if sse {
            url.query_pairs_mut().append_pair("alt", "sse");
        }
        url
    }

    /// The deadline of one call: the configured timeout, or the caller's
    /// when shorter.
    fn deadline(&self, timeout: Option<Duration>) -> Duration {
        timeout.map_or(self.timeout, |t| t.min(self.timeout))
    }

    /// Sends `body`; a non-2xx answer comes back classified.
    async fn post<B: serde::Serialize>(
        &self,
        url: Url,
        body: &B,
        sse: bool,
        request_id: &str,
        deadline: Duration,
    ) -> Result<reqwest::Response, ProviderError> {
        let body = serde_json::to_vec(body).map_err(|e| ProviderError::BadRequest {
            message: format!("could not encode the upstream request: {e}"),
            status: 400,
            param: None,
            code: None,
        })?;
        tracing::debug!(provider = %self.name, request_id, path = url.path(), sse, "calling upstream");
        let resp = self
            .http
            .post(url)
            .headers(self.headers.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(
                ACCEPT,
                if sse {
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
        tracing::debug!(provider = %self.name, request_id, %status, error = %err, "upstream refused");
        Err(err)
    }

    /// Upstream messages are quoted in errors; never let one carry our key.
    fn scrub(&self, e: ProviderError) -> ProviderError {
        scrub_with(self.api_key.as_ref(), e)
    }

    /// The client span of one upstream call (GenAI and HTTP client
    /// conventions). The URL's host and path only: never its query.
    fn upstream_span(&self, op: Operation, model: &str, url: &Url) -> tracing::Span {
        tracing::info_span!(
            "upstream",
            otel.name = %format_args!("{} {}", op.name(), model),
            otel.kind = "client",
            gen_ai.operation.name = op.name(),
            gen_ai.provider.name = %self.name,
            gen_ai.request.model = %model,
            http.request.method = "POST",
            server.address = url.host_str().unwrap_or_default(),
            server.port = i64::from(url.port_or_known_default().unwrap_or_default()),
            url.path = url.path(),
            http.response.status_code = tracing::field::Empty,
            error.type = tracing::field::Empty,
            otel.status_description = tracing::field::Empty,
        )
    }

    /// Runs `fut` in `span` within `deadline`; failures come out scrubbed and
    /// recorded on the span.
    async fn guarded<T>(
        &self,
        span: &tracing::Span,
        deadline: Duration,
        fut: impl Future<Output = Result<T, ProviderError>>,
    ) -> Result<T, ProviderError> {
        let result = match tokio::time::timeout(deadline, fut)
            .instrument(span.clone())
            .await
        {
            Ok(r) => r.map_err(|e| self.scrub(e)),
            Err(_) => Err(ProviderError::Timeout(deadline)),
        };
        if let Err(e) = &result {
            failed(span, e);
        }
        result
    }

    async fn chat_inner(
        &self,
        call: &ChatCall,
        url: Url,
        deadline: Duration,
    ) -> Result<ChatResult, ProviderError> {
        let body = convert::spec_to_request(&call.spec)?;
        let resp = self
            .post(url, &body, false, &call.request_id, deadline)
            .await?;
        let bytes = resp.bytes().await.map_err(|e| from_reqwest(&e, deadline))?;
        let answer: wire::GenerateContentResponse = parse_answer(&bytes)?;
        if answer.candidates.is_empty() && answer.prompt_feedback.is_none() {
            return Err(ProviderError::InvalidResponse(format!(
                "an answer without candidates: {}",
                body_excerpt(&bytes)
            )));
        }
        Ok(convert::response_to_result(answer, now_secs()))
    }

    /// Everything up to the first chunk: the part the deadline covers.
    async fn open_stream(
        &self,
        call: &ChatCall,
        url: Url,
        deadline: Duration,
    ) -> Result<Opened, ProviderError> {
        let body = convert::spec_to_request(&call.spec)?;
        let resp = self
            .post(url, &body, true, &call.request_id, deadline)
            .await?;
        let is_json = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().starts_with("application/json"));
        if is_json {
            // Without `alt=sse` (a proxy dropping the query), Gemini answers
            // a JSON array of the same fragments.
            let bytes = resp.bytes().await.map_err(|e| from_reqwest(&e, deadline))?;
            let fragments: Vec<wire::GenerateContentResponse> =
                match parse_answer::<Value>(&bytes)? {
                    Value::Array(items) => items
                        .into_iter()
                        .map(serde_json::from_value)
                        .collect::<Result<_, _>>(),
                    one => serde_json::from_value(one).map(|f| vec![f]),
                }
                .map_err(|e| {
                    ProviderError::InvalidResponse(format!("{e}: {}", body_excerpt(&bytes)))
                })?;
            // An error after some fragments (the stream failed midway)
            // fails the whole answer: it arrived at once, nothing was
            // delivered yet.
            if let Some(e) = fragments.iter().find_map(|f| f.extra.get("error")) {
                let body = serde_json::json!({ "error": e }).to_string();
                return Err(classify_error_body(body.as_bytes()));
            }
            let mut assembler = stream::Assembler::new(now_secs());
            let mut chunks: Vec<ChatChunk> = fragments
                .into_iter()
                .flat_map(|f| assembler.fragment(f))
                .collect();
            chunks.extend(assembler.end());
            return Ok(Opened::Complete(chunks));
        }
        let mut chunks = stream::SseChunks::new(resp.bytes_stream().boxed(), now_secs());
        let first = chunks.next().await;
        Ok(Opened::Streaming(first, Box::new(chunks)))
    }

    async fn embed_inner(
        &self,
        call: &EmbedCall,
        url: Url,
        deadline: Duration,
    ) -> Result<EmbedResult, ProviderError> {
        let body = convert::embed_request(&call.spec, &call.upstream_model)?;
        let resp = self
            .post(url, &body, false, &call.request_id, deadline)
            .await?;
        let bytes = resp.bytes().await.map_err(|e| from_reqwest(&e, deadline))?;
        convert::embed_result(
            parse_answer(&bytes)?,
            call.spec.inputs.len(),
            &call.upstream_model,
        )
    }

    async fn images_inner(
        &self,
        call: &ImageCall,
        url: Url,
        deadline: Duration,
    ) -> Result<ImageResult, ProviderError> {
        let body = convert::image_request(&call.spec)?;
        let resp = self
            .post(url, &body, false, &call.request_id, deadline)
            .await?;
        let bytes = resp.bytes().await.map_err(|e| from_reqwest(&e, deadline))?;
        convert::image_result(parse_answer(&bytes)?, now_secs())
    }
}

fn scrub_with(key: Option<&Secret>, e: ProviderError) -> ProviderError {
    match key {
        Some(k) if !k.expose().is_empty() => e.map_message(|m| m.replace(k.expose(), "[redacted]")),
        _ => e,
    }
}

/// Unix seconds now: Gemini answers carry no creation time.
fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Marks the upstream span failed with the (scrubbed) error.
fn failed(span: &tracing::Span, e: &ProviderError) {
    let kind = match e {
        ProviderError::RateLimited { .. } => "rate_limited",
        ProviderError::Overloaded { .. } => "overloaded",
        ProviderError::BadRequest { .. } => "bad_request",
        ProviderError::Auth { .. } => "auth",
        ProviderError::ContextTooLong { .. } => "context_too_long",
        ProviderError::NotFound { .. } => "not_found",
        ProviderError::Timeout(_) => "timeout",
        ProviderError::Connection(_) => "connection",
        ProviderError::Upstream { .. } => "upstream",
        ProviderError::InvalidResponse(_) => "invalid_response",
    };
    span.record("error.type", kind);
    span.record("otel.status_description", e.to_string());
}

/// A 2xx body: the answer, or an error object answered with status 200
/// (possibly wrapped in an array, as Gemini's JSON stream format does).
fn parse_answer<T: DeserializeOwned>(body: &[u8]) -> Result<T, ProviderError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ProviderError::InvalidResponse(format!("{e}: {}", body_excerpt(body))))?;
    let is_error = match &value {
        Value::Array(items) => items.first().is_some_and(|i| i.get("error").is_some()),
        v => v.get("error").is_some(),
    };
    if is_error {
        return Err(classify_error_body(body));
    }
    serde_json::from_value(value)
        .map_err(|e| ProviderError::InvalidResponse(format!("{e}: {}", body_excerpt(body))))
}

/// reqwest's body stream type is unnameable; boxed.
type BodyChunks = stream::SseChunks<
    futures_util::stream::BoxStream<'static, Result<bytes::Bytes, reqwest::Error>>,
>;

enum Opened {
    Complete(Vec<ChatChunk>),
    Streaming(Option<Result<ChatChunk, ProviderError>>, Box<BodyChunks>),
}

#[async_trait::async_trait]
impl Provider for GeminiProvider {
    fn kind(&self) -> &'static str {
        "gemini"
    }

    async fn chat(&self, call: &ChatCall) -> Result<ChatResult, ProviderError> {
        let deadline = self.deadline(call.timeout);
        let url = self.endpoint(&call.upstream_model, "generateContent", false);
        let span = self.upstream_span(Operation::Chat, &call.upstream_model, &url);
        self.guarded(&span, deadline, self.chat_inner(call, url, deadline))
            .await
    }

    async fn chat_stream(&self, call: &ChatCall) -> Result<ChunkStream, ProviderError> {
        let deadline = self.deadline(call.timeout);
        let url = self.endpoint(&call.upstream_model, "streamGenerateContent", true);
        let span = self.upstream_span(Operation::Chat, &call.upstream_model, &url);
        let opened = self
            .guarded(&span, deadline, self.open_stream(call, url, deadline))
            .await?;
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
                        let e = scrub_with(key.as_ref(), e);
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

    async fn embed(&self, call: &EmbedCall) -> Result<EmbedResult, ProviderError> {
        let deadline = self.deadline(call.timeout);
        let url = self.endpoint(&call.upstream_model, "batchEmbedContents", false);
        let span = self.upstream_span(Operation::Embeddings, &call.upstream_model, &url);
        self.guarded(&span, deadline, self.embed_inner(call, url, deadline))
            .await
    }

    async fn images(&self, call: &ImageCall) -> Result<ImageResult, ProviderError> {
        let deadline = self.deadline(call.timeout);
        let url = self.endpoint(&call.upstream_model, "predict", false);
        let span = self.upstream_span(Operation::Images, &call.upstream_model, &url);
        self.guarded(&span, deadline, self.images_inner(call, url, deadline))
            .await
    }
}

#[cfg(test)]
mod double;

#[cfg(test)]
mod tests;
