"""Certificates and keys for a loopback control plane: a CA, serving and client certs, SA keys.

Everything is generated fresh per control plane into its working directory; nothing is reused.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALIDITY = dt.timedelta(days=30)


@dataclass(frozen=True)
class CertPair:
    cert: Path
    key: Path


@dataclass(frozen=True)
class Pki:
    ca: CertPair
    serving: CertPair
    admin: CertPair
    kubelet: CertPair
    """The node agent's kubelet API (container logs): serving cert for 127.0.0.1."""
    kubelet_client: CertPair
    """The API server's client cert towards the kubelet API."""
    service_account_key: Path
    service_account_pub: Path


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attrs)


def _write_key(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _issue(
    *,
    directory: Path,
    stem: str,
    subject: x509.Name,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    server: bool = False,
    client: bool = False,
) -> tuple[CertPair, x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    is_ca = issuer is None
    signer_cert, signer_key = issuer if issuer else (None, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(signer_cert.subject if signer_cert else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
    )
    usages = []
    if server:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.DNSName("kubernetes"),
                    x509.DNSName("kubernetes.default"),
                    x509.DNSName("kubernetes.default.svc"),
                    x509.DNSName("kubernetes.default.svc.cluster.local"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("10.0.0.1")),
                ]
            ),
            critical=False,
        )
    if client:
        usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    if usages:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    cert = builder.sign(signer_key, hashes.SHA256())
    pair = CertPair(cert=directory / f"{stem}.crt", key=directory / f"{stem}.key")
    pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key, pair.key)
    return pair, cert, key


def generate(directory: Path) -> Pki:
    """Write a CA, serving and client certs (API server, admin, kubelet API) and SA keys."""
    directory.mkdir(parents=True, exist_ok=True)
    ca, ca_cert, ca_key = _issue(
        directory=directory, stem="ca", subject=_name("kubetune-local-ca"), issuer=None
    )
    serving, _, _ = _issue(
        directory=directory,
        stem="apiserver",
        subject=_name("kube-apiserver"),
        issuer=(ca_cert, ca_key),
        server=True,
    )
    admin, _, _ = _issue(
        directory=directory,
        stem="admin",
        subject=_name("kubetune-admin", "system:masters"),
        issuer=(ca_cert, ca_key),
        client=True,
    )
    kubelet, _, _ = _issue(
        directory=directory,
        stem="kubelet",
        subject=_name("kubetune-node-agent"),
        issuer=(ca_cert, ca_key),
        server=True,
    )
    kubelet_client, _, _ = _issue(
        directory=directory,
        stem="apiserver-kubelet-client",
        subject=_name("kube-apiserver-kubelet-client", "system:masters"),
        issuer=(ca_cert, ca_key),
        client=True,
    )
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    sa_key_path = directory / "service-account.key"
    _write_key(sa_key, sa_key_path)
    sa_pub_path = directory / "service-account.pub"
    sa_pub_path.write_bytes(
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return Pki(
        ca=ca,
        serving=serving,
        admin=admin,
        kubelet=kubelet,
        kubelet_client=kubelet_client,
        service_account_key=sa_key_path,
        service_account_pub=sa_pub_path,
    )
