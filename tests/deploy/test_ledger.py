"""The usage ledger and spend settings in the chart.

Rendered: the ledger writer Deployment (off by default), the PostgreSQL URL
(a Secret reaching the routers and the writer only), budgets, alerts and
prices passed through to the config, secret webhook headers for the routers.
Run: the writer Deployment as a local process with its exact command and
environment, next to the chart's router and demo worker, on a nats-server
with JetStream and a fresh PostgreSQL database; chat requests end up as rows
that the router's usage API reads back.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.request
import uuid

import pytest
import yaml

from chart_helpers import (
    SWITCHYARD,
    Proc,
    by_kind,
    config_file,
    free_port,
    full_values,
    objects,
    render,
    resolve_env,
    secret_data,
)
from test_wiring import IMAGE_BINARY, clean_env, post, start_nats

PG_ENV = "SWITCHYARD_LEDGER_POSTGRES_URL"
ALERT_ENV = "SWITCHYARD_ALERT_HEADER_AUTHORIZATION"


def component(objs, name):
    return [d for d in by_kind(objs, "Deployment") if d["metadata"]["labels"]["app.kubernetes.io/component"] == name]


def container(d):
    return d["spec"]["template"]["spec"]["containers"][0]


def env_names(d):
    return {e["name"] for e in container(d).get("env") or []}


def secret_ref(d, name):
    e = [e for e in container(d)["env"] if e["name"] == name]
    assert len(e) == 1, (d["metadata"]["name"], name)
    return e[0]["valueFrom"]["secretKeyRef"]


REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def interpolate(text, env):
    """docs/configuration.md's ${VAR} / ${VAR:-default}, comments left alone."""

    def sub(m):
        value = env.get(m.group(1))
        if m.group(2) is not None and not value:
            return m.group(2)
        assert value is not None, f"${{{m.group(1)}}} is not set"
        return value

    return "\n".join(line if line.lstrip().startswith("#") else REF.sub(sub, line) for line in text.splitlines())


def test_writer_is_off_by_default():
    objs = objects(render({}))
    assert not component(objs, "ledger-writer")
    for d in by_kind(objs, "Deployment"):
        assert PG_ENV not in env_names(d)
    cfg = yaml.safe_load(config_file(objs, by_kind(objs, "Deployment")[0])[1])
    assert "postgres" not in (cfg.get("ledger") or {})
    assert "SWITCHYARD_LEDGER" not in json.dumps(objs)


def test_writer_deployment():
    objs = objects(render(full_values()))
    [w] = component(objs, "ledger-writer")
    assert w["metadata"]["name"] == "gw-ledger-writer"
    assert w["spec"]["replicas"] == 2
    c = container(w)
    assert c["command"] == [IMAGE_BINARY]
    assert c["args"] == ["ledger-writer", "--config", "/etc/switchyard/config.yaml", "--consumer", "gw-ledger"]
    assert c["image"] == "registry.example.com/switchyard:0.1.0-test"
    # The one config every pod reads, from the ConfigMap.
    router = component(objs, "router")[0]
    assert config_file(objs, w) == config_file(objs, router)
    # A process with no listener: nothing to probe, nothing to route to.
    assert not {"ports", "startupProbe", "readinessProbe", "livenessProbe"} & set(c)
    for svc in by_kind(objs, "Service"):
        assert svc["spec"]["selector"].get("app.kubernetes.io/component") != "ledger-writer"
    targets = {h["spec"]["scaleTargetRef"]["name"] for h in by_kind(objs, "HorizontalPodAutoscaler")}
    assert w["metadata"]["name"] not in targets
    # The restricted Pod Security Standard, as every pod of the chart.
    pod = w["spec"]["template"]["spec"]
    assert pod["securityContext"] == router["spec"]["template"]["spec"]["securityContext"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert c["securityContext"] == container(router)["securityContext"]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert any(m["mountPath"] == "/tmp" for m in c["volumeMounts"])
    assert pod["terminationGracePeriodSeconds"] == 20
    assert pod["serviceAccountName"] == "switchyard-gw"
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert w["spec"]["template"]["metadata"]["labels"]["tier"] == "ledger"
    annotations = w["spec"]["template"]["metadata"]["annotations"]
    assert annotations["checksum/config"] == router["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
    # The URL from the operator's Secret; NATS like every pod; nothing else secret.
    assert secret_ref(w, PG_ENV) == {"name": "ledger-postgres", "key": "url"}
    names = env_names(w)
    assert "SWITCHYARD_NATS_TOKEN" in names and "EXAMPLE_WRITER" in names
    assert not names & {"CONSUL_HTTP_TOKEN", "SWITCHYARD_ADMIN_TOKEN", ALERT_ENV,
                        "SWITCHYARD_UP_API_KEY", "ANTHROPIC_API_KEY"}


def test_writer_consumer_defaults_to_the_binarys():
    objs = objects(render({"ledger": {"postgres": {"existingSecret": "pg"}, "writer": {"enabled": True}}}))
    [w] = component(objs, "ledger-writer")
    assert container(w)["args"] == ["ledger-writer", "--config", "/etc/switchyard/config.yaml"]
    assert w["spec"]["replicas"] == 1
    assert secret_ref(w, PG_ENV) == {"name": "pg", "key": "url"}
    assert w["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 30


def test_postgres_url_reaches_routers_and_the_writer_only():
    objs = objects(render(full_values()))
    for d in by_kind(objs, "Deployment"):
        role = d["metadata"]["labels"]["app.kubernetes.io/component"]
        assert (PG_ENV in env_names(d)) == (role in ("router", "ledger-writer")), d["metadata"]["name"]
        # Only routers send alerts.
        assert (ALERT_ENV in env_names(d)) == (role == "router"), d["metadata"]["name"]
    assert secret_ref(component(objs, "router")[0], ALERT_ENV) == {"name": "alert-webhook", "key": "authorization"}
    text = config_file(objs, component(objs, "router")[0])[1]
    assert f'    url: "${{{PG_ENV}:-' in text
    assert f'Authorization: "${{{ALERT_ENV}:-}}"' in text


def test_routers_read_postgres_without_a_writer():
    """Another release's writer may fill the database: routers still query it."""
    objs = objects(render({"ledger": {"postgres": {"existingSecret": "pg", "key": "dsn"}}}))
    assert not component(objs, "ledger-writer")
    assert secret_ref(component(objs, "router")[0], PG_ENV) == {"name": "pg", "key": "dsn"}
    assert PG_ENV not in env_names(component(objs, "worker")[0])
    cfg = yaml.safe_load(config_file(objs, component(objs, "router")[0])[1])
    assert cfg["ledger"]["postgres"]["url"].startswith("${" + PG_ENV)


def test_created_postgres_secret():
    url = "postgres://switchyard:s3cret@db:5432/switchyard"
    objs = objects(render({"ledger": {"postgres": {"createSecret": True, "url": url},
                                      "writer": {"enabled": True}}}))
    assert secret_data(objs)["sy-switchyard-ledger-postgres"] == {"url": url}
    for d in component(objs, "router") + component(objs, "ledger-writer"):
        assert secret_ref(d, PG_ENV) == {"name": "sy-switchyard-ledger-postgres", "key": "url"}
    assert "s3cret" not in json.dumps(by_kind(objs, "ConfigMap"))
    assert "s3cret" not in json.dumps(by_kind(objs, "Deployment"))


def test_spend_settings_pass_through_to_the_config():
    values = full_values()
    objs = objects(render(values))
    cfg = yaml.safe_load(config_file(objs, component(objs, "router")[0])[1])
    v = values["config"]
    assert cfg["budgets"] == v["budgets"]
    assert cfg["pricing"] == v["pricing"]
    alerts = json.loads(json.dumps(v["alerts"]))
    alerts["webhook"]["headers"]["Authorization"] = "${" + ALERT_ENV + ":-}"
    assert cfg["alerts"] == alerts
    assert cfg["ledger"] == {**v["ledger"], "postgres": {"url": "${" + PG_ENV + ":-not-given-to-this-pod}"}}
    assert {m["name"]: m.get("spend_cap") for m in cfg["models"]}["demo"] == v["models"][1]["spend_cap"]


def test_secrets_substitute_as_one_string():
    """The Secrets' values carry YAML syntax (`: #`); each pod's file still
    parses, with the whole value where it is given and the stand-ins elsewhere."""
    objs = objects(render(full_values()))
    secrets = secret_data(objs)
    text = config_file(objs, component(objs, "router")[0])[1]
    for d in by_kind(objs, "Deployment"):
        role = d["metadata"]["labels"]["app.kubernetes.io/component"]
        cfg = yaml.safe_load(interpolate(text, resolve_env(container(d), secrets)))
        url = cfg["ledger"]["postgres"]["url"]
        header = cfg["alerts"]["webhook"]["headers"]["Authorization"]
        if role in ("router", "ledger-writer"):
            assert url == secrets["ledger-postgres"]["url"]
        else:
            assert url == "not-given-to-this-pod"
        assert header == (secrets["alert-webhook"]["authorization"] if role == "router" else "")
        assert cfg["bus"]["token"] == secrets["gw-nats"]["token"]


def test_a_budget_change_rolls_every_pod():
    values = full_values()
    before = {d["metadata"]["name"]: d["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
              for d in by_kind(objects(render(values)), "Deployment")}
    values["config"]["budgets"]["limits"][0]["limit_usd"] = 60
    after = {d["metadata"]["name"]: d["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
             for d in by_kind(objects(render(values)), "Deployment")}
    assert "gw-ledger-writer" in before
    assert all(before[k] != after[k] for k in before)


# --- The writer run as a local process ---------------------------------------

PG_ADMIN = os.environ.get("SWITCHYARD_TEST_POSTGRES", "host=127.0.0.1 port=5432 user=postgres")


def psql(conninfo, sql):
    return subprocess.run(["psql", conninfo, "-v", "ON_ERROR_STOP=1", "-Atc", sql],
                          capture_output=True, text=True, timeout=30)


def with_dbname(base, db):
    """As tests/support/postgres.rs: a libpq key=value string or a URL."""
    if "://" in base:
        scheme, rest = base.split("://", 1)
        main, _, query = rest.partition("?")
        return f"{scheme}://{main.split('/', 1)[0]}/{db}" + (f"?{query}" if query else "")
    return f"{base} dbname={db}"


@pytest.fixture
def database():
    """A fresh database on the test server (tests/run.sh: SWITCHYARD_TEST_POSTGRES),
    dropped afterwards; skipped without a server, as the Rust ledger tests are."""
    if not shutil.which("psql"):
        pytest.skip("psql missing: cannot make a PostgreSQL database")
    r = psql(PG_ADMIN, "SELECT 1")
    if r.returncode != 0:
        pytest.skip(f"no PostgreSQL at {PG_ADMIN}: {r.stderr.strip()}")
    name = f"switchyard_test_{int(time.time())}_{uuid.uuid4().hex}"
    r = psql(PG_ADMIN, f'CREATE DATABASE "{name}"')
    assert r.returncode == 0, r.stderr
    try:
        yield with_dbname(PG_ADMIN, name)
    finally:
        psql(PG_ADMIN, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def usage(base, token):
    req = urllib.request.Request(f"{base}/admin/v1/usage?from=1h&group_by=team",
                                 headers={"authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def test_writer_loads_usage_into_postgres(database, tmp_path):
    values = full_values()
    # Plain NATS here (the TLS wiring is test_wiring's), no Consul, no collector.
    values["nats"]["tls"]["enabled"] = False
    values["consul"]["enabled"] = False
    values["otel"]["endpoint"] = ""
    creds = secret_data(objects(render(values)))["gw-nats"]
    nats, store, nats_url = start_nats(["--auth", creds["token"], "-js"])
    values["nats"]["url"] = nats_url
    procs = []

    def start(dep, ready, overrides=None):
        """The container's command, args and env; the config file local."""
        c = container(dep)
        assert c["command"] == [IMAGE_BINARY]
        path, content = config_file(objs, dep)
        cfg = tmp_path / f"{dep['metadata']['name']}.yaml"
        cfg.write_text(content)
        env = {**resolve_env(c, secrets), **(overrides or {})}
        procs.append(Proc([SWITCHYARD, *[str(cfg) if a == path else a for a in c["args"]]], ready,
                          env=clean_env(env)))
        return procs[-1]

    try:
        objs = objects(render(values))
        secrets = secret_data(objs)
        secrets["ledger-postgres"] = {"url": database}
        [demo] = [d for d in component(objs, "worker") if d["metadata"]["labels"]["switchyard.dev/provider"] == "demo"]
        start(demo, "worker serving", {"SWITCHYARD_HEALTH_ADDR": f"127.0.0.1:{free_port()}"})
        http_addr = f"127.0.0.1:{free_port()}"
        start(component(objs, "router")[0], "router listening",
              {"SWITCHYARD_HTTP_ADDR": http_addr, "SWITCHYARD_GRPC_ADDR": f"127.0.0.1:{free_port()}"})
        [writer_dep] = component(objs, "ledger-writer")
        # Past its start line: connected to NATS and PostgreSQL, schema applied.
        writer = start(writer_dep, "usage writer: consuming")

        base = f"http://{http_addr}"
        for team in ("research", "research", "platform"):
            status, _, body = post(base + "/v1/chat/completions",
                                   {"model": "demo", "messages": [{"role": "user", "content": "hi"}]},
                                   {"x-switchyard-team": team})
            assert status == 200, body

        # The router answers from PostgreSQL (it has no other store when
        # scaled out): the records went router -> JetStream -> writer -> rows.
        token = secrets["switchyard-admin"]["token"]
        deadline = time.monotonic() + 30
        while True:
            got = usage(base, token)
            if got["totals"]["requests"] == 3:
                break
            assert time.monotonic() < deadline, got
            time.sleep(0.2)
        assert {r["team"]: r["requests"] for r in got["rows"]} == {"research": 2, "platform": 1}
        r = psql(database, "SELECT count(*), count(DISTINCT request_id) FROM switchyard_usage_records")
        assert r.stdout.strip() == "3|3", r.stdout + r.stderr

        # SIGTERM, as Kubernetes stops a pod: a clean exit well within the grace.
        grace = writer_dep["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        started = time.monotonic()
        writer.p.send_signal(signal.SIGTERM)
        assert writer.p.wait(timeout=grace) == 0
        assert time.monotonic() - started < grace / 2
    finally:
        for p in reversed(procs):
            p.stop()
        nats.kill()
        nats.wait()
        store.cleanup()

