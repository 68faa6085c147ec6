//! What the router stores for a chat answer: the canonical `ChatResult`,
//! protobuf-encoded. A streamed answer is assembled into the result it
//! stands for ([`StreamAssembler`]), so a stream and a unary request for
//! the same question share one entry.

use std::collections::BTreeMap;

use bytes::Bytes;
use prost::Message as _;
use switchyard_proto::gateway::v1::content_part::Part;
use switchyard_proto::gateway::v1::{
    ChatChunk, ChatResult, Choice, ChoiceDelta, ContentPart, FinishReason, Message, Role, ToolCall,
    ToolCallDelta, Usage,
};

/// A stored answer: who served it (for the `x-switchyard-provider` /
/// `x-switchyard-model` headers of a hit) and the result.
#[derive(Debug, Clone, PartialEq)]
pub struct CachedAnswer {
    pub provider: String,
    pub upstream_model: String,
    pub result: ChatResult,
}

/// Version byte, then provider and upstream model (each a u16 length and
/// the bytes), then the protobuf-encoded result.
const VERSION: u8 = 1;

pub fn encode(answer: &CachedAnswer) -> Bytes {
    let mut out = Vec::with_capacity(
        5 + answer.provider.len() + answer.upstream_model.len() + answer.result.encoded_len(),
    );
    out.push(VERSION);
    for s in [&answer.provider, &answer.upstream_model] {
        let b = &s.as_bytes()[..s.len().min(usize::from(u16::MAX))];
        out.extend_from_slice(&u16::try_from(b.len()).unwrap_or(u16::MAX).to_be_bytes());
        out.extend_from_slice(b);
    }
    answer.result.encode(&mut out).ok();
    Bytes::from(out)
}

/// `None` for bytes that are not an entry (another version's, or damaged):
/// callers treat that as a miss.
pub fn decode(bytes: &[u8]) -> Option<CachedAnswer> {
    let (&version, mut rest) = bytes.split_first()?;
    if version != VERSION {
        return None;
    }
    let mut take = || -> Option<String> {
        let len = usize::from(u16::from_be_bytes([*rest.first()?, *rest.get(1)?]));
        let s = std::str::from_utf8(rest.get(2..2 + len)?).ok()?.to_owned();
        rest = &rest[2 + len..];
        Some(s)
    };
    let provider = take()?;
    let upstream_model = take()?;
    let result = ChatResult::decode(rest).ok()?;
    Some(CachedAnswer {
        provider,
        upstream_model,
        result,
    })
}

/// One stored embedding: who served it and the vector.
#[derive(Debug, Clone, PartialEq)]
pub struct CachedEmbedding {
    pub provider: String,
    pub upstream_model: String,
    /// The model the upstream named in its answer.
    pub model: String,
    pub vector: Vec<f32>,
}

/// Version byte, three u16-prefixed strings, then the floats little-endian.
const EMBED_VERSION: u8 = 2;

pub fn encode_embedding(e: &CachedEmbedding) -> Bytes {
    let mut out = Vec::with_capacity(
        7 + e.provider.len() + e.upstream_model.len() + e.model.len() + 4 * e.vector.len(),
    );
    out.push(EMBED_VERSION);
    for s in [&e.provider, &e.upstream_model, &e.model] {
        let b = &s.as_bytes()[..s.len().min(usize::from(u16::MAX))];
        out.extend_from_slice(&u16::try_from(b.len()).unwrap_or(u16::MAX).to_be_bytes());
        out.extend_from_slice(b);
    }
    for x in &e.vector {
        out.extend_from_slice(&x.to_le_bytes());
    }
    Bytes::from(out)
}

pub fn decode_embedding(bytes: &[u8]) -> Option<CachedEmbedding> {
    let (&version, mut rest) = bytes.split_first()?;
    if version != EMBED_VERSION {
        return None;
    }
    let mut strings = Vec::with_capacity(3);
    for _ in 0..3 {
        let len = usize::from(u16::from_be_bytes([*rest.first()?, *rest.get(1)?]));
        strings.push(std::str::from_utf8(rest.get(2..2 + len)?).ok()?.to_owned());
        rest = &rest[2 + len..];
    }
    if rest.len() % 4 != 0 {
        return None;
    }
    let vector = rest
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let model = strings.pop()?;
    let upstream_model = strings.pop()?;
    let provider = strings.pop()?;
    Some(CachedEmbedding {
        provider,
        upstream_model,
        model,
        vector,
    })
}

/// A stored result as the chunks a live stream of it carries, per choice:
/// a role chunk (empty content), its content, its tool calls, its finish
/// reason. Usage is not among them: the stream's end carries it.
pub fn replay_chunks(r: &ChatResult) -> Vec<ChatChunk> {
    let chunk = |delta: ChoiceDelta| ChatChunk {
        id: r.id.clone(),
        model: r.model.clone(),
        created: r.created,
        choices: vec![delta],
        usage: None,
        system_fingerprint: r.system_fingerprint.clone(),
        native_event: None,
    };
    let mut out = Vec::with_capacity(r.choices.len() * 4);
    for c in &r.choices {
        let m = c.message.clone().unwrap_or_default();
        let text: String = m
            .content
            .iter()
            .filter_map(|p| match &p.part {
                Some(Part::Text(t)) => Some(t.as_str()),
                _ => None,
            })
            .collect();
        out.push(chunk(ChoiceDelta {
            index: c.index,
            role: Role::Assistant as i32,
            content: Some(String::new()),
            ..ChoiceDelta::default()
        }));
        if !text.is_empty() {
            out.push(chunk(ChoiceDelta {
                index: c.index,
                content: Some(text),
                ..ChoiceDelta::default()
            }));
        }
        if !m.tool_calls.is_empty() {
            out.push(chunk(ChoiceDelta {
                index: c.index,
                tool_calls: m
                    .tool_calls
                    .iter()
                    .enumerate()
                    .map(|(i, t)| ToolCallDelta {
                        index: u32::try_from(i).unwrap_or(u32::MAX),
                        id: t.id.clone(),
                        name: t.name.clone(),
                        arguments: t.arguments.clone(),
                    })
                    .collect(),
                ..ChoiceDelta::default()
            }));
        }
        out.push(chunk(ChoiceDelta {
            index: c.index,
            finish_reason: c.finish_reason,
            ..ChoiceDelta::default()
        }));
    }
    out
}

/// Whether any choice of the answer calls tools.
pub fn has_tool_calls(result: &ChatResult) -> bool {
    result.choices.iter().any(|c| {
        c.finish_reason == FinishReason::ToolCalls as i32
            || c.message.as_ref().is_some_and(|m| !m.tool_calls.is_empty())
    })
}

#[derive(Default)]
struct ChoiceState {
    text: String,
    tool_calls: BTreeMap<u32, ToolCall>,
    finish_reason: i32,
}

/// Collects a stream's chunks into the complete result they stand for.
/// Reasoning deltas are not kept (the canonical result has no place for
/// them).
#[derive(Default)]
pub struct StreamAssembler {
    head: Option<ChatChunk>,
    choices: BTreeMap<u32, ChoiceState>,
}

impl StreamAssembler {
    pub fn push(&mut self, chunk: &ChatChunk) {
        if self.head.is_none() {
            self.head = Some(ChatChunk {
                choices: Vec::new(),
                usage: None,
                ..chunk.clone()
            });
        }
        for d in &chunk.choices {
            let c = self.choices.entry(d.index).or_default();
            if let Some(t) = &d.content {
                c.text.push_str(t);
            }
            for t in &d.tool_calls {
                let call = c.tool_calls.entry(t.index).or_default();
                if !t.id.is_empty() {
                    call.id.clone_from(&t.id);
                }
                if !t.name.is_empty() {
                    call.name.push_str(&t.name);
                }
                call.arguments.push_str(&t.arguments);
            }
            if d.finish_reason != FinishReason::Unspecified as i32 {
                c.finish_reason = d.finish_reason;
            }
        }
    }

    /// The result, with the usage the stream ended with.
    pub fn finish(self, usage: Option<Usage>) -> ChatResult {
        let head = self.head.unwrap_or_default();
        ChatResult {
            id: head.id,
            model: head.model,
            created: head.created,
            system_fingerprint: head.system_fingerprint,
            usage,
            choices: self
                .choices
                .into_iter()
                .map(|(index, c)| Choice {
                    index,
                    finish_reason: c.finish_reason,
                    message: Some(Message {
                        role: Role::Assistant as i32,
                        content: if c.text.is_empty() && !c.tool_calls.is_empty() {
                            Vec::new()
                        } else {
                            vec![ContentPart {
                                part: Some(Part::Text(c.text)),
                                extra: None,
                            }]
                        },
                        tool_calls: c.tool_calls.into_values().collect(),
                        ..Message::default()
                    }),
                })
                .collect(),
            native_response: None,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use switchyard_providers::openai::convert::result_to_chunks;

    fn result() -> ChatResult {
        ChatResult {
            id: "chatcmpl-1".into(),
            model: "m".into(),
            created: 7,
            choices: vec![Choice {
                index: 0,
                finish_reason: FinishReason::Stop as i32,
                message: Some(Message {
                    role: Role::Assistant as i32,
                    content: vec![ContentPart {
                        part: Some(Part::Text("hello there".into())),
                        extra: None,
                    }],
                    ..Message::default()
                }),
            }],
            usage: Some(Usage {
                prompt_tokens: 3,
                completion_tokens: 2,
                total_tokens: 5,
                ..Usage::default()
            }),
            system_fingerprint: String::new(),
            native_response: None,
        }
    }

    #[test]
    fn a_stream_assembles_into_the_result_it_carries() {
        let r = result();
        let mut a = StreamAssembler::default();
        for c in result_to_chunks(&r) {
            a.push(&c);
        }
        assert_eq!(a.finish(r.usage), r);
        let mut a = StreamAssembler::default();
        let replay = replay_chunks(&r);
        assert_eq!(replay[0].choices[0].content.as_deref(), Some(""));
        assert_eq!(replay[0].choices[0].role, Role::Assistant as i32);
        for c in &replay {
            a.push(c);
        }
        assert_eq!(a.finish(r.usage), r);
        let answer = CachedAnswer {
            provider: "openai".into(),
            upstream_model: "gpt-x".into(),
            result: r,
        };
        assert_eq!(decode(&encode(&answer)), Some(answer));
        assert!(decode(b"\x01\xff\xff").is_none());
        assert!(decode(b"").is_none());
    }

    #[test]
    fn embeddings_round_trip() {
        let e = CachedEmbedding {
            provider: "p".into(),
            upstream_model: "u".into(),
            model: "m".into(),
            vector: vec![1.5, -0.25, 3.0],
        };
        assert_eq!(decode_embedding(&encode_embedding(&e)), Some(e.clone()));
        assert!(decode_embedding(&encode_embedding(&e)[..5]).is_none());
        // A chat entry is not an embedding, and the other way round.
        assert!(decode(&encode_embedding(&e)).is_none());
    }

    #[test]
    fn tool_calls_are_recognised() {
        let mut r = result();
        assert!(!has_tool_calls(&r));
        r.choices[0].finish_reason = FinishReason::ToolCalls as i32;
        assert!(has_tool_calls(&r));
    }
}
