"""Keys, identity and rate limits in the chart (docs/auth.md).

Rendered: `config.auth` and `config.rate_limits` passed through to the
config file; the hash secret of virtual keys from a Secret reaching the
routers only (the config refers to it; workers and the ledger writer get a
stand-in that passes validation), `switchyard check` on what each pod
reads; what the `helm test` pod expects, and what NOTES.txt says.
Run: two routers from the chart (their exact command and environment) and
the demo worker on a local nats-server with JetStream: a key made in one
router "pod" as NOTES.txt says works on the other, which refuses requests
without it, and the `helm test` script passes with it.
"""

import subprocess
import time
import uuid

import helm_python
import pytest
import yaml

from chart_helpers import SWITCHYARD, Proc, by_kind, config_file, free_port, objects, render, resolve_env, secret_data
from test_ledger import component, container, env_names
from test_wiring import IMAGE_BINARY, bearer, clean_env, create_key, post, run_helm_test_script, start_nats

ENV = "SWITCHYARD_KEY_HASH_SECRET"
HASH = {"auth": {"hashSecret": {"existingSecret": "key-hash", "key": "secret"}}}
SECRET = "0f" * 32
JWT = {
    "issuer": "https://login.example.com/realms/acme",
    "audiences": ["switchyard"],
    "jwks_url": "https://login.example.com/realms/acme/protocol/openid-connect/certs",
    "team_claim": "org.team",
    "role_claim": "realm_access.roles",
    "leeway": "30s",
}
ACCESS = [
    {"name": "interns-mini-only", "roles": ["intern"], "models": ["*-mini"]},
    {"name": "contractors", "keys": ["vendor-a"], "users": ["bob@example.com"], "models": ["demo"]},
]
RATE_LIMITS = [
    {"name": "per-team", "scope": {"team": "*"}, "rpm": 600, "tpm": 200000},
    {"name": "per-key", "scope": {"key": "*"}, "rpm": 120},
    {"name": "gpt4o-total", "scope": {"model": "gpt-4o"}, "tpm": 1000000},
    {"name": "everyone", "rpm": 20000},
]


def router_config(objs):
    return config_file(objs, component(objs, "router")[0])[1]


def with_writer(values):
    """Values plus the ledger writer, so every kind of pod is rendered."""
    return {**values, "ledger": {"postgres": {"existingSecret": "pg"}, "writer": {"enabled": True}}}


def check_as_each_pod(tmp_path, objs, secrets):
    """`switchyard check` on the one config file, with each pod's own
    environment (the binary resolves the ${VAR} references itself)."""
    contents = {config_file(objs, d)[1] for d in by_kind(objs, "Deployment")}
    assert len(contents) == 1
    cfg = tmp_path / f"check-{uuid.uuid4().hex}.yaml"
    cfg.write_text(contents.pop())
    results = {}
    for d in by_kind(objs, "Deployment"):
        env = resolve_env(container(d), secrets)
        r = subprocess.run([SWITCHYARD, "check", "--config", str(cfg)], capture_output=True, text=True, timeout=60,
                           env={"PATH": "/usr/bin:/bin", **env})
        results[d["metadata"]["name"]] = (r.returncode, r.stdout + r.stderr)
    return results


def test_nothing_of_auth_by_default():
    objs = objects(render({}))
    cfg = yaml.safe_load(router_config(objs))
    assert "auth" not in cfg and "rate_limits" not in cfg
    for d in by_kind(objs, "Deployment"):
        assert ENV not in env_names(d), d["metadata"]["name"]
    # The test pod sends no key and expects the 401 another pod gets.
    c = by_kind(objs, "Pod")[0]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["EXPECT"] == "401" and "API_KEY" not in env


def test_hash_secret_reaches_routers_only_and_every_pod_passes_check(tmp_path):
    objs = objects(render(with_writer(HASH)))
    [router] = component(objs, "router")
    ref = [e for e in container(router)["env"] if e["name"] == ENV]
    assert ref == [{"name": ENV, "valueFrom": {"secretKeyRef": {"name": "key-hash", "key": "secret"}}}]
    others = component(objs, "worker") + component(objs, "ledger-writer")
    assert len(others) == 2
    for d in others:
        [e] = [e for e in container(d)["env"] if e["name"] == ENV]
        # A literal stand-in, never the Secret, long enough for validation.
        assert "valueFrom" not in e and len(e["value"]) >= 32, d["metadata"]["name"]
        assert "not-given-to-this-pod" in e["value"]
    text = router_config(objs)
    assert f'hash_secret: "${{{ENV}}}"' in text, "a quoted reference, no default"
    assert yaml.safe_load(text)["auth"] == {"keys": {"hash_secret": f"${{{ENV}}}"}}
    assert not [s for s in by_kind(objs, "Secret") if "hash" in s["metadata"]["name"]], "the chart makes no Secret"
    secrets = {**secret_data(objs), "key-hash": {"secret": SECRET}, "pg": {"url": "postgres://u:p@db/x"}}
    for name, (rc, out) in check_as_each_pod(tmp_path, objs, secrets).items():
        assert rc == 0 and "OK" in out, (name, out)


def test_a_router_with_an_empty_or_short_secret_fails_check(tmp_path):
    """No `:-` default: an empty value in the Secret is an error, never the
    workers' stand-in."""
    objs = objects(render(HASH))
    for bad in ("", "too-short"):
        secrets = {**secret_data(objs), "key-hash": {"secret": bad}}
        results = check_as_each_pod(tmp_path, objs, secrets)
        rc, out = results["sy-switchyard-router"]
        assert rc != 0 and "auth.keys.hash_secret" in out, out
        assert all(rc == 0 for name, (rc, _) in results.items() if "worker" in name)


def test_auth_and_rate_limits_pass_through_and_check(tmp_path):
    values = {
        **HASH,
        "config": {
            "auth": {"keys": {"store": "jetstream", "bucket": "gw_keys", "replicas": 3}, "jwt": JWT,
                     "access": ACCESS, "allow_unauthenticated": False},
            "rate_limits": RATE_LIMITS,
        },
    }
    objs = objects(render(with_writer(values)))
    for role in ("router", "worker", "ledger-writer"):
        cfg = yaml.safe_load(config_file(objs, component(objs, role)[0])[1])
        assert cfg["auth"] == {**values["config"]["auth"],
                               "keys": {"store": "jetstream", "bucket": "gw_keys", "replicas": 3,
                                        "hash_secret": f"${{{ENV}}}"}}
        assert cfg["rate_limits"] == RATE_LIMITS
    secrets = {**secret_data(objs), "key-hash": {"secret": SECRET}, "pg": {"url": "postgres://u:p@db/x"}}
    for name, (rc, out) in check_as_each_pod(tmp_path, objs, secrets).items():
        assert rc == 0 and "OK" in out, (name, out)


def test_jwt_and_keys_off_need_no_secret(tmp_path):
    values = {"config": {"auth": {"keys": {"store": "off"}, "jwt": JWT}, "rate_limits": RATE_LIMITS[:1]}}
    objs = objects(render(values))
    assert yaml.safe_load(router_config(objs))["auth"] == values["config"]["auth"]
    for d in by_kind(objs, "Deployment"):
        assert ENV not in env_names(d)
    for name, (rc, out) in check_as_each_pod(tmp_path, objs, secret_data(objs)).items():
        assert rc == 0 and "OK" in out, (name, out)


def test_an_auth_change_rolls_every_pod():
    def sums(values):
        return {d["metadata"]["name"]: d["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
                for d in by_kind(objects(render(values)), "Deployment")}

    before = sums({"config": {"auth": {"access": ACCESS}}})
    after = sums({"config": {"auth": {"access": ACCESS[:1]}}})
    assert before.keys() == after.keys() and all(before[k] != after[k] for k in before)


@pytest.mark.parametrize(
    "values, expect",
    [
        ({}, "401"),
        ({"config": {"auth": {"allow_unauthenticated": True}}}, "200"),
        # A JWT issuer means every request needs a credential.
        ({"config": {"auth": {"allow_unauthenticated": True, "jwt": JWT}}}, "401"),
        ({"tests": {"apiKey": {"existingSecret": "test-key"}}}, "200"),
        ({**HASH, "tests": {"apiKey": {"existingSecret": "test-key", "key": "k"}}}, "200"),
    ],
)
def test_what_the_helm_test_pod_expects(values, expect):
    objs = objects(render(values))
    c = by_kind(objs, "Pod")[0]["spec"]["containers"][0]
    env = {e["name"]: e for e in c["env"]}
    assert env["EXPECT"]["value"] == expect
    key = values.get("tests", {}).get("apiKey")
    if key:
        assert env["API_KEY"]["valueFrom"] == {
            "secretKeyRef": {"name": key["existingSecret"], "key": key.get("key", "api-key")}}
    else:
        assert "API_KEY" not in env


def notes(values):
    return [t for p, t in render(values).items() if p.endswith("NOTES.txt")][0]


def test_notes_say_how_to_make_the_first_key():
    text = notes({**HASH, "router": {"adminToken": {"existingSecret": "admin"}, "ports": {"http": 9090, "grpc": 9091}}})
    assert ("kubectl -n gateway exec deploy/sy-switchyard-router -- \\\n"
            "      switchyard keys create --name my-app --url http://127.0.0.1:9090") in text
    assert "SWITCHYARD_ADMIN_TOKEN=<token from admin> switchyard keys create" in text
    assert "port-forward svc/sy-switchyard" in text
    # Without the secret, keys are off and only loopback clients are served.
    text = notes({})
    assert "Virtual keys are OFF" in text and "auth.hashSecret.existingSecret" in text
    assert "loopback clients only" in text and "keys create" not in text
    assert "expecting the 401" in text and "tests.apiKey.existingSecret" in text
    assert "EVERY client is served" in notes({"config": {"auth": {"allow_unauthenticated": True}}})
    assert "with the key in Secret tk, expecting HTTP 200" in notes({"tests": {"apiKey": {"existingSecret": "tk"}}})


def test_jetstream_store_needs_the_secret():
    with pytest.raises(helm_python.HelmError, match="needs the hash secret"):
        render({"config": {"auth": {"keys": {"store": "jetstream"}}}})
    render({**HASH, "config": {"auth": {"keys": {"store": "jetstream"}}}})


def test_a_key_made_in_one_router_pod_works_on_another(tmp_path):
    """Both routers hash under the Secret's value and share the JetStream
    bucket: the key made with NOTES.txt's command in one is accepted by
    the other, which from then on refuses requests without it."""
    nats, store, nats_url = start_nats([])
    values = {**HASH, "nats": {"url": nats_url}, "tests": {"apiKey": {"existingSecret": "test-key"}},
              "config": {"rate_limits": [{"name": "everyone", "rpm": 10000}]}}
    rendered = render(values)
    objs = objects(rendered)
    secrets = {**secret_data(objs), "key-hash": {"secret": SECRET}}
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
        return env

    try:
        [demo] = component(objs, "worker")
        start(demo, "worker serving", {"SWITCHYARD_HEALTH_ADDR": f"127.0.0.1:{free_port()}"})
        [router] = component(objs, "router")
        routers = []
        for _ in range(2):
            http_addr = f"127.0.0.1:{free_port()}"
            env = start(router, "router listening",
                        {"SWITCHYARD_HTTP_ADDR": http_addr, "SWITCHYARD_GRPC_ADDR": f"127.0.0.1:{free_port()}"})
            routers.append((f"http://{http_addr}", env))
        (a, a_env), (b, _) = routers
        body = {"model": "demo", "messages": [{"role": "user", "content": "hi"}]}
        status, _, answer = post(b + "/v1/chat/completions", body)
        assert status == 200, answer  # no key yet: loopback clients are served
        key = create_key(rendered, a, a_env)
        deadline = time.monotonic() + 5
        while True:
            status, _, answer = post(b + "/v1/chat/completions", body, bearer(key))
            if status == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert status == 200, answer
        status, _, answer = post(b + "/v1/chat/completions", body)
        assert status == 401 and "invalid_api_key" in answer
        # The helm test pod's script, with the key from tests.apiKey's Secret.
        c = by_kind(objs, "Pod")[0]["spec"]["containers"][0]
        env = resolve_env(c, {**secrets, "test-key": {"api-key": key}})
        r = run_helm_test_script({"objs": objs, "base": b}, tmp_path, env)
        assert r.returncode == 0 and "HTTP 200" in r.stdout, r.stdout + r.stderr
    finally:
        for p in reversed(procs):
            p.stop()
        nats.kill()
        nats.wait()
        store.cleanup()
