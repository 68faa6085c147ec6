//! Google's Gemini API (`generativelanguage.googleapis.com/v1beta`):
//! `models/{model}:generateContent`, `:streamGenerateContent?alt=sse`,
//! `:batchEmbedContents`, and Imagen's `:predict`.
//!
//! [`wire`] holds the wire structs, [`convert`] the translations to and from
//! the canonical model, [`stream`] the SSE adapter, [`error`] the failure
//! classification. The key travels in the `x-goog-api-key` header, never in
//! the URL (URLs end up in logs and spans).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderName};
use serde::de::DeserializeOwned;
use serde_json::Value;
use switchyard_config::ProviderConfig;
use switchyard_proto::gateway::v1::{ChatChunk, ChatResult, EmbedResult, ImageResult};
use url::Url;

use crate::http_call::{self, Opened, Upstream};
use crate::registry::BuildError;
use crate::upstream::body_excerpt;
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
    /// x-goog-api-key in its headers.
    up: Upstream,
    base: Url,
}

impl std::fmt::Debug for GeminiProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeminiProvider")
            .field("name", &self.up.name)
            .field("base", &self.base.as_str())
            .field("timeout", &self.up.timeout)
            .finish_non_exhaustive()
    }
}

impl GeminiProvider {
    pub fn new(cfg: &ProviderConfig, http: reqwest::Client) -> Result<Self, BuildError> {
        let base = http_call::base_url(cfg, DEFAULT_BASE_URL)?;
        let mut headers = HeaderMap::new();
        let mut secrets = Vec::new();
        if let Some((key, value)) =
            http_call::api_key(cfg, cfg.api_key_env.as_deref(), str::to_owned)?
        {
            headers.insert(HeaderName::from_static(API_KEY_HEADER), value);
            secrets.push(key);
        }
        // Last, so they can replace the key header (a proxy with its own
        // scheme, `Authorization: Bearer` for Vertex).
        http_call::add_configured_headers(cfg, &mut headers)?;

        Ok(Self {
            up: Upstream::new(cfg, http, headers, secrets, classify_error),
            base,
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

    /// One call of `model`'s `method` as `operation` (the span's name).
    async fn unary<T>(
        &self,
        operation: &str,
        model: &str,
        method: &str,
        timeout: Option<Duration>,
        call: impl AsyncFnOnce(Url, Duration) -> Result<T, ProviderError>,
    ) -> Result<T, ProviderError> {
        let url = self.endpoint(model, method, false);
        let call = async |deadline| call(url.clone(), deadline).await;
        self.up.unary(operation, model, &url, timeout, call).await
    }

    async fn chat_inner(
        &self,
        call: &ChatCall,
        url: Url,
        deadline: Duration,
    ) -> Result<ChatResult, ProviderError> {
        let body = convert::spec_to_request(&call.spec)?;
        let bytes = self
            .up
            .fetch_json(&call.request_id, url, &body, deadline)
            .await?;
        let answer: wire::GenerateContentResponse = parse_answer(&bytes)?;
        if answer.candidates.is_empty() && answer.prompt_feedback.is_none() {
            return Err(ProviderError::InvalidResponse(format!(
                "an answer without candidates: {}",
                body_excerpt(&bytes)
            )));
        }
        Ok(convert::response_to_result(answer, now_secs()))
    }

    /// Everything up to the stream: the part the deadline covers.
    async fn open_stream(
        &self,
        call: &ChatCall,
        url: Url,
        deadline: Duration,
    ) -> Result<Opened, ProviderError> {
        let body = convert::spec_to_request(&call.spec)?;
        let resp = self
            .up
            .post_json(
                &call.request_id,
                url,
                &body,
                http_call::accept(true),
                deadline,
            )
            .await?;
        if http_call::is_json(&resp) {
            // Without `alt=sse` (a proxy dropping the query), Gemini answers
            // a JSON array of the same fragments.
            let bytes = http_call::read_body(resp, deadline).await?;
            let fragments: Vec<wire::GenerateContentResponse> =
                match parse_answer::<Value>(&bytes)? {
                    Value::Array(items) => items
                        .into_iter()
                        .map(serde_json::from_value)
                        .collect::<Result<_, _>>(),
                    one => serde_json::from_value(one).map(|f| vec![f]),
                }
                .map_err(|e| http_call::invalid(e, &bytes))?;
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
        Ok(Opened::Streaming(Box::pin(stream::SseChunks::new(
            resp.bytes_stream(),
            now_secs(),
        ))))
    }

    async fn embed_inner(
        &self,
        call: &EmbedCall,
        url: Url,
        deadline: Duration,
    ) -> Result<EmbedResult, ProviderError> {
        let body = convert::embed_request(&call.spec, &call.upstream_model)?;
        let bytes = self
            .up
            .fetch_json(&call.request_id, url, &body, deadline)
            .await?;
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
        let bytes = self
            .up
            .fetch_json(&call.request_id, url, &body, deadline)
            .await?;
        convert::image_result(parse_answer(&bytes)?, now_secs())
    }
}

/// Unix seconds now: Gemini answers carry no creation time.
fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A 2xx body: the answer, or an error object answered with status 200
/// (possibly wrapped in an array, as Gemini's JSON stream format does).
fn parse_answer<T: DeserializeOwned>(body: &[u8]) -> Result<T, ProviderError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| http_call::invalid(e, body))?;
    let is_error = match &value {
        Value::Array(items) => items.first().is_some_and(|i| i.get("error").is_some()),
        v => v.get("error").is_some(),
    };
    if is_error {
        return Err(classify_error_body(body));
    }
    serde_json::from_value(value).map_err(|e| http_call::invalid(e, body))
}

#[async_trait::async_trait]
impl Provider for GeminiProvider {
    fn kind(&self) -> &'static str {
        "gemini"
    }

    async fn chat(&self, call: &ChatCall) -> Result<ChatResult, ProviderError> {
        let model = &call.upstream_model;
        self.unary(
            "chat",
            model,
            "generateContent",
            call.timeout,
            async |url, deadline| self.chat_inner(call, url, deadline).await,
        )
        .await
    }

    async fn chat_stream(&self, call: &ChatCall) -> Result<ChunkStream, ProviderError> {
        let url = self.endpoint(&call.upstream_model, "streamGenerateContent", true);
        let open = async |deadline| self.open_stream(call, url.clone(), deadline).await;
        self.up
            .stream(&call.upstream_model, &url, call.timeout, open)
            .await
    }

    async fn embed(&self, call: &EmbedCall) -> Result<EmbedResult, ProviderError> {
        let model = &call.upstream_model;
        self.unary(
            "embeddings",
            model,
            "batchEmbedContents",
            call.timeout,
            async |url, deadline| self.embed_inner(call, url, deadline).await,
        )
        .await
    }

    async fn images(&self, call: &ImageCall) -> Result<ImageResult, ProviderError> {
        let model = &call.upstream_model;
        self.unary(
            "generate_content",
            model,
            "predict",
            call.timeout,
            async |url, deadline| self.images_inner(call, url, deadline).await,
        )
        .await
    }
}

#[cfg(any(test, feature = "doubles"))]
pub mod double;

#[cfg(test)]
mod tests;
