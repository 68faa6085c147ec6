"""The OpenAI Responses API (`client.responses`) through the official SDK,
translated for an Anthropic-format and a Gemini-format upstream: the
providers' own doubles (`upstream-double --wire anthropic|gemini`, which
speak the Messages API and generateContent wire formats as the providers'
Rust tests see them) behind `switchyard serve`.

Plain text, a stream (every event named, sequence numbers in order, the
text assembled, usage), a function-calling round trip through
`function_call_output` (plain and streamed), and a `json_schema` format
(Anthropic: the forced-tool fallback; Gemini: `responseJsonSchema`) whose
answer parses as JSON of the schema. What reached the upstream is checked
in the double's `/_double/stats`."""

import json
import urllib.request

import pytest
from conftest import DOUBLE, SWITCHYARD, Proc
from openai import OpenAI

# The double's text answer, and its usage (12 prompt + 9 output tokens).
ANSWER = "Hello there, friend! How can I help?"

UPSTREAM_MODEL = {"anthropic": "claude-sonnet-4-5", "gemini": "gemini-2.5-flash"}

WEATHER = {
    "type": "function",
    "name": "weather",
    "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


class Upstream:
    def __init__(self, wire, double_url, base_url):
        self.wire = wire
        self.double_url = double_url
        self.base_url = base_url

    def client(self):
        return OpenAI(base_url=self.base_url, api_key="sk-client", max_retries=0, timeout=30)

    def stats(self):
        root = self.double_url.rsplit("/", 1)[0]
        with urllib.request.urlopen(root + "/_double/stats", timeout=10) as r:
            return json.load(r)

    def last_body(self):
        return self.stats()["last_body"]


@pytest.fixture(scope="module", params=["anthropic", "gemini"])
def upstream(request, tmp_path_factory):
    wire = request.param
    double = Proc([DOUBLE, "--wire", wire], "listening on", stream="stdout")
    double_url = double.ready_line.strip().split("listening on ", 1)[1]
    cfg = tmp_path_factory.mktemp(f"responses-{wire}") / "switchyard.yaml"
    cfg.write_text(
        f"""
server:
  http_addr: 127.0.0.1:0
  grpc_addr: 127.0.0.1:0
providers:
  - name: up
    kind: {wire}
    base_url: {double_url}
    api_key: dummy-{wire}-key
    timeout: 5s
models:
  - name: chat
    routes:
      - {{ provider: up, model: {UPSTREAM_MODEL[wire]} }}
"""
    )
    try:
        gateway = Proc([SWITCHYARD, "serve", "--config", str(cfg)], "router listening")
    except Exception:
        double.stop()
        raise
    yield Upstream(wire, double_url, f"http://{gateway.field('http_addr')}/v1")
    gateway.stop()
    double.stop()


def test_plain(upstream):
    raw = upstream.client().responses.with_raw_response.create(
        model="chat", input="hello there", instructions="be nice", max_output_tokens=64
    )
    r = raw.parse()
    assert raw.headers["x-switchyard-provider"] == "up"
    assert r.object == "response"
    assert r.status == "completed"
    assert r.output_text == ANSWER
    assert (r.usage.input_tokens, r.usage.output_tokens, r.usage.total_tokens) == (12, 9, 21)
    assert r.instructions == "be nice"
    sent = upstream.stats()
    body = sent["last_body"]
    if upstream.wire == "anthropic":
        assert body["model"] == "claude-sonnet-4-5"
        assert body["system"] == "be nice"
        assert body["max_tokens"] == 64
        assert body["messages"] == [{"role": "user", "content": "hello there"}]
        assert "stream" not in body or body["stream"] is False
    else:
        assert sent["last_path"] == "/v1beta/models/gemini-2.5-flash:generateContent"
        assert body["systemInstruction"]["parts"] == [{"text": "be nice"}]
        assert body["generationConfig"]["maxOutputTokens"] == 64
        assert body["contents"] == [{"role": "user", "parts": [{"text": "hello there"}]}]


def test_streamed(upstream):
    with upstream.client().responses.stream(model="chat", input="stream please") as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    for kind in ["response.output_item.added", "response.content_part.added", "response.output_text.done"]:
        assert kind in kinds
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert len(deltas) > 1
    assert "".join(deltas) == ANSWER
    assert final.output_text == ANSWER
    assert final.status == "completed"
    assert (final.usage.input_tokens, final.usage.output_tokens, final.usage.total_tokens) == (12, 9, 21)
    sent = upstream.stats()
    if upstream.wire == "anthropic":
        assert sent["last_body"]["stream"] is True
    else:
        assert sent["last_path"] == "/v1beta/models/gemini-2.5-flash:streamGenerateContent"


def respond(client, stream, **kwargs):
    if stream:
        with client.responses.stream(**kwargs) as s:
            return s.get_final_response()
    return client.responses.create(**kwargs)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_function_call_round_trip(upstream, stream):
    c = upstream.client()
    ask = [{"role": "user", "content": "weather in Paris?"}]
    first = respond(c, stream, model="chat", input=ask, tools=[WEATHER])
    calls = [o for o in first.output if o.type == "function_call"]
    assert len(calls) == 1, first.output
    assert calls[0].name == "weather"
    assert json.loads(calls[0].arguments) == {"city": "Paris"}
    assert calls[0].call_id
    if upstream.wire == "anthropic":
        # Anthropic's own tool_use id is the call id.
        assert calls[0].call_id == "toolu_01A"
        assert upstream.last_body()["tools"][0]["name"] == "weather"
    else:
        decls = upstream.last_body()["tools"][0]["functionDeclarations"]
        assert [d["name"] for d in decls] == ["weather"]

    follow = (
        ask
        + [o.model_dump(exclude_none=True) for o in first.output]
        + [{"type": "function_call_output", "call_id": calls[0].call_id, "output": "sunny, 21C"}]
    )
    second = respond(c, stream, model="chat", input=follow, tools=[WEATHER])
    assert second.output_text == "tool said: sunny, 21C"
    assert second.status == "completed"
    # The call and its result reached the upstream in its own format.
    body = upstream.last_body()
    if upstream.wire == "anthropic":
        assistant, result = body["messages"][-2:]
        assert assistant["role"] == "assistant"
        assert [b["type"] for b in assistant["content"]] == ["tool_use"]
        assert assistant["content"][0]["id"] == calls[0].call_id
        assert assistant["content"][0]["input"] == {"city": "Paris"}
        assert result["role"] == "user"
        block = result["content"][-1]
        assert block["type"] == "tool_result"
        assert block["tool_use_id"] == calls[0].call_id
    else:
        model_turn, result = body["contents"][-2:]
        assert model_turn["role"] == "model"
        assert model_turn["parts"][0]["functionCall"] == {"name": "weather", "args": {"city": "Paris"}}
        response = result["parts"][-1]["functionResponse"]
        assert response["name"] == "weather"
        assert response["response"] == {"content": "sunny, 21C"}


SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "temp_c": {"type": "integer"}},
    "required": ["city", "temp_c"],
    "additionalProperties": False,
}


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_json_schema_format(upstream, stream):
    fmt = {"type": "json_schema", "name": "forecast", "schema": SCHEMA, "strict": True}
    r = respond(upstream.client(), stream, model="chat", input="forecast for Paris", text={"format": fmt})
    assert r.status == "completed"
    assert r.text.format.type == "json_schema"
    assert r.text.format.name == "forecast"
    # The double answers JSON of the schema it was sent (strings are its
    # usual answer text, integers 21): the answer is that JSON, as text.
    assert json.loads(r.output_text) == {"city": ANSWER, "temp_c": 21}
    assert [o.type for o in r.output] == ["message"]
    body = upstream.last_body()
    if upstream.wire == "anthropic":
        # No native structured output: a tool of the schema, forced.
        assert body["tool_choice"] == {"type": "tool", "name": "forecast"}
        [tool] = body["tools"]
        assert tool["name"] == "forecast"
        assert tool["input_schema"]["properties"] == SCHEMA["properties"]
    else:
        config = body["generationConfig"]
        assert config["responseMimeType"] == "application/json"
        assert config["responseJsonSchema"]["properties"] == SCHEMA["properties"]
