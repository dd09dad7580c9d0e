"""What `pip install energy-ingest` brings and how every install is pinned.

The base install carries no PostgreSQL and no development tools (they are the `embedded` and
`dev` extras); its ranges admit only the protobuf and grpcio runtimes that gen/ accepts; one lock
file pins everything, and make, CI and the image install from it; without an extra, the commands
that need it say so in one line, and the servers run without either.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from grpc_health.v1 import health_pb2
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

from services.common.config import SERVICE_NAMES
from services.launcher import start_service, wait_for_health

ROOT = Path(__file__).resolve().parent.parent
GEN = ROOT / "gen"
LOCK = ROOT / "requirements.lock"
MAKEFILE = ROOT / "Makefile"
DIST = "energy-ingest"
BASE = ""  # the "extra" of a base requirement
EXTRA_OF_PACKAGE = {"pgserver": "embedded", "cryptography": "dev"}
# grpcio and the runtime packages generated from grpc's own protos, which move with it.
GRPC_RUNTIME = ("grpcio", "grpcio-health-checking", "grpcio-reflection", "grpcio-status")


# ---------------------------------------------------------------- reading the declarations


def declared() -> dict[str, list[Requirement]]:
    """pyproject's requirements by extra ("" for the base install)."""
    project: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    out = {BASE: [Requirement(r) for r in project["dependencies"]]}
    for extra, requirements in project.get("optional-dependencies", {}).items():
        out[extra] = [Requirement(r) for r in requirements]
    return out


def by_name(requirements: list[Requirement]) -> dict[str, Requirement]:
    return {canonicalize_name(r.name): r for r in requirements}


def installed() -> dict[str, dict[str, str]]:
    """What the installed distribution's metadata (what pip installs from) requires, by extra:
    name -> specifier. A requirement without an extra marker is in the base install."""
    requires = importlib.metadata.requires(DIST) or []
    out: dict[str, dict[str, str]] = {extra: {} for extra in declared()}
    for line in requires:
        requirement = Requirement(line)
        marker = requirement.marker
        if marker is None or marker.evaluate({"extra": BASE}):
            wanted_by = [BASE]
        else:
            wanted_by = [e for e in out if e != BASE and marker.evaluate({"extra": e})]
        for extra in wanted_by:
            out[extra][canonicalize_name(requirement.name)] = str(requirement.specifier)
    return out


def closure(names: list[str]) -> set[str]:
    """Every distribution `names` pull in (no extras), from the installed metadata."""
    seen: set[str] = set()
    todo = [canonicalize_name(n) for n in names]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for line in importlib.metadata.requires(name) or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": BASE}):
                todo.append(canonicalize_name(requirement.name))
    return seen


def locked() -> dict[str, Version]:
    pins: dict[str, Version] = {}
    for raw in LOCK.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        requirement = Requirement(line)
        (spec,) = requirement.specifier
        assert spec.operator == "==", f"{LOCK.name}: not a pin: {line}"
        pins[canonicalize_name(requirement.name)] = Version(spec.version)
    return pins


def lower_bound(specifier: SpecifierSet) -> Version:
    bounds = [Version(s.version) for s in specifier if s.operator == ">="]
    assert bounds, f"no lower bound in {specifier!r}"
    return max(bounds)


def upper_bound(specifier: SpecifierSet) -> Version:
    bounds = [Version(s.version) for s in specifier if s.operator == "<"]
    assert bounds, f"no upper bound in {specifier!r}"
    return min(bounds)


def gen_protobuf_version() -> Version:
    """The newest protobuf runtime that gen/*_pb2.py validate against (they refuse older ones
    and another major)."""
    call = re.compile(
        r"ValidateProtobufRuntimeVersion\(\s*_runtime_version\.Domain\.PUBLIC,\s*"
        r"(\d+),\s*(\d+),\s*(\d+),"
    )
    versions = []
    for path in sorted(GEN.rglob("*_pb2.py")):
        found = call.search(path.read_text())
        assert found, f"{path}: no ValidateProtobufRuntimeVersion call"
        versions.append(Version(".".join(found.groups())))
    assert versions, "no generated messages under gen/"
    return max(versions)


def gen_grpc_version() -> Version:
    """The oldest grpcio gen/*_pb2_grpc.py accept (they raise on anything older)."""
    versions = []
    for path in sorted(GEN.rglob("*_pb2_grpc.py")):
        found = re.search(r"^GRPC_GENERATED_VERSION = '([^']+)'", path.read_text(), re.M)
        assert found, f"{path}: no GRPC_GENERATED_VERSION"
        versions.append(Version(found.group(1)))
    assert versions, "no generated stubs under gen/"
    return max(versions)


# ---------------------------------------------------------------- the declarations


def test_installed_metadata_is_pyproject() -> None:
    """The checks below read pyproject.toml; this one ties it to what pip actually installed."""
    want = {
        extra: {canonicalize_name(r.name): str(r.specifier) for r in reqs}
        for extra, reqs in declared().items()
    }
    assert installed() == want, "the installed energy-ingest is stale: make venv"


def test_base_install_has_no_postgres_and_no_dev_tools() -> None:
    requirements = declared()
    for package, extra in EXTRA_OF_PACKAGE.items():
        holders = sorted(e for e, reqs in requirements.items() if package in by_name(reqs))
        assert holders == [extra], f"{package} is required by {holders}, not only {extra!r}"
    pulled = closure([r.name for r in requirements[BASE]])
    assert not pulled & set(EXTRA_OF_PACKAGE), "a base dependency pulls in an extra's package"
    assert not pulled & set(by_name(requirements["dev"])), "a base dependency is a dev tool"


def test_every_requirement_is_a_bounded_range() -> None:
    for extra, requirements in declared().items():
        for requirement in requirements:
            operators = {s.operator for s in requirement.specifier}
            where = f"{requirement} ({extra or 'base'})"
            assert not operators & {"==", "==="}, f"{where}: an exact pin; pins go in the lock"
            lower_bound(requirement.specifier)
            upper_bound(requirement.specifier)


def test_protobuf_range_is_what_gen_accepts() -> None:
    generated = gen_protobuf_version()
    protobuf = by_name(declared()[BASE])[canonicalize_name("protobuf")]
    assert lower_bound(protobuf.specifier) >= generated, (
        f"{protobuf}: gen/ was made by protoc for protobuf {generated} and refuses older runtimes"
    )
    assert upper_bound(protobuf.specifier) <= Version(str(generated.major + 1)), (
        f"{protobuf}: gen/ refuses another major than {generated.major}"
    )


@pytest.mark.parametrize("package", GRPC_RUNTIME)
def test_grpc_floor_is_what_gen_checks(package: str) -> None:
    generated = gen_grpc_version()
    requirement = by_name(declared()[BASE])[canonicalize_name(package)]
    assert lower_bound(requirement.specifier) >= generated, (
        f"{requirement}: gen/*_pb2_grpc.py raise on a grpcio older than {generated}"
    )


# ---------------------------------------------------------------- the lock


def test_lock_pins_every_requirement_within_its_range() -> None:
    pins = locked()
    for extra, requirements in declared().items():
        for requirement in requirements:
            name = canonicalize_name(requirement.name)
            assert name in pins, f"{requirement.name} ({extra or 'base'}) is not in {LOCK.name}"
            assert requirement.specifier.contains(pins[name], prereleases=True), (
                f"{LOCK.name} pins {name}=={pins[name]} outside {requirement}: make lock"
            )


def test_lock_matches_gen() -> None:
    pins = locked()
    generated = gen_protobuf_version()
    assert pins["protobuf"] >= generated and pins["protobuf"].major == generated.major
    assert pins["grpcio"] >= gen_grpc_version()
    # The generator that wrote gen/, so `make check-gen` reproduces it byte for byte.
    assert pins["grpcio-tools"] == gen_grpc_version()


def makefile_rules() -> dict[str, tuple[list[str], list[str]]]:
    """target -> (prerequisites, recipe lines), with `:=` variables expanded."""
    variables: dict[str, str] = {}

    def expand(text: str) -> str:
        return re.sub(r"\$\((\w+)\)", lambda m: variables.get(m.group(1), m.group(0)), text)

    rules: dict[str, tuple[list[str], list[str]]] = {}
    current: list[str] | None = None
    for raw in MAKEFILE.read_text().replace("\\\n", " ").splitlines():
        if raw.startswith("\t") and current is not None:
            current.append(expand(raw.strip()))
            continue
        assignment = re.match(r"^(\w+)\s*[:?]?=\s*(.*)$", raw)
        if assignment:
            variables[assignment.group(1)] = expand(assignment.group(2).strip())
            current = None
            continue
        rule = re.match(r"^([^\s#:=][^:=]*):(?!=)(.*)$", raw)
        if rule:
            current = []
            rules[expand(rule.group(1).strip())] = (expand(rule.group(2)).split(), current)
    return rules


def test_make_installs_every_extra_from_the_lock() -> None:
    rules = makefile_rules()
    prerequisites, recipe = rules[".venv/.installed"]
    assert {"pyproject.toml", LOCK.name} <= set(prerequisites), "reinstall when either changes"
    installs = [shlex.split(line) for line in recipe if "pip install" in line]
    project = [words for words in installs if "-e" in words]
    assert project, f"the venv recipe installs no project: {recipe}"
    for words in project:
        assert "-c" in words and words[words.index("-c") + 1] == LOCK.name, shlex.join(words)
        target = words[words.index("-e") + 1]
        extras = set(target.removeprefix(".[").removesuffix("]").split(","))
        assert {"dev", "embedded"} <= extras, (
            f"make test needs the dev and embedded extras: {target}"
        )
    assert "check-gen" in rules["test"][0]
    assert ".venv/.installed" in rules["check-gen"][0]
    assert "make test" in (ROOT / ".ci" / "run").read_text(), "CI installs through make"
    assert any(LOCK.name in line for line in rules["lock"][1]), "make lock regenerates the lock"
    header = LOCK.read_text().splitlines()[:3]
    assert any("make lock" in line for line in header), f"{LOCK.name} says how it is made"


# ---------------------------------------------------------------- without the extras


def without(tmp_path: Path, *packages: str) -> dict[str, str]:
    """An environment in which `packages` cannot be imported, as if not installed: a directory
    on PYTHONPATH (ahead of site-packages) whose stand-ins raise ModuleNotFoundError."""
    shims = tmp_path / "not-installed"
    for package in packages:
        (shims / package).mkdir(parents=True)
        (shims / package / "__init__.py").write_text(
            "raise ModuleNotFoundError(f'No module named {__name__!r}', name=__name__)\n"
        )
    path = os.pathsep.join(p for p in (str(shims), os.environ.get("PYTHONPATH")) if p)
    return {"PYTHONPATH": path}


def run_cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Runs a command that should end at once; if it starts serving instead, it is stopped
    cleanly (SIGINT) and the test fails."""
    process = subprocess.Popen(
        args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd
    )
    try:
        stdout, stderr = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=60)
        raise AssertionError(f"{shlex.join(args)} ran instead of failing:\n{stdout}") from None
    return subprocess.CompletedProcess(args, process.returncode, stdout, stderr)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def no_database_env(tmp_path: Path, *packages: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("DATABASE_URL")}
    # Free ports of our own (run needs fixed ones), so a run that wrongly starts takes nobody's.
    env |= {f"{s.upper()}_LISTEN_ADDR": f"127.0.0.1:{free_port()}" for s in SERVICE_NAMES}
    env["OCPP_LISTEN_ADDR"] = f"127.0.0.1:{free_port()}"
    return env | without(tmp_path, *packages)


@pytest.mark.parametrize("command", [["run"], ["bench", "--quick"]], ids=["run", "bench"])
def test_commands_needing_the_embedded_database_name_the_extra(
    tmp_path: Path, command: list[str]
) -> None:
    # Both keep their embedded database under ./var: here, tmp_path/var.
    args = [sys.executable, "-m", "services.cli", *command]
    result = run_cli(args, no_database_env(tmp_path, "pgserver"), cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        f"energy-ingest {command[0]}: the embedded PostgreSQL needs the 'embedded' extra: "
        "pip install 'energy-ingest[embedded]', or set DATABASE_URL"
    ]
    assert "starting" not in result.stdout
    assert not (tmp_path / "var").exists(), "nothing was started"


def test_dev_pki_without_the_dev_extra_names_it(tmp_path: Path) -> None:
    args = [sys.executable, "-m", "services.common.certs", str(tmp_path / "pki")]
    result = run_cli(args, dict(os.environ) | without(tmp_path, "cryptography"), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        "python -m services.common.certs: needs the 'dev' extra (cryptography): "
        "pip install 'energy-ingest[dev]'"
    ]
    assert not (tmp_path / "pki").exists()


def test_every_runtime_module_imports_without_the_extras(tmp_path: Path) -> None:
    modules = sorted(
        ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for path in (ROOT / "services").rglob("*.py")
        if "migrations" not in path.parts  # alembic's env.py runs only inside alembic
    )
    runtime = [m for m in modules if m != "services.common.certs"]  # dev only, by design
    code = "import importlib, sys\nfor m in sys.argv[1:]: importlib.import_module(m)\n"
    env = dict(os.environ) | without(tmp_path, *EXTRA_OF_PACKAGE)
    result = run_cli([sys.executable, "-c", code, *runtime], env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr


@pytest.mark.e2e
def test_serve_runs_on_database_url_without_the_extras(tmp_path: Path, database_url: str) -> None:
    env = {"DATABASE_URL": database_url} | without(tmp_path, *EXTRA_OF_PACKAGE)
    meter = start_service("meter", env)
    try:
        wait_for_health(
            meter.target, "energy.meter.v1.MeterService", health_pb2.HealthCheckResponse.SERVING
        )
        assert meter.terminate() == 0
    finally:
        meter.kill()
