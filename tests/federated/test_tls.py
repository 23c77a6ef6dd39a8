"""A federation over TLS on 127.0.0.1, with a CA and a server certificate made here (``cryptography``)."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from medseg.federated.federation import simulate
from medseg.federated.options import FederatedOptions, SiteConfig, TlsFiles


def _certificate(
    subject: str, key: ec.EllipticCurvePrivateKey, issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None, ca: bool
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer_name, signer = issuer if issuer is not None else (name, key)
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder().subject_name(name).issuer_name(issuer_name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )  # fmt: skip
    if not ca:
        san = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return builder.sign(signer, hashes.SHA256())


def _tls_files(folder: Path) -> TlsFiles:
    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("medseg test CA", ca_key, None, ca=True)
    server = _certificate("127.0.0.1", server_key, (ca.subject, ca_key), ca=False)
    pem = serialization.Encoding.PEM
    (folder / "ca.pem").write_bytes(ca.public_bytes(pem))
    (folder / "server.pem").write_bytes(server.public_bytes(pem))
    key = server_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    (folder / "server.key").write_bytes(key)
    return TlsFiles(folder / "ca.pem", folder / "server.pem", folder / "server.key")


def test_a_federation_over_tls(tmp_path: Path, sites: list[SiteConfig], tiny_plans: Path) -> None:
    tls = _tls_files(tmp_path)
    result = simulate(
        sites[:2], tmp_path / "global", FederatedOptions(rounds=1, plans=tiny_plans, device="cpu"), tls=tls
    )
    assert sorted(result.record["rounds"][0]["sites"]) == ["site0", "site1"]


def test_a_site_with_the_wrong_ca_does_not_join(tmp_path: Path, sites: list[SiteConfig], tiny_plans: Path) -> None:
    """Sites trusting another CA never join: the server gives up after its join timeout, with one line."""
    from medseg.errors import MedsegError

    tls = _tls_files(tmp_path)
    (tmp_path / "other").mkdir()
    other = _tls_files(tmp_path / "other")
    mixed = TlsFiles(other.root_certificate, tls.certificate, tls.private_key)  # sites trust "other", server uses tls
    options = FederatedOptions(rounds=1, plans=tiny_plans, device="cpu", join_timeout_s=3)
    with pytest.raises(MedsegError, match="0 of 2 site"):
        simulate(sites[:2], tmp_path / "global", options, tls=mixed)
