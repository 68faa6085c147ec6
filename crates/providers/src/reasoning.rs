//! Reasoning ("thinking") across wire formats, in one place.
//!
//! Clients ask for reasoning in their own spelling: OpenAI chat's
//! `reasoning_effort`, the Responses API's `reasoning.effort`, Anthropic's
//! `thinking: {"type": "enabled", "budget_tokens": N}` (or `disabled`,
//! `adaptive`). The ingresses turn each into the canonical
//! [`pb::Reasoning`] (`ChatSpec.reasoning`) and keep the original in
//! `extra`, so a target of the client's own format receives it unchanged.
//! Every other target gets the request in its own control ([`Control`]):
//!
//! | target | control | from an effort | from a budget |
//! |---|---|---|---|
//! | OpenAI format | `reasoning_effort` | as it is | [`budget_to_effort`] |
//! | Anthropic, Bedrock `anthropic.*` | `thinking` | [`effort_to_budget`] | as it is, fitted under `max_tokens` |
//! | Gemini | `generationConfig.thinkingConfig.thinkingBudget` | [`effort_to_budget`] | clamped to 1024..=24576 |
//!
//! Whether the target model reasons at all is [`model_reasons`] (or the
//! config's `reasoning: on | off`); what the router does about a request
//! the target cannot take is [`fit`], applied by [`crate::params`] under
//! the route's parameter policy. Reasoning is a hint: it is dropped (with a
//! warning unless the policy is `drop`), never refused.

use serde_json::{Value, json};
use switchyard_config::{ProviderKind, ReasoningMode, WireFormat};
use switchyard_proto::gateway::v1::{
    self as pb, ChatSpec, response_format::Type as FormatType, tool_choice::Mode,
};

/// Budgets for OpenAI's effort levels, from Google's OpenAI-compatibility
/// page for Gemini (`reasoning_effort` low / medium / high are thinking
/// budgets of 1,024 / 8,192 / 24,576 tokens).
pub const LOW_BUDGET: u32 = 1024;
pub const MEDIUM_BUDGET: u32 = 8192;
pub const HIGH_BUDGET: u32 = 24576;
/// `xhigh` is not on Google's page: Gemini 2.5 Pro's largest budget.
pub const XHIGH_BUDGET: u32 = 32768;

/// Anthropic refuses a smaller `budget_tokens`.
pub const ANTHROPIC_MIN_BUDGET: u32 = 1024;

/// The budgets every Gemini thinking model accepts (Flash tops out at
/// 24,576; Pro and Flash-Lite refuse small budgets).
pub const GEMINI_BUDGETS: std::ops::RangeInclusive<u32> = LOW_BUDGET..=HIGH_BUDGET;

/// The thinking budget for an OpenAI effort level; `None` for a level this
/// table does not know (and for `none`, which is no reasoning). `minimal`
/// takes low's budget, which is also Anthropic's smallest.
pub fn effort_to_budget(effort: &str) -> Option<u32> {
    match effort {
        "minimal" | "low" => Some(LOW_BUDGET),
        "medium" => Some(MEDIUM_BUDGET),
        "high" => Some(HIGH_BUDGET),
        "xhigh" => Some(XHIGH_BUDGET),
        _ => None,
    }
}

/// The effort level for a thinking budget: the inverse of
/// [`effort_to_budget`], with the thresholds at the powers of two between
/// the documented budgets (below 4,096 low, below 16,384 medium, else
/// high), so each documented budget maps back to its own level and Claude
/// Code's 31,999 is `high`.
pub fn budget_to_effort(budget: u32) -> &'static str {
    match budget {
        0..4096 => "low",
        4096..16384 => "medium",
        _ => "high",
    }
}

/// The canonical form of OpenAI's `reasoning_effort` (chat) or
/// `reasoning.effort` (Responses).
pub fn from_effort(effort: &str) -> pb::Reasoning {
    if effort == "none" {
        return pb::Reasoning {
            disabled: true,
            ..Default::default()
        };
    }
    pb::Reasoning {
        effort: effort.to_owned(),
        ..Default::default()
    }
}

/// The canonical form of an Anthropic request's reasoning: its `thinking`
/// object, with adaptive thinking taking its level from the effort
/// parameter (`output_config.effort`, which Claude Code sends with it:
/// `low`, `medium`, `high`, and `max`, read as `xhigh`). `None` for a
/// `thinking` shape it does not know (which then only travels verbatim).
pub fn from_anthropic(thinking: &Value, output_config: Option<&Value>) -> Option<pb::Reasoning> {
    let mut r = from_anthropic_thinking(thinking)?;
    if r == pb::Reasoning::default() {
        match output_config
            .and_then(|c| c.get("effort"))
            .and_then(Value::as_str)
        {
            Some(e @ ("low" | "medium" | "high")) => r.effort = e.to_owned(),
            Some("max") => r.effort = "xhigh".to_owned(),
            _ => {}
        }
    }
    Some(r)
}

fn from_anthropic_thinking(thinking: &Value) -> Option<pb::Reasoning> {
    match thinking.get("type")?.as_str()? {
        "enabled" => Some(pb::Reasoning {
            budget_tokens: u32::try_from(thinking.get("budget_tokens")?.as_u64()?).ok()?,
            ..Default::default()
        }),
        "disabled" => Some(pb::Reasoning {
            disabled: true,
            ..Default::default()
        }),
        // The model decides how much to think: no level, no budget.
        "adaptive" => Some(pb::Reasoning::default()),
        _ => None,
    }
}

/// The reasoning control a target has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// OpenAI's `reasoning_effort` (every OpenAI-format provider).
    Effort,
    /// Anthropic's `thinking` object (Anthropic; Bedrock's Claude models in
    /// `additionalModelRequestFields`).
    Thinking,
    /// Gemini's `generationConfig.thinkingConfig.thinkingBudget`.
    ThinkingBudget,
    /// None this gateway knows (Bedrock's other models).
    Nothing,
}

/// Which control `model` at a provider of `kind` has.
pub fn control(kind: ProviderKind, model: &str) -> Control {
    match kind.wire_format() {
        WireFormat::Openai | WireFormat::AzureOpenai | WireFormat::Demo => Control::Effort,
        WireFormat::Anthropic => Control::Thinking,
        WireFormat::Gemini => Control::ThinkingBudget,
        WireFormat::Bedrock if model.to_ascii_lowercase().contains("claude") => Control::Thinking,
        WireFormat::Bedrock => Control::Nothing,
    }
}

/// Whether `model` reasons, by the documented model families, whichever
/// provider serves it (`openai/o3` at OpenRouter and
/// `us.anthropic.claude-sonnet-4-…` at Bedrock count): `Some(true)` for
/// OpenAI's o-series, GPT-5 and later and gpt-oss, Claude 3.7 and Claude 4
/// and later, Gemini 2.5 and later; `Some(false)` for the families before
/// them (GPT-4o, GPT-4.1, Claude 3.5, Gemini 2.0, ...); `None` for every
/// other name (other vendors' models, Azure deployment names, aliases),
/// which the config's `reasoning: on | off` can settle. The demo provider
/// takes anything.
pub fn model_reasons(kind: ProviderKind, model: &str) -> Option<bool> {
    if kind == ProviderKind::Demo {
        return Some(true);
    }
    let lower = model.to_ascii_lowercase();
    let name = lower.rsplit('/').next().unwrap_or(&lower);
    if name.contains("gpt-oss") {
        return Some(true);
    }
    if let Some(i) = name.find("claude-") {
        return claude_reasons(&name[i + "claude-".len()..]);
    }
    if let Some(rest) = name.strip_prefix("gemini-") {
        let version = rest.split('-').next().unwrap_or("");
        let mut parts = version.split('.').map(str::parse::<u32>);
        return match (parts.next(), parts.next()) {
            (Some(Ok(major)), minor) => {
                let minor = minor.and_then(Result::ok).unwrap_or(0);
                Some((major, minor) >= (2, 5))
            }
            _ => None,
        };
    }
    if let Some(rest) = name.strip_prefix("gpt-") {
        // `gpt-5-chat-latest` is GPT-5 without reasoning controls.
        if rest.contains("-chat") {
            return None;
        }
        return leading_number(rest).map(|major| major >= 5);
    }
    if name.starts_with("chatgpt-") {
        return Some(false);
    }
    // o1, o3-mini, o4-mini, ...
    let mut chars = name.chars();
    if chars.next() == Some('o') && chars.next().is_some_and(|c| c.is_ascii_digit()) {
        return Some(true);
    }
    None
}

/// Claude's families, from the name after `claude-`: `3-7-sonnet` and
/// `sonnet-4-5` / `opus-4` / `4-opus` reason; `3-5-…`, `3-…`, `2…`,
/// `instant…` do not.
fn claude_reasons(rest: &str) -> Option<bool> {
    if rest.starts_with("3-7") || rest.starts_with("3.7") {
        return Some(true);
    }
    if rest.starts_with("instant") {
        return Some(false);
    }
    let major = rest.split('-').find_map(leading_number)?;
    Some(major >= 4)
}

/// The number a token starts with (`4o` is 4, `5.1` is 5).
fn leading_number(token: &str) -> Option<u32> {
    let digits: &str = &token[..token
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(token.len())];
    digits.parse().ok()
}

/// Whether `model` reasons once the config had its say.
pub fn reasons(kind: ProviderKind, model: &str, mode: ReasoningMode) -> Option<bool> {
    match mode {
        ReasoningMode::On => Some(true),
        ReasoningMode::Off => Some(false),
        ReasoningMode::Auto => model_reasons(kind, model),
    }
}

/// Gemini's 2.5 Pro and 3 Pro think whatever the budget: a budget of 0 is
/// refused.
fn gemini_can_turn_off(model: &str) -> bool {
    !model.to_ascii_lowercase().contains("pro")
}

// --- per wire format -------------------------------------------------------

/// `reasoning_effort` for an OpenAI-format target. `None` when reasoning is
/// off (OpenAI's reasoning models cannot all turn it off) or left to the
/// model.
pub fn openai_effort(r: &pb::Reasoning) -> Option<String> {
    if r.disabled {
        None
    } else if !r.effort.is_empty() {
        Some(r.effort.clone())
    } else if r.budget_tokens > 0 {
        Some(budget_to_effort(r.budget_tokens).to_owned())
    } else {
        None
    }
}

/// Gemini's `thinkingBudget`: 0 turns thinking off, -1 leaves the amount to
/// the model; budgets are clamped to [`GEMINI_BUDGETS`]. `None` for an
/// effort level [`effort_to_budget`] does not know.
pub fn gemini_budget(r: &pb::Reasoning) -> Option<i64> {
    let budget = if r.disabled {
        return Some(0);
    } else if r.budget_tokens > 0 {
        r.budget_tokens
    } else if !r.effort.is_empty() {
        effort_to_budget(&r.effort)?
    } else {
        return Some(-1);
    };
    Some(i64::from(
        budget.clamp(*GEMINI_BUDGETS.start(), *GEMINI_BUDGETS.end()),
    ))
}

/// Anthropic's `thinking` as [`anthropic_thinking`] decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnthropicThinking {
    /// `None`: `{"type": "disabled"}`.
    pub budget: Option<u32>,
    /// What had to change to fit Anthropic's rules (a warning).
    pub adjusted: Option<String>,
}

impl AnthropicThinking {
    pub fn to_json(&self) -> Value {
        match self.budget {
            Some(budget) => json!({"type": "enabled", "budget_tokens": budget}),
            None => json!({"type": "disabled"}),
        }
    }
}

/// Anthropic's `thinking` for `r` in `spec` to `model`, or why Anthropic
/// would refuse it: a budget must be at least 1,024 and below
/// `max_tokens` (else it is raised or lowered, when there is room), and
/// thinking cannot go with a temperature other than 1, a `top_p` below
/// 0.95, or a forced tool (`tool_choice` any / tool, or the forced answer
/// tool that stands for `response_format` when the request has no tools).
/// Reasoning left to the model gets the medium budget.
pub fn anthropic_thinking(
    spec: &ChatSpec,
    r: &pb::Reasoning,
    model: &str,
) -> Result<AnthropicThinking, String> {
    if r.disabled {
        return Ok(AnthropicThinking {
            budget: None,
            adjusted: None,
        });
    }
    let mut budget = if r.budget_tokens > 0 {
        r.budget_tokens
    } else if !r.effort.is_empty() {
        effort_to_budget(&r.effort).ok_or_else(|| format!("unknown effort `{}`", r.effort))?
    } else {
        MEDIUM_BUDGET
    };
    if let Some(t) = spec.temperature
        && t != 1.0
    {
        return Err(format!(
            "Anthropic's extended thinking needs temperature 1, not {t}"
        ));
    }
    if let Some(p) = spec.top_p
        && p < 0.95
    {
        return Err(format!(
            "Anthropic's extended thinking needs top_p of at least 0.95, not {p}"
        ));
    }
    let forced_tool = spec
        .tool_choice
        .as_ref()
        .is_some_and(|c| matches!(c.mode(), Mode::Required | Mode::Function));
    let forced_answer = spec.tools.is_empty()
        && spec
            .response_format
            .as_ref()
            .is_some_and(|f| matches!(f.r#type(), FormatType::JsonObject | FormatType::JsonSchema));
    if forced_tool || forced_answer {
        return Err(
            "Anthropic's extended thinking cannot be combined with a forced tool".to_owned(),
        );
    }
    let max = spec
        .max_tokens
        .unwrap_or_else(|| crate::anthropic::convert::default_max_tokens(model));
    if max <= ANTHROPIC_MIN_BUDGET {
        return Err(format!(
            "max_tokens {max} leaves no room for Anthropic's smallest thinking budget, {ANTHROPIC_MIN_BUDGET}"
        ));
    }
    let mut adjusted = None;
    if budget < ANTHROPIC_MIN_BUDGET {
        budget = ANTHROPIC_MIN_BUDGET;
        adjusted = Some(format!(
            "raised the thinking budget to {budget} (Anthropic's smallest)"
        ));
    }
    if budget >= max {
        budget = max - 1;
        adjusted = Some(format!(
            "lowered the thinking budget to {budget} (below max_tokens {max})"
        ));
    }
    Ok(AnthropicThinking {
        budget: Some(budget),
        adjusted,
    })
}

// --- the router's decision ---------------------------------------------------

/// What the router does with a request's reasoning for one target.
#[derive(Debug, Clone, PartialEq)]
pub enum Fit {
    /// Sent as it is (the target's converter maps it).
    Keep,
    /// Left out (the canonical field and every verbatim control), with the
    /// warning to report, if any: turning reasoning off on a model that
    /// does not reason needs no warning.
    Drop(Option<String>),
    /// Sent changed: `reasoning` replaces the canonical field, and
    /// `thinking` goes into `extra` (Bedrock, whose converter does not see
    /// the model name).
    Change {
        reasoning: pb::Reasoning,
        thinking: Option<Value>,
        warning: Option<String>,
    },
}

/// The request's own spelling, for warnings.
fn client_name(spec: &ChatSpec) -> &'static str {
    match spec.dialect() {
        pb::Dialect::Anthropic => "thinking",
        pb::Dialect::Unspecified => "reasoning_effort",
    }
}

/// Whether `extra` carries the target's own control as the client sent it.
fn has_verbatim(spec: &ChatSpec, control: Control) -> bool {
    let Some(extra) = spec.extra.as_ref().map(|e| &e.fields) else {
        return false;
    };
    match control {
        Control::Effort => {
            spec.dialect() == pb::Dialect::Unspecified && extra.contains_key("reasoning_effort")
        }
        Control::Thinking => extra.contains_key("thinking"),
        Control::ThinkingBudget => {
            extra.contains_key("thinkingConfig")
                || extra.get("generationConfig").is_some_and(|g| {
                    matches!(&g.kind, Some(prost_types::value::Kind::StructValue(s)) if s.fields.contains_key("thinkingConfig"))
                })
        }
        Control::Nothing => false,
    }
}

/// Removes the request's reasoning: the canonical field and the verbatim
/// controls of every format.
pub fn clear(spec: &mut ChatSpec) {
    spec.reasoning = None;
    if let Some(extra) = spec.extra.as_mut() {
        for key in ["reasoning_effort", "thinking", "thinkingConfig"] {
            extra.fields.remove(key);
        }
    }
}

/// What `spec`'s reasoning needs to reach `model` at a provider of `kind`,
/// under the config's `mode` (see the module doc).
pub fn fit(spec: &ChatSpec, kind: ProviderKind, model: &str, mode: ReasoningMode) -> Fit {
    let Some(r) = spec.reasoning.as_ref() else {
        return Fit::Keep;
    };
    let control = control(kind, model);
    let verbatim = has_verbatim(spec, control);
    let reasons = reasons(kind, model, mode);
    let dropped = |why: String| Fit::Drop(Some(format!("dropped {} ({why})", client_name(spec))));

    if control == Control::Nothing {
        return if r.disabled {
            Fit::Drop(None)
        } else {
            dropped(format!(
                "{} has no reasoning control for {model}",
                kind.as_str()
            ))
        };
    }
    match reasons {
        Some(true) => {}
        // Off is what a model without reasoning does anyway.
        _ if r.disabled && !verbatim => return Fit::Drop(None),
        Some(false) if r.disabled => return Fit::Drop(None),
        Some(false) => {
            return dropped(match mode {
                ReasoningMode::Off => format!("`reasoning: off` for {model}"),
                ReasoningMode::Auto | ReasoningMode::On => format!("{model} does not reason"),
            });
        }
        // The client's own control, in the target's format, to a model the
        // family rules do not know: the client knows best.
        None if verbatim => return Fit::Keep,
        None => {
            return dropped(format!(
                "{model} is not known to reason; set `reasoning: on` for it to send reasoning"
            ));
        }
    }
    if verbatim {
        return Fit::Keep;
    }
    match control {
        Control::Effort => {
            if r.disabled {
                dropped(format!(
                    "{}'s reasoning_effort cannot turn reasoning off on every model: {model}'s default applies",
                    kind.as_str()
                ))
            } else {
                Fit::Keep
            }
        }
        Control::ThinkingBudget => {
            if r.disabled && !gemini_can_turn_off(model) {
                dropped(format!("{model} cannot turn thinking off"))
            } else if gemini_budget(r).is_none() {
                dropped(format!("unknown effort `{}`", r.effort))
            } else {
                Fit::Keep
            }
        }
        Control::Thinking => match anthropic_thinking(spec, r, model) {
            Err(why) => dropped(why),
            Ok(thinking) => {
                let bedrock = kind.wire_format() == WireFormat::Bedrock;
                if thinking.adjusted.is_none() && !bedrock {
                    return Fit::Keep;
                }
                let reasoning = match thinking.budget {
                    Some(budget) => pb::Reasoning {
                        budget_tokens: budget,
                        ..Default::default()
                    },
                    None => r.clone(),
                };
                Fit::Change {
                    reasoning,
                    thinking: bedrock.then(|| thinking.to_json()),
                    warning: thinking.adjusted,
                }
            }
        },
        Control::Nothing => Fit::Drop(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_proto::json::struct_from_map;

    fn budget(n: u32) -> pb::Reasoning {
        pb::Reasoning {
            budget_tokens: n,
            ..Default::default()
        }
    }

    fn effort(e: &str) -> pb::Reasoning {
        from_effort(e)
    }

    fn spec(r: pb::Reasoning) -> ChatSpec {
        ChatSpec {
            reasoning: Some(r),
            ..Default::default()
        }
    }

    fn with_extra(mut s: ChatSpec, v: Value) -> ChatSpec {
        s.extra = Some(struct_from_map(v.as_object().unwrap().clone()));
        s
    }

    #[test]
    fn efforts_and_budgets_map_both_ways() {
        for (e, b) in [
            ("low", LOW_BUDGET),
            ("medium", MEDIUM_BUDGET),
            ("high", HIGH_BUDGET),
        ] {
            assert_eq!(effort_to_budget(e), Some(b));
            assert_eq!(budget_to_effort(b), e);
        }
        assert_eq!(effort_to_budget("minimal"), Some(1024));
        assert_eq!(effort_to_budget("none"), None);
        assert_eq!(effort_to_budget("max"), None);
        assert_eq!(budget_to_effort(31999), "high");
        assert_eq!(budget_to_effort(4095), "low");
        assert_eq!(budget_to_effort(4096), "medium");
        assert_eq!(budget_to_effort(16384), "high");
    }

    #[test]
    fn client_spellings_become_canonical() {
        assert_eq!(effort("high").effort, "high");
        assert!(effort("none").disabled && effort("none").effort.is_empty());
        let t = |v: Value| from_anthropic_thinking(&v);
        assert_eq!(
            t(json!({"type": "enabled", "budget_tokens": 31999})),
            Some(budget(31999))
        );
        assert!(t(json!({"type": "disabled"})).unwrap().disabled);
        assert_eq!(
            t(json!({"type": "adaptive"})),
            Some(pb::Reasoning::default())
        );
        assert_eq!(t(json!({"type": "enabled"})), None);
        assert_eq!(t(json!({"type": "later"})), None);
        // Claude Code: adaptive thinking at the effort it names.
        let cc = |effort: &str| {
            from_anthropic(
                &json!({"type": "adaptive", "display": "omitted"}),
                Some(&json!({"effort": effort})),
            )
        };
        assert_eq!(cc("high").unwrap().effort, "high");
        assert_eq!(cc("max").unwrap().effort, "xhigh");
        assert_eq!(cc("other"), Some(pb::Reasoning::default()));
        // A budget is already a level; the effort parameter does not move it.
        assert_eq!(
            from_anthropic(
                &json!({"type": "enabled", "budget_tokens": 2048}),
                Some(&json!({"effort": "high"}))
            ),
            Some(budget(2048))
        );
    }

    #[test]
    fn model_families() {
        use ProviderKind::*;
        for (kind, model) in [
            (Openai, "o1"),
            (Openai, "o3-mini"),
            (Openai, "o4-mini-2025-04-16"),
            (Openai, "gpt-5"),
            (Openai, "gpt-5.1"),
            (Openai, "gpt-5-mini"),
            (Openai, "gpt-6"),
            (Groq, "openai/gpt-oss-120b"),
            (Openrouter, "openai/o3"),
            (Openrouter, "anthropic/claude-sonnet-4.5"),
            (Anthropic, "claude-3-7-sonnet-20250219"),
            (Anthropic, "claude-sonnet-4-5"),
            (Anthropic, "claude-opus-4-1-20250805"),
            (Anthropic, "claude-haiku-4-5"),
            (Anthropic, "claude-opus-5"),
            (Bedrock, "us.anthropic.claude-sonnet-4-20250514-v1:0"),
            (Gemini, "gemini-2.5-flash"),
            (Gemini, "gemini-2.5-pro"),
            (Gemini, "gemini-3-pro-preview"),
            (Demo, "echo"),
        ] {
            assert_eq!(model_reasons(kind, model), Some(true), "{model}");
        }
        for (kind, model) in [
            (Openai, "gpt-4o-mini"),
            (Openai, "gpt-4.1"),
            (Openai, "gpt-3.5-turbo"),
            (Openai, "chatgpt-4o-latest"),
            (Anthropic, "claude-3-5-sonnet-latest"),
            (Anthropic, "claude-3-haiku-20240307"),
            (Anthropic, "claude-instant-1.2"),
            (Bedrock, "anthropic.claude-3-5-haiku-20241022-v1:0"),
            (Gemini, "gemini-2.0-flash"),
            (Gemini, "gemini-1.5-pro"),
        ] {
            assert_eq!(model_reasons(kind, model), Some(false), "{model}");
        }
        for (kind, model) in [
            (Openai, "gpt-5-chat-latest"),
            (AzureOpenai, "my-deployment"),
            (Deepseek, "deepseek-reasoner"),
            (Mistral, "magistral-medium-latest"),
            (Openai, "gpt-test"),
            (Gemini, "gemini-flash-latest"),
        ] {
            assert_eq!(model_reasons(kind, model), None, "{model}");
        }
        assert_eq!(
            reasons(Openai, "gpt-4o", ReasoningMode::On),
            Some(true),
            "the config wins"
        );
        assert_eq!(reasons(Openai, "o3", ReasoningMode::Off), Some(false));
    }

    #[test]
    fn each_format_gets_its_own_control() {
        assert_eq!(openai_effort(&budget(31999)).as_deref(), Some("high"));
        assert_eq!(
            openai_effort(&effort("minimal")).as_deref(),
            Some("minimal")
        );
        assert_eq!(openai_effort(&effort("none")), None);
        assert_eq!(openai_effort(&pb::Reasoning::default()), None);
        assert_eq!(gemini_budget(&effort("medium")), Some(8192));
        assert_eq!(gemini_budget(&budget(31999)), Some(24576));
        assert_eq!(gemini_budget(&budget(100)), Some(1024));
        assert_eq!(gemini_budget(&effort("none")), Some(0));
        assert_eq!(gemini_budget(&pb::Reasoning::default()), Some(-1));
        assert_eq!(gemini_budget(&effort("max")), None);
        assert_eq!(control(ProviderKind::Groq, "x"), Control::Effort);
        assert_eq!(
            control(ProviderKind::Bedrock, "amazon.nova-pro-v1:0"),
            Control::Nothing
        );
        assert_eq!(
            control(ProviderKind::Bedrock, "anthropic.claude-sonnet-4-5"),
            Control::Thinking
        );
    }

    #[test]
    fn anthropic_rules() {
        let m = "claude-sonnet-4-5";
        let mut s = spec(effort("high"));
        s.max_tokens = Some(32000);
        let t = anthropic_thinking(&s, &effort("high"), m).unwrap();
        assert_eq!(
            t.to_json(),
            json!({"type": "enabled", "budget_tokens": 24576})
        );
        assert_eq!(t.adjusted, None);

        s.max_tokens = Some(4000);
        let t = anthropic_thinking(&s, &effort("high"), m).unwrap();
        assert_eq!(t.budget, Some(3999));
        assert!(t.adjusted.unwrap().contains("below max_tokens 4000"));

        let t = anthropic_thinking(&s, &budget(10), m).unwrap();
        assert_eq!(t.budget, Some(1024));

        s.max_tokens = Some(1024);
        assert!(anthropic_thinking(&s, &effort("low"), m).is_err());

        s.max_tokens = None;
        // The model's default max_tokens (64000) leaves room.
        assert_eq!(
            anthropic_thinking(&s, &budget(31999), m).unwrap().budget,
            Some(31999)
        );

        s.temperature = Some(0.2);
        assert!(
            anthropic_thinking(&s, &effort("low"), m)
                .unwrap_err()
                .contains("temperature")
        );
        s.temperature = Some(1.0);
        assert!(anthropic_thinking(&s, &effort("low"), m).is_ok());
        s.top_p = Some(0.5);
        assert!(
            anthropic_thinking(&s, &effort("low"), m)
                .unwrap_err()
                .contains("top_p")
        );
        s.top_p = None;

        s.tool_choice = Some(pb::ToolChoice {
            mode: Mode::Required as i32,
            name: String::new(),
        });
        assert!(
            anthropic_thinking(&s, &effort("low"), m)
                .unwrap_err()
                .contains("forced tool")
        );
        s.tool_choice = None;
        s.response_format = Some(pb::ResponseFormat {
            r#type: FormatType::JsonObject as i32,
            ..Default::default()
        });
        assert!(anthropic_thinking(&s, &effort("low"), m).is_err());

        // Off is always fine.
        let off = anthropic_thinking(&s, &effort("none"), m).unwrap();
        assert_eq!(off.to_json(), json!({"type": "disabled"}));
    }

    #[test]
    fn the_router_keeps_translates_or_drops() {
        use ProviderKind::*;
        let auto = ReasoningMode::Auto;
        // Claude Code's thinking to a reasoning OpenAI model: kept (the
        // converter writes `reasoning_effort`).
        let mut claude_code = with_extra(
            spec(budget(31999)),
            json!({"thinking": {"type": "enabled", "budget_tokens": 31999}}),
        );
        claude_code.dialect = pb::Dialect::Anthropic as i32;
        claude_code.max_tokens = Some(32000);
        assert_eq!(fit(&claude_code, Openai, "gpt-5", auto), Fit::Keep);
        assert_eq!(
            fit(&claude_code, Anthropic, "claude-sonnet-4-5", auto),
            Fit::Keep
        );
        assert_eq!(fit(&claude_code, Gemini, "gemini-2.5-pro", auto), Fit::Keep);
        assert_eq!(
            fit(&claude_code, Openai, "gpt-4o-mini", auto),
            Fit::Drop(Some(
                "dropped thinking (gpt-4o-mini does not reason)".into()
            ))
        );
        assert!(matches!(
            fit(&claude_code, Openai, "gpt-test", auto),
            Fit::Drop(Some(w)) if w.contains("not known to reason")
        ));
        assert_eq!(
            fit(&claude_code, Openai, "gpt-test", ReasoningMode::On),
            Fit::Keep
        );
        assert!(matches!(
            fit(&claude_code, Anthropic, "claude-3-5-haiku-latest", auto),
            Fit::Drop(Some(_))
        ));
        // Bedrock's converter does not see the model: the router writes
        // `thinking` for it.
        assert_eq!(
            fit(
                &claude_code,
                Bedrock,
                "anthropic.claude-sonnet-4-5-v1:0",
                auto
            ),
            Fit::Keep,
            "the client's own `thinking` goes as it is"
        );
        let mut typed_only = claude_code.clone();
        typed_only.extra = None;
        assert_eq!(
            fit(
                &typed_only,
                Bedrock,
                "anthropic.claude-sonnet-4-5-v1:0",
                auto
            ),
            Fit::Change {
                reasoning: budget(31999),
                thinking: Some(json!({"type": "enabled", "budget_tokens": 31999})),
                warning: None,
            }
        );
        assert!(matches!(
            fit(&typed_only, Bedrock, "amazon.nova-pro-v1:0", auto),
            Fit::Drop(Some(_))
        ));

        // OpenAI's effort to Anthropic, with too few max_tokens for high.
        let mut openai = with_extra(spec(effort("high")), json!({"reasoning_effort": "high"}));
        openai.max_tokens = Some(2000);
        assert_eq!(
            fit(&openai, Anthropic, "claude-opus-4-1", auto),
            Fit::Change {
                reasoning: budget(1999),
                thinking: None,
                warning: Some("lowered the thinking budget to 1999 (below max_tokens 2000)".into()),
            }
        );
        // Its own format to an unknown model: the client knows best.
        assert_eq!(fit(&openai, Groq, "qwen/qwen3-32b", auto), Fit::Keep);
        assert!(matches!(
            fit(&openai, Openai, "gpt-4o", auto),
            Fit::Drop(Some(_))
        ));
        assert!(matches!(
            fit(&openai, Openai, "o3", ReasoningMode::Off),
            Fit::Drop(Some(w)) if w.contains("reasoning: off")
        ));

        // Off needs nothing where nothing reasons, and cannot be said
        // everywhere else.
        let off = spec(effort("none"));
        assert_eq!(fit(&off, Openai, "gpt-4o", auto), Fit::Drop(None));
        assert!(matches!(fit(&off, Openai, "o3", auto), Fit::Drop(Some(_))));
        assert_eq!(fit(&off, Gemini, "gemini-2.5-flash", auto), Fit::Keep);
        assert!(matches!(
            fit(&off, Gemini, "gemini-2.5-pro", auto),
            Fit::Drop(Some(_))
        ));
        assert_eq!(fit(&off, Anthropic, "claude-sonnet-4-5", auto), Fit::Keep);

        // No reasoning asked: nothing to do.
        assert_eq!(fit(&ChatSpec::default(), Openai, "gpt-4o", auto), Fit::Keep);
    }

    #[test]
    fn clearing_removes_every_spelling() {
        let mut s = with_extra(
            spec(effort("low")),
            json!({"reasoning_effort": "low", "thinking": {}, "thinkingConfig": {}, "top_k": 3}),
        );
        clear(&mut s);
        assert!(s.reasoning.is_none());
        let keys: Vec<_> = s.extra.unwrap().fields.into_keys().collect();
        assert_eq!(keys, ["top_k"]);
    }
}
