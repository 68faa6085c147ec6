//! Bearer JWT verification against a JWKS served over real HTTP or read
//! from a file, with keys generated per test.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::State;
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair};
use serde_json::{Value, json};
use switchyard_auth::jwt::{
    JwksSource, JwtError, JwtIdentity, JwtSettings, JwtVerifier, looks_like_jwt,
};
use tokio::sync::{Mutex, watch};

const ISSUER: &str = "https://idp.example.com/realms/acme";
const AUDIENCE: &str = "switchyard";
const INTERVAL: Duration = Duration::from_secs(30);

/// A signing key made for one test, with its public half as a JWK.
struct TestKey {
    kid: String,
    alg: Algorithm,
    encoding: EncodingKey,
    jwk: Value,
}

fn es256_key(kid: &str) -> TestKey {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    // Uncompressed point: 0x04 || x || y.
    let point = pair.public_key().as_ref();
    assert_eq!(point.len(), 65);
    TestKey {
        kid: kid.to_owned(),
        alg: Algorithm::ES256,
        encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
        jwk: json!({
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..]),
        }),
    }
}

fn ed25519_key(kid: &str) -> TestKey {
    let rng = SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    TestKey {
        kid: kid.to_owned(),
        alg: Algorithm::EdDSA,
        encoding: EncodingKey::from_ed_der(pkcs8.as_ref()),
        jwk: json!({
            "kty": "OKP", "crv": "Ed25519", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(pair.public_key().as_ref()),
        }),
    }
}

fn jwks(keys: &[&TestKey]) -> Value {
    json!({ "keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() })
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Claims a well-behaved provider would issue, valid for an hour.
fn claims() -> Value {
    json!({
        "iss": ISSUER,
        "aud": [AUDIENCE, "account"],
        "sub": "0b6f4c1e-user",
        "preferred_username": "ada",
        "exp": now() + 3600,
        "nbf": now() - 5,
        "iat": now() - 5,
        "team": "research",
        "realm_access": { "roles": ["admin", "user"] },
    })
}

fn sign(key: &TestKey, claims: &Value) -> String {
    let mut header = Header::new(key.alg);
    header.kid = Some(key.kid.clone());
    jsonwebtoken::encode(&header, claims, &key.encoding).unwrap()
}

fn sign_without_kid(key: &TestKey, claims: &Value) -> String {
    jsonwebtoken::encode(&Header::new(key.alg), claims, &key.encoding).unwrap()
}

/// A JWKS endpoint whose key set can be swapped, that counts fetches and
/// can hold its answers until released.
struct JwksServer {
    url: String,
    state: Arc<ServerState>,
}

struct ServerState {
    jwks: Mutex<Value>,
    fetches: AtomicUsize,
    open: watch::Sender<bool>,
}

impl JwksServer {
    async fn start(initial: Value) -> Self {
        let state = Arc::new(ServerState {
            jwks: Mutex::new(initial),
            fetches: AtomicUsize::new(0),
            open: watch::Sender::new(true),
        });
        let app = axum::Router::new()
            .route("/jwks", get(serve_jwks))
            .with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            url: format!("http://{addr}/jwks"),
            state,
        }
    }

    async fn set(&self, jwks: Value) {
        *self.state.jwks.lock().await = jwks;
    }

    fn fetches(&self) -> usize {
        self.state.fetches.load(Ordering::SeqCst)
    }

    fn settings(&self) -> JwtSettings {
        settings(JwksSource::Url(self.url.clone()))
    }
}

async fn serve_jwks(State(state): State<Arc<ServerState>>) -> Json<Value> {
    state.fetches.fetch_add(1, Ordering::SeqCst);
    let mut open = state.open.subscribe();
    open.wait_for(|open| *open).await.unwrap();
    Json(state.jwks.lock().await.clone())
}

fn settings(jwks: JwksSource) -> JwtSettings {
    let mut settings = JwtSettings::new(ISSUER, vec![AUDIENCE.to_owned()], jwks);
    settings.leeway = Duration::from_secs(60);
    settings.user_claim = "preferred_username".to_owned();
    settings.team_claim = Some("team".to_owned());
    settings.role_claim = Some("realm_access.roles".to_owned());
    settings.min_refresh_interval = INTERVAL;
    settings
}

/// Moves the verifier's clock (tokio's) past the refresh interval. Time
/// runs again afterwards, so HTTP requests are not raced by auto-advance.
async fn let_refresh_interval_pass() {
    tokio::time::pause();
    tokio::time::advance(INTERVAL + Duration::from_secs(1)).await;
    tokio::time::resume();
}

/// The workspace builds reqwest without a TLS provider, and building any
/// client (even for plain http) needs one installed.
fn http_client() -> reqwest::Client {
    let _already_installed = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

async fn start_verifier(server: &JwksServer) -> JwtVerifier {
    JwtVerifier::new(server.settings(), http_client())
        .await
        .unwrap()
}

#[test]
fn verifier_is_send_and_sync_and_verify_is_send() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>(_: &T) {}
    send_sync::<JwtVerifier>();
    let verifier: Option<&JwtVerifier> = None;
    if let Some(v) = verifier {
        send(&v.verify("x"));
    }
}

#[tokio::test]
async fn a_valid_token_maps_user_team_and_roles() {
    let key = es256_key("k1");
    let server = JwksServer::start(jwks(&[&key])).await;
    let verifier = start_verifier(&server).await;
    let claims = claims();

    let identity = verifier.verify(&sign(&key, &claims)).await.unwrap();

    assert_eq!(
        identity,
        JwtIdentity {
            subject: "0b6f4c1e-user".to_owned(),
            user: Some("ada".to_owned()),
            team: Some("research".to_owned()),
            roles: vec!["admin".to_owned(), "user".to_owned()],
            expires_at: claims["exp"].as_u64().unwrap(),
        }
    );
    assert_eq!(server.fetches(), 1);
}

#[tokio::test]
async fn ed25519_tokens_verify_and_a_single_role_string_is_one_role() {
    let key = ed25519_key("ed");
    let server = JwksServer::start(jwks(&[&key])).await;
    let mut settings = server.settings();
    settings.role_claim = Some("role".to_owned());
    settings.team_claim = Some("org.team".to_owned());
    let verifier = JwtVerifier::new(settings, http_client()).await.unwrap();
    let mut claims = claims();
    claims["role"] = json!("viewer");
    claims["org"] = json!({ "team": "infra" });
    claims["aud"] = json!(AUDIENCE);

    let identity = verifier.verify(&sign(&key, &claims)).await.unwrap();

    assert_eq!(identity.roles, ["viewer"]);
    assert_eq!(identity.team.as_deref(), Some("infra"));
}

#[tokio::test]
async fn absent_team_and_roles_are_empty_not_errors() {
    let key = es256_key("k1");
    let server = JwksServer::start(jwks(&[&key])).await;
    let verifier = start_verifier(&server).await;
    let mut claims = claims();
    claims.as_object_mut().unwrap().remove("team");
    claims.as_object_mut().unwrap().remove("realm_access");

    let identity = verifier.verify(&sign(&key, &claims)).await.unwrap();

    assert_eq!((identity.team, identity.roles), (None, vec![]));
}

#[tokio::test]
async fn time_claims_are_checked_with_leeway() {
    let key = es256_key("k1");
    let server = JwksServer::start(jwks(&[&key])).await;
    let verifier = start_verifier(&server).await;

    let mut expired = claims();
    expired["exp"] = json!(now() - 120);
    let token = sign(&key, &expired);
    let err = verifier.verify(&token).await.unwrap_err();
    assert_eq!(err, JwtError::Expired);
    assert!(!err.to_string().contains(&token));

    let mut within_leeway = claims();
    within_leeway["exp"] = json!(now() - 10);
    verifier.verify(&sign(&key, &within_leeway)).await.unwrap();

    let mut early = claims();
    early["nbf"] = json!(now() + 600);
    assert_eq!(
        verifier.verify(&sign(&key, &early)).await,
        Err(JwtError::NotYetValid)
    );

    let mut no_exp = claims();
    no_exp.as_object_mut().unwrap().remove("exp");
    assert_eq!(
        verifier.verify(&sign(&key, &no_exp)).await,
        Err(JwtError::MissingClaim("exp".to_owned()))
    );
}

#[tokio::test]
async fn issuer_and_audience_must_match() {
    let key = es256_key("k1");
    let server = JwksServer::start(jwks(&[&key])).await;
    let verifier = start_verifier(&server).await;

    let mut wrong_aud = claims();
    wrong_aud["aud"] = json!(["account", "other-service"]);
    assert_eq!(
        verifier.verify(&sign(&key, &wrong_aud)).await,
        Err(JwtError::WrongAudience)
    );

    let mut no_aud = claims();
    no_aud.as_object_mut().unwrap().remove("aud");
    assert_eq!(
        verifier.verify(&sign(&key, &no_aud)).await,
        Err(JwtError::MissingClaim("aud".to_owned()))
    );

    let mut wrong_iss = claims();
    wrong_iss["iss"] = json!("https://evil.example.com");
    assert_eq!(
        verifier.verify(&sign(&key, &wrong_iss)).await,
        Err(JwtError::WrongIssuer)
    );

    let mut no_sub = claims();
    no_sub.as_object_mut().unwrap().remove("sub");
    assert_eq!(
        verifier.verify(&sign(&key, &no_sub)).await,
        Err(JwtError::MissingClaim("sub".to_owned()))
    );
}

#[tokio::test]
async fn tampered_none_and_hmac_tokens_are_refused() {
    let key = es256_key("k1");
    let server = JwksServer::start(jwks(&[&key])).await;
    let verifier = start_verifier(&server).await;
    let token = sign(&key, &claims());
    let (header, rest) = token.split_once('.').unwrap();
    let (_, signature) = rest.split_once('.').unwrap();

    // Same signature, elevated claims.
    let mut forged = claims();
    forged["realm_access"] = json!({ "roles": ["superadmin"] });
    let forged_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap());
    let tampered = format!("{header}.{forged_payload}.{signature}");
    assert_eq!(
        verifier.verify(&tampered).await,
        Err(JwtError::BadSignature)
    );

    // Someone else's key under our kid.
    let impostor = es256_key("k1");
    assert_eq!(
        verifier.verify(&sign(&impostor, &claims())).await,
        Err(JwtError::BadSignature)
    );

    let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","kid":"k1","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims()).unwrap());
    let unsigned = format!("{none_header}.{payload}.");
    assert!(looks_like_jwt(&unsigned));
    assert!(matches!(
        verifier.verify(&unsigned).await,
        Err(JwtError::UnsupportedAlgorithm(_))
    ));

    // HS256 keyed with the public JWK: the classic algorithm confusion.
    let mut hs_header = Header::new(Algorithm::HS256);
    hs_header.kid = Some("k1".to_owned());
    let secret = serde_json::to_vec(&key.jwk).unwrap();
    let hs =
        jsonwebtoken::encode(&hs_header, &claims(), &EncodingKey::from_secret(&secret)).unwrap();
    assert!(matches!(
        verifier.verify(&hs).await,
        Err(JwtError::UnsupportedAlgorithm(_))
    ));

    // An EC key pinned to ES256 does not verify EdDSA (or ES384) tokens.
    let ed = ed25519_key("k1");
    assert!(matches!(
        verifier.verify(&sign(&ed, &claims())).await,
        Err(JwtError::UnsupportedAlgorithm(_))
    ));

    assert_eq!(
        verifier.verify("not a token").await,
        Err(JwtError::Malformed)
    );
    assert_eq!(verifier.verify("a.b.c").await, Err(JwtError::Malformed));

    let crit_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"ES256","kid":"k1","crit":["exp"]}"#);
    let crit = format!("{crit_header}.{payload}.{signature}");
    assert_eq!(verifier.verify(&crit).await, Err(JwtError::Malformed));
}

#[tokio::test]
async fn a_token_without_kid_needs_a_single_key_set() {
    let only = es256_key("only");
    let server = JwksServer::start(jwks(&[&only])).await;
    let verifier = start_verifier(&server).await;
    verifier
        .verify(&sign_without_kid(&only, &claims()))
        .await
        .unwrap();

    let a = es256_key("a");
    let b = ed25519_key("b");
    let server = JwksServer::start(jwks(&[&a, &b])).await;
    let verifier = start_verifier(&server).await;
    assert_eq!(
        verifier.verify(&sign_without_kid(&a, &claims())).await,
        Err(JwtError::UnknownKey { kid: None })
    );
    // Not a reason to refetch: the provider's key set is not the problem.
    assert_eq!(server.fetches(), 1);
}

#[tokio::test]
async fn an_unknown_kid_refetches_once_then_is_refused() {
    let key = es256_key("k1");
    let server = JwksServer::start(jwks(&[&key])).await;
    let verifier = start_verifier(&server).await;
    let stranger = es256_key("k-unknown");
    let token = sign(&stranger, &claims());

    // Right after the initial load the interval has not passed: no fetch.
    assert_eq!(
        verifier.verify(&token).await,
        Err(JwtError::UnknownKey {
            kid: Some("k-unknown".to_owned())
        })
    );
    assert_eq!(server.fetches(), 1);

    let_refresh_interval_pass().await;
    assert_eq!(
        verifier.verify(&token).await,
        Err(JwtError::UnknownKey {
            kid: Some("k-unknown".to_owned())
        })
    );
    assert_eq!(server.fetches(), 2);

    // Within the interval again: refused without asking the provider.
    assert!(verifier.verify(&token).await.is_err());
    assert!(
        verifier
            .verify(&sign(&es256_key("k-other"), &claims()))
            .await
            .is_err()
    );
    assert_eq!(server.fetches(), 2);

    // Known keys keep working throughout.
    verifier.verify(&sign(&key, &claims())).await.unwrap();
    assert_eq!(server.fetches(), 2);
}

#[tokio::test]
async fn a_rotated_key_is_picked_up_by_one_refresh_for_many_requests() {
    let old = es256_key("2026-01");
    let server = JwksServer::start(jwks(&[&old])).await;
    // No rate limit: only the one-refresh-at-a-time rule may save fetches.
    let mut settings = server.settings();
    settings.min_refresh_interval = Duration::ZERO;
    let verifier = Arc::new(JwtVerifier::new(settings, http_client()).await.unwrap());
    let new = ed25519_key("2026-02");
    server.set(jwks(&[&old, &new])).await;
    let token = sign(&new, &claims());

    // Hold the provider's answer until every request is waiting on it.
    server.state.open.send_replace(false);
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let verifier = Arc::clone(&verifier);
            let token = token.clone();
            tokio::spawn(async move { verifier.verify(&token).await })
        })
        .collect();
    tokio::time::timeout(Duration::from_secs(10), async {
        while server.fetches() < 2 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap();
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    server.state.open.send_replace(true);

    for task in tasks {
        let identity = task.await.unwrap().unwrap();
        assert_eq!(identity.user.as_deref(), Some("ada"));
    }
    assert_eq!(server.fetches(), 2);
    verifier.verify(&sign(&old, &claims())).await.unwrap();
}

#[tokio::test]
async fn a_refresh_outlives_the_request_that_started_it() {
    let old = es256_key("old");
    let server = JwksServer::start(jwks(&[&old])).await;
    let verifier = Arc::new(start_verifier(&server).await);
    let new = es256_key("new");
    server.set(jwks(&[&old, &new])).await;
    let token = sign(&new, &claims());

    server.state.open.send_replace(false);
    let_refresh_interval_pass().await;
    let impatient = {
        let verifier = Arc::clone(&verifier);
        let token = token.clone();
        tokio::spawn(async move { verifier.verify(&token).await })
    };
    tokio::time::timeout(Duration::from_secs(10), async {
        while server.fetches() < 2 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap();
    // The client hangs up while the provider is still answering.
    impatient.abort();
    assert!(impatient.await.unwrap_err().is_cancelled());
    server.state.open.send_replace(true);

    // Within the interval, so only the refresh already under way can
    // have brought the new key.
    verifier.verify(&token).await.unwrap();
    assert_eq!(server.fetches(), 2);
}

#[tokio::test]
async fn a_failed_refresh_keeps_the_old_keys() {
    let key = es256_key("k1");
    let server = JwksServer::start(jwks(&[&key])).await;
    let verifier = start_verifier(&server).await;
    server.set(json!({ "nope": true })).await;

    let_refresh_interval_pass().await;
    let err = verifier
        .verify(&sign(&es256_key("k2"), &claims()))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, JwtError::Jwks { origin, .. } if origin == &server.url),
        "{err}"
    );
    verifier.verify(&sign(&key, &claims())).await.unwrap();
}

#[tokio::test]
async fn a_jwks_file_is_reread_on_an_unknown_kid() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    let old = es256_key("file-1");
    std::fs::write(&path, serde_json::to_vec(&jwks(&[&old])).unwrap()).unwrap();
    let verifier = JwtVerifier::new(settings(JwksSource::File(path.clone())), http_client())
        .await
        .unwrap();
    verifier.verify(&sign(&old, &claims())).await.unwrap();

    let new = es256_key("file-2");
    std::fs::write(&path, serde_json::to_vec(&jwks(&[&new])).unwrap()).unwrap();
    let token = sign(&new, &claims());
    assert!(matches!(
        verifier.verify(&token).await,
        Err(JwtError::UnknownKey { .. })
    ));

    let_refresh_interval_pass().await;
    verifier.verify(&token).await.unwrap();
    // Replaced, not merged: the old key is gone.
    assert!(matches!(
        verifier.verify(&sign(&old, &claims())).await,
        Err(JwtError::UnknownKey { .. })
    ));
}

#[tokio::test]
async fn a_jwks_that_cannot_be_loaded_fails_start_naming_its_source() {
    let server = JwksServer::start(json!({ "keys": [] })).await;
    let err = JwtVerifier::new(server.settings(), http_client())
        .await
        .unwrap_err();
    assert!(err.to_string().contains(&server.url), "{err}");

    let mut settings = server.settings();
    settings.jwks = JwksSource::Url(server.url.replace("/jwks", "/missing"));
    let err = JwtVerifier::new(settings, http_client()).await.unwrap_err();
    assert!(err.to_string().contains("/missing"), "{err}");
    assert!(err.to_string().contains("404"), "{err}");

    let missing = std::env::temp_dir().join("switchyard-no-such-jwks.json");
    let err = JwtVerifier::new(settings_for_file(&missing), http_client())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("switchyard-no-such-jwks.json"),
        "{err}"
    );

    let mut lax = server.settings();
    lax.leeway = Duration::from_secs(86_400);
    assert!(matches!(
        JwtVerifier::new(lax, http_client()).await,
        Err(JwtError::InvalidSettings(_))
    ));

    let mut no_audience = server.settings();
    no_audience.audiences.clear();
    assert!(matches!(
        JwtVerifier::new(no_audience, http_client()).await,
        Err(JwtError::InvalidSettings(_))
    ));
}

fn settings_for_file(path: &std::path::Path) -> JwtSettings {
    settings(JwksSource::File(path.to_path_buf()))
}

#[test]
fn looks_like_jwt_tells_tokens_from_virtual_keys() {
    let key = es256_key("k1");
    assert!(looks_like_jwt(&sign(&key, &claims())));
    assert!(looks_like_jwt(&sign_without_kid(
        &ed25519_key("e"),
        &claims()
    )));

    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"ES256"}"#);
    let no_alg = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT"}"#);
    for not_jwt in [
        "sk-sy-3f9a0c2b7d1e4f6a8b0c2d4e6f8a0b1c".to_owned(),
        "sk-sy-abc.def.ghi".to_owned(),
        String::new(),
        "a.b.c".to_owned(),
        format!("{header}.e30"),
        format!("{header}.e30.sig.extra"),
        format!("{header}..sig"),
        format!("{header}.e30=.sig"),
        format!("{header}.e30.si+g"),
        format!("{no_alg}.e30.sig"),
        format!("{}.e30.sig", URL_SAFE_NO_PAD.encode(b"[1,2]")),
    ] {
        assert!(!looks_like_jwt(&not_jwt), "{not_jwt}");
    }
    assert!(looks_like_jwt(&format!("{header}.e30.c2ln")));
}
