"""A development PKI: a CA, a server certificate and client certificates for each kind of principal.

For local runs and tests only. Production certificates come from the operator's own CA; the
principal naming (SAN URI `urn:energy-ingest:<role>:<principal>`, for a device
`urn:energy-ingest:device:charger:<id>` or `urn:energy-ingest:device:vehicle:<id>`, else the CN
as a device of either kind) is the same either way (README, "Security").

    python -m services.common.certs OUT_DIR
"""

from __future__ import annotations

import ipaddress
import shlex
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

try:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
except ModuleNotFoundError:
    # cryptography is a development dependency (the servers never import this module): as a
    # command, say which extra is missing; as a library, the ImportError is the message.
    if __name__ != "__main__":
        raise
    print(
        "python -m services.common.certs: needs the 'dev' extra (cryptography): "
        "pip install 'energy-ingest[dev]'",
        file=sys.stderr,
    )
    sys.exit(2)

SERVICE_HOSTNAMES = ("localhost", "meter", "vehicle", "analytics")
ANALYTICS_URI = "urn:energy-ingest:service:analytics"
OPERATOR_URI = "urn:energy-ingest:operator:ops"
DEVICE_ID = "CHG-001"
VEHICLE_ID = "VH-001"
DEVICE_URI = f"urn:energy-ingest:device:charger:{DEVICE_ID}"
VEHICLE_URI = f"urn:energy-ingest:device:vehicle:{VEHICLE_ID}"
# Backdated so a freshly made certificate is valid on a host whose clock runs slightly behind.
_CLOCK_SLACK = timedelta(minutes=5)
_LEAF_DAYS = 825


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_ca(common_name: str, *, days: int = 3650) -> tuple[bytes, bytes]:
    """A self-signed CA: (certificate PEM, private key PEM)."""
    key = _new_key()
    now = datetime.now(UTC)
    name = _name(common_name)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SLACK)
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def make_cert(
    ca_cert_pem: bytes,
    ca_key_pem: bytes,
    common_name: str,
    *,
    dns_names: Sequence[str] = (),
    ip_addresses: Sequence[str] = (),
    uris: Sequence[str] = (),
    server: bool = False,
    client: bool = False,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> tuple[bytes, bytes]:
    """A leaf certificate signed by the CA: (certificate PEM, private key PEM).

    `not_before` / `not_after` default to now (less a little slack) and 825 days on; tests pass
    a past `not_after` to make an expired certificate."""
    ca_cert = x509.load_pem_x509_certificate(ca_cert_pem)
    ca_key = serialization.load_pem_private_key(ca_key_pem, password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise TypeError("the CA key must be an EC private key (made by make_ca)")
    key = _new_key()
    now = datetime.now(UTC)
    start = not_before if not_before is not None else now - _CLOCK_SLACK
    end = not_after if not_after is not None else now + timedelta(days=_LEAF_DAYS)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                # ECDHE key exchange signs with the key; static ECDH would need key_agreement.
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns_names]
    names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
    names += [x509.UniformResourceIdentifier(u) for u in uris]
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    usages = [ExtendedKeyUsageOID.SERVER_AUTH] if server else []
    usages += [ExtendedKeyUsageOID.CLIENT_AUTH] if client else []
    if usages:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def _write(path: Path, data: bytes, *, private: bool) -> Path:
    path.write_bytes(data)
    if private:
        # Keys readable by their owner only, as a real deployment would keep them.
        path.chmod(0o600)
    return path


def write_dev_pki(directory: Path) -> dict[str, Path]:
    """Writes a CA and server, analytics, operator, charger (CHG-001) and vehicle (VH-001)
    certificates.

    Returns the paths by name: "ca", "ca-key", "server", "server-key", "analytics",
    "analytics-key", "operator", "operator-key", "CHG-001", "CHG-001-key", "VH-001",
    "VH-001-key"."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_cert, ca_key = make_ca("energy-ingest development CA")
    paths = {
        "ca": _write(directory / "ca.pem", ca_cert, private=False),
        "ca-key": _write(directory / "ca-key.pem", ca_key, private=True),
    }
    leaves = {
        # One server certificate for all three services: their hostnames in compose plus loopback.
        "server": make_cert(
            ca_cert,
            ca_key,
            "energy-ingest server",
            dns_names=SERVICE_HOSTNAMES,
            ip_addresses=("127.0.0.1", "::1"),
            server=True,
        ),
        "analytics": make_cert(ca_cert, ca_key, "analytics", uris=(ANALYTICS_URI,), client=True),
        "operator": make_cert(ca_cert, ca_key, "ops", uris=(OPERATOR_URI,), client=True),
        # Devices state their kind in a SAN URI: CHG-001 writes meter readings only, VH-001
        # vehicle readings only (a bare CN would be a device of either kind).
        DEVICE_ID: make_cert(ca_cert, ca_key, DEVICE_ID, uris=(DEVICE_URI,), client=True),
        VEHICLE_ID: make_cert(ca_cert, ca_key, VEHICLE_ID, uris=(VEHICLE_URI,), client=True),
    }
    for name, (cert, key) in leaves.items():
        paths[name] = _write(directory / f"{name}.pem", cert, private=False)
        paths[f"{name}-key"] = _write(directory / f"{name}-key.pem", key, private=True)
    return paths


def environment(paths: dict[str, Path]) -> dict[str, str]:
    """The TLS_* variables for a production-like local run with mutual TLS."""
    return {
        "TLS_CERT_FILE": str(paths["server"].resolve()),
        "TLS_KEY_FILE": str(paths["server-key"].resolve()),
        "TLS_CLIENT_CA_FILE": str(paths["ca"].resolve()),
        "TLS_CA_FILE": str(paths["ca"].resolve()),
        "TLS_CLIENT_CERT_FILE": str(paths["analytics"].resolve()),
        "TLS_CLIENT_KEY_FILE": str(paths["analytics-key"].resolve()),
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1 or args[0] in ("-h", "--help"):
        print("usage: python -m services.common.certs OUT_DIR", file=sys.stderr)
        return 2
    paths = write_dev_pki(Path(args[0]))
    print(f"# development PKI written to {Path(args[0]).resolve()}; to run with mutual TLS:")
    for name, value in environment(paths).items():
        print(f"export {name}={shlex.quote(value)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
