"""The official OpenAI Python SDK's embeddings and images calls against
Switchyard, unchanged: in-process (`serve`) and scaled out (router +
workers over NATS). Models are addressed as `provider/model`, so the
shared config in conftest.py needs no embedding models of its own."""

import base64
import struct

import openai
import pytest
from openai import OpenAI


def client(gw):
    # The SDK retries 429/5xx by default; the tests want to see each answer.
    return OpenAI(base_url=gw.base_url, api_key="sk-client", max_retries=0, timeout=30)


def double_vector(text, position, dims=3):
    """The upstream double's vector for an input (tests/support/double.rs)."""
    v = [0.5] * dims
    v[0] = float(len(text))
    v[1] = float(position)
    return v


def test_embeddings_list_input_keeps_order(gateway):
    inputs = ["alpha", "be", "gamma ray"]
    raw = client(gateway).embeddings.with_raw_response.create(
        model="up/text-embedding-3-small", input=inputs, encoding_format="float"
    )
    assert raw.headers["x-switchyard-provider"] == "up"
    assert raw.headers["x-switchyard-model"] == "text-embedding-3-small"
    res = raw.parse()
    assert [d.index for d in res.data] == [0, 1, 2]
    for i, (d, text) in enumerate(zip(res.data, inputs)):
        assert d.embedding == pytest.approx(double_vector(text, i))
    assert res.usage.prompt_tokens == 4
    assert res.usage.total_tokens == 4


def test_embeddings_sdk_default_is_base64(gateway):
    # Without encoding_format the SDK asks for base64 and decodes it itself
    # (numpy when installed, struct otherwise): the gateway must encode.
    res = client(gateway).embeddings.create(model="up/text-embedding-3-small", input="hello there", dimensions=5)
    assert list(res.data[0].embedding) == pytest.approx(double_vector("hello there", 0, 5))


def test_embeddings_explicit_base64_is_little_endian_f32(gateway):
    raw = client(gateway).embeddings.with_raw_response.create(
        model="up/text-embedding-3-small", input=["abc"], encoding_format="base64"
    )
    body = raw.http_response.json()
    b64 = body["data"][0]["embedding"]
    assert isinstance(b64, str)
    data = base64.b64decode(b64)
    assert list(struct.unpack(f"<{len(data) // 4}f", data)) == pytest.approx(double_vector("abc", 0))


def test_embeddings_demo_provider(gateway):
    res = client(gateway).embeddings.create(model="demo/echo", input=["the cat", "The Cat"], encoding_format="float")
    assert len(res.data) == 2
    assert len(res.data[0].embedding) == 8
    assert res.data[0].embedding == res.data[1].embedding


def test_embeddings_bad_request_is_an_sdk_error(gateway):
    with pytest.raises(openai.BadRequestError) as e:
        client(gateway).embeddings.create(model="up/text-embedding-3-small", input=[])
    assert e.value.body["param"] == "input"


def test_images_url_and_b64(gateway):
    c = client(gateway)
    res = c.images.generate(model="up/dall-e-3", prompt="a lighthouse at dusk", n=2, size="1024x1024")
    assert [d.url for d in res.data] == ["https://images.example/0.png", "https://images.example/1.png"]
    assert res.data[0].revised_prompt == "a lighthouse at dusk"

    res = c.images.generate(model="up/dall-e-3", prompt="a lighthouse", response_format="b64_json")
    assert base64.b64decode(res.data[0].b64_json) == b"double-image"
    assert res.data[0].url is None

    res = c.images.generate(model="up/gpt-image-1", prompt="a lighthouse")
    assert res.data[0].b64_json
    assert res.usage.input_tokens == 50
    assert res.usage.output_tokens == 4160
