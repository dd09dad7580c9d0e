"""The README names places that exist: every `path::name` it cites (a module-level function or
class, or `Class.method`) is defined in that file. The code map cites paths from the
repository's root; the reliability table cites tests as pytest names them (`test_x.py::test`,
under tests/)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CITATION = re.compile(r"`([\w/.-]+\.py)::([\w.]+)`")


def citations() -> list[tuple[str, str]]:
    return sorted(set(CITATION.findall((ROOT / "README.md").read_text())))


def defined_names(path: Path) -> set[str]:
    """Module-level functions, classes and assignments, and `Class.member` for each class."""
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            names.add(node.name)
        if isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        if isinstance(node, ast.ClassDef):
            for member in node.body:
                if isinstance(member, ast.FunctionDef):
                    names.add(f"{node.name}.{member.name}")
    return names


def test_the_code_map_cites_enough_places_to_follow_a_reading() -> None:
    cited = citations()
    # The streamed reading's path alone cites the servicer, the ingestor, the fast path, the
    # writers and the ticket: fewer than a dozen would mean the pattern stopped matching.
    assert len(cited) >= 12, cited
    assert ("services/common/group_commit.py", "Writer._write") in cited


@pytest.mark.parametrize(("path", "name"), citations())
def test_every_cited_function_exists(path: str, name: str) -> None:
    source = (
        ROOT / path
        if path.split("/", maxsplit=1)[0] in ("services", "tests", "tools")
        else ROOT / "tests" / path
    )
    assert source.is_file(), f"README cites {path}, which does not exist"
    assert name in defined_names(source), f"README cites {path}::{name}, not defined there"
