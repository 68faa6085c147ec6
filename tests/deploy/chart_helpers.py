"""Shared by the deploy tests: render the chart offline, split manifests,
resolve Secrets, and reuse the SDK tests' process helpers."""

import base64
import importlib.util
import sys
from pathlib import Path

import helm_python
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy/helm/switchyard"
VALUES_FULL = Path(__file__).with_name("values-full.yaml")
DOCKERFILE = ROOT / "deploy/docker/Dockerfile"
RELEASE = "sy"
NAMESPACE = "gateway"

# Secrets that values-full.yaml references but does not create: what an
# operator would have made beforehand (stand-in values).
EXISTING_SECRETS = {
    "anthropic-credentials": {"ANTHROPIC_API_KEY": "sk-ant-standin"},
    "otlp-headers": {"headers": "x-api-key=standin"},
    "switchyard-admin": {"token": "admin-standin"},
    "registry-credentials": {},
    "nats-ca": {"ca.crt": "(not used: the wiring test turns TLS off)"},
    "consul-token": {"token": "consul-standin"},
    # YAML syntax in both: they must stay one string once substituted.
    "ledger-postgres": {"url": "postgres://switchyard:p4ss: #w0rd@db.example:5432/switchyard"},
    "alert-webhook": {"authorization": "Bearer hook: #standin"},
    # At least 32 bytes, with YAML syntax in it too.
    "key-hash": {"hash-secret": "hash: #secret standin of 32+ bytes, the same for every router"},
    # A virtual key for the helm test pod (the wiring test makes a real one).
    "switchyard-test-key": {"api-key": "sk-sy-standin"},
}
# What the downward API gives a pod, for local runs.
FIELD_REFS = {"status.hostIP": "127.0.0.1", "status.podIP": "127.0.0.1"}


def _load_sdk_conftest():
    """tests/sdk/conftest.py's Proc, free_port, binaries (imported under
    another name, so it does not clash with pytest's own conftest import)."""
    name = "switchyard_sdk_conftest"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "tests/sdk/conftest.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


sdk = _load_sdk_conftest()
Proc = sdk.Proc
free_port = sdk.free_port
SWITCHYARD = sdk.SWITCHYARD
DOUBLE = sdk.DOUBLE


def full_values():
    return yaml.safe_load(VALUES_FULL.read_text())


def render(values=None):
    """`helm template` offline: {template path: text}."""
    chart = helm_python.Chart.load(str(CHART))
    return chart.render(values=values or {}, name=RELEASE, namespace=NAMESPACE)


def objects(rendered):
    """Every Kubernetes object of a render, hooks and tests included."""
    out = []
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                out.append(doc)
    return out


def by_kind(objs, kind):
    return [o for o in objs if o["kind"] == kind]


def one(objs, kind, name):
    found = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def secret_data(objs):
    """{secret name: {key: value}}: rendered Secrets plus the stand-ins."""
    data = {k: dict(v) for k, v in EXISTING_SECRETS.items()}
    for s in by_kind(objs, "Secret"):
        d = {k: base64.b64decode(v).decode() for k, v in (s.get("data") or {}).items()}
        d.update(s.get("stringData") or {})
        data[s["metadata"]["name"]] = d
    return data


def resolve_env(container, secrets):
    """A container's env as a dict, Secrets resolved (a missing Secret or
    key fails: the chart references something that would not exist)."""
    env = {}
    for e in container.get("env") or []:
        if "value" in e:
            env[e["name"]] = str(e["value"])
        elif "valueFrom" in e and "secretKeyRef" in e["valueFrom"]:
            ref = e["valueFrom"]["secretKeyRef"]
            assert ref["name"] in secrets, f"env {e['name']}: Secret {ref['name']!r} neither rendered nor a known stand-in"
            assert ref["key"] in secrets[ref["name"]], f"env {e['name']}: Secret {ref['name']!r} has no key {ref['key']!r}"
            env[e["name"]] = secrets[ref["name"]][ref["key"]]
        elif "valueFrom" in e and "fieldRef" in e["valueFrom"]:
            env[e["name"]] = FIELD_REFS[e["valueFrom"]["fieldRef"]["fieldPath"]]
        else:
            raise AssertionError(f"env {e['name']}: unsupported source {e}")
    return env


def config_file(objs, deployment):
    """(path the container is told to read, rendered content) for a
    Deployment: follows --config to its volumeMount, volume and ConfigMap."""
    pod = deployment["spec"]["template"]["spec"]
    c = pod["containers"][0]
    argv = c.get("args") or []
    path = argv[argv.index("--config") + 1]
    mount = [m for m in c["volumeMounts"] if path.startswith(m["mountPath"].rstrip("/") + "/")]
    assert len(mount) == 1, f"{path}: no single volumeMount holds it"
    rel = path[len(mount[0]["mountPath"].rstrip("/")) + 1 :]
    vol = [v for v in pod["volumes"] if v["name"] == mount[0]["name"]][0]
    cm = one(objs, "ConfigMap", vol["configMap"]["name"])
    items = {i["path"]: i["key"] for i in vol["configMap"].get("items") or []} or {k: k for k in cm["data"]}
    assert rel in items, f"{path}: the ConfigMap volume has no {rel}"
    return path, cm["data"][items[rel]]
