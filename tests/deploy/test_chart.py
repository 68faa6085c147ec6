"""The Helm chart, offline: lint, render, schema, Kubernetes validation,
the rendered config checked by the real binary, and the chart's promises
(security settings, secrets only where they belong, the dashboard copy)."""

import json
import re
import subprocess
import sys
from pathlib import Path

import helm_python
import pytest
import yaml

import gen_schema
from chart_helpers import (
    CHART,
    NAMESPACE,
    ROOT,
    SWITCHYARD,
    by_kind,
    config_file,
    full_values,
    objects,
    one,
    render,
    resolve_env,
    secret_data,
)

CASES = {"default": lambda: {}, "full": full_values}
# Custom resources kubernetes-validate has no schema for.
CRD_KINDS = {"ServiceMonitor"}


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request):
    values = CASES[request.param]()
    rendered = render(values)
    return request.param, values, rendered, objects(rendered)


def test_schema_file_is_generated_from_gen_schema():
    on_disk = (CHART / "values.schema.json").read_text()
    assert on_disk == gen_schema.render(), "run: .venv/bin/python tests/deploy/gen_schema.py"


def test_lint_strict(case):
    name, values, _, _ = case
    report = helm_python.lint(str(CHART), values=values, strict=True, namespace=NAMESPACE, kube_version="v1.30.0")
    problems = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
    assert not problems, problems


def test_manifests_validate_against_kubernetes_1_30(case, tmp_path):
    name, _, rendered, objs = case
    files = []
    for i, obj in enumerate(objs):
        if obj["kind"] in CRD_KINDS:
            continue  # a CRD: no schema in kubernetes-validate
        f = tmp_path / f"{i:02d}-{obj['kind']}-{obj['metadata']['name']}.yaml"
        f.write_text(yaml.safe_dump(obj))
        files.append(str(f))
    assert len(files) >= 6
    r = subprocess.run(
        [str(Path(sys.executable).with_name("kubernetes-validate")), "--strict", "-k", "1.30.0", "--no-warn", *files],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_expected_objects(case):
    name, values, _, objs = case
    kinds = sorted({o["kind"] for o in objs})
    base = {"ConfigMap", "Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Pod", "Service", "ServiceAccount"}
    assert base <= set(kinds), kinds
    if name == "full":
        assert {"Ingress", "ServiceMonitor", "Secret"} <= set(kinds)
        sm = by_kind(objs, "ServiceMonitor")[0]
        assert sm["apiVersion"] == "monitoring.coreos.com/v1"
        assert sm["spec"]["endpoints"][0]["port"] == "http"
        assert sm["spec"]["endpoints"][0]["path"] == "/metrics"
    deployments = {d["metadata"]["name"] for d in by_kind(objs, "Deployment")}
    providers = [p["name"] for p in (values.get("providers") or [{"name": "demo"}])]
    writer = bool(values.get("ledger", {}).get("writer", {}).get("enabled"))
    assert len(deployments) == 1 + len(providers) + writer
    hpas = {h["spec"]["scaleTargetRef"]["name"] for h in by_kind(objs, "HorizontalPodAutoscaler")}
    assert hpas <= deployments
    for h in by_kind(objs, "HorizontalPodAutoscaler"):
        assert h["apiVersion"] == "autoscaling/v2"
    # An HPA-managed Deployment leaves replicas to the HPA.
    for d in by_kind(objs, "Deployment"):
        assert ("replicas" in d["spec"]) == (d["metadata"]["name"] not in hpas)


def test_rendered_config_passes_switchyard_check(case, tmp_path):
    """With each pod's own environment: every pod loads the whole file, so
    a ${VAR} only some pods are given must still resolve in the others."""
    name, _, _, objs = case
    secrets = secret_data(objs)
    deployments = by_kind(objs, "Deployment")
    contents = {config_file(objs, d)[1] for d in deployments}
    assert len(contents) == 1, "every pod must read one config"
    cfg = tmp_path / "config.yaml"
    cfg.write_text(contents.pop())
    for d in deployments:
        env = resolve_env(d["spec"]["template"]["spec"]["containers"][0], secrets)
        r = subprocess.run([SWITCHYARD, "check", "--config", str(cfg)], capture_output=True, text=True,
                           env={"PATH": "/usr/bin:/bin", **env})
        assert r.returncode == 0, (d["metadata"]["name"], r.stdout + r.stderr)
        assert "OK" in r.stdout


def test_config_annotation_follows_config(case):
    _, values, _, objs = case
    before = {d["metadata"]["name"]: d["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
              for d in by_kind(objs, "Deployment")}
    changed = json.loads(json.dumps(values))
    changed.setdefault("config", {}).setdefault("routing", {})["default_cooldown"] = "7s"
    after = {d["metadata"]["name"]: d["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
             for d in by_kind(objects(render(changed)), "Deployment")}
    assert before.keys() == after.keys()
    assert all(before[k] != after[k] for k in before)


def test_pod_security(case):
    _, _, _, objs = case
    pods = [d["spec"]["template"]["spec"] for d in by_kind(objs, "Deployment")] + [p["spec"] for p in by_kind(objs, "Pod")]
    for pod in pods:
        psc = pod["securityContext"]
        assert psc["runAsNonRoot"] is True and psc["runAsUser"] == 65532
        assert psc["seccompProfile"]["type"] == "RuntimeDefault"
        for c in pod["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"]["drop"] == ["ALL"]
            assert c["resources"]["requests"] and c["resources"]["limits"]
            assert any(m["mountPath"] == "/tmp" for m in c["volumeMounts"])


def test_router_probes_are_native_grpc(case):
    _, _, _, objs = case
    router = [d for d in by_kind(objs, "Deployment") if d["metadata"]["labels"]["app.kubernetes.io/component"] == "router"][0]
    c = router["spec"]["template"]["spec"]["containers"][0]
    grpc_port = [p["containerPort"] for p in c["ports"] if p["name"] == "grpc"][0]
    probes = [c[k] for k in ("startupProbe", "readinessProbe", "livenessProbe")]
    for p in probes:
        assert p["grpc"]["port"] == grpc_port
    assert c["readinessProbe"]["grpc"]["service"] == "switchyard.gateway.v1.GatewayService"
    assert len({json.dumps(p, sort_keys=True) for p in probes}) == 3, "distinct settings"


def test_worker_probes_are_http_on_the_health_port(case):
    _, _, _, objs = case
    workers = [d for d in by_kind(objs, "Deployment") if d["metadata"]["labels"]["app.kubernetes.io/component"] == "worker"]
    assert workers
    for w in workers:
        c = w["spec"]["template"]["spec"]["containers"][0]
        port = {p["name"]: p["containerPort"] for p in c["ports"]}["health"]
        env = {e["name"]: e.get("value") for e in c["env"]}
        assert env["SWITCHYARD_HEALTH_ADDR"] == f"0.0.0.0:{port}"
        assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert c["startupProbe"]["httpGet"]["port"] == "health"


def seconds(text):
    """A humantime duration of the simple forms used here: 2s, 500ms, 1m."""
    total = 0.0
    for num, unit in re.findall(r"(\d+)\s*(ms|s|m|h)", text):
        total += int(num) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
    return total


def test_termination_grace_covers_shutdown(case):
    """Kubernetes must not SIGKILL a pod while the binary still drains."""
    _, _, _, objs = case
    server = yaml.safe_load(config_file(objs, by_kind(objs, "Deployment")[0])[1]).get("server") or {}
    needed = seconds(server.get("shutdown_grace", "30s")) + seconds(server.get("shutdown_delay", "0s"))
    assert server.get("shutdown_delay"), "Kubernetes needs a shutdown delay (endpoints update asynchronously)"
    # The ledger writer serves no requests: it only commits the batch in hand.
    serving = [d for d in by_kind(objs, "Deployment")
               if d["metadata"]["labels"]["app.kubernetes.io/component"] in ("router", "worker")]
    for d in serving:
        # + 3 s: Consul deregistration and exit (docs/operations.md).
        assert d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= needed + 3, d["metadata"]["name"]


def test_provider_secrets_only_reach_their_worker():
    objs = objects(render(full_values()))
    cfg = yaml.safe_load(config_file(objs, by_kind(objs, "Deployment")[0])[1])
    key_envs = {p["name"]: p.get("api_key_env") for p in cfg["providers"]}
    assert key_envs == {"demo": None, "up": "SWITCHYARD_UP_API_KEY", "claude": "ANTHROPIC_API_KEY"}
    provider_secrets = {"gw-provider-up", "anthropic-credentials"}
    for d in by_kind(objs, "Deployment"):
        c = d["spec"]["template"]["spec"]["containers"][0]
        refs = {e["valueFrom"]["secretKeyRef"]["name"]: e["name"]
                for e in c.get("env") or [] if "secretKeyRef" in e.get("valueFrom", {})}
        provider = d["metadata"]["labels"].get("switchyard.dev/provider")
        mine = {n for n in provider_secrets if (provider == "up" and n == "gw-provider-up") or (provider == "claude" and n == "anthropic-credentials")}
        assert provider_secrets & set(refs) == mine, (d["metadata"]["name"], refs)
        if provider in ("up", "claude"):
            assert key_envs[provider] in refs.values()
    # No key is ever in the ConfigMap.
    assert "sk-test-created" not in json.dumps(by_kind(objs, "ConfigMap"))


def test_dashboard_configmap_is_the_grafana_dashboard():
    source = (ROOT / "deploy/grafana/switchyard.json").read_text()
    assert (CHART / "dashboards/switchyard.json").read_text() == source, (
        "cp deploy/grafana/switchyard.json deploy/helm/switchyard/dashboards/"
    )
    cm = one(objects(render(full_values())), "ConfigMap", "gw-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["namespace"] == "monitoring"
    assert json.loads(cm["data"]["switchyard.json"]) == json.loads(source)


def test_helm_test_pod_posts_a_chat_to_the_router_service():
    objs = objects(render(full_values()))
    pod = by_kind(objs, "Pod")[0]
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    c = pod["spec"]["containers"][0]
    env = resolve_env(c, secret_data(objs))
    svc = by_kind(objs, "Service")[0]
    http = [p["port"] for p in svc["spec"]["ports"] if p["name"] == "http"][0]
    assert env["URL"] == f"http://{svc['metadata']['name']}:{http}/v1/chat/completions"
    assert json.loads(env["BODY"])["model"] == "chat"
    # tests.apiKey: the key from its Secret, sent as the bearer token, and 200 expected.
    assert [e["valueFrom"] for e in c["env"] if e["name"] == "API_KEY"] == [
        {"secretKeyRef": {"name": "switchyard-test-key", "key": "api-key"}}]
    assert env["EXPECT"] == "200"
    assert '[ "$code" = "$EXPECT" ]' in c["args"][0]
    assert "-H @/tmp/auth" in c["args"][0]


@pytest.mark.parametrize(
    "bad",
    [
        {"routerr": {}},                                          # unknown top-level key
        {"router": {"replicas": "two"}},                          # wrong type
        {"router": {"ports": {"http": 8080, "grpc": 50051, "metrics": 9090}}},
        {"nats": {"url": "http://nats:4222"}},                    # not nats:// or tls://
        {"providers": [{"name": "x", "kind": "openai", "api_key": "sk-literal"}]},  # no literal keys
        {"providers": [{"name": "x", "kind": "opnai"}]},          # unknown kind
        {"config": {"models": [{"name": "m", "routes": [{"provider": "demo", "model": "echo", "wieght": 1}]}]}},
        {"config": {"server": {"http_addr": "0.0.0.0:1"}}},       # set by the chart
        {"providers": [{"name": "x", "kind": "demo", "worker": {"replicas": -1}}]},
        {"config": {"ledger": {"postgres": {"url": "postgres://u:p@db/x"}}}},  # set by the chart, from a Secret
        {"config": {"ledger": {"router_id": "r1"}}},              # every router would share one id
        {"config": {"ledger": {"backend": "local"}}},             # a file in the pod
        {"config": {"budgets": {"limits": [{"name": "b", "window": "hourly", "limit_usd": 1, "action": "reject"}]}}},
        {"config": {"budgets": {"limits": [{"name": "b", "window": "daily", "limit_usd": 1, "action": "block"}]}}},
        {"config": {"budgets": {"limits": [{"name": "b", "scope": {"team": "a", "user": "b"}, "window": "daily",
                                            "limit_usd": 1, "action": "reject"}]}}},
        {"config": {"alerts": {"webhook": {"url": "ftp://hooks"}}}},
        {"config": {"pricing": {"models": [{"provider": "openai", "input": 1}]}}},  # no model
        {"config": {"models": [{"name": "m", "routes": [{"provider": "demo", "model": "echo"}],
                                "spend_cap": {"limit_usd": 1, "window": "daily"}}]}},
        {"ledger": {"writer": {"consumer": "a.b"}}},               # not a JetStream consumer name
        {"ledger": {"postgres": {"createSecret": True, "url": 'postgres://u:p"q@db/x'}}},
        {"ledger": {"writer": {"enabled": "yes"}}},
        {"alerts": {"webhookHeaders": [{"name": "Authorization", "existingSecret": "s"}]}},  # no key
        {"config": {"auth": {"keys": {"hash_secret": "0123456789abcdef0123456789abcdef"}}}},  # from auth.hashSecret
        {"config": {"auth": {"keys": {"store": "local"}}}},         # a file in the pod
        {"config": {"auth": {"keys": {"path": "/data/keys.db"}}}},
        {"config": {"auth": {"keys": {"replicas": 7}}}},
        {"config": {"auth": {"jwt": {"issuer": "https://i", "audiences": ["a"], "jwks_file": "/jwks.json"}}}},
        {"config": {"auth": {"jwt": {"issuer": "https://i", "audiences": [], "jwks_url": "https://i/k"}}}},
        {"config": {"auth": {"access": [{"name": "a"}]}}},           # no models
        {"config": {"auth": {"allow_unauthenticated": "yes"}}},
        {"config": {"auth": {"bogus": 1}}},
        {"config": {"rate_limits": [{"name": "r"}]}},                # neither rpm nor tpm
        {"config": {"rate_limits": [{"name": "r", "rpm": 0}]}},
        {"config": {"rate_limits": [{"name": "r", "rpm": 1, "scope": {"key": "ci-bot"}}]}},  # only "*"
        {"config": {"rate_limits": [{"name": "r", "rpm": 1, "scope": {"team": "a", "user": "b"}}]}},
        {"auth": {"hashSecret": {"existingSecret": "Not_A_Name"}}},
        {"auth": {"hashSecret": {"value": "literal"}}},
        {"tests": {"apiKey": {"existingSecret": "k", "value": "sk-sy-literal"}}},
    ],
)
def test_schema_rejects(bad):
    with pytest.raises(helm_python.HelmValuesError):
        render(bad)


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"nats": {"url": "nats://n:4222", "tls": {"enabled": True}}}, "tls://"),
        ({"nats": {"url": "nats://n:4222", "auth": {"type": "token"}}}, "existingSecret or createSecret"),
        ({"providers": [{"name": "x", "kind": "openai", "apiKey": {"createSecret": True}}]}, "apiKey.value"),
        ({"ledger": {"writer": {"enabled": True}}}, "ledger.writer.enabled needs the PostgreSQL URL"),
        ({"ledger": {"postgres": {"createSecret": True}}}, "ledger.postgres.createSecret needs ledger.postgres.url"),
        ({"ledger": {"postgres": {"url": "postgres://db/x"}}}, "only with ledger.postgres.createSecret"),
        ({"ledger": {"postgres": {"existingSecret": "pg", "createSecret": True, "url": "postgres://db/x"}}},
         "are exclusive"),
        ({"ledger": {"postgres": {"existingSecret": "pg"}, "writer": {"enabled": True}},
          "config": {"ledger": {"enabled": False}}}, "no records to write"),
        ({"alerts": {"webhookHeaders": [{"name": "Authorization", "existingSecret": "s", "key": "k"}]}},
         "needs config.alerts.webhook.url"),
        ({"alerts": {"webhookHeaders": [{"name": "authorization", "existingSecret": "s", "key": "k"}]},
          "config": {"alerts": {"webhook": {"url": "https://h", "headers": {"Authorization": "x"}}}}},
         "also in config.alerts.webhook.headers"),
        ({"alerts": {"webhookHeaders": [{"name": "X-A", "existingSecret": "s", "key": "k"},
                                        {"name": "X_A", "existingSecret": "s", "key": "k"}]},
          "config": {"alerts": {"webhook": {"url": "https://h"}}}}, "same variable"),
        ({"config": {"auth": {"keys": {"store": "jetstream"}}}}, "needs the hash secret"),
    ],
)
def test_template_checks(bad, message):
    with pytest.raises(helm_python.HelmError, match=message):
        render(bad)


def test_readme_documents_every_value():
    readme = (CHART / "README.md").read_text()
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    missing = []

    def walk(node, path):
        for k, v in node.items():
            p = f"{path}.{k}" if path else k
            # Maps the user fills freely are documented as a whole.
            if isinstance(v, dict) and v and k not in ("resources", "podSecurityContext", "securityContext",
                                                       "labels", "server", "routing", "telemetry"):
                walk(v, p)
            elif f"`{p}`" not in readme and f"`{k}`" not in readme and f"{k}`" not in readme:
                missing.append(p)

    walk(values, "")
    assert not missing, f"values without a README row: {missing}"
    schema_top = set(json.loads((CHART / "values.schema.json").read_text())["properties"]) - {"global"}
    assert schema_top == set(values), "values.yaml and values.schema.json disagree on top-level keys"
