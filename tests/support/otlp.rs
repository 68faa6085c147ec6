//! A real OTLP/gRPC receiver for tests: the `TraceService` and
//! `MetricsService` of `opentelemetry-proto` served by tonic on 127.0.0.1
//! (port 0), collecting every span and metric it is sent, from any number
//! of processes. Tests wait for the spans they expect with
//! [`Receiver::wait_for`] and for metrics with [`Receiver::wait_for_metrics`]
//! (woken on every export, no polling sleeps).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_stream::wrappers::TcpListenerStream;

/// OTLP span kinds (`Span.SpanKind`).
pub const KIND_INTERNAL: i32 = 1;
pub const KIND_SERVER: i32 = 2;
pub const KIND_CLIENT: i32 = 3;
/// OTLP status codes (`Status.StatusCode`).
pub const STATUS_ERROR: i32 = 2;

/// An attribute value, flattened for assertions.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Int(i64),
    Double(f64),
    Bool(bool),
    Array(Vec<Value>),
    Other,
}

impl Value {
    fn from_any(v: Option<&AnyValue>) -> Value {
        match v.and_then(|v| v.value.as_ref()) {
            Some(any_value::Value::StringValue(s)) => Value::Str(s.clone()),
            Some(any_value::Value::IntValue(i)) => Value::Int(*i),
            Some(any_value::Value::DoubleValue(d)) => Value::Double(*d),
            Some(any_value::Value::BoolValue(b)) => Value::Bool(*b),
            Some(any_value::Value::ArrayValue(a)) => {
                Value::Array(a.values.iter().map(|v| Value::from_any(Some(v))).collect())
            }
            _ => Value::Other,
        }
    }
}

fn attributes(kvs: &[KeyValue]) -> BTreeMap<String, Value> {
    kvs.iter()
        .map(|kv| (kv.key.clone(), Value::from_any(kv.value.as_ref())))
        .collect()
}

#[derive(Debug, Clone)]
pub struct Event {
    pub name: String,
    pub attributes: BTreeMap<String, Value>,
}

/// One received span; ids in lowercase hex (as in `traceparent`).
#[derive(Debug, Clone)]
pub struct Span {
    /// The resource's `service.name`.
    pub service: String,
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    pub name: String,
    pub kind: i32,
    pub attributes: BTreeMap<String, Value>,
    pub events: Vec<Event>,
    pub status_code: i32,
    pub status_message: String,
}

impl Span {
    pub fn attr(&self, key: &str) -> Option<&Value> {
        self.attributes.get(key)
    }

    pub fn str(&self, key: &str) -> Option<&str> {
        match self.attr(key)? {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn int(&self, key: &str) -> Option<i64> {
        match self.attr(key)? {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    pub fn event(&self, name: &str) -> Option<&Event> {
        self.events.iter().find(|e| e.name == name)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One received metric (its data points are not kept: tests ask which
/// metrics arrived, from which service).
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    /// The resource's `service.name`.
    pub service: String,
    pub name: String,
}

/// The resource's `service.name`, empty when it has none.
fn service_name(resource: Option<&Resource>) -> String {
    resource
        .and_then(|r| r.attributes.iter().find(|kv| kv.key == "service.name"))
        .map(|kv| match Value::from_any(kv.value.as_ref()) {
            Value::Str(s) => s,
            _ => String::new(),
        })
        .unwrap_or_default()
}

#[derive(Default)]
struct Collected {
    spans: Mutex<Vec<Span>>,
    metrics: Mutex<Vec<Metric>>,
    /// Notified after every export request (spans or metrics) was stored.
    arrived: Notify,
}

struct Service(Arc<Collected>);

#[tonic::async_trait]
impl TraceService for Service {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut received = Vec::new();
        for rs in request.into_inner().resource_spans {
            let service = service_name(rs.resource.as_ref());
            for ss in rs.scope_spans {
                for s in ss.spans {
                    let status = s.status.unwrap_or_default();
                    received.push(Span {
                        service: service.clone(),
                        trace_id: hex(&s.trace_id),
                        span_id: hex(&s.span_id),
                        parent_span_id: hex(&s.parent_span_id),
                        name: s.name,
                        kind: s.kind,
                        attributes: attributes(&s.attributes),
                        events: s
                            .events
                            .iter()
                            .map(|e| Event {
                                name: e.name.clone(),
                                attributes: attributes(&e.attributes),
                            })
                            .collect(),
                        status_code: status.code,
                        status_message: status.message,
                    });
                }
            }
        }
        self.0.spans.lock().unwrap().extend(received);
        self.0.arrived.notify_waiters();
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Service {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        let mut received = Vec::new();
        for rm in request.into_inner().resource_metrics {
            let service = service_name(rm.resource.as_ref());
            for sm in rm.scope_metrics {
                received.extend(sm.metrics.into_iter().map(|m| Metric {
                    service: service.clone(),
                    name: m.name,
                }));
            }
        }
        self.0.metrics.lock().unwrap().extend(received);
        self.0.arrived.notify_waiters();
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

pub struct Receiver {
    pub addr: SocketAddr,
    collected: Arc<Collected>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    /// Starts on 127.0.0.1, port 0.
    pub async fn start() -> std::io::Result<Receiver> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let collected = Arc::new(Collected::default());
        let service = TraceServiceServer::new(Service(collected.clone()));
        let metrics = MetricsServiceServer::new(Service(collected.clone()));
        let task = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .add_service(metrics)
                .serve_with_incoming(TcpListenerStream::new(listener))
                .await;
        });
        Ok(Receiver {
            addr,
            collected,
            task,
        })
    }

    /// `http://127.0.0.1:PORT`, for `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<Span> {
        self.collected.spans.lock().unwrap().clone()
    }

    /// Every metric received so far, one entry per metric per export.
    pub fn metrics(&self) -> Vec<Metric> {
        self.collected.metrics.lock().unwrap().clone()
    }

    /// Waits until `done` holds for the spans received (at most `limit`),
    /// and returns them. Panics with what did arrive when time runs out.
    pub async fn wait_for(&self, limit: Duration, done: impl Fn(&[Span]) -> bool) -> Vec<Span> {
        self.wait_until(
            limit,
            || self.spans(),
            done,
            |s| format!("{} {} ({})", s.service, s.name, s.trace_id),
        )
        .await
    }

    /// Waits until `done` holds for the metrics received (at most `limit`),
    /// and returns them. Panics with what did arrive when time runs out.
    pub async fn wait_for_metrics(
        &self,
        limit: Duration,
        done: impl Fn(&[Metric]) -> bool,
    ) -> Vec<Metric> {
        self.wait_until(
            limit,
            || self.metrics(),
            done,
            |m| format!("{} {}", m.service, m.name),
        )
        .await
    }

    async fn wait_until<T>(
        &self,
        limit: Duration,
        read: impl Fn() -> Vec<T>,
        done: impl Fn(&[T]) -> bool,
        show: impl Fn(&T) -> String,
    ) -> Vec<T> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            // Registered before the check, so an export landing in between
            // still wakes us.
            let arrived = self.collected.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            let items = read();
            if done(&items) {
                return items;
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                let mut names: Vec<String> = items.iter().map(&show).collect();
                names.dedup();
                panic!(
                    "what was expected did not arrive within {limit:?}; received:\n{}",
                    names.join("\n")
                );
            }
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}
