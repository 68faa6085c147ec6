//! Provider wire formats. One [`Provider`] trait; each wire format is one
//! module of the same shape (wire structs with a flattened `extra` map for
//! pass-through, converters to and from the canonical protobuf model, a
//! stream adapter, `classify_error`, tests at the bottom). [`registry`] maps a
//! configured provider kind to its implementation, [`demo`] is the offline
//! built-in provider, and `conformance` (this crate's tests, or the
//! `conformance` feature) is the suite every provider passes.
//!
//! This crate knows nothing of NATS or of the router: it turns a canonical
//! [`ChatCall`] into an upstream HTTP call and the answer back into canonical
//! results, and classifies every failure into a typed [`ProviderError`].

use std::pin::Pin;
use std::time::Duration;

use futures_util::Stream;
use switchyard_proto::gateway::v1::{
    ChatChunk, ChatResult, ChatSpec, EmbedResult, EmbedSpec, ImageResult, ImageSpec,
};

pub mod anthropic;
pub mod bedrock;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
pub mod demo;
pub mod error;
pub mod gemini;
mod http_call;
pub mod openai;
pub mod params;
pub mod reasoning;
pub mod registry;
mod sse;
#[cfg(any(test, feature = "doubles"))]
pub mod test_support;
mod upstream;

pub use error::ProviderError;
pub use registry::{BuildError, build_provider, http_client};
pub use upstream::{parse_go_duration, retry_after};

/// One upstream call: the canonical request and the model name to send.
#[derive(Debug, Clone)]
pub struct ChatCall {
    pub spec: ChatSpec,
    /// The model name the upstream knows (the route's `model`).
    pub upstream_model: String,
    /// Gateway request id, for logs. Not sent upstream: no wire format here
    /// has a vendor-neutral header for it.
    pub request_id: String,
    /// Overrides the provider's configured timeout when shorter (the router's
    /// remaining deadline).
    pub timeout: Option<Duration>,
}

/// One upstream embeddings call.
#[derive(Debug, Clone)]
pub struct EmbedCall {
    pub spec: EmbedSpec,
    pub upstream_model: String,
    pub request_id: String,
    pub timeout: Option<Duration>,
}

/// One upstream image generation call.
#[derive(Debug, Clone)]
pub struct ImageCall {
    pub spec: ImageSpec,
    pub upstream_model: String,
    pub request_id: String,
    pub timeout: Option<Duration>,
}

/// Chunks of a streamed answer, in order. The stream ends after the last
/// chunk; when the upstream reports usage it is on the last chunk (with no
/// choices). Dropping the stream closes the upstream connection: that is how
/// cancellation reaches the provider.
pub type ChunkStream = Pin<Box<dyn Stream<Item = Result<ChatChunk, ProviderError>> + Send>>;

#[async_trait::async_trait]
pub trait Provider: Send + Sync + 'static {
    /// The configured kind this implementation serves (for logs and tests).
    fn kind(&self) -> &'static str;

    /// Whether a Responses API request goes to the upstream's own
    /// Responses endpoint as the client sent it (`responses: native`);
    /// every other provider serves the chat translation.
    fn responses_native(&self) -> bool {
        false
    }

    /// A complete answer. Fails with a classified [`ProviderError`].
    async fn chat(&self, call: &ChatCall) -> Result<ChatResult, ProviderError>;

    /// A streamed answer. Errors before the first chunk come back as `Err`
    /// here; errors mid-stream as an `Err` item.
    async fn chat_stream(&self, call: &ChatCall) -> Result<ChunkStream, ProviderError>;

    /// Embeddings, one per input, in input order. Wire formats without an
    /// embeddings API keep the default: a 400 naming the provider kind.
    async fn embed(&self, call: &EmbedCall) -> Result<EmbedResult, ProviderError> {
        Err(ProviderError::unsupported(
            self.kind(),
            "embeddings",
            &call.upstream_model,
        ))
    }

    /// Generated images. Wire formats without an image API keep the
    /// default: a 400 naming the provider kind.
    async fn images(&self, call: &ImageCall) -> Result<ImageResult, ProviderError> {
        Err(ProviderError::unsupported(
            self.kind(),
            "image generation",
            &call.upstream_model,
        ))
    }
}
