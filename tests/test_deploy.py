"""The deployment files (deploy/) agree with the code: setting names, ports, health service names,
commands, targets and shutdown grace. No Docker engine or cluster is needed: the files are parsed.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import socket
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import grpc
import pytest
import yaml
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from services.common.config import DEFAULT_LISTEN_ADDRS, SERVICE_NAMES, Settings
from services.common.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
COMPOSE = DEPLOY / "compose.yaml"
K8S = DEPLOY / "k8s"

# The default port of each service (README, Configuration), and its full proto service name.
PORTS = {"meter": 50051, "vehicle": 50052, "analytics": 50053}
FULL_NAMES = {
    "meter": "energy.meter.v1.MeterService",
    "vehicle": "energy.vehicle.v1.VehicleService",
    "analytics": "energy.analytics.v1.AnalyticsService",
}
# The OCPP gateway's default port (OCPP_LISTEN_ADDR); it dials METER_TARGET.
OCPP_PORT = 9000
# Where AnalyticsService dials, and which service must answer there.
TARGETS = {"METER_TARGET": "meter", "VEHICLE_TARGET": "vehicle"}
CLI = "energy-ingest"
IMAGE = "energy-ingest"
LOCK = "requirements.lock"
DB_SECRET = ("energy-ingest-db", "url")
# Stand-in for values the files take from a Secret, so the settings can still be parsed.
SECRET_PLACEHOLDER = "postgresql://user@db.invalid:5432/energy"
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "Pod")


# ---------------------------------------------------------------- loading


def compose() -> dict[str, Any]:
    doc = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(doc, dict) and isinstance(doc.get("services"), dict), COMPOSE
    return doc


def compose_services() -> dict[str, dict[str, Any]]:
    return compose()["services"]


def k8s_files() -> list[Path]:
    return sorted(p for p in K8S.iterdir() if p.suffix in (".yaml", ".yml"))


def k8s_docs() -> list[dict[str, Any]]:
    docs = []
    for path in k8s_files():
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is None:
                continue
            assert isinstance(doc, dict) and "kind" in doc, f"{path.name}: not a manifest: {doc!r}"
            docs.append(doc)
    return docs


def of_kind(*kinds: str) -> list[dict[str, Any]]:
    return [d for d in k8s_docs() if d["kind"] in kinds]


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    if workload["kind"] == "Pod":
        return workload["spec"]
    return workload["spec"]["template"]["spec"]


def k8s_containers() -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(where, container, pod spec) for every container of every workload."""
    for workload in of_kind(*WORKLOAD_KINDS):
        spec = pod_spec(workload)
        for c in [*spec.get("initContainers", []), *spec["containers"]]:
            yield f"{workload['kind']}/{workload['metadata']['name']}/{c['name']}", c, spec


def configmaps() -> dict[str, dict[str, str]]:
    return {d["metadata"]["name"]: d.get("data") or {} for d in of_kind("ConfigMap")}


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, rest = line.partition(" ")
        out.append((keyword.upper(), rest.strip()))
    assert not pending, "Dockerfile ends inside a continued line"
    return out


# ---------------------------------------------------------------- environment


def compose_env(service: dict[str, Any]) -> dict[str, str | None]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = [item.split("=", 1) for item in env]
        return {p[0]: (p[1] if len(p) == 2 else None) for p in pairs}
    return {k: (None if v is None else str(v)) for k, v in env.items()}


def k8s_env(container: dict[str, Any]) -> dict[str, str | None]:
    """The container's effective environment; values from a Secret are None."""
    maps = configmaps()
    env: dict[str, str | None] = {}
    for source in container.get("envFrom", []):
        ref = source.get("configMapRef")
        # Keys of a Secret (or a ConfigMap outside deploy/k8s) cannot be checked here.
        assert ref is not None, f"envFrom {source} cannot be checked; use env with secretKeyRef"
        assert ref["name"] in maps, f"envFrom names ConfigMap {ref['name']!r}, not in deploy/k8s"
        prefix = source.get("prefix", "")
        env.update({prefix + k: str(v) for k, v in maps[ref["name"]].items()})
    for item in container.get("env", []):
        env[item["name"]] = str(item["value"]) if "value" in item else None
    return env


def settings_from(env: dict[str, str | None]) -> Settings:
    """What the service would read at start; Secret-provided values get a placeholder."""
    known = Settings.env_names()
    resolved = {k: SECRET_PLACEHOLDER if v is None else v for k, v in env.items() if k in known}
    return Settings.from_env(resolved)


def is_our_image(image: str | None) -> bool:
    return bool(image) and str(image).rsplit("/", 1)[-1].split(":")[0] == IMAGE


def compose_is_ours(service: dict[str, Any]) -> bool:
    build = service.get("build")
    dockerfile = build.get("dockerfile", "") if isinstance(build, dict) else ""
    return is_our_image(service.get("image")) or str(dockerfile).endswith("deploy/Dockerfile")


def is_postgres_image(image: str | None) -> bool:
    return bool(image) and str(image).rsplit("/", 1)[-1].split(":")[0] == "postgres"


# ---------------------------------------------------------------- commands


def compose_argv(service: dict[str, Any]) -> list[str]:
    assert "entrypoint" not in service, "the image's ENTRYPOINT (energy-ingest) must be kept"
    command = service.get("command")
    if command is None:
        return [CLI, *dockerfile_cmd()]
    return [CLI, *(shlex.split(command) if isinstance(command, str) else map(str, command))]


def k8s_argv(container: dict[str, Any]) -> list[str]:
    command = container.get("command")
    head = [CLI] if command is None else [str(c) for c in command]
    args = container.get("args")
    if args is None and command is None:
        args = dockerfile_cmd()
    return [*head, *(str(a) for a in args or [])]


def subcommand(argv: list[str]) -> tuple[str, ...]:
    """The CLI subcommand an argv runs; fails unless it is one the CLI has."""
    assert argv[:1] == [CLI], f"{argv} does not run {CLI}"
    rest = tuple(argv[1:])
    valid = {("migrate",), ("serve", "ocpp")} | {("serve", name) for name in SERVICE_NAMES}
    assert rest in valid, f"{' '.join(argv)} is not one of {sorted(' '.join(v) for v in valid)}"
    from services.cli import parser  # the real command line must accept it too

    try:
        parsed = parser().parse_args(list(rest))
    except SystemExit as exc:
        raise AssertionError(f"{CLI} rejects {' '.join(rest)!r}") from exc
    assert parsed.command == rest[0], parsed
    return rest


def dockerfile_json(keyword: str) -> list[str]:
    found = [args for kw, args in dockerfile_instructions() if kw == keyword]
    assert found, f"Dockerfile has no {keyword}"
    value = json.loads(found[-1])  # exec form; the last one wins
    assert isinstance(value, list), f"{keyword} must use the exec (JSON) form"
    return [str(v) for v in value]


def dockerfile_cmd() -> list[str]:
    return dockerfile_json("CMD")


def compose_service_running(sub: tuple[str, ...]) -> list[str]:
    return [
        name
        for name, svc in compose_services().items()
        if compose_is_ours(svc) and subcommand(compose_argv(svc)) == sub
    ]


def k8s_workloads_running(sub: tuple[str, ...]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    found = []
    for workload in of_kind(*WORKLOAD_KINDS):
        for c in pod_spec(workload)["containers"]:
            if is_our_image(c.get("image")) and subcommand(k8s_argv(c)) == sub:
                found.append((workload, c))
    return found


def the_deployment(service: str) -> tuple[dict[str, Any], dict[str, Any]]:
    found = k8s_workloads_running(("serve", service))
    assert len(found) == 1, f"want one workload running serve {service}, got {len(found)}"
    workload, container = found[0]
    assert workload["kind"] == "Deployment", f"serve {service} runs in a {workload['kind']}"
    return workload, container


def k8s_services_selecting(workload: dict[str, Any]) -> list[dict[str, Any]]:
    labels = workload["spec"]["template"]["metadata"].get("labels", {})
    return [
        s
        for s in of_kind("Service")
        if s["spec"].get("selector")
        and all(labels.get(k) == v for k, v in s["spec"]["selector"].items())
    ]


# ---------------------------------------------------------------- ports and probes


def container_port(container: dict[str, Any], port: int | str) -> int:
    """A numeric port, or a named one resolved against the container's ports."""
    if isinstance(port, int):
        return port
    if str(port).isdigit():
        return int(port)
    named = [p["containerPort"] for p in container.get("ports", []) if p.get("name") == port]
    assert len(named) == 1, f"port name {port!r} is not a port of container {container['name']}"
    return int(named[0])


def probe_port(container: dict[str, Any], probe: dict[str, Any]) -> int:
    for handler in ("grpc", "tcpSocket", "httpGet"):
        if handler in probe:
            return container_port(container, probe[handler]["port"])
    raise AssertionError(f"probe {probe} has no port to check")


def compose_ports(service: dict[str, Any]) -> list[tuple[int, int]]:
    """(published, target) of every published port."""
    out = []
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            published = entry.get("published") or entry["target"]
            out.append((int(published), int(entry["target"])))
            continue
        parts = str(entry).split("/")[0].rsplit(":", 2)
        target = int(parts[-1])
        published = int(parts[-2]) if len(parts) >= 2 else target
        out.append((published, target))
    return out


def host_port(target: str) -> tuple[str, int]:
    """host and port of a gRPC target such as "meter:50051" or "dns:///meter.ns.svc:50051"."""
    address = re.sub(r"^[a-z]+:(///?[^/]*/)?", "", target) if "://" in target else target
    host, _, port = address.rpartition(":")
    assert host and port.isdigit(), f"target {target!r} has no host:port"
    return host.strip("[]"), int(port)


def seconds(duration: str | int | float) -> float:
    """A compose duration such as 30s, 1m30s or 1500ms."""
    if isinstance(duration, int | float):
        return float(duration)
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", duration)
    assert parts and "".join(a + b for a, b in parts) == duration, f"bad duration {duration!r}"
    return sum(float(n) * units[u] for n, u in parts)


def pre_stop_seconds(container: dict[str, Any]) -> float:
    """How long a preStop hook sleeps before SIGTERM reaches the server (0 when none)."""
    hook = (container.get("lifecycle") or {}).get("preStop")
    if not hook:
        return 0.0
    if "sleep" in hook:
        return float(hook["sleep"]["seconds"])
    command = [str(c) for c in hook.get("exec", {}).get("command", [])]
    assert command[:1] == ["sleep"] and len(command) == 2, f"unrecognised preStop {hook}"
    return float(command[1])


# ================================================================ tests: the code's own constants


def test_spec_ports_and_names_match_the_code() -> None:
    assert set(SERVICE_NAMES) == set(PORTS)
    for name, addr in DEFAULT_LISTEN_ADDRS.items():
        assert addr.endswith(f":{PORTS[name]}"), (name, addr)
    defaults = Settings()
    assert host_port(defaults.meter_target)[1] == PORTS["meter"]
    assert host_port(defaults.vehicle_target)[1] == PORTS["vehicle"]
    for name, full in FULL_NAMES.items():
        module = __import__(f"energy.{name}.v1.{name}_service_pb2", fromlist=["DESCRIPTOR"])
        names = {s.full_name for s in module.DESCRIPTOR.services_by_name.values()}
        assert full in names, f"{full} is not in the generated contract ({names})"


# ================================================================ tests: environment


def test_every_environment_variable_is_a_setting() -> None:
    known = Settings.env_names()
    unknown: dict[str, set[str]] = {}
    for name, svc in compose_services().items():
        for var in compose_env(svc):
            if is_postgres_image(svc.get("image")) and var.startswith("POSTGRES_"):
                continue
            if var not in known:
                unknown.setdefault(var, set()).add(f"compose.yaml:{name}")
    for where, container, _ in k8s_containers():
        for var in k8s_env(container):
            if var not in known:
                unknown.setdefault(var, set()).add(where)
    for cm_name, data in configmaps().items():
        for var in data:
            if var not in known:
                unknown.setdefault(var, set()).add(f"ConfigMap/{cm_name}")
    assert not unknown, f"environment variables no Setting reads: {unknown}"


def test_every_container_configuration_is_valid_settings() -> None:
    problems = []
    envs = [(f"compose.yaml:{n}", compose_env(s)) for n, s in compose_services().items()]
    envs += [(where, k8s_env(c)) for where, c, _ in k8s_containers()]
    for where, env in envs:
        try:
            settings_from(env)
        except ConfigError as exc:
            problems.append(f"{where}: {exc}")
    assert not problems, problems


def test_database_urls_come_from_the_documented_secret() -> None:
    for where, container, _ in k8s_containers():
        for item in container.get("env", []):
            ref = item.get("valueFrom", {}).get("secretKeyRef")
            if ref is not None and item["name"].endswith("DATABASE_URL"):
                assert (ref["name"], ref["key"]) == DB_SECRET, f"{where} {item['name']}: {ref}"
            if item["name"].endswith("DATABASE_URL"):
                assert "value" not in item, f"{where}: {item['name']} in clear; use secretKeyRef"


# ================================================================ tests: commands


def test_every_command_is_a_cli_subcommand() -> None:
    subcommand([CLI, *dockerfile_cmd()])
    for svc in compose_services().values():
        if compose_is_ours(svc):
            subcommand(compose_argv(svc))
    for _, container, _ in k8s_containers():
        if is_our_image(container.get("image")):
            subcommand(k8s_argv(container))


def test_migrations_run_in_compose_and_k8s() -> None:
    assert len(compose_service_running(("migrate",))) == 1
    jobs = [w for w, _ in k8s_workloads_running(("migrate",))]
    assert [w["kind"] for w in jobs] == ["Job"]
    for where, env in [
        ("compose", compose_env(compose_services()[compose_service_running(("migrate",))[0]])),
        ("k8s", k8s_env(k8s_workloads_running(("migrate",))[0][1])),
    ]:
        settings = settings_from(env)
        for owner in ("meter", "vehicle"):
            assert settings.service_database_url(owner), f"{where} migrate has no URL for {owner}"


@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_each_service_runs_once_in_compose(service: str) -> None:
    assert compose_service_running(("serve", service)) == [service]


# ================================================================ tests: Dockerfile


def test_dockerfile_entrypoint_expose_and_user() -> None:
    instructions = dockerfile_instructions()
    assert instructions[0][0] == "FROM" and instructions[0][1].startswith("python:3.11"), (
        instructions[0]
    )
    assert dockerfile_json("ENTRYPOINT") == [CLI]
    exposed = {
        int(p.split("/")[0]) for kw, args in instructions if kw == "EXPOSE" for p in args.split()
    }
    assert {*PORTS.values(), OCPP_PORT} <= exposed, f"EXPOSE {sorted(exposed)}"
    users = [args for kw, args in instructions if kw == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "image must not run as root"
    assert any(kw == "RUN" and "pip install" in args for kw, args in instructions)


def test_dockerfile_copies_what_the_package_needs_and_it_exists() -> None:
    sources: list[str] = []
    for kw, args in dockerfile_instructions():
        if kw == "COPY":
            parts = [a for a in args.split() if not a.startswith("--")]
            sources += parts[:-1]
    copied = {s.rstrip("/") for s in sources}
    assert {"pyproject.toml", "README.md", "services", "gen", "protos"} <= copied, copied
    missing = [s for s in sorted(copied) if not (ROOT / s).exists()]
    assert not missing, f"COPY sources missing from the build context: {missing}"


def test_dockerfile_installs_the_package_alone_from_the_lock() -> None:
    """The lock as constraints: the versions make and CI test, and no extra (no embedded
    PostgreSQL, no dev tools) in an image that never runs them."""
    installs = [shlex.split(args) for kw, args in dockerfile_instructions() if kw == "RUN"]
    pip = [words for words in installs if "pip" in words and "install" in words]
    assert pip, "the image installs nothing"
    copied = {
        part.rstrip("/")
        for kw, args in dockerfile_instructions()
        if kw == "COPY"
        for part in args.split()[:-1]
    }
    assert LOCK in copied, f"{LOCK} is not copied into the image"
    for words in pip:
        command = words[: words.index("&&")] if "&&" in words else words
        assert "-c" in command and command[command.index("-c") + 1] == LOCK, shlex.join(command)
        packages = [w for w in command[command.index("install") + 1 :] if not w.startswith("-")]
        packages.remove(LOCK)
        assert packages == ["."], f"the image installs {packages}, not the package alone"


def test_installed_package_carries_every_service_file() -> None:
    """`pip install .` in the image only ships packages (dirs with __init__.py) and package-data
    patterns; a migrations/versions dir without __init__.py would leave `migrate` with nothing."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    patterns = [p for ps in setuptools.get("package-data", {}).values() for p in ps]
    left_out = []
    for path in sorted((ROOT / "services").rglob("*")):
        if path.is_dir() or "__pycache__" in path.parts or path.suffix == ".pyc":
            continue
        rel = path.relative_to(ROOT)
        packaged_dir = all(
            (ROOT / Path(*rel.parts[:i]) / "__init__.py").exists() for i in range(1, len(rel.parts))
        )
        data_ok = path.suffix == ".py" or any(fnmatch.fnmatch(path.name, p) for p in patterns)
        if not (packaged_dir and data_ok):
            left_out.append(str(rel))
    assert not left_out, f"files `pip install .` would not install: {left_out}"


# ================================================================ tests: ports


@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_compose_ports_and_listen_address(service: str) -> None:
    svc = compose_services()[service]
    port = PORTS[service]
    assert compose_ports(svc) == [(port, port)], f"{service} ports {svc.get('ports')}"
    listen = settings_from(compose_env(svc)).listen_addr(service)
    assert listen.rsplit(":", 1)[1] == str(port), f"{service} listens on {listen}"


def is_headless(service: dict[str, Any]) -> bool:
    return service["spec"].get("clusterIP") == "None"


def address_port(address: str) -> int:
    """The port of a host:port setting such as "[::]:8081"."""
    port = address.rpartition(":")[2]
    assert port.isdigit(), f"{address!r} is not host:port"
    return int(port)


@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_k8s_ports_probes_and_service(service: str) -> None:
    workload, container = the_deployment(service)
    port = PORTS[service]
    declared = [container_port(container, p["containerPort"]) for p in container.get("ports", [])]
    assert container_port(container, "grpc") == port, f"{service} containerPorts {declared}"
    assert len(set(declared)) == len(declared), f"{service} containerPorts {declared}"
    env = k8s_env(container)
    listen = settings_from(env).listen_addr(service)
    assert listen.rsplit(":", 1)[1] == str(port), f"{service} listens on {listen}"
    # Other ports (health, metrics) are each a setting's: nothing else listens in the pod.
    settings_ports = {port} | {
        address_port(str(env[name]))
        for name in ("HEALTH_LISTEN_ADDR", "METRICS_ADDR")
        if env.get(name)
    }
    assert set(declared) == settings_ports, f"{service} containerPorts {declared}"

    # Under mutual TLS the kubelet (no client certificate) asks HEALTH_LISTEN_ADDR's port.
    health = env.get("HEALTH_LISTEN_ADDR")
    health_port = address_port(health) if health else port
    readiness = container.get("readinessProbe")
    assert readiness and "grpc" in readiness, f"{service} needs a native gRPC readinessProbe"
    assert readiness["grpc"].get("service") == FULL_NAMES[service]
    assert probe_port(container, readiness) == health_port, f"{service} readinessProbe port"
    for kind in ("readinessProbe", "livenessProbe", "startupProbe"):
        probe = container.get(kind)
        if probe is None:
            continue
        assert probe_port(container, probe) in (port, health_port), f"{service} {kind} port"
        if "grpc" in probe:
            assert probe_port(container, probe) == health_port, f"{service} {kind}: gRPC port"
            assert probe["grpc"].get("service", "") in ("", FULL_NAMES[service]), kind
    assert container.get("livenessProbe"), f"{service} has no livenessProbe"

    # One ClusterIP Service named after the service; headless ones (AnalyticsService's targets)
    # may select the same pods.
    services = k8s_services_selecting(workload)
    assert [s["metadata"]["name"] for s in services if not is_headless(s)] == [service], (
        f"want one ClusterIP Service named {service} selecting its pods"
    )
    for found in services:
        ports = found["spec"]["ports"]
        assert len(ports) == 1, (found["metadata"]["name"], ports)
        assert ports[0]["port"] == port, found["metadata"]["name"]
        assert container_port(container, ports[0].get("targetPort", ports[0]["port"])) == port


def test_every_listen_addr_set_ends_with_its_port() -> None:
    envs = [(f"compose.yaml:{n}", compose_env(s)) for n, s in compose_services().items()]
    envs += [(where, k8s_env(c)) for where, c, _ in k8s_containers()]
    for where, env in envs:
        for name in SERVICE_NAMES:
            value = env.get(f"{name.upper()}_LISTEN_ADDR")
            if value is not None:
                assert value.endswith(f":{PORTS[name]}"), f"{where}: {name} listens on {value}"


# ================================================================ tests: health checks


@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_compose_healthcheck_asks_for_the_right_service(service: str) -> None:
    code = compose_healthcheck_code(service)
    channel = re.findall(r"insecure_channel\(\s*['\"]([^'\"]+)['\"]", code)
    assert len(channel) == 1 and host_port(channel[0]) == ("localhost", PORTS[service]), channel
    asked = re.findall(r"service\s*=\s*['\"]([^'\"]*)['\"]", code)
    assert asked == [FULL_NAMES[service]], asked


def compose_healthcheck_code(service: str) -> str:
    test = compose_services()[service].get("healthcheck", {}).get("test")
    assert isinstance(test, list) and test[:1] == ["CMD"], f"{service} healthcheck {test}"
    assert test[1:3] == ["python", "-c"] and len(test) == 4, f"{service} healthcheck {test}"
    return str(test[3])


@pytest.mark.parametrize("serving", [True, False])
def test_compose_healthcheck_command_reports_health(serving: bool) -> None:
    """Runs the meter healthcheck's Python against a real health server on a free port."""
    code = compose_healthcheck_code("meter")
    server = grpc.server(futures.ThreadPoolExecutor(2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("localhost:0")
    server.start()
    try:
        status = health_pb2.HealthCheckResponse
        servicer.set(FULL_NAMES["meter"], status.SERVING if serving else status.NOT_SERVING)
        code = code.replace(f"localhost:{PORTS['meter']}", f"localhost:{port}")
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, timeout=30, check=False
        )
        assert (done.returncode == 0) == serving, done.stderr.decode()
    finally:
        server.stop(None)


# ================================================================ tests: AnalyticsService targets


@pytest.mark.parametrize("variable", sorted(TARGETS))
def test_compose_analytics_targets(variable: str) -> None:
    env = compose_env(compose_services()["analytics"])
    assert env.get(variable), f"analytics must set {variable} (the default is localhost)"
    host, port = host_port(str(env[variable]))
    assert compose_service_running(("serve", TARGETS[variable])) == [host], (variable, host)
    assert port == PORTS[TARGETS[variable]]


@pytest.mark.parametrize("variable", sorted(TARGETS))
def test_k8s_analytics_targets(variable: str) -> None:
    _, container = the_deployment("analytics")
    env = k8s_env(container)
    assert env.get(variable), f"analytics must set {variable} (the default is localhost)"
    host, port = host_port(str(env[variable]))
    target_workload, _ = the_deployment(TARGETS[variable])
    services = k8s_services_selecting(target_workload)
    names = [s["metadata"]["name"] for s in services]
    assert host.split(".")[0] in names, f"{variable}={env[variable]}: no Service {host} ({names})"
    service = next(s for s in services if s["metadata"]["name"] == host.split(".")[0])
    assert port in [p["port"] for p in service["spec"]["ports"]], (variable, port)
    assert port == PORTS[TARGETS[variable]]


# ================================================================ tests: the OCPP gateway


def test_compose_runs_the_ocpp_gateway_against_meterservice() -> None:
    names = compose_service_running(("serve", "ocpp"))
    assert len(names) == 1, names
    svc = compose_services()[names[0]]
    assert compose_ports(svc) == [(OCPP_PORT, OCPP_PORT)], svc.get("ports")
    settings = settings_from(compose_env(svc))
    assert settings.ocpp_listen_addr.endswith(f":{OCPP_PORT}"), settings.ocpp_listen_addr
    host, port = host_port(settings.meter_target)
    assert compose_service_running(("serve", "meter")) == [host] and port == PORTS["meter"]


def test_k8s_runs_the_ocpp_gateway_against_meterservice() -> None:
    workload, container = the_deployment("ocpp")
    declared = [container_port(container, p["containerPort"]) for p in container["ports"]]
    assert declared == [OCPP_PORT], declared
    settings = settings_from(k8s_env(container))
    assert settings.ocpp_listen_addr.endswith(f":{OCPP_PORT}"), settings.ocpp_listen_addr
    for kind in ("readinessProbe", "livenessProbe"):
        assert probe_port(container, container[kind]) == OCPP_PORT, kind
    services = k8s_services_selecting(workload)
    assert [s["metadata"]["name"] for s in services] == ["ocpp"]
    assert [p["port"] for p in services[0]["spec"]["ports"]] == [OCPP_PORT]
    host, port = host_port(settings.meter_target)
    meter_services = k8s_services_selecting(the_deployment("meter")[0])
    names = [s["metadata"]["name"] for s in meter_services]
    assert host.split(".")[0] in names and port == PORTS["meter"], (host, names)


def test_compose_ocpp_healthcheck_reports_whether_the_gateway_listens() -> None:
    """Runs the gateway's healthcheck against a listening socket (healthy) and the same port
    closed (unhealthy)."""
    names = compose_service_running(("serve", "ocpp"))
    code = compose_healthcheck_code(names[0])
    assert f"'localhost', {OCPP_PORT}" in code, code
    listener = socket.create_server(("localhost", 0))
    port = listener.getsockname()[1]
    code = code.replace(f"'localhost', {OCPP_PORT}", f"'localhost', {port}")
    try:
        healthy = subprocess.run([sys.executable, "-c", code], timeout=30, check=False)
    finally:
        listener.close()
    unhealthy = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, timeout=30, check=False
    )
    assert healthy.returncode == 0 and unhealthy.returncode != 0


# ================================================================ tests: shutdown


def test_k8s_grace_period_covers_the_drain() -> None:
    for where, container, spec in k8s_containers():
        if not is_our_image(container.get("image")):
            continue
        grace = settings_from(k8s_env(container)).shutdown_grace_seconds
        period = spec.get("terminationGracePeriodSeconds", 30)  # Kubernetes' default
        needed = grace + pre_stop_seconds(container)
        assert period > needed, f"{where}: terminationGracePeriodSeconds {period} <= {needed}"


def test_compose_stop_grace_covers_the_drain() -> None:
    for name, svc in compose_services().items():
        if not compose_is_ours(svc):
            continue
        grace = settings_from(compose_env(svc)).shutdown_grace_seconds
        period = seconds(svc.get("stop_grace_period", "10s"))  # compose's default
        assert period > grace, f"{name}: stop_grace_period {period}s <= drain grace {grace}s"


# ================================================================ tests: compose ordering


def test_compose_start_order() -> None:
    services = compose_services()
    for name, svc in services.items():
        depends = svc.get("depends_on") or {}
        for dep in depends:
            assert dep in services, f"{name} depends on unknown service {dep}"
    migrate = compose_service_running(("migrate",))[0]
    assert services[migrate].get("restart") == "no", "migrate runs once (quote 'no' in YAML)"
    db_deps = services[migrate].get("depends_on") or {}
    assert any(
        is_postgres_image(services[d].get("image"))
        and isinstance(db_deps, dict)
        and db_deps[d].get("condition") == "service_healthy"
        for d in db_deps
    ), f"migrate must wait for a healthy postgres: {db_deps}"
    for owner in ("meter", "vehicle"):
        dep = (services[owner].get("depends_on") or {}).get(migrate, {})
        assert dep.get("condition") == "service_completed_successfully", (owner, dep)


def test_compose_database_urls_point_at_a_compose_service() -> None:
    services = compose_services()
    for name, svc in services.items():
        for var, value in compose_env(svc).items():
            if var.endswith("DATABASE_URL") and value:
                host = urlsplit(value).hostname
                assert host in services, f"{name}: {var} host {host} is not a compose service"


# ================================================================ tests: k8s bundle


def test_kustomization_lists_every_manifest() -> None:
    kustomization = K8S / "kustomization.yaml"
    if not kustomization.exists():
        pytest.skip("no kustomization")
    listed = set(yaml.safe_load(kustomization.read_text()).get("resources", []))
    files = {p.name for p in k8s_files()} - {kustomization.name}
    assert listed == files, f"kustomization resources {sorted(listed)} vs files {sorted(files)}"
