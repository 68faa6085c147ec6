//! What every HTTP wire format does around its calls the same way: the
//! endpoint from `base_url`, configured headers, the deadline, the upstream
//! span, and scrubbing the API key from error messages.

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};
use switchyard_config::{ProviderConfig, Secret};
use url::Url;

use crate::registry::BuildError;
use crate::{ChatCall, ProviderError};

/// `{base_url}/{segments...}`, keeping the base's path and query. Only
/// http(s).
pub(crate) fn endpoint(
    cfg: &ProviderConfig,
    default_base: &str,
    segments: &[&str],
) -> Result<Url, BuildError> {
    let base = cfg.base_url.as_deref().unwrap_or(default_base);
    let invalid_url = |reason: String| BuildError::InvalidBaseUrl {
        provider: cfg.name.clone(),
        url: base.to_owned(),
        reason,
    };
    let mut url = Url::parse(base).map_err(|e| invalid_url(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid_url("the scheme must be http or https".into()));
    }
    url.path_segments_mut()
        .map_err(|()| invalid_url("the URL cannot have a path".into()))?
        .pop_if_empty()
        .extend(segments);
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
pub(crate) fn deadline(configured: Duration, call: &ChatCall) -> Duration {
    call.timeout.map_or(configured, |t| t.min(configured))
}

/// Upstream messages are quoted in errors; never let one carry our key.
pub(crate) fn scrub(key: Option<&Secret>, e: ProviderError) -> ProviderError {
    match key {
        Some(key) if !key.expose().is_empty() => {
            e.map_message(|m| m.replace(key.expose(), "[redacted]"))
        }
        _ => e,
    }
}

/// The client span of one upstream call (GenAI and HTTP client
/// conventions). The URL's host and path only: never its query or
/// credentials.
pub(crate) fn upstream_span(provider: &str, call: &ChatCall, endpoint: &Url) -> tracing::Span {
    tracing::info_span!(
        "upstream",
        otel.name = %format_args!("chat {}", call.upstream_model),
        otel.kind = "client",
        gen_ai.operation.name = "chat",
        gen_ai.provider.name = %provider,
        gen_ai.request.model = %call.upstream_model,
        http.request.method = "POST",
        server.address = endpoint.host_str().unwrap_or_default(),
        server.port = i64::from(endpoint.port_or_known_default().unwrap_or_default()),
        url.path = endpoint.path(),
        http.response.status_code = tracing::field::Empty,
        error.type = tracing::field::Empty,
        otel.status_description = tracing::field::Empty,
    )
}

/// Marks the upstream span failed with the (scrubbed) error.
pub(crate) fn failed(span: &tracing::Span, e: &ProviderError) {
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
