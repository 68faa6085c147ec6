//! AWS event-stream framing (`application/vnd.amazon.eventstream`), the body
//! of ConverseStream answers.
//!
//! One message on the wire, all integers big-endian:
//!
//! ```text
//! total length u32 | headers length u32 | prelude CRC32 (of the 8 bytes before)
//! headers (headers length bytes) | payload | message CRC32 (of every byte before)
//! ```
//!
//! A header is `name length u8 | name | value type u8 | value`. Bedrock only
//! sends string headers (`:event-type`, `:message-type`, ...), but every type
//! the format defines is decoded (or skipped by its size) so an unexpected
//! header never desynchronises the stream.
//!
//! [`Decoder`] is incremental: feed it whatever the transport delivered, take
//! out whole messages. It checks both CRCs and every length before trusting
//! them, so a corrupted or hostile body is an error, never a panic or an
//! unbounded allocation.

use bytes::{Buf, Bytes, BytesMut};

/// Prelude (8) + prelude CRC (4) + message CRC (4).
const OVERHEAD: usize = 16;
const PRELUDE: usize = 12;
/// The format's own limit (16 MiB); nothing Bedrock streams comes near it,
/// and it bounds what a bad length field can make us buffer.
pub const MAX_MESSAGE: usize = 16 * 1024 * 1024;
/// The format's limit on the headers section.
const MAX_HEADERS: usize = 128 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("event-stream prelude CRC mismatch (expected {expected:#010x}, got {actual:#010x})")]
    PreludeCrc { expected: u32, actual: u32 },
    #[error("event-stream message CRC mismatch (expected {expected:#010x}, got {actual:#010x})")]
    MessageCrc { expected: u32, actual: u32 },
    #[error("event-stream message length {0} is out of bounds")]
    Length(usize),
    #[error("malformed event-stream headers: {0}")]
    Headers(&'static str),
    #[error("the event stream ended inside a message ({0} bytes pending)")]
    Truncated(usize),
}

/// A header value. Only strings matter to Bedrock; the rest are kept so a
/// caller can tell "absent" from "not a string".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderValue {
    Bool(bool),
    Byte(i8),
    Short(i16),
    Int(i32),
    Long(i64),
    Bytes(Bytes),
    String(String),
    /// Milliseconds since the Unix epoch.
    Timestamp(i64),
    Uuid([u8; 16]),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub headers: Vec<(String, HeaderValue)>,
    pub payload: Bytes,
}

impl Message {
    /// A string header's value; `None` when absent or of another type.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find_map(|(n, v)| match v {
            HeaderValue::String(s) if n == name => Some(s.as_str()),
            _ => None,
        })
    }
}

/// Incremental decoder: [`Decoder::push`] bytes, then [`Decoder::next_message`]
/// until it yields `Ok(None)`.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: BytesMut,
    /// Set after the first error: the stream cannot be resynchronised.
    failed: bool,
}

impl Decoder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole message, `Ok(None)` when more bytes are needed.
    pub fn next_message(&mut self) -> Result<Option<Message>, FrameError> {
        if self.failed {
            return Ok(None);
        }
        let r = self.decode();
        if r.is_err() {
            self.failed = true;
            self.buf.clear();
        }
        r
    }

    /// At the end of the body: an error if a partial message is left.
    pub fn finish(&self) -> Result<(), FrameError> {
        match self.buf.len() {
            0 => Ok(()),
            n if !self.failed => Err(FrameError::Truncated(n)),
            _ => Ok(()),
        }
    }

    fn decode(&mut self) -> Result<Option<Message>, FrameError> {
        if self.buf.len() < PRELUDE {
            return Ok(None);
        }
        let total = be_u32(&self.buf[0..4]) as usize;
        let headers_len = be_u32(&self.buf[4..8]) as usize;
        let expected = be_u32(&self.buf[8..12]);
        let actual = crc32fast::hash(&self.buf[0..8]);
        // The prelude CRC is checked before the lengths are believed: a
        // corrupted length must not make us wait for (or buffer) gigabytes.
        if expected != actual {
            return Err(FrameError::PreludeCrc { expected, actual });
        }
        if !(OVERHEAD..=MAX_MESSAGE).contains(&total) {
            return Err(FrameError::Length(total));
        }
        if headers_len > MAX_HEADERS || headers_len > total - OVERHEAD {
            return Err(FrameError::Headers("headers length exceeds the message"));
        }
        if self.buf.len() < total {
            return Ok(None);
        }
        let expected = be_u32(&self.buf[total - 4..total]);
        let actual = crc32fast::hash(&self.buf[..total - 4]);
        if expected != actual {
            return Err(FrameError::MessageCrc { expected, actual });
        }
        let mut frame = self.buf.split_to(total).freeze();
        frame.advance(PRELUDE);
        let headers = parse_headers(&frame[..headers_len])?;
        let payload = frame.slice(headers_len..total - OVERHEAD);
        Ok(Some(Message { headers, payload }))
    }
}

fn be_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_be_bytes(a)
}

/// Takes `n` bytes off the front of `rest`.
fn take<'a>(rest: &mut &'a [u8], n: usize) -> Result<&'a [u8], FrameError> {
    if rest.len() < n {
        return Err(FrameError::Headers(
            "a header runs past the headers section",
        ));
    }
    let (head, tail) = rest.split_at(n);
    *rest = tail;
    Ok(head)
}

fn take_array<const N: usize>(rest: &mut &[u8]) -> Result<[u8; N], FrameError> {
    let mut a = [0u8; N];
    a.copy_from_slice(take(rest, N)?);
    Ok(a)
}

fn parse_headers(mut rest: &[u8]) -> Result<Vec<(String, HeaderValue)>, FrameError> {
    let mut out = Vec::new();
    while !rest.is_empty() {
        let [name_len] = take_array::<1>(&mut rest)?;
        let name = std::str::from_utf8(take(&mut rest, usize::from(name_len))?)
            .map_err(|_| FrameError::Headers("a header name is not UTF-8"))?
            .to_owned();
        let [kind] = take_array::<1>(&mut rest)?;
        let value = match kind {
            0 => HeaderValue::Bool(true),
            1 => HeaderValue::Bool(false),
            2 => HeaderValue::Byte(i8::from_be_bytes(take_array(&mut rest)?)),
            3 => HeaderValue::Short(i16::from_be_bytes(take_array(&mut rest)?)),
            4 => HeaderValue::Int(i32::from_be_bytes(take_array(&mut rest)?)),
            5 => HeaderValue::Long(i64::from_be_bytes(take_array(&mut rest)?)),
            6 | 7 => {
                let len = usize::from(u16::from_be_bytes(take_array(&mut rest)?));
                let bytes = take(&mut rest, len)?;
                if kind == 6 {
                    HeaderValue::Bytes(Bytes::copy_from_slice(bytes))
                } else {
                    HeaderValue::String(
                        std::str::from_utf8(bytes)
                            .map_err(|_| FrameError::Headers("a string header is not UTF-8"))?
                            .to_owned(),
                    )
                }
            }
            8 => HeaderValue::Timestamp(i64::from_be_bytes(take_array(&mut rest)?)),
            9 => HeaderValue::Uuid(take_array(&mut rest)?),
            _ => return Err(FrameError::Headers("unknown header value type")),
        };
        out.push((name, value));
    }
    Ok(out)
}

/// One message with string headers, as Bedrock sends them. Used by the test
/// double; kept beside the decoder so the two cannot drift apart.
#[cfg(test)]
pub fn encode(headers: &[(&str, &str)], payload: &[u8]) -> Vec<u8> {
    let mut h = Vec::new();
    for (name, value) in headers {
        h.push(u8::try_from(name.len()).unwrap());
        h.extend_from_slice(name.as_bytes());
        h.push(7);
        h.extend_from_slice(&u16::try_from(value.len()).unwrap().to_be_bytes());
        h.extend_from_slice(value.as_bytes());
    }
    let total = u32::try_from(OVERHEAD + h.len() + payload.len()).unwrap();
    let mut out = Vec::with_capacity(total as usize);
    out.extend_from_slice(&total.to_be_bytes());
    out.extend_from_slice(&u32::try_from(h.len()).unwrap().to_be_bytes());
    let prelude_crc = crc32fast::hash(&out);
    out.extend_from_slice(&prelude_crc.to_be_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

/// A Bedrock event: `:message-type: event` with its `:event-type`.
#[cfg(test)]
pub fn event(event_type: &str, payload: &serde_json::Value) -> Vec<u8> {
    encode(
        &[
            (":event-type", event_type),
            (":content-type", "application/json"),
            (":message-type", "event"),
        ],
        payload.to_string().as_bytes(),
    )
}

/// A Bedrock stream exception (`throttlingException`, ...).
#[cfg(test)]
pub fn exception(exception_type: &str, message: &str) -> Vec<u8> {
    encode(
        &[
            (":exception-type", exception_type),
            (":content-type", "application/json"),
            (":message-type", "exception"),
        ],
        serde_json::json!({ "message": message })
            .to_string()
            .as_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Written by aws-smithy-eventstream 0.60.18 (`write_message_to`) for a
    /// contentBlockDelta message: an independent encoder's bytes.
    const SMITHY_FRAME: &[u8] = &[
        0, 0, 0, 159, 0, 0, 0, 87, 195, 123, 171, 255, 11, 58, 101, 118, 101, 110, 116, 45, 116,
        121, 112, 101, 7, 0, 17, 99, 111, 110, 116, 101, 110, 116, 66, 108, 111, 99, 107, 68, 101,
        108, 116, 97, 13, 58, 99, 111, 110, 116, 101, 110, 116, 45, 116, 121, 112, 101, 7, 0, 16,
        97, 112, 112, 108, 105, 99, 97, 116, 105, 111, 110, 47, 106, 115, 111, 110, 13, 58, 109,
        101, 115, 115, 97, 103, 101, 45, 116, 121, 112, 101, 7, 0, 5, 101, 118, 101, 110, 116, 123,
        34, 112, 34, 58, 34, 97, 98, 99, 100, 34, 44, 34, 100, 101, 108, 116, 97, 34, 58, 123, 34,
        116, 101, 120, 116, 34, 58, 34, 72, 105, 34, 125, 44, 34, 99, 111, 110, 116, 101, 110, 116,
        66, 108, 111, 99, 107, 73, 110, 100, 101, 120, 34, 58, 48, 125, 252, 173, 99, 45,
    ];
    const SMITHY_PAYLOAD: &str = r#"{"p":"abcd","delta":{"text":"Hi"},"contentBlockIndex":0}"#;

    fn all(bytes: &[u8]) -> Result<Vec<Message>, FrameError> {
        let mut d = Decoder::new();
        d.push(bytes);
        let mut out = Vec::new();
        while let Some(m) = d.next_message()? {
            out.push(m);
        }
        d.finish()?;
        Ok(out)
    }

    #[test]
    fn decodes_a_frame_from_the_aws_encoder() {
        let msgs = all(SMITHY_FRAME).unwrap();
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].header(":event-type"), Some("contentBlockDelta"));
        assert_eq!(msgs[0].header(":message-type"), Some("event"));
        assert_eq!(msgs[0].header(":content-type"), Some("application/json"));
        assert_eq!(msgs[0].payload, SMITHY_PAYLOAD.as_bytes());
    }

    #[test]
    fn our_encoder_matches_the_aws_encoder() {
        let ours = encode(
            &[
                (":event-type", "contentBlockDelta"),
                (":content-type", "application/json"),
                (":message-type", "event"),
            ],
            SMITHY_PAYLOAD.as_bytes(),
        );
        assert_eq!(ours, SMITHY_FRAME);
    }

    #[test]
    fn every_header_type_decodes() {
        let mut h = Vec::new();
        let mut put = |name: &str, kind: u8, value: &[u8]| {
            h.push(name.len() as u8);
            h.extend_from_slice(name.as_bytes());
            h.push(kind);
            h.extend_from_slice(value);
        };
        put("t", 0, &[]);
        put("f", 1, &[]);
        put("b", 2, &[0xff]);
        put("s", 3, &7i16.to_be_bytes());
        put("i", 4, &(-9i32).to_be_bytes());
        put("l", 5, &1i64.to_be_bytes());
        put("y", 6, &[0, 2, 0xde, 0xad]);
        put("z", 7, &[0, 1, b'x']);
        put("ts", 8, &5i64.to_be_bytes());
        put("u", 9, &[1; 16]);
        let total = (OVERHEAD + h.len()) as u32;
        let mut f = total.to_be_bytes().to_vec();
        f.extend_from_slice(&(h.len() as u32).to_be_bytes());
        let c = crc32fast::hash(&f);
        f.extend_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&h);
        let c = crc32fast::hash(&f);
        f.extend_from_slice(&c.to_be_bytes());
        let m = all(&f).unwrap().remove(0);
        assert_eq!(m.headers.len(), 10);
        assert_eq!(m.headers[2].1, HeaderValue::Byte(-1));
        assert_eq!(
            m.headers[6].1,
            HeaderValue::Bytes(Bytes::from_static(&[0xde, 0xad]))
        );
        assert_eq!(m.header("z"), Some("x"));
        assert_eq!(m.header("i"), None, "not a string");
        assert!(m.payload.is_empty());
    }

    #[test]
    fn split_at_every_offset_gives_the_same_messages() {
        let whole: Vec<u8> = [
            event("messageStart", &serde_json::json!({"role": "assistant"})),
            SMITHY_FRAME.to_vec(),
            exception("throttlingException", "Too many requests"),
        ]
        .concat();
        let expected = all(&whole).unwrap();
        assert_eq!(expected.len(), 3);
        for cut in 0..=whole.len() {
            let mut d = Decoder::new();
            let mut got = Vec::new();
            for piece in [&whole[..cut], &whole[cut..]] {
                d.push(piece);
                while let Some(m) = d.next_message().unwrap() {
                    got.push(m);
                }
            }
            d.finish().unwrap();
            assert_eq!(got, expected, "cut at {cut}");
        }
        let mut d = Decoder::new();
        let mut got = Vec::new();
        for b in &whole {
            d.push(std::slice::from_ref(b));
            while let Some(m) = d.next_message().unwrap() {
                got.push(m);
            }
        }
        assert_eq!(got, expected, "one byte at a time");
    }

    #[test]
    fn corruption_is_an_error_never_a_panic() {
        // Every single-bit flip anywhere in the frame is caught by a CRC or
        // a bounds check.
        for i in 0..SMITHY_FRAME.len() {
            for bit in 0..8 {
                let mut f = SMITHY_FRAME.to_vec();
                f[i] ^= 1 << bit;
                assert!(
                    all(&f).is_err(),
                    "flip of bit {bit} of byte {i} went unnoticed"
                );
            }
        }
        let mut f = SMITHY_FRAME.to_vec();
        let n = f.len();
        f[n - 1] ^= 1;
        assert!(matches!(all(&f), Err(FrameError::MessageCrc { .. })));
        let mut f = SMITHY_FRAME.to_vec();
        f[3] ^= 1;
        assert!(matches!(all(&f), Err(FrameError::PreludeCrc { .. })));
    }

    #[test]
    fn truncation_and_garbage_are_errors() {
        for cut in 1..SMITHY_FRAME.len() {
            assert!(
                matches!(all(&SMITHY_FRAME[..cut]), Err(FrameError::Truncated(n)) if n == cut),
                "cut at {cut}"
            );
        }
        assert!(all(b"<html>Bad gateway</html>").is_err());
        assert!(all(&[0xff; 64]).is_err());
        // Pseudo-random garbage of many lengths: errors or nothing, no panic.
        let mut x = 0x2545_f491_u32;
        for len in 0..300 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            let _ = all(&bytes);
        }
        // A prelude with a valid CRC but an absurd length is refused at once.
        let mut f = (u32::MAX).to_be_bytes().to_vec();
        f.extend_from_slice(&0u32.to_be_bytes());
        let c = crc32fast::hash(&f);
        f.extend_from_slice(&c.to_be_bytes());
        assert!(matches!(all(&f), Err(FrameError::Length(_))));
        // Headers claiming more room than the message has.
        let mut f = 16u32.to_be_bytes().to_vec();
        f.extend_from_slice(&4u32.to_be_bytes());
        let c = crc32fast::hash(&f);
        f.extend_from_slice(&c.to_be_bytes());
        assert!(matches!(all(&f), Err(FrameError::Headers(_))));
    }

    #[test]
    fn after_an_error_the_decoder_yields_nothing() {
        let mut d = Decoder::new();
        d.push(&[0xff; 16]);
        assert!(d.next_message().is_err());
        d.push(SMITHY_FRAME);
        assert_eq!(d.next_message(), Ok(None));
    }
}
