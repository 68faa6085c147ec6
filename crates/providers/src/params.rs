//! Request parameters a target cannot honour, decided before the request
//! leaves the router: each provider kind declares what it supports
//! ([`capabilities`]), the route's [`ParamPolicy`] decides what happens to the
//! rest (dropped with a warning, dropped silently, or a 400 naming the
//! parameter), and out-of-range values are never passed on.
//!
//! Wire formats still map every supported parameter themselves; this table
//! only says which canonical parameters survive the trip. docs/providers.md
//! shows it per provider.
//!
//! Reasoning depends on the target model as well as its kind
//! ([`crate::reasoning`]): it is dropped where the model cannot take it,
//! with a warning under `warn` *and* `reject`, since it is a hint.

use std::collections::HashMap;

use prost_types::value::Kind;
use switchyard_config::{Config, ParamPolicy, ProviderKind, ReasoningMode, WireFormat};
use switchyard_proto::gateway::v1::{ChatSpec, EmbedSpec};

use crate::reasoning::{self, Fit};

/// One target as the parameter policy sees it.
#[derive(Debug, Clone, Copy)]
pub struct TargetFacts<'a> {
    /// The provider's configured name, for messages.
    pub provider: &'a str,
    pub kind: ProviderKind,
    /// The upstream model.
    pub model: &'a str,
    /// The config's `reasoning` for this model and provider
    /// ([`ReasoningRules::mode`]).
    pub reasoning: ReasoningMode,
}

impl<'a> TargetFacts<'a> {
    /// A target whose config says nothing about reasoning.
    pub fn new(provider: &'a str, kind: ProviderKind, model: &'a str) -> Self {
        Self {
            provider,
            kind,
            model,
            reasoning: ReasoningMode::Auto,
        }
    }
}

/// The config's `reasoning` keys: each model's, over each provider's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReasoningRules {
    models: HashMap<String, ReasoningMode>,
    providers: HashMap<String, ReasoningMode>,
}

impl ReasoningRules {
    pub fn from_config(config: &Config) -> Self {
        Self {
            models: config
                .models
                .iter()
                .filter_map(|m| Some((m.name.clone(), m.reasoning?)))
                .collect(),
            providers: config
                .providers
                .iter()
                .filter(|p| !p.reasoning.is_auto())
                .map(|p| (p.name.clone(), p.reasoning))
                .collect(),
        }
    }

    /// The setting for a request to the configured model `model` (or a
    /// direct `<provider>/<model>`, which no model entry names) served by
    /// `provider`.
    pub fn mode(&self, model: &str, provider: &str) -> ReasoningMode {
        self.models
            .get(model)
            .or_else(|| self.providers.get(provider))
            .copied()
            .unwrap_or_default()
    }

    /// The target `upstream_model` at `provider` (of `kind`), for a request
    /// to the configured model `model`.
    pub fn target<'a>(
        &self,
        model: &str,
        provider: &'a str,
        kind: ProviderKind,
        upstream_model: &'a str,
    ) -> TargetFacts<'a> {
        TargetFacts {
            provider,
            kind,
            model: upstream_model,
            reasoning: self.mode(model, provider),
        }
    }
}

/// The request uses a parameter the target cannot take, under the `reject`
/// policy. Answered as a 400 naming `param`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct UnsupportedParam {
    pub param: &'static str,
    pub message: String,
}

/// A request parameter the normalisation knows about, by its OpenAI name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Param {
    Seed,
    PresencePenalty,
    FrequencyPenalty,
    /// `n` above 1.
    N,
    /// `logprobs` / `top_logprobs`.
    Logprobs,
    LogitBias,
    User,
    Tools,
    ParallelToolCalls,
}

impl Param {
    pub fn name(self) -> &'static str {
        match self {
            Param::Seed => "seed",
            Param::PresencePenalty => "presence_penalty",
            Param::FrequencyPenalty => "frequency_penalty",
            Param::N => "n",
            Param::Logprobs => "logprobs",
            Param::LogitBias => "logit_bias",
            Param::User => "user",
            Param::Tools => "tools",
            Param::ParallelToolCalls => "parallel_tool_calls",
        }
    }

    /// Whether the request sets it; `n: 1` and `logprobs: false` do not
    /// count.
    fn is_set(self, spec: &ChatSpec) -> bool {
        let extra = |key: &str| {
            spec.extra
                .as_ref()
                .and_then(|e| e.fields.get(key))
                .is_some_and(|v| match &v.kind {
                    None | Some(Kind::NullValue(_)) => false,
                    Some(Kind::BoolValue(b)) => *b,
                    Some(_) => true,
                })
        };
        match self {
            Param::Seed => spec.seed.is_some(),
            Param::PresencePenalty => spec.presence_penalty.is_some(),
            Param::FrequencyPenalty => spec.frequency_penalty.is_some(),
            Param::N => spec.n > 1,
            Param::Logprobs => extra("logprobs") || extra("top_logprobs"),
            Param::LogitBias => extra("logit_bias"),
            Param::User => !spec.user.is_empty(),
            Param::Tools => !spec.tools.is_empty(),
            Param::ParallelToolCalls => spec.parallel_tool_calls.is_some(),
        }
    }

    fn clear(self, spec: &mut ChatSpec) {
        let mut remove = |key: &str| {
            if let Some(e) = spec.extra.as_mut() {
                e.fields.remove(key);
            }
        };
        match self {
            Param::Seed => spec.seed = None,
            Param::PresencePenalty => spec.presence_penalty = None,
            Param::FrequencyPenalty => spec.frequency_penalty = None,
            Param::N => spec.n = 0,
            Param::Logprobs => {
                remove("logprobs");
                remove("top_logprobs");
            }
            Param::LogitBias => remove("logit_bias"),
            Param::User => spec.user.clear(),
            Param::Tools => {
                spec.tools.clear();
                spec.tool_choice = None;
                spec.parallel_tool_calls = None;
            }
            Param::ParallelToolCalls => spec.parallel_tool_calls = None,
        }
    }
}

/// What a provider kind accepts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Capabilities {
    /// Parameters it has no equivalent for.
    pub unsupported: &'static [Param],
    /// Highest `temperature` it accepts (OpenAI: 2, Anthropic: 1).
    pub temperature_max: f64,
}

const EVERYTHING: Capabilities = Capabilities {
    unsupported: &[],
    temperature_max: 2.0,
};

/// What `kind` accepts, from each vendor's API reference.
pub fn capabilities(kind: ProviderKind) -> Capabilities {
    use Param::*;
    match kind {
        ProviderKind::Openai
        | ProviderKind::AzureOpenai
        | ProviderKind::Together
        | ProviderKind::Fireworks
        | ProviderKind::Openrouter
        | ProviderKind::Vllm
        | ProviderKind::Demo => EVERYTHING,
        ProviderKind::Anthropic => Capabilities {
            unsupported: &[
                Seed,
                PresencePenalty,
                FrequencyPenalty,
                N,
                Logprobs,
                LogitBias,
            ],
            temperature_max: 1.0,
        },
        ProviderKind::Bedrock => Capabilities {
            unsupported: &[
                Seed,
                PresencePenalty,
                FrequencyPenalty,
                N,
                Logprobs,
                LogitBias,
                User,
                ParallelToolCalls,
            ],
            temperature_max: 1.0,
        },
        ProviderKind::Gemini => Capabilities {
            unsupported: &[LogitBias, User, ParallelToolCalls],
            temperature_max: 2.0,
        },
        ProviderKind::Mistral => Capabilities {
            unsupported: &[Logprobs, LogitBias, User],
            temperature_max: 1.5,
        },
        ProviderKind::Deepseek => Capabilities {
            unsupported: &[N, LogitBias, Seed],
            temperature_max: 2.0,
        },
        ProviderKind::Groq => Capabilities {
            unsupported: &[N, Logprobs, LogitBias],
            temperature_max: 2.0,
        },
        ProviderKind::Xai => Capabilities {
            unsupported: &[LogitBias],
            temperature_max: 2.0,
        },
        ProviderKind::Perplexity => Capabilities {
            unsupported: &[Seed, N, Logprobs, LogitBias, User, Tools, ParallelToolCalls],
            temperature_max: 2.0,
        },
        ProviderKind::Cerebras => Capabilities {
            unsupported: &[PresencePenalty, FrequencyPenalty, N, LogitBias],
            temperature_max: 1.5,
        },
        ProviderKind::Ollama => Capabilities {
            unsupported: &[N, LogitBias],
            temperature_max: 2.0,
        },
    }
}

/// Embeddings inputs given as token arrays travel verbatim in `extra.input`
/// (the canonical `inputs` are text): only OpenAI-format targets, which
/// share the client's tokenizer assumption, can take them.
pub fn check_embed(
    spec: &EmbedSpec,
    provider: &str,
    kind: ProviderKind,
) -> Result<(), UnsupportedParam> {
    let token_arrays = spec.inputs.is_empty()
        && spec
            .extra
            .as_ref()
            .is_some_and(|e| e.fields.contains_key("input"));
    let openai_format = matches!(
        kind.wire_format(),
        WireFormat::Openai | WireFormat::AzureOpenai
    );
    if token_arrays && !openai_format {
        return Err(UnsupportedParam {
            param: "input",
            message: format!(
                "token-array inputs are only accepted by OpenAI-format providers; provider `{provider}` ({}) needs text inputs",
                kind.as_str()
            ),
        });
    }
    Ok(())
}

/// Whether `spec` already fits `target` as it is: the common case, which
/// then needs no copy. Reasoning the target's converter translates (an
/// effort into a budget) fits; reasoning that must be dropped or changed
/// does not.
pub fn fits(spec: &ChatSpec, target: &TargetFacts<'_>) -> bool {
    let caps = capabilities(target.kind);
    caps.unsupported.iter().all(|p| !p.is_set(spec))
        && spec.temperature.is_none_or(|t| t <= caps.temperature_max)
        && reasoning::fit(spec, target.kind, target.model, target.reasoning) == Fit::Keep
}

/// Makes `spec` fit `target` under `policy`. Returns the warnings to report
/// (empty under `drop`), or the 400 to answer with under `reject`.
/// Reasoning is never refused: under `reject` it is dropped with a warning.
pub fn normalize(
    spec: &mut ChatSpec,
    target: &TargetFacts<'_>,
    policy: ParamPolicy,
) -> Result<Vec<String>, UnsupportedParam> {
    let (provider, kind) = (target.provider, target.kind);
    let caps = capabilities(kind);
    let mut warnings = Vec::new();
    let kind_name = kind.as_str();
    for &param in caps.unsupported {
        if !param.is_set(spec) {
            continue;
        }
        match policy {
            ParamPolicy::Reject => {
                return Err(UnsupportedParam {
                    param: param.name(),
                    message: format!(
                        "`{}` is not supported by provider `{provider}` ({kind_name}); \
                         remove it, or set `unsupported_params: drop` or `warn` for this model",
                        param.name()
                    ),
                });
            }
            ParamPolicy::Warn => {
                warnings.push(format!(
                    "dropped {} (unsupported by {kind_name})",
                    param.name()
                ));
            }
            ParamPolicy::Drop => {}
        }
        param.clear(spec);
    }
    if let Some(t) = spec.temperature
        && t > caps.temperature_max
    {
        let max = caps.temperature_max;
        match policy {
            ParamPolicy::Reject => {
                return Err(UnsupportedParam {
                    param: "temperature",
                    message: format!(
                        "temperature {t} is above the maximum of {max} for provider `{provider}` ({kind_name})"
                    ),
                });
            }
            ParamPolicy::Warn => warnings.push(format!(
                "clamped temperature {t} to {max} (the maximum for {kind_name})"
            )),
            ParamPolicy::Drop => {}
        }
        spec.temperature = Some(max);
    }
    // After the temperature clamp: Anthropic's thinking needs temperature 1,
    // which a clamped 1.5 now is.
    let warning = match reasoning::fit(spec, kind, target.model, target.reasoning) {
        Fit::Keep => None,
        Fit::Drop(warning) => {
            reasoning::clear(spec);
            warning
        }
        Fit::Change {
            reasoning,
            thinking,
            warning,
        } => {
            spec.reasoning = Some(reasoning);
            if let Some(thinking) = thinking {
                spec.extra
                    .get_or_insert_with(Default::default)
                    .fields
                    .insert(
                        "thinking".to_owned(),
                        switchyard_proto::json::value_from_json(thinking),
                    );
            }
            warning
        }
    };
    match (policy, warning) {
        (ParamPolicy::Warn | ParamPolicy::Reject, Some(w)) => warnings.push(w),
        (ParamPolicy::Drop, _) | (_, None) => {}
    }
    Ok(warnings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_proto::gateway::v1::{Dialect, Reasoning};
    use switchyard_proto::json::struct_from_map;

    fn at(provider: &str, kind: ProviderKind) -> TargetFacts<'_> {
        TargetFacts::new(provider, kind, "m")
    }

    fn spec() -> ChatSpec {
        let extra =
            serde_json::json!({"logprobs": true, "top_logprobs": 2, "service_tier": "auto"});
        ChatSpec {
            model: "m".into(),
            temperature: Some(1.6),
            seed: Some(7),
            n: 2,
            user: "u-1".into(),
            extra: Some(struct_from_map(extra.as_object().unwrap().clone())),
            ..Default::default()
        }
    }

    #[test]
    fn openai_keeps_everything() {
        let mut s = spec();
        assert!(fits(&s, &at("p", ProviderKind::Openai)));
        assert!(!fits(&s, &at("p", ProviderKind::Anthropic)));
        let w = normalize(&mut s, &at("p", ProviderKind::Openai), ParamPolicy::Reject).unwrap();
        assert!(w.is_empty());
        assert_eq!(s, spec());
    }

    #[test]
    fn warn_drops_and_clamps_and_says_so() {
        let mut s = spec();
        let w = normalize(
            &mut s,
            &at("claude", ProviderKind::Anthropic),
            ParamPolicy::Warn,
        )
        .unwrap();
        assert_eq!(
            w,
            [
                "dropped seed (unsupported by anthropic)",
                "dropped n (unsupported by anthropic)",
                "dropped logprobs (unsupported by anthropic)",
                "clamped temperature 1.6 to 1 (the maximum for anthropic)",
            ]
        );
        assert_eq!((s.seed, s.n, s.temperature), (None, 0, Some(1.0)));
        let extra = s.extra.unwrap().fields;
        assert!(!extra.contains_key("logprobs") && !extra.contains_key("top_logprobs"));
        // Unrelated extras and supported fields stay.
        assert!(extra.contains_key("service_tier"));
        assert_eq!(s.user, "u-1");
    }

    #[test]
    fn drop_is_silent() {
        let mut s = spec();
        let w = normalize(&mut s, &at("b", ProviderKind::Bedrock), ParamPolicy::Drop).unwrap();
        assert!(w.is_empty());
        assert_eq!(
            (s.seed, s.n, s.temperature, s.user.as_str()),
            (None, 0, Some(1.0), "")
        );
    }

    #[test]
    fn reject_names_the_first_parameter() {
        let mut s = spec();
        let e = normalize(
            &mut s,
            &at("claude", ProviderKind::Anthropic),
            ParamPolicy::Reject,
        )
        .unwrap_err();
        assert_eq!(e.param, "seed");
        assert!(
            e.message.contains("claude") && e.message.contains("anthropic"),
            "{e}"
        );
        let mut s = ChatSpec {
            temperature: Some(1.2),
            ..Default::default()
        };
        let e = normalize(
            &mut s,
            &at("claude", ProviderKind::Anthropic),
            ParamPolicy::Reject,
        )
        .unwrap_err();
        assert_eq!(e.param, "temperature");
    }

    #[test]
    fn token_arrays_only_go_to_openai_formats() {
        let tokens = EmbedSpec {
            extra: Some(struct_from_map(
                serde_json::json!({"input": [[1, 2, 3]]})
                    .as_object()
                    .unwrap()
                    .clone(),
            )),
            ..Default::default()
        };
        assert!(check_embed(&tokens, "o", ProviderKind::Openai).is_ok());
        assert!(check_embed(&tokens, "m", ProviderKind::Mistral).is_ok());
        let e = check_embed(&tokens, "g", ProviderKind::Gemini).unwrap_err();
        assert_eq!(e.param, "input");
        let text = EmbedSpec {
            inputs: vec!["hi".into()],
            ..Default::default()
        };
        assert!(check_embed(&text, "g", ProviderKind::Gemini).is_ok());
    }

    #[test]
    fn defaults_do_not_count_as_set() {
        let mut s = ChatSpec {
            n: 1,
            temperature: Some(0.5),
            extra: Some(struct_from_map(
                serde_json::json!({"logprobs": false})
                    .as_object()
                    .unwrap()
                    .clone(),
            )),
            ..Default::default()
        };
        let w = normalize(&mut s, &at("b", ProviderKind::Bedrock), ParamPolicy::Reject).unwrap();
        assert!(w.is_empty());
    }

    fn thinking(budget: u32) -> ChatSpec {
        ChatSpec {
            max_tokens: Some(32000),
            reasoning: Some(Reasoning {
                budget_tokens: budget,
                ..Default::default()
            }),
            extra: Some(struct_from_map(
                serde_json::json!({"thinking": {"type": "enabled", "budget_tokens": budget}, "top_k": 5})
                    .as_object()
                    .unwrap()
                    .clone(),
            )),
            dialect: Dialect::Anthropic as i32,
            ..Default::default()
        }
    }

    #[test]
    fn reasoning_is_kept_where_the_model_reasons() {
        let gpt5 = TargetFacts::new("o", ProviderKind::Openai, "gpt-5");
        let mut s = thinking(31999);
        assert!(fits(&s, &gpt5));
        let w = normalize(&mut s, &gpt5, ParamPolicy::Reject).unwrap();
        assert!(w.is_empty());
        assert_eq!(s, thinking(31999));
    }

    #[test]
    fn reasoning_is_a_hint_even_under_reject() {
        let mini = TargetFacts::new("o", ProviderKind::Openai, "gpt-4o-mini");
        let mut s = thinking(31999);
        assert!(!fits(&s, &mini));
        let w = normalize(&mut s, &mini, ParamPolicy::Reject).unwrap();
        assert_eq!(w, ["dropped thinking (gpt-4o-mini does not reason)"]);
        assert!(s.reasoning.is_none());
        let extra = s.extra.unwrap().fields;
        assert!(!extra.contains_key("thinking") && extra.contains_key("top_k"));

        let mut s = thinking(31999);
        let w = normalize(&mut s, &mini, ParamPolicy::Drop).unwrap();
        assert!(w.is_empty() && s.reasoning.is_none());
    }

    #[test]
    fn the_config_settles_unknown_models() {
        let mut target = TargetFacts::new("v", ProviderKind::Vllm, "my-r1-distill");
        let s = thinking(4000);
        assert!(!fits(&s, &target));
        target.reasoning = ReasoningMode::On;
        assert!(fits(&s, &target));

        let mut config = Config::default();
        let mut provider = switchyard_config::ProviderConfig::new("v", ProviderKind::Vllm);
        provider.reasoning = ReasoningMode::On;
        config.providers.push(provider);
        let mut model = switchyard_config::ModelConfig::new("plain", Vec::new());
        model.reasoning = Some(ReasoningMode::Off);
        config.models.push(model);
        let rules = ReasoningRules::from_config(&config);
        assert_eq!(rules.mode("v/x", "v"), ReasoningMode::On);
        assert_eq!(rules.mode("plain", "v"), ReasoningMode::Off);
        assert_eq!(rules.mode("other", "w"), ReasoningMode::Auto);
    }

    #[test]
    fn bedrock_gets_thinking_written_for_it() {
        let claude = TargetFacts::new(
            "b",
            ProviderKind::Bedrock,
            "anthropic.claude-sonnet-4-5-20250929-v1:0",
        );
        let mut s = ChatSpec {
            max_tokens: Some(2000),
            reasoning: Some(Reasoning {
                effort: "high".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let w = normalize(&mut s, &claude, ParamPolicy::Warn).unwrap();
        assert_eq!(
            w,
            ["lowered the thinking budget to 1999 (below max_tokens 2000)"]
        );
        let extra = switchyard_proto::json::map_from_struct(s.extra.unwrap());
        assert_eq!(
            extra["thinking"],
            serde_json::json!({"type": "enabled", "budget_tokens": 1999})
        );
    }

    #[test]
    fn a_clamped_temperature_lets_thinking_through() {
        let claude = TargetFacts::new("a", ProviderKind::Anthropic, "claude-sonnet-4-5");
        let mut s = ChatSpec {
            temperature: Some(1.5),
            reasoning: Some(Reasoning {
                effort: "low".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let w = normalize(&mut s, &claude, ParamPolicy::Warn).unwrap();
        assert_eq!(
            w,
            ["clamped temperature 1.5 to 1 (the maximum for anthropic)"]
        );
        assert!(s.reasoning.is_some());
        s.temperature = Some(0.3);
        let w = normalize(&mut s, &claude, ParamPolicy::Warn).unwrap();
        assert_eq!(
            w,
            [
                "dropped reasoning_effort (Anthropic's extended thinking needs temperature 1, not 0.3)"
            ]
        );
        assert!(s.reasoning.is_none());
    }
}
