"""deploy/docker/Dockerfile, statically (no container engine here): stages,
the cached dependency layer, a non-root distroless runtime, and the binary
path the chart runs."""

import fnmatch
import json
import re
import tomllib

from chart_helpers import DOCKERFILE, ROOT, by_kind, objects, render


def instructions():
    """[(INSTRUCTION, text)] with line continuations joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def stages():
    """Instructions grouped by stage: [(FROM text, [(INSTR, text)])]."""
    out = []
    for ins, rest in instructions():
        if ins == "FROM":
            out.append((rest, []))
        elif out:
            out[-1][1].append((ins, rest))
    return out


def args():
    return dict(re.match(r"(\w+)=(\S+)", rest).groups() for ins, rest in instructions() if ins == "ARG" and "=" in rest)


def test_stages_planner_builder_and_distroless_nonroot():
    s = stages()
    a = args()
    assert [f for f, _ in s] == ["${RUST_IMAGE} AS planner", "${RUST_IMAGE} AS builder", "${RUNTIME_IMAGE}"]
    assert a["RUST_IMAGE"] == "rust:1.95-bookworm"
    assert a["RUNTIME_IMAGE"] == "gcr.io/distroless/cc-debian12:nonroot"


def test_dependency_layer_is_built_on_stubs_before_the_sources():
    planner, builder = stages()[0][1], stages()[1][1]
    # The planner keeps manifests, the lock file, build scripts and protos,
    # and stubs every other .rs file: whatever the workspace members are.
    stub = " ".join(rest for ins, rest in planner if ins == "RUN")
    assert "! -name build.rs" in stub and "echo 'fn main() {}' > /tmp/stub.rs" in stub
    assert "! -name Cargo.toml ! -name Cargo.lock ! -path './proto/*' -delete" in stub
    runs = [i for i, (ins, rest) in enumerate(builder) if ins == "RUN" and "cargo build --release" in rest]
    assert len(runs) == 2, "one build on the stubs, one on the real sources"
    copy_planner = builder.index(("COPY", "--from=planner /src ./"))
    copy_sources = builder.index(("COPY", ". ."))
    assert copy_planner < runs[0] < copy_sources < runs[1]
    for i in runs:
        assert "-p switchyard" in builder[i][1] and "--locked" in builder[i][1]
    # The real sources are touched so cargo does not keep the stubs' builds.
    assert "touch" in builder[runs[1]][1]
    # Every explicit target path of every workspace member is a .rs file
    # (so it is stubbed, not deleted) under a directory the context sends.
    members = tomllib.loads((ROOT / "Cargo.toml").read_text())["workspace"]["members"]
    for m in members:
        manifest = tomllib.loads((ROOT / m / "Cargo.toml").read_text())
        for t in manifest.get("bin", []) + [manifest.get("lib", {})]:
            if "path" in t:
                assert t["path"].endswith(".rs")
                assert dockerignore_includes(f"{m}/{t['path']}"), f"{m}/{t['path']} excluded by .dockerignore"
        assert dockerignore_includes(f"{m}/Cargo.toml")


def test_runtime_stage_runs_one_binary_as_non_root():
    runtime = stages()[-1][1]
    copies = [rest for ins, rest in runtime if ins == "COPY"]
    assert copies == ["--from=builder /out/switchyard /usr/local/bin/switchyard"]
    user = [rest for ins, rest in runtime if ins == "USER"]
    assert user and user[-1].split(":")[0] not in ("root", "0")
    assert user[-1].split(":")[0] == "65532"
    assert json.loads(dict(runtime)["ENTRYPOINT"]) == ["switchyard"]
    assert json.loads(dict(runtime)["CMD"]) == ["serve"]
    assert sorted(dict(runtime)["EXPOSE"].split()) == ["50051", "8080"]


def test_chart_runs_the_image_binary_as_the_image_user():
    objs = objects(render({}))
    for d in by_kind(objs, "Deployment"):
        pod = d["spec"]["template"]["spec"]
        c = pod["containers"][0]
        assert c["command"] == ["/usr/local/bin/switchyard"]
        assert pod["securityContext"]["runAsUser"] == 65532
    for port in ("8080", "50051"):
        assert any(p["containerPort"] == int(port) for d in by_kind(objs, "Deployment") for p in d["spec"]["template"]["spec"]["containers"][0].get("ports", []))


def dockerignore_includes(path):
    """Whether the build context keeps `path` (last matching pattern wins)."""
    patterns = [l.strip() for l in (ROOT / ".dockerignore").read_text().splitlines() if l.strip() and not l.startswith("#")]
    keep = True
    for p in patterns:
        neg = p.startswith("!")
        pat = (p[1:] if neg else p).rstrip("/")
        segs = path.split("/")
        if pat.startswith("**/"):
            hit = any(fnmatch.fnmatch(seg, pat[3:]) for seg in segs)
        else:
            hit = any(fnmatch.fnmatch("/".join(segs[:i]), pat) for i in range(1, len(segs) + 1))
        if hit:
            keep = neg
    return keep


def test_dockerignore_keeps_the_sources_and_drops_the_rest():
    for path in ["Cargo.toml", "Cargo.lock", "proto/switchyard/bus/v1/bus.proto", "crates/config/src/lib.rs",
                 "services/switchyard/src/main.rs", "crates/proto/build.rs"]:
        assert dockerignore_includes(path), path
    for path in ["target/debug/switchyard", ".venv/bin/python", ".git/HEAD", "docs/operations.md",
                 "crates/config/target/x", "deploy/helm/switchyard/values.yaml"]:
        assert not dockerignore_includes(path), path
