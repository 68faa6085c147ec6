//! `guardrails`: content rules run over every chat prompt before it leaves
//! the gateway (chat completions, `/v1/messages`, `/v1/responses`, gRPC).
//! Each rule is a detector (`switchyard_guardrails`: card numbers, SSNs,
//! IBANs, e-mail, phone numbers, secrets, or a custom regex) and an action:
//! `block` answers 400 naming the rule and the detector (never the match),
//! `redact` replaces each match with `[REDACTED:<detector>]`, `log` only
//! records that the rule matched. Rules can be limited to models and teams.
//!
//! Scanned: every text part of every message (system, user, assistant,
//! tool), the arguments of earlier tool calls, and the client's original
//! Responses request that a `responses: native` target would receive.
//! Answers are not scanned yet.

use std::sync::Arc;

use switchyard_config::{Config, GuardrailAction, GuardrailRule};
use switchyard_guardrails::{Builtin, Scanner, redact};
use switchyard_proto::gateway::v1::{ChatSpec, content_part::Part};

use crate::error::GatewayError;
use crate::spend::Identity;

struct Rule {
    name: String,
    action: GuardrailAction,
    models: Vec<String>,
    teams: Vec<String>,
    scanner: Scanner,
}

/// The config's rules, compiled; swapped whole on reload.
#[derive(Default)]
pub struct Guardrails {
    rules: Vec<Rule>,
}

/// What the rules did to one request (for the access log and headers).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// `<rule>:<detector>` per redacting or logging rule that matched.
    pub matched: Vec<String>,
}

impl Guardrails {
    /// The compiled rules. A rule whose pattern does not compile (config
    /// validation rejects those first) is skipped with an error logged.
    pub fn from_config(config: &Config) -> Arc<Self> {
        let rules = config
            .guardrails
            .rules
            .iter()
            .filter_map(|r| match compile(r) {
                Ok(rule) => Some(rule),
                Err(e) => {
                    tracing::error!(rule = r.display_name(), error = %e, "guardrail rule skipped");
                    None
                }
            })
            .collect();
        Arc::new(Self { rules })
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Runs the rules that apply to `model` and `who` over `spec`: the
    /// first blocking match is the 400; redactions change `spec` in place.
    pub fn apply(
        &self,
        spec: &mut ChatSpec,
        model: &str,
        who: &Identity,
    ) -> Result<Applied, GatewayError> {
        let mut applied = Applied::default();
        for rule in self.rules.iter().filter(|r| r.applies(model, who)) {
            let mut first: Option<String> = None;
            let mut count = 0usize;
            each_text(spec, &mut |text| {
                let findings = rule.scanner.scan(text);
                let Some(head) = findings.first() else {
                    return;
                };
                count += findings.len();
                first.get_or_insert_with(|| head.detector.clone());
                if rule.action == GuardrailAction::Redact {
                    *text = redact(text, &findings);
                }
            });
            let Some(detector) = first else { continue };
            tracing::info!(
                target: "switchyard::guardrails",
                rule = %rule.name,
                detector = %detector,
                action = ?rule.action,
                matches = count,
                "guardrail matched"
            );
            match rule.action {
                GuardrailAction::Block => {
                    return Err(GatewayError::GuardrailBlocked {
                        rule: rule.name.clone(),
                        detector,
                    });
                }
                GuardrailAction::Redact | GuardrailAction::Log => {
                    applied.matched.push(format!("{}:{detector}", rule.name));
                }
            }
        }
        Ok(applied)
    }
}

impl Rule {
    fn applies(&self, model: &str, who: &Identity) -> bool {
        (self.models.is_empty() || self.models.iter().any(|m| m == model))
            && (self.teams.is_empty()
                || who
                    .team
                    .as_deref()
                    .is_some_and(|t| self.teams.iter().any(|x| x == t)))
    }
}

fn compile(r: &GuardrailRule) -> Result<Rule, switchyard_guardrails::GuardrailError> {
    let name = r.display_name().to_owned();
    let scanner = match (Builtin::from_name(&r.detector), &r.pattern) {
        (Some(b), _) => Scanner::new(&[b], &[])?,
        (None, Some(p)) => Scanner::new(&[], &[(name.clone(), p.clone())])?,
        // Validation refuses it; nothing to match.
        (None, None) => Scanner::new(&[], &[])?,
    };
    Ok(Rule {
        name,
        action: r.action,
        models: r.models.clone(),
        teams: r.teams.clone(),
        scanner,
    })
}

/// Calls `f` on every text the request sends upstream, mutably.
fn each_text(spec: &mut ChatSpec, f: &mut dyn FnMut(&mut String)) {
    for m in &mut spec.messages {
        for p in &mut m.content {
            if let Some(Part::Text(t)) = &mut p.part {
                f(t);
            }
        }
        for c in &mut m.tool_calls {
            f(&mut c.arguments);
        }
    }
    if let Some(original) = &mut spec.responses_request {
        for v in original.fields.values_mut() {
            each_string(v, f);
        }
    }
}

/// Every string inside a JSON value (the Responses request a native target
/// would get as it is).
fn each_string(v: &mut prost_types::Value, f: &mut dyn FnMut(&mut String)) {
    use prost_types::value::Kind;
    match &mut v.kind {
        Some(Kind::StringValue(s)) => f(s),
        Some(Kind::ListValue(l)) => {
            for v in &mut l.values {
                each_string(v, f);
            }
        }
        Some(Kind::StructValue(s)) => {
            for v in s.fields.values_mut() {
                each_string(v, f);
            }
        }
        Some(Kind::NullValue(_) | Kind::NumberValue(_) | Kind::BoolValue(_)) | None => {}
    }
}
