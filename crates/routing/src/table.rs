//! Route tables: which targets may serve a requested model, and the model's
//! settings for walking them.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use switchyard_config::{
    Capability, Config, DataCollectionPolicy, HedgeConfig, ModelConfig, ParamPolicy, PriceConfig,
    ProviderKind, ResponsesMode, RetryConfig, Strategy,
};

/// One place a request can be sent: a configured provider and the model name
/// it is sent upstream as. This is the identity health is kept under, so two
/// routes naming the same provider and model share a breaker and a cooldown.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Target {
    pub provider: Arc<str>,
    pub upstream_model: Arc<str>,
}

impl Target {
    pub fn new(provider: &str, upstream_model: &str) -> Self {
        Target {
            provider: provider.into(),
            upstream_model: upstream_model.into(),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.provider, self.upstream_model)
    }
}

/// A set of [`Capability`]s, as a bitset so filtering is a mask test.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Caps(u8);

impl Caps {
    pub const NONE: Caps = Caps(0);
    pub const TOOLS: Caps = Caps(1);
    pub const VISION: Caps = Caps(1 << 1);
    pub const JSON_SCHEMA: Caps = Caps(1 << 2);

    /// Every capability, in the order errors name them.
    const ALL: [Capability; 3] = [
        Capability::Tools,
        Capability::Vision,
        Capability::JsonSchema,
    ];

    pub fn of(capability: Capability) -> Caps {
        match capability {
            Capability::Tools => Caps::TOOLS,
            Capability::Vision => Caps::VISION,
            Capability::JsonSchema => Caps::JSON_SCHEMA,
        }
    }

    pub fn insert(&mut self, capability: Capability) {
        self.0 |= Caps::of(capability).0;
    }

    pub fn with(mut self, capability: Capability) -> Caps {
        self.insert(capability);
        self
    }

    pub fn has(self, capability: Capability) -> bool {
        self.0 & Caps::of(capability).0 != 0
    }

    /// True when every capability in `other` is also in `self`.
    pub fn contains(self, other: Caps) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The capabilities in the set, in a fixed order (tools, vision,
    /// json_schema).
    pub fn iter(self) -> impl Iterator<Item = Capability> {
        Caps::ALL.into_iter().filter(move |c| self.has(*c))
    }
}

impl FromIterator<Capability> for Caps {
    fn from_iter<I: IntoIterator<Item = Capability>>(iter: I) -> Self {
        let mut caps = Caps::NONE;
        for c in iter {
            caps.insert(c);
        }
        caps
    }
}

/// One route of a plan: a target plus what the config states about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub target: Target,
    /// Share of traffic under `weighted`; 0 makes it a last resort.
    pub weight: u32,
    /// Context window in tokens; `None` is unknown and never filtered.
    pub context_window: Option<u32>,
    /// What the target can do; `None` is unknown and never filtered.
    pub capabilities: Option<Caps>,
    /// USD per million tokens, for `cheapest`.
    pub price: Option<PriceConfig>,
}

impl Route {
    /// A route with nothing known about it but its target (direct and
    /// provider-listed models).
    pub fn plain(target: Target) -> Self {
        Route {
            target,
            weight: 1,
            context_window: None,
            capabilities: None,
            price: None,
        }
    }
}

/// The resolved plan for one requested model: its routes in config order and
/// the settings for walking them. Cheap to clone (the routes are shared).
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The name the client asked for.
    pub model: Arc<str>,
    pub strategy: Strategy,
    /// In config order; [`crate::order`] applies the strategy.
    pub routes: Arc<[Route]>,
    pub retry: RetryConfig,
    pub hedge: Option<HedgeConfig>,
    /// Abandon an attempt that produced nothing within this long.
    pub first_token_timeout: Option<Duration>,
    /// Whole-request deadline; `None` means the server's.
    pub timeout: Option<Duration>,
    /// The model's `unsupported_params`, over each provider's own.
    pub unsupported_params: Option<ParamPolicy>,
}

impl Plan {
    fn from_model(m: &ModelConfig) -> Self {
        let routes: Vec<Route> = m
            .routes
            .iter()
            .map(|r| Route {
                target: Target::new(&r.provider, &r.model),
                weight: r.weight,
                context_window: r.context_window,
                capabilities: r.capabilities.as_ref().map(|c| c.iter().copied().collect()),
                price: r.price,
            })
            .collect();
        Plan {
            model: m.name.as_str().into(),
            strategy: m.strategy,
            routes: routes.into(),
            retry: m.retry.clone(),
            hedge: m.hedge.clone(),
            first_token_timeout: m.first_token_timeout,
            timeout: m.timeout,
            unsupported_params: m.unsupported_params,
        }
    }

    /// A one-route fallback plan with default settings, for models asked
    /// for by provider rather than by a configured name.
    fn single(model: &str, target: Target) -> Self {
        Plan {
            model: model.into(),
            strategy: Strategy::Fallback,
            routes: vec![Route::plain(target)].into(),
            retry: RetryConfig::default(),
            hedge: None,
            first_token_timeout: None,
            timeout: None,
            unsupported_params: None,
        }
    }

    /// The routes' targets, in config order.
    pub fn targets(&self) -> impl Iterator<Item = &Target> {
        self.routes.iter().map(|r| &r.target)
    }
}

/// What the table keeps of a configured provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ProviderFacts {
    kind: ProviderKind,
    unsupported_params: ParamPolicy,
    denies_data_collection: bool,
    /// `responses: native`: takes the client's own Responses API request.
    responses_native: bool,
}

/// A model as `GET /v1/models` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedModel {
    pub id: String,
    /// The provider for direct models, "switchyard" for configured routes.
    pub owned_by: String,
}

/// Resolves requested model names to plans. Built whole from a config and
/// swapped whole on reload; health lives apart in [`crate::Health`] so it
/// survives the swap.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    named: HashMap<String, Plan>,
    providers: HashMap<String, ProviderFacts>,
    listed_by_provider: HashMap<String, Target>,
    listing: Vec<ListedModel>,
}

impl RouteTable {
    pub fn from_config(config: &Config) -> Self {
        let mut table = RouteTable::default();
        for m in &config.models {
            table.named.insert(m.name.clone(), Plan::from_model(m));
            table.listing.push(ListedModel {
                id: m.name.clone(),
                owned_by: "switchyard".to_owned(),
            });
        }
        for p in &config.providers {
            table.providers.insert(
                p.name.clone(),
                ProviderFacts {
                    kind: p.kind,
                    unsupported_params: p.unsupported_params,
                    denies_data_collection: p.data_collection == DataCollectionPolicy::Deny,
                    responses_native: p.responses == ResponsesMode::Native,
                },
            );
            for model in &p.models {
                table
                    .listed_by_provider
                    .entry(model.clone())
                    .or_insert_with(|| Target::new(&p.name, model));
                table.listing.push(ListedModel {
                    id: format!("{}/{}", p.name, model),
                    owned_by: p.name.clone(),
                });
            }
        }
        table
    }

    /// True when `provider` is configured.
    pub fn has_provider(&self, provider: &str) -> bool {
        self.providers.contains_key(provider)
    }

    /// True when `provider` is configured with `data_collection: deny`.
    pub fn denies_data_collection(&self, provider: &str) -> bool {
        self.providers
            .get(provider)
            .is_some_and(|p| p.denies_data_collection)
    }

    /// True when `provider` is configured with `responses: native`.
    pub fn serves_responses_natively(&self, provider: &str) -> bool {
        self.providers
            .get(provider)
            .is_some_and(|p| p.responses_native)
    }

    /// The plan for a requested model, or `None` when nothing serves it.
    ///
    /// First match wins:
    /// 1. a configured `models[].name`: its routes and settings;
    /// 2. `<provider>/<upstream-model>` for a configured provider: that one
    ///    target;
    /// 3. a name in some provider's `models:` list: that provider (the first
    ///    listing provider when several list it).
    pub fn resolve(&self, model: &str) -> Option<Plan> {
        if let Some(plan) = self.named.get(model) {
            return Some(plan.clone());
        }
        if let Some((provider, upstream)) = model.split_once('/')
            && !upstream.is_empty()
            && self.providers.contains_key(provider)
        {
            return Some(Plan::single(model, Target::new(provider, upstream)));
        }
        self.listed_by_provider
            .get(model)
            .cloned()
            .map(|t| Plan::single(model, t))
    }

    /// Whether [`Self::resolve`] would find `model`, without building its
    /// plan (for counting a request under its model name).
    pub fn knows(&self, model: &str) -> bool {
        self.named.contains_key(model)
            || model.split_once('/').is_some_and(|(provider, upstream)| {
                !upstream.is_empty() && self.providers.contains_key(provider)
            })
            || self.listed_by_provider.contains_key(model)
    }

    /// Every model a client can name, configured routes first.
    pub fn list(&self) -> &[ListedModel] {
        &self.listing
    }

    /// What the router must know of a target's provider to shape a request
    /// for it: its kind, and the policy for parameters it cannot take (the
    /// plan's own policy wins). `None` for a provider not in the config.
    pub fn param_rules(&self, plan: &Plan, target: &Target) -> Option<(ProviderKind, ParamPolicy)> {
        let facts = self.providers.get(&*target.provider)?;
        Some((
            facts.kind,
            plan.unsupported_params.unwrap_or(facts.unsupported_params),
        ))
    }

    /// The configured models' plans (for an admin view of the routes), in no
    /// particular order.
    pub fn plans(&self) -> impl Iterator<Item = &Plan> {
        self.named.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_config::{ProviderConfig, ProviderKind, RouteConfig};

    fn provider(name: &str, models: &[&str]) -> ProviderConfig {
        let mut p = ProviderConfig::new(name, ProviderKind::Openai);
        p.models = models.iter().map(|m| m.to_string()).collect();
        p
    }

    fn config() -> Config {
        let mut big = RouteConfig::new("b", "big");
        big.weight = 3;
        big.context_window = Some(200_000);
        big.capabilities = Some(vec![Capability::Tools, Capability::Vision]);
        big.price = Some(PriceConfig {
            input_per_mtok: 3.0,
            output_per_mtok: 15.0,
        });
        let mut chat = ModelConfig::new("chat", vec![big, RouteConfig::new("a", "small")]);
        chat.strategy = Strategy::Weighted;
        chat.first_token_timeout = Some(Duration::from_secs(2));
        chat.timeout = Some(Duration::from_secs(30));
        chat.retry.max_attempts = 7;
        Config {
            providers: vec![provider("a", &["m1", "shared"]), provider("b", &["shared"])],
            models: vec![chat],
            ..Default::default()
        }
    }

    #[test]
    fn named_model_keeps_route_order_and_settings() {
        let t = RouteTable::from_config(&config());
        let plan = t.resolve("chat").unwrap();
        let names: Vec<_> = plan
            .targets()
            .map(|t| (&*t.provider, &*t.upstream_model))
            .collect();
        assert_eq!(names, [("b", "big"), ("a", "small")]);
        assert_eq!(plan.strategy, Strategy::Weighted);
        assert_eq!(plan.retry.max_attempts, 7);
        assert_eq!(plan.first_token_timeout, Some(Duration::from_secs(2)));
        assert_eq!(plan.timeout, Some(Duration::from_secs(30)));

        let big = &plan.routes[0];
        assert_eq!(big.weight, 3);
        assert_eq!(big.context_window, Some(200_000));
        assert_eq!(big.capabilities, Some(Caps::TOOLS.with(Capability::Vision)));
        assert_eq!(big.price.map(|p| p.output_per_mtok), Some(15.0));
        let small = &plan.routes[1];
        assert_eq!(*small, Route::plain(Target::new("a", "small")));
    }

    #[test]
    fn provider_prefixed_model_goes_direct_even_when_unlisted() {
        let t = RouteTable::from_config(&config());
        let plan = t.resolve("a/gpt-x").unwrap();
        assert_eq!(&*plan.model, "a/gpt-x");
        assert_eq!(plan.routes.len(), 1);
        assert_eq!(plan.routes[0], Route::plain(Target::new("a", "gpt-x")));
        assert_eq!(plan.strategy, Strategy::Fallback);
        assert_eq!(plan.retry, RetryConfig::default());
        assert!(plan.hedge.is_none());
        assert!(t.resolve("nope/gpt-x").is_none());
        assert!(t.resolve("a/").is_none());
    }

    #[test]
    fn listed_model_resolves_to_first_provider() {
        let t = RouteTable::from_config(&config());
        let plan = t.resolve("shared").unwrap();
        assert_eq!(plan.routes[0].target, Target::new("a", "shared"));
        assert!(t.resolve("unknown").is_none());
    }

    #[test]
    fn knows_agrees_with_resolve() {
        let t = RouteTable::from_config(&config());
        for m in [
            "chat",
            "a/gpt-x",
            "nope/gpt-x",
            "a/",
            "shared",
            "unknown",
            "",
        ] {
            assert_eq!(t.knows(m), t.resolve(m).is_some(), "{m}");
        }
    }

    #[test]
    fn listing_has_routes_then_provider_models() {
        let t = RouteTable::from_config(&config());
        let ids: Vec<_> = t.list().iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["chat", "a/m1", "a/shared", "b/shared"]);
        assert_eq!(t.plans().count(), 1);
    }

    #[test]
    fn caps_set_operations() {
        let tv: Caps = [Capability::Tools, Capability::Vision]
            .into_iter()
            .collect();
        assert!(tv.contains(Caps::TOOLS));
        assert!(tv.contains(Caps::NONE));
        assert!(!tv.contains(Caps::JSON_SCHEMA));
        assert!(!Caps::TOOLS.contains(tv));
        assert_eq!(
            tv.iter().collect::<Vec<_>>(),
            [Capability::Tools, Capability::Vision]
        );
        assert!(Caps::default().is_empty());
        assert_eq!(Target::new("p", "m").to_string(), "p/m");
    }

    #[test]
    fn param_rules_take_the_models_policy_over_the_providers() {
        let mut c = config();
        c.providers[0].kind = ProviderKind::Anthropic;
        c.providers[0].unsupported_params = ParamPolicy::Drop;
        let t = RouteTable::from_config(&c);
        let name = c.providers[0].name.clone();
        let direct = t.resolve(&format!("{name}/x")).unwrap();
        let target = direct.routes[0].target.clone();
        assert_eq!(
            t.param_rules(&direct, &target),
            Some((ProviderKind::Anthropic, ParamPolicy::Drop))
        );
        let mut strict = direct.clone();
        strict.unsupported_params = Some(ParamPolicy::Reject);
        assert_eq!(
            t.param_rules(&strict, &target),
            Some((ProviderKind::Anthropic, ParamPolicy::Reject))
        );
        assert_eq!(t.param_rules(&direct, &Target::new("nope", "x")), None);
    }
}
