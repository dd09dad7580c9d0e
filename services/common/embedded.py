"""An embedded PostgreSQL (the pgserver package) for `energy-ingest run` and the tests
when no server is configured.

pgserver comes with the `embedded` extra only: production images and platforms it has no wheel
for install without it, so it is imported here, lazily, and its absence is a ConfigError."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from services.common.errors import ConfigError

MISSING_EXTRA = (
    "the embedded PostgreSQL needs the 'embedded' extra: "
    "pip install 'energy-ingest[embedded]', or set DATABASE_URL"
)

log = logging.getLogger(__name__)


@contextmanager
def _no_runtime_dir_warning() -> Iterator[None]:
    """pgserver asks platformdirs for a runtime dir it does not need (as root, without a login
    session there is none): the fallback is fine and the warning only noise."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
        yield


def _import_pgserver() -> Any:
    with _no_runtime_dir_warning():
        try:
            import pgserver  # asks platformdirs at import time
        except ImportError as error:
            # Not installed (or one of its own dependencies is not): say which extra, and only
            # add the cause when it is something else, such as a broken binary.
            cause = "" if isinstance(error, ModuleNotFoundError) else f" ({error})"
            raise ConfigError(MISSING_EXTRA + cause) from None
    return pgserver


class EmbeddedPostgres:
    """Starts (or reuses) a PostgreSQL whose data lives in `data_dir`; stop() shuts it down.

    Raises ConfigError at once when pgserver is not installed, before anything is started."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._pgserver = _import_pgserver()
        self._server: Any = None

    def start(self) -> str:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with _no_runtime_dir_warning():
            self._server = self._pgserver.get_server(self.data_dir, cleanup_mode="stop")
        return str(self._server.get_uri())

    def stop(self) -> None:
        if self._server is not None:
            with _no_runtime_dir_warning():
                self._server.cleanup()
            self._server = None
