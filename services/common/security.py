"""Who is calling, and what they may do (README, "Security").

A principal comes from the connection, never from the payload: a bearer token (its SHA-256 is
looked up in AUTH_TOKENS_FILE; a token, when sent, wins over the certificate) or, under mutual
TLS, the client certificate (a SAN URI
urn:energy-ingest:<role>:<principal>, otherwise its subject CN as a device). Roles: `device`
ingests only its own id; `service` (AnalyticsService, internal callers) ingests and reads;
`operator` reads. When neither TLS_CLIENT_CA_FILE nor AUTH_TOKENS_FILE is set, auth is off.

A device also has a kind: a `charger` writes meter readings only, a `vehicle` vehicle readings
only. A token entry states it with "kind"; a certificate with the SAN URI
urn:energy-ingest:device:charger:<id> or urn:energy-ingest:device:vehicle:<id>. A device whose
kind is not stated (a token entry without "kind", urn:energy-ingest:device:<id>, a bare CN) may
write its own id on either service, as before kinds existed; the servers warn at start about
such token entries."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

import grpc

from services.common.config import Settings
from services.common.errors import ConfigError, PermissionDenied, Unauthenticated

log = logging.getLogger(__name__)

ROLES = ("device", "service", "operator")
# A device's kind, and the readings it may write: a charger meter readings (MeterService), a
# vehicle vehicle readings (VehicleService).
KINDS = ("charger", "vehicle")
URI_PREFIX = "urn:energy-ingest:"
CREDENTIALS_REQUIRED = "credentials required: a client certificate or a bearer token"


@dataclass(frozen=True)
class Principal:
    name: str
    role: str
    kind: str | None = None  # devices only: "charger", "vehicle", or None when not stated


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise ConfigError(f"cannot read {path}: {error}") from None


Loaded = TypeVar("Loaded")


class ReloadingFiles(Generic[Loaded]):
    """What `load` makes of some files, made again when one of them changes (its inode, size or
    modification time: a Kubernetes Secret volume swaps a symlink, an operator renames a new
    file into place). `current()` checks at most every `check_seconds`; when the new files do
    not load (a half-written file) the last good value stays and the error is logged, so a bad
    rotation never takes a running server down. ConfigError at construction when the files do
    not load at start."""

    def __init__(
        self,
        paths: Sequence[str],
        load: Callable[[], Loaded],
        *,
        what: str,
        check_seconds: float = 1.0,
    ) -> None:
        self._paths = tuple(paths)
        self._load = load
        self._what = what
        self._check_seconds = check_seconds
        self._lock = threading.Lock()
        self._stamp = self._stat()
        self._value = load()
        self._checked = time.monotonic()
        self._failed: tuple[tuple[int, int, int], ...] | None = None
        self.reloads = 0

    def _stat(self) -> tuple[tuple[int, int, int], ...]:
        stamps = []
        for path in self._paths:
            try:
                stat = os.stat(path)
            except OSError:
                stamps.append((0, 0, 0))
            else:
                stamps.append((stat.st_ino, stat.st_size, stat.st_mtime_ns))
        return tuple(stamps)

    def current(self) -> Loaded:
        return self.poll()[0]

    def poll(self) -> tuple[Loaded, bool]:
        """(the value, whether it was made again just now)."""
        now = time.monotonic()
        if now - self._checked < self._check_seconds:
            return self._value, False
        with self._lock:
            if now - self._checked < self._check_seconds:
                return self._value, False
            self._checked = now
            stamp = self._stat()
            if stamp in (self._stamp, self._failed):
                return self._value, False
            try:
                value = self._load()
            except ConfigError as error:
                # Once per change: the same broken (or missing) file is not tried again.
                self._failed = stamp
                log.error(
                    f"{self._what} changed but does not load; still using the previous one",
                    extra={"files": list(self._paths), "error": str(error)},
                )
                return self._value, False
            self._stamp, self._value = stamp, value
            self.reloads += 1
            log.info(f"{self._what} reloaded", extra={"files": list(self._paths)})
            return value, True


def _certificate_configuration(settings: Settings) -> grpc.ServerCertificateConfiguration:
    """The files as gRPC takes them, once Python's ssl module has loaded them: gRPC itself only
    finds a key that does not match its certificate, or a file that is not PEM, at the next
    handshake, and then fails every new connection with a line that names no file."""
    check = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        # An encrypted key is refused (gRPC cannot use one), never asked a password for.
        check.load_cert_chain(settings.tls_cert_file, settings.tls_key_file, password=b"")
        if settings.tls_client_ca_file:
            check.load_verify_locations(settings.tls_client_ca_file)
    except (ssl.SSLError, OSError, ValueError) as error:
        raise ConfigError(
            f"TLS_CERT_FILE {settings.tls_cert_file}, TLS_KEY_FILE {settings.tls_key_file}"
            + (
                f", TLS_CLIENT_CA_FILE {settings.tls_client_ca_file}"
                if settings.tls_client_ca_file
                else ""
            )
            + f": {error}"
        ) from None
    client_ca = _read(settings.tls_client_ca_file) if settings.tls_client_ca_file else None
    return grpc.ssl_server_certificate_configuration(
        [(_read(settings.tls_key_file), _read(settings.tls_cert_file))],
        root_certificates=client_ca,
    )


def server_credentials(
    settings: Settings, *, check_seconds: float = 1.0
) -> grpc.ServerCredentials | None:
    """TLS when a certificate is configured; client certificates required when a CA is. The
    certificate, key and client CA are read again when they change, without a restart: each
    new connection's handshake uses the files as they are (checked at most every
    `check_seconds`); connections already open keep theirs. Replace the files atomically
    (write elsewhere, then rename), as a Kubernetes Secret volume does."""
    if not settings.tls_cert_file:
        return None
    paths = [settings.tls_cert_file, settings.tls_key_file, settings.tls_client_ca_file]
    files = ReloadingFiles(
        [path for path in paths if path],
        lambda: _certificate_configuration(settings),
        what="TLS certificate",
        check_seconds=check_seconds,
    )

    def fetch() -> grpc.ServerCertificateConfiguration | None:
        # None: keep the configuration in use. gRPC asks before every handshake.
        value, reloaded = files.poll()
        return value if reloaded else None

    return grpc.dynamic_ssl_server_credentials(
        files.current(),
        fetch,
        require_client_authentication=bool(settings.tls_client_ca_file),
    )


def channel_credentials(settings: Settings) -> grpc.ChannelCredentials | None:
    """What AnalyticsService (and the client module) present when dialling the others."""
    if not settings.tls_ca_file:
        return None
    cert = _read(settings.tls_client_cert_file) if settings.tls_client_cert_file else None
    key = _read(settings.tls_client_key_file) if settings.tls_client_key_file else None
    return grpc.ssl_channel_credentials(
        root_certificates=_read(settings.tls_ca_file), private_key=key, certificate_chain=cert
    )


def load_tokens(path: str) -> dict[str, Principal]:
    try:
        entries = json.loads(_read(path))
        tokens = {
            digest.lower(): Principal(
                str(entry["principal"]),
                str(entry["role"]),
                None if entry.get("kind") is None else str(entry["kind"]),
            )
            for digest, entry in entries.items()
        }
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise ConfigError(f"AUTH_TOKENS_FILE {path} is not a token table: {error}") from None
    for principal in tokens.values():
        if principal.role not in ROLES:
            raise ConfigError(f"AUTH_TOKENS_FILE: unknown role {principal.role!r}")
        if principal.kind is not None and principal.role != "device":
            raise ConfigError(
                f"AUTH_TOKENS_FILE: {principal.name} has a kind but is a {principal.role}; "
                "only devices have one"
            )
        if principal.kind is not None and principal.kind not in KINDS:
            raise ConfigError(
                f"AUTH_TOKENS_FILE: {principal.name} has unknown kind {principal.kind!r} "
                f"(one of {', '.join(KINDS)})"
            )
    return tokens


def devices_without_kind(tokens: dict[str, Principal]) -> list[str]:
    """The device principals of a token table that state no kind (they may write either)."""
    return sorted({p.name for p in tokens.values() if p.role == "device" and p.kind is None})


def _device_from_uri(name: str, text: str) -> Principal:
    """urn:energy-ingest:device:<kind>:<id>, or (kind not stated) urn:energy-ingest:device:<id>."""
    kind, separator, device = name.partition(":")
    if separator and kind in KINDS:
        if not device:
            raise Unauthenticated(f"certificate names no valid principal: {text}")
        return Principal(device, "device", kind)
    return Principal(name, "device")


def _from_certificate(context: grpc.ServicerContext) -> Principal | None:
    auth = context.auth_context()
    for san in auth.get("x509_subject_alternative_name", []):
        text = san.decode() if isinstance(san, bytes) else str(san)
        if text.startswith(URI_PREFIX):
            role, _, name = text[len(URI_PREFIX) :].partition(":")
            if role not in ROLES or not name:
                # Meant for us but malformed: refuse rather than fall back to the CN.
                raise Unauthenticated(f"certificate names no valid principal: {text}")
            if role == "device":
                return _device_from_uri(name, text)
            return Principal(name, role)
    common_names = auth.get("x509_common_name", [])
    if common_names:
        name = common_names[0]
        return Principal(name.decode() if isinstance(name, bytes) else str(name), "device")
    return None


def _load_checked_tokens(path: str) -> dict[str, Principal]:
    tokens = load_tokens(path)
    unkinded = devices_without_kind(tokens)
    if unkinded:
        log.warning(
            "AUTH_TOKENS_FILE: device tokens without a kind may write meter and vehicle "
            'readings of their id; add "kind": "charger" or "vehicle"',
            extra={"principals": unkinded},
        )
    return tokens


class Authorizer:
    """Checks each call; servicers ask it before doing anything. `tokens` is a token table, or
    one read again from AUTH_TOKENS_FILE when the file changes (ReloadingFiles)."""

    def __init__(
        self,
        tokens: dict[str, Principal] | ReloadingFiles[dict[str, Principal]] | None,
        mutual_tls: bool,
    ) -> None:
        self._token_table = tokens
        self._mutual_tls = mutual_tls

    @classmethod
    def from_settings(cls, settings: Settings, *, check_seconds: float = 1.0) -> Authorizer:
        """AUTH_TOKENS_FILE is read again when it changes (checked at most every
        `check_seconds`): a token added or revoked counts from the next call."""
        path = settings.auth_tokens_file
        tokens = (
            ReloadingFiles(
                [path],
                lambda: _load_checked_tokens(path),
                what="AUTH_TOKENS_FILE",
                check_seconds=check_seconds,
            )
            if path
            else None
        )
        return cls(tokens, bool(settings.tls_client_ca_file))

    @property
    def _tokens(self) -> dict[str, Principal] | None:
        if isinstance(self._token_table, ReloadingFiles):
            return self._token_table.current()
        return self._token_table

    @property
    def enabled(self) -> bool:
        return self._token_table is not None or self._mutual_tls

    def principal(self, context: grpc.ServicerContext) -> Principal | None:
        """None when auth is off; UNAUTHENTICATED when it is on and the call proves nothing."""
        if not self.enabled:
            return None
        found_token = self.from_metadata(context.invocation_metadata())
        if found_token is not None:
            return found_token
        if self._mutual_tls:
            found = _from_certificate(context)
            if found is not None:
                return found
        raise Unauthenticated(CREDENTIALS_REQUIRED)

    def from_metadata(self, metadata: Sequence[tuple[str, str | bytes]] | None) -> Principal | None:
        """The principal a call's metadata proves (its bearer token), without its connection:
        what the server checks before it spends a thread on the call (admission.py). None when
        auth is off, or when no token was sent and mutual TLS may still name the caller by its
        certificate (checked with the call's context, `principal`); UNAUTHENTICATED for an
        unknown token, or for no token when tokens are the only proof accepted."""
        if not self.enabled:
            return None
        tokens = self._tokens
        if tokens is not None:
            for key, value in metadata or ():
                if (
                    key == "authorization"
                    and isinstance(value, str)
                    and value.startswith("Bearer ")
                ):
                    digest = hashlib.sha256(value[len("Bearer ") :].encode()).hexdigest()
                    principal = tokens.get(digest)
                    if principal is None:
                        raise Unauthenticated("unknown bearer token")
                    return principal
        if not self._mutual_tls:
            raise Unauthenticated(CREDENTIALS_REQUIRED)
        return None

    def require_reader(self, context: grpc.ServicerContext) -> None:
        principal = self.principal(context)
        if principal is not None and principal.role not in ("service", "operator"):
            raise PermissionDenied(
                f"{principal.role} {principal.name} may not read", principal=principal.name
            )

    def ingesting_device(
        self, context: grpc.ServicerContext, kind: str | None = None
    ) -> str | None:
        """The device id every reading must carry, or None when any id is allowed. `kind`: the
        kind of device whose readings the service stores ("charger" or "vehicle"); a device of
        the other kind is PERMISSION_DENIED."""
        principal = self.principal(context)
        if principal is None or principal.role == "service":
            return None
        if principal.role == "device":
            if kind is not None and principal.kind is not None and principal.kind != kind:
                raise PermissionDenied(
                    f"{principal.kind} {principal.name} may not write {kind} readings",
                    principal=principal.name,
                )
            return principal.name
        raise PermissionDenied(
            f"{principal.role} {principal.name} may not ingest", principal=principal.name
        )


OPEN = Authorizer(None, mutual_tls=False)
