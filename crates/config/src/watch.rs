//! Hot reload: noticing that the config file changed (or that the operator
//! asked for a reload with SIGHUP), loading it again, and telling the caller
//! which changes cannot take effect without a restart.
//!
//! The file is polled by content rather than watched with inotify: editors
//! save by writing a new file and renaming it over the old one, and
//! Kubernetes updates a mounted ConfigMap by swapping a symlink
//! (`..data`), and in both cases a watch on the original inode sees nothing.
//! Reading the path afresh each time follows whatever it names now.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::{Config, ConfigError, ConfigErrors, ServerConfig};

/// What [`ConfigWatcher::changed`] yields: the new config, loaded and
/// validated like the initial one, or every problem with it (the caller
/// keeps running on the old config and logs these).
pub type Reload = Result<Config, ConfigErrors>;

/// Below this a poll loop would mostly burn CPU.
const MIN_POLL_INTERVAL: Duration = Duration::from_millis(10);
/// A changed file is read again after this long (or `poll_interval`, if
/// shorter) and loaded only once two reads agree, so a save that truncates
/// and then writes is not caught half-written and reported as broken.
const SETTLE: Duration = Duration::from_millis(100);
/// A file rewritten without pause is loaded after this many settle rounds
/// anyway, rather than never.
const MAX_SETTLE_ROUNDS: u32 = 10;

/// Asks a [`ConfigWatcher`] to reload now, whether or not the file changed
/// (the binary calls [`ReloadTrigger::trigger`] on SIGHUP). Cheap to clone;
/// every clone triggers the same watcher.
#[derive(Debug, Clone, Default)]
pub struct ReloadTrigger {
    notify: Arc<Notify>,
}

impl ReloadTrigger {
    /// Makes the watcher's pending or next [`ConfigWatcher::changed`] reload
    /// at once. Triggers that arrive before the watcher gets to them count
    /// as one reload, not one each.
    pub fn trigger(&self) {
        // `notify_one` keeps a permit when nobody is waiting, so a trigger
        // between two `changed()` calls is not lost.
        self.notify.notify_one();
    }
}

/// What the last read of the file found. Compared whole: config files are
/// small, and mtimes can stay the same across quick edits (coarse clocks,
/// tools that preserve them, symlink swaps to older files).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Snapshot {
    Content(Vec<u8>),
    Unreadable {
        kind: io::ErrorKind,
        message: String,
    },
}

/// Watches one config file for a long-running process; see the module docs.
///
/// ```no_run
/// # async fn run(path: std::path::PathBuf) {
/// use std::time::Duration;
/// use switchyard_config::ConfigWatcher;
///
/// let mut watcher = ConfigWatcher::new(path, Duration::from_secs(2));
/// let sighup = watcher.trigger_handle(); // call `sighup.trigger()` on SIGHUP
/// loop {
///     match watcher.changed().await {
///         Ok(_new) => { /* apply `models` and `routing`; log `reload_diff` */ }
///         Err(_errors) => { /* log them; keep the running config */ }
///     }
/// }
/// # }
/// ```
#[derive(Debug)]
pub struct ConfigWatcher {
    path: PathBuf,
    poll_interval: Duration,
    /// The file as last loaded (or found unreadable) by this watcher: a
    /// change is reported once, good or bad, then not again until the file
    /// changes once more.
    last: Snapshot,
    trigger: ReloadTrigger,
    /// A trigger was taken from `trigger` but its reload not yet returned;
    /// kept here so dropping a `changed()` future (a `select!` that picked
    /// another branch) does not lose it.
    triggered: bool,
}

impl ConfigWatcher {
    /// Watches `path`, reading it every `poll_interval` (at least 10ms).
    ///
    /// The file's content now counts as already loaded, so create the
    /// watcher right after the initial [`Config::load`]. Reads it
    /// synchronously once; call from startup code, not a hot path.
    pub fn new(path: PathBuf, poll_interval: Duration) -> ConfigWatcher {
        let last = snapshot_of(std::fs::read(&path));
        ConfigWatcher {
            path,
            poll_interval: poll_interval.max(MIN_POLL_INTERVAL),
            last,
            trigger: ReloadTrigger::default(),
            triggered: false,
        }
    }

    /// The watched file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A handle that makes this watcher reload (for the SIGHUP handler).
    pub fn trigger_handle(&self) -> ReloadTrigger {
        self.trigger.clone()
    }

    /// Same as `self.trigger_handle().trigger()`.
    pub fn trigger(&self) {
        self.trigger.trigger();
    }

    /// Resolves when the file's content differs from the last one loaded
    /// (or read as unreadable), or when a [`ReloadTrigger`] fired (then even
    /// if the content is the same). Loads like [`Config::load`], then
    /// applies the `SWITCHYARD_*` environment overrides and validates, just
    /// as the initial load does.
    ///
    /// Cancel-safe: dropping the future before it resolves loses no change
    /// and no trigger.
    pub async fn changed(&mut self) -> Reload {
        loop {
            if !self.triggered {
                tokio::select! {
                    // A trigger and a poll due together: take the trigger,
                    // which reloads either way.
                    biased;
                    () = self.trigger.notify.notified() => self.triggered = true,
                    () = tokio::time::sleep(self.poll_interval) => {}
                }
            }
            let mut now = read(&self.path).await;
            if !self.triggered {
                if now == self.last {
                    continue;
                }
                now = self.settle(now).await;
                // Edited and then put back while settling.
                if now == self.last {
                    continue;
                }
            }
            self.triggered = false;
            let reload = load(&self.path, &now);
            self.last = now;
            return reload;
        }
    }

    /// Reads again until two reads a short pause apart agree.
    async fn settle(&self, mut current: Snapshot) -> Snapshot {
        let pause = self.poll_interval.min(SETTLE);
        for _ in 0..MAX_SETTLE_ROUNDS {
            tokio::time::sleep(pause).await;
            let again = read(&self.path).await;
            if again == current {
                break;
            }
            current = again;
        }
        current
    }
}

async fn read(path: &Path) -> Snapshot {
    // Opens the path afresh each time, following whatever file or symlink
    // it names now. A plain read: a config file is small, read once per
    // poll, and tokio::fs would hand it to a blocking thread, which under a
    // paused test clock lets time jump past timeouts while it runs.
    snapshot_of(std::fs::read(path))
}

fn snapshot_of(read: io::Result<Vec<u8>>) -> Snapshot {
    match read {
        Ok(bytes) => Snapshot::Content(bytes),
        Err(e) => Snapshot::Unreadable {
            kind: e.kind(),
            message: e.to_string(),
        },
    }
}

/// [`Config::load`] from the bytes already read (reading the file again
/// could see yet another version), then the environment overrides and
/// validation, as at startup.
fn load(path: &Path, snapshot: &Snapshot) -> Reload {
    let origin = path.display().to_string();
    let unreadable = |reason: &dyn std::fmt::Display| {
        ConfigErrors::from(ConfigError::new(
            origin.as_str(),
            "",
            format!("cannot read the config file: {reason}"),
        ))
    };
    let text = match snapshot {
        Snapshot::Content(bytes) => std::str::from_utf8(bytes).map_err(|e| unreadable(&e))?,
        Snapshot::Unreadable { message, .. } => return Err(unreadable(message)),
    };
    let env = |name: &str| std::env::var(name).ok();
    let mut config = Config::from_yaml_str_with_env(text, &origin, env)?;
    config.apply_env_overrides(env)?;
    config.validate(&origin)?;
    Ok(config)
}

impl Config {
    /// The keys that differ between `self` (running) and `new` but take
    /// effect only after a restart: `server.<key>`, `bus`, `telemetry`,
    /// `cache`, `ledger`, `responses`, and `providers.<name>` for each provider added, removed or changed
    /// (`providers (order)` when only their order changed, which decides
    /// who serves a bare model name listed by several). `models`,
    /// `routing`, `guardrails`, `auth.access` and `rate_limits` apply live and are never listed. Empty: the whole change
    /// applies live.
    pub fn reload_diff(&self, new: &Config) -> Vec<String> {
        // Destructured in full so that a new key fails to compile here until
        // someone decides whether it can change at runtime.
        let Config {
            server,
            bus,
            providers,
            models: _,
            routing: _,
            telemetry,
            discovery,
            cache,
            ledger,
            budgets: _,
            alerts: _,
            pricing: _,
            responses,
            guardrails: _,
            auth,
            rate_limits: _,
        } = self;
        let ServerConfig {
            http_addr,
            grpc_addr,
            max_body_bytes,
            request_timeout,
            shutdown_grace,
            shutdown_delay,
        } = server;
        let s = &new.server;
        let mut keys = Vec::new();
        for (key, differs) in [
            ("http_addr", *http_addr != s.http_addr),
            ("grpc_addr", *grpc_addr != s.grpc_addr),
            ("max_body_bytes", *max_body_bytes != s.max_body_bytes),
            ("request_timeout", *request_timeout != s.request_timeout),
            ("shutdown_grace", *shutdown_grace != s.shutdown_grace),
            ("shutdown_delay", *shutdown_delay != s.shutdown_delay),
        ] {
            if differs {
                keys.push(format!("server.{key}"));
            }
        }
        if *bus != new.bus {
            keys.push("bus".to_owned());
        }
        // The exporter and sampler are set up once at start.
        if *telemetry != new.telemetry {
            keys.push("telemetry".to_owned());
        }
        // Registered once at start, deregistered at shutdown.
        if *discovery != new.discovery {
            keys.push("discovery".to_owned());
        }
        // The cache is built once at start (`models[].cache` applies live).
        if *cache != new.cache {
            keys.push("cache".to_owned());
        }
        // The ledger's file or stream is opened once at start (budgets,
        // alerts and prices apply live).
        if *ledger != new.ledger {
            keys.push("ledger".to_owned());
        }
        // The key store and the JWKS are opened once at start (`auth.access`
        // and `auth.allow_unauthenticated` apply live).
        if auth.keys != new.auth.keys {
            keys.push("auth.keys".to_owned());
        }
        if auth.jwt != new.auth.jwt {
            keys.push("auth.jwt".to_owned());
        }
        // The response store is opened once at start.
        if *responses != new.responses {
            keys.push("responses".to_owned());
        }
        // Names are unique in a valid config, so a provider is known by its
        // name across the two.
        let mut any_provider = false;
        for old in providers {
            if new.provider(&old.name) != Some(old) {
                keys.push(format!("providers.{}", old.name));
                any_provider = true;
            }
        }
        for p in &new.providers {
            if self.provider(&p.name).is_none() {
                keys.push(format!("providers.{}", p.name));
                any_provider = true;
            }
        }
        if !any_provider && *providers != new.providers {
            keys.push("providers (order)".to_owned());
        }
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BusConfig, ProviderConfig, ProviderKind};
    use tokio::time::{Instant, timeout};

    const POLL: Duration = Duration::from_secs(2);

    fn config_text(upstream_model: &str) -> String {
        format!(
            "providers:\n  - name: demo\n    kind: demo\nmodels:\n  - name: chat\n    routes:\n      - {{ provider: demo, model: {upstream_model} }}\n"
        )
    }

    fn upstream_model(c: &Config) -> &str {
        &c.models[0].routes[0].model
    }

    /// The watched file in a fresh directory, with `text` written to it.
    fn setup(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("switchyard.yaml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    /// Asserts that `changed()` stays pending for a good while (many polls).
    async fn assert_quiet(w: &mut ConfigWatcher) {
        if let Ok(r) = timeout(POLL * 30, w.changed()).await {
            panic!("unexpected reload: {r:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn no_reload_while_nothing_changes() {
        let (_dir, path) = setup(&config_text("echo"));
        let mut w = ConfigWatcher::new(path.clone(), POLL);
        assert_quiet(&mut w).await;
        // Rewriting the same bytes is no change either.
        std::fs::write(&path, config_text("echo")).unwrap();
        assert_quiet(&mut w).await;
    }

    #[tokio::test(start_paused = true)]
    async fn change_is_detected_once() {
        let (_dir, path) = setup(&config_text("echo"));
        let mut w = ConfigWatcher::new(path.clone(), POLL);
        std::fs::write(&path, config_text("echo-2")).unwrap();
        let start = Instant::now();
        let c = w.changed().await.unwrap();
        assert_eq!(upstream_model(&c), "echo-2");
        // Within a poll and a settle pause.
        assert!(start.elapsed() <= POLL + SETTLE, "{:?}", start.elapsed());
        assert_quiet(&mut w).await;
    }

    #[tokio::test(start_paused = true)]
    async fn bad_edit_yields_its_errors_once_then_a_fix_loads() {
        let (_dir, path) = setup(&config_text("echo"));
        let mut w = ConfigWatcher::new(path.clone(), POLL);
        let bad =
            config_text("echo").replace("kind: demo", "kind: dmo") + "routing:\n  exploration: 2\n";
        std::fs::write(&path, bad).unwrap();
        let errs = w.changed().await.unwrap_err();
        assert_eq!(errs.errors[0].origin, path.display().to_string());
        assert_eq!(errs.errors[0].path, "providers[0].kind");
        assert_eq!(errs.errors[0].line, Some(3));
        // Not reported again on every poll.
        assert_quiet(&mut w).await;

        let bad = config_text("echo") + "routing:\n  exploration: 2\n";
        std::fs::write(&path, bad).unwrap();
        let errs = w.changed().await.unwrap_err();
        assert_eq!(errs.errors[0].path, "routing.exploration");

        std::fs::write(&path, config_text("echo-3")).unwrap();
        assert_eq!(upstream_model(&w.changed().await.unwrap()), "echo-3");
    }

    #[tokio::test(start_paused = true)]
    async fn trigger_reloads_an_unchanged_file_at_once() {
        let (_dir, path) = setup(&config_text("echo"));
        let mut w = ConfigWatcher::new(path, Duration::from_secs(3600));
        let sighup = w.trigger_handle();
        let start = Instant::now();
        sighup.clone().trigger();
        // Several triggers before the watcher gets to them: one reload.
        sighup.trigger();
        let c = w.changed().await.unwrap();
        assert_eq!(upstream_model(&c), "echo");
        assert!(start.elapsed() < Duration::from_secs(1));
        assert!(
            timeout(Duration::from_secs(60), w.changed()).await.is_err(),
            "second reload"
        );

        // A trigger from another task while `changed()` is waiting.
        let start = Instant::now();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            sighup.trigger();
        });
        let c = w.changed().await.unwrap();
        assert_eq!(upstream_model(&c), "echo");
        assert_eq!(start.elapsed().as_secs(), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn trigger_survives_a_dropped_changed_future() {
        let (_dir, path) = setup(&config_text("echo"));
        let mut w = ConfigWatcher::new(path, Duration::from_secs(3600));
        // A `changed()` dropped while it waits (as `select!` does) ...
        assert!(timeout(Duration::ZERO, w.changed()).await.is_err());
        // ... leaves nothing behind that swallows the next trigger.
        w.trigger();
        let c = timeout(Duration::from_secs(1), w.changed()).await;
        assert!(matches!(c, Ok(Ok(_))), "{c:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn rename_over_is_detected() {
        let (dir, path) = setup(&config_text("echo"));
        let mut w = ConfigWatcher::new(path.clone(), POLL);
        let tmp = dir.path().join(".switchyard.yaml.swp");
        std::fs::write(&tmp, config_text("renamed")).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        assert_eq!(upstream_model(&w.changed().await.unwrap()), "renamed");
    }

    /// The layout kubelet gives a mounted ConfigMap: the file is a symlink
    /// into `..data`, itself a symlink to a timestamped directory that an
    /// update replaces by renaming a new `..data` over the old.
    #[cfg(unix)]
    #[tokio::test(start_paused = true)]
    async fn configmap_symlink_swap_is_detected() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let v1 = root.join("..2025_01_01_00_00_00.1");
        std::fs::create_dir(&v1).unwrap();
        std::fs::write(v1.join("switchyard.yaml"), config_text("echo")).unwrap();
        symlink(&v1, root.join("..data")).unwrap();
        let path = root.join("switchyard.yaml");
        symlink("..data/switchyard.yaml", &path).unwrap();
        let mut w = ConfigWatcher::new(path, POLL);

        let v2 = root.join("..2025_01_01_00_05_00.2");
        std::fs::create_dir(&v2).unwrap();
        std::fs::write(v2.join("switchyard.yaml"), config_text("swapped")).unwrap();
        symlink(&v2, root.join("..data_tmp")).unwrap();
        std::fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
        std::fs::remove_dir_all(&v1).unwrap();

        assert_eq!(upstream_model(&w.changed().await.unwrap()), "swapped");
        assert_quiet(&mut w).await;
    }

    #[tokio::test(start_paused = true)]
    async fn missing_file_is_reported_once_and_its_return_noticed() {
        let (_dir, path) = setup(&config_text("echo"));
        let mut w = ConfigWatcher::new(path.clone(), POLL);
        std::fs::remove_file(&path).unwrap();
        let errs = w.changed().await.unwrap_err();
        assert!(
            errs.errors[0]
                .message
                .starts_with("cannot read the config file"),
            "{errs}"
        );
        assert_quiet(&mut w).await;
        std::fs::write(&path, config_text("back")).unwrap();
        assert_eq!(upstream_model(&w.changed().await.unwrap()), "back");
    }

    fn running() -> Config {
        let mut c = Config::default();
        c.providers
            .push(ProviderConfig::new("openai", ProviderKind::Openai));
        c.providers
            .push(ProviderConfig::new("demo", ProviderKind::Demo));
        c
    }

    #[test]
    fn reload_diff_names_what_needs_a_restart() {
        let old = running();
        assert!(old.reload_diff(&old.clone()).is_empty());

        // Models and routing apply live.
        let mut new = old.clone();
        new.models.push(crate::ModelConfig::new(
            "chat",
            vec![crate::RouteConfig::new("demo", "echo")],
        ));
        new.routing.exploration = 0.5;
        assert!(old.reload_diff(&new).is_empty());

        let mut new = old.clone();
        new.server.http_addr = "0.0.0.0:9000".parse().unwrap();
        new.server.request_timeout = Duration::from_secs(1);
        new.bus = Some(BusConfig::new("nats://nats:4222"));
        new.providers[0].max_concurrency = 1;
        new.providers.remove(1);
        new.providers
            .push(ProviderConfig::new("groq", ProviderKind::Openai));
        assert_eq!(
            old.reload_diff(&new),
            [
                "server.http_addr",
                "server.request_timeout",
                "bus",
                "providers.openai",
                "providers.demo",
                "providers.groq"
            ]
        );

        let mut new = old.clone();
        new.providers.reverse();
        assert_eq!(old.reload_diff(&new), ["providers (order)"]);

        // Export and sampling are set up once, at start.
        let mut new = old.clone();
        new.telemetry.sampling_ratio = 0.5;
        assert_eq!(old.reload_diff(&new), ["telemetry"]);

        // Registered at start; the delay is read when shutdown begins, but
        // from the config the process started with.
        let mut new = old.clone();
        new.server.shutdown_delay = Duration::from_secs(5);
        new.discovery.consul = Some(crate::ConsulConfig::default());
        assert_eq!(
            old.reload_diff(&new),
            ["server.shutdown_delay", "discovery"]
        );
    }
}
