"""The official OpenAI Python SDK against Switchyard, unchanged: in-process
(`serve`) and scaled out (router + workers over NATS)."""

import time

import openai
import pytest
from openai import OpenAI


def client(gw):
    # The SDK retries 429/5xx by default; the tests want to see each answer.
    return OpenAI(base_url=gw.base_url, api_key="sk-client", max_retries=0, timeout=30)


def test_chat_plain(gateway):
    raw = client(gateway).chat.completions.with_raw_response.create(
        model="chat", messages=[{"role": "user", "content": "hello there"}]
    )
    assert raw.headers["x-switchyard-provider"] == "up"
    assert raw.headers["x-switchyard-model"] == "gpt-test"
    assert raw.headers["x-request-id"]
    res = raw.parse()
    assert res.choices[0].message.content == "echo: hello there"
    assert res.choices[0].finish_reason == "stop"
    assert res.usage.total_tokens == res.usage.prompt_tokens + res.usage.completion_tokens > 0


def test_chat_streamed_arrives_incrementally_with_final_usage(gateway):
    stream = client(gateway).chat.completions.create(
        model="up/slow-150",
        messages=[{"role": "user", "content": "one two three four"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    arrivals, content, chunks = [], "", []
    for chunk in stream:
        arrivals.append(time.monotonic())
        chunks.append(chunk)
        for c in chunk.choices:
            content += c.delta.content or ""
    assert content == "echo: one two three four"
    # The double waits 150 ms between chunks; a gateway that buffered the
    # answer would deliver them all at once.
    content_arrivals = [t for t, c in zip(arrivals, chunks) if c.choices and c.choices[0].delta.content]
    assert len(content_arrivals) >= 4
    assert content_arrivals[-1] - content_arrivals[0] > 0.3
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None and last.usage.completion_tokens > 0
    assert any(c.choices and c.choices[0].finish_reason == "stop" for c in chunks)


def test_stream_without_include_usage_has_no_usage_chunk(gateway):
    chunks = list(
        client(gateway).chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "hi"}], stream=True
        )
    )
    assert chunks and all(c.usage is None for c in chunks)
    assert all(c.choices for c in chunks)


def test_demo_provider_answers_offline(gateway):
    res = client(gateway).chat.completions.create(
        model="demo/echo", messages=[{"role": "user", "content": "ping"}]
    )
    assert "ping" in res.choices[0].message.content


def test_models_list(gateway):
    ids = {m.id for m in client(gateway).models.list()}
    assert {"chat", "demo/echo"} <= ids


def test_empty_messages_is_bad_request(gateway):
    with pytest.raises(openai.BadRequestError) as e:
        client(gateway).chat.completions.create(model="chat", messages=[])
    assert e.value.status_code == 400
    assert e.value.body["param"] == "messages"


def test_unknown_role_is_bad_request_naming_the_field(gateway):
    with pytest.raises(openai.BadRequestError) as e:
        client(gateway).chat.completions.create(model="chat", messages=[{"role": "wizard", "content": "x"}])
    assert "messages" in e.value.body["param"]


def test_unknown_model_is_not_found(gateway):
    with pytest.raises(openai.NotFoundError) as e:
        client(gateway).chat.completions.create(model="gpt-nope", messages=[{"role": "user", "content": "x"}])
    assert e.value.body["code"] == "model_not_found"


def test_body_over_limit_is_413(gateway):
    with pytest.raises(openai.APIStatusError) as e:
        client(gateway).chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "x" * 100_000}]
        )
    assert e.value.status_code == 413


def test_upstream_429_is_rate_limit_error(gateway):
    with pytest.raises(openai.RateLimitError):
        client(gateway).chat.completions.create(model="up/error-429", messages=[{"role": "user", "content": "x"}])


def test_upstream_500_is_502_with_upstream_message(gateway):
    with pytest.raises(openai.InternalServerError) as e:
        client(gateway).chat.completions.create(model="up/error-500", messages=[{"role": "user", "content": "x"}])
    assert e.value.status_code == 502
    assert "upstream exploded" in e.value.message


def test_upstream_timeout_is_504(gateway):
    with pytest.raises(openai.InternalServerError) as e:
        client(gateway).chat.completions.create(model="up/hang", messages=[{"role": "user", "content": "x"}])
    assert e.value.status_code == 504


def test_no_live_worker_is_503(gateway):
    if gateway.mode != "nats":
        pytest.skip("serve runs a worker for every provider")
    with pytest.raises(openai.InternalServerError) as e:
        client(gateway).chat.completions.create(model="ghost/gpt-4o", messages=[{"role": "user", "content": "x"}])
    assert e.value.status_code == 503
    assert "ghost" in e.value.message
