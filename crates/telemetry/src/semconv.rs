//! Attribute and event names on switchyard's spans: the OpenTelemetry GenAI
//! semantic conventions where one exists, `switchyard.*` for ours. One list,
//! so the router, the worker and the docs spell them alike.

/// Always `chat` here.
pub const GEN_AI_OPERATION_NAME: &str = "gen_ai.operation.name";
/// The provider that served (the configured provider name, e.g. `openai`).
pub const GEN_AI_PROVIDER_NAME: &str = "gen_ai.provider.name";
/// The model asked for: on the router's request span the name the client
/// used, on attempt and upstream spans the upstream model sent.
pub const GEN_AI_REQUEST_MODEL: &str = "gen_ai.request.model";
/// The model that answered, as the upstream reported it.
pub const GEN_AI_RESPONSE_MODEL: &str = "gen_ai.response.model";
pub const GEN_AI_REQUEST_TEMPERATURE: &str = "gen_ai.request.temperature";
pub const GEN_AI_REQUEST_MAX_TOKENS: &str = "gen_ai.request.max_tokens";
pub const GEN_AI_REQUEST_TOP_P: &str = "gen_ai.request.top_p";
pub const GEN_AI_RESPONSE_ID: &str = "gen_ai.response.id";
/// String array, one entry per choice.
pub const GEN_AI_RESPONSE_FINISH_REASONS: &str = "gen_ai.response.finish_reasons";
pub const GEN_AI_USAGE_INPUT_TOKENS: &str = "gen_ai.usage.input_tokens";
pub const GEN_AI_USAGE_OUTPUT_TOKENS: &str = "gen_ai.usage.output_tokens";

/// Event on the request span when a stream's first chunk arrived.
pub const EVENT_FIRST_TOKEN: &str = "gen_ai.first_token";
/// Event attribute: milliseconds from the request's start to the first chunk.
pub const TIME_TO_FIRST_TOKEN_MS: &str = "switchyard.time_to_first_token_ms";
/// Events recording prompts and completions (only with
/// `telemetry.record_content: true`).
pub const EVENT_CONTENT_PROMPT: &str = "gen_ai.content.prompt";
pub const EVENT_CONTENT_COMPLETION: &str = "gen_ai.content.completion";
/// Event attributes carrying the content (JSON text).
pub const GEN_AI_PROMPT: &str = "gen_ai.prompt";
pub const GEN_AI_COMPLETION: &str = "gen_ai.completion";

/// Low-cardinality class of a failure (`upstream_rate_limited`, ...).
pub const ERROR_TYPE: &str = "error.type";
pub const HTTP_RESPONSE_STATUS_CODE: &str = "http.response.status_code";
pub const RPC_GRPC_STATUS_CODE: &str = "rpc.grpc.status_code";

/// The request's `x-request-id`: search for it to find a request's trace.
pub const SWITCHYARD_REQUEST_ID: &str = "switchyard.request_id";
/// Attempt number within a request, from 1 (hedges and fallbacks count).
pub const SWITCHYARD_ATTEMPT: &str = "switchyard.attempt";
/// Why an attempt was started: `first`, `fallback` (the previous target
/// failed), `retry` (the same target again, after backoff), `hedge` (the
/// previous attempt is slow and still running), `redelivery` (its worker
/// was lost).
pub const SWITCHYARD_ATTEMPT_KIND: &str = "switchyard.attempt.kind";
/// How an attempt ended: `ok`, the failure's class, or `cancelled` (a
/// hedge that lost, or the client left).
pub const SWITCHYARD_ATTEMPT_OUTCOME: &str = "switchyard.attempt.outcome";
/// How many attempts a request took.
pub const SWITCHYARD_ATTEMPTS: &str = "switchyard.attempts";
/// How the request ended: `ok` or the failure's class.
pub const SWITCHYARD_OUTCOME: &str = "switchyard.outcome";
pub const SWITCHYARD_STREAM: &str = "switchyard.stream";
/// The routing decision: targets in the order they would be tried.
pub const SWITCHYARD_ROUTES: &str = "switchyard.routes";
/// Targets left out of the order (cooling down, breaker open, ...).
pub const SWITCHYARD_ROUTES_SKIPPED: &str = "switchyard.routes.skipped";
pub const SWITCHYARD_STRATEGY: &str = "switchyard.strategy";
/// The HTTP status the upstream answered a failed call with (worker span).
pub const SWITCHYARD_UPSTREAM_STATUS: &str = "switchyard.upstream_status";
/// The wire format a provider speaks (`openai`, `demo`, ...).
pub const SWITCHYARD_PROVIDER_KIND: &str = "switchyard.provider.kind";

/// Metric attribute: `input` or `output` on `gen_ai.client.token.usage`.
pub const GEN_AI_TOKEN_TYPE: &str = "gen_ai.token.type";
/// Metric attribute: the configured provider name a worker serves.
pub const SWITCHYARD_PROVIDER: &str = "switchyard.provider";
/// Metric attribute: the upstream model of a target (gauges read from health).
pub const SWITCHYARD_UPSTREAM_MODEL: &str = "switchyard.upstream_model";
