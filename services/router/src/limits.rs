//! Rate limits on the request path: the configured `rate_limits` and a
//! key's own `rpm`/`tpm`, counted by [`switchyard_ratelimit::Limiter`]
//! (shared with the other routers over the bus when there is one).
//!
//! A request is counted at admission, after the model access check and
//! before budgets and routing; its tokens are counted when its usage is
//! known (the meter's settle). Answers carry OpenAI's `x-ratelimit-*`
//! headers of the tightest limit that applied; a refusal is a 429 with
//! them and `retry-after`.

use std::sync::Arc;

use switchyard_auth::{Credential, Principal};
use switchyard_config::{Config, RateLimitScope};
use switchyard_ratelimit::{Dimension, Exhausted, Limiter, RateHeaders, Rule, Subject};
use tokio::time::Instant;

use crate::error::GatewayError;
use crate::spend::Identity;

/// The NATS subject (after `bus.subject_prefix`) routers share their
/// counts on.
pub const SYNC_SUBJECT: &str = "ratelimit.v1";

/// What a request is counted under, kept until its tokens are known.
#[derive(Debug, Clone)]
pub struct Charge {
    limiter: Arc<Limiter>,
    key: Option<String>,
    team: Option<String>,
    user: Option<String>,
    model: String,
    roles: Vec<String>,
    /// The caller's key's own limits.
    extra: Vec<Rule>,
}

impl Charge {
    fn subject(&self) -> Subject<'_> {
        Subject {
            key: self.key.as_deref(),
            team: self.team.as_deref(),
            user: self.user.as_deref(),
            model: &self.model,
            roles: &self.roles,
        }
    }

    /// Counts the answer's tokens (prompt + completion).
    pub fn tokens(&self, tokens: u64) {
        self.limiter
            .record_tokens(&self.subject(), &self.extra, tokens, Instant::now());
    }
}

pub fn rules(config: &Config) -> Vec<Rule> {
    config
        .rate_limits
        .iter()
        .map(|r| {
            let (dimension, value) = match &r.scope {
                None => (Dimension::Global, None),
                Some(RateLimitScope::Key(_)) => (Dimension::Key, None),
                Some(RateLimitScope::Team(v)) => (Dimension::Team, star(v)),
                Some(RateLimitScope::User(v)) => (Dimension::User, star(v)),
                Some(RateLimitScope::Model(v)) => (Dimension::Model, star(v)),
                Some(RateLimitScope::Role(v)) => (Dimension::Role, Some(v.clone())),
            };
            Rule {
                name: r.name.clone(),
                dimension,
                value,
                rpm: r.rpm,
                tpm: r.tpm,
            }
        })
        .collect()
}

fn star(v: &str) -> Option<String> {
    (v != "*").then(|| v.to_owned())
}

/// The limits a key carries, as rules counting that key alone.
fn key_rules(caller: Option<&Principal>, key_id: Option<&str>) -> Vec<Rule> {
    match (caller, key_id) {
        (Some(p), Some(id)) if p.limits.rpm.is_some() || p.limits.tpm.is_some() => {
            let name = match &p.credential {
                Credential::Key { name, .. } => format!("key `{name}`"),
                Credential::Jwt { subject } => format!("token `{subject}`"),
            };
            vec![Rule {
                name,
                dimension: Dimension::Key,
                value: Some(id.to_owned()),
                rpm: p.limits.rpm,
                tpm: p.limits.tpm,
            }]
        }
        _ => Vec::new(),
    }
}

/// Admits one request of `who` for `model`: the headers to answer with
/// and the charge its tokens go to, or the 429.
pub fn admit(
    limiter: &Arc<Limiter>,
    who: &Identity,
    caller: Option<&Principal>,
    model: &str,
) -> Result<(Option<RateHeaders>, Charge), GatewayError> {
    let charge = Charge {
        limiter: limiter.clone(),
        key: who.key.clone(),
        team: who.team.clone(),
        user: who.user.clone(),
        model: model.to_owned(),
        roles: caller.map(|c| c.roles.clone()).unwrap_or_default(),
        extra: key_rules(caller, who.key.as_deref()),
    };
    match limiter.admit(&charge.subject(), &charge.extra, Instant::now()) {
        Ok(admitted) => Ok((admitted.headers, charge)),
        Err(limited) => Err(GatewayError::RateLimited {
            what: match limited.what {
                Exhausted::Requests => "requests",
                Exhausted::Tokens => "tokens",
            },
            limit: limited.limit,
            retry_after: limited.retry_after,
            headers: limited.headers.pairs(),
            rule: limited.rule,
        }),
    }
}
