# TLS with a private key that stays in a PKCS#11 token (CPython only).
#
# Theory of operation.  OpenSSL's pkcs11 engine (libp11) loads a PKCS#11
# module (SoftHSM, a smart card, an HSM) and hands OpenSSL a key object whose
# signing is done inside the token: the key bytes never reach this process.
# M2Crypto is the Python binding that can put such an engine key into an
# SSL context (the standard ssl module cannot).
#
#   wrap_pkcs11(sock, hostname, tls, pin, handshake=True)
#     1. engine for (engine_path, module_path): loaded once per process
#     2. PIN set on the engine, key (and certificate, if certfile is a
#        pkcs11: URI) loaded by URI; key and certificate checked to match
#     3. context: CA from tls.cafile / tls.cadata, peer verification, TLS 1.2+
#     4. handshake: at once, bounded by the socket's timeout (sync driver), or
#        step by step through do_handshake() on the event loop (asyncio); the
#        server name is checked (set1_host for names, the IP SAN for IPs)
#     5. PKCS11Socket: recv/send/fileno for transport.Connection, non-blocking
#
# PKCS#11 logins are per process: once a key was loaded with the right PIN,
# the token stays logged in for the life of the process.  The engine's PIN
# and the key load are one critical section (a lock), since the PIN is
# engine-wide state.  The PIN is never logged or put in an exception; URIs
# are shown with any pin-value attribute removed.

import os
import socket
import ssl
import threading
from typing import Any, Dict, Optional, Tuple

from .certfiles import der_length, read_file
from .compat import getLogger
from .errors import ConfigError, PKCS11Error, TLSError, TransportError

log = getLogger("arduino_iot_cloud.pkcs11")

DEFAULT_ENGINE_PATHS = (
    "/usr/lib/x86_64-linux-gnu/engines-3/pkcs11.so",
    "/usr/lib/aarch64-linux-gnu/engines-3/pkcs11.so",
    "/usr/lib/arm-linux-gnueabihf/engines-3/pkcs11.so",
    "/usr/lib/engines-3/pkcs11.so",
    "/usr/lib/engines-3/libpkcs11.so",  # the 1.4.1 default
    "/usr/lib64/engines-3/pkcs11.so",
)
DEFAULT_MODULE_PATHS = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib64/pkcs11/libsofthsm2.so",
)

_engines: Dict[Tuple[str, str], Any] = {}
_lock = threading.Lock()


def safe_uri(uri: str) -> str:
    """The URI with pin-value / pin-source attributes removed, for messages."""
    head, _, query = uri.partition("?")
    parts = [p for p in head.split(";") if not p.split("=", 1)[0].lower().startswith("pin-")]
    kept = [q for q in query.split("&") if q and not q.split("=", 1)[0].lower().startswith("pin-")]
    return ";".join(parts) + ("?" + "&".join(kept) if kept else "")


def _first_existing(paths, what: str, reason: str) -> str:
    for p in paths:
        if os.path.exists(p):
            return p
    raise PKCS11Error(reason, "no %s found (looked in %s); set ssl_params[%r]"
                      % (what, ", ".join(paths), "engine_path" if reason == "engine" else "module_path"))


def _m2():
    try:
        from M2Crypto import SSL, X509, Engine, m2
    except ImportError as e:
        raise PKCS11Error("m2crypto", "PKCS#11 keys need M2Crypto (pip install M2Crypto): %s" % e)
    return SSL, X509, Engine, m2


def _engine(engine_path: str, module_path: str):
    """The initialised pkcs11 engine for these paths (one per process; call with _lock held)."""
    key = (engine_path, module_path)
    engine = _engines.get(key)
    if engine is not None:
        return engine
    _SSL, _X509, Engine, _m = _m2()
    if not os.path.exists(engine_path):
        raise PKCS11Error("engine", "OpenSSL pkcs11 engine not found: %s (apt install libengine-pkcs11-openssl)"
                          % engine_path)
    if not os.path.exists(module_path):
        raise PKCS11Error("module", "PKCS#11 module not found: %s" % module_path)
    try:
        engine = Engine.load_dynamic_engine("pkcs11", engine_path)
        engine.ctrl_cmd_string("MODULE_PATH", module_path)
        try:
            engine.ctrl_cmd_string("QUIET", None)  # libp11 >= 0.4.11: no chatter on stderr
        except Engine.EngineError:
            pass
        engine.init()
    except Engine.EngineError as e:
        raise PKCS11Error("engine", "cannot load the pkcs11 engine %s: %s" % (engine_path, _first_line(e)))
    _engines[key] = engine
    log.info("pkcs11 engine loaded (module %s)", module_path)
    return engine


def _first_line(e: BaseException) -> str:
    lines = [x for x in str(e).splitlines() if x.strip()]
    return lines[0] if lines else type(e).__name__


def _classify(e: BaseException, what: str, uri: str, module_path: str) -> PKCS11Error:
    text = str(e)
    if "PIN incorrect" in text or "PIN_INCORRECT" in text or "PIN_LEN_RANGE" in text:
        return PKCS11Error("pin", "wrong PIN for the token of %s" % safe_uri(uri))
    if "PIN locked" in text or "PIN_LOCKED" in text:
        return PKCS11Error("pin", "the token's PIN is locked (%s)" % safe_uri(uri))
    if "Unable to load PKCS#11 module" in text or "Unable to load module" in text:
        return PKCS11Error("module", "the PKCS#11 module %s cannot be loaded" % module_path)
    if "not found" in text or not text:
        return PKCS11Error("not_found", "no %s at %s (is the token there, with that label/object?)"
                           % (what, safe_uri(uri)))
    return PKCS11Error("not_found", "cannot load the %s at %s: %s" % (what, safe_uri(uri), _first_line(e)))


def load_credentials(tls, pin: Optional[str]):
    """Load (key, certificate) for tls.keyfile / tls.certfile through the engine."""
    SSL, X509, Engine, m2 = _m2()
    uri = tls.keyfile
    if not pin:
        pin = None
    if pin is None and "pin-value=" not in uri and "pin-source=" not in uri:
        # Without a PIN libp11 would prompt on the terminal and block.
        raise PKCS11Error("pin", "a pkcs11: keyfile needs ssl_params['pin'] (or pin-value in the URI)")
    engine_path = tls.engine_path or _first_existing(DEFAULT_ENGINE_PATHS, "OpenSSL pkcs11 engine", "engine")
    module_path = tls.module_path or _first_existing(DEFAULT_MODULE_PATHS, "PKCS#11 module", "module")
    with _lock:
        engine = _engine(engine_path, module_path)
        if pin is not None:
            # Kept by the engine: libp11 logs in again with it if the token
            # session is lost (a reconnect needs the PIN anyway).
            engine.ctrl_cmd_string("PIN", str(pin))
        try:
            key = engine.load_private_key(uri)
        except Engine.EngineError as e:
            raise _classify(e, "private key", uri, module_path) from None
        if isinstance(tls.certfile, str) and tls.certfile.startswith("pkcs11:"):
            try:
                cert = engine.load_certificate(tls.certfile)
            except (Engine.EngineError, SystemError):
                # M2Crypto 0.51 reports a missing certificate as SystemError
                # (its binding returns NULL with an exception set).
                raise PKCS11Error("not_found", "no certificate at %s" % safe_uri(tls.certfile)) from None
            return key, cert
    return key, _load_cert_file(tls.certfile, X509)


def _load_cert_file(path: str, X509):
    data = read_file(path, "certificate")
    try:
        if b"-----BEGIN" in data:
            return X509.load_cert_string(data, X509.FORMAT_PEM)
        return X509.load_cert_der_string(data)
    except X509.X509Error as e:
        raise PKCS11Error("certificate", "%s is not a PEM or DER certificate: %s" % (path, _first_line(e)))


def _ca_certificates(tls, X509):
    """CA certificates as M2Crypto X509 objects, from tls.cadata (PEM or DER)."""
    data = tls.cadata
    if isinstance(data, str):
        data = data.encode()
    certs = []
    if b"-----BEGIN" in data:
        for block in data.split(b"-----END CERTIFICATE-----")[:-1]:
            certs.append(X509.load_cert_string(block + b"-----END CERTIFICATE-----\n", X509.FORMAT_PEM))
        return certs
    while data:  # DER certificates, back to back
        if data[0] != 0x30:
            raise ConfigError("cadata is neither PEM nor DER certificates")
        size = der_length(data, "cadata")
        certs.append(X509.load_cert_der_string(data[:size]))
        data = data[size:]
    return certs


def _context(tls, key, cert):
    SSL, X509, _Engine, m2 = _m2()
    ctx = SSL.Context("tls")
    ctx.set_options(m2.SSL_OP_NO_SSLv2 | m2.SSL_OP_NO_SSLv3 | m2.SSL_OP_NO_TLSv1 | m2.SSL_OP_NO_TLSv1_1)
    if tls.verify:
        ctx.set_verify(SSL.verify_peer | SSL.verify_fail_if_no_peer_cert, depth=9)
        if tls.cafile is not None:
            if ctx.load_verify_locations(cafile=tls.cafile) != 1:
                raise ConfigError("cannot load the CA file %s" % tls.cafile)
        else:
            store = ctx.get_cert_store()
            for ca in _ca_certificates(tls, X509):
                store.add_x509(ca)
    else:
        ctx.set_verify(SSL.verify_none, depth=9)
    if tls.ciphers is not None:
        ctx.set_cipher_list(tls.ciphers)
    try:
        ok = (m2.ssl_ctx_use_x509(ctx.ctx, cert.x509) == 1 and m2.ssl_ctx_use_pkey_privkey(ctx.ctx, key.pkey) == 1
              and m2.ssl_ctx_check_privkey(ctx.ctx) == 1)
    except SSL.SSLError:
        ok = False
    if not ok:
        raise PKCS11Error("mismatch", "the certificate does not match the private key in the token")
    return ctx


def _is_ip(host: str) -> bool:
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
            return True
        except OSError:
            pass
    return False


def wrap_pkcs11(sock: socket.socket, hostname: str, tls, pin: Optional[str],
                handshake: bool = True) -> "PKCS11Socket":
    """TLS on the connected sock with the token's key; return the TLS socket.

    With handshake=True the handshake is done here, waiting at most sock's
    timeout; with handshake=False the caller drives do_handshake() on a
    non-blocking sock (the asyncio driver).  Errors about the key, the PIN
    or the certificate are PKCS11Error (a ConfigError); a failed handshake
    is TransportError.
    """
    SSL, _X509, _Engine, m2 = _m2()
    key, cert = load_credentials(tls, pin)
    ctx = _context(tls, key, cert)
    conn = SSL.Connection(ctx, sock=sock)  # takes sock's timeout for a blocking handshake
    conn.setup_ssl()
    conn.set_connect_state()
    m2.ssl_set_mode(conn.ssl, m2.SSL_MODE_ENABLE_PARTIAL_WRITE | m2.SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER)
    if not _is_ip(hostname):
        conn.set_tlsext_host_name(hostname)
        if tls.verify and m2.ssl_set1_host(conn.ssl, hostname) != 1:
            raise ConfigError("invalid server hostname")
    # The context, key and certificate must outlive the connection.
    tls_sock = PKCS11Socket(conn, sock, (ctx, key, cert), hostname, tls.verify)
    if handshake:
        tls_sock.handshake_blocking()
    return tls_sock


class PKCS11Socket:
    """An M2Crypto TLS connection with the socket methods transport.Connection uses.

    recv(n) -> bytes, None when nothing is available now, b"" on EOF;
    send(data) -> bytes written (0 when the socket would block).  Both
    follow the socket's mode: non-blocking, or waiting up to its timeout.
    """

    def __init__(self, conn, raw: socket.socket, keep: tuple, hostname: str, verify: bool):
        from M2Crypto import SSL, m2

        self._m2 = m2
        self._ssl_error = SSL.SSLError
        self._conn = conn
        self._raw = raw
        self._keep = keep  # context, key, certificate: must outlive the connection
        self._hostname = hostname
        self._verify = verify

    def _ssl(self):
        if self._conn is None:
            raise TransportError("the TLS connection is closed")
        return self._conn.ssl

    # -- handshake -----------------------------------------------------------------------

    def handshake_blocking(self) -> None:
        """The whole handshake, bounded by the socket's timeout."""
        from M2Crypto.SSL import SSLTimeoutError

        try:
            self._conn.connect_ssl()
        except SSLTimeoutError:
            self.close()
            raise TransportError("TLS handshake with %s timed out" % self._hostname) from None
        except (self._ssl_error, OSError) as e:
            raise self._failed(e) from None
        self._check_ip()

    def do_handshake(self) -> None:
        """One non-blocking handshake step, like ssl.SSLSocket.do_handshake.

        Returns when the handshake is complete; raises ssl.SSLWantReadError
        or ssl.SSLWantWriteError when it must wait for the socket.
        """
        m2 = self._m2
        try:
            r = m2.ssl_connect(self._ssl(), 0.0)
        except self._ssl_error as e:
            raise self._failed(e) from None
        if r == 1:
            self._check_ip()
            return
        err = m2.ssl_get_error(self._ssl(), r)
        if err == m2.ssl_error_want_read:
            raise ssl.SSLWantReadError("handshake needs data")
        if err == m2.ssl_error_want_write:
            raise ssl.SSLWantWriteError("handshake needs the socket writable")
        raise self._failed(None)

    def _failed(self, e: Optional[BaseException]) -> TLSError:
        detail = ""
        if self._verify and self._conn is not None:
            code = self._m2.ssl_get_verify_result(self._conn.ssl)
            if code:
                detail = " (server certificate: %s)" % self._m2.x509_get_verify_error(code)
        self.close()
        reason = _first_line(e) if e is not None else "connection closed"
        return TLSError("TLS handshake with %s failed: %s%s" % (self._hostname, reason, detail))

    def _check_ip(self) -> None:
        # set1_host covers names; an IP address is checked against the
        # certificate's IP SAN once the peer certificate is known.
        if self._verify and _is_ip(self._hostname):
            peer = self._conn.get_peer_cert()
            if peer is None or self._m2.x509_check_ip_asc(peer.x509, self._hostname, 0) != 1:
                self.close()
                raise TLSError("the server certificate is not valid for %s" % self._hostname)
        log.debug("TLS with a PKCS#11 key established to %s", self._hostname)

    # -- socket methods ------------------------------------------------------------------

    def fileno(self) -> int:
        return self._raw.fileno()

    def setblocking(self, flag: bool) -> None:
        if self._conn is not None:
            self._conn.setblocking(bool(flag))

    def _wait(self) -> float:
        """0.0 for a non-blocking socket, else M2Crypto's timeout (-1: none)."""
        t = self._raw.gettimeout()
        return -1.0 if t is None else t

    def recv(self, n: int = 4096) -> Optional[bytes]:
        m2, ssl_obj = self._m2, self._ssl()
        try:
            wait = self._wait()
            if wait != 0.0:
                data = m2.ssl_read(ssl_obj, n, wait)
                return data if data is not None else b""
            data = m2.ssl_read_nbio(ssl_obj, n)
            if not data:
                return data  # None: nothing now; b"": EOF
            # Hand over the rest of the decrypted record too: bytes OpenSSL
            # holds do not make the socket readable again.
            more = m2.ssl_pending(ssl_obj)
            while more > 0:
                extra = m2.ssl_read_nbio(ssl_obj, more)
                if not extra:
                    break
                data += extra
                more = m2.ssl_pending(ssl_obj)
            return data
        except self._ssl_error as e:
            raise TransportError("TLS read failed: %s" % _first_line(e)) from None

    def send(self, data) -> int:
        m2, ssl_obj = self._m2, self._ssl()
        try:
            wait = self._wait()
            if wait != 0.0:
                n = m2.ssl_write(ssl_obj, bytes(data), wait)
            else:
                n = m2.ssl_write_nbio(ssl_obj, bytes(data))
        except self._ssl_error as e:
            raise TransportError("TLS write failed: %s" % _first_line(e)) from None
        return n if n and n > 0 else 0

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            conn.close()  # sends close_notify if the socket takes it now; never waits
        except Exception:  # closing must never raise
            pass
        try:
            self._raw.close()
        except OSError:
            pass
