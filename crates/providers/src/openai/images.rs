//! OpenAI image generation (`POST {base_url}/images/generations`): wire
//! structs and the translations both ways.
//!
//! Router side: [`request_to_spec`] and [`result_to_response`]; worker side:
//! [`spec_to_request`] and [`response_to_result`].
//!
//! `model`, `prompt`, `n`, `size`, `quality`, `response_format` and `user`
//! are canonical; everything else (`style`, `background`, `output_format`,
//! `moderation`, ...) travels in `ImageSpec.extra` and reaches an
//! OpenAI-format upstream unchanged. `size`, `quality` and `style` are
//! checked by the upstream, which knows which values its model takes.
//! `response_format` is passed as the client sent it: gpt-image-1 always
//! answers `b64_json` (and refuses the parameter), DALL·E defaults to
//! `url`. Usage is carried when the upstream reports it (gpt-image-1:
//! `input_tokens` / `output_tokens`).

use serde::{Deserialize, Serialize};
use switchyard_proto::gateway::v1::{self as pb, ImageResult, ImageSpec};
use switchyard_proto::json::{map_from_struct_ref, struct_from_map};

use super::convert::ConvertError;
use super::wire::Extra;
use super::{OpenAiProvider, parse_json};
use crate::{ImageCall, ProviderError};

/// OpenAI's bounds on `n`.
pub const MAX_IMAGES: u32 = 10;

/// `response_format` values.
pub const URL: &str = "url";
pub const B64_JSON: &str = "b64_json";

// --- wire ------------------------------------------------------------------

/// `CreateImageRequest`: the body of `POST /v1/images/generations`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageGenerationRequest {
    /// Optional at OpenAI (DALL·E 2 by default); the gateway needs it to
    /// route, so [`request_to_spec`] requires it.
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub prompt: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// `style`, `background`, `output_format`, ... passed through.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `ImagesResponse`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImagesResponse {
    #[serde(default)]
    pub created: i64,
    #[serde(default)]
    pub data: Vec<Image>,
    /// gpt-image-1 only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<ImageUsage>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `Image`: one of `url` and `b64_json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Image {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub b64_json: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revised_prompt: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// gpt-image-1's usage object.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageUsage {
    #[serde(default)]
    pub input_tokens: u32,
    #[serde(default)]
    pub output_tokens: u32,
    #[serde(default)]
    pub total_tokens: u32,
    /// `input_tokens_details` (text and image tokens).
    #[serde(flatten)]
    pub extra: Extra,
}

// --- router side -----------------------------------------------------------

/// A client's OpenAI image request as the canonical spec, validated as
/// OpenAI does before any upstream is called.
pub fn request_to_spec(req: ImageGenerationRequest) -> Result<ImageSpec, ConvertError> {
    let ImageGenerationRequest {
        model,
        prompt,
        n,
        size,
        quality,
        response_format,
        user,
        extra,
    } = req;
    if model.trim().is_empty() {
        return Err(ConvertError::new(
            "model",
            "you must provide a model parameter",
        ));
    }
    if prompt.trim().is_empty() {
        return Err(ConvertError::new(
            "prompt",
            "'prompt' is a required property and must not be empty",
        ));
    }
    if let Some(n) = n
        && !(1..=MAX_IMAGES).contains(&n)
    {
        return Err(ConvertError::new(
            "n",
            format!("Invalid 'n': {n}. Expected a value between 1 and {MAX_IMAGES}."),
        ));
    }
    if let Some(f) = response_format.as_deref()
        && f != URL
        && f != B64_JSON
    {
        return Err(ConvertError::new(
            "response_format",
            format!("Invalid value: '{f}'. Supported values are: 'url' and 'b64_json'."),
        ));
    }
    Ok(ImageSpec {
        model,
        prompt,
        n: n.unwrap_or(0),
        size: size.unwrap_or_default(),
        quality: quality.unwrap_or_default(),
        response_format: response_format.unwrap_or_default(),
        user: user.unwrap_or_default(),
        extra: (!extra.is_empty()).then(|| struct_from_map(extra)),
    })
}

/// The canonical result as OpenAI's answer.
pub fn result_to_response(r: &ImageResult) -> ImagesResponse {
    ImagesResponse {
        created: r.created,
        data: r
            .data
            .iter()
            .map(|i| Image {
                url: non_empty(&i.url),
                b64_json: non_empty(&i.b64_json),
                revised_prompt: non_empty(&i.revised_prompt),
                extra: Extra::new(),
            })
            .collect(),
        usage: r.usage.as_ref().map(|u| ImageUsage {
            input_tokens: u.prompt_tokens,
            output_tokens: u.completion_tokens,
            total_tokens: u.total_tokens,
            extra: Extra::new(),
        }),
        extra: Extra::new(),
    }
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

// --- worker side -----------------------------------------------------------

/// The upstream request for `spec`: what the client sent, under the route's
/// model name.
pub fn spec_to_request(spec: &ImageSpec, upstream_model: &str) -> ImageGenerationRequest {
    ImageGenerationRequest {
        model: upstream_model.to_owned(),
        prompt: spec.prompt.clone(),
        n: (spec.n > 0).then_some(spec.n),
        size: non_empty(&spec.size),
        quality: non_empty(&spec.quality),
        response_format: non_empty(&spec.response_format),
        user: non_empty(&spec.user),
        extra: spec
            .extra
            .as_ref()
            .map(map_from_struct_ref)
            .unwrap_or_default(),
    }
}

/// An upstream answer as the canonical result.
pub fn response_to_result(resp: ImagesResponse) -> ImageResult {
    ImageResult {
        created: resp.created,
        data: resp
            .data
            .into_iter()
            .map(|i| pb::GeneratedImage {
                url: i.url.unwrap_or_default(),
                b64_json: i.b64_json.unwrap_or_default(),
                revised_prompt: i.revised_prompt.unwrap_or_default(),
            })
            .collect(),
        usage: resp.usage.map(|u| pb::Usage {
            prompt_tokens: u.input_tokens,
            completion_tokens: u.output_tokens,
            total_tokens: if u.total_tokens == 0 {
                u.input_tokens.saturating_add(u.output_tokens)
            } else {
                u.total_tokens
            },
            ..pb::Usage::default()
        }),
    }
}

impl OpenAiProvider {
    /// `POST {base}/images/generations` (Azure: the deployment's).
    pub(super) async fn images_call(&self, call: &ImageCall) -> Result<ImageResult, ProviderError> {
        let body = spec_to_request(&call.spec, &call.upstream_model);
        let url = self.operation_url(&call.upstream_model, &["images", "generations"]);
        let fetch = async |deadline| {
            let url = url.clone();
            self.up
                .fetch_json(&call.request_id, url, &body, deadline)
                .await
        };
        let op = "image_generation";
        let bytes = self
            .up
            .unary(op, &call.upstream_model, &url, call.timeout, fetch)
            .await?;
        parse_json::<ImagesResponse>(&bytes).map(response_to_result)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use serde_json::{Value, json};
    use switchyard_config::{ProviderConfig, Secret};

    use super::super::double::{Double, Script};
    use super::*;
    use crate::Provider;
    use crate::registry::http_client;

    fn spec(client: Value) -> ImageSpec {
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
        c.api_key = Some(Secret::new("sk-test-img"));
        (OpenAiProvider::new(&c, http_client()).unwrap(), d)
    }

    fn call(spec: ImageSpec, model: &str) -> ImageCall {
        ImageCall {
            spec,
            upstream_model: model.into(),
            request_id: "req-1".into(),
            timeout: None,
        }
    }

    #[test]
    fn validates_like_openai() {
        assert_eq!(
            refused(json!({"prompt": "a cat"})).param.as_deref(),
            Some("model")
        );
        assert_eq!(
            refused(json!({"model": "m"})).param.as_deref(),
            Some("prompt")
        );
        assert_eq!(
            refused(json!({"model": "m", "prompt": " "}))
                .param
                .as_deref(),
            Some("prompt")
        );
        for n in [0, 11] {
            assert_eq!(
                refused(json!({"model": "m", "prompt": "p", "n": n}))
                    .param
                    .as_deref(),
                Some("n")
            );
        }
        let e = refused(json!({"model": "m", "prompt": "p", "response_format": "png"}));
        assert_eq!(e.param.as_deref(), Some("response_format"));
        assert!(e.message.contains("'png'"));
    }

    #[test]
    fn client_request_to_spec_keeps_style_in_extra() {
        let s = spec(json!({
            "model": "img", "prompt": "a lighthouse", "n": 2, "size": "1024x1024",
            "quality": "hd", "style": "vivid", "response_format": "b64_json", "user": "u"
        }));
        assert_eq!(
            (s.n, s.size.as_str(), s.quality.as_str()),
            (2, "1024x1024", "hd")
        );
        assert_eq!(s.response_format, "b64_json");
        assert_eq!(
            Value::Object(map_from_struct_ref(s.extra.as_ref().unwrap())),
            json!({"style": "vivid"})
        );
    }

    #[tokio::test]
    async fn dall_e_urls_with_the_exact_upstream_body() {
        let (p, d) = provider(Script::Answer).await;
        let s = spec(json!({
            "model": "img", "prompt": "a lighthouse", "n": 2, "size": "1024x1024",
            "quality": "hd", "style": "vivid", "response_format": "url", "user": "u"
        }));
        let r = p.images(&call(s, "dall-e-3")).await.unwrap();
        assert_eq!(
            d.requests()[0].body,
            json!({
                "model": "dall-e-3", "prompt": "a lighthouse", "n": 2, "size": "1024x1024",
                "quality": "hd", "response_format": "url", "user": "u", "style": "vivid"
            })
        );
        assert_eq!(r.data.len(), 2);
        assert!(r.data[0].url.starts_with("https://"), "{:?}", r.data[0]);
        assert!(r.data[0].b64_json.is_empty());
        assert!(r.usage.is_none());
        let out = serde_json::to_value(result_to_response(&r)).unwrap();
        assert!(out["data"][0].get("b64_json").is_none(), "{out}");
        assert!(out.get("usage").is_none(), "{out}");
    }

    #[tokio::test]
    async fn gpt_image_b64_with_usage() {
        let (p, d) = provider(Script::Answer).await;
        let s = spec(json!({"model": "img", "prompt": "a lighthouse"}));
        let r = p.images(&call(s, "gpt-image-1")).await.unwrap();
        assert_eq!(
            d.requests()[0].body,
            json!({"model": "gpt-image-1", "prompt": "a lighthouse"})
        );
        assert_eq!(r.data.len(), 1);
        assert!(!r.data[0].b64_json.is_empty());
        let u = r.usage.unwrap();
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, u.total_tokens),
            (50, 4160, 4210)
        );
        let out = serde_json::to_value(result_to_response(&r)).unwrap();
        assert_eq!(
            out["usage"],
            json!({"input_tokens": 50, "output_tokens": 4160, "total_tokens": 4210})
        );
    }

    #[tokio::test]
    async fn upstream_400_keeps_param() {
        let (p, _d) = provider(Script::Status {
            status: 400,
            headers: vec![],
            body: super::super::double::error_json(
                "Invalid size",
                "invalid_request_error",
                Some("size"),
                None,
            ),
        })
        .await;
        let e = p
            .images(&call(
                spec(json!({"model": "m", "prompt": "p"})),
                "dall-e-3",
            ))
            .await
            .unwrap_err();
        match e {
            ProviderError::BadRequest { param, .. } => assert_eq!(param.as_deref(), Some("size")),
            other => panic!("{other:?}"),
        }
    }
}
