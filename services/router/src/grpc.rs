//! The gRPC front end: `switchyard.gateway.v1.GatewayService` over the same
//! gateway core as HTTP. Response metadata carries `x-request-id`,
//! `x-switchyard-provider` and `x-switchyard-model`, like HTTP headers.

use std::pin::Pin;
use std::sync::Arc;

use futures_util::{Stream, StreamExt};
use switchyard_proto::gateway::v1::gateway_service_server::GatewayService;
use switchyard_proto::gateway::v1::{
    ChatChunk, ChatRequest, ChatResponse, ChatSpec, ChatStreamRequest, ChatStreamResponse,
    ListModelsRequest, ListModelsResponse, Model,
};
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Request, Response, Status};

use crate::attempts::AttemptLog;
use crate::core::{Failed, Gateway, RequestContext, ServedBy, StreamItem};
use crate::error::GatewayError;
use crate::http::{ATTEMPTED_HEADER, ATTEMPTS_HEADER, MODEL_HEADER, PROVIDER_HEADER, REQUEST_ID};

pub struct GrpcGateway {
    gateway: Arc<Gateway>,
}

impl GrpcGateway {
    pub fn new(gateway: Arc<Gateway>) -> Self {
        Self { gateway }
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
    RequestContext {
        request_id,
        operation: "grpc_chat",
        headers,
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

#[tonic::async_trait]
impl GatewayService for GrpcGateway {
    async fn chat(&self, request: Request<ChatRequest>) -> Result<Response<ChatResponse>, Status> {
        let ctx = context(request.metadata());
        let spec = spec_of(request.into_inner().spec).map_err(|e| with_request_id(&ctx, &e))?;
        let (served, result) = self
            .gateway
            .chat(spec, &ctx)
            .await
            .map_err(|f| failed_status(&ctx, &f))?;
        let mut res = Response::new(ChatResponse {
            result: Some(result),
            provider: served.provider.clone(),
            upstream_model: served.upstream_model.clone(),
        });
        set_metadata(res.metadata_mut(), &ctx, Some(&served));
        Ok(res)
    }

    type ChatStreamStream = ChunkStream;

    async fn chat_stream(
        &self,
        request: Request<ChatStreamRequest>,
    ) -> Result<Response<ChunkStream>, Status> {
        let ctx = context(request.metadata());
        let spec = spec_of(request.into_inner().spec).map_err(|e| with_request_id(&ctx, &e))?;
        let (served, events) = self
            .gateway
            .chat_stream(spec, &ctx)
            .await
            .map_err(|f| failed_status(&ctx, &f))?;
        let provider = served.provider.clone();
        let upstream_model = served.upstream_model.clone();
        let mut last = ChatChunk::default();
        // gRPC clients always get the usage chunk: it costs nothing here and
        // a typed client has no `stream_options` to ask for it.
        let out = events.filter_map(move |item| {
            let msg = match item {
                StreamItem::Chunk(chunk) => {
                    last = ChatChunk {
                        choices: Vec::new(),
                        usage: None,
                        ..chunk.clone()
                    };
                    Some(Ok(ChatStreamResponse {
                        chunk: Some(chunk),
                        provider: provider.clone(),
                        upstream_model: upstream_model.clone(),
                    }))
                }
                StreamItem::Done(usage) => Some(Ok(ChatStreamResponse {
                    chunk: Some(ChatChunk {
                        usage: Some(usage.unwrap_or_default()),
                        ..last.clone()
                    }),
                    provider: provider.clone(),
                    upstream_model: upstream_model.clone(),
                })),
                StreamItem::Failed(e) => Some(Err(status(&e))),
            };
            std::future::ready(msg)
        });
        let mut res = Response::new(Box::pin(out) as ChunkStream);
        set_metadata(res.metadata_mut(), &ctx, Some(&served));
        Ok(res)
    }

    async fn list_models(
        &self,
        _request: Request<ListModelsRequest>,
    ) -> Result<Response<ListModelsResponse>, Status> {
        let models = self
            .gateway
            .list_models()
            .iter()
            .map(|m| Model {
                id: m.id.clone(),
                owned_by: m.owned_by.clone(),
                created: 0,
            })
            .collect();
        Ok(Response::new(ListModelsResponse { models }))
    }
}
