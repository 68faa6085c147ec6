//! Bearer JWTs from a team's identity provider (OIDC).
//!
//! The provider publishes its public signing keys as a JWKS, at a URL or
//! in a file the operator keeps current. Keys are loaded once at start
//! and again only when a token names a key id we have not seen, which is
//! how providers roll keys: they publish the new key before signing with
//! it. That refetch is rate limited and serialised, because the key id
//! comes from an unauthenticated header and anyone can make one up.
//!
//! Only asymmetric keys are trusted (RSA, EC P-256/P-384, Ed25519): a
//! JWKS is public, so an HMAC "key" in it, or an `alg: HS256` token
//! checked against a public key, would let anyone mint tokens.

use std::fmt;
use std::io::Read as _;
use std::path::PathBuf;
use std::str::FromStr as _;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, KeyOperations, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};
use serde::Deserialize;
use serde_json::{Map, Value};
use tokio::time::Instant;

/// A JWKS is a handful of keys; anything bigger is a wrong URL or an
/// attack, and reading it all would only cost memory.
const MAX_JWKS_BYTES: u64 = 1024 * 1024;

/// A hung JWKS endpoint must not hold the refresh lock (and with it every
/// token signed by a new key) for as long as the shared client allows.
const JWKS_FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Header values come from unauthenticated input and end up in errors and
/// logs; a cap keeps a hostile header from flooding them.
const MAX_ECHOED_CHARS: usize = 64;

/// Clock skew is seconds to minutes; more is a misconfiguration.
const MAX_LEEWAY: Duration = Duration::from_secs(3600);

/// Where the provider's signing keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// The provider's `jwks_uri`, fetched with the shared HTTP client.
    Url(String),
    /// A JWKS file; replacing the file rotates the keys (it is re-read on
    /// an unknown key id, like the URL is refetched).
    File(PathBuf),
}

impl JwksSource {
    /// How the source is named in errors and logs: URL credentials, if
    /// someone put them there, stay out.
    fn describe(&self) -> String {
        match self {
            Self::Url(url) => match reqwest::Url::parse(url) {
                Ok(mut parsed) => {
                    let _ = parsed.set_password(None);
                    let _ = parsed.set_username("");
                    parsed.to_string()
                }
                Err(_) => url.clone(),
            },
            Self::File(path) => path.display().to_string(),
        }
    }
}

/// How tokens of one identity provider are checked and mapped.
#[derive(Debug, Clone)]
pub struct JwtSettings {
    /// The exact `iss` the provider puts in its tokens.
    pub issuer: String,
    /// The token's `aud` must contain at least one of these.
    pub audiences: Vec<String>,
    pub jwks: JwksSource,
    /// Clock skew tolerated on `exp` and `nbf` (whole seconds are used).
    pub leeway: Duration,
    /// Claim naming the user; dotted paths reach into nested objects.
    pub user_claim: String,
    /// Claim naming the team, if the provider sends one.
    pub team_claim: Option<String>,
    /// Claim holding the role or roles (a string or an array of strings).
    pub role_claim: Option<String>,
    /// The JWKS is refetched on an unknown key id at most this often, so
    /// made-up key ids cannot turn the gateway into a load generator
    /// against the provider. The initial load counts as a fetch.
    pub min_refresh_interval: Duration,
}

impl JwtSettings {
    /// Settings with the usual defaults: 60 s leeway, the user is `sub`,
    /// no team or role claim, refetch at most every 30 s.
    pub fn new(issuer: impl Into<String>, audiences: Vec<String>, jwks: JwksSource) -> Self {
        Self {
            issuer: issuer.into(),
            audiences,
            jwks,
            leeway: Duration::from_secs(60),
            user_claim: "sub".to_owned(),
            team_claim: None,
            role_claim: None,
            min_refresh_interval: Duration::from_secs(30),
        }
    }
}

/// Who a verified token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtIdentity {
    /// The `sub` claim: stable, unlike the user claim which may be an
    /// e-mail address that changes.
    pub subject: String,
    pub user: Option<String>,
    pub team: Option<String>,
    pub roles: Vec<String>,
    /// The token's `exp`, in unix seconds, so callers can cache the
    /// result no longer than the token lives.
    pub expires_at: u64,
}

/// Why a token was refused. No variant carries the token itself, so
/// errors can be logged and returned as they are.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("the bearer token is not a well-formed JWT")]
    Malformed,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token was issued by an unexpected issuer")]
    WrongIssuer,
    #[error("the token is not meant for this audience")]
    WrongAudience,
    #[error(
        "no signing key {} in the identity provider's key set",
        .kid.as_deref().map_or_else(|| "(token has no kid, key set has several keys)".to_owned(), |kid| format!("`{kid}`"))
    )]
    UnknownKey { kid: Option<String> },
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("unsupported or disallowed token algorithm: {0}")]
    UnsupportedAlgorithm(String),
    #[error("the token lacks the `{0}` claim")]
    MissingClaim(String),
    #[error("the token's `{0}` claim is not a string (or array of strings)")]
    InvalidClaim(String),
    #[error("cannot load the JWKS from {origin}: {message}")]
    Jwks { origin: String, message: String },
    #[error("invalid JWT settings: {0}")]
    InvalidSettings(String),
}

/// Checks bearer JWTs against the provider's current keys. Shared by all
/// request tasks (it is `Send + Sync`); cloning is not needed, wrap it in
/// an `Arc`.
pub struct JwtVerifier {
    settings: JwtSettings,
    http: reqwest::Client,
    /// Read on every request, replaced on refresh: readers clone the
    /// `Arc` and drop the lock at once. Shared with the refresh task.
    keys: Arc<RwLock<Arc<KeySet>>>,
    /// When the JWKS was last fetched (successfully or not). Held across
    /// the fetch so concurrent unknown-kid tokens wait for one refresh
    /// instead of each starting their own.
    last_fetch: Arc<tokio::sync::Mutex<Instant>>,
    /// Issuer, audience, leeway and required claims; only the algorithm
    /// differs per token.
    base_validation: Validation,
}

impl fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("issuer", &self.settings.issuer)
            .field("jwks", &self.settings.jwks.describe())
            .field("keys", &self.current_keys().keys.len())
            .finish_non_exhaustive()
    }
}

impl JwtVerifier {
    /// Loads the JWKS once, so a wrong URL or file fails at start rather
    /// than on the first request.
    pub async fn new(settings: JwtSettings, http: reqwest::Client) -> Result<Self, JwtError> {
        if settings.issuer.is_empty() {
            return Err(JwtError::InvalidSettings("the issuer is empty".to_owned()));
        }
        if settings.audiences.is_empty() {
            // jsonwebtoken would refuse every token; say so up front.
            return Err(JwtError::InvalidSettings(
                "no audience is configured".to_owned(),
            ));
        }
        if settings.leeway > MAX_LEEWAY {
            // Beyond sanity, and jsonwebtoken's `now - leeway` must not
            // underflow.
            return Err(JwtError::InvalidSettings(format!(
                "a leeway over {} s would accept long-expired tokens",
                MAX_LEEWAY.as_secs()
            )));
        }
        if settings.user_claim.is_empty() {
            return Err(JwtError::InvalidSettings(
                "the user claim is empty".to_owned(),
            ));
        }
        let keys = load_jwks(&settings.jwks, &http).await?;
        tracing::info!(
            jwks = %settings.jwks.describe(),
            keys = keys.keys.len(),
            "loaded the identity provider's signing keys"
        );

        let mut base_validation = Validation::new(Algorithm::RS256);
        base_validation.leeway = settings.leeway.as_secs();
        base_validation.validate_exp = true;
        base_validation.validate_nbf = true;
        base_validation.validate_aud = true;
        base_validation.set_issuer(&[settings.issuer.as_str()]);
        base_validation.set_audience(&settings.audiences);
        // Without these jsonwebtoken skips the check when the claim is
        // absent: a token with no `aud` would be good for every service.
        base_validation.set_required_spec_claims(&["exp", "iss", "aud"]);

        Ok(Self {
            settings,
            http,
            keys: Arc::new(RwLock::new(Arc::new(keys))),
            last_fetch: Arc::new(tokio::sync::Mutex::new(Instant::now())),
            base_validation,
        })
    }

    /// Checks signature, `exp`, `nbf`, `iss` and `aud`, then maps the
    /// claims. A token naming an unknown key id triggers (at most) one
    /// JWKS refresh before it is refused.
    pub async fn verify(&self, token: &str) -> Result<JwtIdentity, JwtError> {
        let header = parse_header(token).ok_or(JwtError::Malformed)?;
        if header.crit.is_some() {
            // RFC 7515 §4.1.11: extensions we do not understand must not
            // be ignored, and we understand none.
            return Err(JwtError::Malformed);
        }
        let alg = allowed_algorithm(&header.alg)?;
        let kid = header.kid.as_deref();

        let mut keys = self.current_keys();
        if kid.is_some() && keys.select(kid, alg).is_none() {
            keys = self.refresh(&keys).await?;
        }
        let entry = keys
            .select(kid, alg)
            .ok_or_else(|| JwtError::UnknownKey { kid: kid.map(echo) })?;
        if !entry.algorithms.contains(&alg) {
            return Err(JwtError::UnsupportedAlgorithm(format!(
                "{alg:?} with a key for {:?}",
                entry.algorithms
            )));
        }

        let mut validation = self.base_validation.clone();
        validation.algorithms = vec![alg];
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &entry.key, &validation)
            .map_err(|e| map_decode_error(e.into_kind()))?;
        self.identity(&data.claims)
    }

    fn current_keys(&self) -> Arc<KeySet> {
        Arc::clone(&self.keys.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Refetches the JWKS unless someone else did while we waited for the
    /// lock, or the last fetch is too recent. Returns the key set to use.
    async fn refresh(&self, seen: &Arc<KeySet>) -> Result<Arc<KeySet>, JwtError> {
        let mut last_fetch = Arc::clone(&self.last_fetch).lock_owned().await;
        let current = self.current_keys();
        if !Arc::ptr_eq(&current, seen) {
            return Ok(current);
        }
        if last_fetch.elapsed() < self.settings.min_refresh_interval {
            tracing::debug!(
                jwks = %self.settings.jwks.describe(),
                "unknown key id, but the JWKS was fetched too recently to fetch again"
            );
            return Ok(current);
        }
        // Counted before the fetch: a failing provider is retried no more
        // often than a healthy one.
        *last_fetch = Instant::now();

        // Spawned, with the lock moved in, so a caller that gives up (the
        // client disconnected) does not abort a fetch the rate limit has
        // already counted; waiters still see exactly one refresh.
        let source = self.settings.jwks.clone();
        let http = self.http.clone();
        let keys = Arc::clone(&self.keys);
        let fetch = tokio::spawn(async move {
            let _refreshing = last_fetch;
            match load_jwks(&source, &http).await {
                Ok(fresh) => {
                    tracing::info!(
                        jwks = %source.describe(),
                        keys = fresh.keys.len(),
                        "refreshed the identity provider's signing keys"
                    );
                    let fresh = Arc::new(fresh);
                    *keys.write().unwrap_or_else(PoisonError::into_inner) = Arc::clone(&fresh);
                    Ok(fresh)
                }
                Err(error) => {
                    // The old keys stay in use; only tokens needing a new
                    // key fail until the provider is back.
                    tracing::warn!(%error, "cannot refresh the identity provider's signing keys");
                    Err(error)
                }
            }
        });
        fetch.await.map_err(|e| JwtError::Jwks {
            origin: self.settings.jwks.describe(),
            message: format!("the refresh task failed: {e}"),
        })?
    }

    fn identity(&self, claims: &Map<String, Value>) -> Result<JwtIdentity, JwtError> {
        let subject = match claims.get("sub") {
            Some(Value::String(sub)) if !sub.is_empty() => sub.clone(),
            Some(Value::String(_)) | Some(Value::Null) | None => {
                return Err(JwtError::MissingClaim("sub".to_owned()));
            }
            Some(_) => return Err(JwtError::InvalidClaim("sub".to_owned())),
        };
        let user = string_claim(claims, &self.settings.user_claim)?;
        let team = match &self.settings.team_claim {
            Some(path) => string_claim(claims, path)?,
            None => None,
        };
        let roles = match &self.settings.role_claim {
            Some(path) => roles_claim(claims, path)?,
            None => Vec::new(),
        };
        let expires_at = match claims.get("exp") {
            Some(Value::Number(n)) => n
                .as_u64()
                .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
                .ok_or_else(|| JwtError::InvalidClaim("exp".to_owned()))?,
            _ => return Err(JwtError::MissingClaim("exp".to_owned())),
        };
        Ok(JwtIdentity {
            subject,
            user,
            team,
            roles,
            expires_at,
        })
    }
}

/// Cheap check used to tell a JWT from a virtual key before choosing a
/// verifier: three base64url segments whose first is a JSON object with
/// an `alg`. No signature or claim is looked at. An empty signature is
/// allowed so `alg: none` tokens are recognised, and refused, as JWTs.
pub fn looks_like_jwt(token: &str) -> bool {
    let mut parts = token.split('.');
    let (Some(_), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    !payload.is_empty()
        && payload.bytes().all(is_base64url)
        && signature.bytes().all(is_base64url)
        && parse_header(token).is_some()
}

/// The header fields we act on before any key is chosen.
#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    crit: Option<Value>,
}

/// Read by hand rather than with `jsonwebtoken::decode_header`, which
/// cannot represent `alg: none` or unknown algorithms and would report
/// them as malformed instead of disallowed.
fn parse_header(token: &str) -> Option<RawHeader> {
    let (encoded, rest) = token.split_once('.')?;
    if encoded.is_empty() || !rest.contains('.') {
        return None;
    }
    let json = base64url_decode(encoded)?;
    serde_json::from_slice(&json).ok()
}

/// Public-key algorithms only: `none` and HMAC would let anyone who can
/// read the JWKS forge tokens.
fn allowed_algorithm(alg: &str) -> Result<Algorithm, JwtError> {
    match Algorithm::from_str(alg) {
        Ok(Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) | Err(_) => {
            Err(JwtError::UnsupportedAlgorithm(echo(alg)))
        }
        Ok(alg) => Ok(alg),
    }
}

fn map_decode_error(kind: ErrorKind) -> JwtError {
    match kind {
        ErrorKind::ExpiredSignature => JwtError::Expired,
        ErrorKind::ImmatureSignature => JwtError::NotYetValid,
        ErrorKind::InvalidIssuer => JwtError::WrongIssuer,
        ErrorKind::InvalidAudience => JwtError::WrongAudience,
        ErrorKind::MissingRequiredClaim(claim) => JwtError::MissingClaim(claim),
        ErrorKind::InvalidAlgorithm
        | ErrorKind::MissingAlgorithm
        | ErrorKind::InvalidAlgorithmName => JwtError::UnsupportedAlgorithm(
            "the key does not allow the token's algorithm".to_owned(),
        ),
        // A key that ring rejects (bad point, short modulus) cannot have
        // signed the token either.
        ErrorKind::InvalidSignature
        | ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidKeyFormat
        | ErrorKind::Crypto(_) => JwtError::BadSignature,
        _ => JwtError::Malformed,
    }
}

/// Looks the claim up by its full name first, then as a dotted path:
/// namespaced claims such as `https://example.com/roles` contain dots
/// and live at the top level.
fn claim_at<'a>(claims: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    let found = match claims.get(path) {
        Some(value) => Some(value),
        None => {
            let mut segments = path.split('.');
            let first = claims.get(segments.next()?)?;
            segments.try_fold(first, |value, segment| value.as_object()?.get(segment))
        }
    };
    found.filter(|value| !value.is_null())
}

/// Absent is fine (not every token carries a team); present with the
/// wrong type is an error, since it means the mapping is misconfigured.
fn string_claim(claims: &Map<String, Value>, path: &str) -> Result<Option<String>, JwtError> {
    match claim_at(claims, path) {
        None => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        // Some providers use numeric ids for groups or users.
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(JwtError::InvalidClaim(path.to_owned())),
    }
}

fn roles_claim(claims: &Map<String, Value>, path: &str) -> Result<Vec<String>, JwtError> {
    match claim_at(claims, path) {
        None => Ok(Vec::new()),
        Some(Value::String(role)) => Ok(vec![role.clone()]),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::String(role) => Ok(role.clone()),
                _ => Err(JwtError::InvalidClaim(path.to_owned())),
            })
            .collect(),
        Some(_) => Err(JwtError::InvalidClaim(path.to_owned())),
    }
}

/// The usable keys of one JWKS.
struct KeySet {
    keys: Vec<KeyEntry>,
}

struct KeyEntry {
    kid: Option<String>,
    key: DecodingKey,
    /// What this key may verify: pinned by the JWK's `alg` or curve, so a
    /// token cannot pick a weaker or different scheme for the same key.
    algorithms: Vec<Algorithm>,
}

impl KeySet {
    /// A token without `kid` is matched only when there is no choice to
    /// make; guessing among several keys would hide misconfiguration.
    fn select(&self, kid: Option<&str>, alg: Algorithm) -> Option<&KeyEntry> {
        match kid {
            Some(kid) => {
                let mut named = self.keys.iter().filter(|k| k.kid.as_deref() == Some(kid));
                // The same kid may appear once per key type.
                named
                    .clone()
                    .find(|k| k.algorithms.contains(&alg))
                    .or_else(|| named.next())
            }
            None if self.keys.len() == 1 => self.keys.first(),
            None => None,
        }
    }
}

async fn load_jwks(source: &JwksSource, http: &reqwest::Client) -> Result<KeySet, JwtError> {
    let bytes = match source {
        JwksSource::Url(url) => fetch_url(http, url).await,
        JwksSource::File(path) => {
            let path = path.clone();
            tokio::task::spawn_blocking(move || read_file(&path))
                .await
                .map_err(|e| e.to_string())
                .and_then(|read| read)
        }
    };
    let error = |message: String| JwtError::Jwks {
        origin: source.describe(),
        message,
    };
    let keys = parse_jwks(&bytes.map_err(error)?).map_err(error)?;
    if keys.keys.is_empty() {
        return Err(error(
            "no usable signing key (RSA, EC P-256/P-384 or Ed25519)".to_owned(),
        ));
    }
    Ok(keys)
}

async fn fetch_url(http: &reqwest::Client, url: &str) -> Result<Vec<u8>, String> {
    let mut response = http
        .get(url)
        .header(reqwest::header::ACCEPT, "application/json")
        .timeout(JWKS_FETCH_TIMEOUT)
        .send()
        .await
        .map_err(|e| e.without_url().to_string())?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("HTTP status {status}"));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| e.without_url().to_string())?
    {
        if (body.len() + chunk.len()) as u64 > MAX_JWKS_BYTES {
            return Err(format!("larger than {MAX_JWKS_BYTES} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn read_file(path: &std::path::Path) -> Result<Vec<u8>, String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut body = Vec::new();
    file.take(MAX_JWKS_BYTES + 1)
        .read_to_end(&mut body)
        .map_err(|e| e.to_string())?;
    if body.len() as u64 > MAX_JWKS_BYTES {
        return Err(format!("larger than {MAX_JWKS_BYTES} bytes"));
    }
    Ok(body)
}

/// Keys we cannot or must not use (encryption keys, HMAC secrets, curves
/// ring lacks, JWK shapes jsonwebtoken does not know) are skipped, not
/// fatal: providers publish such keys next to the signing ones.
fn parse_jwks(bytes: &[u8]) -> Result<KeySet, String> {
    #[derive(Deserialize)]
    struct RawSet {
        keys: Vec<Value>,
    }
    let raw: RawSet = serde_json::from_slice(bytes).map_err(|e| format!("not a JWKS: {e}"))?;
    let mut keys = Vec::with_capacity(raw.keys.len());
    for value in raw.keys {
        let jwk = match serde_json::from_value::<Jwk>(value) {
            Ok(jwk) => jwk,
            Err(e) => {
                tracing::debug!(error = %e, "skipping a JWK that cannot be read");
                continue;
            }
        };
        match key_entry(&jwk) {
            Ok(entry) => keys.push(entry),
            Err(reason) => {
                tracing::debug!(kid = ?jwk.common.key_id, reason, "skipping a JWK");
            }
        }
    }
    Ok(KeySet { keys })
}

fn key_entry(jwk: &Jwk) -> Result<KeyEntry, &'static str> {
    if jwk.common.public_key_use == Some(PublicKeyUse::Encryption) {
        return Err("an encryption key");
    }
    if let Some(ops) = &jwk.common.key_operations
        && !ops.contains(&KeyOperations::Verify)
    {
        return Err("key_ops does not include verify");
    }
    let declared = match jwk.common.key_algorithm {
        None => None,
        Some(alg) => Some(signing_algorithm(alg).ok_or("not a public-key signing algorithm")?),
    };
    let (key, algorithms) = match &jwk.algorithm {
        AlgorithmParameters::RSA(params) => {
            let key = DecodingKey::from_rsa_components(&params.n, &params.e)
                .map_err(|_| "bad RSA components")?;
            let all = vec![
                Algorithm::RS256,
                Algorithm::RS384,
                Algorithm::RS512,
                Algorithm::PS256,
                Algorithm::PS384,
                Algorithm::PS512,
            ];
            match declared {
                None => (key, all),
                Some(alg) if all.contains(&alg) => (key, vec![alg]),
                Some(_) => return Err("alg does not fit an RSA key"),
            }
        }
        AlgorithmParameters::EllipticCurve(params) => {
            let alg = match params.curve {
                EllipticCurve::P256 => Algorithm::ES256,
                EllipticCurve::P384 => Algorithm::ES384,
                _ => return Err("unsupported EC curve"),
            };
            if declared.is_some_and(|d| d != alg) {
                return Err("alg does not fit the EC curve");
            }
            let key = DecodingKey::from_ec_components(&params.x, &params.y)
                .map_err(|_| "bad EC coordinates")?;
            (key, vec![alg])
        }
        AlgorithmParameters::OctetKeyPair(params) => {
            if params.curve != EllipticCurve::Ed25519 {
                return Err("unsupported OKP curve");
            }
            if declared.is_some_and(|d| d != Algorithm::EdDSA) {
                return Err("alg does not fit an Ed25519 key");
            }
            let key = DecodingKey::from_ed_components(&params.x).map_err(|_| "bad Ed25519 key")?;
            (key, vec![Algorithm::EdDSA])
        }
        AlgorithmParameters::OctetKey(_) => return Err("a symmetric key"),
    };
    Ok(KeyEntry {
        kid: jwk.common.key_id.clone(),
        key,
        algorithms,
    })
}

fn signing_algorithm(alg: KeyAlgorithm) -> Option<Algorithm> {
    Some(match alg {
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        KeyAlgorithm::HS256
        | KeyAlgorithm::HS384
        | KeyAlgorithm::HS512
        | KeyAlgorithm::RSA1_5
        | KeyAlgorithm::RSA_OAEP
        | KeyAlgorithm::RSA_OAEP_256 => return None,
    })
}

/// A header value fit for an error message: short and printable.
fn echo(value: &str) -> String {
    value
        .chars()
        .take(MAX_ECHOED_CHARS)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

fn is_base64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// Unpadded base64url, as JWS uses. Written out because the crate has no
/// base64 dependency of its own and this is the only place needing one.
fn base64url_decode(input: &str) -> Option<Vec<u8>> {
    if input.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(input.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits: u32 = 0;
    for b in input.bytes() {
        let sextet = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(sextet);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn base64url_round_trips_known_vectors() {
        assert_eq!(base64url_decode("").unwrap(), b"");
        assert_eq!(base64url_decode("Zg").unwrap(), b"f");
        assert_eq!(base64url_decode("Zm8").unwrap(), b"fo");
        assert_eq!(base64url_decode("Zm9v").unwrap(), b"foo");
        assert_eq!(base64url_decode("Zm9vYmFy").unwrap(), b"foobar");
        assert_eq!(base64url_decode("-_8").unwrap(), [0xfb, 0xff]);
        assert!(base64url_decode("Zm9v=").is_none());
        assert!(base64url_decode("Z").is_none());
        assert!(base64url_decode("Zm+v").is_none());
    }

    #[test]
    fn claims_resolve_literal_names_before_dotted_paths() {
        let claims: Map<String, Value> = serde_json::from_value(serde_json::json!({
            "https://example.com/team": "literal",
            "realm_access": { "roles": ["a", "b"], "nested": { "deep": 7 } },
            "empty": null,
        }))
        .unwrap();
        assert_eq!(
            string_claim(&claims, "https://example.com/team")
                .unwrap()
                .as_deref(),
            Some("literal")
        );
        assert_eq!(
            roles_claim(&claims, "realm_access.roles").unwrap(),
            ["a", "b"]
        );
        assert_eq!(
            string_claim(&claims, "realm_access.nested.deep")
                .unwrap()
                .as_deref(),
            Some("7")
        );
        assert_eq!(string_claim(&claims, "realm_access.missing").unwrap(), None);
        assert_eq!(string_claim(&claims, "empty").unwrap(), None);
        assert_eq!(
            string_claim(&claims, "realm_access"),
            Err(JwtError::InvalidClaim("realm_access".to_owned()))
        );
    }

    #[test]
    fn header_algorithms_are_limited_to_public_key_ones() {
        assert_eq!(allowed_algorithm("ES256").unwrap(), Algorithm::ES256);
        assert_eq!(allowed_algorithm("EdDSA").unwrap(), Algorithm::EdDSA);
        for alg in ["none", "None", "HS256", "HS512", "ES512", ""] {
            assert!(matches!(
                allowed_algorithm(alg),
                Err(JwtError::UnsupportedAlgorithm(_))
            ));
        }
    }

    #[test]
    fn symmetric_and_encryption_jwks_are_skipped() {
        let set = parse_jwks(
            br#"{"keys":[
                {"kty":"oct","k":"c2VjcmV0","kid":"h"},
                {"kty":"RSA","use":"enc","n":"AQAB","e":"AQAB","kid":"enc"},
                {"kty":"EC","crv":"P-521","x":"AA","y":"AA","kid":"p521"},
                {"kty":"OKP","crv":"X25519","x":"AA","kid":"x"},
                {"kty":"weird","kid":"w"},
                {"kty":"OKP","crv":"Ed25519","x":"AA","kid":"ed"}
            ]}"#,
        )
        .unwrap();
        let kids: Vec<_> = set.keys.iter().map(|k| k.kid.as_deref()).collect();
        assert_eq!(kids, [Some("ed")]);
    }
}
