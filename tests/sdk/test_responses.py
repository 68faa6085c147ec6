"""The OpenAI Responses API (`client.responses`) through the official SDK,
in both gateway shapes, against the OpenAI-format upstream double: plain,
streamed, a function-calling round trip (`function_call_output`), a
json_schema format, and the 400s for what a stateless gateway cannot do.

With `responses.store: auto` (a SQLite file under `serve`, a JetStream
key-value bucket for router + workers over NATS): `previous_response_id`
continuing a conversation (what reached the upstream checked in the
double's `/_double/stats`), `client.responses.retrieve` / `delete`, and
the 404s for ids that are unknown, deleted, or another caller's."""

import json
import urllib.request

import openai
import pytest
from conftest import SWITCHYARD, Proc, config_text
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


def test_a_stateless_gateway_stores_nothing(gateway):
    c = client(gateway)
    r = c.responses.create(model="chat", input="x")
    # OpenAI's default is to store; this gateway says it did not.
    assert r.store is False
    with pytest.raises(openai.BadRequestError) as e:
        c.responses.retrieve(r.id)
    assert "responses.store" in e.value.body["message"]


@pytest.fixture(scope="module", params=["serve", "nats"])
def stored(request, double, tmp_path_factory):
    """A gateway that keeps responses: `store: auto` picks the local file
    under `serve` and the JetStream bucket for a router over NATS."""
    mode = request.param
    cfg = tmp_path_factory.mktemp(f"stored-{mode}") / "switchyard.yaml"
    procs = []
    if mode == "serve":
        cfg.write_text(config_text(double) + "responses:\n  store: auto\n  ttl: 1h\n")
        router = Proc([SWITCHYARD, "serve", "--config", str(cfg)], "router listening")
    else:
        nats = request.getfixturevalue("nats_url")
        cfg.write_text(config_text(double, nats) + "responses:\n  store: auto\n  ttl: 1h\n")
        for provider in ["demo", "up"]:
            procs.append(
                Proc([SWITCHYARD, "worker", "--config", str(cfg), "--provider", provider], "worker serving")
            )
        router = Proc([SWITCHYARD, "router", "--config", str(cfg)], "router listening")
    procs.append(router)
    yield type("Stored", (), {"mode": mode, "base_url": f"http://{router.field('http_addr')}/v1"})
    for p in reversed(procs):
        p.stop()


def upstream_messages(double):
    with urllib.request.urlopen(double.removesuffix("/v1") + "/_double/stats", timeout=10) as r:
        body = json.load(r)["last_body"]
    return [(m["role"], m.get("content")) for m in body["messages"]]


def text_of(content):
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content)


@pytest.mark.parametrize("stream", [False, True])
def test_previous_response_id_continues_the_conversation(stored, double, stream):
    c = client(stored)
    first = c.responses.create(model="chat", input="my name is Ada", instructions="be brief")
    assert first.store is True
    assert first.output_text == "echo: my name is Ada"
    if stream:
        with c.responses.stream(model="chat", input="what is my name?", previous_response_id=first.id) as s:
            second = s.get_final_response()
    else:
        second = c.responses.create(model="chat", input="what is my name?", previous_response_id=first.id)
    assert second.previous_response_id == first.id
    assert second.id != first.id
    # The earlier turn went upstream before the new input; its
    # instructions did not (they are not inherited).
    sent = [(role, text_of(content)) for role, content in upstream_messages(double)]
    assert sent == [
        ("user", "my name is Ada"),
        ("assistant", "echo: my name is Ada"),
        ("user", "what is my name?"),
    ]
    third = c.responses.create(
        model="chat", input="and again?", previous_response_id=second.id, instructions="be kind"
    )
    sent = [(role, text_of(content)) for role, content in upstream_messages(double)]
    assert sent == [
        ("system", "be kind"),
        ("user", "my name is Ada"),
        ("assistant", "echo: my name is Ada"),
        ("user", "what is my name?"),
        ("assistant", "echo: what is my name?"),
        ("user", "and again?"),
    ]
    assert third.output_text == "echo: and again?"


def test_a_function_call_continues_by_id(stored):
    c = client(stored)
    first = c.responses.create(
        model="up/tool-call", input=[{"role": "user", "content": "weather in Paris?"}], tools=[WEATHER]
    )
    call = next(o for o in first.output if o.type == "function_call")
    second = c.responses.create(
        model="up/tool-call",
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 21C"}],
        tools=[WEATHER],
    )
    assert second.output_text == "tool said: sunny, 21C"


@pytest.mark.parametrize("stream", [False, True])
def test_retrieve_and_delete(stored, stream):
    c = client(stored)
    if stream:
        with c.responses.stream(model="chat", input="keep me") as s:
            r = s.get_final_response()
    else:
        r = c.responses.create(model="chat", input="keep me")
    got = c.responses.retrieve(r.id)
    assert got.id == r.id
    assert got.object == "response"
    assert got.output_text == "echo: keep me"
    assert got.store is True
    raw = c.responses.with_raw_response.delete(r.id)
    assert raw.http_response.json() == {"id": r.id, "object": "response", "deleted": True}
    with pytest.raises(openai.NotFoundError) as e:
        c.responses.retrieve(r.id)
    assert e.value.body["message"] == f"Response with id '{r.id}' not found."
    with pytest.raises(openai.NotFoundError):
        c.responses.delete(r.id)
    with pytest.raises(openai.NotFoundError):
        c.responses.create(model="chat", input="x", previous_response_id=r.id)


def test_unknown_previous_response_id_is_404(stored):
    with pytest.raises(openai.NotFoundError) as e:
        client(stored).responses.create(model="chat", input="x", previous_response_id="resp_nope")
    assert e.value.body["param"] == "previous_response_id"
    assert e.value.body["type"] == "invalid_request_error"
    assert e.value.body["message"] == "Previous response with id 'resp_nope' not found."


def test_store_false_is_not_kept(stored):
    c = client(stored)
    r = c.responses.create(model="chat", input="forget me", store=False)
    assert r.store is False
    with pytest.raises(openai.NotFoundError):
        c.responses.retrieve(r.id)


def test_another_caller_cannot_see_or_continue_it(stored):
    r = client(stored).responses.create(model="chat", input="mine")
    other = OpenAI(base_url=stored.base_url, api_key="sk-someone-else", max_retries=0, timeout=30)
    with pytest.raises(openai.NotFoundError):
        other.responses.retrieve(r.id)
    with pytest.raises(openai.NotFoundError):
        other.responses.create(model="chat", input="x", previous_response_id=r.id)
    with pytest.raises(openai.NotFoundError):
        other.responses.delete(r.id)
    assert client(stored).responses.retrieve(r.id).id == r.id


@pytest.fixture(scope="module", params=["serve", "nats"])
def native(request, double, tmp_path_factory):
    """A gateway with a `responses: native` provider of the same upstream
    double (its `POST /v1/responses`)."""
    mode = request.param
    cfg = tmp_path_factory.mktemp(f"native-{mode}") / "switchyard.yaml"
    provider = f"  - name: native\n    kind: openai\n    base_url: {double}\n    responses: native\n"
    nats = request.getfixturevalue("nats_url") if mode == "nats" else None
    cfg.write_text(config_text(double, nats).replace("providers:\n", "providers:\n" + provider, 1))
    procs = []
    if mode == "serve":
        router = Proc([SWITCHYARD, "serve", "--config", str(cfg)], "router listening")
    else:
        for name in ["native", "up"]:
            procs.append(Proc([SWITCHYARD, "worker", "--config", str(cfg), "--provider", name], "worker serving"))
        router = Proc([SWITCHYARD, "router", "--config", str(cfg)], "router listening")
    procs.append(router)
    yield type("Native", (), {"mode": mode, "base_url": f"http://{router.field('http_addr')}/v1"})
    for p in reversed(procs):
        p.stop()


def upstream_body(double):
    with urllib.request.urlopen(double.removesuffix("/v1") + "/_double/stats", timeout=10) as r:
        return json.load(r)["last_body"]


@pytest.mark.parametrize("stream", [False, True])
def test_native_pass_through_keeps_built_in_tools_and_unknown_items(native, double, stream):
    c = client(native)
    kwargs = dict(
        model="native/gpt-test",
        input="find switchyard",
        tools=[{"type": "web_search"}],
        include=["web_search_call.action.sources"],
        truncation="auto",
    )
    if stream:
        with c.responses.stream(**kwargs) as s:
            kinds = [e.type for e in s]
            r = s.get_final_response()
        assert kinds[0] == "response.created"
        assert "response.web_search_call.searching" in kinds
        assert kinds[-1] == "response.completed"
    else:
        r = c.responses.create(**kwargs)
    sent = upstream_body(double)
    assert sent["tools"] == [{"type": "web_search"}]
    assert sent["include"] == ["web_search_call.action.sources"]
    assert sent["model"] == "gpt-test"
    assert r.id.startswith("resp_double")
    assert r.output[0].type == "web_search_call"
    assert r.output_text == "echo: find switchyard"
    assert r.usage.input_tokens == 2


@pytest.mark.parametrize("stream", [False, True])
def test_native_function_call(native, stream):
    c = client(native)
    kwargs = dict(model="native/tool-call", input="weather?", tools=[WEATHER])
    if stream:
        with c.responses.stream(**kwargs) as s:
            r = s.get_final_response()
    else:
        r = c.responses.create(**kwargs)
    call = r.output[0]
    assert call.type == "function_call"
    assert call.name == "weather"
    assert json.loads(call.arguments) == {"city": "Paris"}
