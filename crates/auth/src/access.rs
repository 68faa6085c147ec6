//! Who a request acts for ([`Principal`]) and which models it may ask for
//! ([`AccessPolicy`]): the key's own model list, then every configured
//! rule that selects the caller (by team, role, user or key name). A model
//! must be allowed by all of them; a refusal names the one that said no.

use crate::keys::{KeyLimits, KeyRecord};

/// How the caller proved who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// A virtual key: its id and name (never the key).
    Key { id: String, name: String },
    /// A JWT from the identity provider: its subject.
    Jwt { subject: String },
}

/// The caller of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub credential: Credential,
    pub team: Option<String>,
    pub user: Option<String>,
    pub roles: Vec<String>,
    /// The key's own model patterns; empty: no restriction of its own.
    pub models: Vec<String>,
    pub limits: KeyLimits,
    /// The audit trail keeps this caller's prompts and answers
    /// ([`KeyRecord::capture_payloads`]); never for a JWT caller.
    pub capture_payloads: bool,
}

impl Principal {
    pub fn from_key(record: &KeyRecord) -> Self {
        Principal {
            credential: Credential::Key {
                id: record.id.clone(),
                name: record.name.clone(),
            },
            team: record.team.clone(),
            user: record.user.clone(),
            roles: record.roles.clone(),
            models: record.models.clone(),
            limits: record.limits.clone(),
            capture_payloads: record.capture_payloads,
        }
    }

    /// The id usage, budgets and rate limits are kept under: `key:<id>` or
    /// `jwt:<subject>`.
    pub fn id(&self) -> String {
        match &self.credential {
            Credential::Key { id, .. } => format!("key:{id}"),
            Credential::Jwt { subject } => format!("jwt:{subject}"),
        }
    }

    fn key_name(&self) -> Option<&str> {
        match &self.credential {
            Credential::Key { name, .. } => Some(name),
            Credential::Jwt { .. } => None,
        }
    }
}

/// One configured model access rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRule {
    pub name: String,
    /// Whom it applies to: a caller matching any entry of any list. All
    /// empty: everyone.
    pub teams: Vec<String>,
    pub roles: Vec<String>,
    pub users: Vec<String>,
    pub keys: Vec<String>,
    /// The model patterns those callers may ask for.
    pub models: Vec<String>,
}

impl AccessRule {
    fn selects(&self, p: Option<&Principal>) -> bool {
        if self.teams.is_empty()
            && self.roles.is_empty()
            && self.users.is_empty()
            && self.keys.is_empty()
        {
            return true;
        }
        let Some(p) = p else { return false };
        let has = |list: &[String], v: Option<&str>| v.is_some_and(|v| list.iter().any(|x| x == v));
        has(&self.teams, p.team.as_deref())
            || has(&self.users, p.user.as_deref())
            || has(&self.keys, p.key_name())
            || p.roles.iter().any(|r| self.roles.contains(r))
    }
}

/// Why a model is refused: the rule (or key) that does not allow it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the model `{model}` is not allowed for this caller by {by}")]
pub struct Denied {
    pub model: String,
    /// ``rule `NAME` `` or ``key `NAME` ``.
    pub by: String,
}

/// Every configured access rule.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessPolicy {
    pub rules: Vec<AccessRule>,
}

impl AccessPolicy {
    pub fn check(&self, p: Option<&Principal>, model: &str) -> Result<(), Denied> {
        let denied = |by: String| Denied {
            model: model.to_owned(),
            by,
        };
        if let Some(p) = p
            && !p.models.is_empty()
            && !any_matches(&p.models, model)
        {
            return Err(denied(match &p.credential {
                Credential::Key { name, .. } => format!("key `{name}`"),
                Credential::Jwt { subject } => format!("token `{subject}`"),
            }));
        }
        match self
            .rules
            .iter()
            .find(|r| r.selects(p) && !any_matches(&r.models, model))
        {
            Some(r) => Err(denied(format!("rule `{}`", r.name))),
            None => Ok(()),
        }
    }

    pub fn allows(&self, p: Option<&Principal>, model: &str) -> bool {
        self.check(p, model).is_ok()
    }
}

fn any_matches(patterns: &[String], model: &str) -> bool {
    patterns.iter().any(|p| glob(p, model))
}

/// `*` matches any run of characters (none included); everything else
/// itself. Iterative with one backtrack point, so no pattern is slow.
pub fn glob(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ni));
            pi += 1;
        } else if pi < p.len() && p[pi] == n[ni] {
            pi += 1;
            ni += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn key(name: &str, team: Option<&str>, roles: &[&str], models: &[&str]) -> Principal {
        Principal {
            credential: Credential::Key {
                id: "id".into(),
                name: name.into(),
            },
            team: team.map(Into::into),
            user: None,
            roles: roles.iter().map(|r| (*r).into()).collect(),
            models: models.iter().map(|m| (*m).into()).collect(),
            limits: KeyLimits::default(),
            capture_payloads: false,
        }
    }

    fn rule(name: &str, teams: &[&str], roles: &[&str], models: &[&str]) -> AccessRule {
        let v = |l: &[&str]| l.iter().map(|s| (*s).to_owned()).collect();
        AccessRule {
            name: name.into(),
            teams: v(teams),
            roles: v(roles),
            users: vec![],
            keys: vec![],
            models: v(models),
        }
    }

    #[test]
    fn globs() {
        for (p, n, want) in [
            ("gpt-4o*", "gpt-4o-mini", true),
            ("gpt-4o*", "gpt-4", false),
            ("*", "", true),
            ("claude-*-4-5", "claude-sonnet-4-5", true),
            ("claude-*-4-5", "claude-sonnet-4-6", false),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "aXXcYYb", false),
            ("exact", "exact", true),
            ("exact", "exactly", false),
        ] {
            assert_eq!(glob(p, n), want, "{p} ~ {n}");
        }
    }

    #[test]
    fn a_model_must_pass_the_key_and_every_rule_that_selects_the_caller() {
        let policy = AccessPolicy {
            rules: vec![
                rule("interns", &[], &["intern"], &["*-mini"]),
                rule(
                    "research-models",
                    &["research"],
                    &[],
                    &["gpt-*", "claude-*"],
                ),
            ],
        };
        let intern = key("k1", Some("research"), &["intern"], &[]);
        assert!(policy.allows(Some(&intern), "gpt-4o-mini"));
        let e = policy.check(Some(&intern), "gpt-4o").unwrap_err();
        assert_eq!(e.by, "rule `interns`");
        assert!(e.to_string().contains("`gpt-4o`"), "{e}");
        let e = policy.check(Some(&intern), "mistral-mini").unwrap_err();
        assert_eq!(e.by, "rule `research-models`");
        let pinned = key("ci-bot", None, &[], &["gpt-4o"]);
        assert!(policy.allows(Some(&pinned), "gpt-4o"));
        assert_eq!(
            policy.check(Some(&pinned), "claude-x").unwrap_err().by,
            "key `ci-bot`"
        );
        // Rules that select someone never select an anonymous caller; a
        // rule selecting no one in particular applies to all.
        assert!(policy.allows(None, "anything"));
        let all = AccessPolicy {
            rules: vec![rule("everyone", &[], &[], &["demo"])],
        };
        assert!(!all.allows(None, "gpt-4o"));
        assert!(all.allows(None, "demo"));
    }
}
