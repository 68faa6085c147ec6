//! What every HTTP wire format does around its calls the same way: the
//! endpoint from `base_url`, the API key and configured headers, the
//! deadline, the upstream span, the POST and its refusal, the first chunk of
//! a stream under the deadline, and scrubbing secrets from error messages. Each wire format keeps its URLs, bodies, events and
//! error rules.

use std::future::Future;
use std::time::Duration;

use futures_util::{StreamExt, stream};
use http::header::{ACCEPT, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use switchyard_config::{ProviderConfig, Secret};
use switchyard_proto::gateway::v1::ChatChunk;
use tracing::Instrument;
use url::Url;

use crate::registry::BuildError;
use crate::upstream::{ERROR_BODY_LIMIT, body_excerpt, from_reqwest, read_limited};
use crate::{ChunkStream, ProviderError};

/// The configured `base_url`, else `default_base`. Only http(s), and a URL
/// that can have a path.
pub(crate) fn base_url(cfg: &ProviderConfig, default_base: &str) -> Result<Url, BuildError> {
    let base = cfg.base_url.as_deref().unwrap_or(default_base);
    let invalid_url = |reason: &str| BuildError::InvalidBaseUrl {
        provider: cfg.name.clone(),
        url: base.to_owned(),
        reason: reason.to_owned(),
    };
    let url = Url::parse(base).map_err(|e| invalid_url(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid_url("the scheme must be http or https"));
    }
    if url.cannot_be_a_base() {
        return Err(invalid_url("the URL cannot have a path"));
    }
    Ok(url)
}

/// `{base_url}/{segments...}`, keeping the base's path and query.
pub(crate) fn endpoint(
    cfg: &ProviderConfig,
    default_base: &str,
    segments: &[&str],
) -> Result<Url, BuildError> {
    let mut url = base_url(cfg, default_base)?;
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().extend(segments);
    }
    Ok(url)
}

/// Adds the configured `headers` to `headers`, replacing same-named ones
/// (configured headers come last so they can override the wire format's).
/// Marked sensitive: configured headers often carry credentials.
pub(crate) fn add_configured_headers(
    cfg: &ProviderConfig,
    headers: &mut HeaderMap,
) -> Result<(), BuildError> {
    for (name, value) in &cfg.headers {
        let invalid = |reason: String| BuildError::InvalidHeader {
            provider: cfg.name.clone(),
            name: name.clone(),
            reason,
        };
        let n = HeaderName::from_bytes(name.as_bytes()).map_err(|e| invalid(e.to_string()))?;
        let mut v = HeaderValue::from_str(value).map_err(|e| invalid(e.to_string()))?;
        v.set_sensitive(true);
        headers.insert(n, v);
    }
    Ok(())
}

/// The deadline of one call: the configured timeout, or the caller's when
/// shorter.
fn deadline(configured: Duration, requested: Option<Duration>) -> Duration {
    requested.map_or(configured, |t| t.min(configured))
}

/// Upstream messages are quoted in errors; never let one carry a secret.
fn scrub(secrets: &[Secret], e: ProviderError) -> ProviderError {
    secrets
        .iter()
        .filter(|s| !s.expose().is_empty())
        .fold(e, |e, s| {
            e.map_message(|m| m.replace(s.expose(), "[redacted]"))
        })
}

/// The client span of one upstream call (GenAI and HTTP client
/// conventions): `operation` is the GenAI operation name (`chat`,
/// `embeddings`, ...). The URL's host and path only: never its query or
/// credentials.
fn upstream_span(provider: &str, operation: &str, model: &str, url: &Url) -> tracing::Span {
    tracing::info_span!(
        "upstream",
        otel.name = %format_args!("{operation} {model}"),
        otel.kind = "client",
        gen_ai.operation.name = operation,
        gen_ai.provider.name = %provider,
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

/// Runs one call in `span` within `deadline`; a failure comes out scrubbed
/// of `secrets` and recorded on the span.
async fn unary<T>(
    span: &tracing::Span,
    deadline: Duration,
    secrets: &[Secret],
    call: impl Future<Output = Result<T, ProviderError>>,
) -> Result<T, ProviderError> {
    let result = match tokio::time::timeout(deadline, call)
        .instrument(span.clone())
        .await
    {
        Ok(r) => r.map_err(|e| scrub(secrets, e)),
        Err(_) => Err(ProviderError::Timeout(deadline)),
    };
    if let Err(e) = &result {
        failed(span, e);
    }
    result
}

/// What opening a stream found: the chunks of an answer that came whole (an
/// upstream or proxy that ignored the streaming request), or a stream.
pub(crate) enum Opened {
    Complete(Vec<ChatChunk>),
    Streaming(ChunkStream),
}

/// A streamed call: `open` and the first chunk are under the deadline (a
/// stream that opens and then stalls is as slow as a unary call); later
/// chunks are not, but their errors are scrubbed and recorded like the
/// opening's. The span lives as long as the body: the upstream call ends
/// with the stream.
async fn stream(
    span: tracing::Span,
    deadline: Duration,
    secrets: &[Secret],
    open: impl Future<Output = Result<Opened, ProviderError>>,
) -> Result<ChunkStream, ProviderError> {
    let first = async {
        match open.await? {
            Opened::Complete(chunks) => Ok((
                None,
                Box::pin(stream::iter(chunks.into_iter().map(Ok))) as ChunkStream,
            )),
            Opened::Streaming(mut rest) => match rest.next().await {
                Some(first) => Ok((Some(first?), rest)),
                None => Ok((None, Box::pin(stream::empty()) as ChunkStream)),
            },
        }
    };
    let (first, rest) = unary(&span, deadline, secrets, first).await?;
    let Some(first) = first else {
        return Ok(rest);
    };
    let secrets = secrets.to_vec();
    let rest = rest.map(move |item| {
        item.map_err(|e| {
            let e = scrub(&secrets, e);
            failed(&span, &e);
            e
        })
    });
    Ok(Box::pin(stream::once(async { Ok(first) }).chain(rest)))
}

/// How a wire format reads a non-2xx answer: status, headers and (the start
/// of) the body.
pub(crate) type Classify = fn(StatusCode, &HeaderMap, &[u8]) -> ProviderError;

/// What every call of an HTTP provider uses: its name, the client, the
/// standing headers, the secrets to scrub, the configured timeout and how
/// its wire format reads a refusal.
pub(crate) struct Upstream {
    pub name: String,
    http: reqwest::Client,
    /// Credentials (marked sensitive) and the configured extra headers.
    pub headers: HeaderMap,
    /// Scrubbed from upstream messages that echo them.
    secrets: Vec<Secret>,
    pub timeout: Duration,
    classify: Classify,
}

impl Upstream {
    pub fn new(
        cfg: &ProviderConfig,
        http: reqwest::Client,
        headers: HeaderMap,
        secrets: Vec<Secret>,
        classify: Classify,
    ) -> Self {
        Self {
            name: cfg.name.clone(),
            http,
            headers,
            secrets,
            timeout: cfg.timeout,
            classify,
        }
    }

    /// One call of `operation` (the GenAI operation name) on `model` at
    /// `url`: in its client span, under its deadline (handed to `call`),
    /// failures scrubbed and recorded.
    pub async fn unary<T>(
        &self,
        operation: &str,
        model: &str,
        url: &Url,
        timeout: Option<Duration>,
        call: impl AsyncFnOnce(Duration) -> Result<T, ProviderError>,
    ) -> Result<T, ProviderError> {
        let deadline = deadline(self.timeout, timeout);
        let span = upstream_span(&self.name, operation, model, url);
        unary(&span, deadline, &self.secrets, call(deadline)).await
    }

    /// A streamed chat call: `open` and the first chunk under the deadline,
    /// later chunks' errors scrubbed and recorded.
    pub async fn stream(
        &self,
        model: &str,
        url: &Url,
        timeout: Option<Duration>,
        open: impl AsyncFnOnce(Duration) -> Result<Opened, ProviderError>,
    ) -> Result<ChunkStream, ProviderError> {
        let deadline = deadline(self.timeout, timeout);
        let span = upstream_span(&self.name, "chat", model, url);
        stream(span, deadline, &self.secrets, open(deadline)).await
    }

    /// One JSON POST with the standing headers; see [`Upstream::post`].
    pub async fn post_json(
        &self,
        request_id: &str,
        url: Url,
        body: &impl Serialize,
        accept: &'static str,
        deadline: Duration,
    ) -> Result<reqwest::Response, ProviderError> {
        let headers = json_headers(&self.headers, accept);
        self.post(request_id, url, headers, encode(body)?, deadline)
            .await
    }

    /// A unary JSON call: the 2xx answer's body.
    pub async fn fetch_json(
        &self,
        request_id: &str,
        url: Url,
        body: &impl Serialize,
        deadline: Duration,
    ) -> Result<bytes::Bytes, ProviderError> {
        let resp = self.post_json(request_id, url, body, accept(false), deadline);
        read_body(resp.await?, deadline).await
    }

    /// Sends one POST and records its status on the current span; a non-2xx
    /// answer comes back classified.
    pub async fn post(
        &self,
        request_id: &str,
        url: Url,
        headers: HeaderMap,
        body: Vec<u8>,
        deadline: Duration,
    ) -> Result<reqwest::Response, ProviderError> {
        let provider = &self.name;
        tracing::debug!(provider, request_id, path = url.path(), "calling upstream");
        let resp = self
            .http
            .post(url)
            .headers(headers)
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
        let err = (self.classify)(status, &headers, &body);
        tracing::debug!(provider, request_id, %status, error = %err, "upstream refused");
        Err(err)
    }
}

/// The configured API key and `header(key)` as a sensitive header value.
/// No key is only a warning, naming `key_env` when the config expects one:
/// local servers and authenticating proxies take none.
pub(crate) fn api_key(
    cfg: &ProviderConfig,
    key_env: Option<&str>,
    header: impl FnOnce(&str) -> String,
) -> Result<Option<(Secret, HeaderValue)>, BuildError> {
    let Some(key) = cfg.resolve_api_key() else {
        if let Some(var) = key_env {
            tracing::warn!(provider = %cfg.name, env = %var, "no API key: the environment variable is unset or empty; calling upstream without one");
        }
        return Ok(None);
    };
    let mut value =
        HeaderValue::from_str(&header(key.expose())).map_err(|_| BuildError::InvalidApiKey {
            provider: cfg.name.clone(),
        })?;
    value.set_sensitive(true);
    Ok(Some((key, value)))
}

/// `base` plus the JSON content negotiation of one call. Appended, as
/// reqwest's `header` does: a configured header does not hide them.
fn json_headers(base: &HeaderMap, accept: &'static str) -> HeaderMap {
    let mut h = base.clone();
    h.append(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.append(ACCEPT, HeaderValue::from_static(accept));
    h
}

/// The Accept of a JSON call: SSE when streamed.
pub(crate) fn accept(sse: bool) -> &'static str {
    if sse {
        "text/event-stream"
    } else {
        "application/json"
    }
}

/// A request body as JSON; a body that cannot be encoded is the caller's
/// fault.
pub(crate) fn encode(body: &impl Serialize) -> Result<Vec<u8>, ProviderError> {
    serde_json::to_vec(body).map_err(|e| ProviderError::BadRequest {
        message: format!("could not encode the upstream request: {e}"),
        status: 400,
        param: None,
        code: None,
    })
}

/// The whole body of a 2xx answer.
pub(crate) async fn read_body(
    resp: reqwest::Response,
    deadline: Duration,
) -> Result<bytes::Bytes, ProviderError> {
    resp.bytes().await.map_err(|e| from_reqwest(&e, deadline))
}

/// Whether a streamed call was answered with one JSON document instead.
pub(crate) fn is_json(resp: &reqwest::Response) -> bool {
    resp.headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("application/json"))
}

/// An upstream body that is not what the wire format says.
pub(crate) fn invalid(e: impl std::fmt::Display, body: &[u8]) -> ProviderError {
    ProviderError::InvalidResponse(format!("{e}: {}", body_excerpt(body)))
}

/// A 2xx body as `T`; one that is not a `T` but that `is_error` recognises
/// is the vendor's error object, which some proxies send with 200.
pub(crate) fn parse_2xx<T: DeserializeOwned>(
    body: &[u8],
    is_error: fn(&Value) -> bool,
    classify_body: fn(&[u8]) -> ProviderError,
) -> Result<T, ProviderError> {
    serde_json::from_slice::<T>(body).map_err(|e| {
        if serde_json::from_slice::<Value>(body).is_ok_and(|v| is_error(&v)) {
            classify_body(body)
        } else {
            invalid(e, body)
        }
    })
}
