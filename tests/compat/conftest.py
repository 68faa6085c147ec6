"""Fixtures for the real-client tests: the SDK tests' process harness
(tests/sdk/conftest.py), a `switchyard serve` whose models all go to the
upstream double's `agent` model, and the pinned client binaries."""

import importlib.util
import queue
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("sdk_harness", ROOT / "tests" / "sdk" / "conftest.py")
harness = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(harness)

# The SDK tests' upstream double, one per session.
double = harness.double

# The names each client asks for: Codex's and Claude Code's own model
# names, so they send what they send to the real services (reasoning,
# thinking, betas), all served by the double's scripted agent.
MODELS = ["gpt-5.4", "claude-sonnet-4-5", "claude-haiku-4-5"]


class Gateway:
    def __init__(self, proc, base_url):
        self.proc = proc
        self.base_url = base_url
        self.seen = []

    def requests(self, path):
        """(path, status) of every request to `path` logged since the last
        call, from the gateway's access log."""
        while True:
            try:
                line = self.proc.lines.get_nowait()
            except queue.Empty:
                break
            m = re.search(r"path=(\S+) status=(\d+)", line)
            if m and "access" in line:
                self.seen.append((m.group(1), int(m.group(2))))
        out = [s for s in self.seen if s[0] == path]
        self.seen = [s for s in self.seen if s[0] != path]
        return out


@pytest.fixture(scope="session")
def gateway(double, tmp_path_factory):
    cfg = tmp_path_factory.mktemp("compat") / "switchyard.yaml"
    routes = "".join(f"  - name: {m}\n    routes:\n      - {{ provider: up, model: agent }}\n" for m in MODELS)
    cfg.write_text(
        f"""
server:
  http_addr: 127.0.0.1:0
  grpc_addr: 127.0.0.1:0
providers:
  - name: up
    kind: openai
    base_url: {double}
    api_key: sk-upstream
    # The double plays a reasoning model: Claude Code's thinking must reach
    # it as OpenAI's reasoning_effort.
    reasoning: on
models:
{routes}"""
    )
    proc = harness.Proc([harness.SWITCHYARD, "serve", "--config", str(cfg)], "router listening")
    yield Gateway(proc, f"http://{proc.field('http_addr')}")
    proc.stop()
