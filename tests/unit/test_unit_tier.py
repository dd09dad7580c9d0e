"""The unit tier runs where no PostgreSQL can be had: the shared tests/conftest.py, which pytest
loads for it too, must not need the embedded PostgreSQL (pgserver) just to be imported."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]

# Imports tests/conftest.py with `import pgserver` made to fail, as in an install without the
# embedded extra, and says whether that import was attempted.
PROBE = """
import sys

class Refuse:
    attempted = False

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "pgserver":
            Refuse.attempted = True
            raise ModuleNotFoundError("pgserver is not installed", name=name)
        return None

sys.meta_path.insert(0, Refuse())
import tests.conftest
print("attempted" if Refuse.attempted else "not attempted")
"""


def test_the_shared_conftest_imports_without_pgserver():
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "not attempted"
