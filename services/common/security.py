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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

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


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """TLS when a certificate is configured; client certificates required when a CA is."""
    if not settings.tls_cert_file:
        return None
    client_ca = _read(settings.tls_client_ca_file) if settings.tls_client_ca_file else None
    return grpc.ssl_server_credentials(
        [(_read(settings.tls_key_file), _read(settings.tls_cert_file))],
        root_certificates=client_ca,
        require_client_auth=client_ca is not None,
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


class Authorizer:
    """Checks each call; servicers ask it before doing anything."""

    def __init__(self, tokens: dict[str, Principal] | None, mutual_tls: bool) -> None:
        self._tokens = tokens
        self._mutual_tls = mutual_tls

    @classmethod
    def from_settings(cls, settings: Settings) -> Authorizer:
        tokens = load_tokens(settings.auth_tokens_file) if settings.auth_tokens_file else None
        unkinded = devices_without_kind(tokens) if tokens else []
        if unkinded:
            log.warning(
                "AUTH_TOKENS_FILE: device tokens without a kind may write meter and vehicle "
                'readings of their id; add "kind": "charger" or "vehicle"',
                extra={"principals": unkinded},
            )
        return cls(tokens, bool(settings.tls_client_ca_file))

    @property
    def enabled(self) -> bool:
        return self._tokens is not None or self._mutual_tls

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
        if self._tokens is not None:
            for key, value in metadata or ():
                if (
                    key == "authorization"
                    and isinstance(value, str)
                    and value.startswith("Bearer ")
                ):
                    digest = hashlib.sha256(value[len("Bearer ") :].encode()).hexdigest()
                    principal = self._tokens.get(digest)
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
