//! Normalization (defaults that depend on other keys) and the validation
//! pass, which reports every problem rather than stopping at the first.

use std::collections::HashMap;
use std::time::Duration;

use crate::keypath::KeyPath;
use crate::{
    CacheBackend, Config, GUARDRAIL_DETECTORS, HedgeDelay, ModelConfig, ProviderConfig,
    ResponseStoreKind, ResponsesMode, RouteConfig, Strategy, WireFormat,
};

pub(crate) type Problem = (KeyPath, String);

/// Fills in what serde's per-field defaults cannot express.
pub(crate) fn normalize(config: &mut Config) {
    for p in &mut config.providers {
        if p.base_url.is_none() {
            p.base_url = p.kind.default_base_url().map(str::to_owned);
        }
        // Workers append endpoint paths (`/chat/completions`); a trailing
        // slash would double up.
        if let Some(url) = &mut p.base_url {
            let trimmed = url.trim_end_matches('/');
            if trimmed.len() != url.len() && trimmed.contains("://") && !trimmed.ends_with(':') {
                *url = trimmed.to_owned();
            }
        }
        // `api_key: ${KEY:-}` means "no key when KEY is unset".
        if p.api_key.as_ref().is_some_and(|k| k.expose().is_empty()) {
            p.api_key = None;
        }
    }
}

pub(crate) fn validate(config: &Config) -> Vec<Problem> {
    let mut v = Validator::default();
    v.server(config);
    if let Some(bus) = &config.bus {
        let path = KeyPath::root().key("bus");
        if let Err(m) = check_nats_urls(&bus.nats_url) {
            v.push(path.key("nats_url"), m);
        }
        if let Err(m) = check_subject_prefix(&bus.subject_prefix) {
            v.push(path.key("subject_prefix"), m);
        }
        v.nonzero_duration(path.key("ack_timeout"), bus.ack_timeout);
        v.nonzero_duration(path.key("heartbeat_interval"), bus.heartbeat_interval);
        if bus.token.is_some() && (bus.user.is_some() || bus.password.is_some()) {
            v.push(
                path.key("token"),
                "set either `token` or `user` and `password`, not both",
            );
        }
        match (&bus.user, &bus.password) {
            (Some(_), None) => v.push(path.key("user"), "`user` needs `password`"),
            (None, Some(_)) => v.push(path.key("password"), "`password` needs `user`"),
            _ => {}
        }
    }
    v.providers(config);
    v.models(config);
    v.routing(config);
    v.telemetry(config);
    v.discovery(config);
    v.cache(config);
    v.responses(config);
    v.guardrails(config);
    crate::validate_spend::validate(config, &mut v.problems);
    crate::validate_auth::validate(config, &mut v.problems);
    v.problems
}

#[derive(Default)]
struct Validator {
    problems: Vec<Problem>,
}

impl Validator {
    fn guardrails(&mut self, config: &Config) {
        let rules = KeyPath::root().key("guardrails").key("rules");
        let mut names = std::collections::HashSet::new();
        for (i, r) in config.guardrails.rules.iter().enumerate() {
            let path = rules.index(i);
            let is_regex = r.detector == "regex";
            if !is_regex && !GUARDRAIL_DETECTORS.contains(&r.detector.as_str()) {
                self.push(
                    path.key("detector"),
                    format!(
                        "unknown detector `{}` (one of {}, regex)",
                        r.detector,
                        GUARDRAIL_DETECTORS.join(", ")
                    ),
                );
            }
            match (&r.pattern, is_regex) {
                (None, true) => self.push(path.key("pattern"), "a `regex` rule needs a `pattern`"),
                (Some(_), false) => {
                    self.push(path.key("pattern"), "only a `regex` rule takes a `pattern`");
                }
                (Some(p), true) => {
                    if let Err(e) = regex::RegexBuilder::new(p).size_limit(1 << 20).build() {
                        self.push(
                            path.key("pattern"),
                            format!("not a valid regular expression: {e}"),
                        );
                    }
                }
                (None, false) => {}
            }
            if is_regex && r.name.as_deref().is_none_or(str::is_empty) {
                self.push(
                    path.key("name"),
                    "a `regex` rule needs a `name` (errors and logs name it)",
                );
            }
            if !names.insert(r.display_name().to_owned()) {
                self.push(
                    path.key("name"),
                    format!("another rule is already named `{}`", r.display_name()),
                );
            }
        }
    }

    fn responses(&mut self, config: &Config) {
        let r = &config.responses;
        let path = KeyPath::root().key("responses");
        if r.store == ResponseStoreKind::Jetstream && config.bus.is_none() {
            self.push(
                path.key("store"),
                "`jetstream` needs `bus` (the bucket lives on the bus's NATS); use `local` or `auto`",
            );
        }
        self.nonzero_duration(path.key("ttl"), r.ttl);
        if r.max_bytes_per_response == 0 {
            self.push(
                path.key("max_bytes_per_response"),
                "must be greater than zero",
            );
        }
        if r.path.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
            self.push(path.key("path"), "must not be empty when set");
        }
        if r.bucket.is_empty()
            || !r
                .bucket
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            self.push(
                path.key("bucket"),
                format!(
                    "`{}` is not a key-value bucket name: letters, digits, `_` and `-` only",
                    r.bucket
                ),
            );
        }
        if !(1..=5).contains(&r.replicas) {
            self.push(path.key("replicas"), "must be between 1 and 5");
        }
    }

    fn cache(&mut self, config: &Config) {
        let c = &config.cache;
        let path = KeyPath::root().key("cache");
        self.nonzero_duration(path.key("ttl"), c.ttl);
        if c.max_entry_bytes == 0 {
            self.push(path.key("max_entry_bytes"), "must be greater than zero");
        }
        if c.max_memory_bytes < c.max_entry_bytes {
            self.push(
                path.key("max_memory_bytes"),
                "must be at least `max_entry_bytes`",
            );
        }
        let redis = path.key("redis");
        if !(c.redis.url.starts_with("redis://") || c.redis.url.starts_with("unix://")) {
            self.push(
                redis.key("url"),
                "must be a `redis://host:port[/db]` or `unix://` URL",
            );
        }
        self.nonzero_duration(redis.key("timeout"), c.redis.timeout);
        if c.shared_namespace
            .as_deref()
            .is_some_and(|n| n.trim().is_empty())
        {
            self.push(path.key("shared_namespace"), "must not be empty when set");
        }
        if c.persist {
            if !c.enabled {
                self.push(path.key("persist"), "needs `cache.enabled: true`");
            }
            if c.backend != CacheBackend::Memory {
                self.push(
                    path.key("persist"),
                    "only the memory backend is persisted (Redis keeps its own entries)",
                );
            }
        }
        if c.persist_path
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            self.push(path.key("persist_path"), "must not be empty when set");
        }
        self.semantic_cache(config);
        for (i, m) in config.models.iter().enumerate() {
            if let Some(ttl) = m.cache.as_ref().and_then(|mc| mc.ttl) {
                self.nonzero_duration(
                    KeyPath::root()
                        .key("models")
                        .index(i)
                        .key("cache")
                        .key("ttl"),
                    ttl,
                );
            }
        }
    }

    fn semantic_cache(&mut self, config: &Config) {
        let s = &config.cache.semantic;
        let path = KeyPath::root().key("cache").key("semantic");
        if !s.enabled {
            return;
        }
        if !config.cache.enabled {
            self.push(path.key("enabled"), "needs `cache.enabled: true`");
        }
        let model = s.embedding_model.trim();
        if model.is_empty() {
            self.push(
                path.key("embedding_model"),
                "required when the semantic cache is enabled",
            );
        } else {
            // What the route table resolves: a configured model, a model a
            // provider lists, or `provider/upstream-model`.
            let known = config.models.iter().any(|m| m.name == model)
                || config
                    .providers
                    .iter()
                    .any(|p| p.models.iter().any(|m| m == model))
                || model.split_once('/').is_some_and(|(p, up)| {
                    !up.is_empty() && config.providers.iter().any(|q| q.name == p)
                });
            if !known {
                self.push(
                    path.key("embedding_model"),
                    format!(
                        "`{model}` is not a model of this config (models[].name, a provider's listed model, or provider/model)"
                    ),
                );
            }
        }
        if !(s.threshold > 0.0 && s.threshold <= 1.0) {
            self.push(
                path.key("threshold"),
                "must be a cosine similarity above 0 and at most 1",
            );
        }
        if s.max_entries == 0 {
            self.push(path.key("max_entries"), "must be greater than zero");
        }
        if s.max_bucket_entries == 0 {
            self.push(path.key("max_bucket_entries"), "must be greater than zero");
        }
        if s.max_prompt_bytes == 0 {
            self.push(path.key("max_prompt_bytes"), "must be greater than zero");
        }
        self.nonzero_duration(path.key("timeout"), s.timeout);
    }

    fn push(&mut self, path: KeyPath, message: impl Into<String>) {
        self.problems.push((path, message.into()));
    }

    fn nonzero_duration(&mut self, path: KeyPath, d: Duration) {
        if d.is_zero() {
            self.push(path, "must be greater than zero");
        }
    }

    fn server(&mut self, config: &Config) {
        let s = &config.server;
        let path = KeyPath::root().key("server");
        if s.max_body_bytes == 0 {
            self.push(path.key("max_body_bytes"), "must be greater than zero");
        }
        self.nonzero_duration(path.key("request_timeout"), s.request_timeout);
        if s.http_addr == s.grpc_addr && s.http_addr.port() != 0 {
            self.push(
                path.key("grpc_addr"),
                format!(
                    "`{}` is also `server.http_addr`; the two listeners need different addresses",
                    s.grpc_addr
                ),
            );
        }
    }

    fn providers(&mut self, config: &Config) {
        let root = KeyPath::root().key("providers");
        if config.providers.is_empty() {
            self.push(
                root.clone(),
                "no providers are configured; add at least one (kind `demo` needs no key)",
            );
        }
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (i, p) in config.providers.iter().enumerate() {
            let path = root.index(i);
            match check_provider_name(&p.name) {
                Err(m) => self.push(path.key("name"), m),
                Ok(()) => {
                    if let Some(first) = seen.get(p.name.as_str()) {
                        self.push(
                            path.key("name"),
                            format!("duplicate provider name `{}` (first defined at providers[{first}])", p.name),
                        );
                    } else {
                        seen.insert(&p.name, i);
                    }
                }
            }
            self.provider(&path, p);
        }
    }

    /// Keys that only some kinds use, and what a kind cannot do without.
    fn kind_specific(&mut self, path: &KeyPath, p: &ProviderConfig) {
        let kind = p.kind.as_str();
        match p.kind.wire_format() {
            WireFormat::AzureOpenai if p.base_url.is_none() => self.push(
                path.key("base_url"),
                "kind `azure-openai` needs `base_url`: your resource's endpoint, \
                 e.g. https://my-resource.openai.azure.com",
            ),
            WireFormat::Bedrock
                if p.region.is_none()
                    && std::env::var_os("AWS_REGION").is_none()
                    && std::env::var_os("AWS_DEFAULT_REGION").is_none()
                    && p.base_url.is_none() =>
            {
                self.push(
                    path.key("region"),
                    "kind `bedrock` needs `region` (or AWS_REGION in the environment)",
                )
            }
            _ => {}
        }
        if p.api_version.is_some()
            && !matches!(
                p.kind.wire_format(),
                WireFormat::AzureOpenai | WireFormat::Anthropic
            )
        {
            self.push(
                path.key("api_version"),
                format!(
                    "kind `{kind}` has no API version to set (only azure-openai and anthropic)"
                ),
            );
        }
        if p.region.is_some() && p.kind.wire_format() != WireFormat::Bedrock {
            self.push(
                path.key("region"),
                format!("kind `{kind}` takes no `region` (only bedrock)"),
            );
        }
        if p.responses == ResponsesMode::Native
            && !matches!(
                p.kind.wire_format(),
                WireFormat::Openai | WireFormat::AzureOpenai
            )
        {
            self.push(
                path.key("responses"),
                format!(
                    "kind `{kind}` has no Responses API endpoint to pass requests to: \
                     `responses: native` is for kinds of OpenAI's wire format (openai, \
                     azure-openai, ...); use `translate`"
                ),
            );
        }
        if p.aws.is_some() && p.kind.wire_format() != WireFormat::Bedrock {
            self.push(
                path.key("aws"),
                format!("kind `{kind}` takes no `aws` credentials (only bedrock)"),
            );
        }
    }

    fn provider(&mut self, path: &KeyPath, p: &ProviderConfig) {
        if let Some(url) = &p.base_url
            && let Err(m) = check_base_url(url)
        {
            self.push(path.key("base_url"), m);
        }
        if p.api_key.is_some() && p.api_key_env.is_some() {
            self.push(
                path.key("api_key_env"),
                "both `api_key` and `api_key_env` are set; keep one",
            );
        }
        if let Some(var) = &p.api_key_env
            && !is_env_var_name(var)
        {
            self.push(
                path.key("api_key_env"),
                format!(
                    "`{var}` is not an environment variable name \
                     (letters, digits and `_`, not starting with a digit)"
                ),
            );
        }
        self.kind_specific(path, p);
        self.nonzero_duration(path.key("timeout"), p.timeout);
        if p.max_concurrency == 0 {
            self.push(path.key("max_concurrency"), "must be greater than zero");
        }
        for (name, value) in &p.headers {
            let hpath = path.key("headers").key(name.as_str());
            if !is_header_name(name) {
                self.push(
                    hpath.clone(),
                    format!("`{name}` is not a valid HTTP header name"),
                );
            }
            if value.chars().any(|c| c.is_control() && c != '\t') {
                self.push(
                    hpath,
                    "header value contains control characters (a line break?)",
                );
            }
        }
        let mut listed: HashMap<&str, usize> = HashMap::new();
        for (j, m) in p.models.iter().enumerate() {
            let mpath = path.key("models").index(j);
            if let Err(msg) = check_model_name(m) {
                self.push(mpath, msg);
            } else if let Some(first) = listed.get(m.as_str()) {
                self.push(
                    mpath,
                    format!("`{m}` is listed twice (first at models[{first}])"),
                );
            } else {
                listed.insert(m, j);
            }
        }
    }

    fn models(&mut self, config: &Config) {
        let root = KeyPath::root().key("models");
        let mut known: Vec<&str> = Vec::new();
        for p in &config.providers {
            if !p.name.is_empty() && !known.contains(&p.name.as_str()) {
                known.push(&p.name);
            }
        }
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (i, m) in config.models.iter().enumerate() {
            let path = root.index(i);
            match check_model_name(&m.name) {
                Err(msg) => self.push(path.key("name"), msg),
                Ok(()) => {
                    if let Some(first) = seen.get(m.name.as_str()) {
                        self.push(
                            path.key("name"),
                            format!(
                                "duplicate model name `{}` (first defined at models[{first}])",
                                m.name
                            ),
                        );
                    } else {
                        seen.insert(&m.name, i);
                    }
                    // `<provider>/<model>` addresses a provider directly; a
                    // configured name of that form would silently take it
                    // over, so the request would not go where its name says.
                    if let Some((prefix, _)) = m.name.split_once('/')
                        && known.contains(&prefix)
                    {
                        self.push(
                            path.key("name"),
                            format!(
                                "`{}` has the form `<provider>/<model>` of the configured provider \
                                 `{prefix}`, which already addresses that provider directly; \
                                 choose another name",
                                m.name
                            ),
                        );
                    }
                }
            }
            if m.routes.is_empty() {
                self.push(
                    path.key("routes"),
                    format!("model `{}` has no routes", m.name),
                );
            }
            for (j, r) in m.routes.iter().enumerate() {
                let rpath = path.key("routes").index(j);
                if r.provider.is_empty() {
                    self.push(rpath.key("provider"), "must not be empty");
                } else if !known.contains(&r.provider.as_str()) {
                    let known_list = if known.is_empty() {
                        "no providers are configured".to_owned()
                    } else {
                        format!("known: {}", known.join(", "))
                    };
                    self.push(
                        rpath.key("provider"),
                        format!("unknown provider `{}` ({known_list})", r.provider),
                    );
                }
                if let Err(msg) = check_model_name(&r.model) {
                    self.push(rpath.key("model"), msg);
                }
                self.route(&rpath, r);
            }
            self.model_resilience(&path, m);
        }
    }

    /// What a route states about its target: window, capabilities, price.
    fn route(&mut self, path: &KeyPath, r: &RouteConfig) {
        if r.context_window == Some(0) {
            self.push(
                path.key("context_window"),
                "must be greater than zero (remove it when the window is unknown)",
            );
        }
        if let Some(caps) = &r.capabilities {
            let mut seen = HashMap::new();
            for (k, cap) in caps.iter().enumerate() {
                if let Some(first) = seen.get(cap) {
                    self.push(
                        path.key("capabilities").index(k),
                        format!(
                            "`{}` is listed twice (first at capabilities[{first}])",
                            cap.as_str()
                        ),
                    );
                } else {
                    seen.insert(*cap, k);
                }
            }
        }
        if let Some(price) = &r.price {
            let ppath = path.key("price");
            for (key, value) in [
                ("input_per_mtok", price.input_per_mtok),
                ("output_per_mtok", price.output_per_mtok),
            ] {
                if !value.is_finite() || value < 0.0 {
                    self.push(
                        ppath.key(key),
                        format!("`{value}` is not a price: expected a finite number, zero or more (USD per million tokens)"),
                    );
                }
            }
        }
    }

    /// Strategy, retries, hedging and deadlines of one model: settings under
    /// which a request could never be routed as written (no route to pick,
    /// no attempt allowed, a deadline already past) are refused at load,
    /// not discovered one failed request at a time.
    fn model_resilience(&mut self, path: &KeyPath, m: &ModelConfig) {
        match m.strategy {
            // A weight of 0 parks one route; all of them at 0 leaves nothing
            // to pick from.
            Strategy::Weighted
                if !m.routes.is_empty() && m.routes.iter().all(|r| r.weight == 0) =>
            {
                self.push(
                    path.key("routes"),
                    format!(
                        "every route of model `{}` has weight 0 under strategy `weighted`; \
                         give at least one a weight above zero",
                        m.name
                    ),
                );
            }
            Strategy::Cheapest
                if !m.routes.is_empty() && m.routes.iter().all(|r| r.price.is_none()) =>
            {
                self.push(
                    path.key("strategy"),
                    format!(
                        "model `{}` uses strategy `cheapest`, which needs prices, but none of its \
                         routes has a `price`",
                        m.name
                    ),
                );
            }
            _ => {}
        }

        let rpath = path.key("retry");
        if m.retry.max_attempts == 0 {
            self.push(
                rpath.key("max_attempts"),
                "must be at least 1 (the first try counts)",
            );
        }
        if m.retry.backoff_base > m.retry.backoff_max {
            self.push(
                rpath.key("backoff_base"),
                format!(
                    "`{}` is more than `backoff_max` (`{}`)",
                    humantime::format_duration(m.retry.backoff_base),
                    humantime::format_duration(m.retry.backoff_max)
                ),
            );
        }

        if let Some(hedge) = &m.hedge {
            let hpath = path.key("hedge");
            if m.routes.len() == 1 {
                self.push(
                    hpath.clone(),
                    format!(
                        "model `{}` has a single route: a hedge has nothing to start; \
                         add a route or remove `hedge`",
                        m.name
                    ),
                );
            }
            match hedge.delay {
                HedgeDelay::Fixed(d) => self.nonzero_duration(hpath.key("delay"), d),
                // Before the first measurement the delay is `min_delay`: zero
                // would hedge every request at once, doubling upstream calls.
                HedgeDelay::P95 => self.nonzero_duration(hpath.key("min_delay"), hedge.min_delay),
            }
            if hedge.max_hedges == 0 {
                self.push(
                    hpath.key("max_hedges"),
                    "must be at least 1 (remove `hedge` to turn hedging off)",
                );
            }
        }

        if let Some(d) = m.first_token_timeout {
            self.nonzero_duration(path.key("first_token_timeout"), d);
        }
        if let Some(d) = m.timeout {
            self.nonzero_duration(path.key("timeout"), d);
        }
    }

    fn routing(&mut self, config: &Config) {
        let r = &config.routing;
        let path = KeyPath::root().key("routing");
        self.nonzero_duration(path.key("default_cooldown"), r.default_cooldown);
        // `!(0..=1).contains` is also true for NaN.
        if !(0.0..=1.0).contains(&r.exploration) {
            self.push(
                path.key("exploration"),
                format!(
                    "`{}` is not a share: expected a number from 0 to 1",
                    r.exploration
                ),
            );
        }
        let bpath = path.key("breaker");
        if r.breaker.failure_threshold == 0 {
            self.push(bpath.key("failure_threshold"), "must be at least 1");
        }
        self.nonzero_duration(bpath.key("open_for"), r.breaker.open_for);
    }

    fn telemetry(&mut self, config: &Config) {
        let t = &config.telemetry;
        let path = KeyPath::root().key("telemetry");
        // `!(0..=1).contains` is also true for NaN.
        if !(0.0..=1.0).contains(&t.sampling_ratio) {
            self.push(
                path.key("sampling_ratio"),
                format!(
                    "`{}` is not a share: expected a number from 0 to 1",
                    t.sampling_ratio
                ),
            );
        }
        if let Some(url) = &t.otlp_endpoint
            && let Err(m) = check_base_url(url)
        {
            self.push(path.key("otlp_endpoint"), m);
        }
    }
}

impl Validator {
    fn discovery(&mut self, config: &Config) {
        let Some(c) = &config.discovery.consul else {
            return;
        };
        let path = KeyPath::root().key("discovery").key("consul");
        if let Err(m) = check_base_url(&c.address) {
            self.push(path.key("address"), m);
        }
        if c.token
            .as_ref()
            .is_some_and(|t| t.expose().chars().any(char::is_control))
        {
            self.push(
                path.key("token"),
                "contains control characters (a line break?)",
            );
        }
        for (key, name) in [
            ("router_service_name", &c.router_service_name),
            ("worker_service_name", &c.worker_service_name),
        ] {
            if let Err(m) = check_service_name(name) {
                self.push(path.key(key), m);
            }
        }
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (i, tag) in c.tags.iter().enumerate() {
            let tpath = path.key("tags").index(i);
            if tag.is_empty() {
                self.push(tpath, "must not be empty");
            } else if tag.chars().any(|ch| ch.is_whitespace() || ch.is_control()) {
                self.push(
                    tpath,
                    format!("`{tag}` must not contain whitespace or control characters"),
                );
            } else if tag.starts_with("role=") || tag.starts_with("provider=") {
                self.push(
                    tpath,
                    format!("`{tag}`: `role=` and `provider=` tags are set by Switchyard itself"),
                );
            } else if let Some(first) = seen.get(tag.as_str()) {
                self.push(
                    tpath,
                    format!("`{tag}` is listed twice (first at tags[{first}])"),
                );
            } else {
                seen.insert(tag, i);
            }
        }
        self.nonzero_duration(path.key("check_interval"), c.check_interval);
        // Consul reaps critical services at most every 30s and ignores
        // timeouts under a minute.
        if c.deregister_critical_after < Duration::from_secs(60) {
            self.push(
                path.key("deregister_critical_after"),
                format!(
                    "`{}` is less than Consul's minimum of 1m",
                    humantime::format_duration(c.deregister_critical_after)
                ),
            );
        }
        if let Some(addr) = &c.advertise_address
            && let Err(m) = check_advertise_address(addr)
        {
            self.push(path.key("advertise_address"), m);
        }
    }
}

/// Consul service names are DNS labels (`<name>.service.consul`).
fn check_service_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if name.len() > 63
        || name.starts_with('-')
        || name.ends_with('-')
        || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        return Err(format!(
            "`{name}` is not a DNS label: up to 63 letters, digits and `-`, not starting or ending with `-`"
        ));
    }
    Ok(())
}

/// An IP address or a host name, without scheme or port.
fn check_advertise_address(addr: &str) -> Result<(), String> {
    if addr.is_empty() {
        return Err("must not be empty (remove it to use the default)".to_owned());
    }
    if addr.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    let ok = addr.len() <= 253
        && addr.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{addr}` is neither an IP address nor a host name (no scheme, no port)"
        ))
    }
}

/// Provider names become NATS subject tokens (`<prefix>.work.<provider>`).
fn check_provider_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(format!(
            "`{name}` may contain only letters, digits, `_` and `-` (it is part of NATS subjects)"
        ));
    }
    Ok(())
}

/// Model names go into HTTP bodies and headers, never into subjects, so only
/// what would break those (or be invisible in a log) is refused.
fn check_model_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "`{name}` must not contain whitespace or control characters"
        ));
    }
    Ok(())
}

pub(crate) fn check_base_url(raw: &str) -> Result<(), String> {
    let url = url::Url::parse(raw).map_err(|e| format!("`{raw}` is not a valid URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("`{raw}` must be an http:// or https:// URL"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("`{raw}` has no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "`{raw}` must not have a query or fragment (endpoint paths are appended to it)"
        ));
    }
    Ok(())
}

/// `nats://` or `tls://` URLs, comma-separated for a cluster.
pub(crate) fn check_nats_urls(raw: &str) -> Result<(), String> {
    if raw.trim().is_empty() {
        return Err("must not be empty (remove `bus` for the in-process bus)".to_owned());
    }
    for part in raw.split(',').map(str::trim) {
        let shown = crate::schema::redact_url_credentials(part);
        if !(part.starts_with("nats://") || part.starts_with("tls://")) {
            return Err(format!(
                "`{shown}` must start with nats:// or tls:// (several servers: comma-separated)"
            ));
        }
        let url =
            url::Url::parse(part).map_err(|e| format!("`{shown}` is not a valid URL: {e}"))?;
        if url.host_str().is_none_or(str::is_empty) {
            return Err(format!("`{shown}` has no host"));
        }
    }
    Ok(())
}

/// Dot-separated tokens of `[A-Za-z0-9_-]`: no wildcards (`*`, `>`), no
/// empty tokens, nothing a NATS server or another client could misread.
pub(crate) fn check_subject_prefix(prefix: &str) -> Result<(), String> {
    let ok = !prefix.is_empty()
        && prefix.split('.').all(|t| {
            !t.is_empty()
                && t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{prefix}` is not a valid subject prefix: dot-separated tokens of letters, digits, `_` and `-`"
        ))
    }
}

fn is_env_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// RFC 9110 token characters.
fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DEFAULT_OPENAI_BASE_URL, ProviderKind};

    #[test]
    fn nats_urls() {
        assert!(check_nats_urls("nats://127.0.0.1:4222").is_ok());
        assert!(check_nats_urls("nats://a:4222, tls://b:4222").is_ok());
        assert!(check_nats_urls("http://a:4222").is_err());
        assert!(check_nats_urls("nats://a:4222,").is_err());
        assert!(check_nats_urls("").is_err());
        let e = check_nats_urls("http://user:hunter2@a:4222").unwrap_err();
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn subject_prefixes() {
        assert!(check_subject_prefix("switchyard").is_ok());
        assert!(check_subject_prefix("acme.prod-1.sy").is_ok());
        for bad in ["", "a..b", "a.", "a.*", "a.>", "a b"] {
            assert!(check_subject_prefix(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn base_urls() {
        assert!(check_base_url("http://127.0.0.1:8000/v1").is_ok());
        assert!(check_base_url("https://api.openai.com/v1").is_ok());
        assert!(check_base_url("ftp://x/v1").is_err());
        assert!(check_base_url("api.openai.com/v1").is_err());
        assert!(check_base_url("https://x/v1?a=b").is_err());
    }

    #[test]
    fn discovery_values() {
        assert!(check_service_name("switchyard-router").is_ok());
        for bad in ["", "-a", "a-", "a_b", "a.b", &"x".repeat(64)] {
            assert!(check_service_name(bad).is_err(), "{bad}");
        }
        for good in ["10.0.0.7", "::1", "pod-1.ns.svc", "localhost"] {
            assert!(check_advertise_address(good).is_ok(), "{good}");
        }
        for bad in ["", "http://a", "a:8080", "a b", "a..b"] {
            assert!(check_advertise_address(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn discovery_problems_name_their_keys() {
        let yaml = "providers:\n  - { name: demo, kind: demo }\ndiscovery:\n  consul:\n    address: consul:8500\n    router_service_name: my_router\n    tags: [a, a, role=x, '']\n    check_interval: 0s\n    deregister_critical_after: 30s\n    advertise_address: 'http://x'\n";
        let errors = Config::from_yaml_str(yaml, "t.yaml")
            .unwrap_err()
            .to_string();
        for key in [
            "discovery.consul.address",
            "discovery.consul.router_service_name",
            "discovery.consul.tags[1]",
            "discovery.consul.tags[2]",
            "discovery.consul.tags[3]",
            "discovery.consul.check_interval",
            "discovery.consul.deregister_critical_after",
            "discovery.consul.advertise_address",
        ] {
            assert!(errors.contains(key), "{key} missing in:\n{errors}");
        }
        let ok = Config::from_yaml_str(
            "providers:\n  - { name: demo, kind: demo }\nserver:\n  shutdown_delay: 5s\ndiscovery:\n  consul: {}\n",
            "t.yaml",
        )
        .unwrap();
        let c = ok.discovery.consul.unwrap();
        assert_eq!(c, crate::ConsulConfig::default());
        assert_eq!(c.address, "http://127.0.0.1:8500");
        assert_eq!(ok.server.shutdown_delay, Duration::from_secs(5));
        assert_eq!(Config::default().server.shutdown_delay, Duration::ZERO);
        assert!(Config::default().discovery.consul.is_none());
    }

    #[test]
    fn responses_keys_default_and_problems_name_their_keys() {
        let d = Config::default().responses;
        assert_eq!(d.store, ResponseStoreKind::Off);
        assert_eq!(d.ttl, Duration::from_secs(30 * 24 * 3600));
        assert_eq!(d.bucket, "switchyard_responses");
        for (word, kind) in [
            ("off", ResponseStoreKind::Off),
            ("auto", ResponseStoreKind::Auto),
            ("local", ResponseStoreKind::Local),
        ] {
            let c = Config::from_yaml_str(
                &format!(
                    "providers:\n  - {{ name: demo, kind: demo }}\nresponses:\n  store: {word}\n  ttl: 2h\n"
                ),
                "t.yaml",
            )
            .unwrap();
            assert_eq!(c.responses.store, kind, "{word}");
            assert_eq!(c.responses.ttl, Duration::from_secs(7200));
        }
        let yaml = "providers:\n  - { name: demo, kind: demo }\nresponses:\n  store: jetstream\n  ttl: 0s\n  max_bytes_per_response: 0\n  path: ''\n  bucket: 'no.dots'\n  replicas: 0\n";
        let errors = Config::from_yaml_str(yaml, "t.yaml")
            .unwrap_err()
            .to_string();
        for key in [
            "responses.store",
            "responses.ttl",
            "responses.max_bytes_per_response",
            "responses.path",
            "responses.bucket",
            "responses.replicas",
        ] {
            assert!(errors.contains(key), "{key} missing in:\n{errors}");
        }
        let unknown = Config::from_yaml_str(
            "providers:\n  - { name: demo, kind: demo }\nresponses:\n  stor: local\n",
            "t.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(unknown.contains("stor"), "{unknown}");
    }

    #[test]
    fn cache_keys_default_and_problems_name_their_keys() {
        let ok = Config::from_yaml_str(
            "providers:\n  - { name: demo, kind: demo }\nmodels:\n  - { name: m, routes: [{ provider: demo, model: x }], cache: { ttl: 5m, enabled: false } }\ncache:\n  enabled: true\n",
            "t.yaml",
        )
        .unwrap();
        assert!(ok.cache.enabled);
        assert_eq!(ok.cache.ttl, Duration::from_secs(3600));
        assert_eq!(ok.cache.max_entry_bytes, 1 << 20);
        assert_eq!(ok.cache.max_memory_bytes, 256 << 20);
        assert!(!ok.cache.cache_tool_calls && !ok.cache.cache_nonzero_temperature);
        let mc = ok.models[0].cache.clone().unwrap();
        assert_eq!(
            (mc.enabled, mc.ttl),
            (Some(false), Some(Duration::from_secs(300)))
        );
        assert!(!Config::default().cache.enabled);
        let yaml = "providers:\n  - { name: demo, kind: demo }\nmodels:\n  - { name: m, routes: [{ provider: demo, model: x }], cache: { ttl: 0s } }\ncache:\n  ttl: 0s\n  max_entry_bytes: 2048\n  max_memory_bytes: 1024\n  shared_namespace: ' '\n  redis: { url: 'http://x', timeout: 0s }\n";
        let errors = Config::from_yaml_str(yaml, "t.yaml")
            .unwrap_err()
            .to_string();
        for key in [
            "cache.ttl",
            "cache.redis.url",
            "cache.redis.timeout",
            "cache.max_memory_bytes",
            "cache.shared_namespace",
            "models[0].cache.ttl",
        ] {
            assert!(errors.contains(key), "{key} missing in:\n{errors}");
        }
        let semantic = Config::from_yaml_str(
            "providers:\n  - { name: demo, kind: demo }\nmodels:\n  - { name: m, routes: [{ provider: demo, model: x }] }\ncache:\n  enabled: true\n  persist: true\n  semantic: { enabled: true, embedding_model: demo/e }\n",
            "t.yaml",
        )
        .unwrap();
        let s = &semantic.cache.semantic;
        assert!(semantic.cache.persist && s.enabled);
        assert_eq!(s.threshold, 0.95);
        assert_eq!((s.max_entries, s.max_bucket_entries), (10_000, 1_000));
        assert!(!Config::default().cache.semantic.enabled && !Config::default().cache.persist);
        let yaml = "providers:\n  - { name: demo, kind: demo }\ncache:\n  backend: redis\n  persist: true\n  persist_path: ''\n  semantic: { enabled: true, embedding_model: nope, threshold: 1.5, max_entries: 0, max_bucket_entries: 0, max_prompt_bytes: 0, timeout: 0s }\n";
        let errors = Config::from_yaml_str(yaml, "t.yaml")
            .unwrap_err()
            .to_string();
        for key in [
            "cache.persist",
            "cache.persist_path",
            "cache.semantic.enabled",
            "cache.semantic.embedding_model",
            "cache.semantic.threshold",
            "cache.semantic.max_entries",
            "cache.semantic.max_bucket_entries",
            "cache.semantic.max_prompt_bytes",
            "cache.semantic.timeout",
        ] {
            assert!(errors.contains(key), "{key} missing in:\n{errors}");
        }
        let missing = Config::from_yaml_str(
            "providers:\n  - { name: demo, kind: demo }\ncache:\n  enabled: true\n  semantic: { enabled: true }\n",
            "t.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            missing.contains("cache.semantic.embedding_model"),
            "{missing}"
        );
        assert!(
            Config::from_yaml_str(
                "providers:\n  - { name: demo, kind: demo }\ncache:\n  semantic: { enabled: false, bogus: 1 }\n",
                "t.yaml",
            )
            .is_err()
        );
        let unknown = Config::from_yaml_str(
            "providers:\n  - { name: demo, kind: demo }\ncache:\n  backend: memcached\n",
            "t.yaml",
        );
        assert!(unknown.is_err());
    }

    #[test]
    fn names() {
        assert!(check_provider_name("open-ai_2").is_ok());
        assert!(check_provider_name("open.ai").is_err());
        assert!(check_provider_name("").is_err());
        assert!(check_model_name("meta-llama/Llama-3.3-70B:free").is_ok());
        assert!(check_model_name("gpt 4").is_err());
    }

    #[test]
    fn normalize_defaults_and_trims() {
        let mut c = Config::default();
        c.providers
            .push(ProviderConfig::new("openai", ProviderKind::Openai));
        let mut local = ProviderConfig::new("local", ProviderKind::Openai);
        local.base_url = Some("http://127.0.0.1:8000/v1/".to_owned());
        local.api_key = Some(crate::Secret::new(""));
        c.providers.push(local);
        c.providers
            .push(ProviderConfig::new("demo", ProviderKind::Demo));
        normalize(&mut c);
        assert_eq!(
            c.providers[0].base_url.as_deref(),
            Some(DEFAULT_OPENAI_BASE_URL)
        );
        assert_eq!(
            c.providers[1].base_url.as_deref(),
            Some("http://127.0.0.1:8000/v1")
        );
        assert_eq!(c.providers[1].api_key, None);
        assert_eq!(c.providers[2].base_url, None);
    }
}
