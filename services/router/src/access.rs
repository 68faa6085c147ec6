//! One access-log line per request, at INFO under the target
//! `switchyard::access`: method, path, status, model, provider, upstream
//! model, attempts, tokens when known, latency, outcome, request id and
//! trace id. Written when the answer is over (a stream's end, or the client
//! leaving), so a streamed request's line has its tokens and full latency.
//!
//! Only values the gateway chose or the client named in the URL and body's
//! `model` appear: never headers, keys or content.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use futures_util::StreamExt;
use http_body::{Frame, SizeHint};
use switchyard_proto::gateway::v1::Usage;
use switchyard_telemetry::semconv::{
    HTTP_RESPONSE_STATUS_CODE, RPC_GRPC_STATUS_CODE, SWITCHYARD_REQUEST_ID,
};
use tokio::time::Instant;
use tracing::Span;

use crate::core::{ChatStream, Failed, ServedBy, StreamItem};
use crate::error::GatewayError;
use crate::trace::error_type;

/// What the handler learns about a request, for its access line. Shared
/// with the response stream, which adds usage at the end.
#[derive(Clone, Default)]
pub struct AccessInfo(Arc<Mutex<Fields>>);

#[derive(Default)]
struct Fields {
    model: Option<String>,
    provider: Option<String>,
    upstream_model: Option<String>,
    attempts: Option<usize>,
    input_tokens: Option<u32>,
    output_tokens: Option<u32>,
    outcome: Option<&'static str>,
    /// Who called (authenticated), for the handler and the line.
    caller: Option<Arc<switchyard_auth::Principal>>,
    /// The client's address, for audit records.
    peer: Option<std::net::IpAddr>,
}

impl AccessInfo {
    fn with(&self, f: impl FnOnce(&mut Fields)) {
        f(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner));
    }

    pub(crate) fn set_caller(
        &self,
        caller: Option<Arc<switchyard_auth::Principal>>,
        peer: Option<std::net::IpAddr>,
    ) {
        self.with(|f| {
            f.caller = caller;
            f.peer = peer;
        });
    }

    /// The authenticated caller (`None` on an open gateway) and the
    /// client's address.
    pub(crate) fn caller(
        &self,
    ) -> (
        Option<Arc<switchyard_auth::Principal>>,
        Option<std::net::IpAddr>,
    ) {
        let f = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        (f.caller.clone(), f.peer)
    }

    pub(crate) fn requested(&self, model: &str) {
        self.with(|f| f.model = Some(model.to_owned()));
    }

    pub(crate) fn served(&self, served: &ServedBy) {
        self.with(|f| {
            f.provider = Some(served.provider.clone());
            f.upstream_model = Some(served.upstream_model.clone());
            f.attempts = Some(served.attempts.targets.len());
            f.outcome = Some("ok");
        });
    }

    pub(crate) fn usage(&self, usage: Option<&Usage>) {
        if let Some(u) = usage {
            self.with(|f| {
                f.input_tokens = Some(u.prompt_tokens);
                f.output_tokens = Some(u.completion_tokens);
            });
        }
    }

    pub(crate) fn error(&self, e: &GatewayError) {
        self.with(|f| f.outcome = Some(error_type(e)));
    }

    pub(crate) fn failed(&self, failed: &Failed) {
        self.with(|f| {
            f.attempts = Some(failed.attempts.targets.len());
            f.outcome = Some(error_type(&failed.error));
        });
    }

    /// Notes a stream's usage or failure as its items pass.
    pub(crate) fn watch(&self, events: ChatStream) -> ChatStream {
        let info = self.clone();
        Box::pin(events.inspect(move |item| match item {
            StreamItem::Chunk(_) => {}
            StreamItem::Done(u) => info.usage(u.as_ref()),
            StreamItem::Failed(e) => info.error(e),
        }))
    }
}

/// The access line of one request, written when dropped.
pub(crate) struct AccessLine {
    method: &'static str,
    path: String,
    request_id: String,
    trace_id: Option<String>,
    status: Option<i64>,
    grpc: bool,
    started: Instant,
    /// The answer was delivered to its end (false: the client left early,
    /// or a stream broke).
    complete: bool,
    info: AccessInfo,
    /// The request's span, kept open until the line is written so the
    /// final status lands on it.
    span: Span,
}

impl AccessLine {
    /// `span` is the request's span (its trace id goes in the line).
    pub(crate) fn start(
        method: &'static str,
        path: &str,
        request_id: &str,
        info: AccessInfo,
        span: Span,
    ) -> Self {
        switchyard_telemetry::set_attribute(&span, SWITCHYARD_REQUEST_ID, request_id.to_owned());
        Self {
            method,
            path: path.to_owned(),
            request_id: request_id.to_owned(),
            trace_id: switchyard_telemetry::trace_id(&span),
            status: None,
            grpc: method == GRPC,
            started: Instant::now(),
            complete: false,
            info,
            span,
        }
    }

    pub(crate) fn status(&mut self, status: i64) {
        self.status = Some(status);
        let key = if self.grpc {
            RPC_GRPC_STATUS_CODE
        } else {
            HTTP_RESPONSE_STATUS_CODE
        };
        switchyard_telemetry::set_attribute(&self.span, key, status);
        let failed = if self.grpc {
            // INTERNAL, UNAVAILABLE, DEADLINE_EXCEEDED, UNKNOWN, ... are the
            // server's failures; client mistakes are not errors of this span.
            matches!(status, 2 | 4 | 13 | 14 | 15)
        } else {
            status >= 500
        };
        if failed {
            let outcome = self.info.0.lock().map(|f| f.outcome).ok().flatten();
            switchyard_telemetry::set_error(
                &self.span,
                outcome.unwrap_or("error"),
                format!("answered {status}"),
            );
        }
    }

    pub(crate) fn complete(&mut self) {
        self.complete = true;
    }
}

/// `method` of gRPC calls' access lines.
pub(crate) const GRPC: &str = "gRPC";

impl Drop for AccessLine {
    fn drop(&mut self) {
        let f = self.info.0.lock().unwrap_or_else(PoisonError::into_inner);
        let latency_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        // Served, but not to the end: the client left (as the metrics say).
        let outcome = match f.outcome {
            Some("ok") if !self.complete => Some("client_closed"),
            o => o,
        };
        // The key's name or the token's subject: who, never the secret.
        let caller = f.caller.as_ref().map(|p| match &p.credential {
            switchyard_auth::Credential::Key { name, .. } => name.as_str(),
            switchyard_auth::Credential::Jwt { subject } => subject.as_str(),
        });
        // Not inside the request's span: the line names its ids itself, and
        // is not an event on the trace.
        tracing::info!(
            target: "switchyard::access",
            parent: None,
            method = self.method,
            path = %self.path,
            status = self.status,
            caller,
            team = f.caller.as_ref().and_then(|p| p.team.as_deref()),
            model = f.model.as_deref(),
            provider = f.provider.as_deref(),
            upstream_model = f.upstream_model.as_deref(),
            attempts = f.attempts,
            input_tokens = f.input_tokens,
            output_tokens = f.output_tokens,
            latency_ms,
            outcome,
            complete = self.complete,
            request_id = %self.request_id,
            trace_id = self.trace_id.as_deref(),
            "access"
        );
    }
}

/// Probes and scrapes: frequent, and nobody traces them.
pub(crate) fn quiet(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/metrics")
}

/// Axum middleware (inside the trace layer, so the request span is
/// current): gives the handler an [`AccessInfo`] and writes the line when
/// the response body is done.
pub(crate) async fn http(mut req: Request, next: Next) -> Response {
    let info = AccessInfo::default();
    req.extensions_mut().insert(info.clone());
    if quiet(req.uri().path()) {
        return next.run(req).await;
    }
    let method = method_name(req.method());
    let request_id = req
        .headers()
        .get(crate::http::REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let mut line = AccessLine::start(method, req.uri().path(), &request_id, info, Span::current());
    let res = next.run(req).await;
    line.status(i64::from(res.status().as_u16()));
    res.map(|body| {
        Body::new(LoggedBody {
            inner: body,
            ended: false,
            line: Some(line),
        })
    })
}

/// `&'static` so the line needs no allocation for it; other methods are
/// rare enough to share one name.
fn method_name(m: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// A response body that writes the access line when it is dropped: after
/// its last frame was sent, or when the client went away.
struct LoggedBody {
    inner: Body,
    ended: bool,
    line: Option<AccessLine>,
}

impl http_body::Body for LoggedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            this.ended = true;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        if let Some(mut line) = self.line.take() {
            // A whole body may be sent without being polled to its end.
            if self.ended || http_body::Body::is_end_stream(&self.inner) {
                line.complete();
            }
        }
    }
}
