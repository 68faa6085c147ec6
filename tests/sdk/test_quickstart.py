"""The README's first command: `switchyard serve` with no config and no
NATS answers through the demo provider."""

import os

from openai import OpenAI

from conftest import SWITCHYARD, Proc


def test_serve_without_config_answers_with_demo_provider():
    env = {
        "SWITCHYARD_HTTP_ADDR": "127.0.0.1:0",
        "SWITCHYARD_GRPC_ADDR": "127.0.0.1:0",
        "SWITCHYARD_CONFIG": None,
        "SWITCHYARD_NATS_URL": None,
    }
    # Provider keys from the developer's shell must not leak into this test.
    for k in list(os.environ):
        if k.endswith("_API_KEY"):
            env[k] = None
    p = Proc([SWITCHYARD, "serve"], "router listening", env=env)
    try:
        c = OpenAI(base_url=f"http://{p.field('http_addr')}/v1", api_key="anything", max_retries=0)
        assert "demo" in {m.id for m in c.models.list()}
        res = c.chat.completions.create(model="demo", messages=[{"role": "user", "content": "hello"}])
        assert "hello" in res.choices[0].message.content
        streamed = "".join(
            ch.choices[0].delta.content or ""
            for ch in c.chat.completions.create(
                model="demo", messages=[{"role": "user", "content": "hello"}], stream=True
            )
            if ch.choices
        )
        assert streamed == res.choices[0].message.content
    finally:
        p.stop()
