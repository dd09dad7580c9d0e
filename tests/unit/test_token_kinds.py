"""Device kinds in the token file are checked when it is loaded: a kind only devices may have,
one of charger or vehicle; devices without a kind are named in one warning at start."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import pytest

from services.common.config import Settings
from services.common.errors import ConfigError
from services.common.security import Authorizer, load_tokens

CHARGER = "CHG-001"
VEHICLE = "VH-001"
UNKINDED = "DEV-001"  # a device whose kind is not stated

TOKENS = {
    "tok-charger": {"principal": CHARGER, "role": "device", "kind": "charger"},
    "tok-vehicle": {"principal": VEHICLE, "role": "device", "kind": "vehicle"},
    # The charger's id as a vehicle-kind credential: the attack was CHG-001 writing as vehicle
    # CHG-001; here a vehicle credential named like a charger must still not reach MeterService.
    "tok-vehicle-chg": {"principal": CHARGER, "role": "device", "kind": "vehicle"},
    "tok-unkinded": {"principal": UNKINDED, "role": "device"},
}


def write_tokens(path: Path, tokens: dict[str, dict[str, str]] = TOKENS) -> Path:
    path.write_text(
        json.dumps({hashlib.sha256(t.encode()).hexdigest(): e for t, e in tokens.items()})
    )
    return path


def test_devices_without_a_kind_are_named_in_one_warning_at_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tokens = dict(TOKENS)
    tokens["tok-unkinded-2"] = {"principal": "DEV-002", "role": "device"}
    path = write_tokens(tmp_path / "tokens.json", tokens)
    with caplog.at_level(logging.WARNING, logger="services.common.security"):
        Authorizer.from_settings(Settings(auth_tokens_file=str(path)))
    warnings = [r for r in caplog.records if r.name == "services.common.security"]
    assert len(warnings) == 1
    assert warnings[0].principals == ["DEV-001", "DEV-002"]  # type: ignore[attr-defined]
    caplog.clear()
    kinded = {k: v for k, v in TOKENS.items() if "kind" in v}
    with caplog.at_level(logging.WARNING, logger="services.common.security"):
        Authorizer.from_settings(
            Settings(auth_tokens_file=str(write_tokens(tmp_path / "kinded.json", kinded)))
        )
    assert [r for r in caplog.records if r.name == "services.common.security"] == []


@pytest.mark.parametrize(
    "entry",
    [
        {"principal": "ingest", "role": "service", "kind": "charger"},
        {"principal": CHARGER, "role": "device", "kind": "meter"},
        {"principal": CHARGER, "role": "device", "kind": 7},
    ],
)
def test_token_kinds_are_checked_at_start(tmp_path: Path, entry: dict[str, object]) -> None:
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps({hashlib.sha256(b"t").hexdigest(): entry}))
    with pytest.raises(ConfigError):
        load_tokens(str(path))
