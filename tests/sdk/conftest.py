"""Fixtures for the SDK compatibility tests: real processes only.

The gateway runs as the real `switchyard` binary, in-process (`serve`) or
scaled out (`router` + two `worker` processes over a private nats-server);
the upstream is the OpenAI wire-format double (`upstream-double`) on a real
socket. Every process binds port 0 and reports its address in its log.
"""

import os
import queue
import re
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "debug"
SWITCHYARD = os.environ.get("SWITCHYARD_BIN", str(TARGET / "switchyard"))
DOUBLE = os.environ.get("UPSTREAM_DOUBLE_BIN", str(TARGET / "upstream-double"))


class Proc:
    """A child process whose stderr (or stdout) lines are collected."""

    def __init__(self, args, ready, env=None, stream="stderr"):
        self.args = args
        # Text logs: the ready line's `key=value` fields are parsed below.
        full_env = dict(os.environ, RUST_LOG="info", NO_COLOR="1", SWITCHYARD_LOG_FORMAT="text")
        # Each process keeps its usage ledger in its own folder, never in
        # the user's home.
        self._data = tempfile.TemporaryDirectory(prefix="switchyard-data-")
        full_env.setdefault("SWITCHYARD_DATA_DIR", self._data.name)
        for k, v in (env or {}).items():
            if v is None:
                full_env.pop(k, None)
            else:
                full_env[k] = v
        self.p = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if stream == "stdout" else subprocess.DEVNULL,
            stderr=subprocess.PIPE if stream == "stderr" else subprocess.DEVNULL,
            env=full_env,
            text=True,
        )
        self.lines = queue.Queue()
        pipe = self.p.stdout if stream == "stdout" else self.p.stderr
        threading.Thread(target=self._pump, args=(pipe,), daemon=True).start()
        self.ready_line = self._wait_for(ready)

    def _pump(self, pipe):
        for line in pipe:
            if os.environ.get("SWITCHYARD_TEST_LOGS"):
                print(f"[{Path(self.args[0]).name}] {line}", end="")
            self.lines.put(line)

    def _wait_for(self, needle, timeout=60):
        seen = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                if self.p.poll() is not None:
                    break
                continue
            seen.append(line)
            if needle in line:
                return line
        self.stop()
        raise RuntimeError(f"{self.args} never printed {needle!r}:\n" + "".join(seen))

    def field(self, name):
        m = re.search(rf"{name}=(\S+)", self.ready_line)
        return m.group(1) if m else None

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def double():
    p = Proc([DOUBLE], "listening on", stream="stdout")
    url = p.ready_line.strip().split("listening on ", 1)[1]
    yield url
    p.stop()


@pytest.fixture(scope="session")
def nats_url():
    port = free_port()
    store = tempfile.TemporaryDirectory()
    try:
        p = subprocess.Popen(
            ["nats-server", "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", store.name],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    except FileNotFoundError:
        pytest.fail("nats-server missing: apt-get install -y nats-server (tests/run.sh does)")
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                p.kill()
                raise RuntimeError("nats-server did not start")
            time.sleep(0.02)
    yield f"nats://127.0.0.1:{port}"
    p.kill()
    p.wait()
    store.cleanup()


def config_text(double_url, nats=None):
    bus = f"bus:\n  nats_url: {nats}\n  ack_timeout: 1s\n  heartbeat_interval: 200ms\n" if nats else ""
    return f"""
server:
  http_addr: 127.0.0.1:0
  grpc_addr: 127.0.0.1:0
  max_body_bytes: 65536
{bus}providers:
  - name: demo
    kind: demo
    models: [echo]
  - name: up
    kind: openai
    base_url: {double_url}
    api_key: sk-upstream
    timeout: 1s
  - name: ghost
    kind: openai
    base_url: {double_url}
models:
  - name: chat
    routes:
      - {{ provider: up, model: gpt-test }}
  - name: failover
    routes:
      - {{ provider: up, model: error-500 }}
      - {{ provider: demo, model: echo }}
  - name: hedged
    hedge: {{ delay: 50ms }}
    routes:
      - {{ provider: up, model: slow-500 }}
      - {{ provider: demo, model: echo }}
"""


class Gateway:
    def __init__(self, mode, base_url, procs):
        self.mode = mode
        self.base_url = base_url
        self.procs = procs


@pytest.fixture(scope="session", params=["serve", "nats"])
def gateway(request, double, tmp_path_factory):
    mode = request.param
    cfg = tmp_path_factory.mktemp(mode) / "switchyard.yaml"
    procs = []
    if mode == "serve":
        cfg.write_text(config_text(double))
        router = Proc([SWITCHYARD, "serve", "--config", str(cfg)], "router listening")
    else:
        nats = request.getfixturevalue("nats_url")
        cfg.write_text(config_text(double, nats))
        for provider in ["demo", "up", "up"]:
            procs.append(
                Proc([SWITCHYARD, "worker", "--config", str(cfg), "--provider", provider], "worker serving")
            )
        router = Proc([SWITCHYARD, "router", "--config", str(cfg)], "router listening")
    procs.append(router)
    yield Gateway(mode, f"http://{router.field('http_addr')}/v1", procs)
    for p in reversed(procs):
        p.stop()
