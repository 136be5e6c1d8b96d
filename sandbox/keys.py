"""Development RSA keys for the JPM client (private_key_jwt assertions and JWS bodies).

``ensure_dev_keys`` creates ``jpm-client-key.pem`` (private, used by the service) and
``jpm-client-key.pub.pem`` (public, used by the sandbox to verify) once; later calls reuse them.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

PRIVATE_NAME = "jpm-client-key.pem"
PUBLIC_NAME = "jpm-client-key.pub.pem"


def ensure_dev_keys(directory: str | Path) -> tuple[Path, Path]:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    private_path, public_path = directory / PRIVATE_NAME, directory / PUBLIC_NAME
    if not private_path.exists():
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        tmp = private_path.with_suffix(".tmp")
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as fh:
            fh.write(pem)
        tmp.replace(private_path)
    if not public_path.exists():
        key = serialization.load_pem_private_key(private_path.read_bytes(), password=None)
        public_path.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                              serialization.PublicFormat.SubjectPublicKeyInfo))
    return private_path, public_path
