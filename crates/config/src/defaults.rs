//! The config `switchyard serve` runs without a file: the offline `demo`
//! provider, plus one provider for every well-known API key found in the
//! environment.

use crate::{Config, ModelConfig, ProviderConfig, ProviderKind, RouteConfig};

/// A hosted vendor enabled by its key's environment variable (the kind's
/// usual one: `ProviderKind::key_env`).
#[derive(Debug, Clone, Copy)]
pub struct WellKnownProvider {
    /// Provider name in the generated config.
    pub name: &'static str,
    pub kind: ProviderKind,
    /// Listed by `GET /v1/models`; any other upstream model is still
    /// reachable as `<name>/<model>`.
    pub models: &'static [&'static str],
}

impl WellKnownProvider {
    /// The variable whose presence enables the provider; the worker reads
    /// the key from it.
    pub fn key_env(&self) -> &'static str {
        self.kind.key_env().unwrap_or_default()
    }
}

/// In the order they appear in the generated config (first listed wins when
/// two providers list the same bare model name). Azure OpenAI and Bedrock are
/// not here: they need an endpoint or region and deployment names besides a
/// key, so they are configured in a file.
pub const WELL_KNOWN_PROVIDERS: &[WellKnownProvider] = &[
    WellKnownProvider {
        name: "openai",
        kind: ProviderKind::Openai,
        models: &[
            "gpt-4o-mini",
            "gpt-4o",
            "gpt-4.1",
            "gpt-4.1-mini",
            "o4-mini",
            "text-embedding-3-small",
            "gpt-image-1",
        ],
    },
    WellKnownProvider {
        name: "anthropic",
        kind: ProviderKind::Anthropic,
        models: &["claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-1"],
    },
    WellKnownProvider {
        name: "gemini",
        kind: ProviderKind::Gemini,
        models: &["gemini-2.5-flash", "gemini-2.5-pro", "gemini-embedding-001"],
    },
    WellKnownProvider {
        name: "mistral",
        kind: ProviderKind::Mistral,
        models: &[
            "mistral-large-latest",
            "mistral-small-latest",
            "mistral-embed",
        ],
    },
    WellKnownProvider {
        name: "deepseek",
        kind: ProviderKind::Deepseek,
        models: &["deepseek-chat", "deepseek-reasoner"],
    },
    WellKnownProvider {
        name: "groq",
        kind: ProviderKind::Groq,
        models: &["llama-3.3-70b-versatile", "llama-3.1-8b-instant"],
    },
    WellKnownProvider {
        name: "together",
        kind: ProviderKind::Together,
        models: &[
            "meta-llama/Llama-3.3-70B-Instruct-Turbo",
            "deepseek-ai/DeepSeek-V3",
        ],
    },
    WellKnownProvider {
        name: "xai",
        kind: ProviderKind::Xai,
        models: &["grok-4", "grok-3-mini"],
    },
    WellKnownProvider {
        name: "fireworks",
        kind: ProviderKind::Fireworks,
        models: &["accounts/fireworks/models/llama-v3p3-70b-instruct"],
    },
    WellKnownProvider {
        name: "openrouter",
        kind: ProviderKind::Openrouter,
        models: &["openai/gpt-4o-mini", "anthropic/claude-sonnet-4.5"],
    },
    WellKnownProvider {
        name: "perplexity",
        kind: ProviderKind::Perplexity,
        models: &["sonar", "sonar-pro"],
    },
    WellKnownProvider {
        name: "cerebras",
        kind: ProviderKind::Cerebras,
        models: &["llama-3.3-70b", "qwen-3-32b"],
    },
];

/// Overrides the OpenAI provider's base URL in the embedded default (proxies,
/// Azure-style gateways); the variable the OpenAI SDKs read too.
pub const OPENAI_BASE_URL_ENV: &str = "OPENAI_BASE_URL";

impl Config {
    /// [`Config::default_from_env`] over the process environment.
    pub fn embedded_default() -> Config {
        Self::default_from_env(|name| std::env::var(name).ok())
    }

    /// The offline `demo` provider (model `echo`) and a `demo` model routed
    /// to it, then one provider per [`WELL_KNOWN_PROVIDERS`] entry whose key
    /// variable `lookup` finds non-empty. Keys stay in the environment: the
    /// config names the variable (`api_key_env`), never the key.
    ///
    /// `OPENAI_BASE_URL` is taken as given; run [`Config::validate`] on the
    /// result (after [`Config::apply_env_overrides`]) before serving.
    pub fn default_from_env(lookup: impl Fn(&str) -> Option<String>) -> Config {
        let is_set = |name: &str| lookup(name).is_some_and(|v| !v.trim().is_empty());
        let mut demo = ProviderConfig::new("demo", ProviderKind::Demo);
        demo.models = vec!["echo".to_owned()];
        let mut config = Config {
            providers: vec![demo],
            models: vec![ModelConfig::new(
                "demo",
                vec![RouteConfig::new("demo", "echo")],
            )],
            ..Config::default()
        };
        for wk in WELL_KNOWN_PROVIDERS
            .iter()
            .filter(|wk| is_set(wk.key_env()))
        {
            let mut p = ProviderConfig::new(wk.name, wk.kind);
            p.base_url = match lookup(OPENAI_BASE_URL_ENV) {
                Some(url) if wk.kind == ProviderKind::Openai && !url.trim().is_empty() => {
                    Some(url.trim().to_owned())
                }
                _ => wk.kind.default_base_url().map(str::to_owned),
            };
            p.api_key_env = Some(wk.key_env().to_owned());
            p.models = wk.models.iter().map(|m| (*m).to_owned()).collect();
            config.providers.push(p);
        }
        crate::validate::normalize(&mut config);
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_only_without_keys() {
        let c = Config::default_from_env(|_| None);
        assert_eq!(c.providers.len(), 1);
        let demo = c.provider("demo").unwrap();
        assert_eq!(demo.kind, ProviderKind::Demo);
        assert_eq!(demo.models, vec!["echo"]);
        assert_eq!(c.models.len(), 1);
        assert_eq!(c.models[0].name, "demo");
        assert_eq!(c.models[0].routes, vec![RouteConfig::new("demo", "echo")]);
        assert!(c.bus.is_none());
        c.validate("<embedded>").unwrap();
    }

    #[test]
    fn providers_from_keys() {
        let c = Config::default_from_env(|name| match name {
            "OPENAI_API_KEY" => Some("sk-test-openai".to_owned()),
            "GEMINI_API_KEY" => Some("g-test".to_owned()),
            "ANTHROPIC_API_KEY" => Some("a-test".to_owned()),
            "GROQ_API_KEY" => Some(String::new()),
            _ => None,
        });
        let names: Vec<&str> = c.providers.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["demo", "openai", "anthropic", "gemini"]);
        let openai = c.provider("openai").unwrap();
        assert_eq!(openai.kind, ProviderKind::Openai);
        assert_eq!(
            c.provider("anthropic").unwrap().kind,
            ProviderKind::Anthropic
        );
        assert_eq!(c.provider("gemini").unwrap().kind, ProviderKind::Gemini);
        assert_eq!(
            openai.base_url.as_deref(),
            Some("https://api.openai.com/v1")
        );
        assert_eq!(openai.api_key_env.as_deref(), Some("OPENAI_API_KEY"));
        assert!(openai.api_key.is_none());
        assert!(openai.models.iter().any(|m| m == "gpt-4o-mini"));
        assert_eq!(
            c.provider("gemini").unwrap().base_url.as_deref(),
            Some("https://generativelanguage.googleapis.com/v1beta")
        );
        assert_eq!(
            c.provider("anthropic").unwrap().base_url.as_deref(),
            Some("https://api.anthropic.com/v1")
        );
        // Keys never land in the config.
        let dump = format!("{c:?}");
        assert!(!dump.contains("sk-test-openai") && !dump.contains("g-test"));
        c.validate("<embedded>").unwrap();
    }

    #[test]
    fn every_well_known_provider_is_valid() {
        let c =
            Config::default_from_env(|name| (name != OPENAI_BASE_URL_ENV).then(|| "k".to_owned()));
        assert_eq!(c.providers.len(), 1 + WELL_KNOWN_PROVIDERS.len());
        c.validate("<embedded>").unwrap();
    }

    #[test]
    fn bad_openai_base_url_is_caught_by_validate() {
        let c = Config::default_from_env(|_| Some("not a url".to_owned()));
        let errs = c.validate("<embedded>").unwrap_err();
        assert_eq!(errs.errors[0].path, "providers[1].base_url");
    }

    #[test]
    fn openai_base_url_override() {
        let c = Config::default_from_env(|name| match name {
            "OPENAI_API_KEY" => Some("k".to_owned()),
            "OPENAI_BASE_URL" => Some("http://proxy.internal:9000/v1/".to_owned()),
            _ => None,
        });
        assert_eq!(
            c.provider("openai").unwrap().base_url.as_deref(),
            Some("http://proxy.internal:9000/v1")
        );
    }
}
