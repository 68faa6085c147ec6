//! `/admin/v1/keys`: virtual keys, behind the admin credential (a key can
//! never read or change keys, its own included).
//!
//! - `POST /admin/v1/keys`: a new key; the answer holds the key, the only
//!   time it is shown.
//! - `GET /admin/v1/keys`, `GET /admin/v1/keys/{id}`: records, never hashes.
//! - `DELETE /admin/v1/keys/{id}`: revokes it (the record stays, marked).

use std::collections::BTreeMap;
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;
use switchyard_auth::{KeyLimits, NewKey};

use crate::core::Gateway;
use crate::edge;
use crate::error::GatewayError;
use crate::http::error_response;

/// The body of `POST /admin/v1/keys`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    name: String,
    #[serde(default)]
    team: Option<String>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    models: Vec<String>,
    #[serde(default)]
    limits: KeyLimits,
    /// From now (`30d`, `12h`).
    #[serde(default, with = "humantime_serde")]
    expires_in: Option<Duration>,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
    /// The audit trail keeps this key's prompts and answers.
    #[serde(default)]
    capture_payloads: bool,
}

fn invalid(message: String, param: &str) -> GatewayError {
    GatewayError::InvalidRequest {
        message,
        param: Some(param.to_owned()),
    }
}

fn checked(body: &[u8]) -> Result<NewKey, GatewayError> {
    let req: CreateKey = edge::decode_json(body, edge::Wording::OpenAi)?;
    let name = req.name.trim();
    if name.is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
        return Err(invalid(
            "`name` must be 1 to 128 printable characters".into(),
            "name",
        ));
    }
    for (field, v) in [("team", &req.team), ("user", &req.user)] {
        if v.as_deref()
            .is_some_and(|v| v.is_empty() || v.len() > 128 || v.chars().any(char::is_control))
        {
            return Err(invalid(
                format!("`{field}` must be 1 to 128 printable characters"),
                field,
            ));
        }
    }
    if req.models.iter().any(|m| m.trim().is_empty()) {
        return Err(invalid(
            "`models` entries must not be empty".into(),
            "models",
        ));
    }
    if let Some(b) = &req.limits.budget
        && !b
            .limit_usd
            .parse::<switchyard_pricing::Usd>()
            .is_ok_and(|usd| usd > switchyard_pricing::Usd::ZERO)
    {
        return Err(invalid(
            format!(
                "`limits.budget.limit_usd` must be a positive amount in US dollars (\"25\", \"12.50\"), not `{}`",
                b.limit_usd
            ),
            "limits.budget.limit_usd",
        ));
    }
    let expires_at = match req.expires_in {
        Some(d) if d.is_zero() => {
            return Err(invalid(
                "`expires_in` must be positive".into(),
                "expires_in",
            ));
        }
        Some(d) => Some(switchyard_localdb::expires_ms(d)),
        None => None,
    };
    Ok(NewKey {
        name: name.to_owned(),
        team: req.team,
        user: req.user,
        roles: req.roles,
        models: req.models,
        limits: req.limits,
        expires_at,
        metadata: req.metadata,
        capture_payloads: req.capture_payloads,
    })
}

pub(crate) async fn create(gateway: &Gateway, body: &[u8]) -> Response {
    let new = match checked(body) {
        Ok(n) => n,
        Err(e) => return error_response(&e),
    };
    match gateway.auth().create_key(new).await {
        Ok((key, record)) => {
            tracing::info!(key_id = %record.id, name = %record.name, team = record.team.as_deref(), "virtual key created");
            let mut v = record.public();
            if let Some(o) = v.as_object_mut() {
                o.insert("key".into(), key.into());
            }
            edge::json_response(StatusCode::CREATED, &v, error_response)
        }
        Err(e) => error_response(&e),
    }
}

pub(crate) fn list(gateway: &Gateway) -> Response {
    match gateway.auth().list_keys() {
        Ok(keys) => {
            let data: Vec<_> = keys.iter().map(|k| k.public()).collect();
            edge::json_response(StatusCode::OK, &json!({"data": data}), error_response)
        }
        Err(e) => error_response(&e),
    }
}

fn not_found(id: &str) -> GatewayError {
    GatewayError::InvalidRequest {
        message: format!("no key with id `{id}`"),
        param: Some("id".into()),
    }
}

pub(crate) fn get(gateway: &Gateway, id: &str) -> Response {
    match gateway.auth().get_key(id) {
        Ok(Some(k)) => edge::json_response(StatusCode::OK, &k.public(), error_response),
        Ok(None) => not_found_response(id),
        Err(e) => error_response(&e),
    }
}

fn not_found_response(id: &str) -> Response {
    let mut res = error_response(&not_found(id));
    *res.status_mut() = StatusCode::NOT_FOUND;
    res
}

pub(crate) async fn revoke(gateway: &Gateway, id: &str) -> Response {
    match gateway.auth().revoke_key(id).await {
        Ok(Some(k)) => {
            tracing::info!(key_id = %k.id, name = %k.name, "virtual key revoked");
            edge::json_response(StatusCode::OK, &k.public(), error_response)
        }
        Ok(None) => not_found_response(id),
        Err(e) => error_response(&e),
    }
}
