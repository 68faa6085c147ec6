"""The chart's Deployments, run as local processes.

The router and every worker Deployment of values-full.yaml are started as
`target/debug/switchyard` with exactly their container's command, args and
environment (Secrets resolved from the rendered ones or stand-ins), the
rendered ConfigMap as the config file, and the listen addresses moved to
free ports through the same variables the chart sets, Secret volumes as
local directories. The bus is a local nats-server that demands the
credentials from the chart's Secret (token; user/password; token over TLS
with a private CA from the chart's CA Secret), with JetStream for the
virtual keys (hashed under the chart's hash-secret Secret); one provider
points at the upstream double; a fake Consul agent takes the
registrations. The first key is made as NOTES.txt says (`switchyard keys
create` with the router's environment, as `kubectl exec` runs it), and
every request then carries it. A wrong flag, path, port, or variable name
in the chart fails here.
"""

import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from chart_helpers import (
    DOUBLE,
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

IMAGE_BINARY = "/usr/local/bin/switchyard"  # deploy/docker/Dockerfile installs it here


def start_nats(auth):
    port = free_port()
    store = tempfile.TemporaryDirectory()
    p = subprocess.Popen(
        ["nats-server", "-a", "127.0.0.1", "-p", str(port), "-js", *auth, "-sd", store.name],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return p, store, f"nats://127.0.0.1:{port}"
        except OSError:
            if time.monotonic() > deadline:
                p.kill()
                raise RuntimeError("nats-server did not start")
            time.sleep(0.02)


class FakeConsul:
    """A Consul agent's HTTP API, enough for registration: records every
    request (method, path, token header, JSON body) and answers 200."""

    def __init__(self):
        self.requests = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self):
                n = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(n) if n else b""
                outer.requests.append((self.command, self.path, self.headers.get("x-consul-token"),
                                       json.loads(raw) if raw.strip() else None))
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.end_headers()
                self.wfile.write(b"true")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def registrations(self):
        return [body for method, path, _, body in self.requests if path == "/v1/agent/service/register"]

    def stop(self):
        self.server.shutdown()


def clean_env(extra):
    """The chart's environment only: anything of ours that could stand in
    for a missing variable is removed from the inherited one."""
    drop = {k: None for k in os.environ if k.startswith(("SWITCHYARD_", "OTEL_", "SSL_CERT")) or k.endswith("_API_KEY")}
    drop.update(extra)
    # Proc parses text logs.
    drop["SWITCHYARD_LOG_FORMAT"] = "text"
    drop["NO_COLOR"] = "1"
    return drop


def bearer(key):
    return {"authorization": f"Bearer {key}"} if key else {}


def notes_keys_create(rendered, url):
    """The `switchyard keys create ...` command NOTES.txt gives for a
    router pod (`kubectl exec ... -- switchyard keys create ...`), as argv
    with its --url pointed at `url`."""
    notes = [t for p, t in rendered.items() if p.endswith("NOTES.txt")][0]
    lines = notes.splitlines()
    i = [n for n, line in enumerate(lines) if "kubectl" in line and " exec " in line][0]
    argv = lines[i + 1].split()
    assert argv[:3] == ["switchyard", "keys", "create"], lines[i : i + 2]
    argv[argv.index("--url") + 1] = url
    return [SWITCHYARD, *argv[1:]]


def create_key(rendered, base, env):
    """Runs NOTES.txt's key command as `kubectl exec` would in a router
    pod: with the pod's environment (SWITCHYARD_ADMIN_TOKEN included),
    against the router's own listener. Returns the key."""
    r = subprocess.run(notes_keys_create(rendered, base), capture_output=True, text=True, timeout=30,
                       env={"PATH": "/usr/bin:/bin", **env})
    assert r.returncode == 0, r.stdout + r.stderr
    key = r.stdout.split()[0]
    assert key.startswith("sk-sy-"), r.stdout
    return key


def post(url, body, headers=None):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"content-type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, dict(r.headers), json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()


USER_PASSWORD = {"type": "userPassword", "createSecret": True, "user": "gw", "password": "p4ss: #not a comment"}


def make_certs(d):
    """A private CA and a server certificate for 127.0.0.1 (openssl CLI)."""
    if not shutil.which("openssl"):
        pytest.skip("openssl missing: cannot make a CA for the TLS case")

    def run(*args):
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
        "-days", "2", "-subj", "/CN=switchyard-test-ca")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "srv.key", "-out", "srv.csr", "-subj", "/CN=localhost")
    (d / "ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    run("x509", "-req", "-in", "srv.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "srv.crt", "-days", "2", "-extfile", "ext")
    return (d / "ca.crt").read_text(), str(d / "srv.crt"), str(d / "srv.key")


# token: NATS token auth; userPassword: user/password auth (a password with
# YAML syntax in it); tls: token auth over TLS with a private CA from the
# chart's nats.tls.caSecret.
@pytest.fixture(scope="module", params=["token", "userPassword", "tls"])
def deployed(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wiring")
    double = Proc([DOUBLE], "listening on", stream="stdout")
    double_url = double.ready_line.strip().split("listening on ", 1)[1]
    procs = [double]
    nats = store = None
    consul = FakeConsul()
    try:
        # NATS demands the credentials of the chart's own Secret.
        values = full_values()
        if request.param == "userPassword":
            values["nats"]["auth"] = dict(USER_PASSWORD)
        creds = secret_data(objects(render(values)))["gw-nats"]
        if request.param == "userPassword":
            auth = ["--user", creds["user"], "--pass", creds["password"]]
        else:
            auth = ["--auth", creds["token"]]
        ca_pem = None
        if request.param == "tls":
            ca_pem, cert, key = make_certs(tmp)
            auth += ["--tls", "--tlscert", cert, "--tlskey", key]
        nats, store, nats_url = start_nats(auth)

        if request.param == "tls":
            values["nats"]["url"] = nats_url.replace("nats://", "tls://")
        else:
            values["nats"]["url"] = nats_url
            values["nats"]["tls"]["enabled"] = False
        values["otel"]["endpoint"] = f"http://127.0.0.1:{free_port()}"  # a collector that is down
        # The node's agent, ${HOST_IP} being 127.0.0.1 here.
        values["consul"]["address"] = values["consul"]["address"].replace(":8500", f":{consul.port}")
        for p in values["providers"]:
            if p["name"] == "up":
                p["base_url"] = double_url
        rendered = render(values)
        objs = objects(rendered)
        secrets = secret_data(objs)
        if ca_pem:
            secrets["nats-ca"] = {values["nats"]["tls"]["caKey"]: ca_pem}
        deployments = by_kind(objs, "Deployment")
        router_dep = [d for d in deployments if d["metadata"]["labels"]["app.kubernetes.io/component"] == "router"][0]
        workers = [d for d in deployments if d["metadata"]["labels"]["app.kubernetes.io/component"] == "worker"]

        def argv_env(dep, overrides=None):
            c = dep["spec"]["template"]["spec"]["containers"][0]
            assert c["command"] == [IMAGE_BINARY]
            path, content = config_file(objs, dep)
            local = tmp / f"{dep['metadata']['name']}.yaml"
            local.write_text(content)
            args = [str(local) if a == path else a for a in c["args"]]
            env = resolve_env(c, secrets)
            # Secret volumes become local directories, and variables that
            # point into their mount paths point there instead.
            pod = dep["spec"]["template"]["spec"]
            volumes = {v["name"]: v for v in pod["volumes"]}
            mounts = {}
            for m in c["volumeMounts"]:
                v = volumes[m["name"]]
                if "secret" in v:
                    d = tmp / f"{dep['metadata']['name']}-{m['name']}"
                    d.mkdir(exist_ok=True)
                    data = secrets[v["secret"]["secretName"]]
                    items = {i["key"]: i["path"] for i in v["secret"].get("items") or []} or {k: k for k in data}
                    for k, rel in items.items():
                        (d / rel).write_text(data[k])
                    mounts[m["mountPath"].rstrip("/")] = str(d)
            for name, value in env.items():
                for mount, local in mounts.items():
                    if value == mount or value.startswith(mount + "/"):
                        env[name] = local + value[len(mount):]
            env.update(overrides or {})
            return c, [SWITCHYARD, *args], env

        # Workers first (the router answers 503 for a provider with none).
        started = {}
        for dep in workers:
            c, argv, env = argv_env(dep)
            assert argv[1] == "worker"
            provider = argv[argv.index("--provider") + 1]
            health = {p["name"]: p["containerPort"] for p in c["ports"]}["health"]
            # The probe listener the chart sets is the port it declares.
            assert env["SWITCHYARD_HEALTH_ADDR"] == f"0.0.0.0:{health}"
            env["SWITCHYARD_HEALTH_ADDR"] = f"127.0.0.1:{free_port()}"
            started[provider] = (env, Proc(argv, "worker serving", env=clean_env(env)))
            procs.append(started[provider][1])

        c, argv, env = argv_env(router_dep)
        assert argv[1] == "router"
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        # The listeners the chart sets are the container ports it declares.
        assert env["SWITCHYARD_HTTP_ADDR"] == f"0.0.0.0:{ports['http']}"
        assert env["SWITCHYARD_GRPC_ADDR"] == f"0.0.0.0:{ports['grpc']}"
        http_addr = f"127.0.0.1:{free_port()}"
        grpc_addr = f"127.0.0.1:{free_port()}"
        env.update(SWITCHYARD_HTTP_ADDR=http_addr, SWITCHYARD_GRPC_ADDR=grpc_addr)
        router = Proc(argv, "router listening", env=clean_env(env))
        procs.append(router)
        base = f"http://{http_addr}"
        # While no key exists a loopback client needs none; then the first
        # key, made in the "pod"; from then on every request needs a key.
        chat = {"model": "demo", "messages": [{"role": "user", "content": "before any key"}]}
        status, _, body = post(base + "/v1/chat/completions", chat)
        assert status == 200, body
        api_key = create_key(rendered, base, env)
        yield {
            "base": base,
            "api_key": api_key,
            "secrets": secrets,
            "grpc_addr": grpc_addr,
            "router": router,
            "router_env": env,
            "workers": started,
            "double": double_url,
            "objs": objs,
            "consul": consul,
            "mode": request.param,
            "http_port": int(http_addr.rsplit(":", 1)[1]),
        }
    finally:
        with ThreadPoolExecutor(len(procs)) as pool:
            list(pool.map(lambda p: p.stop(), reversed(procs)))
        consul.stop()
        if nats:
            nats.kill()
            nats.wait()
            store.cleanup()


def test_router_listens_where_the_chart_says(deployed):
    assert deployed["router"].field("http_addr") == deployed["base"].removeprefix("http://")
    with urllib.request.urlopen(deployed["base"] + "/readyz", timeout=5) as r:
        assert r.status == 200
    host, port = deployed["grpc_addr"].split(":")
    socket.create_connection((host, int(port)), timeout=2).close()


def test_worker_probes_answer_where_the_chart_probes(deployed):
    for provider, (env, _proc) in deployed["workers"].items():
        base = "http://" + env["SWITCHYARD_HEALTH_ADDR"]
        for path in ("/healthz", "/readyz"):
            with urllib.request.urlopen(base + path, timeout=5) as r:
                assert r.status == 200, (provider, path)


def test_chat_through_router_and_workers_with_the_charts_key(deployed):
    status, headers, body = post(deployed["base"] + "/v1/chat/completions",
                                 {"model": "chat", "messages": [{"role": "user", "content": "hi"}]},
                                 bearer(deployed["api_key"]))
    assert status == 200, body
    lower = {k.lower(): v for k, v in headers.items()}
    assert lower["x-switchyard-provider"] == "up"
    assert body["choices"][0]["message"]["content"]
    # The worker sent the key from the chart's Secret, via api_key_env.
    with urllib.request.urlopen(deployed["double"].removesuffix("/v1") + "/_double/stats", timeout=5) as r:
        stats = json.loads(r.read())
    assert stats["last_authorization"] == "Bearer sk-test-created"


def test_demo_provider_and_helm_test_model(deployed):
    pod = by_kind(deployed["objs"], "Pod")[0]
    body = json.loads({e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}["BODY"])
    for model in ("demo", body["model"]):
        status, headers, answer = post(deployed["base"] + "/v1/chat/completions", dict(body, model=model),
                                       bearer(deployed["api_key"]))
        assert status == 200, answer


def run_helm_test_script(deployed, tmp_path, env):
    pod = by_kind(deployed["objs"], "Pod")[0]
    c = pod["spec"]["containers"][0]
    path = env["URL"].split("/", 3)[3]
    env = dict(env, URL=f"{deployed['base']}/{path}")
    script = c["args"][0].replace("/tmp/", f"{tmp_path}/")
    return subprocess.run([*c["command"], script], env={"PATH": os.environ["PATH"], **env},
                          capture_output=True, text=True, timeout=60)


def test_helm_test_script_passes_against_the_router(deployed, tmp_path):
    """The `helm test` pod's own script, run here with its URL pointed at
    the local router (its /tmp is a local directory) and the key made in
    the fixture in tests.apiKey's Secret."""
    if not shutil.which("curl"):
        pytest.skip("curl missing")
    c = by_kind(deployed["objs"], "Pod")[0]["spec"]["containers"][0]
    secrets = dict(deployed["secrets"], **{"switchyard-test-key": {"api-key": deployed["api_key"]}})
    env = resolve_env(c, secrets)
    assert env["API_KEY"] == deployed["api_key"] and env["EXPECT"] == "200"
    r = run_helm_test_script(deployed, tmp_path, env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "HTTP 200" in r.stdout
    assert deployed["api_key"] not in r.stdout + r.stderr
    # And it fails on anything else: a 404, a missing or a wrong key.
    r = run_helm_test_script(deployed, tmp_path, dict(env, BODY=json.dumps(
        {"model": "no-such-model", "messages": [{"role": "user", "content": "x"}]})))
    assert r.returncode != 0 and "HTTP 404" in r.stdout
    no_key = {k: v for k, v in env.items() if k != "API_KEY"}
    r = run_helm_test_script(deployed, tmp_path, no_key)
    assert r.returncode != 0 and "HTTP 401" in r.stdout and "tests.apiKey" in r.stdout
    r = run_helm_test_script(deployed, tmp_path, dict(env, API_KEY="sk-sy-wrong-key"))
    assert r.returncode != 0 and "HTTP 401" in r.stdout
    # Without tests.apiKey the pod expects the 401 a stranger gets, and says
    # that no chat was tested.
    r = run_helm_test_script(deployed, tmp_path, dict(no_key, EXPECT="401"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "No chat was tested" in r.stdout


def test_every_request_needs_the_key_once_one_exists(deployed):
    body = {"model": "demo", "messages": [{"role": "user", "content": "x"}]}
    status, _, answer = post(deployed["base"] + "/v1/chat/completions", body)
    assert status == 401 and "invalid_api_key" in answer
    status, _, answer = post(deployed["base"] + "/v1/chat/completions", body, bearer("sk-sy-abc-def"))
    assert status == 401
    status, _, answer = post(deployed["base"] + "/v1/chat/completions", body, bearer(deployed["api_key"]))
    assert status == 200, answer


def test_keys_only_in_their_workers(deployed):
    keys = {"sk-test-created", "sk-ant-standin"}
    assert not keys & set(deployed["router_env"].values())
    assert deployed["workers"]["up"][0]["SWITCHYARD_UP_API_KEY"] == "sk-test-created"
    assert deployed["workers"]["claude"][0]["ANTHROPIC_API_KEY"] == "sk-ant-standin"
    assert not keys & set(deployed["workers"]["demo"][0].values())
    assert "sk-ant-standin" not in deployed["workers"]["up"][0].values()


def test_every_pod_registers_with_the_nodes_consul_agent(deployed):
    consul = deployed["consul"]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(consul.registrations()) < 4:
        time.sleep(0.05)
    regs = consul.registrations()
    routers = [r for r in regs if r["Name"] == "gw-router"]
    workers = [r for r in regs if r["Name"] == "gw-worker"]
    assert len(routers) == 1 and len(workers) == 3, regs
    # ${POD_IP} from the downward API, the router's HTTP port, its gRPC check.
    assert routers[0]["Address"] == "127.0.0.1"
    assert routers[0]["Port"] == deployed["http_port"]
    assert deployed["grpc_addr"] in json.dumps(routers[0])
    assert {"env-test", "team-platform"} <= set(routers[0]["Tags"])
    assert sorted(w["Meta"]["provider"] for w in workers) == ["claude", "demo", "up"]
    # The ACL token from the chart's Secret reference (CONSUL_HTTP_TOKEN).
    assert {token for _, _, token, _ in consul.requests} == {"consul-standin"}


def test_nats_tls_trusts_the_charts_ca(deployed):
    env = deployed["router_env"]
    if deployed["mode"] != "tls":
        assert "SSL_CERT_FILE" not in env and "SSL_CERT_DIR" not in env
        return
    # The router and workers connected over tls:// to a server whose
    # certificate only the chart's CA Secret vouches for; the image's public
    # roots stay trusted for upstream calls.
    assert env["SSL_CERT_FILE"] == "/etc/ssl/certs/ca-certificates.crt"
    assert os.path.isfile(os.path.join(env["SSL_CERT_DIR"], "ca.crt"))
