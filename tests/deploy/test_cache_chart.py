"""The response cache in the chart.

Rendered: `config.cache` passed through to the config file (off by
default), the Redis URL from a Secret reaching the routers only (the config
refers to it; other pods load a stand-in), the schema and template checks,
and `switchyard check` on what the pods would read.
Run: two routers from the chart (their exact command and environment) and
the demo worker on a local nats-server, sharing the local Redis through the
Secret's URL: an answer one router stored is a hit on the other.
"""

import base64
import socket
import subprocess
import uuid

import helm_python
import pytest
import yaml

from chart_helpers import SWITCHYARD, Proc, by_kind, config_file, free_port, objects, render, resolve_env, secret_data
from test_ledger import component, container, env_names, interpolate
from test_wiring import IMAGE_BINARY, clean_env, post, start_nats

ENV = "SWITCHYARD_CACHE_REDIS_URL"
STANDIN = "redis://not-given-to-this-pod:6379"

CACHE = {
    "enabled": True,
    "ttl": "30m",
    "max_memory_bytes": 67108864,
    "semantic": {"enabled": True, "embedding_model": "demo/embed", "threshold": 0.97, "max_entries": 5000},
}


def rendered_config(objs, role="router"):
    return yaml.safe_load(config_file(objs, component(objs, role)[0])[1])


def check(tmp_path, text, env=None):
    """`switchyard check` on a config as a pod with `env` reads it (the
    binary resolves the ${VAR} references itself)."""
    cfg = tmp_path / f"check-{uuid.uuid4().hex}.yaml"
    cfg.write_text(text)
    r = subprocess.run([SWITCHYARD, "check", "--config", str(cfg)], capture_output=True, text=True, timeout=60,
                       env={"PATH": "/usr/bin:/bin", **(env or {})})
    assert r.returncode == 0, r.stdout + r.stderr
    assert "OK" in r.stdout


def test_cache_is_off_by_default():
    objs = objects(render({}))
    assert "cache" not in rendered_config(objs)
    for d in by_kind(objs, "Deployment"):
        assert ENV not in env_names(d), d["metadata"]["name"]
    assert not [s for s in by_kind(objs, "Secret") if s["metadata"]["name"].endswith("cache-redis")]


def test_config_cache_passes_through_and_checks(tmp_path):
    values = {
        "config": {
            "cache": CACHE,
            "models": [
                {"name": "demo", "routes": [{"provider": "demo", "model": "echo"}], "cache": {"ttl": "5m"}},
                {"name": "fresh", "routes": [{"provider": "demo", "model": "echo"}], "cache": {"enabled": False}},
            ],
        }
    }
    objs = objects(render(values))
    for role in ("router", "worker"):
        cfg = rendered_config(objs, role)
        assert cfg["cache"] == CACHE
        assert cfg["models"][0]["cache"] == {"ttl": "5m"}
    check(tmp_path, config_file(objs, component(objs, "router")[0])[1])


def test_redis_url_from_a_secret_reaches_routers_only(tmp_path):
    values = {
        "config": {"cache": {"enabled": True, "backend": "redis", "redis": {"timeout": "50ms"}}},
        "cache": {"redis": {"existingSecret": "cache-redis", "key": "uri"}},
    }
    objs = objects(render(values))
    [router] = component(objs, "router")
    ref = [e for e in container(router)["env"] if e["name"] == ENV]
    assert ref == [{"name": ENV, "valueFrom": {"secretKeyRef": {"name": "cache-redis", "key": "uri"}}}]
    workers = component(objs, "worker")
    assert workers
    for w in workers:
        assert ENV not in env_names(w)
    path, text = config_file(objs, router)
    cfg = yaml.safe_load(text)
    assert cfg["cache"]["redis"] == {"timeout": "50ms", "url": f"${{{ENV}:-{STANDIN}}}"}
    assert cfg["cache"]["backend"] == "redis"
    # As each pod reads it: the router with the URL, a worker with the stand-in.
    secret_url = "redis://:p4ss: #w0rd@redis-master:6379/2"
    assert yaml.safe_load(interpolate(text, {ENV: secret_url}))["cache"]["redis"]["url"] == secret_url
    assert yaml.safe_load(interpolate(text, {}))["cache"]["redis"]["url"] == STANDIN
    check(tmp_path, text, {ENV: secret_url})
    check(tmp_path, text, {})


def test_created_secret_holds_the_url():
    url = "redis://:pw@redis:6379/0"
    objs = objects(render({"config": {"cache": {"enabled": True, "backend": "redis"}},
                           "cache": {"redis": {"createSecret": True, "url": url}}}))
    [s] = [s for s in by_kind(objs, "Secret") if s["metadata"]["name"] == "sy-switchyard-cache-redis"]
    assert base64.b64decode(s["data"]["url"]).decode() == url
    [router] = component(objs, "router")
    assert resolve_env(container(router), secret_data(objs))[ENV] == url


@pytest.mark.parametrize(
    "bad",
    [
        {"config": {"cache": {"persist": True}}},  # pods keep no files
        {"config": {"cache": {"persist_path": "/data/cache.db"}}},
        {"config": {"cache": {"backend": "memcached"}}},
        {"config": {"cache": {"ttl": ""}}},
        {"config": {"cache": {"semantic": {"threshold": 1.5}}}},
        {"config": {"cache": {"semantic": {"enabled": True, "bogus": 1}}}},
        {"config": {"cache": {"redis": {"url": "http://redis:6379"}}}},
        {"config": {"models": [{"name": "m", "routes": [{"provider": "demo", "model": "x"}],
                                "cache": {"ttl": "1m", "semantic": True}}]}},
        {"cache": {"redis": {"createSecret": True, "url": 'redis://a"b'}}},
        {"cache": {"redis": {"existingSecret": "Not_A_Name"}}},
    ],
)
def test_schema_rejects(bad):
    with pytest.raises(helm_python.HelmValuesError):
        render(bad)


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"cache": {"redis": {"createSecret": True}}}, "cache.redis.createSecret needs cache.redis.url"),
        ({"cache": {"redis": {"url": "redis://r:6379"}}}, "only with cache.redis.createSecret"),
        ({"cache": {"redis": {"existingSecret": "r", "createSecret": True, "url": "redis://r:6379"}}},
         "are exclusive"),
        ({"cache": {"redis": {"existingSecret": "r"}},
          "config": {"cache": {"redis": {"url": "redis://r:6379"}}}}, "keep one"),
    ],
)
def test_template_checks(bad, message):
    with pytest.raises(helm_python.HelmError, match=message):
        render(bad)


def redis_up():
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=0.5).close()
        return True
    except OSError:
        return False


def test_routers_share_the_cache_through_the_secrets_redis(tmp_path):
    if not redis_up():
        pytest.skip("no Redis at 127.0.0.1:6379")
    nats, store, nats_url = start_nats(["-js"])
    prefix = f"switchyard:deploy-test:{uuid.uuid4().hex}:"
    values = {
        "nats": {"url": nats_url},
        "config": {"cache": {"enabled": True, "backend": "redis", "redis": {"key_prefix": prefix}}},
        "cache": {"redis": {"existingSecret": "cache-redis"}},
    }
    objs = objects(render(values))
    secrets = secret_data(objs)
    secrets["cache-redis"] = {"url": "redis://127.0.0.1:6379/0"}
    procs = []

    def start(dep, ready, overrides):
        c = container(dep)
        assert c["command"] == [IMAGE_BINARY]
        path, content = config_file(objs, dep)
        cfg = tmp_path / f"{dep['metadata']['name']}-{len(procs)}.yaml"
        cfg.write_text(content)
        env = {**resolve_env(c, secrets), **overrides}
        procs.append(Proc([SWITCHYARD, *[str(cfg) if a == path else a for a in c["args"]]], ready,
                          env=clean_env(env)))

    try:
        [demo] = [d for d in component(objs, "worker") if d["metadata"]["labels"]["switchyard.dev/provider"] == "demo"]
        start(demo, "worker serving", {"SWITCHYARD_HEALTH_ADDR": f"127.0.0.1:{free_port()}"})
        [router] = component(objs, "router")
        bases = []
        for _ in range(2):
            http_addr = f"127.0.0.1:{free_port()}"
            start(router, "router listening",
                  {"SWITCHYARD_HTTP_ADDR": http_addr, "SWITCHYARD_GRPC_ADDR": f"127.0.0.1:{free_port()}"})
            bases.append(f"http://{http_addr}")
        body = {"model": "demo", "temperature": 0, "messages": [{"role": "user", "content": f"hi {uuid.uuid4()}"}]}
        status, headers, first = post(bases[0] + "/v1/chat/completions", body)
        assert status == 200, first
        assert headers.get("x-switchyard-cache") == "miss"
        status, headers, second = post(bases[1] + "/v1/chat/completions", body)
        assert status == 200, second
        assert headers.get("x-switchyard-cache") == "hit"
        assert second["choices"] == first["choices"]
    finally:
        for p in reversed(procs):
            p.stop()
        nats.kill()
        nats.wait()
        store.cleanup()
