"""Per-request routing controls through the official OpenAI SDK, in both
gateway shapes: OpenRouter's `models` / `provider` fields sent with
`extra_body`, the `x-switchyard-route` header with `extra_headers`, and the
headers that report the decision."""

import json

import openai
import pytest
from openai import OpenAI


def client(gateway):
    return OpenAI(base_url=gateway.base_url, api_key="sk-client", max_retries=0, timeout=30)


def test_models_and_provider_fields_shape_the_route(gateway):
    raw = client(gateway).chat.completions.with_raw_response.create(
        model="chat",
        messages=[{"role": "user", "content": "route me"}],
        # `only: demo` removes chat's own route; failover's demo route serves.
        extra_body={"models": ["chat", "failover"], "provider": {"only": ["demo"]}},
    )
    completion = raw.parse()
    assert "route me" in completion.choices[0].message.content
    assert raw.headers["x-switchyard-provider"] == "demo"
    assert raw.headers["x-switchyard-routing"] == "models=chat,failover; only=demo"
    assert raw.headers["x-switchyard-outcomes"] == "demo/echo=ok"


def test_route_header_replaces_the_targets(gateway):
    raw = client(gateway).chat.completions.with_raw_response.create(
        model="chat",
        messages=[{"role": "user", "content": "by header"}],
        extra_headers={"x-switchyard-route": json.dumps({"targets": ["demo/echo"], "retry": {"max_attempts": 1}})},
    )
    assert raw.headers["x-switchyard-attempted"] == "demo/echo"
    assert "by header" in raw.parse().choices[0].message.content


def test_streams_take_the_controls(gateway):
    stream = client(gateway).chat.completions.create(
        model="failover",
        messages=[{"role": "user", "content": "stream me"}],
        stream=True,
        extra_body={"provider": {"ignore": ["up"]}},
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert "stream me" in text


def test_bad_controls_are_a_400_naming_the_field(gateway):
    with pytest.raises(openai.BadRequestError) as e:
        client(gateway).chat.completions.create(
            model="chat",
            messages=[{"role": "user", "content": "x"}],
            extra_body={"provider": {"sort": "speed"}},
        )
    assert e.value.body["param"] == "provider.sort"
    assert e.value.body["type"] == "invalid_request_error"
