"""The official Anthropic Python SDK against Switchyard's Anthropic-compatible
`POST /v1/messages`, with non-Anthropic providers behind it (the OpenAI
wire-format double, the demo provider): in-process (`serve`) and scaled out
(router + workers over NATS)."""

import json
import urllib.request

import anthropic
import pytest
from anthropic import Anthropic

TOOLS = [
    {
        "name": "get_weather",
        "description": "Weather for a city",
        "input_schema": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    }
]


def client(gw):
    # The SDK appends /v1/messages to the base URL itself. Retries off: the
    # tests want to see each answer.
    return Anthropic(base_url=gw.base_url.removesuffix("/v1"), api_key="sk-client", max_retries=0, timeout=30)


def upstream_last_body(double):
    """The last chat request the OpenAI double received, as it received it."""
    with urllib.request.urlopen(double.removesuffix("/v1") + "/_double/stats", timeout=10) as r:
        return json.load(r)["last_body"]


def test_messages_plain(gateway, double):
    raw = client(gateway).messages.with_raw_response.create(
        model="chat",
        max_tokens=100,
        system="Be terse.",
        temperature=0.5,
        stop_sequences=["END"],
        metadata={"user_id": "user-7"},
        messages=[{"role": "user", "content": "hello there"}],
    )
    assert raw.headers["x-switchyard-provider"] == "up"
    assert raw.headers["x-switchyard-model"] == "gpt-test"
    assert raw.headers["x-request-id"]
    msg = raw.parse()
    assert msg.id.startswith("msg_")
    assert (msg.type, msg.role, msg.model) == ("message", "assistant", "chat")
    assert [b.type for b in msg.content] == ["text"]
    assert msg.content[0].text == "echo: hello there"
    assert msg.stop_reason == "end_turn"
    assert msg.usage.input_tokens > 0 and msg.usage.output_tokens > 0

    # What the OpenAI-format upstream received.
    body = upstream_last_body(double)
    assert body["model"] == "gpt-test"
    assert body["messages"] == [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "hello there"},
    ]
    assert body["max_tokens"] == 100
    assert body["temperature"] == 0.5
    assert body["stop"] == ["END"]
    assert body["user"] == "user-7"


def test_messages_streamed_text_and_final_message(gateway):
    with client(gateway).messages.stream(
        model="up/slow-100",
        max_tokens=100,
        messages=[{"role": "user", "content": "one two three four"}],
    ) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(pieces) == "echo: one two three four"
    # The double waits between chunks; they arrive as they come.
    assert len(pieces) >= 4
    assert [b.type for b in final.content] == ["text"]
    assert final.content[0].text == "echo: one two three four"
    assert final.stop_reason == "end_turn"
    assert final.usage.input_tokens > 0 and final.usage.output_tokens > 0


def test_stream_event_sequence(gateway):
    events = list(
        client(gateway).messages.create(
            model="chat", max_tokens=100, stream=True, messages=[{"role": "user", "content": "hi you"}]
        )
    )
    types = [e.type for e in events]
    assert types[0] == "message_start"
    assert types[1] == "content_block_start"
    assert set(types[2:-3]) == {"content_block_delta"}
    assert types[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert events[-2].delta.stop_reason == "end_turn"
    assert events[-2].usage.output_tokens > 0


def test_tool_use_round_trip(gateway, double):
    c = client(gateway)
    # The demo provider calls a declared tool on `demo:call <name>`.
    ask = [{"role": "user", "content": "demo:call get_weather"}]
    first = c.messages.create(model="demo/echo", max_tokens=100, tools=TOOLS, messages=ask)
    assert first.stop_reason == "tool_use"
    [call] = [b for b in first.content if b.type == "tool_use"]
    assert call.name == "get_weather"
    assert call.input == {}
    assert call.id

    with c.messages.stream(model="demo/echo", max_tokens=100, tools=TOOLS, messages=ask) as stream:
        streamed = stream.get_final_message()
    assert streamed.stop_reason == "tool_use"
    [scall] = [b for b in streamed.content if b.type == "tool_use"]
    assert (scall.name, scall.input) == ("get_weather", {})

    # The result goes back, to an OpenAI-format upstream this time.
    second = c.messages.create(
        model="chat",
        max_tokens=100,
        tools=TOOLS,
        tool_choice={"type": "auto", "disable_parallel_tool_use": True},
        messages=[
            *ask,
            {"role": "assistant", "content": [{"type": "tool_use", "id": call.id, "name": call.name, "input": call.input}]},
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": call.id, "content": "18C and sunny"},
                    {"type": "text", "text": "thanks"},
                ],
            },
        ],
    )
    assert second.content[0].text == "echo: thanks"
    body = upstream_last_body(double)
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather for a city",
                "parameters": TOOLS[0]["input_schema"],
            },
        }
    ]
    assert body["tool_choice"] == "auto"
    assert body["parallel_tool_calls"] is False
    assert body["messages"][1]["role"] == "assistant"
    assert body["messages"][1]["tool_calls"] == [
        {"id": call.id, "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
    ]
    assert body["messages"][2] == {"role": "tool", "tool_call_id": call.id, "content": "18C and sunny"}
    assert body["messages"][3] == {"role": "user", "content": [{"type": "text", "text": "thanks"}]}


def test_beta_endpoint_and_headers_are_accepted(gateway):
    msg = client(gateway).beta.messages.create(
        model="chat",
        max_tokens=20,
        betas=["token-efficient-tools-2025-02-19"],
        messages=[{"role": "user", "content": "beta"}],
    )
    assert msg.content[0].text == "echo: beta"


def test_unknown_model_is_not_found(gateway):
    with pytest.raises(anthropic.NotFoundError) as e:
        client(gateway).messages.create(
            model="claude-nope", max_tokens=10, messages=[{"role": "user", "content": "x"}]
        )
    assert e.value.status_code == 404
    assert e.value.body["type"] == "error"
    assert e.value.body["error"]["type"] == "not_found_error"
    assert "claude-nope" in e.value.body["error"]["message"]


def test_invalid_request_is_bad_request(gateway):
    with pytest.raises(anthropic.BadRequestError) as e:
        client(gateway).messages.create(
            model="chat", max_tokens=10, temperature=1.5, messages=[{"role": "user", "content": "x"}]
        )
    assert e.value.body["error"]["type"] == "invalid_request_error"
    assert "temperature" in e.value.body["error"]["message"]


def test_upstream_429_is_rate_limit_error(gateway):
    with pytest.raises(anthropic.RateLimitError) as e:
        client(gateway).messages.create(
            model="up/error-429", max_tokens=10, messages=[{"role": "user", "content": "x"}]
        )
    assert e.value.body["error"]["type"] == "rate_limit_error"
    assert e.value.response.headers["retry-after"] == "2"


def test_failure_mid_stream_is_an_error_event(gateway):
    # The double sends two chunks, then breaks the connection.
    with pytest.raises(anthropic.APIStatusError) as e:
        with client(gateway).messages.stream(
            model="up/cut", max_tokens=10, messages=[{"role": "user", "content": "a b c d e f"}]
        ) as stream:
            for _ in stream.text_stream:
                pass
    assert e.value.body["error"]["type"] == "api_error"


def test_a_claude_code_request_reaches_an_openai_format_upstream(gateway, double):
    """What Claude Code 2.x sends (`?beta=true`, betas, extended thinking with
    a 31,999-token budget under max_tokens 32,000, context_management,
    cache_control blocks, a tool with an extra field), streamed, to a model
    served by an OpenAI-format upstream: answered, and none of the
    Anthropic-only fields reaches that upstream."""
    tools = [{**TOOLS[0], "cache_control": {"type": "ephemeral"}, "defer_loading": True}]
    with client(gateway).beta.messages.stream(
        model="chat",
        max_tokens=32000,
        betas=["interleaved-thinking-2025-05-14", "context-management-2025-06-27"],
        thinking={"type": "enabled", "budget_tokens": 31999},
        system=[{"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}],
        tools=tools,
        messages=[
            {"role": "user", "content": [{"type": "text", "text": "hello code", "cache_control": {"type": "ephemeral"}}]}
        ],
        extra_body={"context_management": {"edits": [{"type": "clear_tool_uses_20250919"}]}},
    ) as stream:
        message = stream.get_final_message()
    assert message.content[-1].text == "echo: hello code"
    body = upstream_last_body(double)
    for field in ("thinking", "context_management", "betas", "cache_control"):
        assert field not in body, body
    assert body["tools"][0]["function"]["name"] == "get_weather"
    assert "defer_loading" not in json.dumps(body["tools"])
    assert "cache_control" not in json.dumps(body["messages"])
