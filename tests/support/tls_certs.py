"""Throwaway certificate authorities and certificates for TLS tests, made with `cryptography`.

    pki = make_pki(tmp_path)          # a CA, a server cert for 127.0.0.1/localhost, a client cert
    pki.ca, pki.server_cert, pki.server_key, pki.client_cert, pki.client_key
    other = make_pki(tmp_path / "other", names=("db.example.com",))   # another CA, another name

EC P-256 keys (fast to make); key files are written 0600, as mcpsec requires of a client key.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

Key = ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class Pki:
    folder: Path
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_pki(
    folder: Path,
    *,
    names: tuple[str, ...] = ("127.0.0.1", "localhost"),
    expired: bool = False,
) -> Pki:
    """A CA, a server certificate for `names` (IP addresses or DNS names) and a client
    certificate, all signed by that CA; `expired` makes the server certificate out of date."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"mcpsec test CA {folder.name}")])
    ca = _builder(ca_name, ca_name, ca_key, days=(-1, 30))
    ca = ca.add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
    ca_cert = ca.sign(ca_key, hashes.SHA256())
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = _builder(_cn(names[0]), ca_name, server_key, days=(-3, -1) if expired else (-1, 30))
    server = server.add_extension(x509.SubjectAlternativeName(_sans(names)), critical=False)
    server = server.add_extension(
        x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
    )
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = _builder(_cn("mcpsec client"), ca_name, client_key, days=(-1, 30))
    client = client.add_extension(
        x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
    )
    pki = Pki(
        folder,
        folder / "ca.pem",
        folder / "server.pem",
        folder / "server.key",
        folder / "client.pem",
        folder / "client.key",
    )
    _write_cert(pki.ca, ca_cert)
    _write_cert(pki.server_cert, server.sign(ca_key, hashes.SHA256()))
    _write_key(pki.server_key, server_key)
    _write_cert(pki.client_cert, client.sign(ca_key, hashes.SHA256()))
    _write_key(pki.client_key, client_key)
    return pki


def _cn(name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])


def _sans(names: tuple[str, ...]) -> list[x509.GeneralName]:
    sans: list[x509.GeneralName] = []
    for name in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            sans.append(x509.DNSName(name))
    return sans


def _builder(
    subject: x509.Name, issuer: x509.Name, key: Key, *, days: tuple[int, int]
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + datetime.timedelta(days=days[0]))
        .not_valid_after(now + datetime.timedelta(days=days[1]))
    )


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _write_key(path: Path, key: Key) -> None:
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
