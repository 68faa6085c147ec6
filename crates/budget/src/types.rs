//! What budgets are made of and what they answer.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use switchyard_pricing::Usd;

use crate::window::Window;

/// What a budget (or a spike rule) is scoped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dimension {
    /// The virtual API key.
    Key,
    Team,
    /// The end user the request is made for.
    User,
    /// The model name the client asked for (before routing).
    Model,
    /// The provider that served the request. Known only after routing, so
    /// such budgets act through [`Budgets::blocked_providers`], never
    /// through [`Budgets::check`].
    ///
    /// [`Budgets::blocked_providers`]: crate::Budgets::blocked_providers
    /// [`Budgets::check`]: crate::Budgets::check
    Provider,
}

impl Dimension {
    pub(crate) fn of_spend<'a>(self, s: &Spend<'a>) -> Option<&'a str> {
        match self {
            Dimension::Key => s.key,
            Dimension::Team => s.team,
            Dimension::User => s.user,
            Dimension::Model => Some(s.model),
            Dimension::Provider => s.provider,
        }
    }

    pub(crate) fn of_subject<'a>(self, s: &Subject<'a>) -> Option<&'a str> {
        match self {
            Dimension::Key => s.key,
            Dimension::Team => s.team,
            Dimension::User => s.user,
            Dimension::Model => Some(s.model),
            Dimension::Provider => None,
        }
    }
}

/// What happens to requests once a budget is exhausted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Action {
    /// Refuse requests until the window resets.
    Reject,
    /// Serve requests with this model instead of the one asked for.
    Downgrade { to: String },
    /// Never blocks: [`Budgets::record`](crate::Budgets::record) reports the
    /// crossing once per window so the router can notify.
    Alert,
}

/// One budget: a limit on spend in a calendar window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BudgetRule {
    /// Unique among the rules; names the budget in verdicts, alerts and the
    /// admin API.
    pub name: String,
    /// `None`: one global budget over all spend.
    pub dimension: Option<Dimension>,
    /// `Some`: only spend of this key/team/...; `None`: every distinct value
    /// of the dimension has its own budget of `limit`. Ignored without a
    /// dimension.
    pub value: Option<String>,
    pub window: Window,
    pub limit: Usd,
    pub action: Action,
}

/// The cost of one served request, as recorded after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spend<'a> {
    pub at: Timestamp,
    pub key: Option<&'a str>,
    pub team: Option<&'a str>,
    pub user: Option<&'a str>,
    /// The model the client asked for (not the upstream model).
    pub model: &'a str,
    pub provider: Option<&'a str>,
    pub cost: Usd,
}

/// An owned [`Spend`] for the wire: routers publish their spend so every
/// router counts all of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpendRecord {
    pub at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    pub model: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    pub cost: Usd,
    /// The router that served the request: a router that receives its own
    /// records back skips them, having recorded them already.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
}

impl SpendRecord {
    pub fn from_spend(s: &Spend<'_>, origin: Option<String>) -> Self {
        SpendRecord {
            at: s.at,
            key: s.key.map(str::to_owned),
            team: s.team.map(str::to_owned),
            user: s.user.map(str::to_owned),
            model: s.model.to_owned(),
            provider: s.provider.map(str::to_owned),
            cost: s.cost,
            origin,
        }
    }

    pub fn as_spend(&self) -> Spend<'_> {
        Spend {
            at: self.at,
            key: self.key.as_deref(),
            team: self.team.as_deref(),
            user: self.user.as_deref(),
            model: &self.model,
            provider: self.provider.as_deref(),
            cost: self.cost,
        }
    }
}

/// Who makes a request, as known before routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subject<'a> {
    pub key: Option<&'a str>,
    pub team: Option<&'a str>,
    pub user: Option<&'a str>,
    /// The model asked for.
    pub model: &'a str,
}

/// A budget that is exhausted (or, from `record`, an alert budget that just
/// crossed its limit).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Exceeded {
    pub budget: String,
    pub dimension: Option<Dimension>,
    /// The key/team/... the exhausted counter belongs to; `None` for a
    /// global budget.
    pub value: Option<String>,
    pub limit: Usd,
    pub spent: Usd,
    pub window_start: Timestamp,
    pub resets_at: Timestamp,
}

/// The answer to [`Budgets::check`](crate::Budgets::check).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// Refuse (429): the exhausted reject budget that resets last.
    Reject(Exceeded),
    /// Serve with model `to` instead.
    Downgrade {
        exceeded: Exceeded,
        to: String,
    },
}

/// One counter of one budget, for the admin API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BudgetStatus {
    pub name: String,
    pub dimension: Option<Dimension>,
    pub value: Option<String>,
    pub window: Window,
    pub window_start: Timestamp,
    pub window_end: Timestamp,
    pub limit: Usd,
    pub spent: Usd,
    /// `limit - spent`, never below zero.
    pub remaining: Usd,
    pub exhausted: bool,
    pub action: Action,
}

/// A rule that cannot work as written (for `switchyard check` and reload).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("a rule has an empty name")]
    EmptyName,
    #[error("rule `{0}` is defined more than once")]
    Duplicate(String),
    #[error("rule `{0}` names a value but no dimension to match it against")]
    ValueWithoutDimension(String),
    #[error("rule `{0}` has an empty value")]
    EmptyValue(String),
    #[error("budget `{0}` has a negative limit")]
    NegativeLimit(String),
    #[error("budget `{0}` downgrades to an empty model name")]
    EmptyDowngradeTarget(String),
    #[error(
        "budget `{0}` is per provider and cannot downgrade (the provider is chosen after the model); use reject or alert"
    )]
    ProviderDowngrade(String),
    #[error("spike rule `{0}` has a zero window")]
    ZeroWindow(String),
    #[error("spike rule `{0}` has neither a threshold nor a factor")]
    NoCondition(String),
    #[error("spike rule `{0}` has a factor that is not a positive number")]
    BadFactor(String),
    #[error("spike rule `{0}` has a baseline shorter than its window")]
    ShortBaseline(String),
}

fn check_names<'a>(names: impl Iterator<Item = &'a str>, errors: &mut Vec<RuleError>) {
    let mut seen = std::collections::HashSet::new();
    for n in names {
        if n.is_empty() {
            errors.push(RuleError::EmptyName);
        } else if !seen.insert(n) {
            errors.push(RuleError::Duplicate(n.to_owned()));
        }
    }
}

fn check_scope(
    name: &str,
    dimension: Option<Dimension>,
    value: Option<&str>,
    errors: &mut Vec<RuleError>,
) {
    match (dimension, value) {
        (None, Some(_)) => errors.push(RuleError::ValueWithoutDimension(name.to_owned())),
        (Some(_), Some("")) => errors.push(RuleError::EmptyValue(name.to_owned())),
        _ => {}
    }
}

/// Every problem of a set of budget rules. [`Budgets`](crate::Budgets)
/// accepts invalid rules too (refusing them is config validation's job): a
/// value without a dimension makes a global budget, a negative limit acts as
/// zero (always spent), a provider downgrade never applies, and rules that
/// share a name are separate budgets.
pub fn validate_budgets(rules: &[BudgetRule]) -> Vec<RuleError> {
    let mut errors = Vec::new();
    check_names(rules.iter().map(|r| r.name.as_str()), &mut errors);
    for r in rules {
        check_scope(&r.name, r.dimension, r.value.as_deref(), &mut errors);
        if r.limit < Usd::ZERO {
            errors.push(RuleError::NegativeLimit(r.name.clone()));
        }
        if let Action::Downgrade { to } = &r.action {
            if to.is_empty() {
                errors.push(RuleError::EmptyDowngradeTarget(r.name.clone()));
            }
            if r.dimension == Some(Dimension::Provider) {
                errors.push(RuleError::ProviderDowngrade(r.name.clone()));
            }
        }
    }
    errors
}

/// Every problem of a set of spike rules.
pub fn validate_spikes(rules: &[crate::SpikeRule]) -> Vec<RuleError> {
    let mut errors = Vec::new();
    check_names(rules.iter().map(|r| r.name.as_str()), &mut errors);
    for r in rules {
        check_scope(&r.name, r.dimension, r.value.as_deref(), &mut errors);
        if r.window.is_zero() {
            errors.push(RuleError::ZeroWindow(r.name.clone()));
        }
        if r.threshold.is_none() && r.factor.is_none() {
            errors.push(RuleError::NoCondition(r.name.clone()));
        }
        if let Some(f) = r.factor {
            if !(f.is_finite() && f > 0.0) {
                errors.push(RuleError::BadFactor(r.name.clone()));
            }
            if r.baseline < r.window {
                errors.push(RuleError::ShortBaseline(r.name.clone()));
            }
        }
    }
    errors
}
