//! The router: HTTP (OpenAI shape) and gRPC front ends over one gateway core
//! that resolves models to routes and sends work to provider workers over the
//! bus. Stateless apart from its route table (and stored Responses API
//! responses, when `responses.store` keeps them): scale it horizontally.

use std::net::SocketAddr;
use std::sync::Arc;

use switchyard_bus::Bus;
use switchyard_config::Config;
use switchyard_proto::gateway::v1::gateway_service_server::GatewayServiceServer;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

mod access;
pub mod admin;
mod admin_keys;
mod admin_usage;
pub mod attempts;
pub mod auth;
pub mod cache;
pub mod core;
mod edge;
pub mod error;
pub mod grpc;
pub mod guardrails;
pub mod http;
pub mod limits;
mod media;
pub mod messages;
pub mod metrics;
mod payload;
pub mod response_store;
mod responses;
pub mod spend;
mod trace;

pub use crate::core::Gateway;

/// Environment variable holding the admin API's bearer token.
pub const ADMIN_TOKEN_ENV: &str = "SWITCHYARD_ADMIN_TOKEN";

#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    #[error("cannot listen for {what} on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot build gRPC reflection: {0}")]
    Reflection(String),
    #[error("{what} server failed: {message}")]
    Serve { what: &'static str, message: String },
    #[error(transparent)]
    Spend(#[from] spend::SpendError),
    #[error(transparent)]
    Responses(#[from] response_store::StoreError),
    #[error(transparent)]
    Auth(#[from] auth::AuthError),
}

/// A started router: where it listens, and its server tasks.
pub struct RunningRouter {
    pub http_addr: SocketAddr,
    pub grpc_addr: SocketAddr,
    pub gateway: Arc<Gateway>,
    health: tonic_health::server::HealthReporter,
    tasks: Vec<JoinHandle<Result<(), RouterError>>>,
}

/// Turns a router's readiness off (see [`RunningRouter::readiness`]).
#[derive(Clone)]
pub struct Readiness {
    gateway: Arc<Gateway>,
    health: tonic_health::server::HealthReporter,
}

impl Readiness {
    /// The first step of shutdown: `/readyz` answers 503 and gRPC health
    /// NOT_SERVING, while the listeners keep accepting and requests are
    /// still served (until the `shutdown` token given to [`start`] fires).
    pub async fn set_not_ready(&self) {
        not_ready(&self.gateway, &self.health).await;
    }
}

impl RunningRouter {
    /// A handle that turns readiness off before the listeners close.
    pub fn readiness(&self) -> Readiness {
        Readiness {
            gateway: self.gateway.clone(),
            health: self.health.clone(),
        }
    }

    /// Waits until both servers stopped (after `shutdown` fired and their
    /// in-flight requests finished).
    pub async fn wait(self) -> Result<(), RouterError> {
        for t in self.tasks {
            match t.await {
                Ok(r) => r?,
                Err(e) => {
                    return Err(RouterError::Serve {
                        what: "router",
                        message: e.to_string(),
                    });
                }
            }
        }
        Ok(())
    }
}

/// Binds the HTTP and gRPC listeners and serves until `shutdown` fires. On
/// shutdown, readiness and gRPC health turn to not-serving (if
/// [`Readiness::set_not_ready`] did not already), new connections are
/// refused and in-flight requests (streams included) run to their end.
///
/// `nats` is the bus's connection when there is one: the usage stream, the
/// alerts subject and the response bucket share it.
pub async fn start(
    config: &Config,
    bus: Arc<dyn Bus>,
    nats: Option<async_nats::Client>,
    shutdown: CancellationToken,
) -> Result<RunningRouter, RouterError> {
    let health = Arc::new(switchyard_routing::Health::new(&config.routing));
    let metrics = Arc::new(metrics::Metrics::new(health.clone()));
    let responses = response_store::Responses::open(config, nats.clone()).await?;
    let auth = Arc::new(
        auth::Auth::start(
            config,
            nats.clone(),
            switchyard_providers::registry::http_client(),
            shutdown.clone(),
        )
        .await?,
    );
    let spend = spend::Spend::start(config, nats.clone(), metrics.clone(), &auth).await?;
    let gateway = Arc::new(Gateway::new(config, bus, health, metrics, spend, auth));
    if let (Some(client), Some(b)) = (nats, &config.bus) {
        // Every router counts on its own and shares its counts here.
        switchyard_ratelimit::spawn_sync(
            gateway.limiter().clone(),
            client,
            format!("{}.{}", b.subject_prefix, limits::SYNC_SUBJECT),
            uuid::Uuid::new_v4().to_string(),
            switchyard_ratelimit::DEFAULT_SYNC_INTERVAL,
            shutdown.clone(),
        )
        .await
        .map_err(|e| RouterError::Serve {
            what: "rate limit sync",
            message: e.to_string(),
        })?;
    }

    let http_listener = bind("HTTP", config.server.http_addr).await?;
    let grpc_listener = bind("gRPC", config.server.grpc_addr).await?;
    let http_addr = local_addr("HTTP", &http_listener, config.server.http_addr)?;
    let grpc_addr = local_addr("gRPC", &grpc_listener, config.server.grpc_addr)?;

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<GatewayServiceServer<grpc::GrpcGateway>>()
        .await;
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(switchyard_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| RouterError::Reflection(e.to_string()))?;
    // grpcurl and older tools speak only v1alpha reflection.
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(switchyard_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(|e| RouterError::Reflection(e.to_string()))?;

    // Flip readiness before the listeners close so load balancers drain us.
    {
        let gateway = gateway.clone();
        let shutdown = shutdown.clone();
        let health = health_reporter.clone();
        tokio::spawn(async move {
            shutdown.cancelled().await;
            not_ready(&gateway, &health).await;
            gateway.close();
        });
    }

    let admin_token = std::env::var(ADMIN_TOKEN_ENV)
        .ok()
        .filter(|t| !t.is_empty());
    if admin_token.is_none() {
        tracing::info!(
            "admin API (/admin/v1) answers loopback clients only: set {ADMIN_TOKEN_ENV} to open it to bearer-token holders"
        );
    }
    let app = http::app(
        gateway.clone(),
        config.server.max_body_bytes,
        admin_token,
        responses,
    );
    let http_shutdown = shutdown.clone();
    let http_task = tokio::spawn(async move {
        // Streamed answers are many small writes: without TCP_NODELAY a delta
        // can wait for the client's ACK of the one before (Nagle).
        let http_listener = axum::serve::ListenerExt::tap_io(http_listener, |tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "could not set TCP_NODELAY");
            }
        });
        axum::serve(
            http_listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(http_shutdown.cancelled_owned())
        .await
        .map_err(|e| RouterError::Serve {
            what: "HTTP",
            message: e.to_string(),
        })
    });

    let grpc_service = GatewayServiceServer::new(grpc::GrpcGateway::new(gateway.clone()));
    let grpc_shutdown = shutdown.clone();
    let grpc_task = tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(grpc_service)
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(grpc_listener).with_nodelay(Some(true)),
                grpc_shutdown.cancelled_owned(),
            )
            .await
            .map_err(|e| RouterError::Serve {
                what: "gRPC",
                message: e.to_string(),
            })
    });

    tracing::info!(%http_addr, %grpc_addr, "router listening");
    Ok(RunningRouter {
        http_addr,
        grpc_addr,
        gateway,
        health: health_reporter,
        tasks: vec![http_task, grpc_task],
    })
}

async fn not_ready(gateway: &Gateway, health: &tonic_health::server::HealthReporter) {
    gateway.begin_shutdown();
    health
        .set_not_serving::<GatewayServiceServer<grpc::GrpcGateway>>()
        .await;
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, RouterError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| RouterError::Bind { what, addr, source })
}

fn local_addr(
    what: &'static str,
    l: &TcpListener,
    addr: SocketAddr,
) -> Result<SocketAddr, RouterError> {
    l.local_addr()
        .map_err(|source| RouterError::Bind { what, addr, source })
}
