//! Virtual keys: `sk-sy-<id>-<secret>`, shown once when made and kept only
//! as an HMAC-SHA256 of the whole key under the deployment's hash secret.
//!
//! A keyed hash rather than argon2: the keys are 190 random bits, so
//! nothing is gained by slowing a guess down, and every request checks one
//! (a microsecond, not 50 ms). The hash secret means a copy of the key
//! table alone (a backup, a bucket dump) does not let anyone test guesses.
//! The `id` part finds the record without comparing hashes across keys;
//! the hash is then checked in constant time ([`ring::hmac::verify`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

use crate::access::Principal;

/// Every virtual key starts with this, so secret scanners (and our own
/// guardrails) can recognise one.
pub const KEY_PREFIX: &str = "sk-sy-";
const ID_LEN: usize = 12;
const SECRET_LEN: usize = 32;
const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// What a key may do besides reaching models; absent: no limit of its own.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyLimits {
    /// Requests per minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpm: Option<u64>,
    /// Tokens (prompt + completion) per minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<u64>,
    /// Largest request body, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_body_bytes: Option<u64>,
    /// Most messages (or input items) in one request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_messages: Option<u32>,
    /// Ceiling on `max_tokens`: a request asking more is refused, one
    /// asking nothing gets this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Spend this key may make in a calendar window; refused (429
    /// `budget_exceeded`) once spent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<KeyBudget>,
}

/// A key's own budget.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyBudget {
    /// US dollars, a decimal string (`"25"`, `"12.50"`): exact, like
    /// every amount the gateway keeps.
    pub limit_usd: String,
    pub window: BudgetWindow,
}

/// The calendar windows budgets count in (the time zone is
/// `budgets.time_zone`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BudgetWindow {
    Daily,
    Weekly,
    Monthly,
}

/// One key as stored: everything but the key itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub id: String,
    /// Hex HMAC-SHA256 of the whole key under the hash secret.
    pub hash: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// Model name patterns (`*` matches any run of characters) this key may
    /// ask for; empty: any model its team and roles allow.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<String>,
    #[serde(default)]
    pub limits: KeyLimits,
    /// Unix milliseconds.
    pub created_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<i64>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    /// The audit trail keeps this key's prompts and answers (after the
    /// guardrails redacted them), not only who, when and what it cost.
    /// Off unless asked for: payloads are the sensitive part.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub capture_payloads: bool,
}

impl KeyRecord {
    /// The record as the admin API shows it: no hash.
    pub fn public(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.remove("hash");
            o.insert("active".into(), self.revoked_at.is_none().into());
        }
        v
    }
}

/// What a new key carries (the admin API's request body).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    pub name: String,
    #[serde(default)]
    pub team: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub models: Vec<String>,
    #[serde(default)]
    pub limits: KeyLimits,
    /// Unix milliseconds.
    #[serde(default)]
    pub expires_at: Option<i64>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// See [`KeyRecord::capture_payloads`].
    #[serde(default)]
    pub capture_payloads: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    /// Not a key we issued, or not one that exists: one answer for both,
    /// so a caller learns nothing from trying.
    #[error("the API key is not valid")]
    Invalid,
    #[error("the API key `{name}` was revoked")]
    Revoked { name: String },
    #[error("the API key `{name}` expired")]
    Expired { name: String },
    #[error("cannot draw random bytes for a key")]
    Random,
    #[error("the key hash secret must be at least 32 bytes")]
    WeakSecret,
}

/// Hashes and checks keys under the deployment's hash secret.
pub struct KeyHasher {
    key: hmac::Key,
}

impl KeyHasher {
    pub fn new(secret: &[u8]) -> Result<Self, KeyError> {
        if secret.len() < 32 {
            return Err(KeyError::WeakSecret);
        }
        Ok(Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
        })
    }

    pub fn hash(&self, key: &str) -> String {
        hex(hmac::sign(&self.key, key.as_bytes()).as_ref())
    }

    fn verify(&self, key: &str, hash: &str) -> bool {
        unhex(hash).is_some_and(|tag| hmac::verify(&self.key, key.as_bytes(), &tag).is_ok())
    }

    /// A new key and its record (the key is returned once and never kept).
    pub fn issue(&self, new: NewKey, now_ms: i64) -> Result<(String, KeyRecord), KeyError> {
        let id = random_string(ID_LEN)?;
        let secret = random_string(SECRET_LEN)?;
        let key = format!("{KEY_PREFIX}{id}-{secret}");
        let record = KeyRecord {
            hash: self.hash(&key),
            id,
            name: new.name,
            team: new.team,
            user: new.user,
            roles: new.roles,
            models: new.models,
            limits: new.limits,
            created_at: now_ms,
            expires_at: new.expires_at,
            revoked_at: None,
            metadata: new.metadata,
            capture_payloads: new.capture_payloads,
        };
        Ok((key, record))
    }
}

/// 32 random bytes, hex: a hash secret for a new deployment.
pub fn random_secret() -> Result<String, KeyError> {
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| KeyError::Random)?;
    Ok(hex(&bytes))
}

fn random_string(len: usize) -> Result<String, KeyError> {
    let rng = SystemRandom::new();
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    while out.len() < len {
        rng.fill(&mut buf).map_err(|_| KeyError::Random)?;
        // Rejection sampling keeps every character equally likely.
        for b in buf {
            if usize::from(b) < ALPHABET.len() * 4 && out.len() < len {
                out.push(char::from(ALPHABET[usize::from(b) % ALPHABET.len()]));
            }
        }
    }
    Ok(out)
}

/// The id part of a key, when it has our shape.
pub fn key_id(key: &str) -> Option<&str> {
    let rest = key.strip_prefix(KEY_PREFIX)?;
    let (id, secret) = rest.split_once('-')?;
    (id.len() == ID_LEN
        && secret.len() == SECRET_LEN
        && rest.bytes().all(|b| b == b'-' || b.is_ascii_alphanumeric()))
    .then_some(id)
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// A record and the caller it authenticates as, made once per record
/// rather than on every request.
struct Held {
    record: Arc<KeyRecord>,
    principal: Arc<Principal>,
}

/// Every key this router knows, by id: loaded from the key store at start
/// and kept current by its updates (a revocation is one update).
pub struct Keyring {
    hasher: KeyHasher,
    keys: RwLock<HashMap<String, Held>>,
    generation: AtomicU64,
}

impl Keyring {
    pub fn new(hasher: KeyHasher) -> Self {
        Self {
            hasher,
            keys: RwLock::new(HashMap::new()),
            generation: AtomicU64::new(0),
        }
    }

    pub fn hasher(&self) -> &KeyHasher {
        &self.hasher
    }

    /// Adds or replaces a record (a new key, a revocation, an edit).
    pub fn upsert(&self, record: KeyRecord) {
        self.keys
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                record.id.clone(),
                Held {
                    principal: Arc::new(Principal::from_key(&record)),
                    record: Arc::new(record),
                },
            );
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Changes with every upsert: what is derived from the keys (their
    /// budgets) is rebuilt when it moved.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn get(&self, id: &str) -> Option<Arc<KeyRecord>> {
        self.keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .map(|h| h.record.clone())
    }

    /// Every record, revoked ones included, oldest first.
    pub fn list(&self) -> Vec<Arc<KeyRecord>> {
        let mut all: Vec<_> = self
            .keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .map(|h| h.record.clone())
            .collect();
        all.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        all
    }

    /// True once any key was ever issued (revoked ones count): from then on
    /// the gateway asks every caller for a key, and revoking the last one
    /// does not open it again.
    pub fn in_use(&self) -> bool {
        !self
            .keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty()
    }

    /// The caller a presented key authenticates as, if it is one we issued
    /// and it is still good at `now_ms`.
    pub fn authenticate(&self, key: &str, now_ms: i64) -> Result<Arc<Principal>, KeyError> {
        let id = key_id(key).ok_or(KeyError::Invalid)?;
        let (record, principal) = {
            let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner);
            let held = keys.get(id).ok_or(KeyError::Invalid)?;
            (held.record.clone(), held.principal.clone())
        };
        if !self.hasher.verify(key, &record.hash) {
            return Err(KeyError::Invalid);
        }
        if record.revoked_at.is_some() {
            return Err(KeyError::Revoked {
                name: record.name.clone(),
            });
        }
        if record.expires_at.is_some_and(|t| t <= now_ms) {
            return Err(KeyError::Expired {
                name: record.name.clone(),
            });
        }
        Ok(principal)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn ring() -> Keyring {
        Keyring::new(KeyHasher::new(&[7u8; 32]).unwrap())
    }

    fn new_key(name: &str) -> NewKey {
        NewKey {
            name: name.into(),
            ..NewKey::default()
        }
    }

    #[test]
    fn issued_keys_authenticate_and_only_their_hash_is_kept() {
        let ring = ring();
        let (key, record) = ring.hasher().issue(new_key("ci"), 1_000).unwrap();
        assert!(key.starts_with(KEY_PREFIX));
        assert_eq!(key.len(), KEY_PREFIX.len() + ID_LEN + 1 + SECRET_LEN);
        assert_eq!(key_id(&key), Some(record.id.as_str()));
        let stored = serde_json::to_string(&record).unwrap();
        assert!(!stored.contains(&key[KEY_PREFIX.len() + ID_LEN + 1..]));
        assert!(!record.public().to_string().contains(&record.hash));
        ring.upsert(record.clone());
        let caller = ring.authenticate(&key, 2_000).unwrap();
        assert!(
            matches!(&caller.credential, crate::Credential::Key { name, .. } if name == "ci"),
            "{caller:?}"
        );
    }

    #[test]
    fn wrong_unknown_and_malformed_keys_get_one_answer() {
        let ring = ring();
        let (key, record) = ring.hasher().issue(new_key("ci"), 0).unwrap();
        ring.upsert(record);
        let mut wrong = key.clone();
        let last = wrong.pop().unwrap();
        wrong.push(if last == 'a' { 'b' } else { 'a' });
        let (other, _) = ring.hasher().issue(new_key("never stored"), 0).unwrap();
        for k in [
            wrong.as_str(),
            other.as_str(),
            "sk-sy-short",
            "",
            "Bearer x",
        ] {
            assert_eq!(
                ring.authenticate(k, 0).unwrap_err(),
                KeyError::Invalid,
                "{k}"
            );
        }
        // Another deployment's hash secret: its keys are not ours.
        let theirs = Keyring::new(KeyHasher::new(&[8u8; 32]).unwrap());
        let (k2, r2) = theirs.hasher().issue(new_key("x"), 0).unwrap();
        ring.upsert(r2);
        assert_eq!(ring.authenticate(&k2, 0).unwrap_err(), KeyError::Invalid);
    }

    #[test]
    fn revoked_and_expired_keys_are_refused_by_name() {
        let ring = ring();
        let (key, mut record) = ring
            .hasher()
            .issue(
                NewKey {
                    expires_at: Some(5_000),
                    ..new_key("temp")
                },
                0,
            )
            .unwrap();
        ring.upsert(record.clone());
        assert!(ring.authenticate(&key, 4_999).is_ok());
        assert_eq!(
            ring.authenticate(&key, 5_000).unwrap_err(),
            KeyError::Expired {
                name: "temp".into()
            }
        );
        record.revoked_at = Some(1);
        ring.upsert(record);
        assert_eq!(
            ring.authenticate(&key, 10).unwrap_err(),
            KeyError::Revoked {
                name: "temp".into()
            }
        );
        assert!(ring.in_use());
    }

    #[test]
    fn weak_hash_secrets_are_refused() {
        assert_eq!(
            KeyHasher::new(b"short").err().map(|e| e.to_string()),
            Some(KeyError::WeakSecret.to_string())
        );
        assert_eq!(random_secret().unwrap().len(), 64);
    }
}
