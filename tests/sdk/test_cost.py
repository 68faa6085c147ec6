"""Cost through the official OpenAI SDK: `usage.cost` (OpenRouter's field)
in plain answers and in the usage chunk of a stream, matching the exact
`x-switchyard-cost-usd` header, with prices set in the config."""

from decimal import Decimal

import pytest
from openai import OpenAI

from conftest import SWITCHYARD, Proc, config_text

# $2 per million input tokens, $8 per million output tokens.
PRICES = """
pricing:
  models:
    - { provider: openai, model: gpt-test, input: 2, output: 8 }
"""


@pytest.fixture(scope="module")
def priced_gateway(double, tmp_path_factory):
    cfg = tmp_path_factory.mktemp("cost") / "switchyard.yaml"
    cfg.write_text(config_text(double) + PRICES)
    router = Proc([SWITCHYARD, "serve", "--config", str(cfg)], "router listening")
    yield f"http://{router.field('http_addr')}/v1"
    router.stop()


def worked(usage):
    return (Decimal(usage.prompt_tokens) * 2 + Decimal(usage.completion_tokens) * 8) / Decimal(1_000_000)


def test_plain_answer_reports_its_cost(priced_gateway):
    client = OpenAI(base_url=priced_gateway, api_key="sk-client", max_retries=0, timeout=30)
    raw = client.chat.completions.with_raw_response.create(
        model="chat", messages=[{"role": "user", "content": "what does this cost"}]
    )
    completion = raw.parse()
    expected = worked(completion.usage)
    assert expected > 0
    assert Decimal(raw.headers["x-switchyard-cost-usd"]) == expected
    assert completion.usage.model_extra["cost"] == pytest.approx(float(expected), rel=1e-12)


def test_stream_usage_chunk_carries_the_cost(priced_gateway):
    client = OpenAI(base_url=priced_gateway, api_key="sk-client", max_retries=0, timeout=30)
    chunks = list(
        client.chat.completions.create(
            model="chat",
            messages=[{"role": "user", "content": "and this one streamed"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    usage = chunks[-1].usage
    assert chunks[-1].choices == []
    assert usage.model_extra["cost"] == pytest.approx(float(worked(usage)), rel=1e-12)
    assert "cost_estimated" not in usage.model_extra
