//! `switchyard` processes for end-to-end tests. Addresses come from the
//! process's own log ("router listening" / "worker serving"), so every test
//! binds port 0 and nothing collides.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// `target/<profile>/switchyard`, next to the test binary's `deps/` folder.
/// The test script builds it before the tests run.
pub fn switchyard_bin() -> PathBuf {
    if let Ok(p) = std::env::var("SWITCHYARD_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let bin = dir.join("switchyard");
    assert!(
        bin.exists(),
        "{} not found: run `cargo build -p switchyard` first (tests/run.sh does)",
        bin.display()
    );
    bin
}

pub struct Proc {
    pub child: Child,
    pub http_addr: Option<SocketAddr>,
    pub grpc_addr: Option<SocketAddr>,
    /// Every log line after the ready line, for assertions.
    pub lines: mpsc::Receiver<String>,
    /// `SWITCHYARD_DATA_DIR` of the process (its usage ledger), unless the
    /// test set its own: no test writes into the user's home.
    _data: Option<tempfile::TempDir>,
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn field(line: &str, name: &str) -> Option<SocketAddr> {
    let start = line.find(&format!("{name}="))? + name.len() + 1;
    line[start..]
        .split_whitespace()
        .next()?
        .trim_matches('"')
        .parse()
        .ok()
}

impl Proc {
    /// Starts `switchyard ARGS` and waits (at most 60 s) for a log line
    /// containing `ready`.
    pub fn start(args: &[&str], ready: &str) -> Proc {
        Self::start_with_env(args, ready, &[])
    }

    /// Like [`Proc::start`], with extra environment variables (e.g.
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`). Logs are text (`key=value`, which
    /// the address parsing and log assertions read) unless `env` says
    /// otherwise.
    pub fn start_with_env(args: &[&str], ready: &str, env: &[(&str, &str)]) -> Proc {
        let data = (!env.iter().any(|(k, _)| *k == "SWITCHYARD_DATA_DIR"))
            .then(|| tempfile::tempdir().expect("data dir"));
        let mut command = Command::new(switchyard_bin());
        if let Some(d) = &data {
            command.env("SWITCHYARD_DATA_DIR", d.path());
        }
        let mut child = command
            .args(args)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .env("SWITCHYARD_LOG_FORMAT", "text")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn switchyard");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let line = strip_ansi(&line);
                if std::env::var_os("SWITCHYARD_TEST_LOGS").is_some() {
                    eprintln!("[switchyard] {line}");
                }
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut seen = Vec::new();
        loop {
            match rx.recv_timeout(Duration::from_secs(60)) {
                Ok(line) => {
                    let hit = line.contains(ready);
                    seen.push(line.clone());
                    if hit {
                        return Proc {
                            child,
                            http_addr: field(&line, "http_addr"),
                            grpc_addr: field(&line, "grpc_addr"),
                            lines: rx,
                            _data: data,
                        };
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    panic!(
                        "switchyard {args:?} never logged `{ready}`; its log:\n{}",
                        seen.join("\n")
                    );
                }
            }
        }
    }

    pub fn http(&self) -> String {
        format!(
            "http://{}",
            self.http_addr.expect("process has no HTTP address")
        )
    }

    /// SIGKILL: the process gets no chance to drain.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits (off the async runtime) for the process to exit by itself, for
    /// 30 s at most: for tests that signalled it and go on observing.
    pub async fn exited(mut self) -> std::process::ExitStatus {
        tokio::time::timeout(
            std::time::Duration::from_secs(30),
            tokio::task::spawn_blocking(move || self.child.wait().expect("wait")),
        )
        .await
        .expect("the process did not exit")
        .expect("the waiting task failed")
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        self.child.wait().expect("wait")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes a config file into `dir` and returns its path.
/// `switchyard serve` on a config written to a temporary folder that
/// lives as long as this does.
pub struct Serve {
    pub proc: Proc,
    _dir: tempfile::TempDir,
}

/// Writes `yaml` and starts `switchyard serve` on it, once it listens.
pub fn serve(yaml: &str) -> Serve {
    let dir = tempfile::tempdir().expect("config dir");
    let path = write_config(dir.path(), yaml);
    let proc = Proc::start(
        &["serve", "--config", path.to_str().expect("utf-8 path")],
        "router listening",
    );
    Serve { proc, _dir: dir }
}

pub fn write_config(dir: &Path, yaml: &str) -> PathBuf {
    let path = dir.join("switchyard.yaml");
    std::fs::write(&path, yaml).expect("write config");
    path
}

/// A config for the scaled-out shape (router + workers over NATS): both
/// listeners on port 0, a short acknowledgement timeout and heartbeat so a
/// lost worker is noticed within a second, and provider `up` (OpenAI wire
/// format at `upstream`, key `sk-test-key`). `more_providers` is YAML list
/// items appended under `providers:`; `models` is the `models:` list.
pub fn nats_config(nats_url: &str, upstream: &str, more_providers: &str, models: &str) -> String {
    format!(
        r#"
server:
  http_addr: 127.0.0.1:0
  grpc_addr: 127.0.0.1:0
bus:
  nats_url: {nats_url}
  ack_timeout: 1s
  heartbeat_interval: 200ms
providers:
  - name: up
    kind: openai
    base_url: {upstream}
    api_key: sk-test-key
    timeout: 10s
{more_providers}
models:
{models}
"#
    )
}

/// Two routers and one worker (provider `up`) on one config, over NATS:
/// what a scaled-out deployment shares between routers.
pub struct TwoRouters {
    pub a: Proc,
    pub b: Proc,
    _worker: Proc,
    _dir: tempfile::TempDir,
}

/// [`TwoRouters`] on [`nats_config`] with model `chat` (provider `up`,
/// model `gpt-test`) and `extra` YAML appended.
pub fn two_routers(nats_url: &str, upstream: &str, extra: &str) -> TwoRouters {
    let dir = tempfile::tempdir().expect("config dir");
    let mut yaml = nats_config(
        nats_url,
        upstream,
        "",
        "  - name: chat\n    routes:\n      - { provider: up, model: gpt-test }\n",
    );
    yaml.push_str(extra);
    let path = write_config(dir.path(), &yaml);
    let path = path.to_str().expect("utf-8 path");
    let worker = Proc::start(
        &["worker", "--config", path, "--provider", "up"],
        "worker serving",
    );
    TwoRouters {
        a: Proc::start(&["router", "--config", path], "router listening"),
        b: Proc::start(&["router", "--config", path], "router listening"),
        _worker: worker,
        _dir: dir,
    }
}

/// The usual `switchyard serve` config of an e2e test: both listeners on
/// port 0, provider `up` (OpenAI wire format at `upstream`, no key) and
/// model `chat` on `up/gpt-test`; `rest` is appended (more `models` items,
/// then other sections).
pub fn serve_config(upstream: &str, rest: &str) -> String {
    format!(
        "server:\n  http_addr: 127.0.0.1:0\n  grpc_addr: 127.0.0.1:0\nproviders:\n  - name: up\n    kind: openai\n    base_url: {upstream}\nmodels:\n  - name: chat\n    routes:\n      - {{ provider: up, model: gpt-test }}\n{rest}"
    )
}
