"""TLS fixtures: a throw-away CA, a server certificate for 127.0.0.1, client certificates, and a second sandbox
served in-process over HTTPS that requires a client certificate signed by the CA (mutual TLS)."""

from __future__ import annotations

import ipaddress
import ssl
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from werkzeug.serving import make_server

from sandbox.app import SandboxApp
from sandbox.core import SandboxConfig
from sandbox.keys import ensure_dev_keys


@dataclass(frozen=True)
class TlsFiles:
    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    rogue_client_cert: Path  # signed by another CA
    rogue_client_key: Path


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _ca(common_name: str):
    key = _key()
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(_name(common_name)).issuer_name(_name(common_name))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False),
                           critical=True)
            .sign(key, hashes.SHA256()))
    return key, cert


def _leaf(ca_key, ca_cert, common_name: str, *, server: bool):
    key = _key()
    now = datetime.now(UTC)
    builder = (x509.CertificateBuilder().subject_name(_name(common_name)).issuer_name(ca_cert.subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server
                                                     else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False))
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                         x509.DNSName("localhost")]), critical=False)
    return key, builder.sign(ca_key, hashes.SHA256())


def _write(directory: Path, name: str, key, cert) -> tuple[Path, Path]:
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory) -> TlsFiles:
    directory = tmp_path_factory.mktemp("tls")
    ca_key, ca_cert = _ca("Payments test CA")
    (directory / "ca.crt").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    server_cert, server_key = _write(directory, "server", *_leaf(ca_key, ca_cert, "127.0.0.1", server=True))
    client_cert, client_key = _write(directory, "client", *_leaf(ca_key, ca_cert, "payments-service", server=False))
    rogue_ca_key, rogue_ca_cert = _ca("Someone else's CA")
    rogue_cert, rogue_key = _write(directory, "rogue", *_leaf(rogue_ca_key, rogue_ca_cert, "payments-service",
                                                              server=False))
    return TlsFiles(ca_cert=directory / "ca.crt", server_cert=server_cert, server_key=server_key,
                    client_cert=client_cert, client_key=client_key, rogue_client_cert=rogue_cert,
                    rogue_client_key=rogue_key)


@dataclass
class TlsSandbox:
    url: str
    app: SandboxApp
    private_key_path: Path

    def requests(self) -> list[dict]:
        return self.app.ctx.log.list(service="jpm")

    def ledger(self) -> list:
        return list(self.app.ctx.services["jpm"].payments)


@pytest.fixture
def mtls_sandbox(tls_files, tmp_path):
    """A second sandbox, in this process, over HTTPS demanding a client certificate signed by the test CA."""
    private_key, public_key = ensure_dev_keys(tmp_path / "keys")
    app = SandboxApp(SandboxConfig(jpm_public_key_path=str(public_key), hang_seconds=3.0))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls_files.server_cert, tls_files.server_key)
    context.load_verify_locations(cafile=tls_files.ca_cert)
    context.verify_mode = ssl.CERT_REQUIRED
    server = make_server("127.0.0.1", 0, app, threaded=True, ssl_context=context)
    thread = threading.Thread(target=server.serve_forever, name="mtls-sandbox", daemon=True)
    thread.start()
    try:
        yield TlsSandbox(url=f"https://127.0.0.1:{server.server_port}", app=app, private_key_path=private_key)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
