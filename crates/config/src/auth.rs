//! Identity and access: `auth` (virtual keys, JWT, model access rules)
//! and `rate_limits` (docs/auth.md).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::Secret;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Where virtual keys are kept.
    #[serde(default)]
    pub keys: KeysConfig,
    /// Bearer JWTs from an identity provider, accepted besides keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<JwtConfig>,
    /// Which models callers may ask for, by team, role, user or key name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub access: Vec<AccessRuleConfig>,
    /// While no key exists and no JWT issuer is set, the gateway answers
    /// loopback clients only; `true` serves every client without a
    /// credential (behind a proxy that authenticates, say).
    #[serde(default)]
    pub allow_unauthenticated: bool,
}

impl AuthConfig {
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KeysConfig {
    #[serde(default)]
    pub store: KeyStoreKind,
    /// The local key file (`store: local`). Absent: `keys.db` in the data
    /// directory (see `ledger.path`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// The JetStream key-value bucket (`store: jetstream`).
    #[serde(default = "default_keys_bucket")]
    pub bucket: String,
    #[serde(default = "one")]
    pub replicas: usize,
    /// The secret keys are hashed under (at least 32 bytes). Required with
    /// `jetstream` (every router must hash alike); with `local`, absent
    /// means one is made and kept beside the key file (`keys.secret`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_secret: Option<Secret>,
}

impl Default for KeysConfig {
    fn default() -> Self {
        Self {
            store: KeyStoreKind::default(),
            path: None,
            bucket: default_keys_bucket(),
            replicas: 1,
            hash_secret: None,
        }
    }
}

fn default_keys_bucket() -> String {
    "switchyard_keys".to_owned()
}

fn one() -> usize {
    1
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum KeyStoreKind {
    /// `jetstream` with a bus (and `hash_secret`; without one, keys are
    /// off), `local` without.
    #[default]
    Auto,
    Local,
    Jetstream,
    /// No virtual keys (JWTs only, or open).
    Off,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// The `iss` every token must carry.
    pub issuer: String,
    /// A token's `aud` must contain one of these.
    pub audiences: Vec<String>,
    /// The identity provider's JWKS; one of `jwks_url` and `jwks_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_file: Option<PathBuf>,
    /// Claim paths (dots go into objects: `realm_access.roles`).
    #[serde(default = "default_user_claim")]
    pub user_claim: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team_claim: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_claim: Option<String>,
    /// Clock skew allowed on `exp` and `nbf`.
    #[serde(default = "default_leeway", with = "humantime_serde")]
    pub leeway: Duration,
    /// A token with an unknown key id fetches the JWKS again, at most this
    /// often.
    #[serde(default = "default_refresh", with = "humantime_serde")]
    pub min_refresh_interval: Duration,
}

fn default_user_claim() -> String {
    "sub".to_owned()
}
fn default_leeway() -> Duration {
    Duration::from_secs(60)
}
fn default_refresh() -> Duration {
    Duration::from_secs(30)
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AccessRuleConfig {
    pub name: String,
    /// Whom the rule applies to (any match); none given: everyone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub teams: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<String>,
    /// Key names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<String>,
    /// Model name patterns (`*` is any run of characters) they may use.
    pub models: Vec<String>,
}

/// One `rate_limits` entry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    pub name: String,
    /// Whose requests: `{team: research}` for one team, `{team: "*"}` for
    /// each team apart, `{key: "*"}` for each key, `{role: intern}` for
    /// every caller with that role together. Absent: all together.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "serde_norway::with::singleton_map"
    )]
    pub scope: Option<RateLimitScope>,
    /// Requests per minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpm: Option<u64>,
    /// Tokens (prompt + completion) per minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum RateLimitScope {
    /// Only `*`: a key's own limits are set on the key.
    Key(String),
    Team(String),
    User(String),
    Model(String),
    /// One role (a caller with it counts in it); no `*`.
    Role(String),
}
