//! From a configured provider to its implementation, and the HTTP client
//! every provider of a worker shares.

use std::sync::Arc;
use std::time::Duration;

use switchyard_config::{ProviderConfig, WireFormat};

use crate::Provider;
use crate::anthropic::AnthropicProvider;
use crate::bedrock::BedrockProvider;
use crate::demo::DemoProvider;
use crate::gemini::GeminiProvider;
use crate::openai::OpenAiProvider;

/// A provider's configuration cannot be turned into a working client.
/// Messages name the provider and the field, never the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    #[error("provider `{provider}`: invalid base_url `{url}`: {reason}")]
    InvalidBaseUrl {
        provider: String,
        url: String,
        reason: String,
    },
    #[error("provider `{provider}`: invalid header `{name}`: {reason}")]
    InvalidHeader {
        provider: String,
        name: String,
        reason: String,
    },
    #[error(
        "provider `{provider}`: the API key cannot be sent in an HTTP header (control characters?)"
    )]
    InvalidApiKey { provider: String },
}

/// The implementation for `cfg.kind`'s wire format. Every format is matched
/// explicitly, so a new one in the config schema does not compile until it
/// is served here. The OpenAI-compatible vendors share one implementation
/// and differ by preset (`openai::presets`).
pub fn build_provider(
    cfg: &ProviderConfig,
    http: reqwest::Client,
) -> Result<Arc<dyn Provider>, BuildError> {
    Ok(match cfg.kind.wire_format() {
        WireFormat::Openai | WireFormat::AzureOpenai => Arc::new(OpenAiProvider::new(cfg, http)?),
        WireFormat::Anthropic => Arc::new(AnthropicProvider::new(cfg, http)?),
        WireFormat::Gemini => Arc::new(GeminiProvider::new(cfg, http)?),
        WireFormat::Bedrock => Arc::new(BedrockProvider::new(cfg, http)?),
        WireFormat::Demo => Arc::new(DemoProvider::new(cfg)),
    })
}

/// How long an idle pooled connection is kept. Below the idle timeouts of
/// common load balancers (AWS ALB: 60 s), so we close first and never send
/// on a connection the far side is closing.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(55);

/// Connecting is quick or the host is unreachable; failing fast lets the
/// router move to the next route instead of spending the whole deadline.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The pooled client a worker's providers share. No overall timeout:
/// deadlines are per call, from the provider's config and the router.
/// TCP_NODELAY because streamed chunks are small and latency matters; TCP
/// keepalive so long silent streams survive NAT and load balancer idle
/// timeouts; an adaptive HTTP/2 window so large answers are not throttled by
/// the default 64 KiB window.
pub fn http_client() -> reqwest::Client {
    // reqwest is built without a bundled crypto provider, and building a
    // client without one installed panics. The binary installs ring at
    // start; this covers every other caller (tests, embedders). An error
    // means one is installed already.
    let _already_installed = rustls::crypto::ring::default_provider().install_default();
    let builder = reqwest::Client::builder()
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .tcp_keepalive(Duration::from_secs(30))
        .http2_adaptive_window(true)
        .user_agent(concat!("switchyard/", env!("CARGO_PKG_VERSION")));
    match builder.build() {
        Ok(client) => client,
        Err(e) => {
            // Only reachable if the TLS backend cannot start, which the
            // provider installed above rules out; the default client fails
            // the same way, loudly.
            tracing::error!(error = %e, "could not build the configured HTTP client; using reqwest's default");
            reqwest::Client::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_config::ProviderKind;

    /// A config with the schema's defaults.
    fn cfg(kind: ProviderKind, base_url: Option<&str>) -> ProviderConfig {
        let mut c: ProviderConfig =
            serde_json::from_value(serde_json::json!({"name": "p", "kind": kind.as_str()}))
                .unwrap();
        c.base_url = base_url.map(str::to_owned);
        c
    }

    #[test]
    fn builds_every_kind() {
        let http = http_client();
        let openai = build_provider(&cfg(ProviderKind::Openai, None), http.clone()).unwrap();
        assert_eq!(openai.kind(), "openai");
        assert_eq!(
            build_provider(&cfg(ProviderKind::Demo, None), http)
                .unwrap()
                .kind(),
            "demo"
        );
    }

    #[test]
    fn rejects_bad_config_without_leaking_the_key() {
        let http = http_client();
        let mut c = cfg(ProviderKind::Openai, Some("ftp://example.com"));
        assert!(matches!(
            build_provider(&c, http.clone()),
            Err(BuildError::InvalidBaseUrl { .. })
        ));
        c.base_url = Some("not a url".into());
        assert!(matches!(
            build_provider(&c, http.clone()),
            Err(BuildError::InvalidBaseUrl { .. })
        ));
        c.base_url = None;
        c.headers.insert("bad header".into(), "x".into());
        assert!(matches!(
            build_provider(&c, http.clone()),
            Err(BuildError::InvalidHeader { .. })
        ));
        c.headers.clear();
        c.api_key = Some(switchyard_config::Secret::new("sk-secret\nvalue"));
        let err = build_provider(&c, http).err().unwrap();
        assert!(matches!(err, BuildError::InvalidApiKey { .. }));
        assert!(!err.to_string().contains("sk-secret"));
    }
}
