//! Provider kinds: which wire format a provider speaks and, for the
//! OpenAI-compatible vendors, the preset (default base URL and key variable)
//! `kind: mistral` stands for. Quirks of each vendor's dialect live with the
//! wire format (`switchyard_providers::openai::presets`).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum ProviderKind {
    /// OpenAI's chat completions wire format at `base_url` (default
    /// api.openai.com); also any OpenAI-compatible server not listed below.
    Openai,
    /// Azure OpenAI: deployment URLs, `api-version`, `api-key` header.
    AzureOpenai,
    /// Anthropic Messages API.
    Anthropic,
    /// Google Gemini API (generateContent).
    Gemini,
    /// AWS Bedrock Converse API, SigV4-signed.
    Bedrock,
    Mistral,
    Deepseek,
    Groq,
    Together,
    Xai,
    Fireworks,
    Openrouter,
    Perplexity,
    Cerebras,
    /// A vLLM server (OpenAI-compatible, no key by default).
    Vllm,
    /// An Ollama server's OpenAI-compatible endpoint.
    Ollama,
    /// Built-in offline provider that answers without any network. Stays
    /// last: `KINDS` is indexed by discriminant.
    Demo,
}

/// The wire format a kind speaks: one `Provider` implementation each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WireFormat {
    Openai,
    AzureOpenai,
    Anthropic,
    Gemini,
    Bedrock,
    Demo,
}

/// Where a provider of kind `openai` is sent when it names no `base_url`.
pub const DEFAULT_OPENAI_BASE_URL: &str = "https://api.openai.com/v1";

/// Per kind: spelling, wire format, default base URL, usual key variable.
struct KindInfo {
    kind: ProviderKind,
    name: &'static str,
    wire: WireFormat,
    base_url: Option<&'static str>,
    key_env: Option<&'static str>,
}

const KINDS: &[KindInfo] = &[
    KindInfo {
        kind: ProviderKind::Openai,
        name: "openai",
        wire: WireFormat::Openai,
        base_url: Some(DEFAULT_OPENAI_BASE_URL),
        key_env: Some("OPENAI_API_KEY"),
    },
    KindInfo {
        kind: ProviderKind::AzureOpenai,
        name: "azure-openai",
        wire: WireFormat::AzureOpenai,
        // https://<resource>.openai.azure.com, per deployment: no default.
        base_url: None,
        key_env: Some("AZURE_OPENAI_API_KEY"),
    },
    KindInfo {
        kind: ProviderKind::Anthropic,
        name: "anthropic",
        wire: WireFormat::Anthropic,
        base_url: Some("https://api.anthropic.com/v1"),
        key_env: Some("ANTHROPIC_API_KEY"),
    },
    KindInfo {
        kind: ProviderKind::Gemini,
        name: "gemini",
        wire: WireFormat::Gemini,
        base_url: Some("https://generativelanguage.googleapis.com/v1beta"),
        key_env: Some("GEMINI_API_KEY"),
    },
    KindInfo {
        kind: ProviderKind::Bedrock,
        name: "bedrock",
        wire: WireFormat::Bedrock,
        // https://bedrock-runtime.<region>.amazonaws.com, from `region`.
        base_url: None,
        key_env: Some("AWS_BEARER_TOKEN_BEDROCK"),
    },
    KindInfo {
        kind: ProviderKind::Mistral,
        name: "mistral",
        wire: WireFormat::Openai,
        base_url: Some("https://api.mistral.ai/v1"),
        key_env: Some("MISTRAL_API_KEY"),
    },
    KindInfo {
        kind: ProviderKind::Deepseek,
        name: "deepseek",
        wire: WireFormat::Openai,
        base_url: Some("https://api.deepseek.com/v1"),
        key_env: Some("DEEPSEEK_API_KEY"),
    },
    KindInfo {
        kind: ProviderKind::Groq,
        name: "groq",
        wire: WireFormat::Openai,
        base_url: Some("https://api.groq.com/openai/v1"),
        key_env: Some("GROQ_API_KEY"),
    },
    KindInfo {
        kind: ProviderKind::Together,
        name: "together",
        wire: WireFormat::Openai,
        base_url: Some("https://api.together.xyz/v1"),
        key_env: Some("TOGETHER_API_KEY"),
    },
    KindInfo {
        kind: ProviderKind::Xai,
        name: "xai",
        wire: WireFormat::Openai,
        base_url: Some("https://api.x.ai/v1"),
        key_env: Some("XAI_API_KEY"),
    },
    KindInfo {
        kind: ProviderKind::Fireworks,
        name: "fireworks",
        wire: WireFormat::Openai,
        base_url: Some("https://api.fireworks.ai/inference/v1"),
        key_env: Some("FIREWORKS_API_KEY"),
    },
    KindInfo {
        kind: ProviderKind::Openrouter,
        name: "openrouter",
        wire: WireFormat::Openai,
        base_url: Some("https://openrouter.ai/api/v1"),
        key_env: Some("OPENROUTER_API_KEY"),
    },
    KindInfo {
        kind: ProviderKind::Perplexity,
        name: "perplexity",
        wire: WireFormat::Openai,
        base_url: Some("https://api.perplexity.ai"),
        key_env: Some("PERPLEXITY_API_KEY"),
    },
    KindInfo {
        kind: ProviderKind::Cerebras,
        name: "cerebras",
        wire: WireFormat::Openai,
        base_url: Some("https://api.cerebras.ai/v1"),
        key_env: Some("CEREBRAS_API_KEY"),
    },
    KindInfo {
        kind: ProviderKind::Vllm,
        name: "vllm",
        wire: WireFormat::Openai,
        base_url: Some("http://localhost:8000/v1"),
        key_env: Some("VLLM_API_KEY"),
    },
    KindInfo {
        kind: ProviderKind::Ollama,
        name: "ollama",
        wire: WireFormat::Openai,
        base_url: Some("http://localhost:11434/v1"),
        key_env: None,
    },
    KindInfo {
        kind: ProviderKind::Demo,
        name: "demo",
        wire: WireFormat::Demo,
        base_url: None,
        key_env: None,
    },
];

impl ProviderKind {
    /// Every kind, in the order the docs list them.
    pub fn all() -> impl Iterator<Item = ProviderKind> {
        KINDS.iter().map(|k| k.kind)
    }

    fn info(self) -> &'static KindInfo {
        // KINDS lists every variant in declaration order (checked by a
        // test), so the discriminant is the index.
        &KINDS[self as usize]
    }

    /// The spelling used in the config file.
    pub fn as_str(self) -> &'static str {
        self.info().name
    }

    pub fn wire_format(self) -> WireFormat {
        self.info().wire
    }

    /// Where the provider is called when the config names no `base_url`.
    /// `None` for kinds whose URL depends on the account (Azure, Bedrock).
    pub fn default_base_url(self) -> Option<&'static str> {
        self.info().base_url
    }

    /// The environment variable the vendor's own SDKs read the key from.
    pub fn key_env(self) -> Option<&'static str> {
        self.info().key_env
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_one_entry_whose_spelling_round_trips() {
        for info in KINDS {
            let parsed: ProviderKind = serde_norway::from_str(info.name).unwrap();
            assert_eq!(parsed, info.kind);
            assert_eq!(KINDS.iter().filter(|k| k.kind == info.kind).count(), 1);
        }
        assert_eq!(KINDS.len(), ProviderKind::Demo as usize + 1);
        for (i, info) in KINDS.iter().enumerate() {
            assert_eq!(info.kind as usize, i, "{} out of order", info.name);
        }
    }
}
