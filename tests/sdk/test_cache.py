"""The response cache through the official OpenAI SDK: a streamed answer
replayed from the cache is consumed like a fresh one."""

import time

import pytest
from openai import OpenAI

from conftest import SWITCHYARD, Proc, config_text


@pytest.fixture(scope="module")
def cached_gateway(double, tmp_path_factory):
    cfg = tmp_path_factory.mktemp("cache") / "switchyard.yaml"
    cfg.write_text(config_text(double) + "cache:\n  enabled: true\n")
    router = Proc([SWITCHYARD, "serve", "--config", str(cfg)], "router listening")
    yield f"http://{router.field('http_addr')}/v1"
    router.stop()


def ask_streamed(client, text):
    raw = client.chat.completions.with_raw_response.create(
        model="chat",
        temperature=0,
        messages=[{"role": "user", "content": text}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(raw.parse())
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return raw.headers["x-switchyard-cache"], content, chunks


def test_sdk_consumes_a_streamed_cache_hit(cached_gateway):
    client = OpenAI(base_url=cached_gateway, api_key="sk-client", max_retries=0, timeout=30)
    status, fresh, fresh_chunks = ask_streamed(client, "cache me through the sdk")
    assert status == "miss"
    assert fresh == "echo: cache me through the sdk"
    status, replayed, chunks = None, None, None
    # The fresh answer is stored in the background when its stream ended.
    for _ in range(50):
        status, replayed, chunks = ask_streamed(client, "cache me through the sdk")
        if status == "hit":
            break
        time.sleep(0.05)
    assert status == "hit"
    assert replayed == fresh
    assert chunks[0].choices[0].delta.role == "assistant"
    assert any(c.choices and c.choices[0].finish_reason == "stop" for c in chunks)
    assert chunks[-1].choices == []
    hit, first = chunks[-1].usage, fresh_chunks[-1].usage
    assert (hit.prompt_tokens, hit.completion_tokens) == (first.prompt_tokens, first.completion_tokens)
    # A hit costs nothing (OpenRouter's `usage.cost`, an extra field).
    assert hit.model_extra["cost"] == 0

    # The unary form of the question is a hit too, with the same text.
    raw = client.chat.completions.with_raw_response.create(
        model="chat", temperature=0, messages=[{"role": "user", "content": "cache me through the sdk"}]
    )
    assert raw.headers["x-switchyard-cache"] == "hit"
    assert raw.parse().choices[0].message.content == fresh
