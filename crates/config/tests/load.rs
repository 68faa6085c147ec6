//! Loading end to end: parse errors, validation errors, interpolation,
//! redaction, files.

use std::time::Duration;

use switchyard_config::{Config, ConfigErrors, ProviderKind, Secret};

fn no_env(_: &str) -> Option<String> {
    None
}

fn load(text: &str) -> Result<Config, ConfigErrors> {
    Config::from_yaml_str_with_env(text, "config.yaml", no_env)
}

fn load_err(text: &str) -> ConfigErrors {
    match load(text) {
        Ok(c) => panic!("expected errors, got {c:?}"),
        Err(e) => e,
    }
}

const GOOD: &str = "\
server:
  http_addr: 0.0.0.0:8080
providers:
  - name: openai
    kind: openai
    api_key_env: OPENAI_API_KEY
    timeout: 1m 30s
  - name: demo
    kind: demo
models:
  - name: chat
    routes:
      - { provider: openai, model: gpt-4o-mini }
      - { provider: demo, model: echo }
";

#[test]
fn good_config_loads_with_defaults() {
    let c = load(GOOD).unwrap();
    assert_eq!(c.server.http_addr, "0.0.0.0:8080".parse().unwrap());
    assert_eq!(c.server.grpc_addr, "127.0.0.1:50051".parse().unwrap());
    assert_eq!(c.server.max_body_bytes, 32 * 1024 * 1024);
    let openai = c.provider("openai").unwrap();
    assert_eq!(openai.kind, ProviderKind::Openai);
    assert_eq!(openai.timeout, Duration::from_secs(90));
    assert_eq!(
        openai.base_url.as_deref(),
        Some("https://api.openai.com/v1")
    );
    assert_eq!(openai.max_concurrency, 256);
    assert_eq!(c.provider("demo").unwrap().timeout, Duration::from_secs(60));
    assert!(c.provider("nope").is_none());
    assert_eq!(c.models[0].routes.len(), 2);
    assert!(c.bus.is_none());
}

#[test]
fn unknown_key_names_its_path_and_line() {
    let errs = load_err(&GOOD.replace(
        "    timeout: 1m 30s\n",
        "    timeout: 1m 30s\n    tiemout: 5s\n",
    ));
    assert_eq!(errs.len(), 1);
    let e = &errs.errors[0];
    assert_eq!(e.path, "providers[0].tiemout");
    assert_eq!((e.line, e.column), (Some(8), Some(5)));
    assert!(
        e.message
            .starts_with("unknown field `tiemout`, expected one of"),
        "{}",
        e.message
    );
    assert!(
        errs.to_string()
            .starts_with("config.yaml:8:5: providers[0].tiemout: unknown field `tiemout`")
    );

    let errs = load_err("servr:\n  http_addr: 0.0.0.0:1\n");
    assert_eq!(errs.errors[0].path, "servr");
}

#[test]
fn bad_enum_names_the_variant() {
    let errs = load_err(&GOOD.replace("kind: openai", "kind: opnai"));
    let text = errs.to_string();
    assert!(
        text.starts_with(
            "config.yaml:5:11: providers[0].kind: unknown variant `opnai`, expected one of `openai`, `azure-openai`, `anthropic`"
        ),
        "{text}"
    );
}

#[test]
fn bad_duration() {
    let errs = load_err(&GOOD.replace("1m 30s", "90 sekunden"));
    let e = &errs.errors[0];
    assert_eq!(e.path, "providers[0].timeout");
    assert_eq!(e.line, Some(7));
    assert!(
        e.message.contains("expected a duration such as `60s`"),
        "{}",
        e.message
    );
}

#[test]
fn missing_required_field() {
    let errs = load_err("providers:\n  - name: demo\n    kind: demo\nmodels:\n  - name: chat\n");
    let e = &errs.errors[0];
    assert_eq!(e.path, "models[0]");
    assert_eq!(e.message, "missing field `routes`");
    assert_eq!(e.line, Some(5));
}

#[test]
fn wrong_type_and_bad_address() {
    let errs = load_err(&GOOD.replace("0.0.0.0:8080", "localhost"));
    assert_eq!(errs.errors[0].path, "server.http_addr");
    assert!(errs.errors[0].message.contains("expected IP:PORT"));
    let errs = load_err(&GOOD.replace("timeout: 1m 30s", "max_concurrency: lots"));
    assert_eq!(errs.errors[0].path, "providers[0].max_concurrency");
}

#[test]
fn yaml_syntax_error_has_a_position() {
    let errs = load_err("providers:\n  - name: demo\n    kind: demo\n  bad: [\n");
    let e = &errs.errors[0];
    assert!(e.line.is_some(), "{e}");
    assert!(!e.message.contains(" at line "), "{e}");
}

const MANY_PROBLEMS: &str = "\
server:
  max_body_bytes: 0
bus:
  nats_url: http://nats:4222
  subject_prefix: a..b
  ack_timeout: 0s
providers:
  - name: openai
    kind: openai
    base_url: not a url
    api_key: sk-literal
    api_key_env: OPENAI_API_KEY
    max_concurrency: 0
    timeout: 0s
  - name: openai
    kind: demo
  - name: bad.name
    kind: demo
  - name: ''
    kind: demo
models:
  - name: chat
    routes:
      - provider: opena
        model: gpt-4o-mini
  - name: chat
    routes: []
  - name: openai/gpt-4o
    routes:
      - { provider: openai, model: gpt-4o }
  - name: 'has space'
    routes:
      - { provider: openai, model: '' }
";

#[test]
fn every_validation_problem_is_reported() {
    let errs = load_err(MANY_PROBLEMS);
    let found: Vec<(String, Option<usize>)> =
        errs.iter().map(|e| (e.path.clone(), e.line)).collect();
    let expected: &[(&str, usize)] = &[
        ("server.max_body_bytes", 2),
        ("bus.nats_url", 4),
        ("bus.subject_prefix", 5),
        ("bus.ack_timeout", 6),
        ("providers[0].base_url", 10),
        ("providers[0].api_key_env", 12),
        ("providers[0].max_concurrency", 13),
        ("providers[0].timeout", 14),
        ("providers[1].name", 15),
        ("providers[2].name", 17),
        ("providers[3].name", 19),
        ("models[0].routes[0].provider", 24),
        ("models[1].name", 26),
        ("models[1].routes", 27),
        ("models[2].name", 28),
        ("models[3].name", 31),
        ("models[3].routes[0].model", 33),
    ];
    for (path, line) in expected {
        assert!(
            found.contains(&(path.to_string(), Some(*line))),
            "missing {path} at line {line}; got:\n{errs}"
        );
    }
    assert_eq!(errs.len(), expected.len(), "{errs}");
    // Reported in file order.
    let lines: Vec<usize> = errs.iter().filter_map(|e| e.line).collect();
    assert!(lines.windows(2).all(|w| w[0] <= w[1]), "{errs}");

    let text = errs.to_string();
    assert!(
        text.contains("config.yaml:24:19: models[0].routes[0].provider: unknown provider `opena` (known: openai, bad.name)"),
        "{text}"
    );
    assert!(
        text.contains("duplicate provider name `openai` (first defined at providers[0])"),
        "{text}"
    );
    assert!(
        text.contains("duplicate model name `chat` (first defined at models[0])"),
        "{text}"
    );
    assert!(text.contains("model `chat` has no routes"), "{text}");
    // The key itself never shows in errors.
    assert!(!text.contains("sk-literal"));
}

#[test]
fn unknown_provider_lists_known_ones() {
    let errs = load_err(&GOOD.replace("{ provider: demo,", "{ provider: dmeo,"));
    assert_eq!(
        errs.to_string(),
        "config.yaml:14:21: models[0].routes[1].provider: unknown provider `dmeo` (known: openai, demo)"
    );
}

#[test]
fn interpolation_defined_default_and_escape() {
    let text = "\
providers:
  - name: ${NAME}
    kind: openai
    base_url: ${BASE:-http://127.0.0.1:8000/v1}
    max_concurrency: ${CONC:-8}
    headers:
      x-literal: \"$${NOT_A_VAR}\"
";
    let c = Config::from_yaml_str_with_env(text, "c.yaml", |name| match name {
        "NAME" => Some("local".to_owned()),
        _ => None,
    })
    .unwrap();
    let p = c.provider("local").unwrap();
    assert_eq!(p.base_url.as_deref(), Some("http://127.0.0.1:8000/v1"));
    assert_eq!(p.max_concurrency, 8);
    assert_eq!(p.headers["x-literal"], "${NOT_A_VAR}");
}

#[test]
fn interpolation_missing_variable_names_it_and_the_line() {
    let text = "providers:\n  - name: x\n    kind: openai\n    api_key: ${MISSING_KEY}\n";
    let errs = Config::from_yaml_str_with_env(text, "c.yaml", no_env).unwrap_err();
    assert_eq!(errs.len(), 1);
    assert_eq!(
        errs.to_string(),
        "c.yaml:4:14: environment variable `MISSING_KEY` is not set (write `${MISSING_KEY:-default}` to give a default)"
    );
}

#[test]
fn positions_are_in_the_file_as_written() {
    // The substituted value is longer than the reference, and the bad key
    // follows it on the same line.
    let text = "providers:\n  - { name: ${N}, kind: demo, max_concurrency: 0 }\n";
    let errs =
        Config::from_yaml_str_with_env(text, "c.yaml", |_| Some("a-much-longer-name".to_owned()))
            .unwrap_err();
    let e = &errs.errors[0];
    assert_eq!(e.path, "providers[0].max_concurrency");
    assert_eq!((e.line, e.column), (Some(2), Some(48)));
}

#[test]
fn empty_api_key_means_none() {
    let text = "providers:\n  - name: local\n    kind: openai\n    api_key: \"${LOCAL_KEY:-}\"\n";
    let c = Config::from_yaml_str_with_env(text, "c.yaml", no_env).unwrap();
    assert!(c.providers[0].api_key.is_none());
}

#[test]
fn secrets_never_appear_in_debug_or_serialized_output() {
    let text = "\
bus:
  nats_url: nats://natsuser:nats-pass-1@nats:4222
  token: nats-token-2
providers:
  - name: openai
    kind: openai
    api_key: ${KEY}
    headers:
      api-key: header-secret-3
";
    let secrets = [
        "nats-pass-1",
        "nats-token-2",
        "header-secret-3",
        "sk-live-4",
    ];
    let c =
        Config::from_yaml_str_with_env(text, "c.yaml", |_| Some("sk-live-4".to_owned())).unwrap();
    assert_eq!(c.providers[0].api_key, Some(Secret::new("sk-live-4")));
    assert_eq!(c.providers[0].headers["api-key"], "header-secret-3");
    let debug = format!("{c:?} {c:#?}");
    let yaml = serde_norway::to_string(&c).unwrap();
    for out in [&debug, &yaml] {
        for secret in secrets {
            assert!(!out.contains(secret), "{secret} in {out}");
        }
    }
    assert!(debug.contains("natsuser"), "{debug}");

    // Error messages quote values; credentials in them are redacted too.
    let bad = text.replace("nats://", "http://");
    let errs = Config::from_yaml_str_with_env(&bad, "c.yaml", |_| Some("sk-live-4".to_owned()))
        .unwrap_err();
    assert_eq!(errs.errors[0].path, "bus.nats_url");
    let shown = format!("{errs}{errs:?}");
    for secret in secrets {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
}

#[test]
fn load_from_file_and_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("switchyard.yaml");
    std::fs::write(&path, GOOD).unwrap();
    let c = Config::load(&path).unwrap();
    assert_eq!(c.providers.len(), 2);

    std::fs::write(&path, GOOD.replace("kind: demo", "kind: dmo")).unwrap();
    let errs = Config::load(&path).unwrap_err();
    assert!(
        errs.to_string()
            .starts_with(&format!("{}:9:11: providers[1].kind:", path.display()))
    );

    let missing = dir.path().join("nope.yaml");
    let errs = Config::load(&missing).unwrap_err();
    assert_eq!(errs.errors[0].origin, missing.display().to_string());
    assert!(
        errs.errors[0]
            .message
            .starts_with("cannot read the config file")
    );
}

const RESILIENT: &str = "\
providers:
  - { name: a, kind: demo }
  - { name: b, kind: demo }
models:
  - name: chat
    strategy: weighted
    retry: { max_attempts: 3, backoff_base: 100ms, backoff_max: 1s }
    hedge: { delay: p95, min_delay: 300ms, max_hedges: 2 }
    first_token_timeout: 10s
    timeout: 2m
    routes:
      - provider: a
        model: m1
        weight: 0
        context_window: 128000
        capabilities: [tools, vision, json_schema]
        price: { input_per_mtok: 0.15, output_per_mtok: 0.6 }
      - { provider: b, model: m2, weight: 3, capabilities: [] }
  - name: cheap
    strategy: cheapest
    routes:
      - { provider: a, model: m1 }
      - { provider: b, model: m2, price: { input_per_mtok: 0, output_per_mtok: 0 } }
  - name: fast
    strategy: fastest
    hedge: { delay: 1500ms }
    routes: [{ provider: a, model: m1 }, { provider: b, model: m2 }]
  - name: busy
    strategy: least-busy
    routes: [{ provider: a, model: m1 }]
routing:
  breaker: { failure_threshold: 3, open_for: 10s }
  default_cooldown: 2s
  exploration: 0
";

#[test]
fn resilience_keys_load() {
    use switchyard_config::{Capability, HedgeDelay, Strategy};
    let c = load(RESILIENT).unwrap();
    let chat = c.model("chat").unwrap();
    assert_eq!(chat.strategy, Strategy::Weighted);
    assert_eq!(chat.retry.max_attempts, 3);
    assert_eq!(chat.retry.backoff_base, Duration::from_millis(100));
    let hedge = chat.hedge.as_ref().unwrap();
    assert_eq!(hedge.delay, HedgeDelay::P95);
    assert_eq!(hedge.min_delay, Duration::from_millis(300));
    assert_eq!(hedge.max_hedges, 2);
    assert_eq!(chat.first_token_timeout, Some(Duration::from_secs(10)));
    assert_eq!(chat.timeout, Some(Duration::from_secs(120)));
    let r = &chat.routes[0];
    assert_eq!((r.weight, r.context_window), (0, Some(128_000)));
    assert_eq!(
        r.capabilities.as_deref(),
        Some(
            &[
                Capability::Tools,
                Capability::Vision,
                Capability::JsonSchema
            ][..]
        )
    );
    assert_eq!(r.price.unwrap().output_per_mtok, 0.6);
    assert_eq!(chat.routes[1].capabilities.as_deref(), Some(&[][..]));

    let fast = c.model("fast").unwrap();
    let hedge = fast.hedge.as_ref().unwrap();
    assert_eq!(hedge.delay, HedgeDelay::Fixed(Duration::from_millis(1500)));
    assert_eq!(hedge.min_delay, Duration::from_millis(500));
    assert_eq!(hedge.max_hedges, 1);
    // Defaults.
    assert_eq!(fast.retry.max_attempts, 4);
    assert_eq!(fast.routes[0].weight, 1);
    assert_eq!(fast.routes[0].capabilities, None);
    assert_eq!(c.model("busy").unwrap().strategy, Strategy::LeastBusy);
    assert_eq!(c.routing.breaker.failure_threshold, 3);
    assert_eq!(c.routing.exploration, 0.0);

    let c = load(GOOD).unwrap();
    assert_eq!(c.routing.default_cooldown, Duration::from_secs(5));
    assert_eq!(c.routing.breaker.open_for, Duration::from_secs(30));
    assert_eq!(c.routing.exploration, 0.05);
    assert!(c.models[0].hedge.is_none());

    // What is dumped loads back the same.
    let c = load(RESILIENT).unwrap();
    let yaml = serde_norway::to_string(&c).unwrap();
    assert_eq!(load(&yaml).unwrap(), c);
}

const RESILIENCE_PROBLEMS: &str = "\
providers:
  - { name: a, kind: demo }
  - { name: b, kind: demo }
models:
  - name: all-zero
    strategy: weighted
    routes:
      - { provider: a, model: m1, weight: 0 }
      - { provider: b, model: m2, weight: 0 }
  - name: retries
    retry:
      max_attempts: 0
      backoff_base: 5s
    first_token_timeout: 0s
    timeout: 0ms
    routes: [{ provider: a, model: m1 }]
  - name: lonely-hedge
    hedge:
      delay: 0s
      max_hedges: 0
    routes: [{ provider: a, model: m1 }]
  - name: p95-hedge
    hedge: { delay: p95, min_delay: 0s }
    routes: [{ provider: a, model: m1 }, { provider: b, model: m2 }]
  - name: cheap
    strategy: cheapest
    routes:
      - provider: a
        model: m1
        context_window: 0
        capabilities: [tools, vision, tools]
      - provider: b
        model: m2
        price: { input_per_mtok: -1, output_per_mtok: .nan }
  - name: no-prices
    strategy: cheapest
    routes: [{ provider: a, model: m1 }]
routing:
  breaker:
    failure_threshold: 0
    open_for: 0s
  default_cooldown: 0s
  exploration: 1.5
";

#[test]
fn every_resilience_problem_is_reported() {
    let errs = load_err(RESILIENCE_PROBLEMS);
    let found: Vec<(String, Option<usize>)> =
        errs.iter().map(|e| (e.path.clone(), e.line)).collect();
    let expected: &[(&str, usize)] = &[
        ("models[0].routes", 8),
        ("models[1].retry.max_attempts", 12),
        ("models[1].retry.backoff_base", 13),
        ("models[1].first_token_timeout", 14),
        ("models[1].timeout", 15),
        // A block mapping's position is its first key's.
        ("models[2].hedge", 19),
        ("models[2].hedge.delay", 19),
        ("models[2].hedge.max_hedges", 20),
        ("models[3].hedge.min_delay", 23),
        ("models[4].routes[0].context_window", 30),
        ("models[4].routes[0].capabilities[2]", 31),
        ("models[4].routes[1].price.input_per_mtok", 34),
        ("models[4].routes[1].price.output_per_mtok", 34),
        ("models[5].strategy", 36),
        ("routing.breaker.failure_threshold", 40),
        ("routing.breaker.open_for", 41),
        ("routing.default_cooldown", 42),
        ("routing.exploration", 43),
    ];
    for (path, line) in expected {
        assert!(
            found.contains(&(path.to_string(), Some(*line))),
            "missing {path} at line {line}; got:\n{errs}"
        );
    }
    assert_eq!(errs.len(), expected.len(), "{errs}");

    let text = errs.to_string();
    for needle in [
        "models[0].routes: every route of model `all-zero` has weight 0 under strategy `weighted`",
        "models[1].retry.backoff_base: `5s` is more than `backoff_max` (`2s`)",
        "models[2].hedge: model `lonely-hedge` has a single route: a hedge has nothing to start",
        "models[4].routes[0].capabilities[2]: `tools` is listed twice (first at capabilities[0])",
        "models[4].routes[1].price.input_per_mtok: `-1` is not a price",
        "models[5].strategy: model `no-prices` uses strategy `cheapest`, which needs prices",
        "routing.exploration: `1.5` is not a share: expected a number from 0 to 1",
    ] {
        assert!(text.contains(needle), "{needle}\nnot in:\n{text}");
    }
}

#[test]
fn a_key_left_at_its_default_points_at_its_block() {
    // Only `backoff_max` is written; the problem is named by `backoff_base`
    // (at its default) and placed on the `retry` line.
    let text = "\
providers: [{ name: a, kind: demo }]
models:
  - name: chat
    retry:
      backoff_max: 10ms
    routes: [{ provider: a, model: m }]
";
    let errs = load_err(text);
    assert_eq!(errs.len(), 1, "{errs}");
    let e = &errs.errors[0];
    assert_eq!(e.path, "models[0].retry.backoff_base");
    assert_eq!(e.line, Some(5));
    assert_eq!(e.message, "`50ms` is more than `backoff_max` (`10ms`)");
}

#[test]
fn bad_hedge_delay_and_unknown_capability_or_strategy() {
    let base = "\
providers: [{ name: a, kind: demo }, { name: b, kind: demo }]
models:
  - name: chat
    strategy: fastest
    hedge: { delay: DELAY }
    routes: [{ provider: a, model: m, capabilities: [CAP] }, { provider: b, model: m }]
";
    let good = base.replace("DELAY", "p95").replace("CAP", "vision");
    load(&good).unwrap();

    let errs = load_err(&base.replace("DELAY", "soon").replace("CAP", "vision"));
    let e = &errs.errors[0];
    assert_eq!(e.path, "models[0].hedge.delay");
    assert_eq!(e.line, Some(5));
    assert!(
        e.message
            .contains("`soon` is not a duration such as `1500ms` or `2s`, nor `p95`"),
        "{e}"
    );

    let errs = load_err(&base.replace("DELAY", "p95").replace("CAP", "audio"));
    assert_eq!(errs.errors[0].path, "models[0].routes[0].capabilities[0]");
    assert!(
        errs.errors[0]
            .message
            .contains("expected one of `tools`, `vision`, `json_schema`"),
        "{}",
        errs.errors[0]
    );

    let errs = load_err(&good.replace("fastest", "fastest-ever"));
    assert!(
        errs.errors[0].message.contains("`least-busy`"),
        "{}",
        errs.errors[0]
    );
}

#[test]
fn weighted_with_some_zero_weights_and_cheapest_with_some_prices_are_fine() {
    let text = "\
providers: [{ name: a, kind: demo }, { name: b, kind: demo }]
models:
  - name: split
    strategy: weighted
    routes:
      - { provider: a, model: m, weight: 0 }
      - { provider: b, model: m }
  - name: cheap
    strategy: cheapest
    routes:
      - { provider: a, model: m }
      - { provider: b, model: m, price: { input_per_mtok: 1, output_per_mtok: 2 } }
  - name: zero-weights-ignored-by-fallback
    routes:
      - { provider: a, model: m, weight: 0 }
";
    load(text).unwrap();
}

#[test]
fn telemetry_keys_load_and_are_checked() {
    use switchyard_config::OtlpProtocol;
    let c = load(GOOD).unwrap();
    assert_eq!(c.telemetry.sampling_ratio, 1.0);
    assert!(!c.telemetry.record_content);
    assert_eq!(c.telemetry.otlp_endpoint, None);
    assert_eq!(c.telemetry.otlp_protocol, OtlpProtocol::Grpc);

    let text = "\
providers: [{ name: a, kind: demo }]
telemetry:
  sampling_ratio: 0.1
  record_content: true
  otlp_endpoint: http://collector:4318
  otlp_protocol: http
";
    let c = load(text).unwrap();
    assert_eq!(c.telemetry.sampling_ratio, 0.1);
    assert!(c.telemetry.record_content);
    assert_eq!(
        c.telemetry.otlp_endpoint.as_deref(),
        Some("http://collector:4318")
    );
    assert_eq!(c.telemetry.otlp_protocol, OtlpProtocol::Http);
    let yaml = serde_norway::to_string(&c).unwrap();
    assert_eq!(load(&yaml).unwrap(), c);

    let errs = load_err(
        "\
providers: [{ name: a, kind: demo }]
telemetry:
  sampling_ratio: 2
  otlp_endpoint: collector:4317
",
    );
    let paths: Vec<&str> = errs.errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        ["telemetry.sampling_ratio", "telemetry.otlp_endpoint"],
        "{errs}"
    );
    let text = errs.to_string();
    assert!(text.contains("`2` is not a share"), "{text}");

    for bad in [
        "telemetry:\n  otlp_protocol: zipkin\n",
        "telemetry:\n  sample_rate: 1\n",
    ] {
        let errs = load_err(&format!("providers: [{{ name: a, kind: demo }}]\n{bad}"));
        assert!(errs.to_string().contains("telemetry"), "{errs}");
    }
}

#[test]
fn responses_native_only_for_openai_wire_formats() {
    let c = load(&GOOD.replace(
        "    timeout: 1m 30s\n",
        "    timeout: 1m 30s\n    responses: native\n",
    ))
    .unwrap();
    assert_eq!(
        c.providers[0].responses,
        switchyard_config::ResponsesMode::Native
    );
    assert_eq!(
        load(GOOD).unwrap().providers[0].responses,
        switchyard_config::ResponsesMode::Translate
    );
    let errs = load_err(&GOOD.replace(
        "    kind: demo\n",
        "    kind: demo\n    responses: native\n",
    ));
    let text = errs.to_string();
    assert!(text.contains("providers[1].responses"), "{text}");
    assert_eq!(errs.len(), 1, "{text}");
}

#[test]
fn guardrails_rules_are_checked_by_key() {
    let with = |rules: &str| format!("{GOOD}guardrails:\n  rules:\n{rules}");
    let c = load(&with(
        "    - { detector: card, action: block }\n    - { name: code, detector: regex, pattern: 'falcon', action: redact, teams: [red] }\n",
    ))
    .unwrap();
    assert_eq!(c.guardrails.rules.len(), 2);
    assert_eq!(
        c.guardrails.rules[1].action,
        switchyard_config::GuardrailAction::Redact
    );
    assert_eq!(c.guardrails.rules[0].display_name(), "card");

    let errs = load_err(&with(
        "    - { detector: cards, action: block }\n    - { detector: regex, action: log }\n    - { name: x, detector: regex, pattern: '(', action: log }\n    - { detector: email, pattern: 'a', action: log }\n",
    ));
    let text = errs.to_string();
    for key in [
        "guardrails.rules[0].detector",
        "guardrails.rules[1].pattern",
        "guardrails.rules[1].name",
        "guardrails.rules[2].pattern",
        "guardrails.rules[3].pattern",
    ] {
        assert!(text.contains(key), "{key} missing in {text}");
    }
    // An unknown action or key is a parse error naming it.
    let text = load_err(&with("    - { detector: card, action: shout }\n")).to_string();
    assert!(text.contains("guardrails.rules[0].action"), "{text}");
}

#[test]
fn guardrails_applies_to_defaults_to_the_request() {
    use switchyard_config::GuardrailScope;
    let with = |rules: &str| format!("{GOOD}guardrails:\n  rules:\n{rules}");
    let c = load(&with(
        "    - { detector: card, action: block }\n    - { detector: email, action: redact, applies_to: response }\n    - { detector: secret, action: block, applies_to: both }\n",
    ))
    .unwrap();
    let scopes: Vec<GuardrailScope> = c.guardrails.rules.iter().map(|r| r.applies_to).collect();
    assert_eq!(
        scopes,
        [
            GuardrailScope::Request,
            GuardrailScope::Response,
            GuardrailScope::Both
        ]
    );
    assert!(scopes[0].request() && !scopes[0].response());
    assert!(!scopes[1].request() && scopes[1].response());
    assert!(scopes[2].request() && scopes[2].response());
    let text = load_err(&with(
        "    - { detector: card, action: block, applies_to: answers }\n",
    ))
    .to_string();
    assert!(text.contains("guardrails.rules[0].applies_to"), "{text}");
}
