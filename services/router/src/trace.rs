//! What the router puts on a request's trace: GenAI attributes on the
//! request span (set by the front end, current while the gateway runs), a
//! routing span, one span per attempt, the first-token event of a stream,
//! and usage and finish reasons when the answer is complete.
//!
//! Attributes go to the trace only ([`switchyard_telemetry::set_attribute`]):
//! log lines inside the request carry just `request_id` and `trace_id`.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::Stream;
use serde_json::json;
use switchyard_proto::bus::v1::work_request::Work;
use switchyard_proto::gateway::v1::{
    ChatChunk, ChatResult, ChatSpec, FinishReason, Message, Role, Usage, content_part::Part,
};
use switchyard_routing::{Ordering, Plan, Target};
use switchyard_telemetry::semconv::*;
use switchyard_telemetry::{KeyValue, add_event, set_attribute, set_error, set_string_array};
use tokio::time::Instant;
use tracing::Span;

use crate::core::{ChatStream, Failed, ServedBy, StreamItem};
use crate::error::GatewayError;

/// The low-cardinality name of a failure, for `error.type` and outcomes:
/// the error code of the answer, as the metrics' `outcome` label has it.
pub(crate) fn error_type(e: &GatewayError) -> &'static str {
    e.class().code.unwrap_or("error")
}

/// The request span as the gateway core sees it (the front end made it).
pub(crate) struct RequestTrace {
    span: Span,
    record_content: bool,
    started: Instant,
}

impl RequestTrace {
    /// Records what was asked on the current span.
    pub(crate) fn begin(spec: &ChatSpec, stream: bool, record_content: bool) -> Self {
        let span = Span::current();
        set_attribute(&span, GEN_AI_OPERATION_NAME, "chat");
        set_attribute(&span, GEN_AI_REQUEST_MODEL, spec.model.clone());
        set_attribute(&span, SWITCHYARD_STREAM, stream);
        if let Some(t) = spec.temperature {
            set_attribute(&span, GEN_AI_REQUEST_TEMPERATURE, t);
        }
        if let Some(p) = spec.top_p {
            set_attribute(&span, GEN_AI_REQUEST_TOP_P, p);
        }
        if let Some(m) = spec.max_tokens {
            set_attribute(&span, GEN_AI_REQUEST_MAX_TOKENS, i64::from(m));
        }
        if record_content {
            add_event(
                &span,
                EVENT_CONTENT_PROMPT,
                vec![KeyValue::new(GEN_AI_PROMPT, prompt_json(&spec.messages))],
            );
        }
        Self {
            span,
            record_content,
            started: Instant::now(),
        }
    }

    /// Records a non-chat request (`embeddings`, `images`, with or without
    /// the `grpc_` prefix of `RequestContext.operation`) on the current span.
    /// Inputs and prompts are not recorded: vectors of text and image
    /// prompts are as sensitive as chat content and rarely worth a trace.
    pub(crate) fn begin_operation(operation: &'static str, model: &str) -> Self {
        let span = Span::current();
        set_attribute(&span, GEN_AI_OPERATION_NAME, operation);
        set_attribute(&span, GEN_AI_REQUEST_MODEL, model.to_owned());
        set_attribute(&span, SWITCHYARD_STREAM, false);
        Self {
            span,
            record_content: false,
            started: Instant::now(),
        }
    }

    /// A complete non-chat answer: the model that answered (when it says)
    /// and usage.
    pub(crate) fn unary_result(&self, model: &str, u: Option<&Usage>) {
        set_attribute(&self.span, SWITCHYARD_OUTCOME, "ok");
        response(&self.span, "", model);
        usage(&self.span, u);
    }

    /// Who served, and how many attempts it took.
    pub(crate) fn served(&self, served: &ServedBy) {
        set_attribute(&self.span, GEN_AI_PROVIDER_NAME, served.provider.clone());
        set_attribute(
            &self.span,
            SWITCHYARD_ATTEMPTS,
            count(served.attempts.targets.len()),
        );
    }

    /// A complete (unary) answer.
    pub(crate) fn result(&self, result: &ChatResult) {
        set_attribute(&self.span, SWITCHYARD_OUTCOME, "ok");
        response(&self.span, &result.id, &result.model);
        set_string_array(
            &self.span,
            GEN_AI_RESPONSE_FINISH_REASONS,
            result
                .choices
                .iter()
                .map(|c| finish_reason(c.finish_reason).to_owned())
                .collect(),
        );
        usage(&self.span, result.usage.as_ref());
    }

    /// Where a unary answer's text goes on the trace, with
    /// `telemetry.record_content`: recorded by the caller once the answer
    /// is final (after the answer guardrails redacted it).
    pub(crate) fn completion(&self) -> Option<Completion> {
        self.record_content.then(|| Completion(self.span.clone()))
    }
}

/// See [`RequestTrace::completion`].
pub(crate) struct Completion(Span);

impl Completion {
    pub(crate) fn record(self, result: &ChatResult) {
        let texts: Vec<String> = result
            .choices
            .iter()
            .map(|c| c.message.as_ref().map(message_text).unwrap_or_default())
            .collect();
        completion_event(&self.0, &texts);
    }
}

impl RequestTrace {
    pub(crate) fn failed(&self, f: &Failed) {
        set_attribute(
            &self.span,
            SWITCHYARD_ATTEMPTS,
            count(f.attempts.targets.len()),
        );
        set_attribute(&self.span, SWITCHYARD_OUTCOME, error_type(&f.error));
        set_error(&self.span, error_type(&f.error), f.error.to_string());
    }

    /// The stream's first chunk arrived (the gateway returns a stream only
    /// then); usage and finish reasons are recorded when it ends. The
    /// winning attempt's span stays open as long as the stream.
    pub(crate) fn stream(self, events: ChatStream, attempt: Span) -> ChatStream {
        let ttft = self.started.elapsed();
        add_event(
            &self.span,
            EVENT_FIRST_TOKEN,
            vec![KeyValue::new(
                TIME_TO_FIRST_TOKEN_MS,
                i64::try_from(ttft.as_millis()).unwrap_or(i64::MAX),
            )],
        );
        Box::pin(Watched {
            inner: events,
            trace: self,
            _attempt: attempt,
            ended: false,
            id: String::new(),
            model: String::new(),
            finish: Vec::new(),
            texts: Vec::new(),
        })
    }
}

fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn response(span: &Span, id: &str, model: &str) {
    if !id.is_empty() {
        set_attribute(span, GEN_AI_RESPONSE_ID, id.to_owned());
    }
    if !model.is_empty() {
        set_attribute(span, GEN_AI_RESPONSE_MODEL, model.to_owned());
    }
}

fn usage(span: &Span, usage: Option<&Usage>) {
    if let Some(u) = usage {
        set_attribute(span, GEN_AI_USAGE_INPUT_TOKENS, i64::from(u.prompt_tokens));
        set_attribute(
            span,
            GEN_AI_USAGE_OUTPUT_TOKENS,
            i64::from(u.completion_tokens),
        );
    }
}

fn completion_event(span: &Span, texts: &[String]) {
    let body = json!(
        texts
            .iter()
            .map(|t| json!({"role": "assistant", "content": t}))
            .collect::<Vec<_>>()
    );
    add_event(
        span,
        EVENT_CONTENT_COMPLETION,
        vec![KeyValue::new(GEN_AI_COMPLETION, body.to_string())],
    );
}

/// OpenAI's spelling, which the GenAI conventions use too.
pub(crate) fn finish_reason(code: i32) -> &'static str {
    match FinishReason::try_from(code) {
        Ok(FinishReason::Stop) => "stop",
        Ok(FinishReason::Length) => "length",
        Ok(FinishReason::ToolCalls) => "tool_calls",
        Ok(FinishReason::ContentFilter) => "content_filter",
        Ok(FinishReason::Unspecified) | Err(_) => "",
    }
}

fn role(code: i32) -> &'static str {
    match Role::try_from(code) {
        Ok(Role::System) => "system",
        Ok(Role::User) => "user",
        Ok(Role::Assistant) => "assistant",
        Ok(Role::Tool) => "tool",
        Ok(Role::Developer) => "developer",
        Ok(Role::Unspecified) | Err(_) => "",
    }
}

/// Text parts joined; other parts (images, ...) are named, not copied.
fn message_text(m: &Message) -> String {
    m.content
        .iter()
        .filter_map(|p| match &p.part {
            Some(Part::Text(t)) => Some(t.clone()),
            Some(Part::ImageUrl(_)) => Some("[image]".to_owned()),
            Some(Part::Other(_)) => Some("[content part]".to_owned()),
            None => None,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn prompt_json(messages: &[Message]) -> String {
    json!(
        messages
            .iter()
            .map(|m| json!({"role": role(m.role), "content": message_text(m)}))
            .collect::<Vec<_>>()
    )
    .to_string()
}

/// A stream that notes what the trace needs from its chunks and records it
/// on the request span at the end: no span or event per chunk.
struct Watched {
    inner: ChatStream,
    trace: RequestTrace,
    _attempt: Span,
    /// The last item (end or failure) was seen.
    ended: bool,
    id: String,
    model: String,
    /// Finish reason per choice index.
    finish: Vec<&'static str>,
    /// Completion text per choice index (only when content is recorded).
    texts: Vec<String>,
}

impl Watched {
    fn chunk(&mut self, c: &ChatChunk) {
        if self.id.is_empty() && !c.id.is_empty() {
            self.id.clone_from(&c.id);
        }
        if self.model.is_empty() && !c.model.is_empty() {
            self.model.clone_from(&c.model);
        }
        for choice in &c.choices {
            let i = usize::try_from(choice.index).unwrap_or(usize::MAX);
            if i >= 64 {
                // More choices than anyone asks for: not worth tracking.
                continue;
            }
            let reason = finish_reason(choice.finish_reason);
            if !reason.is_empty() {
                if self.finish.len() <= i {
                    self.finish.resize(i + 1, "");
                }
                self.finish[i] = reason;
            }
            if self.trace.record_content
                && let Some(text) = &choice.content
            {
                if self.texts.len() <= i {
                    self.texts.resize(i + 1, String::new());
                }
                self.texts[i].push_str(text);
            }
        }
    }

    fn end(&mut self, u: Option<&Usage>) {
        let span = &self.trace.span;
        set_attribute(span, SWITCHYARD_OUTCOME, "ok");
        response(span, &self.id, &self.model);
        set_string_array(
            span,
            GEN_AI_RESPONSE_FINISH_REASONS,
            self.finish.iter().map(|r| (*r).to_owned()).collect(),
        );
        usage(span, u);
        if self.trace.record_content {
            completion_event(span, &self.texts);
        }
    }
}

impl Stream for Watched {
    type Item = StreamItem;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<StreamItem>> {
        let item = self.inner.as_mut().poll_next(cx);
        if let Poll::Ready(Some(item)) = &item {
            match item {
                StreamItem::Chunk(c) => self.chunk(c),
                StreamItem::Done(u) => {
                    self.ended = true;
                    self.end(u.as_ref());
                }
                StreamItem::Failed(e) => {
                    self.ended = true;
                    let span = &self.trace.span;
                    set_attribute(span, SWITCHYARD_OUTCOME, error_type(e));
                    set_error(span, error_type(e), e.to_string());
                }
            }
        }
        item
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        if !self.ended {
            // Dropped before its end: the client went away (the metrics
            // call it the same).
            set_attribute(&self.trace.span, SWITCHYARD_OUTCOME, "client_closed");
        }
    }
}

/// The routing decision (resolving the model and ordering its routes), a
/// child of the request span.
pub(crate) fn routing_span(model: &str) -> Span {
    let span = tracing::info_span!("routing", otel.name = "routing");
    set_attribute(&span, GEN_AI_REQUEST_MODEL, model.to_owned());
    span
}

pub(crate) fn routing_plan(span: &Span, plan: &Plan) {
    set_attribute(
        span,
        SWITCHYARD_STRATEGY,
        format!("{:?}", plan.strategy).to_lowercase(),
    );
}

pub(crate) fn routing_order(span: &Span, ordering: &Ordering) {
    set_string_array(
        span,
        SWITCHYARD_ROUTES,
        ordering
            .routes
            .iter()
            .map(|r| r.target.to_string())
            .collect(),
    );
    if !ordering.skipped.is_empty() {
        set_string_array(
            span,
            SWITCHYARD_ROUTES_SKIPPED,
            ordering
                .skipped
                .iter()
                .map(|(t, why)| format!("{t}: {why}"))
                .collect(),
        );
    }
}

/// The GenAI operation name (semantic conventions) of a unit of work, as
/// request and attempt spans and the worker's span carry it.
pub(crate) fn operation_name(work: &Work) -> &'static str {
    match work {
        Work::Chat(_) => "chat",
        Work::Embed(_) => "embeddings",
        Work::Image(_) => "image_generation",
    }
}

/// One attempt: a client span (the worker's span continues it) under the
/// request span; hedges and fallbacks are its siblings. `kind` says why it
/// was started (`first`, `fallback`, `retry`, `hedge`, `redelivery`).
pub(crate) fn attempt_span(
    operation: &'static str,
    target: &Target,
    n: u32,
    kind: &'static str,
) -> Span {
    let span = tracing::info_span!(
        "attempt",
        otel.name = %format_args!("attempt {}/{}", target.provider, target.upstream_model),
        otel.kind = "client",
    );
    set_attribute(&span, GEN_AI_OPERATION_NAME, operation);
    set_attribute(&span, GEN_AI_PROVIDER_NAME, target.provider.to_string());
    set_attribute(
        &span,
        GEN_AI_REQUEST_MODEL,
        target.upstream_model.to_string(),
    );
    set_attribute(&span, SWITCHYARD_ATTEMPT, i64::from(n));
    set_attribute(&span, SWITCHYARD_ATTEMPT_KIND, kind);
    span
}

/// Settles an attempt span with its outcome; an attempt dropped before it
/// finished (a hedge that lost, a request given up) is marked `cancelled`.
pub(crate) struct AttemptOutcome {
    span: Span,
    settled: bool,
}

impl AttemptOutcome {
    pub(crate) fn new(span: Span) -> Self {
        Self {
            span,
            settled: false,
        }
    }

    pub(crate) fn settle<T>(&mut self, result: &Result<T, GatewayError>) {
        self.settled = true;
        match result {
            Ok(_) => set_attribute(&self.span, SWITCHYARD_ATTEMPT_OUTCOME, "ok"),
            Err(e) => {
                set_attribute(&self.span, SWITCHYARD_ATTEMPT_OUTCOME, error_type(e));
                set_error(&self.span, error_type(e), e.to_string());
            }
        }
    }
}

impl Drop for AttemptOutcome {
    fn drop(&mut self) {
        if !self.settled {
            set_attribute(&self.span, SWITCHYARD_ATTEMPT_OUTCOME, "cancelled");
        }
    }
}
