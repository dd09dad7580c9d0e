"""Input rules shared by both ingesting services (SPEC.md, Validation)."""

from __future__ import annotations

import re

from services.common.errors import InvalidArgument

ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,64}")
ID_RULE = "must be 1-64 characters of A-Z a-z 0-9 . _ : -"


def id_problem(value: str) -> str | None:
    """Why `value` is not a valid charger or vehicle id, or None when it is."""
    return None if ID_PATTERN.fullmatch(value) else ID_RULE


def require_id(field: str, value: str) -> None:
    problem = id_problem(value)
    if problem is not None:
        raise InvalidArgument([(field, problem)])
