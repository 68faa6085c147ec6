//! Per-request routing controls: what a client may change about how its
//! request is routed, within the routes the config gives it.
//!
//! Two spellings, one meaning:
//! - OpenRouter's body fields: `models` (an ordered fallback list) and
//!   `provider` (`order`, `only`, `ignore`, `sort`, `allow_fallbacks`,
//!   `max_price`, `require_parameters`, `data_collection`);
//! - the `x-switchyard-route` header (JSON, Portkey-style) for clients that
//!   cannot add body fields: `strategy`, `targets`, `retry` and timeouts.
//!
//! Controls only narrow and reorder what the route table already allows: a
//! target must name a configured provider, and every extra model resolves
//! through the same table as `model` does.

use std::time::Duration;

use serde::Deserialize;
use switchyard_config::{PriceConfig, RetryConfig, Strategy};

use crate::{Health, Plan, Route, RouteTable, Target};

/// The header carrying [`RouteOverride`].
pub const ROUTE_HEADER: &str = "x-switchyard-route";

/// Longest `models` list or `targets` list taken (each entry is a route to
/// try; a client must not make the gateway walk without bound).
pub const MAX_ENTRIES: usize = 16;

/// A request's routing controls, from its body and its header.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RoutingControls {
    /// Models to fall back to, in order, after the requested one.
    pub models: Vec<String>,
    pub provider: ProviderPreferences,
    pub route: Option<RouteOverride>,
}

impl RoutingControls {
    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
            && self.provider == ProviderPreferences::default()
            && self.route.is_none()
    }

    /// Parses the body's `models` and `provider` values and the header's
    /// JSON. Errors name the field (`provider.sort`,
    /// `x-switchyard-route.retry.max_attempts`).
    pub fn parse(
        models: Option<serde_json::Value>,
        provider: Option<serde_json::Value>,
        header: Option<&str>,
    ) -> Result<RoutingControls, ControlError> {
        let models: Vec<String> = match models {
            Some(v) => field("models", v)?,
            None => Vec::new(),
        };
        if models.len() > MAX_ENTRIES {
            return Err(ControlError::invalid(
                "models",
                format!("at most {MAX_ENTRIES} models"),
            ));
        }
        if let Some(i) = models.iter().position(|m| m.trim().is_empty()) {
            return Err(ControlError::invalid(
                format!("models[{i}]"),
                "an empty model name",
            ));
        }
        let provider: ProviderPreferences = match provider {
            Some(serde_json::Value::Null) | None => ProviderPreferences::default(),
            Some(v) => field("provider", v)?,
        };
        if let Some(p) = &provider.max_price
            && (p.prompt.is_some_and(|v| v < 0.0) || p.completion.is_some_and(|v| v < 0.0))
        {
            return Err(ControlError::invalid(
                "provider.max_price",
                "prices are USD per million tokens and cannot be negative",
            ));
        }
        let route = match header {
            None => None,
            Some(text) => {
                let de = &mut serde_json::Deserializer::from_str(text);
                let route: RouteOverride = serde_path_to_error::deserialize(de).map_err(|e| {
                    ControlError::invalid(
                        join(ROUTE_HEADER, &e.path().to_string()),
                        e.inner().to_string(),
                    )
                })?;
                route.check()?;
                Some(route)
            }
        };
        Ok(RoutingControls {
            models,
            provider,
            route,
        })
    }

    /// `plan` (the requested model's) as these controls shape it. `table`
    /// resolves the fallback models; `health` gives the observed output
    /// throughput (for `sort: throughput`); `price` gives a target's price
    /// when its route states none (for `max_price`).
    pub fn apply(
        &self,
        plan: Plan,
        table: &RouteTable,
        health: &Health,
        price: impl Fn(&Target) -> Option<PriceConfig>,
    ) -> Result<Plan, ControlError> {
        let mut plan = plan;
        let mut routes: Vec<Route> = plan.routes.to_vec();
        if let Some(r) = &self.route
            && !r.targets.is_empty()
        {
            routes = r
                .targets
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    let target = t.target();
                    if !table.has_provider(&target.provider) {
                        return Err(ControlError::invalid(
                            format!("{ROUTE_HEADER}.targets[{i}]"),
                            format!("no provider named `{}` is configured", target.provider),
                        ));
                    }
                    // What the config says of the same target, when it is
                    // one of the model's routes.
                    Ok(plan
                        .routes
                        .iter()
                        .find(|r| r.target == target)
                        .cloned()
                        .unwrap_or_else(|| Route::plain(target)))
                })
                .collect::<Result<_, _>>()?;
        }
        for (i, m) in self.models.iter().enumerate() {
            if **m == *plan.model {
                continue;
            }
            let other = table.resolve(m).ok_or_else(|| {
                ControlError::invalid(
                    format!("models[{i}]"),
                    format!("no model named `{m}` is served here"),
                )
            })?;
            for r in other.routes.iter() {
                if !routes.iter().any(|have| have.target == r.target) {
                    routes.push(r.clone());
                    // Each fallback route gets its own attempt: the
                    // model's `max_attempts` counts its own routes.
                    plan.retry.max_attempts = plan.retry.max_attempts.saturating_add(1);
                }
            }
        }

        let p = &self.provider;
        if let Some(only) = &p.only {
            routes.retain(|r| only.iter().any(|o| **o == *r.target.provider));
        }
        routes.retain(|r| !p.ignore.iter().any(|o| **o == *r.target.provider));
        if p.data_collection == Some(DataCollection::Deny) {
            routes.retain(|r| table.denies_data_collection(&r.target.provider));
        }
        if let Some(max) = &p.max_price {
            routes.retain(|r| {
                let Some(known) = r.price.or_else(|| price(&r.target)) else {
                    // Unknown price: cannot promise it is under the cap.
                    return false;
                };
                max.prompt.is_none_or(|cap| known.input_per_mtok <= cap)
                    && max
                        .completion
                        .is_none_or(|cap| known.output_per_mtok <= cap)
            });
            // `cheapest` needs the prices too.
            for r in &mut routes {
                if r.price.is_none() {
                    r.price = price(&r.target);
                }
            }
        }
        if !p.order.is_empty() {
            let rank = |r: &Route| {
                p.order
                    .iter()
                    .position(|o| **o == *r.target.provider)
                    .unwrap_or(p.order.len())
            };
            // Stable: within a provider, and after the named ones, config
            // order stays.
            routes.sort_by_key(rank);
            if p.allow_fallbacks == Some(false) {
                routes.retain(|r| rank(r) < p.order.len());
            }
        }
        if p.allow_fallbacks == Some(false) {
            routes.truncate(1);
        }
        if routes.is_empty() {
            return Err(ControlError::NoRoute);
        }

        if let Some(sort) = p.sort {
            plan.strategy = match sort {
                Sort::Price => {
                    for r in &mut routes {
                        if r.price.is_none() {
                            r.price = price(&r.target);
                        }
                    }
                    Strategy::Cheapest
                }
                Sort::Latency => Strategy::Fastest,
                // No strategy ranks by throughput: the routes are ranked
                // here, from the estimates as they are now, and kept in
                // that order (also for the retry pass over them).
                Sort::Throughput => {
                    routes = crate::order::by_throughput(routes, health);
                    Strategy::Fallback
                }
            };
        }
        if let Some(r) = &self.route {
            if let Some(s) = r.strategy {
                plan.strategy = s;
            }
            if let Some(retry) = &r.retry {
                plan.retry = retry.over(&plan.retry);
            }
            if let Some(t) = r.timeout {
                plan.timeout = Some(t);
            }
            if let Some(t) = r.first_token_timeout {
                plan.first_token_timeout = Some(t);
            }
        }
        if p.allow_fallbacks == Some(false) {
            // One target, and no retry elsewhere: the first error is the
            // answer.
            plan.retry.max_attempts = 1;
        }
        plan.routes = routes.into();
        Ok(plan)
    }

    /// What was applied, for the `x-switchyard-routing` response header:
    /// `models=a,b; order=x,y; sort=price; ...`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.models.is_empty() {
            parts.push(format!("models={}", self.models.join(",")));
        }
        let p = &self.provider;
        if !p.order.is_empty() {
            parts.push(format!("order={}", p.order.join(",")));
        }
        if let Some(only) = &p.only {
            parts.push(format!("only={}", only.join(",")));
        }
        if !p.ignore.is_empty() {
            parts.push(format!("ignore={}", p.ignore.join(",")));
        }
        if let Some(s) = p.sort {
            parts.push(format!("sort={}", s.as_str()));
        }
        if p.allow_fallbacks == Some(false) {
            parts.push("allow_fallbacks=false".to_owned());
        }
        if p.max_price.is_some() {
            parts.push("max_price".to_owned());
        }
        if p.require_parameters == Some(true) {
            parts.push("require_parameters".to_owned());
        }
        if p.data_collection == Some(DataCollection::Deny) {
            parts.push("data_collection=deny".to_owned());
        }
        if self.route.is_some() {
            parts.push(ROUTE_HEADER.to_owned());
        }
        parts.join("; ")
    }
}

/// OpenRouter's `provider` object.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderPreferences {
    /// Providers (configured names) to try first, in this order.
    #[serde(default)]
    pub order: Vec<String>,
    /// Only these providers.
    #[serde(default)]
    pub only: Option<Vec<String>>,
    /// Never these providers.
    #[serde(default)]
    pub ignore: Vec<String>,
    #[serde(default)]
    pub sort: Option<Sort>,
    /// `false`: the first target only (after `order`), one attempt.
    #[serde(default)]
    pub allow_fallbacks: Option<bool>,
    #[serde(default)]
    pub max_price: Option<MaxPrice>,
    /// Only targets that take every parameter of the request as it is
    /// (nothing dropped or clamped).
    #[serde(default)]
    pub require_parameters: Option<bool>,
    #[serde(default)]
    pub data_collection: Option<DataCollection>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sort {
    /// Cheapest first (the route's `price`, else the price table).
    Price,
    /// Lowest time to first token first.
    Latency,
    /// Highest observed output tokens per second first; targets not
    /// measured yet after the measured ones, in config order.
    Throughput,
}

impl Sort {
    fn as_str(self) -> &'static str {
        match self {
            Sort::Price => "price",
            Sort::Latency => "latency",
            Sort::Throughput => "throughput",
        }
    }
}

/// Highest acceptable price, USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaxPrice {
    #[serde(default)]
    pub prompt: Option<f64>,
    #[serde(default)]
    pub completion: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataCollection {
    /// Any provider (the default).
    Allow,
    /// Only providers configured with `data_collection: deny`.
    Deny,
}

/// The `x-switchyard-route` header.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteOverride {
    #[serde(default)]
    pub strategy: Option<Strategy>,
    /// Replaces the model's routes: `"provider/model"` or
    /// `{"provider": .., "model": ..}`.
    #[serde(default)]
    pub targets: Vec<TargetSpec>,
    #[serde(default)]
    pub retry: Option<RetryOverride>,
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub first_token_timeout: Option<Duration>,
}

impl RouteOverride {
    fn check(&self) -> Result<(), ControlError> {
        if self.targets.len() > MAX_ENTRIES {
            return Err(ControlError::invalid(
                format!("{ROUTE_HEADER}.targets"),
                format!("at most {MAX_ENTRIES} targets"),
            ));
        }
        for (i, t) in self.targets.iter().enumerate() {
            let target = t.target();
            if target.provider.is_empty() || target.upstream_model.is_empty() {
                return Err(ControlError::invalid(
                    format!("{ROUTE_HEADER}.targets[{i}]"),
                    "a target is `provider/model` or {\"provider\": .., \"model\": ..}",
                ));
            }
        }
        if let Some(r) = &self.retry
            && r.max_attempts == Some(0)
        {
            return Err(ControlError::invalid(
                format!("{ROUTE_HEADER}.retry.max_attempts"),
                "at least 1 (the first try counts)",
            ));
        }
        if self.timeout == Some(Duration::ZERO) || self.first_token_timeout == Some(Duration::ZERO)
        {
            return Err(ControlError::invalid(
                format!("{ROUTE_HEADER}.timeout"),
                "a timeout must be longer than zero",
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum TargetSpec {
    Path(String),
    Parts { provider: String, model: String },
}

impl TargetSpec {
    /// The upstream model it names (what access rules check).
    pub fn model(&self) -> &str {
        match self {
            TargetSpec::Path(p) => p.split_once('/').map_or(p.as_str(), |(_, m)| m).trim(),
            TargetSpec::Parts { model, .. } => model.trim(),
        }
    }

    fn target(&self) -> Target {
        match self {
            TargetSpec::Path(p) => match p.split_once('/') {
                Some((provider, model)) => Target::new(provider.trim(), model.trim()),
                None => Target::new("", p),
            },
            TargetSpec::Parts { provider, model } => Target::new(provider.trim(), model.trim()),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryOverride {
    #[serde(default)]
    pub max_attempts: Option<u32>,
    #[serde(default, with = "humantime_serde")]
    pub backoff_base: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub backoff_max: Option<Duration>,
}

impl RetryOverride {
    fn over(&self, base: &RetryConfig) -> RetryConfig {
        RetryConfig {
            max_attempts: self.max_attempts.unwrap_or(base.max_attempts),
            backoff_base: self.backoff_base.unwrap_or(base.backoff_base),
            backoff_max: self.backoff_max.unwrap_or(base.backoff_max),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// A control the request gave is malformed or names nothing served.
    #[error("invalid `{field}`: {message}")]
    Invalid { field: String, message: String },
    /// The controls left no target to try.
    #[error(
        "the routing controls (`models`, `provider`, `x-switchyard-route`) leave no target for this request"
    )]
    NoRoute,
}

impl ControlError {
    fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ControlError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The request field to name in an error body.
    pub fn param(&self) -> &str {
        match self {
            ControlError::Invalid { field, .. } => field,
            ControlError::NoRoute => "provider",
        }
    }
}

fn field<T: serde::de::DeserializeOwned>(
    name: &str,
    v: serde_json::Value,
) -> Result<T, ControlError> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        ControlError::invalid(join(name, &e.path().to_string()), e.inner().to_string())
    })
}

fn join(base: &str, path: &str) -> String {
    // `?` is serde_path_to_error's segment for a place it cannot name (the
    // text ended inside an object).
    let path = path.trim_end_matches('?').trim_end_matches('.');
    if path == "." || path.is_empty() {
        base.to_owned()
    } else if path.starts_with('[') {
        format!("{base}{path}")
    } else {
        format!("{base}.{path}")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;
    use switchyard_config::Config;

    use super::*;

    const CONFIG: &str = r#"
providers:
  - { name: a, kind: openai, base_url: "http://127.0.0.1:1/v1" }
  - { name: b, kind: openai, base_url: "http://127.0.0.1:2/v1", data_collection: deny }
  - { name: c, kind: openai, base_url: "http://127.0.0.1:3/v1" }
models:
  - name: big
    routes:
      - { provider: a, model: big-a, price: { input_per_mtok: 5, output_per_mtok: 15 } }
      - { provider: b, model: big-b, price: { input_per_mtok: 1, output_per_mtok: 2 } }
      - { provider: c, model: big-c }
  - name: small
    routes:
      - { provider: c, model: small-c, price: { input_per_mtok: 0.1, output_per_mtok: 0.2 } }
"#;

    fn table() -> RouteTable {
        RouteTable::from_config(&Config::from_yaml_str(CONFIG, "test.yaml").unwrap())
    }

    fn shaped(body: serde_json::Value, header: Option<&str>) -> Result<Plan, ControlError> {
        let t = table();
        let c = RoutingControls::parse(
            body.get("models").cloned(),
            body.get("provider").cloned(),
            header,
        )?;
        c.apply(t.resolve("big").unwrap(), &t, &Health::default(), |_| None)
    }

    fn targets(p: &Plan) -> Vec<String> {
        p.targets().map(|t| t.to_string()).collect()
    }

    #[test]
    fn models_append_fallbacks_once_each() {
        let p = shaped(json!({"models": ["big", "small", "a/extra"]}), None).unwrap();
        assert_eq!(
            targets(&p),
            ["a/big-a", "b/big-b", "c/big-c", "c/small-c", "a/extra"]
        );
        assert_eq!(
            p.retry.max_attempts,
            RetryConfig::default().max_attempts + 2
        );
        let e = shaped(json!({"models": ["small", "nope"]}), None).unwrap_err();
        assert_eq!(e.param(), "models[1]");
        assert!(e.to_string().contains("`nope`"), "{e}");
    }

    #[test]
    fn provider_order_only_ignore() {
        let p = shaped(json!({"provider": {"order": ["c", "b"]}}), None).unwrap();
        assert_eq!(targets(&p), ["c/big-c", "b/big-b", "a/big-a"]);
        let p = shaped(
            json!({"provider": {"only": ["a", "c"], "ignore": ["c"]}}),
            None,
        )
        .unwrap();
        assert_eq!(targets(&p), ["a/big-a"]);
        let e = shaped(json!({"provider": {"only": ["zzz"]}}), None).unwrap_err();
        assert_eq!(e, ControlError::NoRoute);
    }

    #[test]
    fn no_fallbacks_means_one_target_one_attempt() {
        let p = shaped(
            json!({"provider": {"order": ["b"], "allow_fallbacks": false}}),
            None,
        )
        .unwrap();
        assert_eq!(targets(&p), ["b/big-b"]);
        assert_eq!(p.retry.max_attempts, 1);
        let p = shaped(json!({"provider": {"allow_fallbacks": false}}), None).unwrap();
        assert_eq!(targets(&p), ["a/big-a"]);
    }

    #[test]
    fn sort_and_max_price() {
        let p = shaped(json!({"provider": {"sort": "price"}}), None).unwrap();
        assert_eq!(p.strategy, Strategy::Cheapest);
        let p = shaped(json!({"provider": {"sort": "latency"}}), None).unwrap();
        assert_eq!(p.strategy, Strategy::Fastest);
        // Nothing measured yet: config order, kept as it is.
        let p = shaped(json!({"provider": {"sort": "throughput"}}), None).unwrap();
        assert_eq!(p.strategy, Strategy::Fallback);
        assert_eq!(targets(&p), ["a/big-a", "b/big-b", "c/big-c"]);
        // c has no price anywhere: it cannot be shown to be under the cap.
        let p = shaped(json!({"provider": {"max_price": {"prompt": 2}}}), None).unwrap();
        assert_eq!(targets(&p), ["b/big-b"]);
        let p = shaped(
            json!({"provider": {"max_price": {"prompt": 10, "completion": 10}}}),
            None,
        )
        .unwrap();
        assert_eq!(targets(&p), ["b/big-b"]);
        // A price from the table counts for routes that state none.
        let t = table();
        let c =
            RoutingControls::parse(None, Some(json!({"max_price": {"prompt": 3}})), None).unwrap();
        let p = c
            .apply(t.resolve("big").unwrap(), &t, &Health::default(), |_| {
                Some(PriceConfig {
                    input_per_mtok: 3.0,
                    output_per_mtok: 3.0,
                })
            })
            .unwrap();
        assert_eq!(targets(&p), ["b/big-b", "c/big-c"]);
    }

    #[test]
    fn sort_throughput_ranks_by_observed_tokens_per_second() {
        let t = table();
        let health = Health::new(&switchyard_config::RoutingConfig {
            exploration: 0.0,
            ..Default::default()
        });
        let ms = Duration::from_millis;
        // c generates 10x faster than a; b is not measured yet.
        health.record_output(&Target::new("a", "big-a"), 100, ms(2000));
        health.record_output(&Target::new("c", "big-c"), 100, ms(200));
        let shape = |provider: serde_json::Value| {
            let c = RoutingControls::parse(None, Some(provider), None).unwrap();
            let p = c
                .apply(t.resolve("big").unwrap(), &t, &health, |_| None)
                .unwrap();
            (targets(&p), p.strategy)
        };
        assert_eq!(
            shape(json!({"sort": "throughput"})),
            (
                vec!["c/big-c".to_owned(), "a/big-a".into(), "b/big-b".into()],
                Strategy::Fallback
            )
        );
        // The other controls still narrow first.
        assert_eq!(
            shape(json!({"sort": "throughput", "ignore": ["c"]})).0,
            ["a/big-a", "b/big-b"]
        );
        // A header's strategy still has the last word, as with other sorts.
        let c = RoutingControls::parse(
            None,
            Some(json!({"sort": "throughput"})),
            Some(r#"{"strategy": "least-busy"}"#),
        )
        .unwrap();
        let p = c
            .apply(t.resolve("big").unwrap(), &t, &health, |_| None)
            .unwrap();
        assert_eq!(p.strategy, Strategy::LeastBusy);
        assert_eq!(
            c.describe(),
            "sort=throughput; x-switchyard-route",
            "the header reports it"
        );
    }

    #[test]
    fn data_collection_deny_keeps_only_providers_that_promise_it() {
        let p = shaped(json!({"provider": {"data_collection": "deny"}}), None).unwrap();
        assert_eq!(targets(&p), ["b/big-b"]);
        let p = shaped(json!({"provider": {"data_collection": "allow"}}), None).unwrap();
        assert_eq!(targets(&p).len(), 3);
    }

    #[test]
    fn header_replaces_targets_and_settings() {
        let header = r#"{"strategy": "least-busy", "targets": ["c/x", {"provider": "a", "model": "big-a"}],
            "retry": {"max_attempts": 5, "backoff_base": "10ms"}, "timeout": "3s"}"#;
        let p = shaped(json!({}), Some(header)).unwrap();
        assert_eq!(targets(&p), ["c/x", "a/big-a"]);
        assert_eq!(p.strategy, Strategy::LeastBusy);
        assert_eq!(p.retry.max_attempts, 5);
        assert_eq!(p.retry.backoff_base, Duration::from_millis(10));
        assert_eq!(p.timeout, Some(Duration::from_secs(3)));
        // The route's own facts come along for a target the model lists.
        assert!(p.routes[1].price.is_some());
    }

    #[test]
    fn errors_name_the_field() {
        let cases: &[(serde_json::Value, Option<&str>, &str)] = &[
            (
                json!({"provider": {"sort": "fastest"}}),
                None,
                "provider.sort",
            ),
            (
                json!({"provider": {"quantizations": ["fp8"]}}),
                None,
                "provider.quantizations",
            ),
            (json!({"provider": {"order": "a"}}), None, "provider.order"),
            (
                json!({"provider": {"max_price": {"prompt": -1}}}),
                None,
                "provider.max_price",
            ),
            (json!({"models": "big"}), None, "models"),
            (json!({"models": ["big", ""]}), None, "models[1]"),
            (
                json!({}),
                Some(r#"{"retry": {"max_attempts": "x"}}"#),
                "x-switchyard-route.retry.max_attempts",
            ),
            (
                json!({}),
                Some(r#"{"retry": {"max_attempts": 0}}"#),
                "x-switchyard-route.retry.max_attempts",
            ),
            (
                json!({}),
                Some(r#"{"timeout": "soon"}"#),
                "x-switchyard-route.timeout",
            ),
            (
                json!({}),
                Some(r#"{"targets": ["nobody/x"]}"#),
                "x-switchyard-route.targets[0]",
            ),
            (
                json!({}),
                Some(r#"{"targets": ["no-slash"]}"#),
                "x-switchyard-route.targets[0]",
            ),
            (
                json!({}),
                Some(r#"{"stratgy": "weighted"}"#),
                "x-switchyard-route.stratgy",
            ),
            (json!({}), Some("not json"), "x-switchyard-route"),
            (json!({}), Some("{"), "x-switchyard-route"),
        ];
        for (body, header, field) in cases {
            let e = shaped(body.clone(), *header).unwrap_err();
            assert_eq!(e.param(), *field, "{body} {header:?}: {e}");
        }
    }

    #[test]
    fn describe_lists_what_was_applied() {
        let c = RoutingControls::parse(
            Some(json!(["small"])),
            Some(json!({"order": ["b"], "sort": "price", "allow_fallbacks": false})),
            None,
        )
        .unwrap();
        assert_eq!(
            c.describe(),
            "models=small; order=b; sort=price; allow_fallbacks=false"
        );
        assert!(RoutingControls::default().is_empty());
        assert!(!c.is_empty());
    }
}
