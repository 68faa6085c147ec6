"""Real client programs, unchanged, against `switchyard serve`: Codex CLI
over `POST /v1/responses` and Claude Code over `POST /v1/messages`, each
asked to run a shell command. The double plays the model: it calls the
client's own shell tool, and answers once the result comes back, so a pass
means the client ran the tool (the file exists), sent the result back
through the gateway, and printed the final answer, with every request the
client made answered 200."""

import json
import os
import subprocess
import urllib.request
from pathlib import Path

import pytest

BIN = Path(os.environ.get("SWITCHYARD_COMPAT_BIN", Path.home() / ".cache" / "switchyard-compat" / "node_modules" / ".bin"))



def client(name):
    path = BIN / name
    if not path.exists():
        pytest.fail(f"{path} missing: run `bash tests/compat/run.sh`, which installs the pinned clients")
    return str(path)


TASK = "Run `echo compat-ok > proof.txt` and tell me when it is done."


def clean_env(tmp_path, **extra):
    """No credentials, config or home of the user running the tests."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "TERM", "TMPDIR")}
    return dict(keep, HOME=str(home), NO_COLOR="1", **extra)


def codex_home(tmp_path, base_url, web_search="disabled"):
    home = tmp_path / "codex-home"
    home.mkdir(exist_ok=True)
    # A custom provider speaking the Responses API, as the gateway's docs
    # (docs/responses-api.md) tell Codex users to write it.
    (home / "config.toml").write_text(
        f"""
model = "gpt-5.4"
model_provider = "switchyard"
web_search = "{web_search}"
check_for_update_on_startup = false

[analytics]
enabled = false

[model_providers.switchyard]
name = "Switchyard"
base_url = "{base_url}/v1"
env_key = "SWITCHYARD_API_KEY"
wire_api = "responses"
request_max_retries = 0
stream_max_retries = 0
"""
    )
    return home


def run_codex(tmp_path, gateway, **config):
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    last = tmp_path / "last-message.txt"
    env = clean_env(
        tmp_path,
        CODEX_HOME=str(codex_home(tmp_path, gateway.base_url, **config)),
        SWITCHYARD_API_KEY="sk-compat",
    )
    args = [
        client("codex"),
        "exec",
        "--skip-git-repo-check",
        "--ephemeral",
        "--dangerously-bypass-approvals-and-sandbox",
        "-C",
        str(work),
        "-o",
        str(last),
        TASK,
    ]
    r = subprocess.run(args, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=180)
    return r, work, last


def test_codex_exec_runs_a_shell_tool_through_the_gateway(gateway, tmp_path):
    r, work, last = run_codex(tmp_path, gateway)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert (work / "proof.txt").read_text().strip() == "compat-ok", out
    assert last.read_text().startswith("done: "), out
    seen = gateway.requests("/v1/responses")
    # The tool call, then the answer after the tool's output.
    assert len(seen) >= 2, seen
    assert all(status == 200 for _, status in seen), seen


def test_codex_with_web_search_on_gets_a_400_naming_the_tool(gateway, tmp_path):
    r, work, _ = run_codex(tmp_path, gateway, web_search="live")
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    assert "web_search" in out and "built-in tool" in out, out
    assert not (work / "proof.txt").exists()
    assert [s for _, s in gateway.requests("/v1/responses")] == [400]


# Claude Code shapes its requests by model: for its own model names it
# sends thinking and betas; for others (a gateway alias) it sends its
# environment as a system turn inside `messages`.
@pytest.mark.parametrize("model", ["claude-sonnet-4-5", "gpt-5.4"])
def test_claude_code_runs_a_bash_tool_through_the_gateway(gateway, double, tmp_path, model):
    work = tmp_path / "work"
    work.mkdir()
    env = clean_env(
        tmp_path,
        ANTHROPIC_BASE_URL=gateway.base_url,
        ANTHROPIC_API_KEY="sk-compat",
        ANTHROPIC_DEFAULT_HAIKU_MODEL="claude-haiku-4-5",
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
        DISABLE_AUTOUPDATER="1",
        DISABLE_TELEMETRY="1",
        DISABLE_ERROR_REPORTING="1",
    )
    args = [
        client("claude"),
        "-p",
        "--model",
        model,
        "--output-format",
        "json",
        "--allowedTools",
        "Bash",
        "--",
        TASK,
    ]
    r = subprocess.run(args, cwd=work, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=180)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    result = json.loads(r.stdout)
    assert result["is_error"] is False, out
    assert result["result"].startswith("done: "), out
    assert result["num_turns"] == 2, out
    assert (work / "proof.txt").read_text().strip() == "compat-ok", out
    seen = gateway.requests("/v1/messages")
    assert len(seen) >= 2, seen
    assert all(status == 200 for _, status in seen), seen
    # Adaptive thinking at Claude Code's effort, as the OpenAI-format
    # upstream's own control; none of Anthropic's fields reach it.
    with urllib.request.urlopen(double.removesuffix("/v1") + "/_double/stats", timeout=10) as r:
        body = json.load(r)["last_body"]
    assert body.get("reasoning_effort") == "high", body.get("reasoning_effort")
    for field in ("thinking", "output_config", "context_management"):
        assert field not in body, field
