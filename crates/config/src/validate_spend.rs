//! Validation of the spend keys: `ledger`, `budgets`, `alerts` and
//! `models[].spend_cap`.

use std::collections::HashMap;
use std::time::Duration;

use crate::Config;
use crate::keypath::KeyPath;
use crate::spend::{BudgetAction, BudgetWindow, LedgerBackend, SpendScope};
use crate::validate::{Problem, check_base_url, check_subject_prefix};

pub(crate) fn validate(config: &Config, problems: &mut Vec<Problem>) {
    let mut push = |path: KeyPath, m: String| problems.push((path, m));
    ledger(config, &mut push);
    budgets(config, &mut push);
    alerts(config, &mut push);
    pricing(config, &mut push);
}

/// Each override is checked alone, so a problem names its entry.
fn pricing(config: &Config, push: &mut impl FnMut(KeyPath, String)) {
    let table = match switchyard_pricing::PriceTable::bundled() {
        Ok(t) => t,
        Err(e) => {
            push(
                KeyPath::root().key("pricing"),
                format!("the bundled price table is broken: {e}"),
            );
            return;
        }
    };
    for (i, entry) in config.pricing.models.iter().enumerate() {
        if let Err(e) = table.with_overrides(std::slice::from_ref(entry), "config") {
            push(
                KeyPath::root().key("pricing").key("models").index(i),
                e.to_string(),
            );
        }
    }
}

fn ledger(config: &Config, push: &mut impl FnMut(KeyPath, String)) {
    let l = &config.ledger;
    let path = KeyPath::root().key("ledger");
    if let Err(m) = check_time_zone(&l.time_zone) {
        push(path.key("time_zone"), m);
    }
    if l.backend == LedgerBackend::Jetstream && config.bus.is_none() {
        push(
            path.key("backend"),
            "`jetstream` needs `bus` (the stream lives on the bus's NATS); use `local` or `auto`"
                .to_owned(),
        );
    }
    if let Some(id) = &l.router_id
        && let Err(m) = check_subject_token(id)
    {
        push(path.key("router_id"), m);
    }
    let stream = path.key("stream");
    if let Err(m) = check_subject_token(&l.stream.name) {
        push(stream.key("name"), m);
    }
    if let Err(m) = check_subject_prefix(&l.stream.subject_prefix) {
        push(stream.key("subject_prefix"), m);
    }
    if l.stream.duplicate_window.is_zero() {
        push(
            stream.key("duplicate_window"),
            "must be greater than zero".to_owned(),
        );
    }
    // A router warms its budget counters from the stream: it must still
    // hold the whole of the longest window.
    let longest = config
        .budgets
        .limits
        .iter()
        .map(|b| b.window)
        .chain(
            config
                .models
                .iter()
                .filter_map(|m| m.spend_cap.as_ref().map(|c| c.window)),
        )
        .map(window_span)
        .max();
    if let Some(longest) = longest
        && l.stream.max_age < longest
    {
        push(
            stream.key("max_age"),
            format!(
                "must be at least {} to hold the longest budget window",
                humantime::format_duration(longest)
            ),
        );
    }
    let writer = path.key("writer");
    if l.writer.batch_size == 0 {
        push(
            writer.key("batch_size"),
            "must be greater than zero".to_owned(),
        );
    }
    if l.writer.batch_wait.is_zero() {
        push(
            writer.key("batch_wait"),
            "must be greater than zero".to_owned(),
        );
    }
    if l.writer.ack_wait.is_zero() {
        push(
            writer.key("ack_wait"),
            "must be greater than zero".to_owned(),
        );
    }
    if let Some(pg) = &l.postgres
        && pg.url.expose().trim().is_empty()
    {
        push(
            path.key("postgres").key("url"),
            "must not be empty".to_owned(),
        );
    }
}

/// The longest a window of this kind lasts.
fn window_span(w: BudgetWindow) -> Duration {
    let days = match w {
        BudgetWindow::Daily => 1,
        BudgetWindow::Weekly => 7,
        BudgetWindow::Monthly => 31,
    };
    Duration::from_secs(days * 24 * 3600)
}

fn budgets(config: &Config, push: &mut impl FnMut(KeyPath, String)) {
    let path = KeyPath::root().key("budgets");
    if let Err(m) = check_time_zone(&config.budgets.time_zone) {
        push(path.key("time_zone"), m);
    }
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, b) in config.budgets.limits.iter().enumerate() {
        let at = path.key("limits").index(i);
        if b.name.trim().is_empty() {
            push(at.key("name"), "must not be empty".to_owned());
        } else if let Some(first) = seen.insert(&b.name, i) {
            push(
                at.key("name"),
                format!(
                    "duplicate budget name `{}` (first defined at budgets.limits[{first}])",
                    b.name
                ),
            );
        }
        // 0 is allowed: a budget that is always spent freezes its scope.
        if b.limit_usd.pico() < 0 {
            push(at.key("limit_usd"), "must not be negative".to_owned());
        }
        if let Some(scope) = &b.scope
            && let Err(m) = check_scope(scope)
        {
            push(at.key("scope"), m);
        }
        if let BudgetAction::Downgrade(to) = &b.action {
            if matches!(b.scope, Some(SpendScope::Provider(_))) {
                push(
                    at.key("action"),
                    "a provider budget can `reject` (its targets are skipped) or `alert`, not \
                     `downgrade`: the provider is chosen after the model"
                        .to_owned(),
                );
            } else if let Err(m) = check_model_ref(config, to) {
                push(at.key("action").key("downgrade"), m);
            }
        }
    }
    for (i, m) in config.models.iter().enumerate() {
        let Some(cap) = &m.spend_cap else { continue };
        let at = KeyPath::root().key("models").index(i).key("spend_cap");
        if cap.limit_usd.pico() <= 0 {
            push(at.key("limit_usd"), "must be greater than zero".to_owned());
        }
        if cap.downgrade_to == m.name {
            push(at.key("downgrade_to"), "must name another model".to_owned());
        } else if let Err(msg) = check_model_ref(config, &cap.downgrade_to) {
            push(at.key("downgrade_to"), msg);
        }
    }
}

fn alerts(config: &Config, push: &mut impl FnMut(KeyPath, String)) {
    let a = &config.alerts;
    let path = KeyPath::root().key("alerts");
    if let Some(w) = &a.webhook {
        if let Err(m) = check_base_url(&w.url).or_else(|m| {
            // A webhook may carry a query (a token some receivers want).
            if m.contains("query or fragment") {
                Ok(())
            } else {
                Err(m)
            }
        }) {
            push(path.key("webhook").key("url"), m);
        }
        if w.timeout.is_zero() {
            push(
                path.key("webhook").key("timeout"),
                "must be greater than zero".to_owned(),
            );
        }
    }
    if let Some(subject) = &a.nats_subject {
        if let Err(m) = check_subject_prefix(subject) {
            push(path.key("nats_subject"), m);
        } else if config.bus.is_none() {
            push(
                path.key("nats_subject"),
                "needs `bus` (alerts are published on the bus's NATS)".to_owned(),
            );
        }
    }
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, s) in a.spikes.iter().enumerate() {
        let at = path.key("spikes").index(i);
        if s.name.trim().is_empty() {
            push(at.key("name"), "must not be empty".to_owned());
        } else if let Some(first) = seen.insert(&s.name, i) {
            push(
                at.key("name"),
                format!(
                    "duplicate spike rule `{}` (first defined at alerts.spikes[{first}])",
                    s.name
                ),
            );
        }
        if s.window.is_zero() {
            push(at.key("window"), "must be greater than zero".to_owned());
        }
        match (&s.threshold_usd, s.factor) {
            (None, None) => push(
                at.key("threshold_usd"),
                "set `threshold_usd` (spend per window) or `factor` (times the usual rate)"
                    .to_owned(),
            ),
            (Some(t), None) if t.pico() <= 0 => {
                push(
                    at.key("threshold_usd"),
                    "must be greater than zero".to_owned(),
                );
            }
            (None, Some(f)) if !(f.is_finite() && f > 1.0) => {
                push(at.key("factor"), "must be a number above 1".to_owned());
            }
            (None, Some(_)) if s.baseline <= s.window => {
                push(
                    at.key("baseline"),
                    "must be longer than `window`".to_owned(),
                );
            }
            _ => {}
        }
        if let Some(scope) = &s.scope
            && let Err(m) = check_scope(scope)
        {
            push(at.key("scope"), m);
        }
    }
}

fn check_scope(scope: &SpendScope) -> Result<(), String> {
    let v = match scope {
        SpendScope::Key(v)
        | SpendScope::Team(v)
        | SpendScope::User(v)
        | SpendScope::Model(v)
        | SpendScope::Provider(v) => v,
    };
    if v.trim().is_empty() {
        return Err(format!(
            "`{}` needs a value, or `\"*\"` for each {} apart",
            scope.dimension(),
            scope.dimension()
        ));
    }
    Ok(())
}

/// A model a request can be sent to: a configured model, or
/// `<provider>/<model>` of a configured provider.
fn check_model_ref(config: &Config, name: &str) -> Result<(), String> {
    if config.models.iter().any(|m| m.name == name) {
        return Ok(());
    }
    if let Some((provider, _)) = name.split_once('/')
        && config.providers.iter().any(|p| p.name == provider)
    {
        return Ok(());
    }
    Err(format!(
        "`{name}` is neither a configured model nor `<provider>/<model>` of a configured provider"
    ))
}

fn check_time_zone(tz: &str) -> Result<(), String> {
    jiff::tz::TimeZone::get(tz).map(|_| ()).map_err(|_| {
        format!("`{tz}` is not a time zone of the IANA database (e.g. `UTC`, `Europe/Berlin`)")
    })
}

/// One NATS subject token: no dots, wildcards or spaces.
fn check_subject_token(t: &str) -> Result<(), String> {
    if !t.is_empty()
        && t.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        Ok(())
    } else {
        Err(format!(
            "`{t}` may contain only letters, digits, `_` and `-` (it is a NATS subject token or stream name)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use crate::Config;

    fn problems(yaml: &str) -> String {
        match Config::from_yaml_str(yaml, "test.yaml") {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    const BASE: &str = "providers:\n  - { name: demo, kind: demo }\nmodels:\n  - { name: big, routes: [{ provider: demo, model: x }] }\n  - { name: small, routes: [{ provider: demo, model: y }] }\n";

    #[test]
    fn spend_keys_parse_with_defaults() {
        let c = Config::from_yaml_str(&format!(
            "{BASE}budgets:\n  time_zone: Europe/Berlin\n  limits:\n    - {{ name: t, scope: {{ team: \"*\" }}, window: daily, limit_usd: 2.5, action: {{ downgrade: small }} }}\n    - {{ name: all, window: monthly, limit_usd: 100, action: reject }}\nalerts:\n  webhook: {{ url: \"http://127.0.0.1:9/hook\" }}\n  spikes:\n    - {{ name: s, window: 5m, factor: 3 }}\n"
        ), "test.yaml")
        .unwrap();
        assert_eq!(c.budgets.limits.len(), 2);
        assert_eq!(c.budgets.limits[0].limit_usd.to_string(), "2.5");
        assert_eq!(c.budgets.limits[0].scope.as_ref().unwrap().value(), None);
        assert!(c.ledger.enabled);
        assert_eq!(c.ledger.stream.name, "SWITCHYARD_USAGE");
    }

    #[test]
    fn spend_problems_name_their_keys() {
        let e = problems(&format!(
            "{BASE}budgets:\n  time_zone: Mars/Olympus\n  limits:\n    - {{ name: a, scope: {{ provider: demo }}, window: daily, limit_usd: 1, action: {{ downgrade: small }} }}\n    - {{ name: a, window: daily, limit_usd: -1, action: {{ downgrade: nowhere }} }}\nalerts:\n  nats_subject: alerts\n  spikes:\n    - {{ name: s, window: 5m }}\n    - {{ name: f, window: 5m, factor: 0.5 }}\nledger:\n  backend: jetstream\n"
        ));
        for needle in [
            "budgets.time_zone",
            "budgets.limits[0].action",
            "budgets.limits[1].name",
            "budgets.limits[1].limit_usd",
            "budgets.limits[1].action.downgrade",
            "alerts.nats_subject",
            "alerts.spikes[0].threshold_usd",
            "alerts.spikes[1].factor",
            "ledger.backend",
        ] {
            assert!(e.contains(needle), "{needle} missing from:\n{e}");
        }
    }

    #[test]
    fn spend_cap_must_name_another_known_model() {
        let e = problems(
            "providers:\n  - { name: demo, kind: demo }\nmodels:\n  - { name: big, routes: [{ provider: demo, model: x }], spend_cap: { limit_usd: 5, window: weekly, downgrade_to: big } }\n  - { name: b2, routes: [{ provider: demo, model: x }], spend_cap: { limit_usd: 5, window: weekly, downgrade_to: demo/cheap } }\n",
        );
        assert!(e.contains("models[0].spend_cap.downgrade_to"), "{e}");
        assert!(!e.contains("models[1]"), "{e}");
    }

    #[test]
    fn price_overrides_are_checked_per_entry() {
        let ok = Config::from_yaml_str(
            &format!("{BASE}pricing:\n  models:\n    - {{ provider: openai, model: house-model, input: 1.5, output: 6 }}\n"),
            "test.yaml",
        )
        .unwrap();
        assert_eq!(ok.pricing.models[0].model, "house-model");
        let e = problems(&format!(
            "{BASE}pricing:\n  models:\n    - {{ provider: openai, model: ok-model, input: 1 }}\n    - {{ provider: openai, model: bad-model, input: -1 }}\n"
        ));
        assert!(e.contains("pricing.models[1]"), "{e}");
        assert!(!e.contains("pricing.models[0]"), "{e}");
    }

    #[test]
    fn unknown_spend_keys_are_errors() {
        let e = problems(&format!(
            "{BASE}budgets:\n  limits:\n    - {{ name: a, window: daily, limit_usd: 1, action: reject, extra: 1 }}\n"
        ));
        assert!(e.contains("extra"), "{e}");
    }
}
