//! One model's prices as written in `prices.yaml` or in a config's
//! `pricing.models`, and its validated, per-token form.

use std::collections::BTreeMap;
use std::fmt;

use jiff::civil::Date;
use jiff::tz::TimeZone;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::PricingError;
use crate::usd::Usd;

/// The provider kinds a price entry may name: the spellings of
/// `crates/config/src/kinds.rs`, kept in step by hand so pricing stays a
/// leaf crate. An entry under any other name could never be looked up, so
/// it is refused instead.
pub const PROVIDER_KINDS: &[&str] = &[
    "openai",
    "azure-openai",
    "anthropic",
    "gemini",
    "bedrock",
    "mistral",
    "deepseek",
    "groq",
    "together",
    "xai",
    "fireworks",
    "openrouter",
    "perplexity",
    "cerebras",
    "vllm",
    "ollama",
    "demo",
];

/// One model's prices. Token rates are USD per 1M tokens, as providers
/// publish them; the same type is what a config's `pricing.models` lists.
///
/// ```yaml
/// - provider: openai
///   model: gpt-4o
///   aliases: [gpt-4o-2024-08-06]
///   input: 2.50
///   cached_input: 1.25
///   output: 10.00
///   batch: {discount: 0.5}
///   source: https://developers.openai.com/api/docs/pricing
///   as_of: 2026-12-03
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceEntry {
    /// Provider kind (`openai`, `anthropic`, `bedrock`, ...).
    pub provider: String,
    /// The model name the provider's API takes.
    pub model: String,
    /// Other names that bill the same (dated snapshots, `-latest` names).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// Prompt tokens that are neither cache reads nor cache writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Usd>,
    /// Completion tokens (reasoning tokens too, unless `reasoning_output`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Usd>,
    /// Cache reads; absent: billed as `input`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_input: Option<Usd>,
    /// Cache writes (Anthropic's 5-minute write is 1.25x input); absent:
    /// billed as `input`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write: Option<Usd>,
    /// Reasoning tokens; absent: billed as `output`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_output: Option<Usd>,
    /// USD per generated image: one number, or a map by `SIZE/QUALITY`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_image: Option<PerImage>,
    /// USD per second of audio (transcription models).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_audio_second: Option<Usd>,
    /// Batch pricing; absent: batch requests pay the standard rates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<Batch>,
    /// Long-context rates, by prompt size, ascending.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tiers: Vec<Tier>,
    /// Time-of-day rates (peak surcharges, off-peak discounts).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub time_windows: Vec<TimeWindow>,
    /// The page the numbers come from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The day the numbers were last checked against `source`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_of: Option<Date>,
    /// Anything a reader of `switchyard pricing show` should know.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
}

impl PriceEntry {
    /// An entry with only a provider and a model: fill the rates in with
    /// struct update syntax (`PriceEntry { input: .., ..PriceEntry::new(..) }`).
    pub fn new(provider: impl Into<String>, model: impl Into<String>) -> Self {
        PriceEntry {
            provider: provider.into(),
            model: model.into(),
            aliases: Vec::new(),
            input: None,
            output: None,
            cached_input: None,
            cache_write: None,
            reasoning_output: None,
            per_image: None,
            per_audio_second: None,
            batch: None,
            tiers: Vec::new(),
            time_windows: Vec::new(),
            source: None,
            as_of: None,
            notes: None,
        }
    }

    /// Every name the entry answers to: the model first, then aliases.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.model.as_str()).chain(self.aliases.iter().map(String::as_str))
    }
}

/// Rates that replace the base ones for a request whose prompt (every
/// prompt token, cached and cache writes included) is larger than
/// `above_prompt_tokens`. Omitted fields keep the base rate, except that a
/// tier which sets `output` also moves reasoning tokens unless it names a
/// `reasoning_output` of its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    pub above_prompt_tokens: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Usd>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Usd>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_input: Option<Usd>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write: Option<Usd>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_output: Option<Usd>,
}

/// Batch pricing: a `discount` (fraction off, `0.5` = half price) applied to
/// whatever rates are in effect, and/or explicit batch rates per 1M tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Batch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discount: Option<Factor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Usd>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Usd>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_input: Option<Usd>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write: Option<Usd>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_output: Option<Usd>,
}

/// A daily window in which token rates change: `start` inclusive, `end`
/// exclusive, in `time_zone`; `end` at or before `start` wraps past
/// midnight and `start == end` is the whole day. `days` (default: every
/// day) are the days the window *starts* on. Inside it, rates named here
/// replace the ones in effect and the others are multiplied by
/// `multiplier` (default 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeWindow {
    /// A label for explanations and quotes (`peak`, `off-peak`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub start: TimeOfDay,
    pub end: TimeOfDay,
    /// IANA name (`UTC`, `Asia/Shanghai`); default `UTC`.
    #[serde(default = "utc", skip_serializing_if = "is_utc")]
    pub time_zone: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub days: Vec<Day>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multiplier: Option<Factor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Usd>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Usd>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_input: Option<Usd>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write: Option<Usd>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_output: Option<Usd>,
}

fn utc() -> String {
    "UTC".to_owned()
}

fn is_utc(tz: &str) -> bool {
    tz == "UTC"
}

/// USD per image: one price, or prices by `SIZE/QUALITY` (`1024x1024/hd`),
/// `QUALITY`, or `SIZE`, with a `default` for requests that name neither.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PerImage {
    Flat(Usd),
    Variants(BTreeMap<String, Usd>),
}

impl PerImage {
    /// The price for a request's size and quality, and the key that gave it.
    pub fn price(&self, size: Option<&str>, quality: Option<&str>) -> Option<(Usd, String)> {
        match self {
            PerImage::Flat(p) => Some((*p, "flat".to_owned())),
            PerImage::Variants(map) => {
                let mut keys = Vec::new();
                if let (Some(s), Some(q)) = (size, quality) {
                    keys.push(format!("{s}/{q}"));
                }
                keys.extend(quality.map(str::to_owned));
                keys.extend(size.map(str::to_owned));
                keys.push("default".to_owned());
                keys.into_iter().find_map(|k| {
                    let lower = k.to_ascii_lowercase();
                    map.iter()
                        .find(|(key, _)| key.to_ascii_lowercase() == lower)
                        .map(|(_, p)| (*p, k))
                })
            }
        }
    }
}

/// An exact decimal factor (`0.5`, `2`, `1.25`), kept as a ratio over 10^12
/// so multiplying a rate by it is exact up to the last picodollar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Factor(Usd);

impl Factor {
    pub const ONE: Factor = Factor(Usd::from_dollars(1));

    /// `self` as `numerator / 10^12`.
    pub fn numerator(self) -> i64 {
        self.0.pico()
    }

    pub const DENOMINATOR: i64 = 1_000_000_000_000;

    /// `rate × self`, rounded half away from zero.
    pub fn apply(self, rate: Usd) -> Usd {
        rate.scale(self.numerator(), Self::DENOMINATOR)
    }

    /// `1 − self`: what is left to pay after a discount of `self`.
    pub fn complement(self) -> Factor {
        Factor(Usd::from_dollars(1) - self.0)
    }

    pub fn is_negative(self) -> bool {
        self.0.pico() < 0
    }
}

impl fmt::Display for Factor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::str::FromStr for Factor {
    type Err = crate::usd::ParseUsdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(Factor)
    }
}

impl Serialize for Factor {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Factor {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Usd::deserialize(d).map(Factor)
    }
}

/// A wall-clock time `HH:MM`, as minutes after midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct TimeOfDay(u16);

impl TimeOfDay {
    pub fn new(hour: u8, minute: u8) -> Option<TimeOfDay> {
        (hour < 24 && minute < 60).then(|| TimeOfDay(u16::from(hour) * 60 + u16::from(minute)))
    }

    pub fn minutes(self) -> u16 {
        self.0
    }
}

impl fmt::Display for TimeOfDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.0 / 60, self.0 % 60)
    }
}

impl std::str::FromStr for TimeOfDay {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("`{s}` is not a time of day (HH:MM, 00:00 to 23:59)");
        let (h, m) = s.trim().split_once(':').ok_or_else(bad)?;
        if h.is_empty() || h.len() > 2 || m.len() != 2 {
            return Err(bad());
        }
        let h: u8 = h.parse().map_err(|_| bad())?;
        let m: u8 = m.parse().map_err(|_| bad())?;
        TimeOfDay::new(h, m).ok_or_else(bad)
    }
}

impl Serialize for TimeOfDay {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TimeOfDay {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // A number here is YAML reading an unquoted `16:30` some other way;
        // say what to write instead of "invalid type: integer".
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Other(serde_norway::Value),
        }
        match Raw::deserialize(d)? {
            Raw::Text(t) => t.parse().map_err(serde::de::Error::custom),
            Raw::Other(v) => Err(serde::de::Error::custom(format!(
                "`{v:?}` is not a time of day: write it as a quoted \"HH:MM\""
            ))),
        }
    }
}

/// A day of the week, written `mon`..`sun` (or in full).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Day {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

impl Day {
    const ALL: [(Day, &'static str, &'static str); 7] = [
        (Day::Mon, "mon", "monday"),
        (Day::Tue, "tue", "tuesday"),
        (Day::Wed, "wed", "wednesday"),
        (Day::Thu, "thu", "thursday"),
        (Day::Fri, "fri", "friday"),
        (Day::Sat, "sat", "saturday"),
        (Day::Sun, "sun", "sunday"),
    ];

    /// Monday = 0 .. Sunday = 6.
    pub fn index(self) -> usize {
        self as usize
    }

    fn from_jiff(w: jiff::civil::Weekday) -> Day {
        let i = usize::try_from(w.to_monday_zero_offset()).unwrap_or(0);
        Day::ALL.get(i).map_or(Day::Mon, |d| d.0)
    }

    fn short(self) -> &'static str {
        Day::ALL[self.index()].1
    }
}

impl fmt::Display for Day {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.short())
    }
}

impl Serialize for Day {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.short())
    }
}

impl<'de> Deserialize<'de> for Day {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let lower = s.trim().to_ascii_lowercase();
        Day::ALL
            .iter()
            .find(|(_, short, long)| lower == *short || lower == *long)
            .map(|(day, _, _)| *day)
            .ok_or_else(|| {
                serde::de::Error::custom(format!("`{s}` is not a day of the week (mon..sun)"))
            })
    }
}

/// Token rates per token (not per 1M), each optional: what is absent
/// falls back at the end (cache rates to input, reasoning to output).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Rates {
    pub input: Option<Usd>,
    pub output: Option<Usd>,
    pub cached_input: Option<Usd>,
    pub cache_write: Option<Usd>,
    pub reasoning_output: Option<Usd>,
}

impl Rates {
    /// `other`'s rates replace these where it has one. A layer that sets
    /// `output` without `reasoning_output` moves reasoning along with it.
    pub fn overlay(self, other: &Rates) -> Rates {
        let reasoning_output = match (other.reasoning_output, other.output) {
            (Some(r), _) => Some(r),
            (None, Some(_)) => None,
            (None, None) => self.reasoning_output,
        };
        Rates {
            input: other.input.or(self.input),
            output: other.output.or(self.output),
            cached_input: other.cached_input.or(self.cached_input),
            cache_write: other.cache_write.or(self.cache_write),
            reasoning_output,
        }
    }

    /// Every rate present multiplied by `f`.
    pub fn scaled(self, f: Factor) -> Rates {
        Rates {
            input: self.input.map(|r| f.apply(r)),
            output: self.output.map(|r| f.apply(r)),
            cached_input: self.cached_input.map(|r| f.apply(r)),
            cache_write: self.cache_write.map(|r| f.apply(r)),
            reasoning_output: self.reasoning_output.map(|r| f.apply(r)),
        }
    }

    /// Scale what `explicit` does not name, then lay `explicit` over it.
    pub fn adjusted(self, f: Factor, explicit: &Rates) -> Rates {
        self.scaled(f).overlay(explicit)
    }
}

/// A validated time window.
#[derive(Debug, Clone)]
pub(crate) struct Window {
    pub label: String,
    pub start: u16,
    pub end: u16,
    pub tz: TimeZone,
    /// Monday = 0; all true when the entry named no days.
    pub days: [bool; 7],
    pub multiplier: Factor,
    pub rates: Rates,
}

impl Window {
    /// Whether the window is in effect at `at`: start inclusive, end
    /// exclusive, in the window's time zone; a window wrapping past
    /// midnight belongs to the day it started on.
    pub fn contains(&self, at: jiff::Timestamp) -> bool {
        let local = at.to_zoned_datetime(self.tz.clone());
        let minute =
            u16::try_from(i32::from(local.hour()) * 60 + i32::from(local.minute())).unwrap_or(0);
        let today = Day::from_jiff(local.weekday()).index();
        let yesterday = (today + 6) % 7;
        let on = |d: usize| self.days.get(d).copied().unwrap_or(false);
        if self.start == self.end {
            on(today)
        } else if self.start < self.end {
            on(today) && self.start <= minute && minute < self.end
        } else {
            (on(today) && minute >= self.start) || (on(yesterday) && minute < self.end)
        }
    }
}

/// A validated batch rule.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BatchRule {
    /// What is paid: `1 − discount`.
    pub pay: Factor,
    pub rates: Rates,
}

/// A validated entry: rates per token, ready to cost requests.
#[derive(Debug, Clone)]
pub(crate) struct Compiled {
    pub entry: PriceEntry,
    pub origin: String,
    pub base: Rates,
    pub tiers: Vec<(u64, Rates)>,
    pub windows: Vec<Window>,
    pub batch: Option<BatchRule>,
}

impl Compiled {
    pub fn compile(entry: PriceEntry, origin: &str) -> Result<Compiled, PricingError> {
        let invalid = |field: &str, problem: String| PricingError::Invalid {
            origin: origin.to_owned(),
            provider: entry.provider.clone(),
            model: entry.model.clone(),
            field: field.to_owned(),
            problem,
        };

        if !PROVIDER_KINDS.contains(&entry.provider.as_str()) {
            return Err(invalid(
                "provider",
                format!(
                    "is not a provider kind (one of: {})",
                    PROVIDER_KINDS.join(", ")
                ),
            ));
        }
        if entry.model.trim().is_empty() {
            return Err(invalid("model", "is empty".to_owned()));
        }
        if let Some(a) = entry.aliases.iter().find(|a| a.trim().is_empty()) {
            return Err(invalid("aliases", format!("has an empty name `{a}`")));
        }

        let rates = |prefix: &str,
                     input: Option<Usd>,
                     output: Option<Usd>,
                     cached_input: Option<Usd>,
                     cache_write: Option<Usd>,
                     reasoning_output: Option<Usd>|
         -> Result<Rates, PricingError> {
            let one = |name: &str, v: Option<Usd>| -> Result<Option<Usd>, PricingError> {
                let field = format!("{prefix}{name}");
                match v {
                    None => Ok(None),
                    Some(v) if v.pico() < 0 => Err(invalid(&field, format!("is negative ({v})"))),
                    Some(v) => v.per_million_to_per_token().map(Some).ok_or_else(|| {
                        invalid(
                            &field,
                            format!(
                                "({v}) has more than 6 decimals: rates are USD per 1M tokens and \
                                 must come to whole picodollars per token"
                            ),
                        )
                    }),
                }
            };
            Ok(Rates {
                input: one("input", input)?,
                output: one("output", output)?,
                cached_input: one("cached_input", cached_input)?,
                cache_write: one("cache_write", cache_write)?,
                reasoning_output: one("reasoning_output", reasoning_output)?,
            })
        };

        let e = &entry;
        let base = rates(
            "",
            e.input,
            e.output,
            e.cached_input,
            e.cache_write,
            e.reasoning_output,
        )?;

        let mut tiers = Vec::with_capacity(e.tiers.len());
        let mut last: Option<u64> = None;
        for (i, t) in e.tiers.iter().enumerate() {
            let prefix = format!("tiers[{i}].");
            if last.is_some_and(|l| t.above_prompt_tokens <= l) {
                return Err(invalid(
                    &format!("{prefix}above_prompt_tokens"),
                    format!(
                        "({}) must be larger than the tier before it: list tiers in ascending order",
                        t.above_prompt_tokens
                    ),
                ));
            }
            last = Some(t.above_prompt_tokens);
            let r = rates(
                &prefix,
                t.input,
                t.output,
                t.cached_input,
                t.cache_write,
                t.reasoning_output,
            )?;
            tiers.push((t.above_prompt_tokens, r));
        }

        let mut windows = Vec::with_capacity(e.time_windows.len());
        for (i, w) in e.time_windows.iter().enumerate() {
            let prefix = format!("time_windows[{i}].");
            let tz = TimeZone::get(&w.time_zone).map_err(|err| {
                invalid(
                    &format!("{prefix}time_zone"),
                    format!("`{}` is not a known time zone ({err})", w.time_zone),
                )
            })?;
            let multiplier = w.multiplier.unwrap_or(Factor::ONE);
            if multiplier.is_negative() {
                return Err(invalid(
                    &format!("{prefix}multiplier"),
                    format!("is negative ({multiplier})"),
                ));
            }
            let r = rates(
                &prefix,
                w.input,
                w.output,
                w.cached_input,
                w.cache_write,
                w.reasoning_output,
            )?;
            let mut days = [w.days.is_empty(); 7];
            for d in &w.days {
                days[d.index()] = true;
            }
            let label = w
                .name
                .clone()
                .unwrap_or_else(|| format!("{}-{} {}", w.start, w.end, w.time_zone));
            windows.push(Window {
                label,
                start: w.start.minutes(),
                end: w.end.minutes(),
                tz,
                days,
                multiplier,
                rates: r,
            });
        }

        let batch = match &e.batch {
            None => None,
            Some(b) => {
                let discount = b.discount.unwrap_or(Factor(Usd::ZERO));
                if discount.is_negative() || discount.numerator() > Factor::DENOMINATOR {
                    return Err(invalid(
                        "batch.discount",
                        format!("({discount}) must be between 0 and 1 (0.5 = half price)"),
                    ));
                }
                let r = rates(
                    "batch.",
                    b.input,
                    b.output,
                    b.cached_input,
                    b.cache_write,
                    b.reasoning_output,
                )?;
                Some(BatchRule {
                    pay: discount.complement(),
                    rates: r,
                })
            }
        };

        match &e.per_image {
            Some(PerImage::Flat(p)) if p.pico() < 0 => {
                return Err(invalid("per_image", format!("is negative ({p})")));
            }
            Some(PerImage::Variants(map)) => {
                if let Some((k, p)) = map.iter().find(|(_, p)| p.pico() < 0) {
                    return Err(invalid(
                        &format!("per_image.{k}"),
                        format!("is negative ({p})"),
                    ));
                }
                if !map.keys().any(|k| k.eq_ignore_ascii_case("default")) {
                    return Err(invalid(
                        "per_image",
                        "lists prices by size/quality but no `default`".to_owned(),
                    ));
                }
            }
            _ => {}
        }
        if let Some(p) = e.per_audio_second.filter(|p| p.pico() < 0) {
            return Err(invalid("per_audio_second", format!("is negative ({p})")));
        }
        let priced = base != Rates::default()
            || e.per_image.is_some()
            || e.per_audio_second.is_some()
            || !e.tiers.is_empty();
        if !priced {
            return Err(invalid(
                "input",
                "is missing, and so is every other rate: an entry must price something".to_owned(),
            ));
        }

        Ok(Compiled {
            origin: origin.to_owned(),
            base,
            tiers,
            windows,
            batch,
            entry,
        })
    }
}
