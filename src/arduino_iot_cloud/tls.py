# TLS set-up, in one module: which CA, which client credentials, which checks.
#
# ssl_params is the dict 1.4.1 scripts pass.  Every key it read is honoured,
# plus the ones its own CI script passed but it silently ignored (cert_reqs,
# ca_certs, use_hsm); an unknown key is an error, so a misspelling cannot
# silently turn a check off.  Verification is on by default (CA + hostname);
# turning it off needs verify_mode=ssl.CERT_NONE and logs a warning.
#
# The CA is, in order: the file named by ARDUINO_IOT_CLOUD_CA (for a local
# broker), cafile/ca_certs/cadata from ssl_params, or the cloud's CA shipped
# in cadata.py.  Keys and certificates may be PEM or DER files on both
# runtimes (PEM is converted to DER for MicroPython, whose TLS takes DER only).
# Keys held in hardware are named by URI: "pkcs11:..." (CPython, M2Crypto)
# or "se05x:token=0x..." (MicroPython boards with an SE05x).
#
# The broker's certificate must name its host in a subjectAltName, as browsers
# and RFC 6125 require: a name in the CN alone is refused on both runtimes.
# CPython is told so (hostname_checks_common_name); mbedTLS always falls back
# to the CN when a certificate has no subjectAltName, so on MicroPython the
# library checks for the extension itself, in the certificate check mbedTLS
# calls during the handshake (SSLContext.verify_callback, MicroPython 1.23+).

import ssl
from binascii import a2b_base64

from .compat import MICROPYTHON as _MICROPYTHON, getLogger
from .errors import ConfigError

log = getLogger("arduino_iot_cloud.tls")

KNOWN_KEYS = ("keyfile", "certfile", "cafile", "ca_certs", "cadata", "ciphers", "verify_mode",
              "cert_reqs", "server_hostname", "engine_path", "module_path", "pin", "use_hsm")

CERT_NONE = getattr(ssl, "CERT_NONE", 0)
CERT_REQUIRED = getattr(ssl, "CERT_REQUIRED", 2)


def pem_to_der(data):
    """Return the DER bytes of the first PEM block in data (bytes)."""
    begin = data.find(b"-----BEGIN")
    if begin < 0:
        return data  # already DER
    start = data.find(b"\n", begin) + 1
    end = data.find(b"-----END", start)
    if start <= 0 or end < 0:
        raise ConfigError("malformed PEM data")
    return a2b_base64(data[start:end].replace(b"\r", b"").replace(b"\n", b""))


def read_file(path, what):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise ConfigError("cannot read %s file %s: %s" % (what, path, e))


class TLSConfig:
    """Validated TLS settings; wrap(sock, host) opens the TLS session."""

    def __init__(self, ssl_params=None, ca_override=None):
        params = dict(ssl_params or {})
        for key in params:
            if key not in KNOWN_KEYS:
                raise ConfigError("unknown ssl_params key %r (known: %s)" % (key, ", ".join(KNOWN_KEYS)))
        self.keyfile = params.get("keyfile")
        self.certfile = params.get("certfile")
        self.ciphers = params.get("ciphers")
        self.server_hostname = params.get("server_hostname")
        self.engine_path = params.get("engine_path")
        self.module_path = params.get("module_path")
        self._pin = params.get("pin")
        verify = params.get("verify_mode", params.get("cert_reqs", CERT_REQUIRED))
        if verify not in (CERT_NONE, CERT_REQUIRED, getattr(ssl, "CERT_OPTIONAL", 1)):
            raise ConfigError("verify_mode must be ssl.CERT_REQUIRED or ssl.CERT_NONE")
        self.verify = verify != CERT_NONE
        if not self.verify:
            log.warning("TLS server verification is OFF: the broker's identity is not checked")
        if (self.keyfile is None) != (self.certfile is None):
            raise ConfigError("ssl_params needs both keyfile and certfile for client certificates")
        self._context = None
        self._refusal = None  # why our own certificate check refused the last handshake
        self.hardware = None
        if isinstance(self.keyfile, str):
            if self.keyfile.startswith("pkcs11:"):
                self.hardware = "pkcs11"
            elif self.keyfile.startswith("se05x:"):
                self.hardware = "se05x"
        if params.get("use_hsm") and self.hardware != "pkcs11":
            raise ConfigError("use_hsm needs keyfile to be a pkcs11: URI")
        # The CA, as DER bytes or as a PEM file path (CPython only needs the path).
        if ca_override:
            self.cafile, self.cadata = ca_override, None
        else:
            self.cafile = params.get("cafile", params.get("ca_certs"))
            self.cadata = params.get("cadata")
            if self.cafile is None and self.cadata is None:
                from .cadata import CADATA

                self.cadata = CADATA

    @property
    def client_cert(self):
        return self.keyfile is not None

    def __repr__(self):
        # Never show the PIN.
        return "TLSConfig(verify=%s, client_cert=%s, hardware=%s)" % (self.verify, self.client_cert,
                                                                        self.hardware)

    def ca_der(self):
        if self.cafile is not None:
            return pem_to_der(read_file(self.cafile, "CA"))
        return pem_to_der(self.cadata) if isinstance(self.cadata, bytes) else self.cadata

    def wrap(self, sock, host, handshake=True):
        """Wrap a connected socket and return the TLS socket.

        handshake=False leaves the handshake to the caller (non-blocking
        connect on CPython); SE05x keys (MicroPython) hand-shake at once.
        """
        hostname = self.server_hostname or host
        self._refusal = None
        if self.hardware == "pkcs11":
            try:
                from .pkcs11 import wrap_pkcs11
            except ImportError as e:
                raise ConfigError("PKCS#11 keys need M2Crypto (pip install arduino-iot-cloud[pkcs11]): %s" % e)
            return wrap_pkcs11(sock, hostname, self, self._pin, handshake)
        ctx = self.context()
        if not handshake:
            return ctx.wrap_socket(sock, server_hostname=hostname, do_handshake_on_connect=False)
        return ctx.wrap_socket(sock, server_hostname=hostname)

    def context(self):
        """The SSLContext of this configuration, built once and reused.

        Building one loads the CA and the key again (~0.3 ms and ~18 KB per
        connection on CPython), so reconnects and fleets share it.
        """
        if self._context is None:
            self._context = self.configure(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))
        return self._context

    def configure(self, ctx):
        """Apply the checks and credentials to ctx (also used by the paho transport)."""
        if hasattr(ctx, "check_hostname"):
            ctx.check_hostname = self.verify
        ctx.verify_mode = CERT_REQUIRED if self.verify else CERT_NONE
        if self.verify:
            self._require_subject_alt_name(ctx)
            if hasattr(ctx, "load_verify_locations") and self.cafile is not None and not _MICROPYTHON:
                ctx.load_verify_locations(cafile=self.cafile)
            else:
                ctx.load_verify_locations(cadata=self.ca_der())
        if self.ciphers is not None:
            ctx.set_ciphers(self.ciphers)
        if self.hardware == "se05x":
            from .se05x import load_se05x

            load_se05x(ctx, self.keyfile, self.certfile)
        elif self.keyfile is not None:
            self._load_cert_chain(ctx)
        return ctx

    def _require_subject_alt_name(self, ctx):
        if hasattr(ctx, "hostname_checks_common_name"):  # CPython
            ctx.hostname_checks_common_name = False
            return
        native = getattr(ctx, "_context", None)  # MicroPython 1.23+: ssl.SSLContext wraps tls.SSLContext
        if native is not None and hasattr(native, "verify_callback"):
            native.verify_callback = self._check_certificate
        else:  # MicroPython before 1.23
            log.warning("this MicroPython cannot check the broker's certificate for a subjectAltName: "
                        "a certificate that names the host in its CN only is accepted")

    def _check_certificate(self, der, depth):
        # Called by mbedTLS for each certificate of the broker's chain (depth
        # 0: the broker's own) after its own checks, whose result it does not
        # see (their refusal stands whatever this returns).  Returns 0 to
        # accept, or an mbedTLS error code to end the handshake.  It must not
        # raise: an exception would unwind through mbedTLS in mid-handshake.
        if depth != 0:
            return 0
        try:
            if has_subject_alt_name(der):
                return 0
        except Exception:  # noqa: BLE001 - a certificate we cannot read is refused
            pass
        self._refusal = ("the broker's certificate is not valid for the host name HOST (it names no host in "
                         "a subjectAltName; a name in the CN alone is not accepted)")
        return _X509_CERT_VERIFY_FAILED

    def take_refusal(self):
        """Why our own certificate check refused the last handshake, once; or None."""
        reason, self._refusal = self._refusal, None
        return reason

    def _load_cert_chain(self, ctx):
        if _MICROPYTHON:
            # mbedTLS takes DER only: convert PEM files here.
            key = pem_to_der(read_file(self.keyfile, "key"))
            cert = pem_to_der(read_file(self.certfile, "certificate"))
            ctx.load_cert_chain(cert, key)
            return
        cert = read_file(self.certfile, "certificate")
        key = read_file(self.keyfile, "key")
        if b"-----BEGIN" in cert and b"-----BEGIN" in key:
            ctx.load_cert_chain(self.certfile, self.keyfile)
            return
        # CPython loads PEM files only: DER is re-encoded as PEM in a private
        # temporary file that is removed as soon as it has been read.
        import os
        import tempfile

        fd, path = tempfile.mkstemp(suffix=".pem")
        try:
            os.write(fd, _as_pem(cert, b"CERTIFICATE") + _as_pem(key, _der_key_label(key)))
            os.close(fd)
            fd = None
            ctx.load_cert_chain(path)
        finally:
            if fd is not None:
                os.close(fd)
            os.remove(path)


_X509_CERT_VERIFY_FAILED = -0x2700  # MBEDTLS_ERR_X509_CERT_VERIFY_FAILED
_SUBJECT_ALT_NAME = b"\x06\x03\x55\x1d\x11"  # DER of the OID 2.5.29.17


def _item(der, at):
    # (tag, first byte of the value, end of the value) of the DER item at `at`.
    tag = der[at]
    n = der[at + 1]
    at += 2
    if n & 0x80:
        size = n & 0x7F
        n = 0
        for i in range(at, at + size):
            n = (n << 8) | der[i]
        at += size
    if at + n > len(der):
        raise ValueError("DER item runs past the end")
    return tag, at, at + n


def has_subject_alt_name(der):
    """Does the DER certificate `der` (bytes or memoryview) carry a subjectAltName extension?

    Certificate = SEQUENCE {tbsCertificate SEQUENCE {..., [3] extensions}, ...};
    each extension is a SEQUENCE starting with its OID.
    """
    _tag, at, _end = _item(der, 0)
    _tag, at, end = _item(der, at)  # tbsCertificate
    while at < end:
        tag, value, after = _item(der, at)
        if tag == 0xA3:  # [3] extensions: one SEQUENCE of Extension
            _tag, at, end = _item(der, value)
            while at < end:
                _tag, ext, after = _item(der, at)
                if after - ext >= 5 and _starts_with(der, ext, _SUBJECT_ALT_NAME):
                    return True
                at = after
            return False
        at = after
    return False


def _starts_with(der, at, prefix):
    # Byte by byte: MicroPython cannot compare a memoryview with bytes.
    for i in range(len(prefix)):
        if der[at + i] != prefix[i]:
            return False
    return True


def _as_pem(data, label):
    if b"-----BEGIN" in data:
        return data if data.endswith(b"\n") else data + b"\n"
    from binascii import b2a_base64

    body = b2a_base64(data).replace(b"\n", b"")
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return b"-----BEGIN " + label + b"-----\n" + b"\n".join(lines) + b"\n-----END " + label + b"-----\n"


def _der_key_label(key):
    # SEC1 EC keys start with version 1; PKCS#8 with version 0 and an
    # AlgorithmIdentifier sequence; PKCS#1 RSA with version 0 and an integer.
    at = 2 + (key[1] & 0x7F if key[1] & 0x80 else 0) if len(key) > 2 else 0
    version = key[at:at + 3]
    if version == b"\x02\x01\x01":
        return b"EC PRIVATE KEY"
    if version == b"\x02\x01\x00" and key[at + 3:at + 4] == b"\x02":
        return b"RSA PRIVATE KEY"
    return b"PRIVATE KEY"
