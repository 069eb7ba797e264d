"""DKIM signing keys: made by ``postbote dkim generate``, kept as files in the data folder.

``DATA/dkim/DOMAIN/SELECTOR.pem``, one PKCS#8 private key per selector. Each
domain gets an Ed25519 key and an RSA-2048 key (RFC 8463 §4: sign with both,
since not every verifier knows Ed25519 yet). The selector names the date
and the algorithm (``202611e``, ``202611r``) so keys can be rotated by adding
new ones before removing old ones.
"""

from __future__ import annotations

import base64
import datetime
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa


@dataclass(frozen=True)
class SigningKey:
    domain: str
    selector: str
    algorithm: str  # "ed25519-sha256" or "rsa-sha256" (RFC 8463 / RFC 6376)
    private_pem: bytes

    @property
    def dkimpy_private(self) -> bytes:
        """The form dkimpy's signer takes: PEM for RSA, the raw 32-octet
        seed base64-encoded for Ed25519."""
        if self.algorithm == "ed25519-sha256":
            key = serialization.load_pem_private_key(self.private_pem, None)
            raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                    serialization.NoEncryption())
            return base64.b64encode(raw)
        return self.private_pem

    def dns_record(self) -> str:
        """The TXT record to publish at SELECTOR._domainkey.DOMAIN (RFC 6376 §3.6.1)."""
        key = serialization.load_pem_private_key(self.private_pem, None)
        public = key.public_key()
        if self.algorithm == "ed25519-sha256":
            raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            return f"v=DKIM1; k=ed25519; p={base64.b64encode(raw).decode()}"
        der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode()}"


def key_folder(data_dir: Path, domain: str) -> Path:
    return data_dir / "dkim" / domain


def generate_keys(data_dir: Path, domain: str, today: datetime.date | None = None) -> list[SigningKey]:
    """Make a new Ed25519 and RSA-2048 key pair for ``domain``; returns both."""
    stamp = (today or datetime.date.today()).strftime("%Y%m")
    folder = key_folder(data_dir, domain)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    made = []
    for suffix, key in (("e", ed25519.Ed25519PrivateKey.generate()),
                        ("r", rsa.generate_private_key(public_exponent=65537, key_size=2048))):
        selector = f"{stamp}{suffix}"
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        path = folder / f"{selector}.pem"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        made.append(_key(domain, selector, pem))
    return made


def load_keys(data_dir: Path, domain: str) -> list[SigningKey]:
    """Every signing key of ``domain``, newest selector first within each algorithm."""
    folder = key_folder(data_dir, domain)
    if not folder.is_dir():
        return []
    keys = [_key(domain, p.stem, p.read_bytes()) for p in sorted(folder.glob("*.pem"), reverse=True)]
    return keys


def _key(domain: str, selector: str, pem: bytes) -> SigningKey:
    key = serialization.load_pem_private_key(pem, None)
    algorithm = "ed25519-sha256" if isinstance(key, ed25519.Ed25519PrivateKey) else "rsa-sha256"
    return SigningKey(domain, selector, algorithm, pem)
