//! Route tables: which provider targets may serve a requested model, in the
//! order the model's strategy says to try them.
//!
//! A client's `model` resolves, first match wins:
//! 1. a configured `models[].name`: its routes, in order;
//! 2. `<provider>/<upstream-model>` for a configured provider: that one target;
//! 3. a name in some provider's `models:` list: that provider (first listed
//!    provider wins when several list it).
//!
//! This is the seam the routing issue builds on (weights, health, cooldowns):
//! [`RouteTable::resolve`] gives the candidates, the router walks them.

use std::collections::HashMap;
use std::sync::Arc;

use switchyard_config::{Config, Strategy};

/// One place a request can be sent: a configured provider and the model name
/// it is sent upstream as.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    pub provider: Arc<str>,
    pub upstream_model: Arc<str>,
}

/// The resolved plan for one requested model.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The name the client asked for.
    pub model: Arc<str>,
    pub strategy: Strategy,
    /// Targets in the order to try them.
    pub targets: Arc<[Target]>,
}

/// A model as `GET /v1/models` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedModel {
    pub id: String,
    /// The provider for direct models, "switchyard" for configured routes.
    pub owned_by: String,
}

#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    named: HashMap<String, Plan>,
    providers: std::collections::HashSet<String>,
    listed_by_provider: HashMap<String, Target>,
    listing: Vec<ListedModel>,
}

impl RouteTable {
    pub fn from_config(config: &Config) -> Self {
        let mut table = RouteTable::default();
        for m in &config.models {
            let targets: Vec<Target> = m
                .routes
                .iter()
                .map(|r| Target {
                    provider: r.provider.as_str().into(),
                    upstream_model: r.model.as_str().into(),
                })
                .collect();
            table.named.insert(
                m.name.clone(),
                Plan {
                    model: m.name.as_str().into(),
                    strategy: m.strategy,
                    targets: targets.into(),
                },
            );
            table.listing.push(ListedModel {
                id: m.name.clone(),
                owned_by: "switchyard".to_owned(),
            });
        }
        for p in &config.providers {
            table.providers.insert(p.name.clone());
            for model in &p.models {
                table
                    .listed_by_provider
                    .entry(model.clone())
                    .or_insert_with(|| Target {
                        provider: p.name.as_str().into(),
                        upstream_model: model.as_str().into(),
                    });
                table.listing.push(ListedModel {
                    id: format!("{}/{}", p.name, model),
                    owned_by: p.name.clone(),
                });
            }
        }
        table
    }

    /// The plan for a requested model, or `None` when nothing serves it.
    pub fn resolve(&self, model: &str) -> Option<Plan> {
        if let Some(plan) = self.named.get(model) {
            return Some(plan.clone());
        }
        let single = |t: Target| Plan {
            model: model.into(),
            strategy: Strategy::Fallback,
            targets: vec![t].into(),
        };
        if let Some((provider, upstream)) = model.split_once('/')
            && !upstream.is_empty()
            && self.providers.contains(provider)
        {
            return Some(single(Target {
                provider: provider.into(),
                upstream_model: upstream.into(),
            }));
        }
        self.listed_by_provider.get(model).cloned().map(single)
    }

    /// Every model a client can name, configured routes first.
    pub fn list(&self) -> &[ListedModel] {
        &self.listing
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_config::{ModelConfig, ProviderConfig, ProviderKind, RouteConfig};

    fn provider(name: &str, models: &[&str]) -> ProviderConfig {
        ProviderConfig {
            name: name.into(),
            kind: ProviderKind::Openai,
            base_url: None,
            api_key: None,
            api_key_env: None,
            timeout: std::time::Duration::from_secs(1),
            max_concurrency: 1,
            max_queue: 1,
            headers: Default::default(),
            models: models.iter().map(|m| m.to_string()).collect(),
        }
    }

    fn config() -> Config {
        Config {
            server: Default::default(),
            bus: None,
            providers: vec![provider("a", &["m1", "shared"]), provider("b", &["shared"])],
            models: vec![ModelConfig {
                name: "chat".into(),
                strategy: Strategy::Fallback,
                routes: vec![
                    RouteConfig {
                        provider: "b".into(),
                        model: "big".into(),
                    },
                    RouteConfig {
                        provider: "a".into(),
                        model: "small".into(),
                    },
                ],
            }],
        }
    }

    #[test]
    fn named_model_keeps_route_order() {
        let t = RouteTable::from_config(&config());
        let plan = t.resolve("chat").unwrap();
        let names: Vec<_> = plan
            .targets
            .iter()
            .map(|t| (&*t.provider, &*t.upstream_model))
            .collect();
        assert_eq!(names, [("b", "big"), ("a", "small")]);
    }

    #[test]
    fn provider_prefixed_model_goes_direct_even_when_unlisted() {
        let t = RouteTable::from_config(&config());
        let plan = t.resolve("a/gpt-x").unwrap();
        assert_eq!(&*plan.targets[0].provider, "a");
        assert_eq!(&*plan.targets[0].upstream_model, "gpt-x");
        assert!(t.resolve("nope/gpt-x").is_none());
        assert!(t.resolve("a/").is_none());
    }

    #[test]
    fn listed_model_resolves_to_first_provider() {
        let t = RouteTable::from_config(&config());
        assert_eq!(&*t.resolve("shared").unwrap().targets[0].provider, "a");
        assert!(t.resolve("unknown").is_none());
    }

    #[test]
    fn listing_has_routes_then_provider_models() {
        let t = RouteTable::from_config(&config());
        let ids: Vec<_> = t.list().iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["chat", "a/m1", "a/shared", "b/shared"]);
    }
}
