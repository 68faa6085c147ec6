"""The OpenAI Responses API (`client.responses`) through the official SDK,
in both gateway shapes, against the OpenAI-format upstream double: plain,
streamed, a function-calling round trip (`function_call_output`), a
json_schema format, and the 400s for what a stateless gateway cannot do."""

import openai
import pytest
from openai import OpenAI

WEATHER = {
    "type": "function",
    "name": "weather",
    "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def client(gateway):
    return OpenAI(base_url=gateway.base_url, api_key="sk-client", max_retries=0, timeout=30)


def test_plain(gateway):
    raw = client(gateway).responses.with_raw_response.create(
        model="chat", input="hello there", instructions="be nice", max_output_tokens=64
    )
    r = raw.parse()
    assert r.object == "response"
    assert r.id.startswith("resp_")
    assert r.status == "completed"
    assert r.output_text == "echo: hello there"
    assert r.usage.input_tokens > 0 and r.usage.output_tokens > 0
    assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens
    assert r.instructions == "be nice"
    assert raw.headers["x-switchyard-provider"] == "up"


def test_streamed(gateway):
    with client(gateway).responses.stream(model="chat", input="stream these words please") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert len(deltas) > 1
    assert "".join(deltas) == "echo: stream these words please"
    assert final.output_text == "echo: stream these words please"
    assert final.status == "completed"
    assert final.usage.output_tokens > 0


def test_raw_stream_names_each_event(gateway):
    events = list(client(gateway).responses.create(model="chat", input="one two", stream=True))
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    assert "response.output_item.added" in kinds and "response.output_item.done" in kinds
    assert [e.sequence_number for e in events] == list(range(len(events)))


@pytest.mark.parametrize("stream", [False, True])
def test_function_call_round_trip(gateway, stream):
    c = client(gateway)
    ask = [{"role": "user", "content": "weather in Paris?"}]
    if stream:
        with c.responses.stream(model="up/tool-call", input=ask, tools=[WEATHER]) as s:
            first = s.get_final_response()
    else:
        first = c.responses.create(model="up/tool-call", input=ask, tools=[WEATHER])
    calls = [o for o in first.output if o.type == "function_call"]
    assert len(calls) == 1
    assert calls[0].name == "weather"
    assert calls[0].arguments == '{"city": "Paris"}'
    follow = ask + [o.model_dump(exclude_none=True) for o in first.output] + [
        {"type": "function_call_output", "call_id": calls[0].call_id, "output": "sunny, 21C"}
    ]
    second = c.responses.create(model="up/tool-call", input=follow, tools=[WEATHER])
    assert second.output_text == "tool said: sunny, 21C"


def test_json_schema_format_is_accepted_and_echoed(gateway):
    fmt = {
        "type": "json_schema",
        "name": "answer",
        "schema": {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"], "additionalProperties": False},
        "strict": True,
    }
    r = client(gateway).responses.create(model="chat", input="json please", text={"format": fmt}, store=False)
    assert r.status == "completed"
    assert r.text.format.type == "json_schema"
    assert r.text.format.name == "answer"


@pytest.mark.parametrize(
    "kwargs,param",
    [
        ({"previous_response_id": "resp_123"}, "previous_response_id"),
        ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
    ],
)
def test_what_a_stateless_gateway_refuses(gateway, kwargs, param):
    with pytest.raises(openai.BadRequestError) as e:
        client(gateway).responses.create(model="chat", input="x", **kwargs)
    assert e.value.body["param"] == param
