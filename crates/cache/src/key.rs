//! Cache keys: what a request asks, canonically, under a tenant namespace.

use prost::Message;
use ring::digest::{Context, SHA256};
use switchyard_proto::gateway::v1::{ChatSpec, EmbedSpec};

/// A SHA-256 over the namespace and the canonical request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key(pub [u8; 32]);

impl Key {
    /// Lower-case hex, for backends that key on strings.
    pub fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// The key of a chat request in `namespace` (the tenant, or a namespace
/// tenants share). The request is the canonical `ChatSpec` the front ends
/// built, so key order and whitespace of the client's JSON play no part;
/// fields that do not change the answer are cleared first: `user` and
/// `include_usage` (the usage chunk is rendered from the stored usage when
/// a replay asks for it). prost encodes a message deterministically
/// (fields in tag order; `Struct` maps are `BTreeMap`s, so sorted).
pub fn chat_key(spec: &ChatSpec, namespace: &str) -> Key {
    let mut canonical = spec.clone();
    canonical.user.clear();
    canonical.include_usage = false;
    crate::key::digest(
        b"switchyard-cache/v1/chat\0",
        namespace,
        &canonical.encode_to_vec(),
    )
}

/// The key of one embeddings input: the request with only that input, so
/// a batch shares entries with any other batch (or single input) that asks
/// for the same text with the same model and parameters. `user` and
/// `encoding_format` are cleared (the gateway handles vectors as floats;
/// base64 is the front end's rendering).
pub fn embed_item_key(spec: &EmbedSpec, input: &str, namespace: &str) -> Key {
    let mut canonical = EmbedSpec {
        inputs: Vec::new(),
        ..spec.clone()
    };
    canonical.user.clear();
    canonical.encoding_format.clear();
    canonical.inputs.push(input.to_owned());
    crate::key::digest(
        b"switchyard-cache/v1/embed\0",
        namespace,
        &canonical.encode_to_vec(),
    )
}

/// SHA-256 over a domain tag, the namespace (length-prefixed, so no two
/// (namespace, body) pairs collide) and the canonical encoding.
pub(crate) fn digest(domain: &[u8], namespace: &str, canonical: &[u8]) -> Key {
    let mut ctx = Context::new(&SHA256);
    ctx.update(domain);
    ctx.update(&(namespace.len() as u64).to_be_bytes());
    ctx.update(namespace.as_bytes());
    ctx.update(canonical);
    let digest = ctx.finish();
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    Key(out)
}

/// The tenant namespace of a client credential (a bearer token or API
/// key): a SHA-256 of it, so keys never sit in the cache; `anonymous`
/// without one.
pub fn tenant(credential: Option<&str>) -> String {
    match credential.map(str::trim).filter(|c| !c.is_empty()) {
        None => "anonymous".to_owned(),
        Some(c) => {
            let d = ring::digest::digest(&SHA256, c.as_bytes());
            let hex: String = d.as_ref()[..16]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            format!("key:{hex}")
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use switchyard_providers::openai::{convert, wire};

    fn spec(json: &str) -> ChatSpec {
        let req: wire::ChatCompletionRequest = serde_json::from_str(json).unwrap();
        convert::request_to_spec(req).unwrap().0
    }

    const BASE: &str = r#"{"model": "m", "temperature": 0, "messages": [{"role": "user", "content": "hi"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "number"}}}}},
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "required": ["x"], "properties": {"x": {"type": "string"}}}}}],
        "logit_bias": {"1": 2, "3": 4}}"#;

    #[test]
    fn key_order_and_whitespace_do_not_matter() {
        let reordered = r#"{
            "logit_bias": {"3": 4, "1": 2},
            "tools": [{"function": {"parameters": {"properties": {"x": {"type": "string"}}, "required": ["x"], "type": "object"}, "name": "f"}, "type": "function"}],
            "response_format": {"json_schema": {"schema": {"properties": {"b": {"type": "number"}, "a": {"type": "string"}}, "type": "object"}, "name": "s"}, "type": "json_schema"},
            "messages": [ { "content": "hi", "role": "user" } ],
            "temperature": 0,
            "model": "m"
        }"#;
        assert_eq!(chat_key(&spec(BASE), "t"), chat_key(&spec(reordered), "t"));
    }

    #[test]
    fn what_does_not_change_the_answer_does_not_change_the_key() {
        let with_user = BASE.replacen(
            '{',
            r#"{"user": "u-1", "stream": true, "stream_options": {"include_usage": true},"#,
            1,
        );
        assert_eq!(chat_key(&spec(BASE), "t"), chat_key(&spec(&with_user), "t"));
    }

    #[test]
    fn parameters_that_change_the_answer_change_the_key() {
        let base = chat_key(&spec(BASE), "t");
        for (from, to) in [
            (r#""model": "m""#, r#""model": "n""#),
            (r#""temperature": 0"#, r#""temperature": 0.5"#),
            (r#""content": "hi""#, r#""content": "hi!""#),
            (r#""content": "hi""#, r#""content": "hi", "name": "bob""#),
            (r#""role": "user""#, r#""role": "system""#),
            (r#""name": "f""#, r#""name": "g""#),
            (r#""type": "number""#, r#""type": "integer""#),
            (r#""3": 4"#, r#""3": 5"#),
            (
                r#""temperature": 0"#,
                r#""temperature": 0, "max_tokens": 5"#,
            ),
            (r#""temperature": 0"#, r#""temperature": 0, "seed": 1"#),
            (r#""temperature": 0"#, r#""temperature": 0, "top_p": 0.5"#),
            (r#""temperature": 0"#, r#""temperature": 0, "stop": ["x"]"#),
            (
                r#""temperature": 0"#,
                r#""temperature": 0, "tool_choice": "required""#,
            ),
            (r#""temperature": 0"#, r#""temperature": 0, "n": 2"#),
        ] {
            let changed = BASE.replacen(from, to, 1);
            assert_ne!(changed, BASE, "{from}");
            assert_ne!(chat_key(&spec(&changed), "t"), base, "{from} -> {to}");
        }
    }

    #[test]
    fn tenants_are_isolated() {
        let s = spec(BASE);
        assert_ne!(chat_key(&s, "a"), chat_key(&s, "b"));
        // The length prefix keeps namespace and request apart.
        assert_ne!(chat_key(&s, "ab"), chat_key(&s, "a"));
        assert_eq!(chat_key(&s, "a").hex().len(), 64);
        assert_eq!(tenant(None), "anonymous");
        assert_eq!(tenant(Some(" ")), "anonymous");
        assert_ne!(tenant(Some("sk-a")), tenant(Some("sk-b")));
        assert!(!tenant(Some("sk-a")).contains("sk-a"));
    }

    #[test]
    fn embedding_items_are_keyed_alone() {
        let spec = EmbedSpec {
            model: "e".into(),
            inputs: vec!["a".into(), "b".into()],
            encoding_format: "base64".into(),
            user: "u".into(),
            ..EmbedSpec::default()
        };
        let single = EmbedSpec {
            inputs: vec!["zzz".into()],
            encoding_format: "float".into(),
            ..spec.clone()
        };
        assert_eq!(
            embed_item_key(&spec, "a", "t"),
            embed_item_key(&single, "a", "t")
        );
        assert_ne!(
            embed_item_key(&spec, "a", "t"),
            embed_item_key(&spec, "b", "t")
        );
        assert_ne!(
            embed_item_key(&spec, "a", "t"),
            embed_item_key(&spec, "a", "u")
        );
        let dims = EmbedSpec {
            dimensions: Some(8),
            ..spec.clone()
        };
        assert_ne!(
            embed_item_key(&spec, "a", "t"),
            embed_item_key(&dims, "a", "t")
        );
    }
}
