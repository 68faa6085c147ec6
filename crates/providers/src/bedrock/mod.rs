//! AWS Bedrock runtime: chat through the Converse API (`POST
//! /model/{modelId}/converse`, streamed `/converse-stream` as AWS
//! event-stream frames), embeddings through InvokeModel (`POST
//! /model/{modelId}/invoke`, Titan and Cohere bodies).
//!
//! The endpoint is `https://bedrock-runtime.{region}.amazonaws.com` unless
//! `base_url` names another (a VPC endpoint, a proxy, the test double).
//! Authentication: a Bedrock API key as `Authorization: Bearer` when one is
//! configured (`api_key`, `api_key_env`, default `AWS_BEARER_TOKEN_BEDROCK`),
//! else SigV4 with `aws` credentials or the standard `AWS_ACCESS_KEY_ID` /
//! `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN` variables, read when the
//! provider is built.
//!
//! [`wire`] holds the wire structs, [`convert`] the translations, [`stream`]
//! the ConverseStream adapter over [`eventstream`] framing, [`sign`] SigV4,
//! [`error`] the failure classification.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue};
use percent_encoding::utf8_percent_encode;
use switchyard_config::{ProviderConfig, Secret};
use switchyard_proto::gateway::v1::{ChatResult, EmbedResult, Embedding, Usage};
use url::Url;

use crate::http_call::{self, Opened, Upstream};
use crate::registry::BuildError;
use crate::{ChatCall, ChunkStream, EmbedCall, Provider, ProviderError};

pub mod convert;
pub mod error;
pub mod eventstream;
pub mod sign;
pub mod stream;
pub mod wire;

pub use error::{classify_error, classify_exception};

/// Titan embeds one input per call: this many calls run at once.
const TITAN_CONCURRENCY: usize = 4;
/// Cohere Embed takes at most 96 texts per call.
const COHERE_BATCH: usize = 96;

#[derive(Clone)]
enum Auth {
    /// `Authorization: Bearer <key>`, marked sensitive.
    Bearer(HeaderValue),
    SigV4(sign::Credentials),
    /// Neither: calls go unsigned (a proxy that signs, or a test double).
    None,
}

pub struct BedrockProvider {
    /// Only the configured headers: credentials are added per call.
    up: Upstream,
    /// Scheme, host and base path; operations are appended per call.
    base: Url,
    region: String,
    auth: Auth,
}

impl std::fmt::Debug for BedrockProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let auth = match self.auth {
            Auth::Bearer(_) => "api-key",
            Auth::SigV4(_) => "sigv4",
            Auth::None => "none",
        };
        f.debug_struct("BedrockProvider")
            .field("name", &self.up.name)
            .field("base", &self.base.as_str())
            .field("region", &self.region)
            .field("auth", &auth)
            .field("timeout", &self.up.timeout)
            .finish_non_exhaustive()
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

impl BedrockProvider {
    pub fn new(cfg: &ProviderConfig, http: reqwest::Client) -> Result<Self, BuildError> {
        let region = cfg
            .region
            .clone()
            .filter(|r| !r.trim().is_empty())
            .or_else(|| env("AWS_REGION"))
            .or_else(|| env("AWS_DEFAULT_REGION"));
        let default_url = |r: &str| format!("https://bedrock-runtime.{r}.amazonaws.com");
        let base_str = match (&cfg.base_url, &region) {
            (Some(u), _) => u.clone(),
            (None, Some(r)) => default_url(r),
            (None, None) => {
                return Err(BuildError::InvalidBaseUrl {
                    provider: cfg.name.clone(),
                    url: default_url("{region}"),
                    reason: "no region: set `region` (or AWS_REGION in the worker's environment)"
                        .into(),
                });
            }
        };
        let invalid_url = |reason: String| BuildError::InvalidBaseUrl {
            provider: cfg.name.clone(),
            url: base_str.clone(),
            reason,
        };
        let base = Url::parse(&base_str).map_err(|e| invalid_url(e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(invalid_url("the scheme must be http or https".into()));
        }
        if base.cannot_be_a_base() || base.host_str().is_none() {
            return Err(invalid_url("the URL has no host".into()));
        }
        if base.query().is_some() {
            // SigV4 would have to sign it, and Bedrock takes none.
            return Err(invalid_url("Bedrock endpoints take no query string".into()));
        }

        let mut secrets = Vec::new();
        // No key is no warning here: SigV4 is the usual way.
        let bearer = http_call::api_key(cfg, None, |k| format!("Bearer {k}"))?;
        let auth = if let Some((key, v)) = bearer {
            secrets.push(key);
            Auth::Bearer(v)
        } else {
            let creds = match &cfg.aws {
                Some(a) => Some(sign::Credentials {
                    access_key_id: a.access_key_id.clone(),
                    secret_access_key: a.secret_access_key.clone(),
                    session_token: a.session_token.clone(),
                }),
                None => match (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
                    (Some(id), Some(secret)) => Some(sign::Credentials {
                        access_key_id: Secret::new(id),
                        secret_access_key: Secret::new(secret),
                        session_token: env("AWS_SESSION_TOKEN").map(Secret::new),
                    }),
                    _ => None,
                },
            };
            match creds {
                Some(c) => {
                    // A session token is sent as a header: it must be one.
                    if let Some(t) = &c.session_token
                        && HeaderValue::from_str(t.expose()).is_err()
                    {
                        return Err(BuildError::InvalidApiKey {
                            provider: cfg.name.clone(),
                        });
                    }
                    if HeaderValue::from_str(c.access_key_id.expose()).is_err() {
                        return Err(BuildError::InvalidApiKey {
                            provider: cfg.name.clone(),
                        });
                    }
                    secrets.push(c.secret_access_key.clone());
                    secrets.extend(c.session_token.clone());
                    Auth::SigV4(c)
                }
                None => {
                    tracing::warn!(provider = %cfg.name, "no Bedrock API key and no AWS credentials; calling upstream unsigned");
                    Auth::None
                }
            }
        };
        let region = match (region, &auth) {
            (Some(r), _) => r,
            (None, Auth::SigV4(_)) => {
                return Err(invalid_url(
                    "SigV4 signing needs a region: set `region` (or AWS_REGION)".into(),
                ));
            }
            // Only signing uses the region; a bearer key or no auth with an
            // explicit base_url does not need one.
            (None, _) => String::new(),
        };

        let mut headers = HeaderMap::new();
        http_call::add_configured_headers(cfg, &mut headers)?;

        Ok(Self {
            up: Upstream::new(cfg, http, headers, secrets, classify_error),
            base,
            region,
            auth,
        })
    }

    /// `{base}/model/{modelId}/{operation}`. The model id is one path
    /// segment, percent-encoded with SigV4's unreserved set: ids contain `:`
    /// (`...-v1:0`) and inference-profile ARNs contain `/`.
    fn url(&self, model: &str, operation: &str) -> Url {
        let mut url = self.base.clone();
        let path = format!(
            "{}/model/{}/{operation}",
            self.base.path().trim_end_matches('/'),
            utf8_percent_encode(model, sign::UNRESERVED)
        );
        url.set_path(&path);
        url
    }

    /// The headers of one call: configured ones, content negotiation, and
    /// the credentials (signed over exactly the bytes sent).
    fn request_headers(&self, url: &Url, body: &[u8], accept: &'static str) -> HeaderMap {
        let mut h = self.up.headers.clone();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        h.insert(ACCEPT, HeaderValue::from_static(accept));
        if h.contains_key(AUTHORIZATION) {
            // A configured Authorization (a proxy with its own scheme) wins,
            // as for the other wire formats; signing beside it would only
            // replace it.
            return h;
        }
        match &self.auth {
            Auth::Bearer(v) => {
                h.insert(AUTHORIZATION, v.clone());
            }
            Auth::SigV4(creds) => {
                // reqwest sends Host as host[:port], the port only when it is
                // not the scheme's default: sign the same.
                let host = match (url.host_str(), url.port()) {
                    (Some(host), Some(port)) => format!("{host}:{port}"),
                    (Some(host), None) => host.to_owned(),
                    (None, _) => String::new(),
                };
                let signed = sign::sign(
                    &sign::Request {
                        method: "POST",
                        host: &host,
                        path: url.path(),
                        headers: &[("content-type", "application/json")],
                        payload: body,
                    },
                    creds,
                    &self.region,
                    sign::SERVICE,
                    SystemTime::now(),
                );
                let sensitive = |s: &str| {
                    // Built from header-safe parts (checked at build time):
                    // cannot fail, but never panic over it.
                    HeaderValue::from_str(s).map(|mut v| {
                        v.set_sensitive(true);
                        v
                    })
                };
                if let Ok(v) = HeaderValue::from_str(&signed.amz_date) {
                    h.insert("x-amz-date", v);
                }
                if let Some(Ok(v)) = signed.security_token.as_deref().map(sensitive) {
                    h.insert("x-amz-security-token", v);
                }
                if let Ok(v) = sensitive(&signed.authorization) {
                    h.insert(AUTHORIZATION, v);
                }
            }
            Auth::None => {}
        }
        h
    }

    /// Sends one POST; a non-2xx answer comes back classified.
    async fn post(
        &self,
        url: Url,
        body: Vec<u8>,
        accept: &'static str,
        deadline: Duration,
        request_id: &str,
    ) -> Result<reqwest::Response, ProviderError> {
        let headers = self.request_headers(&url, &body, accept);
        self.up.post(request_id, url, headers, body, deadline).await
    }

    fn context(
        &self,
        call: &ChatCall,
        headers: &HeaderMap,
        structured: Option<String>,
    ) -> convert::AnswerContext {
        convert::AnswerContext {
            id: headers
                .get("x-amzn-requestid")
                .and_then(|v| v.to_str().ok())
                .map_or_else(|| format!("bedrock-{}", call.request_id), str::to_owned),
            model: call.upstream_model.clone(),
            created: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
            structured_tool: structured,
        }
    }

    async fn chat_inner(
        &self,
        call: &ChatCall,
        prepared: convert::Prepared,
        deadline: Duration,
    ) -> Result<ChatResult, ProviderError> {
        let body = http_call::encode(&prepared.request)?;
        let url = self.url(&call.upstream_model, "converse");
        let resp = self
            .post(url, body, "application/json", deadline, &call.request_id)
            .await?;
        let ctx = self.context(call, resp.headers(), prepared.structured_tool);
        let body = http_call::read_body(resp, deadline).await?;
        parse_response(&body, &ctx)
    }

    /// Everything up to the stream: the part the deadline covers.
    async fn open_stream(
        &self,
        call: &ChatCall,
        prepared: convert::Prepared,
        deadline: Duration,
    ) -> Result<Opened, ProviderError> {
        let body = http_call::encode(&prepared.request)?;
        let url = self.url(&call.upstream_model, "converse-stream");
        let resp = self
            .post(
                url,
                body,
                "application/vnd.amazon.eventstream",
                deadline,
                &call.request_id,
            )
            .await?;
        let ctx = self.context(call, resp.headers(), prepared.structured_tool);
        if http_call::is_json(&resp) {
            // A proxy that does not stream may answer the whole Converse
            // response instead.
            let body = http_call::read_body(resp, deadline).await?;
            let result = parse_response(&body, &ctx)?;
            return Ok(Opened::Complete(crate::openai::convert::result_to_chunks(
                &result,
            )));
        }
        Ok(Opened::Streaming(Box::pin(stream::ConverseChunks::new(
            resp.bytes_stream(),
            ctx,
        ))))
    }

    // --- embeddings ------------------------------------------------------

    async fn invoke<T: serde::de::DeserializeOwned>(
        &self,
        model: &str,
        body: &impl serde::Serialize,
        deadline: Duration,
        request_id: &str,
    ) -> Result<(T, Option<u32>), ProviderError> {
        let body = http_call::encode(body)?;
        let resp = self
            .post(
                self.url(model, "invoke"),
                body,
                "application/json",
                deadline,
                request_id,
            )
            .await?;
        // InvokeModel reports the input token count in a header for every
        // model, including those whose body does not (Cohere).
        let tokens = resp
            .headers()
            .get("x-amzn-bedrock-input-token-count")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        let bytes = http_call::read_body(resp, deadline).await?;
        let parsed = serde_json::from_slice(&bytes).map_err(|e| http_call::invalid(e, &bytes))?;
        Ok((parsed, tokens))
    }

    async fn embed_titan(
        &self,
        call: &EmbedCall,
        deadline: Duration,
    ) -> Result<(Vec<Vec<f32>>, u32), ProviderError> {
        // Owned inputs: a closure over borrowed ones is not general enough
        // for the `Send` future async_trait needs.
        let calls = call
            .spec
            .inputs
            .clone()
            .into_iter()
            .map(|input| async move {
                let req = wire::TitanEmbedRequest {
                    input_text: input,
                    dimensions: call.spec.dimensions,
                    extra: wire::Extra::new(),
                };
                let (resp, header_tokens): (wire::TitanEmbedResponse, _) = self
                    .invoke(&call.upstream_model, &req, deadline, &call.request_id)
                    .await?;
                let tokens = if resp.input_text_token_count > 0 {
                    resp.input_text_token_count
                } else {
                    header_tokens.unwrap_or(0)
                };
                Ok::<_, ProviderError>((resp.embedding, tokens))
            });
        // `buffered` keeps input order while a few calls run at once; the
        // first failure ends the whole request (dropping the rest).
        let mut results = futures_util::stream::iter(calls).buffered(TITAN_CONCURRENCY);
        let mut vectors = Vec::with_capacity(call.spec.inputs.len());
        let mut tokens = 0u32;
        while let Some(r) = results.next().await {
            let (v, t) = r?;
            vectors.push(v);
            tokens = tokens.saturating_add(t);
        }
        Ok((vectors, tokens))
    }

    async fn embed_cohere(
        &self,
        call: &EmbedCall,
        deadline: Duration,
    ) -> Result<(Vec<Vec<f32>>, u32), ProviderError> {
        let input_type = call
            .spec
            .extra
            .as_ref()
            .and_then(|e| e.fields.get("input_type"))
            .and_then(|v| match &v.kind {
                Some(prost_types::value::Kind::StringValue(s)) => Some(s.clone()),
                _ => None,
            })
            .unwrap_or_else(|| "search_document".into());
        let mut vectors = Vec::with_capacity(call.spec.inputs.len());
        let mut tokens = 0u32;
        for batch in call.spec.inputs.chunks(COHERE_BATCH) {
            let mut extra = wire::Extra::new();
            if let Some(d) = call.spec.dimensions {
                // Embed v4 only; earlier models refuse it, which is the
                // honest answer to a request for shortened vectors.
                extra.insert("output_dimension".into(), d.into());
            }
            let req = wire::CohereEmbedRequest {
                texts: batch.to_vec(),
                input_type: input_type.clone(),
                extra,
            };
            let (resp, header_tokens): (wire::CohereEmbedResponse, _) = self
                .invoke(&call.upstream_model, &req, deadline, &call.request_id)
                .await?;
            let got = cohere_vectors(resp.embeddings)?;
            if got.len() != batch.len() {
                return Err(ProviderError::InvalidResponse(format!(
                    "Cohere returned {} embeddings for {} texts",
                    got.len(),
                    batch.len()
                )));
            }
            vectors.extend(got);
            tokens = tokens.saturating_add(header_tokens.unwrap_or(0));
        }
        Ok((vectors, tokens))
    }

    async fn embed_inner(
        &self,
        call: &EmbedCall,
        deadline: Duration,
    ) -> Result<EmbedResult, ProviderError> {
        let (vectors, tokens) = match EmbedFamily::of(&call.upstream_model) {
            Some(EmbedFamily::Titan) => self.embed_titan(call, deadline).await?,
            Some(EmbedFamily::Cohere) => self.embed_cohere(call, deadline).await?,
            None => {
                return Err(ProviderError::unsupported(
                    "bedrock",
                    "embeddings",
                    &call.upstream_model,
                ));
            }
        };
        Ok(EmbedResult {
            model: call.upstream_model.clone(),
            data: vectors
                .into_iter()
                .enumerate()
                .map(|(i, vector)| Embedding {
                    index: u32::try_from(i).unwrap_or(u32::MAX),
                    vector,
                })
                .collect(),
            usage: Some(Usage {
                prompt_tokens: tokens,
                total_tokens: tokens,
                ..Usage::default()
            }),
        })
    }
}

/// The InvokeModel body an embedding model takes, from its id (a bare id,
/// a cross-region profile `us.cohere.embed-v4:0`, or an ARN ending in one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EmbedFamily {
    Titan,
    Cohere,
}

impl EmbedFamily {
    fn of(model: &str) -> Option<Self> {
        let id = model.rsplit('/').next().unwrap_or(model);
        if id.contains("amazon.titan-embed") {
            Some(Self::Titan)
        } else if id.contains("cohere.embed") {
            Some(Self::Cohere)
        } else {
            None
        }
    }
}

/// `[[f32]]`, or `{"float": [[f32]]}` (when `embedding_types` was set).
fn cohere_vectors(v: serde_json::Value) -> Result<Vec<Vec<f32>>, ProviderError> {
    let v = match v {
        serde_json::Value::Object(mut m) => m.remove("float").unwrap_or(serde_json::Value::Null),
        other => other,
    };
    serde_json::from_value(v).map_err(|e| {
        ProviderError::InvalidResponse(format!("Cohere embeddings are not float vectors: {e}"))
    })
}

fn parse_response(body: &[u8], ctx: &convert::AnswerContext) -> Result<ChatResult, ProviderError> {
    serde_json::from_slice::<wire::ConverseResponse>(body)
        .map(|r| convert::response_to_result(r, ctx))
        .map_err(|e| http_call::invalid(e, body))
}

#[async_trait::async_trait]
impl Provider for BedrockProvider {
    fn kind(&self) -> &'static str {
        "bedrock"
    }

    async fn chat(&self, call: &ChatCall) -> Result<ChatResult, ProviderError> {
        // Refusals of what Bedrock cannot express come before any call.
        let prepared = convert::spec_to_request(&call.spec)?;
        let url = self.url(&call.upstream_model, "converse");
        let chat = async |deadline| self.chat_inner(call, prepared, deadline).await;
        self.up
            .unary("chat", &call.upstream_model, &url, call.timeout, chat)
            .await
    }

    async fn chat_stream(&self, call: &ChatCall) -> Result<ChunkStream, ProviderError> {
        let prepared = convert::spec_to_request(&call.spec)?;
        let url = self.url(&call.upstream_model, "converse-stream");
        let open = async |deadline| self.open_stream(call, prepared, deadline).await;
        self.up
            .stream(&call.upstream_model, &url, call.timeout, open)
            .await
    }

    async fn embed(&self, call: &EmbedCall) -> Result<EmbedResult, ProviderError> {
        if EmbedFamily::of(&call.upstream_model).is_none() {
            return Err(ProviderError::unsupported_param(
                "model",
                format!(
                    "Bedrock embeddings are served for Amazon Titan (amazon.titan-embed-*) and Cohere (cohere.embed-*) models, not `{}`",
                    call.upstream_model
                ),
            ));
        }
        let token_arrays = call
            .spec
            .extra
            .as_ref()
            .is_some_and(|e| e.fields.contains_key("input"));
        if call.spec.inputs.is_empty() && token_arrays {
            return Err(ProviderError::unsupported_param(
                "input",
                "Bedrock embedding models take text inputs, not token arrays",
            ));
        }
        let url = self.url(&call.upstream_model, "invoke");
        let embed = async |deadline| self.embed_inner(call, deadline).await;
        self.up
            .unary(
                "embeddings",
                &call.upstream_model,
                &url,
                call.timeout,
                embed,
            )
            .await
    }
}

#[cfg(test)]
mod double;

#[cfg(test)]
mod tests;
