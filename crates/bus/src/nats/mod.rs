//! The bus over NATS core subjects (no JetStream: a request lives only as
//! long as its caller waits for it).
//!
//! # Protocol
//!
//! Subjects (see [`Subjects`]; `<prefix>` is `bus.subject_prefix`):
//! - `<prefix>.work.<provider>`: work. Workers subscribe in the queue group
//!   `<prefix>.workers.<provider>`, so replicas share it and each request
//!   reaches exactly one. Payload: a protobuf `WorkRequest`; trace context
//!   and other [`Headers`] travel as NATS headers.
//! - `<prefix>.ctl.<worker_id>`: `CancelRequest`s for one worker.
//! - `<prefix>.cancel.<provider>`: `CancelRequest`s every worker of the
//!   provider hears (plain subscription, not the queue group).
//!
//! A call: the caller subscribes to a fresh inbox, then publishes the request
//! with that inbox as reply subject. Clients connect with headers and
//! no-responders enabled, so when no worker is subscribed the server answers
//! at once with a 503 status on the inbox: [`BusError::NoResponders`].
//!
//! The worker answers on the inbox with `WorkEvent`s numbered from 0: first
//! `Accepted { worker_id }` the moment its job stream yields the job (the
//! bus does this, not worker code), then the content events. While no event
//! has gone out for `heartbeat_interval`, a per-job task sends `Heartbeat`s.
//! The caller consumes `Accepted` and `Heartbeat` and yields only content:
//! - no `Accepted` within `ack_timeout`: [`BusError::WorkerLost`] from
//!   [`Bus::call`];
//! - no event at all for 3 × `heartbeat_interval`: `WorkerLost` from the
//!   [`Call`];
//! - a gap in the sequence numbers (events lost, e.g. across a reconnect):
//!   [`BusError::Decode`]; events are never reordered or skipped silently.
//!
//! Cancellation. Dropping a call before its terminal event (or giving up on
//! it with an error) publishes a `CancelRequest` from a spawned task: to the
//! accepting worker's ctl subject, or to the provider-wide cancel subject
//! when no worker has accepted yet. The cancel carries the call's inbox in
//! the `Switchyard-Call` header, so it stops this one attempt and not a
//! retry of the same request id. A provider-wide cancel can overtake its
//! request, so workers remember such cancels for
//! [`RECENT_CANCEL_TTL`](worker::RECENT_CANCEL_TTL) (at most
//! [`RECENT_CANCEL_MAX`](worker::RECENT_CANCEL_MAX) of them) and drop the
//! request unseen when it arrives.
//!
//! Workers publish their events with a reply subject of their own. Should
//! the caller's inbox be gone (the Call was dropped and its cancel lost, or
//! the router process died or lost its connection), the server answers the
//! next event or heartbeat with a 503 and the worker cancels the job: a gone
//! router costs at most one `heartbeat_interval` of upstream work.
//!
//! A job's `cancelled` token also fires when publishing one of its events
//! fails and when the bus is [closed](NatsBus::close).
//!
//! [`JobStream::stop_receiving`](crate::JobStream::stop_receiving) drains
//! the work subscription and returns once the server has taken the
//! unsubscribe, so new work goes to the other workers from then on, while
//! requests already delivered to this worker still come out of the stream.
//!
//! # Connection
//!
//! [`NatsBus::connect`] tries a few times with a short backoff and then
//! fails with [`BusError::Connection`], so a wrong URL shows up at start.
//! Once connected the client reconnects forever and restores every
//! subscription; calls in flight across a reconnect end with `Decode` (gap)
//! or `WorkerLost`, both of which the router retries.

use std::sync::Arc;
use std::time::Duration;

use async_nats::{Client, ConnectErrorKind, ConnectOptions, HeaderMap, HeaderName, HeaderValue};
use bytes::Bytes;
use futures_util::StreamExt;
use switchyard_config::BusConfig;
use switchyard_proto::bus::v1::WorkRequest;
use tokio_util::sync::CancellationToken;

use crate::{Bus, BusError, Call, Headers, JobStream};

mod caller;
mod subjects;
pub mod worker;

pub use subjects::Subjects;

/// Header on a `CancelRequest` naming the call (its reply inbox) to stop.
pub const CALL_HEADER: &str = "Switchyard-Call";

/// Initial connection attempts before [`NatsBus::connect`] gives up.
const CONNECT_ATTEMPTS: u32 = 5;
/// Time allowed for one connection attempt (TCP, TLS and the NATS handshake).
const CONNECT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long to wait for the server to confirm subscription changes.
const SERVER_CONFIRM_TIMEOUT: Duration = Duration::from_secs(5);

/// How to reach NATS and the timing of the protocol.
#[derive(Clone)]
pub struct NatsOptions {
    /// e.g. `nats://127.0.0.1:4222`; several servers separated by commas.
    pub url: String,
    pub subject_prefix: String,
    /// A worker that has not accepted a request within this long is lost.
    pub ack_timeout: Duration,
    /// Workers send heartbeats this often while nothing else goes out; three
    /// missed ones mean the worker is lost.
    pub heartbeat_interval: Duration,
    pub token: Option<String>,
    pub user: Option<String>,
    pub password: Option<String>,
    /// Connection name the server shows (e.g. `switchyard-worker-openai`).
    pub name: String,
}

impl NatsOptions {
    /// Options for `url` with the defaults of the configuration schema.
    pub fn new(url: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            subject_prefix: switchyard_config::default_subject_prefix(),
            ack_timeout: switchyard_config::default_ack_timeout(),
            heartbeat_interval: switchyard_config::default_heartbeat_interval(),
            token: None,
            user: None,
            password: None,
            name: name.into(),
        }
    }

    pub fn from_config(config: &BusConfig, name: impl Into<String>) -> Self {
        Self {
            url: config.nats_url.clone(),
            subject_prefix: config.subject_prefix.clone(),
            ack_timeout: config.ack_timeout,
            heartbeat_interval: config.heartbeat_interval,
            token: config.token.as_ref().map(|t| t.expose().to_owned()),
            user: config.user.clone(),
            password: config.password.as_ref().map(|p| p.expose().to_owned()),
            name: name.into(),
        }
    }

    fn connect_options(&self) -> ConnectOptions {
        let mut options = ConnectOptions::new()
            .name(&self.name)
            .connection_timeout(CONNECT_ATTEMPT_TIMEOUT)
            // Once up, keep reconnecting: a NATS restart must not need a
            // gateway restart.
            .max_reconnects(None);
        if let Some(token) = &self.token {
            options = options.token(token.clone());
        }
        if let Some(user) = &self.user {
            options =
                options.user_and_password(user.clone(), self.password.clone().unwrap_or_default());
        }
        options
    }
}

impl std::fmt::Debug for NatsOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsOptions")
            .field("url", &self.url)
            .field("subject_prefix", &self.subject_prefix)
            .field("ack_timeout", &self.ack_timeout)
            .field("heartbeat_interval", &self.heartbeat_interval)
            .field("token", &self.token.as_ref().map(|_| "[redacted]"))
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "[redacted]"))
            .field("name", &self.name)
            .finish()
    }
}

/// The NATS [`Bus`]. Clones share one connection.
#[derive(Clone)]
pub struct NatsBus {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) client: Client,
    pub(crate) subjects: Subjects,
    pub(crate) ack_timeout: Duration,
    pub(crate) heartbeat_interval: Duration,
    /// Parent of every job's `cancelled` token; fired by [`NatsBus::close`].
    pub(crate) shutdown: CancellationToken,
}

impl NatsBus {
    /// Connects, retrying a few times (a NATS starting beside the gateway
    /// needs a moment); fails with [`BusError::Connection`] after that.
    pub async fn connect(opts: NatsOptions) -> Result<Self, BusError> {
        let mut delay = Duration::from_millis(100);
        let mut attempt = 1;
        let client = loop {
            match opts.connect_options().connect(opts.url.as_str()).await {
                Ok(client) => break client,
                Err(e) => {
                    let hopeless = matches!(
                        e.kind(),
                        ConnectErrorKind::ServerParse
                            | ConnectErrorKind::AuthorizationViolation
                            | ConnectErrorKind::Authentication
                            | ConnectErrorKind::Tls
                    );
                    if hopeless || attempt >= CONNECT_ATTEMPTS {
                        return Err(BusError::Connection(format!(
                            "cannot connect to NATS at {} (attempt {attempt}): {e}",
                            opts.url
                        )));
                    }
                    tracing::warn!(url = %opts.url, attempt, error = %e, "NATS connect failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(1));
                    attempt += 1;
                }
            }
        };
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                subjects: Subjects::new(opts.subject_prefix),
                ack_timeout: opts.ack_timeout,
                heartbeat_interval: opts.heartbeat_interval.max(Duration::from_millis(1)),
                shutdown: CancellationToken::new(),
            }),
        })
    }

    /// The connection itself, for other users of the same NATS (the usage
    /// stream, alerts): one connection per process.
    pub fn client(&self) -> Client {
        self.inner.client.clone()
    }

    pub fn subjects(&self) -> &Subjects {
        &self.inner.subjects
    }

    /// Shuts the bus down: every job served through it is cancelled, job
    /// streams end, new calls fail with [`BusError::Closed`], and what was
    /// already published is flushed before the connection closes.
    /// Whether the connection to the NATS server is up right now (it
    /// reconnects by itself; readiness probes report this).
    pub fn is_connected(&self) -> bool {
        self.inner.client.connection_state() == async_nats::connection::State::Connected
    }

    pub async fn close(&self) {
        // `Client::drain` returns before anything is flushed: a round trip
        // makes sure the server has every event published so far (a
        // worker's last chunks) before the process may exit.
        if let Err(e) = server_round_trip(&self.inner.client).await {
            tracing::debug!(error = %e, "NATS flush on close failed");
        }
        self.inner.shutdown.cancel();
        if let Err(e) = self.inner.client.drain().await {
            tracing::debug!(error = %e, "NATS drain on close failed");
        }
    }
}

#[async_trait::async_trait]
impl Bus for NatsBus {
    async fn call(&self, request: WorkRequest, headers: Headers) -> Result<Call, BusError> {
        caller::call(&self.inner, request, headers).await
    }

    async fn serve(&self, provider: &str, worker_id: &str) -> Result<JobStream, BusError> {
        worker::serve(&self.inner, provider, worker_id).await
    }
}

pub(crate) fn connection_error(e: impl std::fmt::Display) -> BusError {
    BusError::Connection(e.to_string())
}

pub(crate) fn to_header_map(headers: &Headers) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        // async-nats panics on invalid names/values; a bad trace header must
        // not take the request down, so it is left out instead.
        match (name.parse::<HeaderName>(), value.parse::<HeaderValue>()) {
            (Ok(n), Ok(v)) => map.append(n, v),
            _ => tracing::warn!(header = %name, "header cannot travel over NATS; left out"),
        }
    }
    map
}

pub(crate) fn from_header_map(map: Option<&HeaderMap>) -> Headers {
    let Some(map) = map else {
        return Vec::new();
    };
    let mut headers: Headers = map
        .iter()
        .flat_map(|(name, values)| {
            values
                .iter()
                .map(move |v| (name.to_string(), v.to_string()))
        })
        .collect();
    // The header map does not keep order; sorting keeps it deterministic.
    headers.sort();
    headers
}

/// Returns once the server has processed everything this client sent before
/// (subscribes, unsubscribes), by sending a message to ourselves through it.
/// `Client::flush` only waits for the bytes to leave the socket.
pub(crate) async fn server_round_trip(client: &Client) -> Result<(), BusError> {
    let inbox = client.new_inbox();
    let mut sub = client
        .subscribe(inbox.clone())
        .await
        .map_err(connection_error)?;
    client
        .publish(inbox, Bytes::new())
        .await
        .map_err(connection_error)?;
    match tokio::time::timeout(SERVER_CONFIRM_TIMEOUT, sub.next()).await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(BusError::Closed),
        Err(_) => Err(BusError::Connection(format!(
            "the NATS server did not answer within {SERVER_CONFIRM_TIMEOUT:?}"
        ))),
    }
}
