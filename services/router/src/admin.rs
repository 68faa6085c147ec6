//! The admin API under `/admin/v1` on the HTTP listener: what the router
//! is doing right now, for operators and consoles.
//!
//! - `GET /admin/v1/routes`: every configured model with its strategy and
//!   routes, and the live health of every target seen so far (breaker state,
//!   cooldown, in-flight, latency).
//! - `/admin/v1/keys`: virtual keys ([`crate::admin_keys`]).
//! - `GET /admin/v1/audit`: the audit trail (every request's record),
//!   paged, as JSON lines or CSV ([`crate::admin_usage`]).
//! - `GET /admin/v1/usage`, `/admin/v1/usage/records`, `/admin/v1/budgets`:
//!   spend from the ledger and the budgets' state ([`crate::admin_usage`]).
//!
//! Access: with `SWITCHYARD_ADMIN_TOKEN` set, a request must carry
//! `Authorization: Bearer <token>`; without it, only loopback clients are
//! answered (and not a browser page of another origin, nor a request
//! naming a non-loopback host: [`crate::auth::trusted_loopback`]), so an
//! exposed router never leaks its state by default.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use crate::core::Gateway;
use crate::error::GatewayError;
use crate::http::error_response;

type Params = std::collections::BTreeMap<String, String>;

#[derive(Clone)]
struct AdminState {
    gateway: Arc<Gateway>,
    token: Option<Arc<str>>,
}

pub fn router<S: Clone + Send + Sync + 'static>(
    gateway: Arc<Gateway>,
    token: Option<String>,
) -> Router<S> {
    let state = AdminState {
        gateway,
        token: token.map(Arc::from),
    };
    Router::new()
        .route("/routes", get(routes))
        .route(
            "/usage",
            get(|State(s): State<AdminState>, Query(q): Query<Params>| {
                crate::admin_usage::usage(s.gateway, q)
            }),
        )
        .route(
            "/usage/records",
            get(|State(s): State<AdminState>, Query(q): Query<Params>| {
                crate::admin_usage::records(s.gateway, q)
            }),
        )
        .route(
            "/keys",
            get(|State(s): State<AdminState>| async move { crate::admin_keys::list(&s.gateway) })
                .post(|State(s): State<AdminState>, body: axum::body::Bytes| async move {
                    crate::admin_keys::create(&s.gateway, &body).await
                }),
        )
        .route(
            "/keys/{id}",
            get(|State(s): State<AdminState>, Path(id): Path<String>| async move {
                crate::admin_keys::get(&s.gateway, &id)
            })
            .delete(|State(s): State<AdminState>, Path(id): Path<String>| async move {
                crate::admin_keys::revoke(&s.gateway, &id).await
            }),
        )
        .route(
            "/audit",
            get(|State(s): State<AdminState>, Query(q): Query<Params>| {
                crate::admin_usage::audit(s.gateway, q)
            }),
        )
        .route(
            "/budgets",
            get(|State(s): State<AdminState>| async move {
                crate::admin_usage::budgets(&s.gateway)
            }),
        )
        .route_layer(middleware::from_fn_with_state(state.clone(), authorize))
        .with_state(state)
}

/// Equal-length comparison that takes the same time wherever the first
/// difference is, so the token cannot be guessed byte by byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn authorize(State(state): State<AdminState>, req: Request, next: Next) -> Response {
    let allowed = match &state.token {
        Some(token) => req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|given| constant_time_eq(given.trim().as_bytes(), token.as_bytes())),
        None => crate::auth::trusted_loopback(
            req.extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .is_some_and(|ConnectInfo(peer)| peer.ip().is_loopback()),
            |n| req.headers().get(n)?.to_str().ok(),
        ),
    };
    if allowed {
        next.run(req).await
    } else {
        error_response(&GatewayError::AdminForbidden)
    }
}

async fn routes(State(state): State<AdminState>) -> Response {
    let table = state.gateway.routes();
    let models: Vec<Value> = table
        .list()
        .iter()
        .filter_map(|m| table.resolve(&m.id))
        .map(|plan| {
            let routes: Vec<Value> = plan
                .routes
                .iter()
                .map(|r| {
                    json!({
                        "provider": &*r.target.provider,
                        "model": &*r.target.upstream_model,
                        "weight": r.weight,
                        "context_window": r.context_window,
                        "price": r.price.map(|p| json!({"input_per_mtok": p.input_per_mtok, "output_per_mtok": p.output_per_mtok})),
                    })
                })
                .collect();
            json!({"name": &*plan.model, "strategy": plan.strategy, "routes": routes})
        })
        .collect();
    let targets = state.gateway.health().snapshot();
    axum::Json(json!({"models": models, "targets": targets})).into_response()
}
