//! Environment overrides for containers, applied on top of a loaded (or the
//! embedded) config.

use std::net::SocketAddr;

use crate::error::{ConfigError, ConfigErrors};
use crate::validate::check_nats_urls;
use crate::{BusConfig, Config};

/// Path of the config file, read by the CLI when `--config` is absent.
pub const ENV_CONFIG: &str = "SWITCHYARD_CONFIG";
/// Overrides `server.http_addr`.
pub const ENV_HTTP_ADDR: &str = "SWITCHYARD_HTTP_ADDR";
/// Overrides `server.grpc_addr`.
pub const ENV_GRPC_ADDR: &str = "SWITCHYARD_GRPC_ADDR";
/// Overrides `bus.nats_url`, creating `bus` with defaults when absent.
pub const ENV_NATS_URL: &str = "SWITCHYARD_NATS_URL";

impl Config {
    /// Applies `SWITCHYARD_HTTP_ADDR`, `SWITCHYARD_GRPC_ADDR` and
    /// `SWITCHYARD_NATS_URL` as `lookup` reports them (unset or empty: no
    /// change). On any bad value nothing is changed and every bad variable
    /// is reported, each error's `origin` being the variable's name.
    pub fn apply_env_overrides(
        &mut self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigErrors> {
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let mut errors = Vec::new();
        let mut addr = |var: &str, path: &str| -> Option<SocketAddr> {
            let raw = get(var)?;
            match raw.parse() {
                Ok(a) => Some(a),
                Err(_) => {
                    errors.push(ConfigError::new(
                        var,
                        path,
                        format!(
                            "`{raw}` is not a socket address (expected IP:PORT, e.g. 0.0.0.0:8080)"
                        ),
                    ));
                    None
                }
            }
        };
        let http = addr(ENV_HTTP_ADDR, "server.http_addr");
        let grpc = addr(ENV_GRPC_ADDR, "server.grpc_addr");
        let nats = get(ENV_NATS_URL).and_then(|url| match check_nats_urls(&url) {
            Ok(()) => Some(url),
            Err(m) => {
                errors.push(ConfigError::new(ENV_NATS_URL, "bus.nats_url", m));
                None
            }
        });
        if !errors.is_empty() {
            return Err(ConfigErrors::new(errors));
        }
        if let Some(a) = http {
            self.server.http_addr = a;
        }
        if let Some(a) = grpc {
            self.server.grpc_addr = a;
        }
        if let Some(url) = nats {
            match &mut self.bus {
                Some(bus) => bus.nats_url = url,
                None => self.bus = Some(BusConfig::new(url)),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn no_variables_no_change() {
        let mut c = Config::default_from_env(|_| None);
        let before = c.clone();
        c.apply_env_overrides(|_| None).unwrap();
        assert_eq!(c, before);
        c.apply_env_overrides(env(&[(ENV_HTTP_ADDR, "  ")]))
            .unwrap();
        assert_eq!(c, before);
    }

    #[test]
    fn addresses_and_nats() {
        let mut c = Config::default_from_env(|_| None);
        c.apply_env_overrides(env(&[
            (ENV_HTTP_ADDR, "0.0.0.0:9090"),
            (ENV_GRPC_ADDR, "[::]:50052"),
            (ENV_NATS_URL, "nats://nats:4222"),
        ]))
        .unwrap();
        assert_eq!(c.server.http_addr, "0.0.0.0:9090".parse().unwrap());
        assert_eq!(c.server.grpc_addr, "[::]:50052".parse().unwrap());
        let bus = c.bus.as_ref().unwrap();
        assert_eq!(bus.nats_url, "nats://nats:4222");
        assert_eq!(bus.subject_prefix, "switchyard");
    }

    #[test]
    fn nats_override_keeps_other_bus_keys() {
        let mut c = Config::default_from_env(|_| None);
        let mut bus = BusConfig::new("nats://old:4222");
        bus.subject_prefix = "acme".to_owned();
        c.bus = Some(bus);
        c.apply_env_overrides(env(&[(ENV_NATS_URL, "tls://new:4222")]))
            .unwrap();
        let bus = c.bus.unwrap();
        assert_eq!(bus.nats_url, "tls://new:4222");
        assert_eq!(bus.subject_prefix, "acme");
    }

    #[test]
    fn bad_values_name_the_variable_and_change_nothing() {
        let mut c = Config::default_from_env(|_| None);
        let before = c.clone();
        let errs = c
            .apply_env_overrides(env(&[
                (ENV_HTTP_ADDR, "localhost"),
                (ENV_GRPC_ADDR, "0.0.0.0:1"),
                (ENV_NATS_URL, "http://nats:4222"),
            ]))
            .unwrap_err();
        assert_eq!(c, before);
        assert_eq!(errs.len(), 2);
        let text = errs.to_string();
        assert!(
            text.contains(
                "SWITCHYARD_HTTP_ADDR: server.http_addr: `localhost` is not a socket address"
            ),
            "{text}"
        );
        assert!(
            text.contains("SWITCHYARD_NATS_URL: bus.nats_url:"),
            "{text}"
        );
    }
}
