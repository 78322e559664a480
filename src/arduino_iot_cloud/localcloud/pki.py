"""A tiny certificate authority for the local cloud, driven by the openssl CLI.

The openssl command line tool is always present where mosquitto is, so this needs
no Python crypto package.  All keys are EC P-256.  Layout under ``directory``::

    ca.key  ca.pem  ca.der          the local root CA (ca.der for MicroPython, which wants DER)
    server.key  server.pem          CN=localhost, SAN DNS:localhost + IP:127.0.0.1
    devices/<id>/key.pem|key.der|cert.pem|cert.der     device client certificates (CN = device id)

Every certificate carries subjectKeyIdentifier / authorityKeyIdentifier and
proper keyUsage / extendedKeyUsage, so strict verifiers (mbedTLS, Python's
``VERIFY_X509_STRICT``) accept the chain.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import subprocess
from pathlib import Path
from typing import List, Optional, Tuple

log = logging.getLogger(__name__)

CA_DAYS = 3650
LEAF_DAYS = 825

# One openssl config holding every extension section we use; `-extensions NAME`
# picks one.  The [req] section keeps `openssl req` from reading the system config.
_OPENSSL_CNF = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[v3_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[v3_server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[v3_client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""

# Characters a device id may hold (it becomes a file name and a CN).
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class PkiError(RuntimeError):
    """An openssl command failed, or a CSR did not match the device."""


def _openssl(args: List[str], cwd: Optional[Path] = None) -> str:
    """Run ``openssl ARGS`` and return its stdout; raise PkiError with stderr on failure."""
    proc = subprocess.run(
        ["openssl"] + args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    if proc.returncode != 0:
        raise PkiError("openssl %s failed: %s" % (args[0], proc.stderr.strip()))
    return proc.stdout


def check_device_id(device_id: str) -> str:
    """Return ``device_id`` if it is safe as a file name and certificate CN, else raise ValueError."""
    if not _SAFE_ID.match(device_id):
        raise ValueError("unsafe device id %r" % device_id)
    return device_id


class Pki:
    """The local CA in ``directory``: created on first use, reused afterwards."""

    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)
        self.ca_key = self.dir / "ca.key"
        self.ca_file = self.dir / "ca.pem"
        self.ca_der = self.dir / "ca.der"
        self.server_key = self.dir / "server.key"
        self.server_cert = self.dir / "server.pem"
        self._cnf = self.dir / "openssl.cnf"

    # -- helpers ---------------------------------------------------------------------------

    def _new_key(self, path: Path) -> None:
        """Write a fresh P-256 private key (PKCS#8 PEM), readable by the owner only."""
        path.parent.mkdir(parents=True, exist_ok=True)
        _openssl(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(path)])
        os.chmod(path, 0o600)

    def _sign(self, csr: Path, out: Path, subject: str, extensions: str) -> None:
        """Sign ``csr`` with the CA, forcing ``subject`` and the given extension section."""
        serial = "0x%s" % secrets.token_hex(16)
        if int(serial, 16) >= 1 << 127:  # keep the serial positive and within 16 bytes
            serial = "0x%032x" % (int(serial, 16) >> 1)
        _openssl([
            "x509", "-req", "-in", str(csr), "-CA", str(self.ca_file), "-CAkey", str(self.ca_key),
            "-set_serial", serial, "-days", str(LEAF_DAYS), "-sha256", "-subj", subject,
            "-extfile", str(self._cnf), "-extensions", extensions, "-out", str(out),
        ])

    @staticmethod
    def to_der(pem: Path, der: Path, kind: str) -> None:
        """Convert a PEM certificate (``kind="cert"``) or private key (``kind="key"``) to DER."""
        if kind == "cert":
            _openssl(["x509", "-in", str(pem), "-outform", "DER", "-out", str(der)])
        else:
            _openssl(["pkey", "-in", str(pem), "-outform", "DER", "-out", str(der)])
            os.chmod(der, 0o600)

    # -- the CA and the broker's certificate ------------------------------------------------

    def ensure(self) -> None:
        """Create the CA and the server certificate if they do not exist yet."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self._cnf.write_text(_OPENSSL_CNF)
        if not (self.ca_key.exists() and self.ca_file.exists()):
            log.info("creating local CA in %s", self.dir)
            self._new_key(self.ca_key)
            _openssl([
                "req", "-x509", "-new", "-key", str(self.ca_key), "-sha256", "-days", str(CA_DAYS),
                "-subj", "/O=Arduino IoT Cloud local/CN=Local Cloud Root CA %s" % secrets.token_hex(4),
                "-config", str(self._cnf), "-extensions", "v3_ca", "-out", str(self.ca_file),
            ])
            self.to_der(self.ca_file, self.ca_der, "cert")
            for stale in (self.server_key, self.server_cert):
                if stale.exists():
                    stale.unlink()
        if not self.ca_der.exists():
            self.to_der(self.ca_file, self.ca_der, "cert")
        if not (self.server_key.exists() and self.server_cert.exists()):
            log.info("creating server certificate for localhost / 127.0.0.1")
            self._new_key(self.server_key)
            csr = self.dir / "server.csr"
            _openssl(["req", "-new", "-key", str(self.server_key), "-subj", "/CN=localhost",
                      "-config", str(self._cnf), "-out", str(csr)])
            self._sign(csr, self.server_cert, "/CN=localhost", "v3_server")
            csr.unlink()

    # -- device certificates ------------------------------------------------------------------

    def device_dir(self, device_id: str) -> Path:
        """The directory holding one device's key and certificate files."""
        return self.dir / "devices" / check_device_id(device_id)

    def issue_device(self, device_id: str) -> Tuple[Path, Path, Path, Path]:
        """Create a key pair and a client certificate (CN = device id) for a device.

        Returns ``(keyfile, certfile, keyfile_der, certfile_der)``.
        """
        d = self.device_dir(device_id)
        key, cert = d / "key.pem", d / "cert.pem"
        key_der, cert_der = d / "key.der", d / "cert.der"
        self._new_key(key)
        csr = d / "request.csr"
        _openssl(["req", "-new", "-key", str(key), "-subj", "/CN=%s" % device_id,
                  "-config", str(self._cnf), "-out", str(csr)])
        self._sign(csr, cert, "/CN=%s" % device_id, "v3_client")
        csr.unlink()
        self.to_der(key, key_der, "key")
        self.to_der(cert, cert_der, "cert")
        log.info("issued client certificate for device %s", device_id)
        return key, cert, key_der, cert_der

    def sign_csr(self, device_id: str, csr_path: Path) -> Path:
        """Sign a device's CSR (key kept elsewhere, e.g. in a PKCS#11 token).

        The CSR's signature is checked; its subject is replaced by CN=<device id>,
        since the broker takes the device id from the certificate's CN.  Returns the
        PEM certificate path, ``devices/<id>/csr_cert.pem`` (a DER copy sits next to it
        as ``csr_cert.der``), so a file key's ``cert.pem`` is never overwritten.
        """
        _openssl(["req", "-in", str(csr_path), "-verify", "-noout"])
        d = self.device_dir(device_id)
        d.mkdir(parents=True, exist_ok=True)
        cert = d / "csr_cert.pem"
        self._sign(Path(csr_path), cert, "/CN=%s" % device_id, "v3_client")
        self.to_der(cert, d / "csr_cert.der", "cert")
        log.info("signed CSR for device %s", device_id)
        return cert
