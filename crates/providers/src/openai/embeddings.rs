//! OpenAI embeddings (`POST {base_url}/embeddings`): wire structs and the
//! translations both ways, like [`super::convert`] for chat.
//!
//! Router side: [`request_to_spec`] (client request in, validated as OpenAI
//! validates it) and [`result_to_response`] (answer out). Worker side:
//! [`spec_to_request`] (upstream request out) and [`response_to_result`]
//! (upstream answer in).
//!
//! - Inputs: a string or an array of strings become `EmbedSpec.inputs`, in
//!   order; the answer's `index` is the input's position. Token arrays (an
//!   array of integers, or an array of such arrays) have no canonical form:
//!   they travel verbatim in `EmbedSpec.extra.input`, which only this wire
//!   format understands; other formats answer 400.
//! - `encoding_format: "base64"` is served at the router edge: the upstream
//!   is always asked for floats, and [`result_to_response`] encodes each
//!   vector as base64 of its little-endian `f32` bytes (what OpenAI sends and
//!   the SDKs decode). So every provider kind supports it, and the canonical
//!   result is always plain floats.
//! - `dimensions` and `user` pass through; every other field goes to
//!   `extra` and on to an OpenAI-format upstream unchanged.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use switchyard_proto::gateway::v1::{self as pb, EmbedResult, EmbedSpec};
use switchyard_proto::json::{map_from_struct_ref, struct_from_map};

use super::convert::ConvertError;
use super::wire::Extra;
use super::{OpenAiProvider, parse_json};
use crate::{EmbedCall, ProviderError};

/// OpenAI's limit on inputs per request.
pub const MAX_INPUTS: usize = 2048;

/// `encoding_format` values.
pub const FLOAT: &str = "float";
pub const BASE64: &str = "base64";

// --- wire ------------------------------------------------------------------

/// `CreateEmbeddingRequest`: the body of `POST /v1/embeddings`.
///
/// `model` and `input` are lenient on decode (absent is allowed) so that
/// [`request_to_spec`] can refuse them with OpenAI's own messages.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingRequest {
    #[serde(default)]
    pub model: String,
    /// A string, an array of strings, an array of token ids, or an array of
    /// arrays of token ids; kept as JSON so every shape survives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding_format: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Every other field (vendor extensions such as `input_type`,
    /// `truncate`), passed through.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `CreateEmbeddingResponse`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingResponse {
    #[serde(default = "object_list")]
    pub object: String,
    pub data: Vec<EmbeddingObject>,
    #[serde(default)]
    pub model: String,
    /// Absent from some OpenAI-compatible servers.
    #[serde(default)]
    pub usage: EmbeddingUsage,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `Embedding`: one vector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingObject {
    #[serde(default = "object_embedding")]
    pub object: String,
    #[serde(default)]
    pub index: u32,
    pub embedding: EmbeddingVector,
    #[serde(flatten)]
    pub extra: Extra,
}

/// Floats, or their base64 encoding (`encoding_format: base64`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EmbeddingVector {
    Float(Vec<f32>),
    Base64(String),
}

/// The usage of an embeddings answer: no completion tokens.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingUsage {
    #[serde(default)]
    pub prompt_tokens: u32,
    #[serde(default)]
    pub total_tokens: u32,
    #[serde(flatten)]
    pub extra: Extra,
}

fn object_list() -> String {
    "list".to_owned()
}

fn object_embedding() -> String {
    "embedding".to_owned()
}

// --- router side -----------------------------------------------------------

/// The client's inputs, once validated.
enum Input {
    Texts(Vec<String>),
    /// Token ids (one array, or an array of arrays), kept as sent.
    Tokens(Value),
}

/// OpenAI's message for an input it cannot take.
fn invalid_input(detail: &str) -> ConvertError {
    ConvertError::new(
        "input",
        format!(
            "'$.input' is invalid: {detail}. Please check the API reference: https://platform.openai.com/docs/api-reference."
        ),
    )
}

fn is_token(v: &Value) -> bool {
    v.as_u64().is_some()
}

fn is_token_array(v: &Value) -> bool {
    v.as_array()
        .is_some_and(|a| !a.is_empty() && a.iter().all(is_token))
}

fn parse_input(input: Option<Value>) -> Result<Input, ConvertError> {
    match input {
        None | Some(Value::Null) => {
            Err(ConvertError::new("input", "'input' is a required property"))
        }
        Some(Value::String(s)) if s.is_empty() => Err(invalid_input("it must not be empty")),
        Some(Value::String(s)) => Ok(Input::Texts(vec![s])),
        Some(Value::Array(items)) => {
            if items.is_empty() {
                return Err(invalid_input("the array must not be empty"));
            }
            if items.len() > MAX_INPUTS {
                return Err(invalid_input(&format!(
                    "at most {MAX_INPUTS} inputs per request, got {}",
                    items.len()
                )));
            }
            if items.iter().all(Value::is_string) {
                let mut texts = Vec::with_capacity(items.len());
                for (i, v) in items.into_iter().enumerate() {
                    match v {
                        Value::String(s) if s.is_empty() => {
                            return Err(invalid_input(&format!("input[{i}] is empty")));
                        }
                        Value::String(s) => texts.push(s),
                        _ => {}
                    }
                }
                return Ok(Input::Texts(texts));
            }
            if items.iter().all(is_token) || items.iter().all(is_token_array) {
                return Ok(Input::Tokens(Value::Array(items)));
            }
            Err(invalid_input(
                "expected a string, an array of strings, an array of token ids or an array of arrays of token ids",
            ))
        }
        Some(_) => Err(invalid_input(
            "expected a string, an array of strings, or token ids",
        )),
    }
}

/// A client's OpenAI embeddings request as the canonical spec. Validates
/// what OpenAI validates before any upstream is called; `param` names the
/// offending field.
pub fn request_to_spec(req: EmbeddingRequest) -> Result<EmbedSpec, ConvertError> {
    let EmbeddingRequest {
        model,
        input,
        encoding_format,
        dimensions,
        user,
        mut extra,
    } = req;
    if model.trim().is_empty() {
        return Err(ConvertError::new(
            "model",
            "you must provide a model parameter",
        ));
    }
    let inputs = match parse_input(input)? {
        Input::Texts(t) => t,
        Input::Tokens(v) => {
            extra.insert("input".to_owned(), v);
            Vec::new()
        }
    };
    let encoding_format = match encoding_format.as_deref() {
        None | Some(FLOAT) => FLOAT,
        Some(BASE64) => BASE64,
        Some(other) => {
            return Err(ConvertError::new(
                "encoding_format",
                format!("Invalid value: '{other}'. Supported values are: 'float' and 'base64'."),
            ));
        }
    };
    if dimensions == Some(0) {
        return Err(ConvertError::new(
            "dimensions",
            "Invalid 'dimensions': integer below minimum value. Expected a value >= 1, but got 0 instead.",
        ));
    }
    Ok(EmbedSpec {
        model,
        inputs,
        dimensions,
        encoding_format: encoding_format.to_owned(),
        user: user.unwrap_or_default(),
        extra: (!extra.is_empty()).then(|| struct_from_map(extra)),
    })
}

/// The canonical result as OpenAI's answer, vectors ordered by `index` and
/// encoded as the client asked (`float`, or `base64` of little-endian
/// `f32`s).
pub fn result_to_response(r: &EmbedResult, encoding_format: &str) -> EmbeddingResponse {
    let base64 = encoding_format == BASE64;
    let mut data: Vec<EmbeddingObject> = r
        .data
        .iter()
        .map(|e| EmbeddingObject {
            object: object_embedding(),
            index: e.index,
            embedding: if base64 {
                EmbeddingVector::Base64(encode_f32_base64(&e.vector))
            } else {
                EmbeddingVector::Float(e.vector.clone())
            },
            extra: Extra::new(),
        })
        .collect();
    data.sort_by_key(|e| e.index);
    let usage = r.usage.as_ref().map(usage_to_wire).unwrap_or_default();
    EmbeddingResponse {
        object: object_list(),
        data,
        model: r.model.clone(),
        usage,
        extra: Extra::new(),
    }
}

fn usage_to_wire(u: &pb::Usage) -> EmbeddingUsage {
    EmbeddingUsage {
        prompt_tokens: u.prompt_tokens,
        total_tokens: u.total_tokens.max(u.prompt_tokens),
        extra: Extra::new(),
    }
}

// --- worker side -----------------------------------------------------------

/// The upstream request for `spec`. Floats are always asked for: base64 is
/// the router's business ([`result_to_response`]).
pub fn spec_to_request(
    spec: &EmbedSpec,
    upstream_model: &str,
) -> Result<EmbeddingRequest, ProviderError> {
    let mut extra = spec
        .extra
        .as_ref()
        .map(map_from_struct_ref)
        .unwrap_or_default();
    let tokens = extra.remove("input");
    let input = if !spec.inputs.is_empty() {
        Value::Array(spec.inputs.iter().cloned().map(Value::String).collect())
    } else if let Some(tokens) = tokens {
        tokens
    } else {
        return Err(ProviderError::unsupported_param(
            "input",
            "the request has no input to embed",
        ));
    };
    // The client's own `encoding_format` is served at the router edge.
    extra.remove("encoding_format");
    Ok(EmbeddingRequest {
        model: upstream_model.to_owned(),
        input: Some(input),
        encoding_format: Some(FLOAT.to_owned()),
        dimensions: spec.dimensions,
        user: (!spec.user.is_empty()).then(|| spec.user.clone()),
        extra,
    })
}

/// An upstream answer as the canonical result, ordered by `index`. A
/// base64 vector (from a server that ignored `encoding_format: float`) is
/// decoded.
pub fn response_to_result(resp: EmbeddingResponse) -> Result<EmbedResult, ProviderError> {
    let mut data = resp
        .data
        .into_iter()
        .map(|e| {
            let vector = match e.embedding {
                EmbeddingVector::Float(v) => v,
                EmbeddingVector::Base64(s) => decode_f32_base64(&s).ok_or_else(|| {
                    ProviderError::InvalidResponse(format!(
                        "embedding {} is neither a float array nor base64 of little-endian f32s",
                        e.index
                    ))
                })?,
            };
            Ok(pb::Embedding {
                index: e.index,
                vector,
            })
        })
        .collect::<Result<Vec<_>, ProviderError>>()?;
    data.sort_by_key(|e| e.index);
    let u = resp.usage;
    Ok(EmbedResult {
        model: resp.model,
        data,
        usage: Some(pb::Usage {
            prompt_tokens: u.prompt_tokens,
            total_tokens: if u.total_tokens == 0 {
                u.prompt_tokens
            } else {
                u.total_tokens
            },
            ..pb::Usage::default()
        }),
    })
}

// --- base64 ----------------------------------------------------------------

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 (padded) of the vector's little-endian `f32` bytes:
/// OpenAI's `encoding_format: base64`, which the SDKs decode with
/// `np.frombuffer(base64.b64decode(s), dtype="float32")`. A dozen lines
/// here rather than a dependency for one encoder.
pub fn encode_f32_base64(v: &[f32]) -> String {
    let bytes: Vec<u8> = v.iter().flat_map(|f| f.to_le_bytes()).collect();
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The inverse of [`encode_f32_base64`]; `None` for anything that is not
/// base64 of a whole number of `f32`s.
pub fn decode_f32_base64(s: &str) -> Option<Vec<f32>> {
    let s = s.trim_end_matches('=');
    let mut bytes = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0u32;
    for c in s.bytes() {
        let v = u32::try_from(ALPHABET.iter().position(|&a| a == c)?).ok()?;
        // Only the bits not yet emitted matter; masking keeps `acc` small.
        acc = ((acc << 6) | v) & 0x00ff_ffff;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            bytes.push(u8::try_from((acc >> bits) & 0xff).ok()?);
        }
    }
    if bytes.len() % 4 != 0 {
        return None;
    }
    Some(
        bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    )
}

// --- the provider's calls --------------------------------------------------

impl OpenAiProvider {
    /// `POST {base}/embeddings` (Azure: the deployment's `embeddings`).
    pub(super) async fn embed_call(&self, call: &EmbedCall) -> Result<EmbedResult, ProviderError> {
        let body = spec_to_request(&call.spec, &call.upstream_model)?;
        let url = self.operation_url(&call.upstream_model, &["embeddings"]);
        let fetch = async |deadline| {
            let url = url.clone();
            self.up
                .fetch_json(&call.request_id, url, &body, deadline)
                .await
        };
        let bytes = self
            .up
            .unary(
                "embeddings",
                &call.upstream_model,
                &url,
                call.timeout,
                fetch,
            )
            .await?;
        parse_json::<EmbeddingResponse>(&bytes).and_then(response_to_result)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::time::Duration;

    use serde_json::json;
    use switchyard_config::{ProviderConfig, Secret};

    use super::super::double::{Double, Script};
    use super::*;
    use crate::Provider;
    use crate::registry::http_client;

    fn spec(client: Value) -> EmbedSpec {
        request_to_spec(serde_json::from_value(client).unwrap()).unwrap()
    }

    fn refused(client: Value) -> ConvertError {
        request_to_spec(serde_json::from_value(client).unwrap()).unwrap_err()
    }

    async fn provider(script: Script) -> (OpenAiProvider, Double) {
        let (d, _) = Double::start(script).await;
        let mut c: ProviderConfig =
            serde_json::from_value(json!({"name": "openai", "kind": "openai"})).unwrap();
        c.base_url = Some(d.base_url());
        c.api_key = Some(Secret::new("sk-test-embed"));
        (OpenAiProvider::new(&c, http_client()).unwrap(), d)
    }

    fn call(spec: EmbedSpec) -> EmbedCall {
        EmbedCall {
            spec,
            upstream_model: "text-embedding-3-small".into(),
            request_id: "req-1".into(),
            timeout: None,
        }
    }

    #[test]
    fn validates_like_openai() {
        let e = refused(json!({"input": "x"}));
        assert_eq!(e.param.as_deref(), Some("model"));
        let e = refused(json!({"model": "m"}));
        assert_eq!(e.param.as_deref(), Some("input"));
        assert_eq!(e.message, "'input' is a required property");
        for bad in [
            json!(""),
            json!([]),
            json!(["a", ""]),
            json!(["a", 1]),
            json!([[1, 2], "a"]),
            json!([-1]),
            json!({"text": "a"}),
            json!(true),
        ] {
            let e = refused(json!({"model": "m", "input": bad}));
            assert_eq!(e.param.as_deref(), Some("input"), "{bad}");
            assert!(e.message.contains("'$.input' is invalid"), "{}", e.message);
        }
        let many: Vec<String> = (0..=MAX_INPUTS).map(|i| i.to_string()).collect();
        assert_eq!(
            refused(json!({"model": "m", "input": many}))
                .param
                .as_deref(),
            Some("input")
        );
        let e = refused(json!({"model": "m", "input": "a", "encoding_format": "int8"}));
        assert_eq!(e.param.as_deref(), Some("encoding_format"));
        assert!(e.message.contains("'int8'"));
        let e = refused(json!({"model": "m", "input": "a", "dimensions": 0}));
        assert_eq!(e.param.as_deref(), Some("dimensions"));
    }

    #[test]
    fn client_request_to_spec() {
        let s = spec(json!({
            "model": "embed", "input": ["b", "a"], "dimensions": 256,
            "encoding_format": "base64", "user": "u1", "input_type": "query"
        }));
        assert_eq!(s.model, "embed");
        assert_eq!(s.inputs, ["b", "a"]);
        assert_eq!(s.dimensions, Some(256));
        assert_eq!(s.encoding_format, "base64");
        assert_eq!(s.user, "u1");
        let extra = map_from_struct_ref(s.extra.as_ref().unwrap());
        assert_eq!(Value::Object(extra), json!({"input_type": "query"}));

        let s = spec(json!({"model": "embed", "input": "one"}));
        assert_eq!(s.inputs, ["one"]);
        assert_eq!(s.encoding_format, "float");
        assert!(s.extra.is_none());

        // Token arrays travel verbatim in extra.input.
        let s = spec(json!({"model": "embed", "input": [[1, 2], [3]]}));
        assert!(s.inputs.is_empty());
        let extra = map_from_struct_ref(s.extra.as_ref().unwrap());
        assert_eq!(extra["input"], json!([[1, 2], [3]]));
    }

    #[test]
    fn base64_round_trips_little_endian_f32() {
        // 1.0f32 = 00 00 80 3f; -2.5 = 00 00 20 c0.
        assert_eq!(encode_f32_base64(&[1.0]), "AACAPw==");
        assert_eq!(encode_f32_base64(&[1.0, -2.5]), "AACAPwAAIMA=");
        assert_eq!(encode_f32_base64(&[]), "");
        for v in [vec![], vec![0.5], vec![0.1, -0.2, 3.25], vec![1.0; 7]] {
            assert_eq!(decode_f32_base64(&encode_f32_base64(&v)).unwrap(), v);
        }
        assert_eq!(decode_f32_base64("AACA"), None);
        assert_eq!(decode_f32_base64("!!!!"), None);
    }

    #[test]
    fn result_to_openai_response_in_both_encodings() {
        let r = EmbedResult {
            model: "text-embedding-3-small".into(),
            data: vec![
                pb::Embedding {
                    index: 1,
                    vector: vec![-2.5],
                },
                pb::Embedding {
                    index: 0,
                    vector: vec![1.0, 0.5],
                },
            ],
            usage: Some(pb::Usage {
                prompt_tokens: 4,
                total_tokens: 4,
                ..Default::default()
            }),
        };
        assert_eq!(
            serde_json::to_value(result_to_response(&r, FLOAT)).unwrap(),
            json!({
                "object": "list",
                "data": [
                    {"object": "embedding", "index": 0, "embedding": [1.0, 0.5]},
                    {"object": "embedding", "index": 1, "embedding": [-2.5]}
                ],
                "model": "text-embedding-3-small",
                "usage": {"prompt_tokens": 4, "total_tokens": 4}
            })
        );
        let b = serde_json::to_value(result_to_response(&r, BASE64)).unwrap();
        assert_eq!(b["data"][0]["embedding"], "AACAPwAAAD8=");
        assert_eq!(b["data"][1]["embedding"], "AAAgwA==");
    }

    #[tokio::test]
    async fn sends_floats_request_and_orders_the_answer() {
        let (p, d) = provider(Script::Answer).await;
        let s = spec(json!({
            "model": "embed", "input": ["hello world", "bye"], "dimensions": 3,
            "encoding_format": "base64", "user": "u1", "input_type": "query"
        }));
        let r = p.embed(&call(s)).await.unwrap();
        let reqs = d.requests();
        assert_eq!(reqs.len(), 1);
        assert_eq!(
            reqs[0].body,
            json!({
                "model": "text-embedding-3-small",
                "input": ["hello world", "bye"],
                "encoding_format": "float",
                "dimensions": 3,
                "user": "u1",
                "input_type": "query"
            })
        );
        assert_eq!(
            reqs[0].headers["authorization"].to_str().unwrap(),
            "Bearer sk-test-embed"
        );
        assert_eq!(r.model, "text-embedding-3-small");
        let indexes: Vec<u32> = r.data.iter().map(|e| e.index).collect();
        assert_eq!(indexes, [0, 1]);
        assert_eq!(
            r.data[0].vector,
            super::super::double::embedding_for("hello world", 3)
        );
        assert_eq!(
            r.data[1].vector,
            super::super::double::embedding_for("bye", 3)
        );
        let u = r.usage.unwrap();
        assert_eq!((u.prompt_tokens, u.total_tokens), (3, 3));
    }

    #[tokio::test]
    async fn token_arrays_pass_through() {
        let (p, d) = provider(Script::Answer).await;
        let s = spec(json!({"model": "embed", "input": [[1, 2, 3], [4]]}));
        let r = p.embed(&call(s)).await.unwrap();
        assert_eq!(
            d.requests()[0].body,
            json!({"model": "text-embedding-3-small", "input": [[1, 2, 3], [4]], "encoding_format": "float"})
        );
        assert_eq!(r.data.len(), 2);
    }

    #[tokio::test]
    async fn out_of_order_and_base64_answers_are_normalised() {
        let (p, _d) = provider(Script::Json(json!({
            "object": "list",
            "data": [
                {"object": "embedding", "index": 1, "embedding": "AAAgwA=="},
                {"object": "embedding", "index": 0, "embedding": [1.0]}
            ],
            "model": "m"
        })))
        .await;
        let r = p
            .embed(&call(spec(json!({"model": "e", "input": ["a", "b"]}))))
            .await
            .unwrap();
        assert_eq!(r.data[0].vector, [1.0]);
        assert_eq!(r.data[1].vector, [-2.5]);
        assert_eq!(r.usage.unwrap().prompt_tokens, 0);
    }

    #[tokio::test]
    async fn upstream_errors_are_classified_and_scrubbed() {
        let (p, _d) = provider(Script::Status {
            status: 429,
            headers: vec![("retry-after", "3".into())],
            body: super::super::double::error_json(
                "Rate limit reached for sk-test-embed",
                "requests",
                None,
                Some("rate_limit_exceeded"),
            ),
        })
        .await;
        let e = p
            .embed(&call(spec(json!({"model": "e", "input": "a"}))))
            .await
            .unwrap_err();
        match e {
            ProviderError::RateLimited {
                message,
                retry_after,
            } => {
                assert!(!message.contains("sk-test-embed"), "{message}");
                assert_eq!(retry_after, Some(Duration::from_secs(3)));
            }
            other => panic!("{other:?}"),
        }

        let (p, _d) = provider(Script::Json(
            json!({"error": {"message": "nope", "type": "invalid_request_error"}}),
        ))
        .await;
        let e = p
            .embed(&call(spec(json!({"model": "e", "input": "a"}))))
            .await
            .unwrap_err();
        assert!(matches!(e, ProviderError::BadRequest { .. }), "{e:?}");

        let (p, _d) = provider(Script::Json(json!({"data": "x"}))).await;
        let e = p
            .embed(&call(spec(json!({"model": "e", "input": "a"}))))
            .await
            .unwrap_err();
        assert!(matches!(e, ProviderError::InvalidResponse(_)), "{e:?}");
    }

    #[tokio::test]
    async fn hang_times_out_at_the_call_deadline() {
        let (p, _d) = provider(Script::Hang).await;
        let mut c = call(spec(json!({"model": "e", "input": "a"})));
        c.timeout = Some(Duration::from_millis(100));
        let e = p.embed(&c).await.unwrap_err();
        assert_eq!(e, ProviderError::Timeout(Duration::from_millis(100)));
    }

    #[test]
    fn azure_and_plain_urls() {
        let azure: ProviderConfig = serde_json::from_value(json!({
            "name": "az", "kind": "azure-openai",
            "base_url": "https://res.openai.azure.com", "api_version": "2024-10-21"
        }))
        .unwrap();
        let p = OpenAiProvider::new(&azure, http_client()).unwrap();
        assert_eq!(
            p.operation_url("emb-deploy", &["embeddings"]).as_str(),
            "https://res.openai.azure.com/openai/deployments/emb-deploy/embeddings?api-version=2024-10-21"
        );
        let plain: ProviderConfig = serde_json::from_value(json!({
            "name": "o", "kind": "openai", "base_url": "http://127.0.0.1:9/v1/"
        }))
        .unwrap();
        let p = OpenAiProvider::new(&plain, http_client()).unwrap();
        assert_eq!(
            p.operation_url("m", &["images", "generations"]).as_str(),
            "http://127.0.0.1:9/v1/images/generations"
        );
    }
}
