//! The gateway core that both front ends (HTTP and gRPC) call: resolve the
//! model to a plan, walk its targets over the bus, and hand back either a
//! complete result or a stream that has already produced its first event.
//!
//! Retries and fallback live here, at the route level, and only before the
//! first byte reaches the client: a streamed call is returned to the front
//! end only once its first content event arrived, so every failure before
//! that can still move to the next target.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use switchyard_bus::{Bus, BusError, Call, Event, Headers};
use switchyard_proto::bus::v1::{ErrorKind, UpstreamError, WorkRequest};
use switchyard_proto::gateway::v1::{ChatChunk, ChatResult, ChatSpec, Role, Usage};
use switchyard_routing::{ListedModel, Plan, RouteTable, Target};
use tokio::time::Instant;

use crate::error::GatewayError;

/// How often a request is sent again to the same provider after its worker
/// vanished; another replica of the provider usually takes it at once.
const MAX_REDELIVERIES: u32 = 2;

/// What one request carries besides its body.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub request_id: String,
    /// Trace context (`traceparent`, `tracestate`) forwarded to the worker.
    pub headers: Headers,
}

/// Which target served a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedBy {
    pub provider: String,
    pub upstream_model: String,
}

impl From<&Target> for ServedBy {
    fn from(t: &Target) -> Self {
        ServedBy {
            provider: t.provider.to_string(),
            upstream_model: t.upstream_model.to_string(),
        }
    }
}

/// Items of a streamed answer as front ends see them.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamItem {
    Chunk(ChatChunk),
    /// The stream finished; usage as the provider reported it.
    Done(Option<Usage>),
    /// The stream broke after it started; nothing can be retried now.
    Failed(GatewayError),
}

pub type ChatStream = Pin<Box<dyn Stream<Item = StreamItem> + Send>>;

pub struct Gateway {
    routes: RouteTable,
    bus: Arc<dyn Bus>,
    request_timeout: Duration,
    shutting_down: AtomicBool,
}

impl Gateway {
    pub fn new(routes: RouteTable, bus: Arc<dyn Bus>, request_timeout: Duration) -> Self {
        Self {
            routes,
            bus,
            request_timeout,
            shutting_down: AtomicBool::new(false),
        }
    }

    pub fn list_models(&self) -> &[ListedModel] {
        self.routes.list()
    }

    /// Readiness: false once shutdown began, so load balancers move away.
    pub fn is_ready(&self) -> bool {
        !self.shutting_down.load(Ordering::Relaxed)
    }

    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Relaxed);
    }

    fn plan(&self, spec: &ChatSpec) -> Result<Plan, GatewayError> {
        if !self.is_ready() {
            return Err(GatewayError::ShuttingDown);
        }
        validate_spec(spec)?;
        self.routes
            .resolve(&spec.model)
            .ok_or_else(|| GatewayError::ModelNotFound(spec.model.clone()))
    }

    /// A complete answer from the first target that gives one.
    pub async fn chat(
        &self,
        spec: ChatSpec,
        ctx: &RequestContext,
    ) -> Result<(ServedBy, ChatResult), GatewayError> {
        let deadline = Instant::now() + self.request_timeout;
        self.run(&spec, ctx, false, deadline, unary_attempt).await
    }

    /// A streamed answer. Returns once the first chunk arrived (or the stream
    /// ended empty), so the caller can still send a proper error status for
    /// anything that fails before that.
    pub async fn chat_stream(
        &self,
        spec: ChatSpec,
        ctx: &RequestContext,
    ) -> Result<(ServedBy, ChatStream), GatewayError> {
        let deadline = Instant::now() + self.request_timeout;
        let (served, (first, call)) = self.run(&spec, ctx, true, deadline, stream_attempt).await?;
        let provider = served.provider.clone();
        Ok((
            served,
            continue_stream(first, call, provider, deadline, self.request_timeout),
        ))
    }

    /// Resolves the plan and walks it under the request's deadline, making
    /// each attempt with `attempt`.
    async fn run<T, F, Fut>(
        &self,
        spec: &ChatSpec,
        ctx: &RequestContext,
        stream: bool,
        deadline: Instant,
        attempt: F,
    ) -> Result<(ServedBy, T), GatewayError>
    where
        F: Fn(Arc<dyn Bus>, WorkRequest, Headers) -> Fut,
        Fut: std::future::Future<Output = Result<T, AttemptError>>,
    {
        let plan = self.plan(spec)?;
        let attempts = self.walk(&plan, deadline, |target, n| {
            let request = self.work_request(spec, target, ctx, stream, n, deadline);
            attempt(self.bus.clone(), request, ctx.headers.clone())
        });
        tokio::time::timeout_at(deadline, attempts)
            .await
            .unwrap_or(Err(GatewayError::DeadlineExceeded(self.request_timeout)))
    }

    fn work_request(
        &self,
        spec: &ChatSpec,
        target: &Target,
        ctx: &RequestContext,
        stream: bool,
        attempt: u32,
        deadline: Instant,
    ) -> WorkRequest {
        let remaining = deadline.saturating_duration_since(Instant::now());
        WorkRequest {
            request_id: ctx.request_id.clone(),
            provider: target.provider.to_string(),
            upstream_model: target.upstream_model.to_string(),
            spec: Some(spec.clone()),
            stream,
            deadline_ms: u64::try_from(remaining.as_millis())
                .unwrap_or(u64::MAX)
                .max(1),
            attempt,
        }
    }

    /// Tries the plan's targets in order. A lost worker is retried on the
    /// same provider (another replica); a failure another provider might
    /// not have moves to the next target; anything else ends the walk.
    async fn walk<'a, T, F, Fut>(
        &'a self,
        plan: &'a Plan,
        deadline: Instant,
        mut attempt: F,
    ) -> Result<(ServedBy, T), GatewayError>
    where
        F: FnMut(&'a Target, u32) -> Fut,
        Fut: std::future::Future<Output = Result<T, AttemptError>>,
    {
        let mut last = None;
        let mut n = 0;
        for target in plan.targets.iter() {
            let mut redeliveries = 0;
            loop {
                n += 1;
                if Instant::now() >= deadline {
                    return Err(GatewayError::DeadlineExceeded(self.request_timeout));
                }
                match attempt(target, n).await {
                    Ok(v) => return Ok((ServedBy::from(target), v)),
                    Err(e) => {
                        let e = e.into_gateway(&target.provider);
                        tracing::warn!(
                            provider = %target.provider,
                            model = %target.upstream_model,
                            attempt = n,
                            error = %e,
                            "attempt failed"
                        );
                        let disposition = disposition(&e);
                        last = Some(e);
                        match disposition {
                            Disposition::SameProviderAgain if redeliveries < MAX_REDELIVERIES => {
                                redeliveries += 1;
                            }
                            Disposition::SameProviderAgain | Disposition::NextTarget => break,
                            Disposition::Final => {
                                return Err(
                                    last.unwrap_or(GatewayError::Internal("no attempt".into()))
                                );
                            }
                        }
                    }
                }
            }
        }
        Err(last.unwrap_or_else(|| {
            GatewayError::Internal(format!("model `{}` has no routes", plan.model))
        }))
    }
}

enum Disposition {
    SameProviderAgain,
    NextTarget,
    Final,
}

fn disposition(e: &GatewayError) -> Disposition {
    match e {
        GatewayError::Upstream { error, .. } => {
            match ErrorKind::try_from(error.kind).unwrap_or(ErrorKind::Unspecified) {
                ErrorKind::RateLimited
                | ErrorKind::Overloaded
                | ErrorKind::Timeout
                | ErrorKind::Upstream
                | ErrorKind::Auth
                | ErrorKind::NotFound
                | ErrorKind::Internal
                | ErrorKind::Unspecified => Disposition::NextTarget,
                ErrorKind::Connection if error.message.starts_with("worker lost") => {
                    Disposition::SameProviderAgain
                }
                ErrorKind::Connection => Disposition::NextTarget,
                // Another provider would reject the same request.
                ErrorKind::BadRequest | ErrorKind::ContextTooLong => Disposition::Final,
            }
        }
        GatewayError::NoWorker { .. } => Disposition::NextTarget,
        GatewayError::MalformedJson(_)
        | GatewayError::InvalidRequest { .. }
        | GatewayError::ModelNotFound(_)
        | GatewayError::PayloadTooLarge { .. }
        | GatewayError::UnknownRoute { .. }
        | GatewayError::MethodNotAllowed { .. }
        | GatewayError::DeadlineExceeded(_)
        | GatewayError::ShuttingDown
        | GatewayError::Internal(_) => Disposition::Final,
    }
}

/// A failed attempt, before it is attributed to its provider.
enum AttemptError {
    Bus(BusError),
    Upstream(UpstreamError),
    Protocol(String),
}

impl AttemptError {
    fn into_gateway(self, provider: &str) -> GatewayError {
        match self {
            AttemptError::Bus(e) => GatewayError::from_bus(e, provider),
            AttemptError::Upstream(error) => GatewayError::Upstream {
                provider: provider.to_owned(),
                error,
            },
            AttemptError::Protocol(m) => {
                GatewayError::Internal(format!("worker for `{provider}` broke protocol: {m}"))
            }
        }
    }
}

fn stream_ended(provider: &str) -> BusError {
    BusError::WorkerLost {
        provider: provider.to_owned(),
        reason: "event stream ended before a terminal event".into(),
    }
}

async fn unary_attempt(
    bus: Arc<dyn Bus>,
    request: WorkRequest,
    headers: Headers,
) -> Result<ChatResult, AttemptError> {
    let provider = request.provider.clone();
    let mut call = bus
        .call(request, headers)
        .await
        .map_err(AttemptError::Bus)?;
    match call.next().await {
        Some(Ok(Event::Result(r))) => Ok(r),
        Some(Ok(Event::Error(e))) => Err(AttemptError::Upstream(e)),
        Some(Ok(other)) => Err(AttemptError::Protocol(format!(
            "unexpected event {other:?} for a unary call"
        ))),
        Some(Err(e)) => Err(AttemptError::Bus(e)),
        None => Err(AttemptError::Bus(stream_ended(&provider))),
    }
}

enum First {
    Chunk(ChatChunk),
    End(Option<Usage>),
}

async fn stream_attempt(
    bus: Arc<dyn Bus>,
    request: WorkRequest,
    headers: Headers,
) -> Result<(First, Call), AttemptError> {
    let provider = request.provider.clone();
    let mut call = bus
        .call(request, headers)
        .await
        .map_err(AttemptError::Bus)?;
    match call.next().await {
        Some(Ok(Event::Chunk(c))) => Ok((First::Chunk(c), call)),
        Some(Ok(Event::End(end))) => Ok((First::End(end.usage), call)),
        Some(Ok(Event::Error(e))) => Err(AttemptError::Upstream(e)),
        Some(Ok(other)) => Err(AttemptError::Protocol(format!(
            "unexpected event {other:?} for a stream"
        ))),
        Some(Err(e)) => Err(AttemptError::Bus(e)),
        None => Err(AttemptError::Bus(stream_ended(&provider))),
    }
}

/// The rest of a stream after its first event. Dropping it drops the call,
/// which cancels the upstream request.
fn continue_stream(
    first: First,
    call: Call,
    provider: String,
    deadline: Instant,
    timeout: Duration,
) -> ChatStream {
    let head = match first {
        First::Chunk(c) => StreamItem::Chunk(c),
        First::End(u) => StreamItem::Done(u),
    };
    let done = matches!(head, StreamItem::Done(_));
    let rest = futures_util::stream::unfold(Some((call, provider)), move |state| async move {
        let (mut call, provider) = state?;
        let next = tokio::time::timeout_at(deadline, call.next()).await;
        let item = match next {
            Err(_) => StreamItem::Failed(GatewayError::DeadlineExceeded(timeout)),
            Ok(Some(Ok(Event::Chunk(c)))) => {
                return Some((StreamItem::Chunk(c), Some((call, provider))));
            }
            Ok(Some(Ok(Event::End(end)))) => StreamItem::Done(end.usage),
            Ok(Some(Ok(Event::Error(error)))) => {
                StreamItem::Failed(GatewayError::Upstream { provider, error })
            }
            Ok(Some(Ok(other))) => StreamItem::Failed(GatewayError::Internal(format!(
                "worker for `{provider}` broke protocol: unexpected event {other:?} in a stream"
            ))),
            Ok(Some(Err(e))) => StreamItem::Failed(GatewayError::from_bus(e, &provider)),
            Ok(None) => {
                StreamItem::Failed(GatewayError::from_bus(stream_ended(&provider), &provider))
            }
        };
        Some((item, None))
    });
    let head = futures_util::stream::once(async move { head });
    if done {
        Box::pin(head)
    } else {
        Box::pin(head.chain(rest))
    }
}

/// What every front end checks, whatever shape the request came in.
pub fn validate_spec(spec: &ChatSpec) -> Result<(), GatewayError> {
    let invalid = |message: String, param: &str| GatewayError::InvalidRequest {
        message,
        param: Some(param.to_owned()),
    };
    if spec.model.trim().is_empty() {
        return Err(invalid(
            "you must provide a model parameter".into(),
            "model",
        ));
    }
    if spec.messages.is_empty() {
        return Err(invalid(
            "`messages` must contain at least one message".into(),
            "messages",
        ));
    }
    for (i, m) in spec.messages.iter().enumerate() {
        if m.role == Role::Unspecified as i32 || Role::try_from(m.role).is_err() {
            return Err(invalid(
                format!("messages[{i}].role is missing or unknown"),
                &format!("messages[{i}].role"),
            ));
        }
    }
    if let Some(t) = spec.temperature
        && !(0.0..=2.0).contains(&t)
    {
        return Err(invalid(
            format!("{t} is greater than the maximum of 2 or below 0 - 'temperature'"),
            "temperature",
        ));
    }
    if let Some(p) = spec.top_p
        && !(0.0..=1.0).contains(&p)
    {
        return Err(invalid(
            format!("{p} is not between 0 and 1 - 'top_p'"),
            "top_p",
        ));
    }
    Ok(())
}
