"""`make lint`'s buf breaking check bites where CI runs it: on a fresh clone of main, a breaking
change that main's last commit brought fails it, with buf's own message."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUF = ROOT / "node_modules" / ".bin" / "buf"  # installed by make lint (npm ci), before the tests


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def test_a_breaking_change_merged_into_main_fails_on_a_fresh_clone(tmp_path: Path) -> None:
    assert BUF.exists(), "make lint installs buf (npm ci) before the suite runs"
    upstream, ci = tmp_path / "upstream", tmp_path / "ci"
    git(tmp_path, "clone", "-q", str(ROOT), str(upstream))
    git(upstream, "checkout", "-q", "-B", "main")
    # The working tree's check script, committed or not, is the one under test.
    (upstream / "tools" / "buf_breaking.sh").write_text(
        (ROOT / "tools" / "buf_breaking.sh").read_text()
    )
    git(
        upstream,
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@t",
        "commit",
        "--allow-empty",
        "-qam",
        "check",
    )
    proto = upstream / "protos" / "energy" / "meter" / "v1" / "meter.proto"
    proto.write_text(proto.read_text().replace("double voltage = 3;", "double voltage = 99;"))
    git(upstream, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "renumber")
    git(tmp_path, "clone", "-q", str(upstream), str(ci))  # what CI does
    result = subprocess.run(
        ["bash", "tools/buf_breaking.sh", str(BUF)],
        cwd=ci,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 100, result.stdout + result.stderr
    assert "main before its last commit or merge" in result.stdout
    assert 'Previously present field "3" with name "voltage"' in result.stdout


def test_the_unchanged_contract_passes_on_main(tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(ROOT), str(clone))
    (clone / "tools" / "buf_breaking.sh").write_text(
        (ROOT / "tools" / "buf_breaking.sh").read_text()
    )
    result = subprocess.run(
        ["bash", "tools/buf_breaking.sh", str(BUF)],
        cwd=clone,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
