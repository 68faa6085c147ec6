//! Costs worked by hand, lookups the way upstreams spell models, and the
//! bundled table's own health.
//!
//! Unit reminder for the hand-worked figures: a rate of $R per 1M tokens is
//! R × 10^6 picodollars per token, and $1 is 10^12 picodollars.

use std::collections::BTreeSet;

use jiff::Timestamp;

use crate::*;

fn usd(s: &str) -> Usd {
    s.parse().unwrap()
}

fn at(s: &str) -> Timestamp {
    s.parse().unwrap()
}

/// A Tuesday afternoon, outside every window used below.
fn noon() -> Timestamp {
    at("2026-12-01T12:00:00Z")
}

fn yaml_entries(text: &str) -> Vec<PriceEntry> {
    serde_norway::from_str(text).unwrap()
}

fn table(text: &str) -> PriceTable {
    PriceTable::from_entries("test", &yaml_entries(text), "test table").unwrap()
}

fn cost(t: &PriceTable, provider: &str, model: &str, counts: &Counts) -> Quote {
    t.lookup(provider, model)
        .unwrap_or_else(|| panic!("{provider}/{model} not found"))
        .cost(counts, noon(), false)
}

fn counts(
    prompt: u64,
    cached_read: u64,
    cache_write: u64,
    completion: u64,
    reasoning: u64,
) -> Counts {
    Counts {
        prompt,
        cached_read,
        cache_write,
        completion,
        reasoning,
        ..Counts::default()
    }
}

const RATES: &str = r#"
- provider: openai
  model: plain
  input: 2.50
  cached_input: 0.25
  cache_write: 3.125
  output: 10.00
  batch: {discount: 0.5}
- provider: perplexity
  model: thinker
  input: 2.00
  output: 8.00
  reasoning_output: 3.00
- provider: gemini
  model: tiered
  input: 1.25
  cached_input: 0.125
  output: 10.00
  tiers:
    - {above_prompt_tokens: 200000, input: 2.50, cached_input: 0.25, output: 15.00}
- provider: anthropic
  model: batchy
  input: 3.00
  output: 15.00
  batch: {input: 1.00}
- provider: openai
  model: painter
  per_image:
    default: 0.04
    1024x1792/hd: 0.12
    hd: 0.08
- provider: openai
  model: flat-painter
  per_image: 0.02
- provider: openai
  model: listener
  per_audio_second: 0.0001
- provider: openai
  model: embedder
  input: 0.02
"#;

#[test]
fn token_costs_worked_by_hand() {
    let t = table(RATES);
    let cases: &[(&str, &str, Counts, &str, &str)] = &[
        (
            // 600 uncached × 2.5e6 = 1.5e9; 400 cached × 0.25e6 = 1e8;
            // 200 out × 1e7 = 2e9. Sum 3.6e9 pico = $0.0036.
            "cached input",
            "plain",
            counts(1000, 400, 0, 200, 0),
            "0.0036",
            "openai",
        ),
        (
            // 200 uncached × 2.5e6 = 5e8; 800 writes × 3.125e6 = 2.5e9.
            // Sum 3e9 = $0.003.
            "cache write",
            "plain",
            counts(1000, 0, 800, 0, 0),
            "0.003",
            "openai",
        ),
        (
            // Both: 100 uncached × 2.5e6 = 2.5e8; 500 reads × 0.25e6 =
            // 1.25e8; 400 writes × 3.125e6 = 1.25e9. Sum 1.625e9 = $0.001625.
            "cache read and write together",
            "plain",
            counts(1000, 500, 400, 0, 0),
            "0.001625",
            "openai",
        ),
        (
            // Reasoning at its own rate: 400 plain output × 8e6 = 3.2e9;
            // 600 reasoning × 3e6 = 1.8e9. Sum 5e9 = $0.005.
            "reasoning rate",
            "thinker",
            counts(0, 0, 0, 1000, 600),
            "0.005",
            "perplexity",
        ),
        (
            // No reasoning rate: all 1000 completion tokens × 1e7 = 1e10 =
            // $0.01, split 400 output + 600 reasoning.
            "missing reasoning rate falls back to output",
            "plain",
            counts(0, 0, 0, 1000, 600),
            "0.01",
            "openai",
        ),
        (
            // Exactly at the threshold is not above it: 200000 × 1.25e6 =
            // 2.5e11 ($0.25) + 1000 × 1e7 = 1e10 ($0.01) = $0.26.
            "tier: exactly at the threshold",
            "tiered",
            counts(200_000, 0, 0, 1000, 0),
            "0.26",
            "gemini",
        ),
        (
            // One above: the whole request moves. 200001 × 2.5e6 =
            // 500_002_500_000 + 1000 × 1.5e7 = 1.5e10 → 515_002_500_000
            // pico = $0.5150025.
            "tier: one token above",
            "tiered",
            counts(200_001, 0, 0, 1000, 0),
            "0.5150025",
            "gemini",
        ),
        (
            // Cached tokens move with the tier too: 100001 uncached ×
            // 2.5e6 = 250_002_500_000; 100000 cached × 0.25e6 = 2.5e10.
            // Sum 275_002_500_000 = $0.2750025.
            "tier: cached tokens at the tier's cached rate",
            "tiered",
            counts(200_001, 100_000, 0, 0, 0),
            "0.2750025",
            "gemini",
        ),
        (
            // Embeddings: input only. 1M × 2e4 = 2e10 = $0.02.
            "embedding",
            "embedder",
            counts(1_000_000, 0, 0, 0, 0),
            "0.02",
            "openai",
        ),
    ];
    for (what, model, c, expected, provider) in cases {
        let q = cost(&t, provider, model, c);
        assert_eq!(q.total, usd(expected), "{what}: {q}");
        assert!(q.notes.is_empty(), "{what}: {q}");
    }
}

#[test]
fn quote_lines_read_like_arithmetic() {
    let t = table(RATES);
    let q = cost(&t, "openai", "plain", &counts(1200, 0, 0, 0, 0));
    // 1200 × 2.5e6 = 3e9 = $0.003.
    assert_eq!(q.lines.len(), 1);
    assert_eq!(q.lines[0].to_string(), "input 1200 tok × $2.5/M = $0.003");
    let shown = q.to_string();
    assert!(shown.starts_with("openai / plain: $0.003"), "{shown}");

    let q = cost(&t, "gemini", "tiered", &counts(300_000, 0, 0, 0, 0));
    assert_eq!(q.tier, Some(200_000));
    assert!(
        q.to_string()
            .contains("long-context rates: prompt above 200000 tokens")
    );
}

#[test]
fn batch_pricing() {
    let t = table(RATES);
    let c = counts(1000, 0, 0, 200, 0);
    let plain = t.lookup("openai", "plain").unwrap();
    // Standard: 1000 × 2.5e6 + 200 × 1e7 = 4.5e9 ($0.0045); half: $0.00225.
    assert_eq!(plain.cost(&c, noon(), false).total, usd("0.0045"));
    let q = plain.cost(&c, noon(), true);
    assert_eq!(q.total, usd("0.00225"));
    assert!(q.batch);

    // Explicit batch input rate, no discount: 1000 × 1e6 = 1e9 plus 200 ×
    // 1.5e7 = 3e9 → $0.004 (output keeps its standard rate).
    let batchy = t.lookup("anthropic", "batchy").unwrap();
    assert_eq!(batchy.cost(&c, noon(), true).total, usd("0.004"));

    // No batch pricing listed: standard rates, and the quote says so.
    // 1000 × 2e6 + 200 × 8e6 = 3.6e9 = $0.0036.
    let q = t
        .lookup("perplexity", "thinker")
        .unwrap()
        .cost(&c, noon(), true);
    assert_eq!(q.total, usd("0.0036"));
    assert!(!q.batch);
    assert_eq!(q.notes.len(), 1);
}

#[test]
fn images_and_audio() {
    let t = table(RATES);
    let images = |n: u32, size: Option<&str>, quality: Option<&str>| Counts {
        images: n,
        image_size: size.map(str::to_owned),
        image_quality: quality.map(str::to_owned),
        ..Counts::default()
    };
    let cases: &[(&str, Counts, &str, &str)] = &[
        // 2 × $0.12 by size and quality.
        (
            "painter",
            images(2, Some("1024x1792"), Some("HD")),
            "0.24",
            "1024x1792/HD",
        ),
        // Size unknown to the table, quality known: 3 × $0.08.
        (
            "painter",
            images(3, Some("512x512"), Some("hd")),
            "0.24",
            "hd",
        ),
        // Neither given: default, 5 × $0.04.
        ("painter", images(5, None, None), "0.2", "default"),
        // Flat price: 4 × $0.02.
        (
            "flat-painter",
            images(4, Some("1024x1024"), Some("hd")),
            "0.08",
            "flat",
        ),
    ];
    for (model, c, expected, key) in cases {
        let q = cost(&t, "openai", model, c);
        assert_eq!(q.total, usd(expected), "{q}");
        assert_eq!(q.lines[0].detail.as_deref(), Some(*key), "{q}");
    }

    // 90 s × $0.0001 = $0.009.
    let q = cost(
        &t,
        "openai",
        "listener",
        &Counts {
            audio_seconds: 90,
            ..Counts::default()
        },
    );
    assert_eq!(q.total, usd("0.009"));
    assert_eq!(q.lines[0].to_string(), "audio 90 s × $0.0001/s = $0.009");

    // Images on a model with no image price: not charged, said so.
    let q = cost(&t, "openai", "embedder", &images(1, None, None));
    assert_eq!(q.total, Usd::ZERO);
    assert_eq!(q.notes.len(), 1);
}

/// DeepSeek's old off-peak discount (16:30-00:30 UTC, half price),
/// discontinued in August 2026; kept here to exercise the mechanism. 1M
/// input tokens: $1.00 standard, $0.50 in the window.
const WINDOWS: &str = r#"
- provider: deepseek
  model: wrapping
  input: 1.00
  output: 2.00
  time_windows:
    - {name: off-peak, start: "16:30", end: "00:30", time_zone: UTC, multiplier: 0.5}
- provider: deepseek
  model: monday-nights
  input: 1.00
  time_windows:
    - {start: "22:00", end: "02:00", days: [mon], multiplier: 0.5}
- provider: deepseek
  model: shanghai-peak
  input: 1.00
  time_windows:
    - {name: peak, start: "09:00", end: "12:00", time_zone: Asia/Shanghai, days: [mon, tue, wed, thu, fri], multiplier: 2}
- provider: deepseek
  model: explicit
  input: 1.00
  output: 2.00
  time_windows:
    - {start: "00:00", end: "00:00", days: [sat, sun], input: 0.10, multiplier: 0.5}
"#;

#[test]
fn time_windows_boundaries() {
    let t = table(WINDOWS);
    let million = counts(1_000_000, 0, 0, 0, 0);
    let cases: &[(&str, &str, &str, Option<&str>)] = &[
        // Start inclusive, end exclusive, wrapping past midnight.
        ("wrapping", "2026-12-01T16:29:59Z", "1", None),
        ("wrapping", "2026-12-01T16:30:00Z", "0.5", Some("off-peak")),
        ("wrapping", "2026-12-01T23:59:59Z", "0.5", Some("off-peak")),
        ("wrapping", "2026-12-02T00:00:00Z", "0.5", Some("off-peak")),
        ("wrapping", "2026-12-02T00:29:59Z", "0.5", Some("off-peak")),
        ("wrapping", "2026-12-02T00:30:00Z", "1", None),
        // `days` is the day the window starts: Monday 22:00 to Tuesday 02:00.
        // 2026-11-30 is a Monday.
        (
            "monday-nights",
            "2026-11-30T23:00:00Z",
            "0.5",
            Some("22:00-02:00 UTC"),
        ),
        (
            "monday-nights",
            "2026-12-01T01:59:00Z",
            "0.5",
            Some("22:00-02:00 UTC"),
        ),
        ("monday-nights", "2026-11-30T01:00:00Z", "1", None), // Sunday's night: no
        ("monday-nights", "2026-12-01T23:00:00Z", "1", None), // Tuesday night: no
        // Another time zone: 09:00-12:00 in Shanghai is 01:00-04:00 UTC.
        ("shanghai-peak", "2026-12-01T00:59:59Z", "1", None),
        ("shanghai-peak", "2026-12-01T01:00:00Z", "2", Some("peak")),
        ("shanghai-peak", "2026-12-01T03:59:59Z", "2", Some("peak")),
        ("shanghai-peak", "2026-12-01T04:00:00Z", "1", None),
        // Saturday in Shanghai is a weekend: no peak.
        ("shanghai-peak", "2026-12-05T02:00:00Z", "1", None),
        // Whole-day window on weekends; explicit input rate wins over the
        // multiplier: 1M × $0.10.
        (
            "explicit",
            "2026-12-05T12:00:00Z",
            "0.1",
            Some("00:00-00:00 UTC"),
        ),
        ("explicit", "2026-12-04T23:59:59Z", "1", None),
    ];
    for (model, when, expected, window) in cases {
        let q = t
            .lookup("deepseek", model)
            .unwrap()
            .cost(&million, at(when), false);
        assert_eq!(q.total, usd(expected), "{model} at {when}: {q}");
        assert_eq!(q.window.as_deref(), *window, "{model} at {when}");
    }

    // The multiplier covers what the window does not name: output at
    // $2 × 0.5 = $1 per 1M on the weekend, input at the explicit $0.10.
    let q = t.lookup("deepseek", "explicit").unwrap().cost(
        &counts(1_000_000, 0, 0, 1_000_000, 0),
        at("2026-12-06T08:00:00Z"),
        false,
    );
    assert_eq!(q.total, usd("1.1"));
}

#[test]
fn windows_then_batch_compose() {
    let t = table(
        r#"
- provider: deepseek
  model: both
  input: 1.00
  batch: {discount: 0.25}
  time_windows:
    - {start: "00:00", end: "06:00", multiplier: 2}
"#,
    );
    // 1M input: $1 × 2 in the window × 0.75 paid in batch = $1.50.
    let q = t.lookup("deepseek", "both").unwrap().cost(
        &counts(1_000_000, 0, 0, 0, 0),
        at("2026-12-01T03:00:00Z"),
        true,
    );
    assert_eq!(q.total, usd("1.5"));
}

#[test]
fn bundled_deepseek_peak_hours() {
    let t = PriceTable::bundled().unwrap();
    let p = t.lookup("deepseek", "deepseek-flash").unwrap();
    let million = counts(1_000_000, 0, 0, 0, 0);
    // Off-peak $0.15 per 1M cache-miss input; peak (weekdays 01:00-04:00,
    // 06:00-10:00 UTC) exactly double.
    assert_eq!(
        p.cost(&million, at("2026-12-01T02:00:00Z"), false).total,
        usd("0.3")
    );
    assert_eq!(
        p.cost(&million, at("2026-12-01T05:00:00Z"), false).total,
        usd("0.15")
    );
    assert_eq!(
        p.cost(&million, at("2026-12-05T02:00:00Z"), false).total,
        usd("0.15")
    );
}

#[test]
fn unknown_models_cost_nothing_known() {
    let t = PriceTable::bundled().unwrap();
    assert!(t.lookup("openai", "no-such-model").is_none());
    assert!(t.lookup("not-a-kind", "gpt-4o").is_none());
    // Self-hosted kinds have nothing bundled.
    for kind in SELF_HOSTED_KINDS {
        assert!(t.lookup(kind, "llama3.1:8b").is_none(), "{kind}");
        assert!(!t.entries().any(|e| e.provider == *kind), "{kind}");
    }
    let shown = t.explain(Some("vllm"), "llama3.1:8b").to_string();
    assert!(shown.contains("cost unknown"), "{shown}");
    assert!(shown.contains("self-hosted"), "{shown}");
}

#[test]
fn overrides_replace_and_add() {
    let t = PriceTable::bundled().unwrap();
    let overrides = yaml_entries(
        r#"
- provider: openai
  model: gpt-4o
  input: 1.00
  output: 4.00
- provider: vllm
  model: llama-local
  aliases: [meta-llama/Llama-3.1-8B-Instruct]
  input: 0.01
  output: 0.02
"#,
    );
    let o = t
        .with_overrides(&overrides, "config /etc/switchyard.yaml")
        .unwrap();

    // Replaced: 1M input at the configured $1.00, not the bundled $2.50.
    let p = o.lookup("openai", "gpt-4o").unwrap();
    assert_eq!(
        p.cost(&counts(1_000_000, 0, 0, 0, 0), noon(), false).total,
        usd("1")
    );
    assert_eq!(p.origin(), "config /etc/switchyard.yaml");
    // The replacement is the whole entry: its (absent) cached rate falls
    // back to its own input, not to the bundled entry's.
    assert_eq!(p.entry().cached_input, None);
    // Dated names still normalize onto the override.
    assert_eq!(
        o.lookup("openai", "gpt-4o-2024-08-06").unwrap().origin(),
        "config /etc/switchyard.yaml"
    );

    // Added, with its alias: 1M in + 1M out = $0.03.
    let p = o
        .lookup("vllm", "meta-llama/llama-3.1-8b-instruct")
        .unwrap();
    assert_eq!(
        p.cost(&counts(1_000_000, 0, 0, 1_000_000, 0), noon(), false)
            .total,
        usd("0.03")
    );
    assert_eq!(o.entries().count(), t.entries().count() + 1);

    // The original table is untouched.
    assert_eq!(
        t.lookup("openai", "gpt-4o").unwrap().entry().input,
        Some(usd("2.5"))
    );

    // An override that takes an alias of a bundled entry replaces it too.
    let o = t
        .with_overrides(
            &yaml_entries(
                "- {provider: openai, model: mini-snapshot, aliases: [gpt-4o-mini], input: 9}",
            ),
            "config",
        )
        .unwrap();
    assert_eq!(
        o.lookup("openai", "gpt-4o-mini").unwrap().entry().model,
        "mini-snapshot"
    );
    assert!(
        o.lookup("openai", "gpt-4o-mini-2024-07-18")
            .is_none_or(|p| p.entry().model == "mini-snapshot")
    );

    // Two overrides for one name is a config error.
    let dup = yaml_entries(
        "- {provider: openai, model: x, input: 1}\n- {provider: openai, model: y, aliases: [X], input: 2}",
    );
    let err = t.with_overrides(&dup, "config").unwrap_err();
    assert!(matches!(err, PricingError::Duplicate { .. }), "{err}");
}

#[test]
fn bad_entries_name_the_model_and_the_field() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "- {provider: openai, model: neg, input: -1}",
            "neg",
            "`input` is negative",
        ),
        (
            "- {provider: openai, model: tiers, input: 1, tiers: [{above_prompt_tokens: 500, input: 2}, {above_prompt_tokens: 100, input: 3}]}",
            "tiers",
            "`tiers[1].above_prompt_tokens`",
        ),
        (
            "- {provider: openai, model: clock, input: 1, time_windows: [{start: \"25:00\", end: \"01:00\"}]}",
            "clock",
            "not a time of day",
        ),
        (
            "- {provider: openai, model: zone, input: 1, time_windows: [{start: \"01:00\", end: \"02:00\", time_zone: Mars/Olympus}]}",
            "zone",
            "`time_windows[0].time_zone`",
        ),
        (
            "- {provider: open-ai, model: kind, input: 1}",
            "kind",
            "`provider` is not a provider kind",
        ),
        (
            "- {provider: openai, model: typo, inptu: 1}",
            "typo",
            "unknown field `inptu`",
        ),
        (
            "- {provider: openai, model: fine, input: 0.0000001}",
            "fine",
            "more than 6 decimals",
        ),
        (
            "- {provider: openai, model: empty}",
            "empty",
            "must price something",
        ),
        (
            "- {provider: openai, model: half, input: 1, batch: {discount: 1.5}}",
            "half",
            "`batch.discount`",
        ),
        (
            "- {provider: openai, model: pics, per_image: {1024x1024: 0.1}}",
            "pics",
            "no `default`",
        ),
    ];
    for (models, model, wanted) in cases {
        let text = format!("version: test\nmodels:\n{models}\n");
        let err = PriceTable::from_yaml(&text, "prices.yaml")
            .unwrap_err()
            .to_string();
        assert!(err.contains(&format!("`{model}`")), "{models}: {err}");
        assert!(err.contains(wanted), "{models}: {err}");
        assert!(err.starts_with("prices.yaml"), "{err}");
    }
    let err = PriceTable::from_yaml("version: x\nmodels: [\n", "f.yaml").unwrap_err();
    assert!(matches!(err, PricingError::Syntax { .. }), "{err}");

    // Duplicates in one file are refused, case aside.
    let err = PriceTable::from_yaml(
        "version: x\nmodels:\n- {provider: openai, model: a, input: 1}\n- {provider: openai, model: b, aliases: [A], input: 1}\n",
        "f.yaml",
    )
    .unwrap_err();
    assert!(matches!(err, PricingError::Duplicate { .. }), "{err}");
}

#[test]
fn lookup_normalizations() {
    let t = PriceTable::bundled().unwrap();
    // (kind asked, name asked, kind listed, model listed, how)
    let cases: &[(&str, &str, &str, &str, &str)] = &[
        ("openai", "gpt-4o", "openai", "gpt-4o", "exact"),
        ("openai", "GPT-4o", "openai", "gpt-4o", "exact"),
        (
            "openai",
            "gpt-4o-mini-2024-07-18",
            "openai",
            "gpt-4o-mini",
            "alias",
        ),
        (
            "openai",
            "gpt-4o-2024-08-06",
            "openai",
            "gpt-4o",
            "normalized",
        ),
        (
            "anthropic",
            "claude-sonnet-4-5-20250929",
            "anthropic",
            "claude-sonnet-4-5",
            "alias",
        ),
        (
            "anthropic",
            "claude-opus-4-6-20260205",
            "anthropic",
            "claude-opus-4-6",
            "normalized",
        ),
        (
            "anthropic",
            "claude-opus-4-6@20260205",
            "anthropic",
            "claude-opus-4-6",
            "normalized",
        ),
        (
            "bedrock",
            "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
            "bedrock",
            "claude-sonnet-4-5",
            "normalized",
        ),
        (
            "bedrock",
            "anthropic.claude-haiku-4-5-20251001-v1:0",
            "bedrock",
            "claude-haiku-4-5",
            "normalized",
        ),
        (
            "bedrock",
            "global.anthropic.claude-opus-4-7",
            "bedrock",
            "claude-opus-4-7",
            "normalized",
        ),
        (
            "bedrock",
            "amazon.nova-pro-v1:0",
            "bedrock",
            "nova-pro",
            "normalized",
        ),
        (
            "bedrock",
            "amazon.titan-embed-text-v2:0",
            "bedrock",
            "titan-embed-text-v2",
            "normalized",
        ),
        (
            "openrouter",
            "anthropic/claude-sonnet-4.5",
            "anthropic",
            "claude-sonnet-4-5",
            "normalized",
        ),
        (
            "openrouter",
            "openai/gpt-4o",
            "openai",
            "gpt-4o",
            "normalized",
        ),
        (
            "openrouter",
            "google/gemini-2.5-pro",
            "gemini",
            "gemini-2.5-pro",
            "normalized",
        ),
        (
            "gemini",
            "models/gemini-2.5-pro",
            "gemini",
            "gemini-2.5-pro",
            "normalized",
        ),
        (
            "gemini",
            "gemini-2.5-flash-001",
            "gemini",
            "gemini-2.5-flash",
            "normalized",
        ),
        ("azure-openai", "gpt-4o", "openai", "gpt-4o", "normalized"),
        (
            "azure-openai",
            "gpt-4.1-2025-04-14",
            "openai",
            "gpt-4.1",
            "normalized",
        ),
        (
            "fireworks",
            "accounts/fireworks/models/gpt-oss-120b",
            "fireworks",
            "gpt-oss-120b",
            "normalized",
        ),
        (
            "together",
            "qwen/qwen3.5-9b",
            "together",
            "Qwen/Qwen3.5-9B",
            "exact",
        ),
        (
            "deepseek",
            "deepseek-v4-flash",
            "deepseek",
            "deepseek-flash",
            "alias",
        ),
        (
            "mistral",
            "mistral-large-2512",
            "mistral",
            "mistral-large-latest",
            "alias",
        ),
    ];
    for (kind, name, listed_kind, listed_model, how) in cases {
        let p = t
            .lookup(kind, name)
            .unwrap_or_else(|| panic!("{kind} / {name}: no match"));
        assert_eq!(p.provider, *listed_kind, "{kind} / {name}");
        assert_eq!(p.entry().model, *listed_model, "{kind} / {name}");
        let got = match p.how {
            MatchKind::Exact => "exact",
            MatchKind::Alias { .. } => "alias",
            MatchKind::Normalized { .. } => "normalized",
        };
        assert_eq!(got, *how, "{kind} / {name}: {}", p.how);
    }
    // OpenRouter's own vendors only: an unknown vendor is unknown.
    assert!(
        t.lookup("openrouter", "meta-llama/llama-3.3-70b-instruct")
            .is_none()
    );
    // A `vendor/` name under another kind is not re-routed: Together's
    // price for gpt-oss is its own, and OpenAI lists no such model.
    assert!(t.lookup("together", "openai/gpt-5").is_none());
}

#[test]
fn dated_names_strip_only_without_an_exact_entry() {
    let t = table(
        r#"
- {provider: openai, model: gpt-x, input: 1}
- {provider: openai, model: gpt-x-2024-08-06, input: 5}
"#,
    );
    let p = t.lookup("openai", "gpt-x-2024-08-06").unwrap();
    assert_eq!(p.entry().model, "gpt-x-2024-08-06");
    assert_eq!(p.how, MatchKind::Exact);
    let p = t.lookup("openai", "gpt-x-2025-01-01").unwrap();
    assert_eq!(p.entry().model, "gpt-x");
    assert_eq!(
        p.how,
        MatchKind::Normalized {
            name: "gpt-x".to_owned(),
            rules: vec!["date/version suffix removed"],
        }
    );
}

#[test]
fn explain_shows_the_match_or_every_candidate() {
    let t = PriceTable::bundled().unwrap();

    let shown = t.explain(Some("openai"), "gpt-4o-2024-08-06").to_string();
    for wanted in [
        "openai / gpt-4o",
        "date/version suffix removed",
        "$2.5/M",
        "$1.25/M",
        "batch: 0.5 off",
        "source: https://",
        "as of 2026-",
        "bundled prices.yaml",
    ] {
        assert!(shown.contains(wanted), "missing {wanted:?} in:\n{shown}");
    }

    let shown = t.explain(Some("gemini"), "gemini-2.5-pro").to_string();
    assert!(shown.contains("prompt above 200000 tokens"), "{shown}");
    let shown = t.explain(Some("deepseek"), "deepseek-flash").to_string();
    assert!(
        shown.contains("window peak 01:00-04:00 UTC (mon,tue,wed,thu,fri): rates × 2"),
        "{shown}"
    );

    // No provider: every provider that lists the model.
    let e = t.explain(None, "gpt-oss-120b");
    let providers: BTreeSet<&str> = e.found.iter().map(|f| f.provider.as_str()).collect();
    assert!(
        providers.contains("fireworks") && providers.contains("cerebras"),
        "{e}"
    );
    assert!(
        e.to_string().contains("providers (name one to choose)"),
        "{e}"
    );

    // Nothing: similar names.
    let e = t.explain(Some("openai"), "gpt-4q");
    assert!(e.found.is_empty());
    assert!(e.candidates.iter().any(|(_, m)| m == "gpt-4o"), "{e}");
}

#[test]
fn bundled_table_is_healthy() {
    let t = PriceTable::bundled().unwrap();
    assert!(!t.version().is_empty());
    let entries: Vec<&PriceEntry> = t.entries().collect();
    assert!(entries.len() >= 60, "{} models", entries.len());
    let providers: BTreeSet<&str> = entries.iter().map(|e| e.provider.as_str()).collect();
    assert!(providers.len() >= 10, "{providers:?}");
    for p in [
        "openai",
        "anthropic",
        "gemini",
        "bedrock",
        "mistral",
        "deepseek",
        "groq",
        "together",
        "xai",
        "fireworks",
        "perplexity",
        "cerebras",
    ] {
        assert!(providers.contains(p), "no {p} entries");
    }
    let mut names = BTreeSet::new();
    for e in &entries {
        assert!(
            e.source
                .as_deref()
                .is_some_and(|s| s.starts_with("https://")),
            "{}: source",
            e.model
        );
        assert!(e.as_of.is_some(), "{}: as_of", e.model);
        for n in e.names() {
            assert!(
                names.insert((e.provider.clone(), n.to_ascii_lowercase())),
                "{} / {n} listed twice",
                e.provider
            );
        }
    }
    // Embedding models are priced on input only.
    for m in ["text-embedding-3-small", "text-embedding-3-large"] {
        let e = t.lookup("openai", m).unwrap().entry().clone();
        assert!(e.input.is_some() && e.output.is_none(), "{m}");
    }
    // Cached once: a second call shares the same table.
    assert_eq!(PriceTable::bundled().unwrap().version(), t.version());
}

#[test]
fn cost_never_panics_on_huge_counts() {
    let t = PriceTable::bundled().unwrap();
    let extremes = [
        Counts {
            prompt: u64::MAX,
            cached_read: u64::MAX,
            cache_write: u64::MAX,
            completion: u64::MAX,
            reasoning: u64::MAX,
            images: u32::MAX,
            audio_seconds: u64::MAX,
            image_size: Some("1024x1024".to_owned()),
            image_quality: Some("hd".to_owned()),
        },
        counts(u64::MAX, 0, 0, u64::MAX, 0),
        counts(u64::MAX, u64::MAX / 2, u64::MAX / 2, 1, u64::MAX),
        counts(0, 5, 5, 0, 7),
    ];
    let times = [
        noon(),
        at("2026-12-01T02:00:00Z"),
        Timestamp::MIN,
        Timestamp::MAX,
    ];
    for e in t.entries() {
        let p = t.lookup(&e.provider, &e.model).unwrap();
        for c in &extremes {
            for when in times {
                for batch in [false, true] {
                    let q = p.cost(c, when, batch);
                    assert!(q.total >= Usd::ZERO, "{} {q}", e.model);
                    let _ = q.to_string();
                }
            }
        }
    }
}

#[test]
fn entries_are_pleasant_to_write_and_round_trip() {
    // The shape a config's `pricing:` section takes.
    #[derive(serde::Deserialize)]
    struct Pricing {
        models: Vec<PriceEntry>,
    }
    let config: Pricing = serde_norway::from_str(
        r#"
models:
  - provider: openai
    model: ft:gpt-4o-mini:acme
    input: 0.30
    cached_input: 0.15
    output: 1.20
    batch: {discount: 0.5}
    time_windows:
      - {name: night, start: "22:00", end: "06:00", time_zone: Europe/Paris, days: [Saturday, sun], multiplier: 0.8}
"#,
    )
    .unwrap();
    let e = &config.models[0];
    assert_eq!(e.input, Some(usd("0.3")));
    assert_eq!(e.time_windows[0].days, vec![Day::Sat, Day::Sun]);

    let yaml = serde_norway::to_string(e).unwrap();
    let back: PriceEntry = serde_norway::from_str(&yaml).unwrap();
    assert_eq!(&back, e, "{yaml}");
    let json = serde_json::to_string(e).unwrap();
    let back: PriceEntry = serde_json::from_str(&json).unwrap();
    assert_eq!(&back, e, "{json}");

    // Built in code, too.
    let built = PriceEntry {
        input: Some(usd("1")),
        ..PriceEntry::new("vllm", "local")
    };
    let t = PriceTable::from_entries("v", &[built], "code").unwrap();
    assert!(t.lookup("vllm", "local").is_some());
}

#[test]
fn token_estimates() {
    assert_eq!(encoding_for("gpt-4o"), Encoding::O200k);
    assert_eq!(encoding_for("gpt-4.1-mini"), Encoding::O200k);
    assert_eq!(encoding_for("o3"), Encoding::O200k);
    assert_eq!(encoding_for("gpt-6.2-sol"), Encoding::O200k);
    assert_eq!(encoding_for("gpt-4"), Encoding::Cl100k);
    assert_eq!(encoding_for("gpt-4-turbo"), Encoding::Cl100k);
    assert_eq!(encoding_for("gpt-3.5-turbo"), Encoding::Cl100k);
    assert_eq!(
        encoding_for("openai/text-embedding-3-small"),
        Encoding::Cl100k
    );
    assert_eq!(encoding_for("claude-sonnet-4-5"), Encoding::O200k);

    assert_eq!(estimate_tokens("gpt-4o", ""), 0);
    assert_eq!(estimate_tokens("gpt-4o", "hello world"), 2);
    assert_eq!(estimate_tokens("gpt-4", "hello world"), 2);
    // Special-token text is counted as text, not as a control token.
    assert!(estimate_tokens("gpt-4o", "<|endoftext|>") > 1);
    let long = "The quick brown fox jumps over the lazy dog. ".repeat(200);
    let n = estimate_tokens("claude-sonnet-4-5", &long);
    assert!((1800..=2200).contains(&n), "{n}");
}

#[test]
fn tables_are_shareable_across_threads() {
    fn send_sync<T: Send + Sync + Clone>() {}
    send_sync::<PriceTable>();
    send_sync::<Quote>();
    let t = PriceTable::bundled().unwrap();
    let handle = std::thread::spawn(move || t.lookup("openai", "gpt-4o").is_some());
    assert!(handle.join().unwrap());
}

#[test]
fn remembered_totals_match_fresh_lookups() {
    let t = PriceTable::bundled().unwrap();
    let c = counts(12_345, 2_000, 0, 678, 90);
    let asked = [
        ("openai", "gpt-4o"),
        ("openai", "gpt-4o-2024-08-06"),
        ("anthropic", "claude-sonnet-4-5-20250929"),
        ("azure-openai", "gpt-4o"),
        ("openai", "no-such-model"),
    ];
    // Twice: the first call fills the memo, the second reads it.
    for round in 0..2 {
        for (kind, model) in asked {
            let fresh = t
                .lookup(kind, model)
                .map(|p| p.cost(&c, noon(), false).total);
            assert_eq!(
                t.total(kind, model, &c, noon(), false),
                fresh,
                "{kind}/{model}, round {round}"
            );
        }
    }
    // A table with overrides remembers for itself, not through the table
    // it was made from.
    let over = t
        .with_overrides(
            &yaml_entries("- { provider: openai, model: gpt-4o, input: 1, output: 1 }"),
            "config",
        )
        .unwrap();
    let one = counts(1_000_000, 0, 0, 0, 0);
    assert_eq!(
        over.total("openai", "gpt-4o", &one, noon(), false),
        Some(usd("1"))
    );
    assert_ne!(
        t.total("openai", "gpt-4o", &one, noon(), false),
        Some(usd("1"))
    );
}
