//! Who may call, on every front end: the credential a request carries (a
//! virtual key, or a JWT from the identity provider) becomes the
//! [`Principal`] it is billed to and limited by, and the model access rules
//! decide which models it may ask for.
//!
//! Until the first key exists (and with no JWT issuer configured) the
//! gateway is open, but to loopback clients only, unless
//! `auth.allow_unauthenticated` says otherwise: a gateway reachable from
//! the network is never open by accident. From the first key on, every
//! request needs a credential, and revoking keys never reopens it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwap;
use switchyard_auth::jwt::{JwksSource, JwtSettings, JwtVerifier, looks_like_jwt};
use switchyard_auth::keys::KEY_PREFIX;
use switchyard_auth::{
    AccessPolicy, AccessRule, Credential, KeyError, KeyHasher, KeyRecord, Keyring, NewKey,
    Principal,
};
use switchyard_config::{Config, KeyStoreKind};
use tokio_util::sync::CancellationToken;

use crate::error::GatewayError;

pub mod store;

use store::{JetStreamKeyStore, KeyStore, KeyStoreError, LocalKeyStore};

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(transparent)]
    Store(#[from] KeyStoreError),
    #[error("auth.keys.hash_secret: {0}")]
    HashSecret(KeyError),
    #[error("auth.jwt: {0}")]
    Jwt(String),
}

/// Where a request's credential is: `Authorization: Bearer` (OpenAI
/// SDKs), `x-api-key` (Anthropic SDKs), `api-key` (Azure OpenAI clients).
pub const CREDENTIAL_HEADERS: [&str; 3] = ["authorization", "x-api-key", "api-key"];

/// The credential in a request's headers (or gRPC metadata), if any.
pub fn credential<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Option<&'a str> {
    CREDENTIAL_HEADERS.iter().find_map(|h| {
        let v = get(h)?.trim();
        let v = if *h == "authorization" {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))?
                .trim()
        } else {
            v
        };
        (!v.is_empty()).then_some(v)
    })
}

/// Whether a request from a loopback peer may be trusted as the local
/// operator (an open gateway's caller, the admin API without a token).
///
/// Not when a browser sent it for a page of another origin: a page can
/// POST a `text/plain` body to 127.0.0.1 without a CORS preflight
/// (`Sec-Fetch-Site`, `Origin`). And not when it names a host that is not
/// loopback: a page whose domain resolves to 127.0.0.1 (DNS rebinding), or
/// a reverse proxy on this machine forwarding other hosts' requests.
pub fn trusted_loopback<'a>(peer_loopback: bool, get: impl Fn(&str) -> Option<&'a str>) -> bool {
    if !peer_loopback {
        return false;
    }
    if let Some(site) = get("sec-fetch-site")
        && !matches!(site.trim(), "same-origin" | "none")
    {
        return false;
    }
    if let Some(origin) = get("origin")
        && !origin
            .split_once("://")
            .is_some_and(|(_, host)| loopback_host(host))
    {
        return false;
    }
    get("host").is_none_or(loopback_host)
}

/// `localhost`, `*.localhost`, `127.x.y.z` or `[::1]`, with any port.
fn loopback_host(host: &str) -> bool {
    let host = host.trim().trim_end_matches('/');
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(h, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                h
            } else {
                host
            }
        })
    };
    let name = name.to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

pub struct Auth {
    keys: Option<Keys>,
    jwt: Option<JwtVerifier>,
    policy: ArcSwap<AccessPolicy>,
    allow_unauthenticated: AtomicBool,
}

struct Keys {
    ring: Arc<Keyring>,
    store: Box<dyn KeyStore>,
}

impl Auth {
    /// Opens the key store (loading every key) and the JWKS, as configured.
    pub async fn start(
        config: &Config,
        nats: Option<async_nats::Client>,
        http: reqwest::Client,
        shutdown: CancellationToken,
    ) -> Result<Self, AuthError> {
        let k = &config.auth.keys;
        let kind = match k.store {
            KeyStoreKind::Auto if nats.is_some() && k.hash_secret.is_none() => {
                tracing::warn!(
                    "virtual keys are off: routers sharing keys need `auth.keys.hash_secret` (the same on every router)"
                );
                KeyStoreKind::Off
            }
            KeyStoreKind::Auto if nats.is_some() => KeyStoreKind::Jetstream,
            KeyStoreKind::Auto => KeyStoreKind::Local,
            other => other,
        };
        let keys = match kind {
            KeyStoreKind::Off => None,
            KeyStoreKind::Local | KeyStoreKind::Auto => {
                let path = k
                    .path
                    .clone()
                    .unwrap_or_else(|| switchyard_config::data_dir().join("keys.db"));
                let secret = match &k.hash_secret {
                    Some(s) => s.expose().to_owned(),
                    None => store::local_hash_secret(&path)?,
                };
                let ring = Arc::new(Keyring::new(
                    KeyHasher::new(secret.as_bytes()).map_err(AuthError::HashSecret)?,
                ));
                let store = LocalKeyStore::open(&path, &ring)?;
                Some(Keys {
                    ring,
                    store: Box::new(store),
                })
            }
            KeyStoreKind::Jetstream => {
                let client = nats.ok_or(KeyStoreError::NoBus)?;
                // `check` requires the secret with a shared store.
                let secret = k.hash_secret.as_ref().map(|s| s.expose()).unwrap_or("");
                let ring = Arc::new(Keyring::new(
                    KeyHasher::new(secret.as_bytes()).map_err(AuthError::HashSecret)?,
                ));
                let store =
                    JetStreamKeyStore::open(client, &k.bucket, k.replicas, ring.clone(), shutdown)
                        .await?;
                Some(Keys {
                    ring,
                    store: Box::new(store),
                })
            }
        };
        if let Some(keys) = &keys {
            tracing::info!(store = %keys.store.describe(), keys = keys.ring.list().len(), "virtual keys");
        }
        let jwt = match &config.auth.jwt {
            None => None,
            Some(j) => {
                let settings = JwtSettings {
                    issuer: j.issuer.clone(),
                    audiences: j.audiences.clone(),
                    jwks: match (&j.jwks_url, &j.jwks_file) {
                        (Some(url), _) => JwksSource::Url(url.clone()),
                        (None, Some(file)) => JwksSource::File(file.clone()),
                        (None, None) => return Err(AuthError::Jwt("no JWKS source".into())),
                    },
                    leeway: j.leeway,
                    user_claim: j.user_claim.clone(),
                    team_claim: j.team_claim.clone(),
                    role_claim: j.role_claim.clone(),
                    min_refresh_interval: j.min_refresh_interval,
                };
                Some(
                    JwtVerifier::new(settings, http)
                        .await
                        .map_err(|e| AuthError::Jwt(e.to_string()))?,
                )
            }
        };
        let auth = Self {
            keys,
            jwt,
            policy: ArcSwap::from_pointee(policy(config)),
            allow_unauthenticated: AtomicBool::new(config.auth.allow_unauthenticated),
        };
        if !auth.enforcing() {
            if config.auth.allow_unauthenticated {
                tracing::warn!(
                    "no API key exists and `auth.allow_unauthenticated` is set: every client is served without a credential"
                );
            } else {
                tracing::info!(
                    "no API key exists yet: serving loopback clients only; create one with `switchyard keys create --name NAME`"
                );
            }
        }
        Ok(auth)
    }

    /// `auth.access` and `auth.allow_unauthenticated` apply live.
    pub fn reload(&self, config: &Config) {
        self.policy.store(Arc::new(policy(config)));
        self.allow_unauthenticated
            .store(config.auth.allow_unauthenticated, Ordering::Relaxed);
    }

    /// Every request needs a credential: a key was issued, or JWTs are
    /// configured.
    pub fn enforcing(&self) -> bool {
        self.jwt.is_some() || self.keys.as_ref().is_some_and(|k| k.ring.in_use())
    }

    /// The caller of a request from `loopback` (or not) presenting
    /// `credential`: `None` for an anonymous caller of an open gateway.
    pub async fn authenticate(
        &self,
        credential: Option<&str>,
        loopback: bool,
    ) -> Result<Option<Arc<Principal>>, GatewayError> {
        let unauthenticated = |m: &str| GatewayError::Unauthenticated(m.to_owned());
        if let Some(token) = credential {
            if let Some(keys) = &self.keys
                && token.starts_with(KEY_PREFIX)
            {
                return match keys.ring.authenticate(token, switchyard_localdb::now_ms()) {
                    Ok(caller) => Ok(Some(caller)),
                    Err(e) => Err(GatewayError::Unauthenticated(e.to_string())),
                };
            }
            if let Some(jwt) = &self.jwt
                && looks_like_jwt(token)
            {
                return match jwt.verify(token).await {
                    Ok(id) => Ok(Some(Arc::new(Principal {
                        credential: Credential::Jwt {
                            subject: id.subject,
                        },
                        team: id.team,
                        user: id.user,
                        roles: id.roles,
                        models: Vec::new(),
                        limits: Default::default(),
                        // A per-key choice: tokens carry no such claim.
                        capture_payloads: false,
                    }))),
                    Err(e @ switchyard_auth::jwt::JwtError::Jwks { .. }) => {
                        tracing::warn!(error = %e, "a bearer token could not be checked");
                        Err(GatewayError::IdentityProviderUnavailable(e.to_string()))
                    }
                    Err(e) => Err(GatewayError::Unauthenticated(format!(
                        "the bearer token was refused: {e}"
                    ))),
                };
            }
            if self.enforcing() {
                return Err(unauthenticated("the API key is not valid"));
            }
            // An open gateway ignores what SDKs insist on sending
            // (`sk-anything`).
        } else if self.enforcing() {
            return Err(unauthenticated(
                "no API key given: send `Authorization: Bearer <key>` (or `x-api-key`)",
            ));
        }
        if loopback || self.allow_unauthenticated.load(Ordering::Relaxed) {
            Ok(None)
        } else {
            Err(unauthenticated(
                "this gateway has no API keys yet and serves loopback clients only; create a key with `switchyard keys create`, or set `auth.allow_unauthenticated`",
            ))
        }
    }

    /// The model access rules' say on `model` for `who`.
    pub fn check_model(&self, who: Option<&Principal>, model: &str) -> Result<(), GatewayError> {
        self.policy
            .load()
            .check(who, model)
            .map_err(|d| GatewayError::ModelForbidden {
                model: d.model,
                by: d.by,
            })
    }

    pub fn allows(&self, who: Option<&Principal>, model: &str) -> bool {
        self.policy.load().allows(who, model)
    }

    fn keys(&self) -> Result<&Keys, GatewayError> {
        self.keys
            .as_ref()
            .ok_or_else(|| GatewayError::InvalidRequest {
                message: "virtual keys are off (`auth.keys.store: off`)".into(),
                param: None,
            })
    }

    /// A new key: the key (shown once) and its record.
    pub async fn create_key(&self, new: NewKey) -> Result<(String, KeyRecord), GatewayError> {
        let keys = self.keys()?;
        let (key, record) = keys
            .ring
            .hasher()
            .issue(new, switchyard_localdb::now_ms())
            .map_err(|e| GatewayError::Internal(e.to_string()))?;
        keys.store
            .put(&record)
            .await
            .map_err(|e| GatewayError::Internal(e.to_string()))?;
        keys.ring.upsert(record.clone());
        Ok((key, record))
    }

    /// Revokes a key; `None` when there is no such key.
    pub async fn revoke_key(&self, id: &str) -> Result<Option<KeyRecord>, GatewayError> {
        let keys = self.keys()?;
        let Some(old) = keys.ring.get(id) else {
            return Ok(None);
        };
        if old.revoked_at.is_some() {
            return Ok(Some((*old).clone()));
        }
        let mut record = (*old).clone();
        record.revoked_at = Some(switchyard_localdb::now_ms());
        keys.store
            .put(&record)
            .await
            .map_err(|e| GatewayError::Internal(e.to_string()))?;
        keys.ring.upsert(record.clone());
        Ok(Some(record))
    }

    /// Moves whenever a key is made, changed or revoked (here, or on
    /// another router through the bucket).
    pub fn keys_generation(&self) -> u64 {
        self.keys.as_ref().map_or(0, |k| k.ring.generation())
    }

    pub fn list_keys(&self) -> Result<Vec<Arc<KeyRecord>>, GatewayError> {
        Ok(self.keys()?.ring.list())
    }

    pub fn get_key(&self, id: &str) -> Result<Option<Arc<KeyRecord>>, GatewayError> {
        Ok(self.keys()?.ring.get(id))
    }
}

fn policy(config: &Config) -> AccessPolicy {
    AccessPolicy {
        rules: config
            .auth
            .access
            .iter()
            .map(|r| AccessRule {
                name: r.name.clone(),
                teams: r.teams.clone(),
                roles: r.roles.clone(),
                users: r.users.clone(),
                keys: r.keys.clone(),
                models: r.models.clone(),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn only_same_origin_requests_naming_a_loopback_host_are_trusted() {
        let h = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
        };
        assert!(trusted_loopback(true, h(&[("host", "127.0.0.1:8080")])));
        assert!(trusted_loopback(true, h(&[("host", "localhost")])));
        assert!(trusted_loopback(true, h(&[("host", "[::1]:8080")])));
        assert!(trusted_loopback(true, h(&[])));
        assert!(trusted_loopback(
            true,
            h(&[
                ("host", "localhost:8080"),
                ("origin", "http://localhost:3000"),
                ("sec-fetch-site", "same-origin")
            ])
        ));
        assert!(!trusted_loopback(false, h(&[("host", "127.0.0.1")])));
        assert!(!trusted_loopback(true, h(&[("host", "evil.example")])));
        assert!(!trusted_loopback(
            true,
            h(&[("host", "127.0.0.1.evil.example")])
        ));
        assert!(!trusted_loopback(
            true,
            h(&[("host", "127.0.0.1"), ("sec-fetch-site", "cross-site")])
        ));
        assert!(!trusted_loopback(
            true,
            h(&[("host", "127.0.0.1"), ("sec-fetch-site", "same-site")])
        ));
        assert!(!trusted_loopback(
            true,
            h(&[("host", "127.0.0.1"), ("origin", "https://evil.example")])
        ));
        assert!(!trusted_loopback(
            true,
            h(&[("host", "127.0.0.1"), ("origin", "null")])
        ));
    }

    #[test]
    fn credentials_are_read_from_each_sdks_header() {
        let h = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
        };
        assert_eq!(
            credential(h(&[("authorization", "Bearer sk-1")])),
            Some("sk-1")
        );
        assert_eq!(credential(h(&[("x-api-key", "sk-2")])), Some("sk-2"));
        assert_eq!(credential(h(&[("api-key", " sk-3 ")])), Some("sk-3"));
        assert_eq!(credential(h(&[("authorization", "Basic abc")])), None);
        assert_eq!(credential(h(&[("authorization", "Bearer  ")])), None);
        assert_eq!(credential(h(&[])), None);
    }
}
