//! The gRPC front end: `switchyard.gateway.v1.GatewayService` over the same
//! gateway core as HTTP. Response metadata carries `x-request-id`,
//! `x-switchyard-provider` and `x-switchyard-model`, like HTTP headers.

use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use futures_util::{Stream, StreamExt};
use switchyard_proto::gateway::v1::gateway_service_server::GatewayService;
use switchyard_proto::gateway::v1::{
    ChatRequest, ChatResponse, ChatSpec, ChatStreamRequest, ChatStreamResponse, EmbedRequest,
    EmbedResponse, GenerateImagesRequest, GenerateImagesResponse, ListModelsRequest,
    ListModelsResponse, Model,
};
use tonic::metadata::{MetadataMap, MetadataValue};

use crate::cache::{CACHE_HEADER, CacheRequest, SIMILARITY_HEADER};
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::access::{AccessInfo, AccessLine, GRPC};
use crate::attempts::AttemptLog;
use crate::core::{Failed, Gateway, RequestContext, ServedBy, StreamItem, UsageChunk};
use crate::error::GatewayError;
use crate::http::{
    ATTEMPTED_HEADER, ATTEMPTS_HEADER, MODEL_HEADER, OUTCOMES_HEADER, PROVIDER_HEADER, REQUEST_ID,
    ROUTING_HEADER, WARNINGS_HEADER,
};

pub struct GrpcGateway {
    gateway: Arc<Gateway>,
}

impl GrpcGateway {
    pub fn new(gateway: Arc<Gateway>) -> Self {
        Self { gateway }
    }

    /// The call's context with its authenticated caller, or the
    /// `UNAUTHENTICATED` status.
    async fn authorized<T>(&self, request: &Request<T>) -> Result<RequestContext, Status> {
        let ctx = context(request.metadata());
        let meta = request.metadata();
        let credential = crate::auth::credential(|name| meta.get(name)?.to_str().ok());
        // No peer address (an in-process transport) is not a loopback client.
        let peer = request.remote_addr().map(|a| a.ip());
        let loopback = peer.is_some_and(|ip| ip.is_loopback());
        match self.gateway.auth().authenticate(credential, loopback).await {
            Ok(caller) => {
                let mut ctx = ctx.with_caller(caller);
                ctx.who.client = peer;
                Ok(ctx)
            }
            Err(e) => {
                self.gateway
                    .spend()
                    .refused(&ctx.request_id, "grpc", peer, &e);
                Err(with_request_id(&ctx, &e))
            }
        }
    }
}

pub fn status(e: &GatewayError) -> Status {
    let mut s = Status::new(e.class().grpc, e.to_string());
    if let Some(code) = e.code()
        && let Ok(v) = MetadataValue::try_from(code)
    {
        s.metadata_mut().insert("x-switchyard-error-code", v);
    }
    s
}

fn context(meta: &MetadataMap) -> RequestContext {
    let request_id = meta
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let headers = ["traceparent", "tracestate"]
        .iter()
        .filter_map(|k| Some(((*k).to_owned(), meta.get(*k)?.to_str().ok()?.to_owned())))
        .collect();
    let get = |name: &str| meta.get(name)?.to_str().ok();
    let cache = CacheRequest::from_headers(get);
    RequestContext {
        request_id,
        operation: "grpc_chat",
        headers,
        who: crate::spend::Identity::from_headers(get, &cache.tenant),
        route: get(switchyard_routing::ROUTE_HEADER).map(str::to_owned),
        controls: None,
        cache,
        caller: None,
    }
}

fn attempt_metadata(meta: &mut MetadataMap, log: &AttemptLog) {
    if log.targets.is_empty() {
        return;
    }
    meta.insert(ATTEMPTS_HEADER, MetadataValue::from(log.targets.len()));
    if let Ok(v) = MetadataValue::try_from(log.describe()) {
        meta.insert(ATTEMPTED_HEADER, v);
    }
    if !log.outcomes.is_empty()
        && let Ok(v) = MetadataValue::try_from(log.describe_outcomes())
    {
        meta.insert(OUTCOMES_HEADER, v);
    }
    if let Some(Ok(v)) = log.routing.as_deref().map(MetadataValue::try_from) {
        meta.insert(ROUTING_HEADER, v);
    }
}

fn failed_status(ctx: &RequestContext, f: &Failed) -> Status {
    let mut s = with_request_id(ctx, &f.error);
    attempt_metadata(s.metadata_mut(), &f.attempts);
    s
}

fn set_metadata(meta: &mut MetadataMap, ctx: &RequestContext, served: Option<&ServedBy>) {
    if let Ok(v) = MetadataValue::try_from(ctx.request_id.as_str()) {
        meta.insert(REQUEST_ID, v);
    }
    if let Some(s) = served {
        attempt_metadata(meta, &s.attempts);
        if let Ok(v) = MetadataValue::try_from(s.provider.as_str()) {
            meta.insert(PROVIDER_HEADER, v);
        }
        if let Ok(v) = MetadataValue::try_from(s.upstream_model.as_str()) {
            meta.insert(MODEL_HEADER, v);
        }
        if !s.warnings.is_empty()
            && let Ok(v) = MetadataValue::try_from(s.warnings.join("; "))
        {
            meta.insert(WARNINGS_HEADER, v);
        }
        if let Some(status) = s.cache.as_str() {
            meta.insert(CACHE_HEADER, MetadataValue::from_static(status));
        }
        if let Some(v) = s.cache.similarity()
            && let Ok(v) = MetadataValue::try_from(v)
        {
            meta.insert(SIMILARITY_HEADER, v);
        }
    }
}

fn with_request_id(ctx: &RequestContext, e: &GatewayError) -> Status {
    let mut s = status(e);
    set_metadata(s.metadata_mut(), ctx, None);
    s
}

fn spec_of(spec: Option<ChatSpec>) -> Result<ChatSpec, GatewayError> {
    spec.ok_or_else(|| GatewayError::InvalidRequest {
        message: "`spec` is required".into(),
        param: Some("spec".into()),
    })
}

type ChunkStream = Pin<Box<dyn Stream<Item = Result<ChatStreamResponse, Status>> + Send>>;

/// The server span of one call: continues the caller's `traceparent`
/// metadata; `request_id` and `trace_id` go on every log line inside.
fn call_span(method: &str, ctx: &RequestContext) -> tracing::Span {
    let span = tracing::info_span!(
        "grpc",
        otel.name = %format_args!("switchyard.gateway.v1.GatewayService/{method}"),
        otel.kind = "server",
        request_id = %ctx.request_id,
        trace_id = tracing::field::Empty,
    );
    switchyard_telemetry::continue_trace(&span, &ctx.headers);
    switchyard_telemetry::set_attribute(&span, "rpc.system", "grpc");
    switchyard_telemetry::set_attribute(
        &span,
        "rpc.service",
        "switchyard.gateway.v1.GatewayService",
    );
    switchyard_telemetry::set_attribute(&span, "rpc.method", method.to_owned());
    span
}

/// Polls `inner` inside `span` (so log lines while streaming carry the
/// request's ids) and writes the access line when the stream is over.
fn in_span(mut inner: ChunkStream, span: tracing::Span, line: AccessLine) -> ChunkStream {
    let mut line = line;
    Box::pin(futures_util::stream::poll_fn(move |cx| {
        let _entered = span.enter();
        let item = inner.as_mut().poll_next(cx);
        match &item {
            Poll::Ready(None) => line.complete(),
            Poll::Ready(Some(Err(s))) => line.status(i64::from(s.code() as i32)),
            _ => {}
        }
        item
    }))
}

#[tonic::async_trait]
impl GatewayService for GrpcGateway {
    async fn chat(&self, request: Request<ChatRequest>) -> Result<Response<ChatResponse>, Status> {
        let ctx = self.authorized(&request).await?;
        let span = call_span("Chat", &ctx);
        let access = AccessInfo::default();
        let mut line = AccessLine::start(
            GRPC,
            "/switchyard.gateway.v1.GatewayService/Chat",
            &ctx.request_id,
            access.clone(),
            span.clone(),
        );
        let out: Result<Response<ChatResponse>, Status> = async {
            let spec = spec_of(request.into_inner().spec).map_err(|e| {
                access.error(&e);
                with_request_id(&ctx, &e)
            })?;
            access.requested(&spec.model);
            let (served, result) = self.gateway.chat(spec, &ctx).await.map_err(|f| {
                access.failed(&f);
                failed_status(&ctx, &f)
            })?;
            access.served(&served);
            access.usage(result.usage.as_ref());
            let mut res = Response::new(ChatResponse {
                result: Some(result),
                provider: served.provider.clone(),
                upstream_model: served.upstream_model.clone(),
            });
            set_metadata(res.metadata_mut(), &ctx, Some(&served));
            Ok(res)
        }
        .instrument(span)
        .await;
        match &out {
            Ok(_) => {
                line.status(0);
                line.complete();
            }
            Err(s) => line.status(i64::from(s.code() as i32)),
        }
        out
    }

    type ChatStreamStream = ChunkStream;

    async fn chat_stream(
        &self,
        request: Request<ChatStreamRequest>,
    ) -> Result<Response<ChunkStream>, Status> {
        let ctx = self.authorized(&request).await?;
        let span = call_span("ChatStream", &ctx);
        let access = AccessInfo::default();
        let mut line = AccessLine::start(
            GRPC,
            "/switchyard.gateway.v1.GatewayService/ChatStream",
            &ctx.request_id,
            access.clone(),
            span.clone(),
        );
        let started = async {
            let spec = spec_of(request.into_inner().spec).map_err(|e| {
                access.error(&e);
                with_request_id(&ctx, &e)
            })?;
            access.requested(&spec.model);
            self.gateway.chat_stream(spec, &ctx).await.map_err(|f| {
                access.failed(&f);
                failed_status(&ctx, &f)
            })
        }
        .instrument(span.clone())
        .await;
        let (served, events) = match started {
            Ok(v) => v,
            Err(s) => {
                line.status(i64::from(s.code() as i32));
                return Err(s);
            }
        };
        access.served(&served);
        line.status(0);
        let events = access.watch(events);
        let provider = served.provider.clone();
        let upstream_model = served.upstream_model.clone();
        let mut usage_chunk = UsageChunk::default();
        // gRPC clients always get the usage chunk: it costs nothing here and
        // a typed client has no `stream_options` to ask for it.
        let out = events.filter_map(move |item| {
            let msg = match item {
                StreamItem::Chunk(chunk) => {
                    usage_chunk.observe(&chunk);
                    Some(Ok(ChatStreamResponse {
                        chunk: Some(chunk),
                        provider: provider.clone(),
                        upstream_model: upstream_model.clone(),
                    }))
                }
                StreamItem::Done(usage) => Some(Ok(ChatStreamResponse {
                    chunk: Some(usage_chunk.finish(usage)),
                    provider: provider.clone(),
                    upstream_model: upstream_model.clone(),
                })),
                StreamItem::Failed(e) => Some(Err(status(&e))),
            };
            std::future::ready(msg)
        });
        let out = in_span(Box::pin(out), span, line);
        let mut res = Response::new(out);
        set_metadata(res.metadata_mut(), &ctx, Some(&served));
        Ok(res)
    }

    async fn list_models(
        &self,
        request: Request<ListModelsRequest>,
    ) -> Result<Response<ListModelsResponse>, Status> {
        let ctx = self.authorized(&request).await?;
        let models = self
            .gateway
            .list_models_for(ctx.caller.as_deref())
            .iter()
            .map(|m| Model {
                id: m.id.clone(),
                owned_by: m.owned_by.clone(),
                created: 0,
            })
            .collect();
        Ok(Response::new(ListModelsResponse { models }))
    }

    async fn embed(
        &self,
        request: Request<EmbedRequest>,
    ) -> Result<Response<EmbedResponse>, Status> {
        let ctx = self.authorized(&request).await?;
        let gateway = self.gateway.clone();
        let message = request.into_inner();
        unary_call(
            "Embed",
            "grpc_embeddings",
            ctx,
            message.spec,
            |spec| spec.model.clone(),
            move |spec, ctx| async move { gateway.embed(spec, &ctx).await },
            |r| r.usage.as_ref(),
            |result, served| EmbedResponse {
                result: Some(result),
                provider: served.provider.clone(),
                upstream_model: served.upstream_model.clone(),
            },
        )
        .await
    }

    async fn generate_images(
        &self,
        request: Request<GenerateImagesRequest>,
    ) -> Result<Response<GenerateImagesResponse>, Status> {
        let ctx = self.authorized(&request).await?;
        let gateway = self.gateway.clone();
        let message = request.into_inner();
        unary_call(
            "GenerateImages",
            "grpc_images",
            ctx,
            message.spec,
            |spec| spec.model.clone(),
            move |spec, ctx| async move { gateway.images(spec, &ctx).await },
            |r| r.usage.as_ref(),
            |result, served| GenerateImagesResponse {
                result: Some(result),
                provider: served.provider.clone(),
                upstream_model: served.upstream_model.clone(),
            },
        )
        .await
    }
}

/// One unary RPC beyond chat (`Embed`, `GenerateImages`): the same span,
/// access line, metadata and error statuses as `Chat`. `operation` is the
/// metrics label (`RequestContext::operation`).
#[allow(clippy::too_many_arguments)]
async fn unary_call<S, T, R, Fut>(
    method: &'static str,
    operation: &'static str,
    mut ctx: RequestContext,
    spec: Option<S>,
    model_of: impl FnOnce(&S) -> String,
    serve: impl FnOnce(S, RequestContext) -> Fut,
    usage_of: impl FnOnce(&T) -> Option<&switchyard_proto::gateway::v1::Usage>,
    respond: impl FnOnce(T, &ServedBy) -> R,
) -> Result<Response<R>, Status>
where
    Fut: std::future::Future<Output = Result<(ServedBy, T), Failed>>,
{
    ctx.operation = operation;
    let span = call_span(method, &ctx);
    let access = AccessInfo::default();
    let mut line = AccessLine::start(
        GRPC,
        &format!("/switchyard.gateway.v1.GatewayService/{method}"),
        &ctx.request_id,
        access.clone(),
        span.clone(),
    );
    let out: Result<Response<R>, Status> = async {
        let spec = spec.ok_or_else(|| {
            let e = GatewayError::InvalidRequest {
                message: "`spec` is required".into(),
                param: Some("spec".into()),
            };
            access.error(&e);
            with_request_id(&ctx, &e)
        })?;
        access.requested(&model_of(&spec));
        let (served, result) = serve(spec, ctx.clone()).await.map_err(|f| {
            access.failed(&f);
            failed_status(&ctx, &f)
        })?;
        access.served(&served);
        access.usage(usage_of(&result));
        let mut res = Response::new(respond(result, &served));
        set_metadata(res.metadata_mut(), &ctx, Some(&served));
        Ok(res)
    }
    .instrument(span)
    .await;
    match &out {
        Ok(_) => {
            line.status(0);
            line.complete();
        }
        Err(s) => line.status(i64::from(s.code() as i32)),
    }
    out
}
