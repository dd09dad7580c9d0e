"""Charge-point passwords for OCPP security profiles 1 and 2 (HTTP Basic auth at the WebSocket
handshake), kept hashed in OCPP_PASSWORDS_FILE.

The file has one line per charge point, `<chargePointId> <hash>`, blank lines and `#` comments
ignored; ids are matched case-insensitively (OCPP's rule). A hash is
`pbkdf2_sha256$<iterations>$<salt, base64>$<key, base64>` (PBKDF2-HMAC-SHA256 from the standard
library). Make a line with:

    python -m services.ocpp.passwords CP-1   # reads the password from standard input
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import sys
from pathlib import Path

from services.common.errors import ConfigError
from services.ocpp.mapping import canonical_charge_point_id

ITERATIONS = 200_000
_SCHEME = "pbkdf2_sha256"


def hash_password(password: str, *, iterations: int = ITERATIONS, salt: bytes | None = None) -> str:
    salt = os.urandom(16) if salt is None else salt
    key = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return "$".join(
        (_SCHEME, str(iterations), base64.b64encode(salt).decode(), base64.b64encode(key).decode())
    )


def verify(password: str, encoded: str) -> bool:
    """True when `password` is the one `encoded` was made from; False for a malformed hash."""
    try:
        scheme, iterations, salt, key = encoded.split("$")
        if scheme != _SCHEME:
            return False
        expected = base64.b64decode(key)
        # A header's bytes that are not UTF-8 come as surrogate escapes: hashed as those bytes.
        actual = hashlib.pbkdf2_hmac(
            "sha256",
            password.encode("utf-8", "surrogateescape"),
            base64.b64decode(salt),
            int(iterations),
        )
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)


def load(path: str) -> dict[str, str]:
    """Charge point id (canonical) → hash. ConfigError naming the line for a malformed one."""
    try:
        text = Path(path).read_text()
    except OSError as error:
        raise ConfigError(f"OCPP_PASSWORDS_FILE {path}: {error.strerror or error}") from None
    found: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        fields = raw.split("#", 1)[0].split()
        if not fields:
            continue
        if len(fields) != 2 or not fields[1].startswith(f"{_SCHEME}$"):
            raise ConfigError(
                f"OCPP_PASSWORDS_FILE {path}, line {number}: expected "
                f"'<chargePointId> {_SCHEME}$…' (python -m services.ocpp.passwords ID makes one)"
            )
        found[canonical_charge_point_id(fields[0])] = fields[1]
    return found


def main() -> None:
    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m services.ocpp.passwords CHARGE_POINT_ID < password")
    password = sys.stdin.readline().rstrip("\n")
    if not password:
        raise SystemExit("no password on standard input")
    print(f"{canonical_charge_point_id(sys.argv[1])} {hash_password(password)}")


if __name__ == "__main__":
    main()
