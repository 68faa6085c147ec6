"""`GET /metrics` after real traffic: the exposition parses with the
Prometheus client library's OpenMetrics parser and the counters move with
the right labels."""

import urllib.request

import openai
import pytest
from openai import OpenAI
from prometheus_client.openmetrics.parser import text_string_to_metric_families


def scrape(base_url):
    root = base_url.rsplit("/v1", 1)[0]
    with urllib.request.urlopen(f"{root}/metrics") as res:
        assert res.headers["content-type"].startswith("application/openmetrics-text")
        text = res.read().decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def samples(families, name, **labels):
    fam = families.get(name)
    if fam is None:
        return []
    return [s for s in fam.samples if all(s.labels.get(k) == v for k, v in labels.items())]


def value(families, name, suffix="_total", **labels):
    return sum(s.value for s in samples(families, name, **labels) if s.name == name + suffix)


def test_metrics_move_with_traffic(gateway):
    c = OpenAI(base_url=gateway.base_url, api_key="x", max_retries=0)
    before = scrape(gateway.base_url)
    ok_before = value(before, "switchyard_requests", model="chat", provider="up", outcome="ok")

    c.chat.completions.create(model="chat", messages=[{"role": "user", "content": "one two"}])
    list(
        c.chat.completions.create(
            model="chat",
            messages=[{"role": "user", "content": "three four"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    with pytest.raises(openai.NotFoundError):
        c.chat.completions.create(model="made-up-model", messages=[{"role": "user", "content": "x"}])

    after = scrape(gateway.base_url)
    assert value(after, "switchyard_requests", model="chat", provider="up", outcome="ok") == ok_before + 2
    assert value(after, "switchyard_requests", model="unknown", outcome="model_not_found") >= 1
    assert not samples(after, "switchyard_requests", model="made-up-model"), "unknown names must not become labels"
    assert value(after, "switchyard_tokens", provider="up", upstream_model="gpt-test", token_type="output") > 0
    assert value(after, "switchyard_attempts", provider="up", upstream_model="gpt-test", outcome="ok") >= 2
    ttft = samples(after, "gen_ai_server_time_to_first_token_seconds", provider="up")
    assert any(s.name.endswith("_count") and s.value >= 1 for s in ttft)
    durations = samples(after, "gen_ai_client_operation_duration_seconds", model="chat")
    assert sum(s.value for s in durations if s.name.endswith("_count")) >= 2
    in_flight = samples(after, "switchyard_in_flight", provider="up", upstream_model="gpt-test")
    assert in_flight and in_flight[0].value == 0
    bus = samples(after, "switchyard_bus_round_trip_seconds", provider="up")
    assert sum(s.value for s in bus if s.name.endswith("_count")) >= 2
    breaker = samples(after, "switchyard_breaker_state", provider="up", upstream_model="gpt-test")
    assert breaker and breaker[0].value == 0


def test_grafana_dashboard_queries_metrics_the_gateway_exports(gateway):
    """Every metric a dashboard panel queries exists in a real scrape."""
    import json
    import re
    from pathlib import Path

    c = OpenAI(base_url=gateway.base_url, api_key="x", max_retries=0)
    # Traffic that moves every series a panel shows: plain, a fallback, a hedge.
    for model in ["chat", "failover", "hedged"]:
        c.chat.completions.create(model=model, messages=[{"role": "user", "content": "x"}])
    exported = set()
    for fam in scrape(gateway.base_url).values():
        exported.update(s.name for s in fam.samples)
        # A family with no samples yet (no fallback happened) is still
        # declared; its series get these names once it moves.
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"]}.get(fam.type, [""])
        exported.update(fam.name + suffix for suffix in suffixes)
    dashboard = json.loads((Path(__file__).resolve().parents[2] / "deploy/grafana/switchyard.json").read_text())
    queried = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            queried.update(re.findall(r"\b((?:switchyard|gen_ai)_[a-z_]+)\b", target["expr"]))
    assert queried, "dashboard queries nothing"
    missing = sorted(q for q in queried if q not in exported)
    assert not missing, f"dashboard queries metrics the gateway does not export: {missing}"
