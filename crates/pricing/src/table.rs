//! The price table: loading, overrides, and finding a model's entry from
//! the name an upstream actually uses.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::{Arc, OnceLock, PoisonError, RwLock};

use serde::Deserialize;

use crate::cost::{Counts, Priced};
use crate::entry::{Compiled, PerImage, PriceEntry};
use crate::error::PricingError;
use crate::usd::Usd;

/// The bundled table, embedded at build time.
const BUNDLED: &str = include_str!("../prices.yaml");

/// Provider kinds that run models the operator hosts: no bundled prices,
/// so their cost is unknown unless the config lists them.
pub const SELF_HOSTED_KINDS: &[&str] = &["vllm", "ollama", "demo"];

/// Models, their prices and how to find them. Cheap to clone (shared).
#[derive(Debug, Clone)]
pub struct PriceTable {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    version: String,
    entries: Vec<Compiled>,
    /// `(provider, lowercased name)` → entry, for models and aliases.
    index: HashMap<(String, String), Slot>,
    /// provider kind → requested name → entry ([`PriceTable::total`]).
    memo: RwLock<HashMap<String, HashMap<String, Option<usize>>>>,
}

/// Names remembered per provider kind.
const MEMO_PER_KIND: usize = 4096;

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    entry: usize,
    alias: bool,
}

/// How a requested name led to an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MatchKind {
    /// The entry's model name, as asked (case aside).
    Exact,
    /// One of the entry's aliases.
    Alias { alias: String },
    /// A rewritten name: `rules` say what was done to the requested name,
    /// in order, to get `name` (which may itself be a model or an alias).
    Normalized {
        name: String,
        rules: Vec<&'static str>,
    },
}

impl fmt::Display for MatchKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MatchKind::Exact => f.write_str("exact name"),
            MatchKind::Alias { alias } => write!(f, "alias `{alias}`"),
            MatchKind::Normalized { name, rules } => {
                write!(f, "`{name}` after: {}", rules.join(", "))
            }
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTable {
    version: String,
    models: Vec<serde_norway::Value>,
}

impl PriceTable {
    /// The table bundled with this build (`prices.yaml`). Parsed once per
    /// process; later calls share it.
    pub fn bundled() -> Result<PriceTable, PricingError> {
        static BUNDLED_TABLE: OnceLock<Result<PriceTable, PricingError>> = OnceLock::new();
        BUNDLED_TABLE
            .get_or_init(|| PriceTable::from_yaml(BUNDLED, "bundled prices.yaml"))
            .clone()
    }

    /// A table from YAML text in the `prices.yaml` format; `origin` names
    /// it in errors and explanations.
    pub fn from_yaml(text: &str, origin: &str) -> Result<PriceTable, PricingError> {
        let raw: RawTable = serde_norway::from_str(text).map_err(|e| PricingError::Syntax {
            origin: origin.to_owned(),
            message: e.to_string(),
        })?;
        let origin = format!("{origin} {}", raw.version);
        let mut entries = Vec::with_capacity(raw.models.len());
        for (index, value) in raw.models.into_iter().enumerate() {
            // Deserialize entry by entry so an error names the model, not
            // only a line number.
            let model = value
                .get("model")
                .and_then(serde_norway::Value::as_str)
                .unwrap_or("?")
                .to_owned();
            let entry: PriceEntry =
                serde_norway::from_value(value).map_err(|e| PricingError::Entry {
                    origin: origin.clone(),
                    index,
                    model,
                    message: e.to_string(),
                })?;
            entries.push(entry);
        }
        PriceTable::from_entries(raw.version, &entries, &origin)
    }

    /// A table of exactly `entries` (tests, or a table built elsewhere).
    pub fn from_entries(
        version: impl Into<String>,
        entries: &[PriceEntry],
        origin: &str,
    ) -> Result<PriceTable, PricingError> {
        let compiled = entries
            .iter()
            .cloned()
            .map(|e| Compiled::compile(e, origin))
            .collect::<Result<Vec<_>, _>>()?;
        let index = build_index(&compiled)?;
        Ok(PriceTable {
            inner: Arc::new(Inner {
                version: version.into(),
                entries: compiled,
                index,
                memo: RwLock::default(),
            }),
        })
    }

    /// The table's `version` (the bundled file's date).
    pub fn version(&self) -> &str {
        &self.inner.version
    }

    /// Every entry, in table order.
    pub fn entries(&self) -> impl Iterator<Item = &PriceEntry> {
        self.inner.entries.iter().map(|c| &c.entry)
    }

    /// This table with `entries` laid over it: an entry replaces every
    /// existing entry of the same provider that shares one of its names
    /// (model or alias), or is added. `origin` (`config /etc/switchyard.yaml`)
    /// is shown in explanations of the entries it brought.
    pub fn with_overrides(
        &self,
        entries: &[PriceEntry],
        origin: &str,
    ) -> Result<PriceTable, PricingError> {
        let added = entries
            .iter()
            .cloned()
            .map(|e| Compiled::compile(e, origin))
            .collect::<Result<Vec<_>, _>>()?;
        // Two overrides for one name is a mistake in the config, not a
        // replacement: refuse it like a duplicate in the bundled file.
        build_index(&added)?;
        let replaced: BTreeSet<(String, String)> = added
            .iter()
            .flat_map(|c| {
                c.entry
                    .names()
                    .map(|n| (c.entry.provider.clone(), n.to_ascii_lowercase()))
                    .collect::<Vec<_>>()
            })
            .collect();
        let mut kept: Vec<Compiled> = self
            .inner
            .entries
            .iter()
            .filter(|c| {
                !c.entry
                    .names()
                    .any(|n| replaced.contains(&(c.entry.provider.clone(), n.to_ascii_lowercase())))
            })
            .cloned()
            .collect();
        kept.extend(added);
        let index = build_index(&kept)?;
        Ok(PriceTable {
            inner: Arc::new(Inner {
                version: self.inner.version.clone(),
                entries: kept,
                index,
                memo: RwLock::default(),
            }),
        })
    }

    /// The entry that prices `model` when served by a provider of kind
    /// `provider_kind`, or `None` when the cost is unknown. Matching order
    /// (first hit wins; docs/pricing.md):
    ///
    /// 1. the provider's own entries, by exact name, then alias;
    /// 2. the same after normalizing the name: wrappers stripped
    ///    (`models/`, `accounts/*/models/`, Bedrock's `us.`/`global.`
    ///    region, `anthropic.` vendor and `-v1:0` version), Claude's
    ///    `4.5` spelled `4-5`, then a date/version suffix removed
    ///    (`-2024-08-06`, `-20250929`, `-0709`, `@20250929`, `-001`);
    /// 3. `azure-openai`: the same against `openai`'s entries;
    ///    `openrouter`: `vendor/model` against the vendor's own kind.
    pub fn lookup(&self, provider_kind: &str, model: &str) -> Option<Priced<'_>> {
        let (entry, how) = self.find(provider_kind, model)?;
        let compiled = self.inner.entries.get(entry)?;
        Some(Priced {
            compiled,
            how,
            provider: &compiled.entry.provider,
        })
    }

    /// What `counts` cost at the entry [`lookup`](Self::lookup) finds,
    /// with the match remembered per (kind, name): requests pay for the
    /// name normalization once per model, not once each.
    pub fn total(
        &self,
        provider_kind: &str,
        model: &str,
        counts: &Counts,
        at: jiff::Timestamp,
        batch: bool,
    ) -> Option<Usd> {
        let remembered = read(&self.inner.memo)
            .get(provider_kind)
            .and_then(|names| names.get(model).copied());
        let entry = match remembered {
            Some(entry) => entry,
            None => {
                let entry = self.find(provider_kind, model).map(|(e, _)| e);
                let mut memo = self
                    .inner
                    .memo
                    .write()
                    .unwrap_or_else(PoisonError::into_inner);
                let names = memo.entry(provider_kind.to_owned()).or_default();
                // Clients choose model names; past the bound, misses are
                // normalized each time rather than held forever.
                if names.len() < MEMO_PER_KIND {
                    names.insert(model.to_owned(), entry);
                }
                entry
            }
        }?;
        let compiled = self.inner.entries.get(entry)?;
        let priced = Priced {
            compiled,
            how: MatchKind::Exact,
            provider: &compiled.entry.provider,
        };
        Some(priced.cost(counts, at, batch).total)
    }

    /// The index of the entry that prices `model` and how it was found.
    fn find(&self, provider_kind: &str, model: &str) -> Option<(usize, MatchKind)> {
        let kind = provider_kind.trim().to_ascii_lowercase();
        let model = model.trim();
        for (provider, name, mut rules) in provider_attempts(&kind, model) {
            for (variant, more) in name_variants(&name) {
                let key = (provider.clone(), variant.to_ascii_lowercase());
                let Some(slot) = self.inner.index.get(&key) else {
                    continue;
                };
                rules.extend(more);
                let how = if rules.is_empty() && !slot.alias {
                    MatchKind::Exact
                } else if rules.is_empty() {
                    MatchKind::Alias { alias: variant }
                } else {
                    MatchKind::Normalized {
                        name: variant,
                        rules,
                    }
                };
                return Some((slot.entry, how));
            }
        }
        None
    }

    /// What `switchyard pricing show MODEL` prints: the entry that matched
    /// and why, or, with no provider given, every provider's entry for the
    /// model; candidates when nothing matched.
    pub fn explain(&self, provider_kind: Option<&str>, model: &str) -> Explanation {
        let mut found = Vec::new();
        let kinds: Vec<String> = match provider_kind {
            Some(k) => vec![k.trim().to_ascii_lowercase()],
            None => {
                let mut ks: BTreeSet<String> = self
                    .inner
                    .entries
                    .iter()
                    .map(|c| c.entry.provider.clone())
                    .collect();
                ks.insert("openrouter".to_owned());
                ks.into_iter().collect()
            }
        };
        let mut seen = BTreeSet::new();
        for k in &kinds {
            if let Some(p) = self.lookup(k, model) {
                let key = (p.provider.to_owned(), p.entry().model.clone());
                // With no provider given, `openrouter` only finds what a
                // vendor's own kind already found: list it once.
                if seen.insert(key) {
                    found.push(Found {
                        asked_kind: k.clone(),
                        provider: p.provider.to_owned(),
                        how: p.how.clone(),
                        entry: p.entry().clone(),
                        origin: p.origin().to_owned(),
                    });
                }
            }
        }
        let candidates = if found.is_empty() {
            self.candidates(provider_kind, model)
        } else {
            Vec::new()
        };
        Explanation {
            provider: provider_kind.map(str::to_owned),
            model: model.to_owned(),
            version: self.version().to_owned(),
            found,
            candidates,
        }
    }

    /// Names that look like `model`: same provider if one was given, a
    /// shared leading word, closest first.
    fn candidates(&self, provider_kind: Option<&str>, model: &str) -> Vec<(String, String)> {
        let wanted = model.trim().to_ascii_lowercase();
        let wanted = wanted.rsplit('/').next().unwrap_or(&wanted).to_owned();
        let mut scored: Vec<(usize, String, String)> = self
            .inner
            .entries
            .iter()
            .filter(|c| provider_kind.is_none_or(|k| k.eq_ignore_ascii_case(&c.entry.provider)))
            .filter_map(|c| {
                let name = c.entry.model.to_ascii_lowercase();
                let common = name
                    .chars()
                    .zip(wanted.chars())
                    .take_while(|(a, b)| a == b)
                    .count();
                (common >= 3 || name.contains(&wanted))
                    .then(|| (common, c.entry.provider.clone(), c.entry.model.clone()))
            })
            .collect();
        scored.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| (&a.1, &a.2).cmp(&(&b.1, &b.2))));
        scored.into_iter().take(8).map(|(_, p, m)| (p, m)).collect()
    }
}

fn build_index(entries: &[Compiled]) -> Result<HashMap<(String, String), Slot>, PricingError> {
    let mut index: HashMap<(String, String), Slot> = HashMap::new();
    for (i, c) in entries.iter().enumerate() {
        for (n, name) in c.entry.names().enumerate() {
            let key = (c.entry.provider.clone(), name.trim().to_ascii_lowercase());
            if let Some(prev) = index.get(&key) {
                let first = entries
                    .get(prev.entry)
                    .map(|p| p.entry.model.clone())
                    .unwrap_or_default();
                return Err(PricingError::Duplicate {
                    origin: c.origin.clone(),
                    provider: c.entry.provider.clone(),
                    name: name.to_owned(),
                    first,
                    second: c.entry.model.clone(),
                });
            }
            index.insert(
                key,
                Slot {
                    entry: i,
                    alias: n > 0,
                },
            );
        }
    }
    Ok(index)
}

/// Which provider's entries to search, with which name, in order; the
/// rules note what the fallback did.
fn provider_attempts(kind: &str, model: &str) -> Vec<(String, String, Vec<&'static str>)> {
    let mut out = vec![(kind.to_owned(), model.to_owned(), Vec::new())];
    match kind {
        "azure-openai" => out.push((
            "openai".to_owned(),
            model.to_owned(),
            vec!["azure-openai priced as openai"],
        )),
        "openrouter" => {
            if let Some((vendor, rest)) = model.split_once('/')
                && let Some(k) = vendor_kind(vendor)
            {
                out.push((
                    k.to_owned(),
                    rest.to_owned(),
                    vec!["openrouter `vendor/` prefix priced as the vendor's own kind"],
                ));
            }
        }
        _ => {}
    }
    out
}

/// OpenRouter's vendor slugs that are also gateway provider kinds.
fn vendor_kind(vendor: &str) -> Option<&'static str> {
    Some(match vendor.to_ascii_lowercase().as_str() {
        "openai" => "openai",
        "anthropic" => "anthropic",
        "google" => "gemini",
        "x-ai" | "xai" => "xai",
        "mistralai" | "mistral" => "mistral",
        "deepseek" => "deepseek",
        "perplexity" => "perplexity",
        _ => return None,
    })
}

/// The names to try for `model`, in order, each with the rules that made
/// it: as given, then each unwrapping step, then Claude dots as dashes,
/// then without a date or version suffix.
fn name_variants(model: &str) -> Vec<(String, Vec<&'static str>)> {
    let mut out: Vec<(String, Vec<&'static str>)> = vec![(model.to_owned(), Vec::new())];
    let mut push = |name: &str, rules: &[&'static str]| {
        if !name.is_empty() && !out.iter().any(|(n, _)| n.eq_ignore_ascii_case(name)) {
            out.push((name.to_owned(), rules.to_vec()));
        }
    };

    let mut name = model.to_owned();
    let mut rules: Vec<&'static str> = Vec::new();
    for (step, rule) in unwrap_steps(model) {
        rules.push(rule);
        push(&step, &rules);
        name = step;
    }

    let dashed = claude_dashes(&name);
    if dashed != name {
        rules.push("Claude version dots as dashes");
        push(&dashed, &rules);
    }

    if let Some(bare) = strip_date(&dashed) {
        rules.push("date/version suffix removed");
        push(&bare, &rules);
    }
    out
}

/// Strips the wrappers upstreams put around a model name, one step at a
/// time (each step is worth trying: `titan-embed-text-v2:0` is priced as
/// `titan-embed-text-v2`, `nova-pro-v1:0` as `nova-pro`).
fn unwrap_steps(model: &str) -> Vec<(String, &'static str)> {
    let mut steps = Vec::new();
    let mut name = model.to_owned();

    if let Some(rest) = strip_prefix_ci(&name, "models/") {
        name = rest.to_owned();
        steps.push((name.clone(), "`models/` prefix removed"));
    }
    if let Some(rest) = strip_prefix_ci(&name, "accounts/")
        && let Some((_, after)) = rest.split_once("/models/")
    {
        name = after.to_owned();
        steps.push((name.clone(), "`accounts/*/models/` prefix removed"));
    }

    // Bedrock: `us.anthropic.claude-sonnet-4-5-20250929-v1:0`.
    const REGIONS: &[&str] = &[
        "us.", "eu.", "apac.", "global.", "us-gov.", "jp.", "au.", "ca.",
    ];
    const VENDORS: &[&str] = &[
        "anthropic.",
        "amazon.",
        "meta.",
        "mistral.",
        "cohere.",
        "deepseek.",
        "openai.",
        "qwen.",
        "ai21.",
        "writer.",
    ];
    let lower = name.to_ascii_lowercase();
    let region = REGIONS.iter().find(|r| {
        lower.starts_with(**r) && VENDORS.iter().any(|v| lower[r.len()..].starts_with(v))
    });
    if let Some(r) = region {
        name = name[r.len()..].to_owned();
        steps.push((name.clone(), "Bedrock region prefix removed"));
    }
    let lower = name.to_ascii_lowercase();
    if let Some(v) = VENDORS.iter().find(|v| lower.starts_with(**v)) {
        name = name[v.len()..].to_owned();
        steps.push((name.clone(), "Bedrock vendor prefix removed"));
        if let Some((head, tail)) = name.rsplit_once(':')
            && !head.is_empty()
            && is_digits(tail)
        {
            name = head.to_owned();
            steps.push((name.clone(), "Bedrock `:N` revision removed"));
        }
        if let Some((head, tail)) = name.rsplit_once("-v")
            && !head.is_empty()
            && is_digits(tail)
        {
            name = head.to_owned();
            steps.push((name.clone(), "Bedrock `-vN` version removed"));
        }
    }
    steps
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// `claude-sonnet-4.5` → `claude-sonnet-4-5` (OpenRouter's spelling of
/// Anthropic's ids).
fn claude_dashes(name: &str) -> String {
    if !name.to_ascii_lowercase().starts_with("claude") {
        return name.to_owned();
    }
    let b = name.as_bytes();
    name.char_indices()
        .map(|(i, ch)| {
            let between_digits = ch == '.'
                && i > 0
                && b.get(i - 1).is_some_and(u8::is_ascii_digit)
                && b.get(i + 1).is_some_and(u8::is_ascii_digit);
            if between_digits { '-' } else { ch }
        })
        .collect()
}

/// The name without a trailing date or version stamp: `-2024-08-06`,
/// `-20250929`, `@20250929` / `@latest` (Vertex), a 4-digit `-0709` /
/// `-2512`, or a Gemini revision `-001`.
fn strip_date(name: &str) -> Option<String> {
    if let Some((head, tail)) = name.rsplit_once('@')
        && !head.is_empty()
        && !tail.is_empty()
    {
        return Some(head.to_owned());
    }
    let b = name.as_bytes();
    let digits = |s: &[u8]| !s.is_empty() && s.iter().all(u8::is_ascii_digit);
    let n = b.len();
    // -YYYY-MM-DD
    if n > 11
        && b[n - 11] == b'-'
        && digits(&b[n - 10..n - 6])
        && b[n - 6] == b'-'
        && digits(&b[n - 5..n - 3])
        && b[n - 3] == b'-'
        && digits(&b[n - 2..])
    {
        return Some(name[..n - 11].to_owned());
    }
    // -YYYYMMDD, -NNNN, or Google's -00N revision.
    if let Some((head, tail)) = name.rsplit_once('-')
        && !head.is_empty()
        && (tail.len() == 8 || tail.len() == 4 || (tail.len() == 3 && tail.starts_with('0')))
        && digits(tail.as_bytes())
    {
        return Some(head.to_owned());
    }
    None
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// One entry an explanation found.
#[derive(Debug, Clone)]
pub struct Found {
    /// The provider kind that was looked up.
    pub asked_kind: String,
    /// The kind the entry is listed under.
    pub provider: String,
    pub how: MatchKind,
    pub entry: PriceEntry,
    pub origin: String,
}

/// Which entry prices a model and why, for people (`Display`).
#[derive(Debug, Clone)]
pub struct Explanation {
    pub provider: Option<String>,
    pub model: String,
    pub version: String,
    pub found: Vec<Found>,
    /// When nothing matched: `(provider, model)` of similar names.
    pub candidates: Vec<(String, String)>,
}

fn per_m(v: Usd) -> String {
    format!("${v}/M")
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let asked = match &self.provider {
            Some(p) => format!("`{}` from provider kind `{p}`", self.model),
            None => format!("`{}` (any provider)", self.model),
        };
        if self.found.is_empty() {
            writeln!(
                f,
                "no price for {asked} in price table {}: cost unknown",
                self.version
            )?;
            if let Some(p) = &self.provider
                && SELF_HOSTED_KINDS.contains(&p.as_str())
            {
                writeln!(
                    f,
                    "`{p}` is self-hosted: nothing is bundled; list the model under `pricing.models` in the config"
                )?;
            }
            if !self.candidates.is_empty() {
                writeln!(f, "similar entries:")?;
                for (p, m) in &self.candidates {
                    writeln!(f, "  {p} / {m}")?;
                }
            }
            return Ok(());
        }
        if self.found.len() > 1 {
            writeln!(
                f,
                "{asked} is listed by {} providers (name one to choose):",
                self.found.len()
            )?;
        }
        for (i, found) in self.found.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write_found(f, found)?;
        }
        Ok(())
    }
}

fn write_found(f: &mut fmt::Formatter<'_>, x: &Found) -> fmt::Result {
    let e = &x.entry;
    writeln!(f, "{} / {}", x.provider, e.model)?;
    let via = if x.asked_kind == x.provider {
        String::new()
    } else {
        format!(", looked up as `{}`", x.asked_kind)
    };
    writeln!(f, "  matched: {}{via}", x.how)?;
    if !e.aliases.is_empty() {
        writeln!(f, "  aliases: {}", e.aliases.join(", "))?;
    }
    let rate = |name: &str, v: Option<Usd>, fallback: &str| -> String {
        match v {
            Some(v) => format!("  {name:<17}{}", per_m(v)),
            None => format!("  {name:<17}({fallback})"),
        }
    };
    writeln!(f, "{}", rate("input", e.input, "not billed"))?;
    writeln!(f, "{}", rate("cached input", e.cached_input, "as input"))?;
    writeln!(f, "{}", rate("cache write", e.cache_write, "as input"))?;
    writeln!(f, "{}", rate("output", e.output, "not billed"))?;
    writeln!(
        f,
        "{}",
        rate("reasoning output", e.reasoning_output, "as output")
    )?;
    match &e.per_image {
        Some(PerImage::Flat(p)) => writeln!(f, "  per image        ${p}")?,
        Some(PerImage::Variants(m)) => {
            writeln!(f, "  per image:")?;
            for (k, p) in m {
                writeln!(f, "    {k:<19}${p}")?;
            }
        }
        None => {}
    }
    if let Some(p) = e.per_audio_second {
        writeln!(f, "  per audio second ${p}")?;
    }
    for t in &e.tiers {
        let parts: Vec<String> = [
            ("input", t.input),
            ("cached input", t.cached_input),
            ("cache write", t.cache_write),
            ("output", t.output),
            ("reasoning output", t.reasoning_output),
        ]
        .into_iter()
        .filter_map(|(n, v)| v.map(|v| format!("{n} {}", per_m(v))))
        .collect();
        writeln!(
            f,
            "  prompt above {} tokens (whole request): {}",
            t.above_prompt_tokens,
            parts.join(", ")
        )?;
    }
    for w in &e.time_windows {
        let days = if w.days.is_empty() {
            "every day".to_owned()
        } else {
            w.days
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        };
        let mut parts = Vec::new();
        if let Some(m) = w.multiplier {
            parts.push(format!("rates × {m}"));
        }
        for (n, v) in [
            ("input", w.input),
            ("cached input", w.cached_input),
            ("cache write", w.cache_write),
            ("output", w.output),
            ("reasoning output", w.reasoning_output),
        ] {
            if let Some(v) = v {
                parts.push(format!("{n} {}", per_m(v)));
            }
        }
        writeln!(
            f,
            "  window {}{}-{} {} ({days}): {}",
            w.name
                .as_deref()
                .map(|n| format!("{n} "))
                .unwrap_or_default(),
            w.start,
            w.end,
            w.time_zone,
            parts.join(", ")
        )?;
    }
    match &e.batch {
        Some(b) => {
            let mut parts = Vec::new();
            if let Some(d) = b.discount {
                parts.push(format!("{d} off"));
            }
            for (n, v) in [
                ("input", b.input),
                ("cached input", b.cached_input),
                ("cache write", b.cache_write),
                ("output", b.output),
                ("reasoning output", b.reasoning_output),
            ] {
                if let Some(v) = v {
                    parts.push(format!("{n} {}", per_m(v)));
                }
            }
            writeln!(f, "  batch: {}", parts.join(", "))?;
        }
        None => writeln!(f, "  batch: standard rates")?,
    }
    writeln!(
        f,
        "  source: {} (as of {})",
        e.source.as_deref().unwrap_or("none given"),
        e.as_of
            .map(|d| d.to_string())
            .unwrap_or_else(|| "unknown".to_owned())
    )?;
    writeln!(f, "  from: {}", x.origin)?;
    if let Some(n) = &e.notes {
        writeln!(f, "  note: {n}")?;
    }
    Ok(())
}
