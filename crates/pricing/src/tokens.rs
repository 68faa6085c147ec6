//! Token estimates for text whose usage the provider never reported (a
//! stream cut off before its final usage chunk).
//!
//! OpenAI models are counted with their own encoding: `o200k_base` for the
//! GPT-4o generation onwards (gpt-4o, gpt-4.1, gpt-5/6, o-series),
//! `cl100k_base` for gpt-4, gpt-3.5 and the text-embedding models. Every
//! other vendor's tokenizer is private or different, so their text is
//! counted with `o200k_base` as an approximation (usually within ~10-20%
//! for English and code). The BPE ranks are embedded in the binary
//! (`tiktoken-rs`); nothing is downloaded.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::OnceLock;

use tiktoken_rs::CoreBPE;

/// Which BPE an estimate uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    O200k,
    Cl100k,
}

/// The encoding used to estimate `model`'s tokens.
pub fn encoding_for(model: &str) -> Encoding {
    let lower = model.trim().to_ascii_lowercase();
    let name = lower.rsplit('/').next().unwrap_or(&lower);
    // gpt-4 and gpt-4-turbo/-0613/-32k, not gpt-4o or gpt-4.1.
    let cl100k = name.starts_with("gpt-3.5")
        || name.starts_with("text-embedding-")
        || name == "gpt-4"
        || name.starts_with("gpt-4-");
    if cl100k {
        Encoding::Cl100k
    } else {
        Encoding::O200k
    }
}

/// Roughly how many tokens `text` is for `model` (see the module doc for
/// which encoding). Never panics: should the tokenizer fail, falls back to
/// one token per 4 bytes, the usual rule of thumb.
pub fn estimate_tokens(model: &str, text: &str) -> u64 {
    if text.is_empty() {
        return 0;
    }
    let counted = bpe(encoding_for(model)).and_then(|bpe| {
        // tiktoken's pre-tokenizer unwraps a regex result that can fail on
        // pathological input (backtracking limit); an estimate is not worth
        // a crashed request, so a failure falls back to the heuristic.
        catch_unwind(AssertUnwindSafe(|| bpe.encode_ordinary(text).len())).ok()
    });
    match counted {
        Some(n) => u64::try_from(n).unwrap_or(u64::MAX),
        None => u64::try_from(text.len().div_ceil(4)).unwrap_or(u64::MAX),
    }
}

/// Builds both tokenizers now rather than on the first estimate (about
/// 0.1 s in a release build, 0.5 s in debug): call it at startup so a
/// cut-off stream is not the one that pays for it.
pub fn preload_tokenizers() {
    let _ = bpe(Encoding::O200k);
    let _ = bpe(Encoding::Cl100k);
}

/// The BPE for `enc`, built once per process (parsing the embedded ranks
/// takes a moment, so it is not done per call).
fn bpe(enc: Encoding) -> Option<&'static CoreBPE> {
    static O200K: OnceLock<Option<CoreBPE>> = OnceLock::new();
    static CL100K: OnceLock<Option<CoreBPE>> = OnceLock::new();
    match enc {
        Encoding::O200k => O200K.get_or_init(|| tiktoken_rs::o200k_base().ok()),
        Encoding::Cl100k => CL100K.get_or_init(|| tiktoken_rs::cl100k_base().ok()),
    }
    .as_ref()
}
