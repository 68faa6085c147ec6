//! The OpenAI-compatible vendors' dialects: what each `kind` changes in the
//! request the OpenAI format would send. Defaults (base URL, key variable)
//! live with the kind in `switchyard_config`; which parameters a vendor
//! cannot take at all is in [`crate::params`], applied by the router before
//! the request gets here. What remains are renames and shapes:
//!
//! | kind | token limit field | other rewrites |
//! |---|---|---|
//! | openai, azure-openai | `max_completion_tokens` | — |
//! | mistral | `max_tokens` | `seed` → `random_seed`; `tool_choice: required` → `any`; no `stream_options` |
//! | deepseek | `max_tokens` | — (answers carry `reasoning_content`) |
//! | groq, cerebras | `max_completion_tokens` | — |
//! | xai | `max_completion_tokens` | — (reasoning models answer with `reasoning_content`) |
//! | together, fireworks, openrouter, vllm, ollama | `max_tokens` | — (OpenRouter and vLLM answer with `reasoning`) |
//! | perplexity | `max_tokens` | no `stream_options` (usage comes on every chunk) |
//!
//! Reasoning text in answers (`reasoning_content`, or `reasoning` as vLLM and
//! OpenRouter spell it) is read by the converter for every vendor.

use switchyard_config::ProviderKind;

use super::convert::MaxTokensField;
use super::wire::{self, ToolChoice, tool_choice_mode};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preset {
    pub max_tokens_field: MaxTokensField,
    /// Mistral calls the sampling seed `random_seed`.
    pub seed_as_random_seed: bool,
    /// Mistral spells `tool_choice: required` as `any`.
    pub required_as_any: bool,
    /// Whether `stream_options` is accepted; vendors that reject it send
    /// usage on their last chunk unasked.
    pub stream_options: bool,
}

const OPENAI: Preset = Preset {
    max_tokens_field: MaxTokensField::MaxCompletionTokens,
    seed_as_random_seed: false,
    required_as_any: false,
    stream_options: true,
};

const LEGACY_LIMIT: Preset = Preset {
    max_tokens_field: MaxTokensField::MaxTokens,
    ..OPENAI
};

impl Preset {
    /// The dialect of `kind`. For `kind: openai` the token-limit field
    /// still depends on the host: OpenAI itself takes only
    /// `max_completion_tokens` for reasoning models, while most
    /// self-hosted OpenAI-compatible servers know only `max_tokens`.
    pub fn of(kind: ProviderKind, endpoint: &url::Url) -> Preset {
        match kind {
            ProviderKind::Openai => Preset {
                max_tokens_field: MaxTokensField::for_base_url(endpoint),
                ..OPENAI
            },
            ProviderKind::AzureOpenai
            | ProviderKind::Groq
            | ProviderKind::Cerebras
            | ProviderKind::Xai => OPENAI,
            ProviderKind::Mistral => Preset {
                seed_as_random_seed: true,
                required_as_any: true,
                stream_options: false,
                ..LEGACY_LIMIT
            },
            ProviderKind::Perplexity => Preset {
                stream_options: false,
                ..LEGACY_LIMIT
            },
            ProviderKind::Deepseek
            | ProviderKind::Together
            | ProviderKind::Fireworks
            | ProviderKind::Openrouter
            | ProviderKind::Vllm
            | ProviderKind::Ollama
            // Not OpenAI-format kinds; never built with a preset.
            | ProviderKind::Anthropic
            | ProviderKind::Gemini
            | ProviderKind::Bedrock
            | ProviderKind::Demo => LEGACY_LIMIT,
        }
    }

    /// Rewrites an OpenAI-shaped request into this vendor's dialect.
    pub fn apply(&self, req: &mut wire::ChatCompletionRequest) {
        if self.seed_as_random_seed
            && let Some(seed) = req.seed.take()
        {
            req.extra.insert("random_seed".to_owned(), seed.into());
        }
        if self.required_as_any
            && matches!(&req.tool_choice, Some(ToolChoice::Mode(m)) if m == tool_choice_mode::REQUIRED)
        {
            req.tool_choice = Some(ToolChoice::Mode("any".to_owned()));
        }
        if !self.stream_options {
            req.stream_options = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn url(s: &str) -> url::Url {
        url::Url::parse(s).unwrap()
    }

    fn request() -> wire::ChatCompletionRequest {
        serde_json::from_value(json!({
            "model": "m",
            "messages": [{"role": "user", "content": "hi"}],
            "seed": 7,
            "max_tokens": 10,
            "tool_choice": "required",
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
            "stream": true,
            "stream_options": {"include_usage": true}
        }))
        .unwrap()
    }

    #[test]
    fn mistral_dialect() {
        let p = Preset::of(ProviderKind::Mistral, &url("https://api.mistral.ai/v1"));
        assert_eq!(p.max_tokens_field, MaxTokensField::MaxTokens);
        let mut r = request();
        p.apply(&mut r);
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["random_seed"], 7);
        assert!(v.get("seed").is_none());
        assert_eq!(v["tool_choice"], "any");
        assert!(v.get("stream_options").is_none());
    }

    #[test]
    fn openai_is_untouched() {
        let p = Preset::of(ProviderKind::Openai, &url("https://api.openai.com/v1"));
        assert_eq!(p.max_tokens_field, MaxTokensField::MaxCompletionTokens);
        let mut r = request();
        p.apply(&mut r);
        assert_eq!(r, request());
        // A self-hosted server behind `kind: openai` gets `max_tokens`.
        let p = Preset::of(ProviderKind::Openai, &url("http://10.0.0.5:8000/v1"));
        assert_eq!(p.max_tokens_field, MaxTokensField::MaxTokens);
    }

    #[test]
    fn every_openai_format_kind_has_a_preset() {
        for kind in ProviderKind::all() {
            if kind.wire_format() == switchyard_config::WireFormat::Openai {
                let p = Preset::of(kind, &url("https://example.com/v1"));
                // Reasoning-era vendors and OpenAI itself take the new field.
                let new_field = matches!(
                    kind,
                    ProviderKind::Groq | ProviderKind::Cerebras | ProviderKind::Xai
                );
                assert_eq!(
                    p.max_tokens_field == MaxTokensField::MaxCompletionTokens,
                    new_field,
                    "{kind:?}"
                );
            }
        }
    }
}
