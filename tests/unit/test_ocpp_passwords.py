"""Charge-point password hashes and the OCPP_PASSWORDS_FILE format."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from services.common.errors import ConfigError
from services.ocpp import passwords


def test_a_hash_verifies_its_password_only():
    encoded = passwords.hash_password("s3cret", iterations=1000, salt=b"0123456789abcdef")
    assert encoded.startswith("pbkdf2_sha256$1000$MDEyMzQ1Njc4OWFiY2RlZg==$")
    assert passwords.verify("s3cret", encoded)
    assert not passwords.verify("S3cret", encoded)
    assert not passwords.verify("s3cret", "md5$1$xx$yy")
    assert not passwords.verify("s3cret", "pbkdf2_sha256$many$xx$yy")


def test_the_file_maps_canonical_ids_to_hashes_and_names_a_bad_line(tmp_path: Path):
    good = passwords.hash_password("pw", iterations=1000)
    path = tmp_path / "passwords"
    path.write_text(f"# chargers\n\ncp-1 {good}  # depot A\nCP-2 {good}\n")
    assert passwords.load(str(path)) == {"CP-1": good, "CP-2": good}
    path.write_text(f"CP-1 {good}\nCP-2 plaintext\n")
    with pytest.raises(ConfigError, match="line 2: expected '<chargePointId> pbkdf2_sha256"):
        passwords.load(str(path))
    with pytest.raises(ConfigError, match="No such file"):
        passwords.load(str(tmp_path / "missing"))


def test_the_module_makes_a_line_from_a_password_on_stdin():
    made = subprocess.run(
        [sys.executable, "-m", "services.ocpp.passwords", "cp-9"],
        input="hunter2\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    charge_point, encoded = made.stdout.split()
    assert charge_point == "CP-9" and passwords.verify("hunter2", encoded)
