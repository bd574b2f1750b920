"""A throw-away PKI for TLS tests: a CA, a server certificate (localhost), a client one."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "govtrust tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _issue(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name | None,
    issuer_key: ec.EllipticCurvePrivateKey | None,
    *,
    ca: bool = False,
    server: bool = False,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer or _name(subject))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return builder.sign(issuer_key or key, hashes.SHA256())


def pem(cert: x509.Certificate) -> bytes:
    """PEM of a certificate."""
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """Unencrypted PKCS#8 PEM of a private key."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


class Pki:
    """CA ``test service CA``; server ``localhost`` (+127.0.0.1); client ``licence-system``."""

    def __init__(self) -> None:
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        self.ca = _issue("test service CA", self.ca_key, None, None, ca=True)
        self.server_key = ec.generate_private_key(ec.SECP256R1())
        self.server = _issue(
            "localhost", self.server_key, self.ca.subject, self.ca_key, server=True
        )
        self.client_key = ec.generate_private_key(ec.SECP256R1())
        self.client = _issue("licence-system", self.client_key, self.ca.subject, self.ca_key)

    def write(self, directory: Path) -> dict[str, Path]:
        """Write ca.pem, server.pem, server.key (0600); return their paths."""
        directory.mkdir(parents=True, exist_ok=True)
        paths = {
            "ca": directory / "ca.pem",
            "cert": directory / "server.pem",
            "key": directory / "server.key",
        }
        paths["ca"].write_bytes(pem(self.ca))
        paths["cert"].write_bytes(pem(self.server))
        paths["key"].write_bytes(key_pem(self.server_key))
        paths["key"].chmod(0o600)
        return paths
