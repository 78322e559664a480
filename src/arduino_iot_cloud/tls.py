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

from .certfiles import as_pem, check_pem_or_der, der_key_label, has_subject_alt_name, pem_to_der, read_file
from .compat import MICROPYTHON as _MICROPYTHON, getLogger
from .errors import ConfigError

log = getLogger("arduino_iot_cloud.tls")

_X509_CERT_VERIFY_FAILED = -0x2700  # MBEDTLS_ERR_X509_CERT_VERIFY_FAILED

KNOWN_KEYS = ("keyfile", "certfile", "cafile", "ca_certs", "cadata", "ciphers", "verify_mode",
              "cert_reqs", "server_hostname", "engine_path", "module_path", "pin", "use_hsm")

CERT_NONE = getattr(ssl, "CERT_NONE", 0)
CERT_REQUIRED = getattr(ssl, "CERT_REQUIRED", 2)


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
        self.ca_source = "cafile"
        if ca_override:
            self.cafile, self.cadata = ca_override, None
            self.ca_source = "ARDUINO_IOT_CLOUD_CA"
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
            return pem_to_der(self._read_ca())
        return pem_to_der(self.cadata) if isinstance(self.cadata, bytes) else self.cadata

    def _read_ca(self):
        data = read_file(self.cafile, "CA (%s)" % self.ca_source)
        check_pem_or_der(data, self.cafile, "CA (%s)" % self.ca_source, b"CERTIFICATE")
        return data

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
        """Apply the checks and credentials to ctx (also used by the paho transport).

        A file that is missing, unreadable or not what it should be raises
        ConfigError naming it: a configuration mistake, not worth a retry."""
        if hasattr(ctx, "check_hostname"):
            ctx.check_hostname = self.verify
        ctx.verify_mode = CERT_REQUIRED if self.verify else CERT_NONE
        if self.verify:
            self._require_subject_alt_name(ctx)
            try:
                if self.cafile is not None and not _MICROPYTHON and b"-----BEGIN" in self._read_ca():
                    ctx.load_verify_locations(cafile=self.cafile)
                else:
                    ctx.load_verify_locations(cadata=self.ca_der())
            except (OSError, ValueError) as e:  # ssl.SSLError is an OSError
                if isinstance(e, ConfigError):
                    raise
                where = "CA file %s (%s)" % (self.cafile, self.ca_source) if self.cafile else "cadata"
                raise ConfigError("%s is not a usable CA certificate: %s" % (where, e))
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
        cert = read_file(self.certfile, "certificate")
        key = read_file(self.keyfile, "key")
        check_pem_or_der(cert, self.certfile, "certificate", b"CERTIFICATE")
        check_pem_or_der(key, self.keyfile, "key", b"PRIVATE KEY")
        try:
            self._load_pair(ctx, cert, key)
        except (OSError, ValueError) as e:  # ssl.SSLError is an OSError
            if isinstance(e, ConfigError):
                raise
            if "KEY_VALUES_MISMATCH" in str(e) or "values mismatch" in str(e):
                raise ConfigError("key file %s does not belong to certificate file %s"
                                  % (self.keyfile, self.certfile))
            raise ConfigError("cannot use key file %s with certificate file %s: %s"
                              % (self.keyfile, self.certfile, e))

    def _load_pair(self, ctx, cert, key):
        if _MICROPYTHON:
            # mbedTLS takes DER only: convert PEM here.
            ctx.load_cert_chain(pem_to_der(cert), pem_to_der(key))
            return
        if b"-----BEGIN" in cert and b"-----BEGIN" in key:
            ctx.load_cert_chain(self.certfile, self.keyfile)
            return
        # CPython loads PEM files only: DER is re-encoded as PEM in a private
        # temporary file that is removed as soon as it has been read.
        import os
        import tempfile

        fd, path = tempfile.mkstemp(suffix=".pem")
        try:
            os.write(fd, as_pem(cert, b"CERTIFICATE") + as_pem(key, der_key_label(key)))
            os.close(fd)
            fd = None
            ctx.load_cert_chain(path)
        finally:
            if fd is not None:
                os.close(fd)
            os.remove(path)
