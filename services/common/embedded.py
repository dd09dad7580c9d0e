"""An embedded PostgreSQL (the pgserver package) for `energy-ingest run` and the tests
when no server is configured."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


@contextmanager
def _no_runtime_dir_warning() -> Iterator[None]:
    """pgserver asks platformdirs for a runtime dir it does not need (as root, without a login
    session there is none): the fallback is fine and the warning only noise."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
        yield


class EmbeddedPostgres:
    """Starts (or reuses) a PostgreSQL whose data lives in `data_dir`; stop() shuts it down."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._server: Any = None

    def start(self) -> str:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with _no_runtime_dir_warning():
            import pgserver  # asks platformdirs at import time

            self._server = pgserver.get_server(self.data_dir, cleanup_mode="stop")
        return str(self._server.get_uri())

    def stop(self) -> None:
        if self._server is not None:
            with _no_runtime_dir_warning():
                self._server.cleanup()
            self._server = None
