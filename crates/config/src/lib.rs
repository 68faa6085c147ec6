//! Switchyard configuration: the YAML schema, loading with `${ENV}`
//! interpolation, strict parsing (unknown keys are errors), a validation pass
//! that collects every problem with its place in the file, and a redacting
//! [`Secret`] type.
//!
//! Public contract (used by the router, worker and CLI):
//! - [`Config::load`] reads a file and returns a validated config or every
//!   problem found ([`ConfigErrors`]), each naming the file, the key path and
//!   what is wrong.
//! - [`Config::from_yaml_str`] does the same for text (tests, embedded default).
//! - [`Config::embedded_default`] is what `switchyard serve` uses without a
//!   config file: the offline `demo` provider plus every provider whose API key
//!   is in the environment.
//! - [`Config::apply_env_overrides`] applies `SWITCHYARD_HTTP_ADDR`,
//!   `SWITCHYARD_GRPC_ADDR` and `SWITCHYARD_NATS_URL`.
//! - [`ConfigWatcher`] notices a changed file (or a SIGHUP through its
//!   [`ReloadTrigger`]) and loads it again; [`Config::reload_diff`] names
//!   the changes that need a restart.
//!
//! The reference for every key is docs/configuration.md.

mod auth;
mod defaults;
mod env;
mod error;
mod interpolate;
mod keypath;
mod kinds;
mod load;
mod locate;
mod schema;
mod secret;
mod spend;
mod validate;
mod validate_auth;
mod validate_spend;
mod watch;

pub use auth::*;
pub use defaults::{OPENAI_BASE_URL_ENV, WELL_KNOWN_PROVIDERS, WellKnownProvider};
pub use env::{ENV_CONFIG, ENV_GRPC_ADDR, ENV_HTTP_ADDR, ENV_NATS_URL};
pub use error::{ConfigError, ConfigErrors};
pub use kinds::{DEFAULT_OPENAI_BASE_URL, ProviderKind, WireFormat};
pub use load::EMBEDDED_ORIGIN;
pub use schema::*;
pub use secret::Secret;
pub use spend::*;
pub use watch::{ConfigWatcher, Reload, ReloadTrigger};
