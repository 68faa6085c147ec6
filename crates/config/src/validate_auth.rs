//! Validation of `auth` and `rate_limits`.

use std::collections::HashSet;

use crate::keypath::KeyPath;
use crate::validate::Problem;
use crate::{Config, KeyStoreKind, RateLimitScope};

pub(crate) fn validate(config: &Config, problems: &mut Vec<Problem>) {
    let mut push = |path: KeyPath, m: &str| problems.push((path, m.to_owned()));
    let auth = KeyPath::root().key("auth");
    let keys = &config.auth.keys;
    let kp = auth.key("keys");
    if keys.store == KeyStoreKind::Jetstream && config.bus.is_none() {
        push(
            kp.key("store"),
            "`jetstream` needs `bus` (the bucket lives on the bus's NATS); use `local` or `auto`",
        );
    }
    // `auto` with a bus and no secret turns keys off (said at start).
    let shared = keys.store == KeyStoreKind::Jetstream;
    match &keys.hash_secret {
        Some(s) if s.expose().len() < 32 => push(
            kp.key("hash_secret"),
            "must be at least 32 bytes (e.g. `openssl rand -hex 32`)",
        ),
        None if shared => push(
            kp.key("hash_secret"),
            "required when keys are kept in JetStream: every router must hash keys with the same secret (e.g. `${SWITCHYARD_KEY_HASH_SECRET}`)",
        ),
        _ => {}
    }
    if keys.bucket.is_empty()
        || !keys
            .bucket
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        push(kp.key("bucket"), "letters, digits, `_` and `-` only");
    }
    if keys.replicas == 0 || keys.replicas > 5 {
        push(kp.key("replicas"), "between 1 and 5");
    }
    if let Some(jwt) = &config.auth.jwt {
        let jp = auth.key("jwt");
        if jwt.issuer.trim().is_empty() {
            push(jp.key("issuer"), "must not be empty");
        }
        if jwt.audiences.is_empty() || jwt.audiences.iter().any(|a| a.trim().is_empty()) {
            push(
                jp.key("audiences"),
                "name at least one audience, none empty",
            );
        }
        match (&jwt.jwks_url, &jwt.jwks_file) {
            (None, None) => push(jp.key("jwks_url"), "set `jwks_url` or `jwks_file`"),
            (Some(_), Some(_)) => push(
                jp.key("jwks_file"),
                "set `jwks_url` or `jwks_file`, not both",
            ),
            (Some(url), None) => {
                if !(url.starts_with("https://") || url.starts_with("http://")) {
                    push(jp.key("jwks_url"), "must be an http(s) URL");
                }
            }
            (None, Some(_)) => {}
        }
        for (key, claim) in [
            ("user_claim", Some(&jwt.user_claim)),
            ("team_claim", jwt.team_claim.as_ref()),
            ("role_claim", jwt.role_claim.as_ref()),
        ] {
            if let Some(c) = claim
                && (c.is_empty() || c.split('.').any(str::is_empty))
            {
                push(jp.key(key), "a claim name, or names joined by `.`");
            }
        }
    }
    let mut names = HashSet::new();
    for (i, rule) in config.auth.access.iter().enumerate() {
        let rp = auth.key("access").index(i);
        if rule.name.trim().is_empty() {
            push(rp.key("name"), "must not be empty");
        } else if !names.insert(rule.name.as_str()) {
            push(rp.key("name"), "another access rule has this name");
        }
        if rule.models.is_empty() || rule.models.iter().any(String::is_empty) {
            push(
                rp.key("models"),
                "list the model patterns these callers may use (`*` for any)",
            );
        }
    }
    let mut names = HashSet::new();
    for (i, limit) in config.rate_limits.iter().enumerate() {
        let lp = KeyPath::root().key("rate_limits").index(i);
        if limit.name.trim().is_empty() {
            push(lp.key("name"), "must not be empty");
        } else if !names.insert(limit.name.as_str()) {
            push(lp.key("name"), "another rate limit has this name");
        }
        if limit.rpm.is_none() && limit.tpm.is_none() {
            push(lp.clone(), "set `rpm`, `tpm` or both");
        }
        if limit.rpm == Some(0) {
            push(lp.key("rpm"), "must be at least 1");
        }
        if limit.tpm == Some(0) {
            push(lp.key("tpm"), "must be at least 1");
        }
        match &limit.scope {
            Some(RateLimitScope::Key(v)) if v != "*" => push(
                lp.key("scope").key("key"),
                "only `*` (each key apart): a single key's limits are set on the key (`rpm`, `tpm`)",
            ),
            Some(RateLimitScope::Role(v)) if v.is_empty() || v == "*" => push(
                lp.key("scope").key("role"),
                "name one role: a caller has several, each counted in the rules naming it",
            ),
            Some(RateLimitScope::Team(v) | RateLimitScope::User(v) | RateLimitScope::Model(v))
                if v.is_empty() =>
            {
                push(lp.key("scope"), "name a value, or `*` for each apart")
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use crate::Config;

    fn problems(yaml: &str) -> Vec<String> {
        match Config::from_yaml_str(yaml, "test.yaml") {
            Ok(_) => Vec::new(),
            Err(e) => e.to_string().lines().map(str::to_owned).collect(),
        }
    }

    #[test]
    fn auth_and_rate_limit_problems_name_their_keys() {
        let out = problems(
            r#"
auth:
  keys: {store: jetstream, hash_secret: short}
  jwt: {issuer: "", audiences: [], jwks_url: ftp://x}
  access:
    - {name: a, models: []}
    - {name: a, models: ["*"]}
rate_limits:
  - {name: r, scope: {key: ci-bot}, rpm: 10}
  - {name: r, tpm: 0}
  - {name: s}
  - {name: t, scope: {role: "*"}, rpm: 5}
"#,
        )
        .join("\n");
        for want in [
            "auth.keys.store",
            "auth.keys.hash_secret",
            "auth.jwt.issuer",
            "auth.jwt.audiences",
            "auth.jwt.jwks_url",
            "auth.access[0].models",
            "auth.access[1].name",
            "rate_limits[0].scope.key",
            "rate_limits[1].name",
            "rate_limits[1].tpm",
            "rate_limits[2]",
            "rate_limits[3].scope.role",
        ] {
            assert!(out.contains(want), "{want} missing from:\n{out}");
        }
        let typo = problems("auth:\n  kyes: {}\n").join("\n");
        assert!(typo.contains("auth") && typo.contains("kyes"), "{typo}");
    }

    #[test]
    fn a_full_auth_section_is_accepted() {
        let out = problems(
            r#"
providers: [{name: demo, kind: demo}]
auth:
  keys: {store: local, path: /tmp/k.db}
  jwt:
    issuer: https://idp.example.com
    audiences: [switchyard]
    jwks_url: https://idp.example.com/jwks.json
    team_claim: org.team
    role_claim: realm_access.roles
    leeway: 30s
  access:
    - {name: interns, roles: [intern], models: ["*-mini"]}
rate_limits:
  - {name: per-team, scope: {team: "*"}, rpm: 600, tpm: 100000}
  - {name: everyone, rpm: 10000}
"#,
        );
        assert!(out.is_empty(), "{out:?}");
    }
}
