//! Callers for the governance tests: virtual keys made through the admin
//! API, `switchyard` CLI runs against a gateway, and an identity provider
//! (a signing key made per test, its JWKS, tokens it signs).

use std::process::Command;

use serde_json::{Value, json};

use crate::http_client;
use crate::process::switchyard_bin;

/// `POST /admin/v1/keys` with `body` (as a loopback client, with no admin
/// token set): the record with its `key`.
pub async fn create_key(base: &str, body: Value) -> Value {
    let res = http_client()
        .post(format!("{base}/admin/v1/keys"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "creating a key");
    res.json().await.unwrap()
}

/// The `Authorization` value for `key`.
pub fn bearer(key: &str) -> String {
    format!("Bearer {key}")
}

/// `switchyard ARGS` against the gateway at `base` (no admin token), its
/// stdout; a failing run fails the test with its stderr.
pub fn cli(base: &str, args: &[&str]) -> String {
    let out = Command::new(switchyard_bin())
        .args(args)
        .env("SWITCHYARD_URL", base)
        .env_remove("SWITCHYARD_ADMIN_TOKEN")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "switchyard {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// An identity provider: an Ed25519 signing key made for the test, and
/// its JWKS.
pub struct Idp {
    kid: &'static str,
    encoding: jsonwebtoken::EncodingKey,
    pub jwks: Value,
}

impl Idp {
    pub fn new(kid: &'static str) -> Idp {
        use base64::Engine;
        use ring::signature::{Ed25519KeyPair, KeyPair};
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(pair.public_key().as_ref());
        Idp {
            kid,
            encoding: jsonwebtoken::EncodingKey::from_ed_der(pkcs8.as_ref()),
            jwks: json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": x}]}),
        }
    }

    /// A token with these claims, signed with this provider's key.
    pub fn token(&self, claims: &Value) -> String {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        header.kid = Some(self.kid.to_owned());
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }
}

/// Now, in Unix seconds (JWT times).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}
