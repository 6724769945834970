"""Certificates for tests of ``dockext serve --tls-cert`` (made with the ``openssl`` command, valid for two days),
and what Chromium needs to trust one without a CA installed (the hash of its public key)."""

from __future__ import annotations

import base64
import hashlib
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class TestCert:
    cert: Path
    key: Path
    spki: str  # base64 of the SHA-256 of its public key: Chromium's --ignore-certificate-errors-spki-list

    __test__ = False  # not a test class, whatever its name


def make_cert(directory: Path, *names: str, encrypted: bool = False) -> TestCert:
    """A self-signed certificate (ECDSA P-256) for DNS ``names``, and its key, in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = names[0].replace("*", "star") if names else "nameless"
    cert, key = directory / f"{stem}.crt", directory / f"{stem}.key"
    cmd = ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-days", "2",
           "-subj", f"/CN={stem}", "-keyout", str(key), "-out", str(cert)]
    cmd += ["-passout", "pass:secret"] if encrypted else ["-nodes"]
    if names:
        cmd += ["-addext", "subjectAltName=" + ",".join(f"DNS:{n}" for n in names)]
    subprocess.run(cmd, check=True, capture_output=True)
    public = subprocess.run(["openssl", "x509", "-in", str(cert), "-pubkey", "-noout"], check=True,
                            capture_output=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "der"], input=public, check=True,
                         capture_output=True).stdout
    return TestCert(cert, key, base64.b64encode(hashlib.sha256(der).digest()).decode())
