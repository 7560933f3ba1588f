"""Deployment artefacts of deploy/, checked statically: no cluster and no Docker engine are needed.

- Kubernetes manifests validate against the API's OpenAPI schemas (kubernetes-validate, strict: unknown
  fields fail) for the oldest and newest version we claim; the Prometheus Operator's kinds, which those
  schemas lack, are checked structurally here.
- The wiring agrees everywhere: probe paths are routes the app really serves, ports and names match
  across Dockerfile, Deployment, Service, ServiceMonitor, NetworkPolicy and compose, the configs pass
  `switchyard check-config`, the shutdown timings add up.
- The Dockerfile is parsed (multi-stage, non-root, HEALTHCHECK, no compilers in the final stage) and its
  build commands run for real in a clean venv from the build context its .dockerignore allows.
- promtool and `kubectl kustomize` run when installed, and are skipped cleanly otherwise.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.config import default_config, load_config
from tests.support import ROOT, dockerfile
from tests.support.dockerfile import Stage, ignore_patterns, ignored, parse_dockerfile
from tests.support.servers import ServerThread, free_port

DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
DOCKERFILE = DEPLOY / "Dockerfile"
COMPOSE = DEPLOY / "compose.yaml"
ALERTS = DEPLOY / "prometheus" / "alerts.yaml"
DASHBOARD = DEPLOY / "grafana" / "switchyard.json"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"

# Kubernetes versions the manifests must be valid for: the oldest we claim (the preStop `sleep` action
# is on by default from 1.30) and the newest schema kubernetes-validate ships.
OLDEST_K8S = "1.30"
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}
SECRET_EXAMPLE = "secret.example.yaml"
GATEWAY_PORT = 8080
DNS_1123 = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:-[^}]*)?\}")


# -- loading -------------------------------------------------------------------------------------------


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]


def _kustomization(folder: Path = K8S) -> dict[str, Any]:
    return yaml.safe_load((folder / "kustomization.yaml").read_text(encoding="utf-8"))


def _resource_files() -> list[Path]:
    """The manifest files the base lists (folders like ../grafana are kustomizations, not files)."""
    return [K8S / r for r in _kustomization()["resources"] if (K8S / r).is_file()]


def _objects() -> list[dict[str, Any]]:
    return [obj for path in _resource_files() for obj in _docs(path)]


def _one(kind: str, name: str | None = None) -> dict[str, Any]:
    found = [o for o in _objects() if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def _gateway() -> dict[str, Any]:
    return _one("Deployment", "switchyard")


def _pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    return workload["spec"]["template"]["spec"]


def _container(workload: dict[str, Any]) -> dict[str, Any]:
    (container,) = _pod_spec(workload)["containers"]
    return container


def _pod_labels(workload: dict[str, Any]) -> dict[str, str]:
    return workload["spec"]["template"]["metadata"]["labels"]


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


def _selects(match_labels: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(match_labels) and all(labels.get(k) == v for k, v in match_labels.items())


def _secret_env() -> dict[str, str]:
    (secret,) = _docs(K8S / SECRET_EXAMPLE)
    return dict(secret["stringData"])


def _seconds(value: str | int) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)?", str(value))
    assert m, f"not a duration: {value!r}"
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]


def _generated_configmap(name: str) -> dict[str, Any]:
    """A ConfigMap kustomize generates, as it builds it (the name's hash suffix aside)."""
    for folder in (K8S, DEPLOY / "grafana"):
        kust = _kustomization(folder)
        for gen in kust.get("configMapGenerator", []):
            if gen["name"] != name:
                continue
            data = {Path(f).name: (folder / f).read_text(encoding="utf-8") for f in gen["files"]}
            meta: dict[str, Any] = {"name": name, "namespace": _kustomization()["namespace"]}
            if labels := kust.get("generatorOptions", {}).get("labels"):
                meta["labels"] = labels
            return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data}
    raise AssertionError(f"no configMapGenerator makes {name}")


def _sync_module() -> Any:
    spec = importlib.util.spec_from_file_location("sync_embedded", DEPLOY / "sync_embedded.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- Dockerfile parsing --------------------------------------------------------------------------------


def _stages() -> list[Stage]:
    return parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))


def _final() -> Stage:
    return _stages()[-1]


def _exec_form(arg: str) -> list[str]:
    value = json.loads(arg)
    assert isinstance(value, list), f"use the exec (JSON) form: {arg}"
    return value


def _image_uid() -> int:
    user = _final().all("USER")[-1]
    return int(user.split(":")[0])


def _healthcheck_command() -> list[str]:
    (hc,) = _final().all("HEALTHCHECK")
    _, _, cmd = hc.partition("CMD ")
    return _exec_form(cmd)


# -- .dockerignore: the build context ------------------------------------------------------------------


def build_context() -> list[str]:
    """The files `docker build -f deploy/Dockerfile .` sends from the repository root."""
    return dockerfile.build_context(ROOT, DEPLOY / "Dockerfile.dockerignore")


# ======================================================================================================
# Kubernetes
# ======================================================================================================


def test_kustomization_lists_every_file_in_the_folder() -> None:
    kust = _kustomization()
    listed = set(kust["resources"]) | {f for g in kust.get("configMapGenerator", []) for f in g["files"]}
    on_disk = {p.name for p in K8S.iterdir() if p.is_file()}
    # The Secret example stays out on purpose: applying placeholders would overwrite the real keys.
    assert SECRET_EXAMPLE not in listed
    assert {p for p in listed if not p.startswith("../")} == on_disk - {"kustomization.yaml", SECRET_EXAMPLE}
    for ref in listed:
        assert (K8S / ref).exists(), f"kustomization.yaml lists {ref}, which does not exist"
    grafana = _kustomization(DEPLOY / "grafana")
    assert [f for g in grafana["configMapGenerator"] for f in g["files"]] == ["switchyard.json"]
    assert "../grafana" in kust["resources"]


def test_every_kind_the_brief_asks_for_is_there() -> None:
    kinds = {o["kind"] for o in _objects()}
    assert {
        "Namespace",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "StatefulSet",
        "ServiceMonitor",
    } <= kinds
    assert _one("HorizontalPodAutoscaler")["apiVersion"] == "autoscaling/v2"
    generated = [g["name"] for f in (K8S, DEPLOY / "grafana") for g in _kustomization(f)["configMapGenerator"]]
    assert generated == ["switchyard-config", "switchyard-grafana-dashboard"]


def _validate_schema(obj: dict[str, Any], version: str) -> None:
    kv = pytest.importorskip("kubernetes_validate")
    try:
        kv.validate(obj, version, strict=True)
    except kv.ValidationError as e:
        pytest.fail(f"{obj['kind']}/{obj['metadata'].get('name')} (Kubernetes {version}): {e}")


def _versions() -> list[str]:
    kv = pytest.importorskip("kubernetes_validate")
    return [OLDEST_K8S, kv.latest_version()]


def test_manifests_validate_against_the_kubernetes_schemas() -> None:
    objects = [o for o in _objects() if o["kind"] not in CRD_KINDS]
    objects += [_docs(K8S / SECRET_EXAMPLE)[0], _generated_configmap("switchyard-config")]
    for version in _versions():
        for obj in objects:
            _validate_schema(obj, version)


def test_generated_dashboard_configmap_validates() -> None:
    dashboard = _generated_configmap("switchyard-grafana-dashboard")
    for version in _versions():
        _validate_schema(dashboard, version)
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    json.loads(dashboard["data"]["switchyard.json"])
    # kubectl apply (client side) keeps the whole object in an annotation capped at 256 KiB.
    assert len(dashboard["data"]["switchyard.json"].encode()) < 256 * 1024


def test_every_object_is_named_and_labelled() -> None:
    for obj in _objects():
        name = obj["metadata"]["name"]
        assert DNS_1123.fullmatch(name) and len(name) <= 63, name
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "switchyard", name


def check_service_monitor(sm: dict[str, Any], service: dict[str, Any]) -> None:
    """What the Prometheus Operator's CRD requires, and that it points at the gateway's Service."""
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(sm) <= {"apiVersion", "kind", "metadata", "spec"}
    spec = sm["spec"]
    assert _selects(spec["selector"]["matchLabels"], service["metadata"]["labels"])
    assert spec["endpoints"], "no endpoints"
    port_names = {p["name"] for p in service["spec"]["ports"]}
    for ep in spec["endpoints"]:
        assert set(ep) <= {"port", "path", "interval", "scrapeTimeout", "scheme", "honorLabels", "relabelings"}
        assert ep["port"] in port_names
        assert ep["path"].startswith("/")
        assert _seconds(ep["scrapeTimeout"]) <= _seconds(ep["interval"])


def check_rule_groups(spec: dict[str, Any]) -> None:
    """A Prometheus rule file's structure (PrometheusRule.spec is the same shape)."""
    groups = spec["groups"]
    assert groups and len({g["name"] for g in groups}) == len(groups), "group names must be unique"
    for group in groups:
        assert set(group) <= {"name", "interval", "limit", "rules", "labels", "query_offset"}
        for rule in group["rules"]:
            assert ("alert" in rule) != ("record" in rule), f"alert xor record: {rule}"
            assert isinstance(rule["expr"], (str, int, float)) and str(rule["expr"]).strip()
            assert set(rule) <= {"alert", "record", "expr", "for", "keep_firing_for", "labels", "annotations"}
            if "for" in rule:
                assert re.fullmatch(r"(\d+(ms|s|m|h|d|w|y))+", rule["for"]), rule["for"]
            for key in ("labels", "annotations"):
                assert all(isinstance(v, str) for v in rule.get(key, {}).values()), f"{key} values are strings"


def test_service_monitor_scrapes_the_gateway_service() -> None:
    sm = _one("ServiceMonitor")
    check_service_monitor(sm, _one("Service", "switchyard"))
    assert sm["spec"]["endpoints"][0]["path"] == "/metrics"


def test_prometheus_rule_is_the_alerts_file_and_up_to_date() -> None:
    alerts = ALERTS.read_text(encoding="utf-8")
    sync = _sync_module()
    rule_path = K8S / "prometheusrule.yaml"
    assert rule_path.exists() and rule_path.read_text(encoding="utf-8") == sync.render_prometheus_rule(alerts), (
        "deploy/kubernetes/prometheusrule.yaml is stale: run  python deploy/sync_embedded.py"
    )
    (rule,) = _docs(rule_path)
    assert rule["kind"] == "PrometheusRule" and rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["spec"] == yaml.safe_load(alerts)
    check_rule_groups(rule["spec"])


def test_rule_renderer_keeps_text_and_structure() -> None:
    source = "# note\ngroups:\n  - name: g\n    rules:\n\n      - alert: A\n        expr: up == 0\n"
    source += "        annotations:\n          description: |\n            two\n              lines\n"
    rendered = _sync_module().render_prometheus_rule(source)
    assert "  # note\n" in rendered and "\n\n" in rendered
    assert yaml.safe_load(rendered)["spec"] == yaml.safe_load(source)
    with pytest.raises(ValueError):
        _sync_module().render_prometheus_rule("groups: []\n---\ngroups: []\n")


# -- the gateway Deployment ----------------------------------------------------------------------------


def test_deployment_runs_non_root_on_a_read_only_root() -> None:
    dep = _gateway()
    pod = _pod_spec(dep)
    c = _container(dep)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == _image_uid() != 0
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod["automountServiceAccountToken"] is False
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]


def test_deployment_has_writable_dirs_where_the_app_writes() -> None:
    dep = _gateway()
    c = _container(dep)
    empty_dirs = {v["name"] for v in _pod_spec(dep)["volumes"] if "emptyDir" in v}
    writable = {m["mountPath"] for m in c["volumeMounts"] if m["name"] in empty_dirs and not m.get("readOnly")}
    multiproc = _env(c)["PROMETHEUS_MULTIPROC_DIR"]
    assert {"/tmp", multiproc} <= writable
    assert multiproc == _final().env()["PROMETHEUS_MULTIPROC_DIR"]


def test_deployment_mounts_the_generated_config_where_the_image_reads_it() -> None:
    dep = _gateway()
    c = _container(dep)
    volumes = {v["name"]: v for v in _pod_spec(dep)["volumes"]}
    (mount,) = [m for m in c["volumeMounts"] if "configMap" in volumes[m["name"]]]
    assert mount["readOnly"] is True
    assert volumes[mount["name"]]["configMap"]["name"] == "switchyard-config"
    assert f"{mount['mountPath']}/config.yaml" == _env(c)["SWITCHYARD_CONFIG"] == _final().env()["SWITCHYARD_CONFIG"]
    (secret,) = _docs(K8S / SECRET_EXAMPLE)
    assert [e["secretRef"]["name"] for e in c["envFrom"]] == [secret["metadata"]["name"]]
    # Service links would inject SWITCHYARD_PORT=tcp://... into the gateway's own variable namespace.
    assert _pod_spec(dep)["enableServiceLinks"] is False


def test_probes_and_ports_agree_with_the_image() -> None:
    c = _container(_gateway())
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"http": GATEWAY_PORT}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        get = c[probe]["httpGet"]
        assert ports.get(get["port"], get["port"]) == GATEWAY_PORT, probe
    assert c["livenessProbe"]["httpGet"]["path"] == c["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    args = c["args"]
    assert args[0] == "serve" and args[args.index("--port") + 1] == str(GATEWAY_PORT)
    assert _exec_form(_final().all("CMD")[-1]) == args
    assert _final().all("EXPOSE") == [str(GATEWAY_PORT)]
    assert f"127.0.0.1:{GATEWAY_PORT}/healthz" in " ".join(_healthcheck_command())


def test_termination_grace_covers_prestop_and_drain() -> None:
    pod = _pod_spec(_gateway())
    pre_stop = _container(_gateway())["lifecycle"]["preStop"]["sleep"]["seconds"]
    server = load_config(K8S / "config.yaml", env=_secret_env()).server
    assert 3 <= pre_stop <= 15
    # Endpoints drain during preStop; on SIGTERM /readyz is 503 for drain_delay, then uvicorn drains for
    # shutdown_grace; the margin covers the final usage flush and process exit.
    assert pod["terminationGracePeriodSeconds"] >= pre_stop + server.drain_delay + server.shutdown_grace + 10


def test_rollout_and_spread() -> None:
    dep = _gateway()
    assert "replicas" not in dep["spec"], "the HPA owns replicas; a fixed value resets it on every apply"
    rolling = dep["spec"]["strategy"]["rollingUpdate"]
    assert str(rolling["maxUnavailable"]) in ("0", "0%")
    labels = _pod_labels(dep)
    assert _selects(dep["spec"]["selector"]["matchLabels"], labels)
    spread = _pod_spec(dep)["topologySpreadConstraints"]
    assert {s["topologyKey"] for s in spread} == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}
    assert all(_selects(s["labelSelector"]["matchLabels"], labels) for s in spread)


def test_resources_and_workers_per_core() -> None:
    c = _container(_gateway())
    res = c["resources"]
    assert set(res["requests"]) >= {"cpu", "memory"} and set(res["limits"]) >= {"cpu", "memory"}
    # One worker per core the pod is given.
    assert int(_env(c)["SWITCHYARD_WORKERS"]) == int(res["requests"]["cpu"])


def test_service_hpa_pdb_select_the_gateway_pods() -> None:
    labels = _pod_labels(_gateway())
    svc = _one("Service", "switchyard")
    assert _selects(svc["spec"]["selector"], labels)
    (port,) = svc["spec"]["ports"]
    assert port["port"] == GATEWAY_PORT and port["targetPort"] == "http"
    hpa = _one("HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "switchyard"}
    assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    pdb = _one("PodDisruptionBudget")
    assert _selects(pdb["spec"]["selector"]["matchLabels"], labels)
    assert pdb["spec"]["maxUnavailable"] < hpa["spec"]["minReplicas"]


def _policy_ports(rule: dict[str, Any]) -> set[tuple[str, int]]:
    return {(p.get("protocol", "TCP"), p["port"]) for p in rule.get("ports", [])}


def test_network_policies() -> None:
    gw_labels = _pod_labels(_gateway())
    redis = _one("StatefulSet", "switchyard-redis")
    policy = _one("NetworkPolicy", "switchyard")
    spec = policy["spec"]
    assert _selects(spec["podSelector"]["matchLabels"], gw_labels)
    assert set(spec["policyTypes"]) == {"Ingress", "Egress"}
    (ingress,) = spec["ingress"]
    assert _policy_ports(ingress) == {("TCP", GATEWAY_PORT)}
    assert ingress["from"] == [{"namespaceSelector": {}}]  # in-cluster only: no ipBlock from outside
    egress = spec["egress"]
    assert any(_policy_ports(r) == {("UDP", 53), ("TCP", 53)} for r in egress), "DNS"
    assert any(
        _policy_ports(r) == {("TCP", 6379)} and _selects(r["to"][0]["podSelector"]["matchLabels"], _pod_labels(redis))
        for r in egress
    ), "Redis"
    assert any(_policy_ports(r) == {("TCP", 443)} for r in egress), "HTTPS"
    redis_policy = _one("NetworkPolicy", "switchyard-redis")["spec"]
    assert _selects(redis_policy["podSelector"]["matchLabels"], _pod_labels(redis))
    (from_gateway,) = redis_policy["ingress"]
    assert _selects(from_gateway["from"][0]["podSelector"]["matchLabels"], gw_labels)
    assert not redis_policy.get("egress")


def test_redis_is_where_the_config_looks_and_runs_non_root() -> None:
    redis = _one("StatefulSet", "switchyard-redis")
    svc = _one("Service", "switchyard-redis")
    assert _selects(svc["spec"]["selector"], _pod_labels(redis))
    assert svc["spec"]["ports"][0]["port"] == 6379
    cfg = load_config(K8S / "config.yaml", env=_secret_env())  # REDIS_URL unset: the in-cluster default
    assert cfg.usage.redis_url == f"redis://{svc['metadata']['name']}:6379/0"
    pod = _pod_spec(redis)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert _container(redis)["securityContext"]["readOnlyRootFilesystem"] is True
    assert "noeviction" in _container(redis)["args"]


def test_kustomize_sets_the_image() -> None:
    (image,) = _kustomization()["images"]
    assert image["name"] == _container(_gateway())["image"]
    assert image["newTag"]


# -- the config the ConfigMap holds --------------------------------------------------------------------


def _check_config(path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The real CLI (`switchyard check-config`), with nothing from this process's environment but PATH."""
    return subprocess.run(
        [sys.executable, "-m", "gateway", "check-config", str(path)],
        env={"PATH": os.environ.get("PATH", ""), **env},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


def test_kubernetes_config_passes_check_config_with_the_secret_variables() -> None:
    r = _check_config(K8S / "config.yaml", _secret_env())
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("ok:") and "usage store: redis" in r.stdout
    # And without the Secret, every missing variable is named (the pod would fail loudly, not serve).
    r = _check_config(K8S / "config.yaml", {})
    assert r.returncode == 2
    for var in ("TEAM_A_KEY", "OPS_KEY_SHA256", "OPENAI_API_KEY"):
        assert var in r.stderr


def test_config_and_secret_name_the_same_variables() -> None:
    text = (K8S / "config.yaml").read_text(encoding="utf-8")
    live = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    required = {m.group(1) for m in ENV_REF.finditer(live) if m.group(2) is None}
    referenced = {m.group(1) for m in ENV_REF.finditer(live)}
    secret = set(_secret_env())
    assert required <= secret, f"not in {SECRET_EXAMPLE}: {required - secret}"
    assert secret <= referenced, f"in {SECRET_EXAMPLE} but unused: {secret - referenced}"


def test_no_credential_is_written_into_a_manifest_or_config() -> None:
    def values(node: Any, key: str = "") -> Iterator[tuple[str, Any]]:
        if isinstance(node, dict):
            for k, v in node.items():
                yield from values(v, str(k))
        elif isinstance(node, list):
            for v in node:
                yield from values(v, key)
        else:
            yield key, node

    cfg = yaml.safe_load((K8S / "config.yaml").read_text(encoding="utf-8"))
    for key, value in values(cfg):
        if key in ("key", "api_key", "sha256", "aws_access_key_id", "aws_secret_access_key", "redis_url"):
            assert ENV_REF.fullmatch(str(value)), f"config.yaml {key}: must be a ${{VAR}} from the Secret"
    for value in _secret_env().values():
        assert value.startswith("REPLACE") or set(value) == {"0"}, f"not a placeholder: {value!r}"


# -- routes the manifests name are served by the app ---------------------------------------------------


@pytest.fixture(scope="module")
def app_client() -> Iterator[TestClient]:
    with TestClient(create_app(default_config())) as client:
        yield client


def test_probe_paths_are_routes_the_app_serves(app_client: TestClient) -> None:
    c = _container(_gateway())
    for probe in ("startupProbe", "livenessProbe"):
        assert app_client.get(c[probe]["httpGet"]["path"]).status_code == 200, probe
    ready = app_client.get(c["readinessProbe"]["httpGet"]["path"])
    assert ready.status_code == 200, ready.text  # started, not shutting down: ready


def test_metrics_path_is_a_route_the_app_serves(app_client: TestClient) -> None:
    path = _one("ServiceMonitor")["spec"]["endpoints"][0]["path"]
    prom = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    assert prom["scrape_configs"][0]["metrics_path"] == path
    r = app_client.get(path)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")


def test_image_healthcheck_command_tells_up_from_down() -> None:
    """The HEALTHCHECK's own Python one-liner, pointed at a real server, then at a closed port."""
    cmd = _healthcheck_command()
    assert cmd[0] == "python", "slim images have no curl: the probe must use the venv's Python"
    with ServerThread(create_app(default_config())) as srv:
        up = [sys.executable, *[a.replace(f"127.0.0.1:{GATEWAY_PORT}", f"127.0.0.1:{srv.port}") for a in cmd[1:]]]
        assert subprocess.run(up, capture_output=True, timeout=30).returncode == 0
    closed = free_port()
    down = [sys.executable, *[a.replace(f"127.0.0.1:{GATEWAY_PORT}", f"127.0.0.1:{closed}") for a in cmd[1:]]]
    assert subprocess.run(down, capture_output=True, timeout=30).returncode != 0


# -- tools, when installed -----------------------------------------------------------------------------


def _kustomize_cmd() -> list[str] | None:
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    return None


@pytest.mark.skipif(_kustomize_cmd() is None, reason="neither kustomize nor kubectl is installed")
def test_kustomize_build_renders_valid_objects() -> None:
    cmd = _kustomize_cmd()
    assert cmd is not None
    r = subprocess.run([*cmd, str(K8S)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    objects = [o for o in yaml.safe_load_all(r.stdout) if o]
    by_kind = {(o["kind"], o["metadata"]["name"]) for o in objects}
    for obj in objects:
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == "switchyard", obj["metadata"]["name"]
        if obj["kind"] not in CRD_KINDS:
            _validate_schema(obj, OLDEST_K8S)
    dep = next(o for o in objects if o["kind"] == "Deployment")
    config_map = next(v["configMap"]["name"] for v in _pod_spec(dep)["volumes"] if "configMap" in v)
    assert config_map.startswith("switchyard-config-") and ("ConfigMap", config_map) in by_kind
    assert _container(dep)["image"] == f"switchyard:{_kustomization()['images'][0]['newTag']}"
    dashboard = next(o for o in objects if o["metadata"]["name"] == "switchyard-grafana-dashboard")
    assert dashboard["data"]["switchyard.json"] == DASHBOARD.read_text(encoding="utf-8")


PROMTOOL = shutil.which("promtool")


@pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed (apt-get install prometheus)")
def test_promtool_accepts_the_prometheus_config_and_rules(tmp_path: Path) -> None:
    assert PROMTOOL is not None
    # `check config` also loads the rule files the config names.
    r = subprocess.run(
        [PROMTOOL, "check", "config", str(PROMETHEUS_CONFIG)], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0, r.stdout + r.stderr
    (rule,) = _docs(K8S / "prometheusrule.yaml")
    spec = tmp_path / "prometheusrule-spec.yaml"
    spec.write_text(yaml.safe_dump(rule["spec"]), encoding="utf-8")
    r = subprocess.run([PROMTOOL, "check", "rules", str(spec)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


# ======================================================================================================
# Compose
# ======================================================================================================


def _compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def _binds(service: dict[str, Any]) -> dict[str, Path]:
    """Container path -> host path for the service's bind mounts (short syntax, relative to deploy/)."""
    out = {}
    for vol in service.get("volumes", []):
        src, dst = vol.split(":")[:2]
        if src.startswith("."):
            out[dst] = (DEPLOY / src).resolve()
    return out


def test_compose_builds_the_gateway_from_the_repo_root() -> None:
    gw = _compose()["services"]["gateway"]
    context = (DEPLOY / gw["build"]["context"]).resolve()
    assert context == ROOT and (context / "pyproject.toml").exists()
    assert (context / gw["build"]["dockerfile"]).resolve() == DOCKERFILE


def test_compose_mounts_ports_and_volumes_exist() -> None:
    compose = _compose()
    for name, service in compose["services"].items():
        for vol in service.get("volumes", []):
            src = vol.split(":")[0]
            if not src.startswith("."):
                assert src in compose["volumes"], f"{name}: undeclared volume {src}"
        for dst, src in _binds(service).items():
            assert src.exists(), f"{name}: {src} (mounted at {dst}) does not exist"
        for port in service.get("ports", []):
            # Loopback only: a demo key and an anonymous Grafana must not face the network.
            assert str(port).startswith("127.0.0.1:"), f"{name}: {port}"
    gw = compose["services"]["gateway"]
    assert [p.rsplit(":", 1)[1] for p in gw["ports"]] == _final().all("EXPOSE")
    assert _final().env()["SWITCHYARD_CONFIG"] in _binds(gw)


def test_compose_gateway_runs_like_the_pod() -> None:
    gw = _compose()["services"]["gateway"]
    assert gw["read_only"] is True
    tmpfs = {t.split(":")[0] for t in gw["tmpfs"]}
    assert {"/tmp", _final().env()["PROMETHEUS_MULTIPROC_DIR"]} <= tmpfs
    cfg = load_config(_binds(gw)[_final().env()["SWITCHYARD_CONFIG"]], env=gw["environment"])
    assert _seconds(gw["stop_grace_period"]) >= cfg.server.drain_delay + cfg.server.shutdown_grace + 10
    assert gw["depends_on"]["redis"]["condition"] == "service_healthy"
    assert cfg.usage.redis_url == gw["environment"]["REDIS_URL"] == "redis://redis:6379/0"


def test_compose_config_passes_check_config() -> None:
    gw = _compose()["services"]["gateway"]
    r = _check_config(DEPLOY / "compose" / "config.yaml", {"REDIS_URL": gw["environment"]["REDIS_URL"]})
    assert r.returncode == 0, r.stderr
    assert "mock" in r.stdout and "usage store: redis" in r.stdout


def test_compose_prometheus_scrapes_the_gateway_and_loads_the_rules() -> None:
    compose = _compose()
    prom_service = compose["services"]["prometheus"]
    binds = _binds(prom_service)
    config_target = next(dst for dst, src in binds.items() if src == PROMETHEUS_CONFIG)
    assert f"--config.file={config_target}" in prom_service["command"]
    prom = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    (job,) = prom["scrape_configs"]
    (target,) = job["static_configs"][0]["targets"]
    host, port = target.split(":")
    assert host in compose["services"] and int(port) == GATEWAY_PORT
    for rule_file in prom["rule_files"]:
        # Relative to the config file: the same name next to it on disk and in the container.
        assert (PROMETHEUS_CONFIG.parent / rule_file).resolve() == ALERTS
        assert binds[str(Path(config_target).parent / rule_file)] == ALERTS


def test_compose_grafana_provisions_the_datasource_and_dashboard() -> None:
    compose = _compose()
    grafana = compose["services"]["grafana"]
    binds = _binds(grafana)
    provisioning = DEPLOY / "grafana" / "provisioning"
    assert binds["/etc/grafana/provisioning"] == provisioning
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "switchyard.yaml").read_text("utf-8"))["providers"]
    dashboard_target = next(dst for dst, src in binds.items() if src == DASHBOARD)
    assert str(Path(dashboard_target).parent) == provider["options"]["path"]
    (ds,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yaml").read_text("utf-8"))["datasources"]
    assert ds["type"] == "prometheus" and ds["url"] == "http://prometheus:9090" and "prometheus" in compose["services"]
    text = DASHBOARD.read_text(encoding="utf-8")
    # A datasource named by uid in the dashboard must be the provisioned one (template variables aside).
    uids = set(re.findall(r'"datasource"\s*:\s*\{[^{}]*"uid"\s*:\s*"([^"$]+)"', text))
    assert uids <= {ds["uid"]}, f"dashboard uses datasource uids {uids}, compose provisions {ds['uid']}"


# ======================================================================================================
# Dockerfile
# ======================================================================================================


def test_dockerfile_is_multi_stage_on_slim_python() -> None:
    stages = _stages()
    assert len(stages) >= 2
    build, final = stages[0], stages[-1]
    assert build.name == "build"
    for stage in (build, final):
        assert re.fullmatch(r"python:3\.1[1-9]-slim(-\w+)?(@sha256:[0-9a-f]{64})?", stage.base), stage.base
    # The final stage takes only the venv from the build stage.
    copies = final.all("COPY")
    assert copies == ["--from=build /opt/switchyard /opt/switchyard"]
    assert any("pip wheel" in run and "pip install /wheels/" in run for run in build.all("RUN"))


def test_final_stage_is_non_root_with_healthcheck_and_no_build_tools() -> None:
    final = _final()
    user = final.all("USER")[-1]
    assert user.split(":")[0] not in ("root", "0") and user.split(":")[0].isdigit(), user
    assert "/healthz" in " ".join(_healthcheck_command())
    for run in final.all("RUN"):
        assert not re.search(r"\b(gcc|g\+\+|cc|clang|make|build-essential|apt-get|apk|pip)\b", run), run
    assert _exec_form(final.all("ENTRYPOINT")[-1]) == ["switchyard"]
    assert final.env()["SWITCHYARD_WORKERS"].isdigit()


def test_dockerfile_parser_handles_continuations_and_comments() -> None:
    text = "# syntax=docker/dockerfile:1\nARG B=python:3.12-slim\nFROM ${B} AS a\nRUN one \\\n# c\n    two\n"
    text += 'FROM ${B}\nENV A=1 B="x y"\nUSER 1:1\n'
    a, b = parse_dockerfile(text)
    assert (a.base, a.name, a.all("RUN")) == ("python:3.12-slim", "a", ["one two"])
    assert (b.name, b.env(), b.all("USER")) == (None, {"A": "1", "B": "x y"}, ["1:1"])


def test_build_context_is_the_package_and_nothing_else() -> None:
    files = build_context()
    assert "pyproject.toml" in files
    assert {"gateway/__init__.py", "gateway/cli.py", "providers/__init__.py", "simulators/transport.py"} <= set(files)
    assert any(f.startswith("gateway/data/") for f in files), "the tokenizer data must reach the wheel"
    tops = {f.split("/")[0] for f in files}
    assert tops <= {"pyproject.toml", "README.md", "LICENSE", "gateway", "providers", "simulators"}, tops
    assert not [f for f in files if "__pycache__" in f or f.endswith((".pyc", ".env"))]


def test_ignore_matcher_follows_docker_rules() -> None:
    pats = ignore_patterns("*\n!gateway\n**/__pycache__\n*.md\n!README.md\n")
    assert ignored(".venv/bin/python", pats)
    assert not ignored("gateway/app.py", pats)
    assert ignored("gateway/__pycache__/app.cpython-311.pyc", pats)
    assert not ignored("README.md", pats) and ignored("NOTES.md", pats)


_OFFLINE = re.compile(
    r"Temporary failure in name resolution|Name or service not known|NewConnectionError|"
    r"Network is unreachable|ConnectTimeout|ProxyError",
)


@pytest.mark.slow
def test_dockerfile_build_commands_install_a_working_switchyard(tmp_path: Path) -> None:
    """Run the build stage's own RUN lines on the build context, then use the venv like the final stage."""
    build = _stages()[0]
    src = tmp_path / "src"
    for rel in build_context():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, src / rel)
    venv, wheels = tmp_path / "venv", tmp_path / "wheels"
    shim = tmp_path / "bin"
    shim.mkdir()
    # `python` is a clean interpreter, as in the image: the base Python, not this test's venv.
    (shim / "python").symlink_to(Path(sys._base_executable).resolve())
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    # PIP_NO_CACHE_DIR is dropped so the local cache keeps this test fast; it doesn't change what installs.
    env |= {k: v for k, v in build.env().items() if k != "PIP_NO_CACHE_DIR"}
    env["PATH"] = f"{shim}{os.pathsep}{env.get('PATH', '')}"
    for run in build.all("RUN"):
        cmd = run.replace("/opt/switchyard", str(venv)).replace("/wheels", str(wheels))
        r = subprocess.run(["sh", "-c", cmd], cwd=src, env=env, capture_output=True, text=True, timeout=240)
        if r.returncode != 0 and _OFFLINE.search(r.stdout + r.stderr):
            pytest.skip(f"pip cannot reach the package index: {r.stderr.strip().splitlines()[-1]}")
        assert r.returncode == 0, f"{cmd}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"

    switchyard = venv / "bin" / "switchyard"
    run_env = {"PATH": f"{venv / 'bin'}{os.pathsep}/usr/bin:/bin"}

    def run(*args: str, extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        # cwd outside the repository, so only the installed package can be imported.
        return subprocess.run(
            [str(switchyard), *args],
            cwd=tmp_path,
            env=run_env | (extra or {}),
            capture_output=True,
            text=True,
            timeout=60,
        )

    r = run("--help")
    assert r.returncode == 0 and "serve" in r.stdout and "check-config" in r.stdout, r.stderr
    r = run("check-config", str(DEPLOY / "compose" / "config.yaml"), extra={"REDIS_URL": "redis://redis:6379/0"})
    assert r.returncode == 0 and r.stdout.startswith("ok:"), r.stderr
    r = run("check-config", str(K8S / "config.yaml"), extra=_secret_env())
    assert r.returncode == 0 and r.stdout.startswith("ok:"), r.stderr
    probe = (
        "import gateway, importlib.resources as r; print(gateway.__file__); "
        "print(sorted(p.name for p in r.files('gateway').joinpath('data').iterdir()))"
    )
    r = subprocess.run(
        [str(venv / "bin" / "python"), "-c", probe],
        cwd=tmp_path,
        env=run_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    where, data = r.stdout.splitlines()
    assert where.startswith(str(venv)), where
    assert "o200k_base.tiktoken" in data
