//! PLACEHOLDER while the Gemini wire format is being written: every call
//! fails. Replaced wholesale by the real module.

use switchyard_config::ProviderConfig;
use switchyard_proto::gateway::v1::ChatResult;

use crate::registry::BuildError;
use crate::{ChatCall, ChunkStream, Provider, ProviderError};

#[derive(Debug)]
pub struct GeminiProvider {
    name: String,
}

impl GeminiProvider {
    pub fn new(cfg: &ProviderConfig, _http: reqwest::Client) -> Result<Self, BuildError> {
        Ok(Self {
            name: cfg.name.clone(),
        })
    }
}

#[async_trait::async_trait]
impl Provider for GeminiProvider {
    fn kind(&self) -> &'static str {
        "gemini"
    }

    async fn chat(&self, call: &ChatCall) -> Result<ChatResult, ProviderError> {
        Err(ProviderError::unsupported(
            &self.name,
            "chat",
            &call.upstream_model,
        ))
    }

    async fn chat_stream(&self, call: &ChatCall) -> Result<ChunkStream, ProviderError> {
        Err(ProviderError::unsupported(
            &self.name,
            "chat",
            &call.upstream_model,
        ))
    }
}
