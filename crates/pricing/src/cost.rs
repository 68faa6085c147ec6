//! The cost of one request: counts × the rates in effect.

use std::fmt;

use crate::entry::{Compiled, Rates};
use crate::table::MatchKind;
use crate::usd::Usd;

/// What one request used. `prompt` counts every prompt token, cache reads
/// and cache writes included (OpenAI's convention; Anthropic reports
/// `input_tokens` without them, so add them back before pricing).
/// `completion` counts every generated token, reasoning included.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    pub prompt: u64,
    pub cached_read: u64,
    pub cache_write: u64,
    pub completion: u64,
    pub reasoning: u64,
    pub images: u32,
    pub audio_seconds: u64,
    /// Size of the generated images (`1024x1024`), for per-size prices.
    pub image_size: Option<String>,
    /// Quality of the generated images (`hd`, `high`), likewise.
    pub image_quality: Option<String>,
}

/// What a quote line charges for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Component {
    Input,
    CachedInput,
    CacheWrite,
    Output,
    Reasoning,
    Images,
    Audio,
}

impl Component {
    pub fn as_str(self) -> &'static str {
        match self {
            Component::Input => "input",
            Component::CachedInput => "cached input",
            Component::CacheWrite => "cache write",
            Component::Output => "output",
            Component::Reasoning => "reasoning",
            Component::Images => "images",
            Component::Audio => "audio",
        }
    }

    fn is_tokens(self) -> bool {
        !matches!(self, Component::Images | Component::Audio)
    }
}

/// One line of a quote: `quantity × unit_price = amount`. `unit_price` is
/// per token for token components (shown per 1M), per image, per second.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuoteLine {
    pub component: Component,
    pub quantity: u64,
    pub unit_price: Usd,
    pub amount: Usd,
    /// Which price was used when there is a choice (an image size).
    pub detail: Option<String>,
}

impl fmt::Display for QuoteLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.component.as_str();
        match self.component {
            c if c.is_tokens() => write!(
                f,
                "{name} {} tok × ${}/M = ${}",
                self.quantity,
                self.unit_price.per_token_to_per_million(),
                self.amount
            )?,
            Component::Audio => write!(
                f,
                "{name} {} s × ${}/s = ${}",
                self.quantity, self.unit_price, self.amount
            )?,
            _ => write!(
                f,
                "{name} {} × ${} = ${}",
                self.quantity, self.unit_price, self.amount
            )?,
        }
        if let Some(d) = &self.detail {
            write!(f, " ({d})")?;
        }
        Ok(())
    }
}

/// The cost of one request, line by line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote {
    pub total: Usd,
    pub lines: Vec<QuoteLine>,
    pub provider: String,
    pub model: String,
    /// The long-context tier applied, as its threshold in prompt tokens.
    pub tier: Option<u64>,
    /// The time window in effect, by name.
    pub window: Option<String>,
    /// Whether batch pricing was applied.
    pub batch: bool,
    /// Counts that were inconsistent or could not be priced.
    pub notes: Vec<String>,
}

impl fmt::Display for Quote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} / {}: ${}", self.provider, self.model, self.total)?;
        for l in &self.lines {
            writeln!(f, "  {l}")?;
        }
        if let Some(t) = self.tier {
            writeln!(f, "  long-context rates: prompt above {t} tokens")?;
        }
        if let Some(w) = &self.window {
            writeln!(f, "  time window: {w}")?;
        }
        if self.batch {
            writeln!(f, "  batch pricing")?;
        }
        for n in &self.notes {
            writeln!(f, "  note: {n}")?;
        }
        Ok(())
    }
}

/// A table entry found for a provider and model, and how it was found.
#[derive(Debug, Clone)]
pub struct Priced<'a> {
    pub(crate) compiled: &'a Compiled,
    /// How the requested name led to the entry.
    pub how: MatchKind,
    /// The provider kind the entry is listed under (differs from the one
    /// asked for on a fallback: `azure-openai` priced as `openai`).
    pub provider: &'a str,
}

impl<'a> Priced<'a> {
    /// The entry as written.
    pub fn entry(&self) -> &'a crate::PriceEntry {
        &self.compiled.entry
    }

    /// Where the entry came from (`bundled prices.yaml 2026-12-03`, or the
    /// origin given to `with_overrides`).
    pub fn origin(&self) -> &'a str {
        &self.compiled.origin
    }

    /// The cost of a request with `counts`, made at `at`, batch or not.
    /// Exact, saturating, never panics.
    ///
    /// Order: the long-context tier (by total prompt tokens, for the whole
    /// request), then the time window in effect at `at`, then batch
    /// pricing; cache reads and writes absent fall back to input, reasoning
    /// to output.
    pub fn cost(&self, counts: &Counts, at: jiff::Timestamp, batch: bool) -> Quote {
        let c = self.compiled;
        let mut notes = Vec::new();

        let tier = c
            .tiers
            .iter()
            .rev()
            .find(|(above, _)| counts.prompt > *above);
        let mut rates: Rates = match tier {
            Some((_, t)) => c.base.overlay(t),
            None => c.base,
        };

        let window = c.windows.iter().find(|w| w.contains(at));
        if let Some(w) = window {
            rates = rates.adjusted(w.multiplier, &w.rates);
        }

        let mut batch_applied = false;
        if batch {
            match &c.batch {
                Some(b) => {
                    rates = rates.adjusted(b.pay, &b.rates);
                    batch_applied = true;
                }
                None => notes.push("no batch pricing listed: standard rates".to_owned()),
            }
        }

        let input = rates.input;
        let cached = rates.cached_input.or(input);
        let write = rates.cache_write.or(input);
        let output = rates.output;
        let reasoning_rate = rates.reasoning_output.or(output);

        // Counts from an upstream can disagree with themselves; bill what
        // is consistent rather than underflow, and say so.
        let cached_read = counts.cached_read.min(counts.prompt);
        let cache_write = counts.cache_write.min(counts.prompt - cached_read);
        if cached_read != counts.cached_read || cache_write != counts.cache_write {
            notes.push(format!(
                "cache reads ({}) and writes ({}) exceed prompt tokens ({}): clamped",
                counts.cached_read, counts.cache_write, counts.prompt
            ));
        }
        let uncached = counts.prompt - cached_read - cache_write;
        let reasoning = counts.reasoning.min(counts.completion);
        if reasoning != counts.reasoning {
            notes.push(format!(
                "reasoning tokens ({}) exceed completion tokens ({}): clamped",
                counts.reasoning, counts.completion
            ));
        }
        let plain_output = counts.completion - reasoning;

        let mut lines = Vec::new();
        let mut token_line = |component: Component, quantity: u64, rate: Option<Usd>| {
            if quantity == 0 {
                return;
            }
            match rate {
                Some(r) => lines.push(QuoteLine {
                    component,
                    quantity,
                    unit_price: r,
                    amount: r.times(quantity),
                    detail: None,
                }),
                None => notes.push(format!(
                    "{quantity} {} tokens not charged: no {} rate listed",
                    component.as_str(),
                    component.as_str()
                )),
            }
        };
        token_line(Component::Input, uncached, input);
        token_line(Component::CachedInput, cached_read, cached);
        token_line(Component::CacheWrite, cache_write, write);
        token_line(Component::Output, plain_output, output);
        token_line(Component::Reasoning, reasoning, reasoning_rate);

        if counts.images > 0 {
            let priced = c.entry.per_image.as_ref().and_then(|p| {
                p.price(
                    counts.image_size.as_deref(),
                    counts.image_quality.as_deref(),
                )
            });
            match priced {
                Some((price, key)) => lines.push(QuoteLine {
                    component: Component::Images,
                    quantity: u64::from(counts.images),
                    unit_price: price,
                    amount: price.times(u64::from(counts.images)),
                    detail: Some(key),
                }),
                None => notes.push(format!(
                    "{} images not charged: no per-image price listed",
                    counts.images
                )),
            }
        }
        if counts.audio_seconds > 0 {
            match c.entry.per_audio_second {
                Some(p) => lines.push(QuoteLine {
                    component: Component::Audio,
                    quantity: counts.audio_seconds,
                    unit_price: p,
                    amount: p.times(counts.audio_seconds),
                    detail: None,
                }),
                None => notes.push(format!(
                    "{} audio seconds not charged: no per-second price listed",
                    counts.audio_seconds
                )),
            }
        }

        Quote {
            total: lines.iter().map(|l| l.amount).sum(),
            lines,
            provider: self.provider.to_owned(),
            model: c.entry.model.clone(),
            tier: tier.map(|(above, _)| *above),
            window: window.map(|w| w.label.clone()),
            batch: batch_applied,
            notes,
        }
    }
}
